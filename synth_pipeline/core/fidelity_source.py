"""The synthetic tables scored against their source, inside the trusted environment: both sides
aggregated by SQL in their own database (counts per value, per year or per bucket of a numeric
expression; no row leaves either database), scores only.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .config import ColumnConfig, TableConfig
from .database import pg_like
from .fidelity import (
    Reader,
    SourceScore,
    TableFidelity,
    floor_sql,
    tv_complement,
)
from .schema import column_role, list_tables, read_table_schema

# ---------------------------------------------------------------------------------------------
# Against the source, inside the trusted environment

MAX_SOURCE_CATEGORIES = 1000  # most common source values compared one by one; the rest pooled
KS_BUCKETS = 1000  # buckets across the joint range of a numeric expression
EXACT_KS_RANGE = 5000  # integer expressions spanning fewer values are counted per value
PER_VALUE_ROWS = 1_000_000  # SQLite tables up to this many rows: numbers read per value
# generators whose output is compared with the source as categories (values)
CATEGORY_GENERATORS = {"weighted_choice", "conditional_choice", "constant", "string_pattern"}
# references whose ids are synthetic keys: the source's ids (some pointing nowhere) do not compare
REFERENCE_GENERATORS = {"preceding_row", "polymorphic_reference"}
NUMERIC_TYPES = (sa.Integer, sa.Numeric, sa.Float)
DATE_TYPES = (sa.Date, sa.DateTime)
_PG_NUMBER = r"^\s*[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?\s*$"


class _Side(Reader):
    """One table, in the source or the destination, with its columns as the database types them."""

    def __init__(self, engine: Engine, schema: str | None, table: str):
        super().__init__(engine, schema, table)
        self.pg = pg_like(engine)
        self.sqlite = engine.dialect.name == "sqlite"
        # numeric expressions read per value (ranges and buckets worked out here): SQLite sides of
        # at most PER_VALUE_ROWS rows, told by _scan
        self.per_value = False
        self.types = {
            c["name"].lower(): (c["name"], c["type"])
            for c in sa.inspect(engine).get_columns(table, schema=schema)
        }

    def has(self, column: str) -> bool:
        return column.lower() in self.types

    def col(self, column: str) -> str:
        return self.q(self.types[column.lower()][0])

    def _typed(self, column: str, types: tuple) -> bool:
        return isinstance(self.types[column.lower()][1], types)

    def number(self, column: str) -> str:
        """The column as a number, NULL where the extract holds something else ('' for NULL)."""
        q = self.col(column)
        if self._typed(column, NUMERIC_TYPES) and self.pg:
            return q
        if self.pg:
            return f"(CASE WHEN {q} ~ '{_PG_NUMBER}' THEN CAST({q} AS DOUBLE PRECISION) END)"
        return f"(CASE WHEN typeof({q}) IN ('integer', 'real') THEN {q} END)"

    def count(self, column: str, zero_is_null: bool) -> str:
        """The count of the column's values; 0 is no value where it stands for NULL."""
        q = self.col(column)
        if zero_is_null:
            return f"COUNT(CASE WHEN {self.number(column)} = 0 THEN NULL ELSE {q} END)"
        return f"COUNT({q})"

    def length(self, column: str) -> str:
        return self.sql.length(self.col(column))

    def year(self, column: str) -> str:
        return self.sql.year(self.col(column), text=not self._typed(column, DATE_TYPES))

    def days_between(self, end: str, start: str) -> str:
        text = not (self._typed(end, DATE_TYPES) and self._typed(start, DATE_TYPES))
        return self.sql.day_difference(self.col(end), self.col(start), text=text)


@dataclass
class _Measure:
    """What is compared for one column: its values, a numeric expression, or its years."""

    kind: str  # categories, numbers, lengths, offsets, years, nulls, references
    metric: str
    integer: bool = True
    start: str | None = None  # offsets: the column the days are counted from
    fallback: _Measure | None = None  # categories with no source value seen k times

    def expression(self, side: _Side, column: str) -> str | None:
        if self.kind == "numbers":
            return side.number(column)
        if self.kind == "lengths":
            return side.length(column)
        if self.kind == "offsets" and self.start and side.has(self.start):
            return side.days_between(column, self.start)
        return None


def _measure_of(col: ColumnConfig) -> _Measure:
    gen, stats = col.generator or "", col.stats
    numeric = _Measure("numbers", "KSComplement", integer=col.type == "integer")
    if gen in CATEGORY_GENERATORS:
        fallback = {
            "string": _Measure("lengths", "KSComplement"),
            "integer": numeric,
            "float": numeric,
            "date": _Measure("years", "TVComplement"),
            "datetime": _Measure("years", "TVComplement"),
        }.get(col.type)
        return _Measure("categories", "TVComplement", fallback=fallback)
    if gen in REFERENCE_GENERATORS:
        return _Measure("references", "not compared")
    if gen in ("date_bins", "datetime_bins"):
        return _Measure("years", "TVComplement")
    if gen in ("numeric_quantiles", "conditional_quantiles"):
        return numeric
    if gen == "date_offset":
        start = col.params.get("from_column") or (
            stats.offset.from_column if stats and stats.offset else None
        )
        return _Measure("offsets", "KSComplement", start=start)
    return _Measure("nulls", "NullSimilarity")


def _typed_value(value: Any, logical_type: str) -> Any:
    """A value as the destination column holds it (dirty extracts keep numbers as text), or
    None when the destination cannot hold it."""
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    try:
        if logical_type == "integer":
            if isinstance(value, int | Decimal) or (isinstance(value, str) and value.strip()):
                exact = Decimal(value.strip() if isinstance(value, str) else value)
                return int(exact) if exact == exact.to_integral_value() else None
            f = float(value)  # 64-bit ids stay exact above: floats only here
            return int(f) if f.is_integer() else None
        if logical_type == "float":
            return float(value)
        if logical_type == "boolean":
            if isinstance(value, str):
                return {"true": True, "false": False, "1": True, "0": False}.get(value.lower())
            return bool(value)
        if logical_type == "string":
            return str(value)
    except (TypeError, ValueError, ArithmeticError):
        return None
    return value  # dates as the drivers return them


def _tv(
    source: dict[Any, int], n_source: int, synthetic: dict[Any, int], n_synthetic: int
) -> float:
    """TVComplement over the listed keys plus one pooled bucket for every other value."""
    keys = list(dict.fromkeys([*source, *synthetic]))
    p = [float(source.get(key, 0)) for key in keys]
    q = [float(synthetic.get(key, 0)) for key in keys]
    p.append(max(0.0, n_source - sum(p)))
    q.append(max(0.0, n_synthetic - sum(q)))
    return tv_complement(p, q)


def _categories(
    src: _Side, dst: _Side, column: str, logical_type: str, k: int, n: tuple[int, int]
) -> float | None:
    """TVComplement over the source's values seen at least k times (at most
    MAX_SOURCE_CATEGORIES of them), every other value pooled; None when no value passes k."""
    q = src.col(column)
    rows = src.all(
        f"SELECT {q}, COUNT(*) FROM {src.tbl} WHERE {q} IS NOT NULL GROUP BY {q} "
        f"HAVING COUNT(*) >= :k ORDER BY COUNT(*) DESC LIMIT {MAX_SOURCE_CATEGORIES}",
        k=k,
    )
    if not rows:
        return None
    source: dict[Any, int] = {}
    for value, count in rows:
        key = _typed_value(value, logical_type)
        # a value the destination cannot hold (text in a number column) keeps its share
        # apart: no synthetic value can match it
        key = ("unrepresentable", len(source)) if key is None else key
        source[key] = source.get(key, 0) + int(count)
    wanted = [v for v in source if not isinstance(v, tuple)]
    synthetic: dict[Any, int] = {}
    if wanted:
        d = dst.col(column)
        stmt = sa.text(
            f"SELECT {d}, COUNT(*) FROM {dst.tbl} WHERE {d} IN :values GROUP BY {d}"
        ).bindparams(sa.bindparam("values", expanding=True))
        with dst.engine.connect() as conn:
            for value, count in conn.execute(stmt, {"values": wanted}).all():
                key = _typed_value(value, logical_type)
                if key in source:
                    synthetic[key] = synthetic.get(key, 0) + int(count)
    return _tv(source, n[0], synthetic, n[1])


def _count_years(side: _Side, column: str) -> dict[int, int]:
    year = side.year(column)
    if side.sqlite:  # the NULL group dropped here: SQLite would work the year out twice a row
        rows = side.all(f"SELECT {year}, COUNT(*) FROM {side.tbl} GROUP BY {year}")
        return {int(y): int(c) for y, c in rows if y is not None}
    rows = side.all(
        f"SELECT {year}, COUNT(*) FROM {side.tbl} WHERE {year} IS NOT NULL GROUP BY {year}"
    )
    return {int(y): int(c) for y, c in rows}


def _per_value(side: _Side, expr: str) -> dict[Any, int]:
    """SQLite: rows per non-NULL value of a numeric expression, in one grouped read (its range
    and its buckets are then worked out from these, as _ks_between's SQL would)."""
    rows = side.all(f"SELECT {expr}, COUNT(*) FROM {side.tbl} GROUP BY {expr}")
    return {v: int(n) for v, n in rows if v is not None}


def _buckets(values: dict[Any, int], lo: float, hi: float) -> dict[float, int]:
    """_ks_between's buckets of per-value counts: ``CAST((x - lo) * scale AS INTEGER)`` (SQLite
    truncates, as int() does; the same double arithmetic), the last bucket from ``hi`` on."""
    scale = KS_BUCKETS / (hi - lo)
    out: dict[float, int] = {}
    for v, n in values.items():
        key = float(KS_BUCKETS - 1 if v >= hi else int((v - lo) * scale))
        out[key] = out.get(key, 0) + n
    return out


def _ks_between(
    src: _Side, dst: _Side, exprs: tuple[str, str], ranges: list[tuple], integer: bool
) -> float | None:
    """Two-sample KSComplement of a numeric expression, from counts per value (integers over a
    short range: exact) or per bucket of the joint range (a gap inside a bucket is missed, at
    most that bucket's share). None when neither side has a value.

    An SQLite side of at most PER_VALUE_ROWS rows is read once, per value (its range was not in
    the first scan): the range and the buckets come from those counts, each expression worked
    out once a row."""
    sides = (src, dst)
    per_value = [
        _per_value(side, e) if side.per_value else None
        for side, e in zip(sides, exprs, strict=True)
    ]
    ranges = [
        ((min(v), max(v)) if v else (None, None)) if v is not None else r
        for v, r in zip(per_value, ranges, strict=True)
    ]
    ends = [float(v) for lo_hi in ranges for v in lo_hi if v is not None]
    if not ends:
        return None
    lo, hi = min(ends), max(ends)
    exact = hi <= lo or (integer and hi - lo <= EXACT_KS_RANGE)
    counts = []
    for side, expr, values in zip(sides, exprs, per_value, strict=True):
        if values is not None:
            buckets = {float(v): n for v, n in values.items()} if exact else None
            counts.append(buckets if buckets is not None else _buckets(values, lo, hi))
            continue
        if exact:
            key, params = expr, {}
        else:
            key = (
                f"(CASE WHEN {expr} >= :hi THEN {KS_BUCKETS - 1} "
                f"ELSE {floor_sql(side.engine, f'({expr} - :lo) * :scale')} END)"
            )
            params = {"lo": lo, "hi": hi, "scale": KS_BUCKETS / (hi - lo)}
        rows = side.all(
            f"SELECT {key}, COUNT(*) FROM {side.tbl} WHERE {expr} IS NOT NULL GROUP BY {key}",
            **params,
        )
        counts.append({float(v): int(n) for v, n in rows if v is not None})
    totals = [sum(c.values()) for c in counts]
    if not any(totals):
        return None
    if not all(totals):
        return 0.0  # one side has values, the other none
    keys = sorted(set(counts[0]) | set(counts[1]))
    cdf = [
        np.cumsum([c.get(key, 0) for key in keys]) / t for c, t in zip(counts, totals, strict=True)
    ]
    return round(1 - float(np.max(np.abs(cdf[0] - cdf[1]))), 4)


def score_against_source(
    source: Engine,
    source_schema: str | None,
    destination: Engine,
    destination_schema: str | None,
    cfg: TableConfig,
    fidelity: TableFidelity,
    k: int,
) -> TableFidelity:
    """Score every column of ``fidelity`` against the source table as well (filled in place).

    Runs inside the trusted environment with aggregate SQL only: one statement of counts and
    ranges on each side, then per column one grouped statement on each side (on SQLite the
    ranges of numeric expressions come with their per-value counts instead, each expression
    worked out once a row). Category columns
    are compared over the source's values seen at least k times (the rest pooled as one
    "other"); a category column whose source has no such value (identifiers, free text) is
    compared by its string lengths or numbers instead. The result holds scores, never a value.
    """
    names = list_tables(source, source_schema)
    if cfg.table not in names:
        fidelity.source_note = "no such table in the source: nothing to compare with"
        return fidelity
    src = _Side(source, source_schema, names[cfg.table])
    dst = _Side(destination, destination_schema, cfg.table)
    measures = {c.column: _measure_of(cfg.columns[c.column]) for c in fidelity.columns}
    try:
        scan = _scan(src, dst, measures, _zero_is_null(source, source_schema, cfg.table))
    except _Unreadable as exc:
        fidelity.source_note = str(exc)
        return fidelity
    fidelity.source_rows = scan.rows[0]
    for score in fidelity.columns:
        c = score.column
        score.against_source = _score_column(src, dst, c, cfg.columns[c], measures[c], k, scan)
    return fidelity


def _zero_is_null(source: Engine, source_schema: str | None, table: str) -> set[str]:
    """The columns (lower case) where 0 stands for NULL: the nullable references to
    patient-level tables, as the statistics read them (OMOP's convention, column_role decides)."""
    reflected = read_table_schema(source, source_schema, table)
    return {
        c.name.lower()
        for c in reflected.columns
        if c.nullable and column_role(reflected, c.name) == "foreign_key"
    }


class _Unreadable(Exception):
    """A side's table could not be read: the note says which side, never the database's text."""


@dataclass
class _Scan:
    """Both sides' first statement: rows, non-NULL values per column present on both sides,
    and the (min, max) of each numeric expression a column may be compared by."""

    rows: tuple[int, int]
    non_null: dict[str, tuple[int, int]]
    ranges: dict[tuple[str, str], list[tuple]]


def _scan(src: _Side, dst: _Side, measures: dict[str, _Measure], zero_is_null: set[str]) -> _Scan:
    """One statement of counts and ranges on each side (no ranges from an SQLite side of at
    most PER_VALUE_ROWS rows: _ks_between reads them with its counts)."""
    present = [c for c in measures if src.has(c) and dst.has(c)]
    # the numeric expressions a column may be compared by (its own, or its fallback's)
    numeric = [
        (c, m)
        for c in present
        for m in (measures[c], measures[c].fallback)
        if m and m.expression(src, c) and m.expression(dst, c)
    ]
    scans = []
    for side in (src, dst):
        parts = ["COUNT(*)"] + [side.count(c, c.lower() in zero_is_null) for c in present]
        ranges = [f"{f}({m.expression(side, c)})" for c, m in numeric for f in ("MIN", "MAX")]
        # SQLite: none here, _ks_between reads them with its counts (one evaluation a row)
        parts += ["NULL" for _ in ranges] if side.sqlite else ranges
        try:
            scans.append(list(side.one(f"SELECT {', '.join(parts)} FROM {side.tbl}")))
            side.per_value = side.sqlite and int(scans[-1][0]) <= PER_VALUE_ROWS
            if side.sqlite and not side.per_value and ranges:
                # too many values to bring back: ranges and buckets in SQL
                found = side.one(f"SELECT {', '.join(ranges)} FROM {side.tbl}")
                scans[-1][len(parts) - len(ranges) :] = list(found)
        except sa.exc.DBAPIError as exc:  # its text may quote a source value: the name only
            where = "source" if side is src else "destination"
            raise _Unreadable(
                f"the {where} table could not be read ({type(exc.orig).__name__})"
            ) from None
    at = 1 + len(present)
    return _Scan(
        rows=(int(scans[0][0]), int(scans[1][0])),
        non_null={c: (int(scans[0][1 + i]), int(scans[1][1 + i])) for i, c in enumerate(present)},
        ranges={
            (c, m.kind): [(s[at + 2 * i], s[at + 2 * i + 1]) for s in scans]
            for i, (c, m) in enumerate(numeric)
        },
    )


def _score_column(
    src: _Side, dst: _Side, c: str, col: ColumnConfig, m: _Measure, k: int, scan: _Scan
) -> SourceScore:
    """One column's score against the source, with its null similarity and a note."""
    if m.kind == "references":
        return SourceScore(
            m.metric, None, None, "a reference: its ids are synthetic keys, not the source's"
        )
    if c not in scan.non_null:
        where = "source" if not src.has(c) else "destination"
        return SourceScore(m.metric, None, None, f"no such column in the {where}")
    rows, non_null = scan.rows, scan.non_null[c]
    nulls = None
    if all(rows):
        share = [(n - nn) / n for n, nn in zip(rows, non_null, strict=True)]
        nulls = round(1 - abs(share[0] - share[1]), 4)
    try:
        metric, value = _compare(src, dst, c, col, m, k, non_null, scan.ranges)
    except sa.exc.DBAPIError as exc:  # its text may quote a source value: the name only
        return SourceScore(
            m.metric, None, nulls, f"could not be measured ({type(exc.orig).__name__})"
        )
    if value is None:  # no value on either side to compare: only the nulls
        metric, value = "NullSimilarity", nulls
    empty = non_null == (0, 0)
    return SourceScore(
        metric, value, nulls, "NULL throughout on both sides" if empty else "", empty
    )


def _compare(
    src: _Side,
    dst: _Side,
    column: str,
    col: ColumnConfig,
    m: _Measure,
    k: int,
    non_null: tuple[int, int],
    ranges: dict,
) -> tuple[str, float | None]:
    """(metric, score) of one column against the source; None when there is nothing to compare."""
    if m.kind == "nulls" or not any(non_null):
        return m.metric, None
    if not all(non_null):
        return m.metric, 0.0  # one side has values, the other none
    if m.kind == "categories":
        value = _categories(src, dst, column, col.type, k, non_null)
        if value is not None or m.fallback is None:
            return m.metric, value
        m = m.fallback
    if m.kind == "years":
        years = (_count_years(src, column), _count_years(dst, column))
        if not any(years):
            return m.metric, None
        return m.metric, _tv(years[0], sum(years[0].values()), years[1], sum(years[1].values()))
    exprs = (m.expression(src, column), m.expression(dst, column))
    if exprs[0] is None or exprs[1] is None:
        return m.metric, None
    return m.metric, _ks_between(src, dst, exprs, ranges[(column, m.kind)], m.integer)
