"""Dialect-specific SQL expressions over quoted columns (SQLite keeps dates as ISO text; DuckDB
speaks PostgreSQL's SQL for all of these but one)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from .database import is_duckdb, is_postgres


class SqlExpressions:
    """Dialect-specific expressions over one quoted column or expression."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # DuckDB takes the PostgreSQL expressions (typed dates, EXTRACT, ~, percentile_disc);
        # ``duck`` marks the few places where it differs
        self.duck = is_duckdb(engine)
        self.pg = is_postgres(engine) or self.duck

    def length(self, col: str) -> str:
        return f"CHAR_LENGTH(CAST({col} AS TEXT))" if self.pg else f"LENGTH({col})"

    def year(self, col: str, text: bool) -> str:
        if self.pg and not text:
            return f"CAST(EXTRACT(YEAR FROM {col}) AS INTEGER)"
        return self._text_part(col, 1, 4)

    def month(self, col: str, text: bool) -> str:
        if self.pg and not text:
            return f"CAST(EXTRACT(MONTH FROM {col}) AS INTEGER)"
        return self._text_part(col, 6, 2)

    def hour(self, col: str, text: bool) -> str:
        if self.pg and not text:
            return f"CAST(EXTRACT(HOUR FROM {col}) AS INTEGER)"
        return self._text_part(col, 12, 2)

    def is_midnight(self, col: str, text: bool) -> str:
        if self.pg and not text:
            return f"(CAST({col} AS TIME) = TIME '00:00:00')"
        t = f"CAST({col} AS TEXT)"
        return f"(LENGTH({t}) <= 10 OR SUBSTR({t}, 12, 8) = '00:00:00')"

    def _text_part(self, col: str, start: int, length: int) -> str:
        t = f"CAST({col} AS TEXT)"
        part = f"SUBSTR({t}, {start}, {length})"
        if self.pg:
            return f"(CASE WHEN {part} ~ '^[0-9]+$' THEN CAST({part} AS INTEGER) END)"
        return f"(CASE WHEN {part} GLOB '[0-9]*' THEN CAST({part} AS INTEGER) END)"

    def as_date(self, col: str, text: bool) -> str:
        """The date part of a date or datetime column, comparable with other dates."""
        if self.pg and not text:
            return f"CAST({col} AS DATE)"
        if self.pg:
            return f"CAST(SUBSTR({col}, 1, 10) AS DATE)"
        return f"SUBSTR({col}, 1, 10)"

    def day_difference(self, end: str, start: str, text: bool) -> str:
        if self.pg and not text:
            return f"CAST(FLOOR(EXTRACT(EPOCH FROM (CAST({end} AS TIMESTAMP) - CAST({start} AS TIMESTAMP))) / 86400) AS INTEGER)"
        if self.pg:
            return f"(CAST(SUBSTR({end}, 1, 10) AS DATE) - CAST(SUBSTR({start}, 1, 10) AS DATE))"
        return (
            f"CAST(julianday(SUBSTR({end}, 1, 10)) - julianday(SUBSTR({start}, 1, 10)) AS INTEGER)"
        )

    def day_number(self, col: str, text: bool) -> str:
        """Days from 1970-01-01 to the date part of a date or datetime column (an integer)."""
        if self.pg and not text:
            return f"(CAST({col} AS DATE) - DATE '1970-01-01')"
        if self.pg:
            return f"(CAST(SUBSTR({col}, 1, 10) AS DATE) - DATE '1970-01-01')"
        return f"CAST(julianday(SUBSTR({col}, 1, 10)) - 2440587.5 AS INTEGER)"

    def birth_day_number(self, person: str, columns: set[str], datetime_text: bool) -> str:
        """Days from 1970-01-01 to a person's birth (alias ``person``): birth_datetime where it
        is set, else year_of_birth with month_of_birth and day_of_birth (1 where missing, the
        day at most 28), as the generator reads a synthetic person's birth; NULL for a year
        outside 1800..2200."""
        from .database import quote

        def col(name: str) -> str:
            return f"{person}.{quote(self.engine, name)}"

        def clamp(name: str, high: int) -> str:
            if name not in columns:
                return "1"
            f = ("GREATEST", "LEAST") if self.pg else ("MAX", "MIN")
            return f"{f[0]}(1, {f[1]}({high}, COALESCE({col(name)}, 1)))"

        y, m, d = col("year_of_birth"), clamp("month_of_birth", 12), clamp("day_of_birth", 28)
        if self.pg:
            first = (
                f"(make_date(CAST({y} AS INTEGER), CAST({m} AS INTEGER), 1) - DATE '1970-01-01')"
            )
        else:
            first = f"CAST(julianday(printf('%04d-%02d-01', {y}, {m})) - 2440587.5 AS INTEGER)"
        parts = f"CASE WHEN {y} BETWEEN 1800 AND 2200 THEN {first} + {d} - 1 END"
        if "birth_datetime" not in columns:
            return parts
        return f"COALESCE({self.day_number(col('birth_datetime'), datetime_text)}, {parts})"

    def json_row(self, columns: list[str]) -> str:
        """The row's values of ``columns`` as one JSON array text (numbers stay numbers), or
        NULL where the first is NULL: one grouping key for a combination of columns."""
        from .database import quote

        cols = ", ".join(quote(self.engine, c) for c in columns)
        first = quote(self.engine, columns[0])
        if self.pg and not self.duck:
            array = f"CAST(json_build_array({cols}) AS TEXT)"
        elif self.duck:
            array = f"CAST(json_array({cols}) AS TEXT)"
        else:
            array = f"json_array({cols})"
        return f"CASE WHEN {first} IS NOT NULL THEN {array} END"
