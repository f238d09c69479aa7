"""Reading rows out of a database into typed Polars frames, and copying a table from one database
to another (vocabulary tables, test fixtures), in chunks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .database import is_postgres, qualified, quote, sqlite_rows
from .errors import DatabaseError
from .generators import POLARS_TYPES
from .schema import ColumnDef
from .write import (
    RegisterEntry,
    database_problem,
    replace_table,
)


def coerce_frame(rows: list[tuple], columns: list[ColumnDef]) -> pl.DataFrame:
    """Database rows as a typed DataFrame (SQLite hands back dates as text, PostgreSQL as dates).

    Rows go to Polars as they are (built in Rust, no per-value Python work) when every value
    already has its column's type; dirty columns (mixed types) are converted value by value.
    """
    fast = _frame_from_rows(rows, columns)
    if fast is not None:
        return fast
    data = list(zip(*rows, strict=True)) if rows else [[] for _ in columns]
    series = []
    for c, values in zip(columns, data, strict=True):
        target = POLARS_TYPES[c.logical_type]
        s = pl.Series(c.name, list(values), dtype=None if values else target, strict=False)
        series.append(_cast(s, c.logical_type, target))
    return pl.DataFrame(series)


# How rows arrive from the drivers: SQLite gives dates and datetimes as text and booleans as
# integers; PostgreSQL gives them typed. Polars checks each value against these.
ROW_TYPES = {
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "string": pl.Utf8(),
    "boolean": pl.Boolean(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
}


def _frame_from_rows(rows: list[tuple], columns: list[ColumnDef]) -> pl.DataFrame | None:
    if not rows:
        return None
    schema = {}
    for i, c in enumerate(columns):
        v = None
        if c.logical_type in ("date", "datetime", "boolean"):
            v = next((r[i] for r in rows if r[i] is not None), None)
        if c.logical_type in ("date", "datetime") and isinstance(v, str):
            schema[c.name] = pl.Utf8()
        elif c.logical_type == "boolean" and isinstance(v, int) and not isinstance(v, bool):
            schema[c.name] = pl.Int64()
        else:
            schema[c.name] = ROW_TYPES[c.logical_type]
    try:
        df = pl.DataFrame(rows, schema=schema, orient="row", strict=True)
    except Exception:  # noqa: BLE001 - a value of another type: take the careful path
        return None
    return pl.DataFrame(
        [
            _cast(df[c.name], c.logical_type, POLARS_TYPES[c.logical_type]).alias(c.name)
            for c in columns
        ]
    )


def _cast(s: pl.Series, logical: str, target: pl.DataType) -> pl.Series:
    if s.dtype == target:
        return s
    if s.dtype == pl.Null:
        return s.cast(target)
    if logical in ("date", "datetime") and s.dtype == pl.Utf8:
        text = s.str.strip_chars()
        if logical == "date":
            return text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)
        with_time = text.str.to_datetime("%Y-%m-%d %H:%M:%S%.f", strict=False, time_unit="us")
        date_only = (
            text.str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("us"))
        )
        return with_time.fill_null(date_only)
    if logical == "datetime" and s.dtype == pl.Date:
        return s.cast(pl.Datetime("us"))
    if logical == "date" and isinstance(s.dtype, pl.Datetime):
        return s.cast(pl.Date)
    if logical == "string":
        return s.cast(pl.Utf8, strict=False)
    if logical == "boolean" and s.dtype in (pl.Int64, pl.Int32, pl.Utf8):
        return s.cast(pl.Utf8).replace({"1": "true", "0": "false"}).str.to_lowercase().eq("true")
    return s.cast(target, strict=False)


def stream_select(
    engine: Engine,
    sql: str,
    columns: list[ColumnDef],
    batch_rows: int = 100_000,
    params: tuple | None = None,
) -> Iterator[pl.DataFrame]:
    """Rows of a query as typed DataFrames, fetched in batches so memory stays flat.

    ``params`` are bound to the driver's placeholders in ``sql`` (``?`` on SQLite, ``%s`` on
    PostgreSQL, where a literal % is then written %%)."""
    with engine.connect() as conn:
        if conn.dialect.name == "sqlite":  # the driver's tuples as they are
            for rows in sqlite_rows(conn, sql, params if params else None, batch_rows):
                yield coerce_frame(rows, columns)
            return
        result = conn.execution_options(stream_results=True, yield_per=batch_rows).exec_driver_sql(
            sql, params if params else None
        )
        while True:
            batch = result.fetchmany(batch_rows)
            if not batch:
                break
            yield coerce_frame([tuple(r) for r in batch], columns)


def copy_table(
    source: Engine,
    source_schema: str | None,
    source_table: str,
    destination: Engine,
    destination_schema: str | None,
    table: str,
    columns: list[ColumnDef],
    *,
    entry: RegisterEntry,
    batch_rows: int = 200_000,
    on_chunk: Callable[[int], None] | None = None,
    where: str | None = None,
    params: tuple = (),
) -> int:
    """Stream a (public vocabulary) table from the source into the destination, swapped in atomically.

    ``where`` (SQL over quoted identifiers and driver placeholders, bound to ``params``) keeps
    only some rows; the filter runs in the source database. String columns are created as
    the source declares them (:func:`source_widths`), whatever ``columns`` says of their width.
    """
    columns = source_widths(source, source_schema, source_table, columns, where, params)
    cols = ", ".join(quote(source, c.name) for c in columns)
    sql = with_where(
        source,
        f"SELECT {cols} FROM {qualified(source, source_schema, source_table)}",
        where,
        params,
    )
    chunks = _reading(
        stream_select(source, sql, columns, batch_rows, params or None),
        f"source table {source_table}",
        columns,
    )
    return replace_table(
        destination,
        destination_schema,
        table,
        columns,
        chunks,
        primary_key=None,
        entry=entry,
        on_chunk=on_chunk,
    )


def _reading(chunks: Iterator[pl.DataFrame], where: str, columns: list[ColumnDef]):
    """``chunks`` as they come; a statement the source refuses is said to be the source's (the
    rows are read while the destination is written, so it would pass for the destination's)."""
    try:
        yield from chunks
    except Exception as exc:
        problem = database_problem(exc, where, columns)
        if problem is None:
            raise
        raise DatabaseError(problem) from exc


def with_where(engine: Engine, sql: str, where: str | None, params: tuple) -> str:
    """``sql`` with its WHERE clause over bound parameters, if any."""
    if not where:
        return sql
    if is_postgres(engine) and params:
        sql = sql.replace("%", "%%")  # the identifiers' own % signs, not placeholders
    return f"{sql} WHERE {where}"


def source_widths(
    source: Engine,
    source_schema: str | None,
    source_table: str,
    columns: list[ColumnDef],
    where: str | None = None,
    params: tuple = (),
) -> list[ColumnDef]:
    """``columns`` with each string column as wide as the source's own type: its declared
    width, or unbounded (TEXT) when the source declares none. Never the CDM's width, which a
    site's vocabulary rows may exceed (a 40-character vocabulary_id, say). A source that does
    not enforce declared widths (SQLite) may hold longer values: the width is then widened to
    the longest value among the rows ``where`` selects, so every row copied fits."""
    declared = {
        c["name"]: c["type"]
        for c in sa.inspect(source).get_columns(source_table, schema=source_schema)
    }
    widths: dict[str, int | None] = {}
    for c in columns:
        if c.logical_type == "string":
            t = declared.get(c.name)
            widths[c.name] = t.length if isinstance(t, sa.String) and t.length else None
    bounded = [name for name, width in widths.items() if width]
    if bounded and not is_postgres(source):
        longest = ", ".join(f"MAX(LENGTH({quote(source, n)}))" for n in bounded)
        sql = with_where(
            source,
            f"SELECT {longest} FROM {qualified(source, source_schema, source_table)}",
            where,
            params,
        )
        with source.connect() as conn:
            found = conn.exec_driver_sql(sql, params or None).one()
        for name, length in zip(bounded, found, strict=True):
            widths[name] = max(widths[name] or 0, int(length or 0))
    return [
        ColumnDef(c.name, c.logical_type, widths[c.name]) if c.name in widths else c
        for c in columns
    ]
