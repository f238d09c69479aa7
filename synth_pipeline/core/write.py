"""Creating and filling destination tables in bulk, replaced atomically.

A table is built under a temporary name and swapped in within one transaction, together with
its row in the ``_synth_pipeline_tables`` register, so readers see the old table or the new
one and never a half-written one. PostgreSQL is filled with COPY (psycopg 3), SQLite with
batched executemany inside the transaction.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .database import is_postgres, qualified, quote
from .generators import POLARS_TYPES

REGISTER_TABLE = "_synth_pipeline_tables"
TEMP_SUFFIX = "__synth_new"


@dataclass(frozen=True)
class ColumnDef:
    name: str
    logical_type: str
    max_length: int | None = None


def sa_type(logical_type: str, max_length: int | None) -> sa.types.TypeEngine:
    return {
        "integer": sa.BigInteger(),
        "float": sa.Double(),
        "string": sa.String(max_length) if max_length else sa.Text(),
        "date": sa.Date(),
        "datetime": sa.DateTime(),
        "boolean": sa.Boolean(),
    }[logical_type]


def _table(
    name: str,
    schema: str | None,
    columns: list[ColumnDef],
    primary_key: str | None,
    pk_name: str | None,
) -> sa.Table:
    md = sa.MetaData(schema=schema)
    cols = [sa.Column(c.name, sa_type(c.logical_type, c.max_length), quote=True) for c in columns]
    args: list = list(cols)
    if primary_key:
        args.append(sa.PrimaryKeyConstraint(primary_key, name=pk_name))
    return sa.Table(name, md, *args, quote=True)


def _sqlite_rows(df: pl.DataFrame) -> list[tuple]:
    """Rows as SQLite stores them: ISO text dates, integers for booleans."""
    exprs = []
    for name, dtype in df.schema.items():
        if dtype == pl.Date:
            exprs.append(pl.col(name).dt.strftime("%Y-%m-%d"))
        elif isinstance(dtype, pl.Datetime):
            exprs.append(pl.col(name).dt.strftime("%Y-%m-%d %H:%M:%S"))
        elif dtype == pl.Boolean:
            exprs.append(pl.col(name).cast(pl.Int8))
        else:
            exprs.append(pl.col(name))
    return df.select(exprs).rows()


def _copy_into(conn: Connection, target: str, columns: list[ColumnDef], df: pl.DataFrame) -> None:
    cols = ", ".join(quote(conn.engine, c.name) for c in columns)
    text = df.write_csv(
        include_header=False, datetime_format="%Y-%m-%d %H:%M:%S%.6f", date_format="%Y-%m-%d"
    )
    driver = conn.connection.driver_connection
    with (
        driver.cursor() as cur,
        cur.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT CSV)") as copy,
    ):
        copy.write(text)


def load_chunks(
    conn: Connection,
    target: str,
    columns: list[ColumnDef],
    chunks: Iterable[pl.DataFrame],
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """Append DataFrames to an existing table in the connection's transaction; returns rows."""
    total = 0
    pg = is_postgres(conn.engine)
    insert = None
    if not pg:
        placeholders = ", ".join("?" for _ in columns)
        names = ", ".join(quote(conn.engine, c.name) for c in columns)
        insert = f"INSERT INTO {target} ({names}) VALUES ({placeholders})"
    for df in chunks:
        if df.height == 0:
            continue
        if pg:
            _copy_into(conn, target, columns, df)
        else:
            conn.exec_driver_sql(insert, _sqlite_rows(df))  # type: ignore[arg-type]
        total += df.height
        if on_chunk:
            on_chunk(total)
    return total


def ensure_register(conn: Connection, schema: str | None) -> sa.Table:
    md = sa.MetaData(schema=schema)
    reg = sa.Table(
        REGISTER_TABLE,
        md,
        sa.Column("table_name", sa.String(200), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.Column("config_fingerprint", sa.String(80), nullable=False),
        sa.Column("seed", sa.BigInteger),
        sa.Column("scale", sa.Double),
        sa.Column("parent_rows", sa.Text),  # JSON: parent table -> rows its references used
        sa.Column("generator_version", sa.String(40), nullable=False),
        sa.Column("written_at", sa.String(40), nullable=False),
    )
    md.create_all(conn, checkfirst=True)
    return reg


@dataclass
class RegisterEntry:
    kind: str
    config_fingerprint: str
    seed: int | None
    scale: float | None
    parent_rows: dict[str, int]
    generator_version: str


def replace_table(
    engine: Engine,
    schema: str | None,
    table: str,
    columns: list[ColumnDef],
    chunks: Iterable[pl.DataFrame],
    *,
    primary_key: str | None,
    entry: RegisterEntry,
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """Build ``table`` from ``chunks`` under a temporary name and swap it in atomically."""
    temp = f"{table}{TEMP_SUFFIX}"[:63]
    token = secrets.token_hex(4)
    pk_name = f"{table[:40]}_pk_{token}" if primary_key else None
    with engine.begin() as conn:
        _table(temp, schema, columns, None, None).drop(conn, checkfirst=True)
        new = _table(temp, schema, columns, primary_key, pk_name)
        new.create(conn)
        rows = load_chunks(conn, qualified(engine, schema, temp), columns, chunks, on_chunk)
        _table(table, schema, columns, None, None).drop(conn, checkfirst=True)
        conn.exec_driver_sql(
            f"ALTER TABLE {qualified(engine, schema, temp)} RENAME TO {quote(engine, table)}"
        )
        reg = ensure_register(conn, schema)
        conn.execute(reg.delete().where(reg.c.table_name == table))
        conn.execute(
            reg.insert().values(
                table_name=table,
                kind=entry.kind,
                rows=rows,
                config_fingerprint=entry.config_fingerprint,
                seed=entry.seed,
                scale=entry.scale,
                parent_rows=json.dumps(entry.parent_rows, sort_keys=True),
                generator_version=entry.generator_version,
                written_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            )
        )
    return rows


def read_register(engine: Engine, schema: str | None) -> dict[str, dict]:
    insp = sa.inspect(engine)
    if REGISTER_TABLE not in insp.get_table_names(schema=schema):
        return {}
    with engine.connect() as conn:
        rows = (
            conn.execute(sa.text(f"SELECT * FROM {qualified(engine, schema, REGISTER_TABLE)}"))
            .mappings()
            .all()
        )
    out = {}
    for r in rows:
        d = dict(r)
        d["parent_rows"] = json.loads(d.get("parent_rows") or "{}")
        out[d["table_name"]] = d
    return out


def coerce_frame(rows: list[tuple], columns: list[ColumnDef]) -> pl.DataFrame:
    """Database rows as a typed DataFrame (SQLite hands back dates as text, PostgreSQL as dates)."""
    data = list(zip(*rows, strict=True)) if rows else [[] for _ in columns]
    series = []
    for c, values in zip(columns, data, strict=True):
        target = POLARS_TYPES[c.logical_type]
        s = pl.Series(c.name, list(values), dtype=None if values else target, strict=False)
        series.append(_cast(s, c.logical_type, target))
    return pl.DataFrame(series)


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
    engine: Engine, sql: str, columns: list[ColumnDef], batch_rows: int = 100_000
) -> Iterator[pl.DataFrame]:
    """Rows of a query as typed DataFrames, fetched in batches so memory stays flat."""
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True, yield_per=batch_rows).exec_driver_sql(
            sql
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
) -> int:
    """Stream a (public vocabulary) table from the source into the destination, swapped in atomically."""
    cols = ", ".join(quote(source, c.name) for c in columns)
    sql = f"SELECT {cols} FROM {qualified(source, source_schema, source_table)}"
    chunks = stream_select(source, sql, columns, batch_rows)
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


def drop_table(engine: Engine, schema: str | None, table: str) -> None:
    """Remove a table and its register row (a table the project no longer generates)."""
    with engine.begin() as conn:
        _table(table, schema, [ColumnDef("x", "integer")], None, None).drop(conn, checkfirst=True)
        reg = ensure_register(conn, schema)
        conn.execute(reg.delete().where(reg.c.table_name == table))
