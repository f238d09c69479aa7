"""Creating and filling destination tables in bulk, replaced atomically.

A table is built under a temporary name and swapped in within one transaction, together with
its row in the ``_synth_pipeline_tables`` register, so readers see the old table or the new
one and never a half-written one. PostgreSQL is filled with one binary COPY (psycopg 3), SQLite
with batched executemany inside the transaction; the next chunk is generated in a background
thread while the current one is written, and memory is bounded by a few chunks. A Dask
cluster's parts go into PostgreSQL over several connections instead (core/parallel_copy.py),
then through the same swap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import queue
import re
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import polars as pl
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .database import is_duckdb, is_postgres, is_transient_error, qualified, quote
from .errors import DatabaseError
from .pg_copy import (
    COPY_BINARY_HEADER,
    COPY_BINARY_TRAILER,
    COPY_PIECE_ROWS,
    binary_copy_rows,
)
from .schema import ColumnDef, sa_type

REGISTER_TABLE = "_synth_pipeline_tables"
TEMP_SUFFIX = "__synth_new"


def _table(
    name: str,
    schema: str | None,
    columns: list[ColumnDef],
    primary_key: str | None,
    pk_name: str | None,
) -> sa.Table:
    md = sa.MetaData(schema=schema)
    # autoincrement=False: an integer primary key is a plain column (DuckDB's dialect would
    # otherwise declare it SERIAL, a type DuckDB does not have)
    cols = [
        sa.Column(c.name, sa_type(c.logical_type, c.max_length), quote=True, autoincrement=False)
        for c in columns
    ]
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


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def prefetch(items: Iterable, depth: int = 1) -> Iterator:
    """Produce ``items`` in a background thread, at most ``depth`` ahead of the consumer.

    Generating and encoding the next chunk (NumPy and Polars release the GIL) then overlaps
    with the database taking in the current one. Memory stays bounded by ``depth`` + 2 items.
    An exception in the producer is raised in the consumer; a consumer that stops early stops
    the producer.
    """
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer as it is
            put(_Failed(exc))

    worker = threading.Thread(target=produce, name="synth-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item
    finally:
        stop.set()
        worker.join()


def load_chunks(
    conn: Connection,
    target: str,
    columns: list[ColumnDef],
    chunks: Iterable[pl.DataFrame],
    on_chunk: Callable[[int], None] | None = None,
) -> int:
    """Append DataFrames to an existing table in the connection's transaction; returns rows.

    PostgreSQL: one binary COPY for all chunks. DuckDB: each chunk handed over as Arrow and
    inserted by one INSERT ... SELECT. SQLite: executemany per chunk. Either way the next chunk
    is produced (and encoded) in a background thread while this one is written.
    """
    total = 0
    if is_duckdb(conn.engine):
        names = ", ".join(quote(conn.engine, c.name) for c in columns)
        driver = conn.connection.driver_connection
        view = f"_synth_pipeline_chunk_{secrets.token_hex(4)}"
        for df in prefetch(df for df in chunks if df.height):
            driver.register(view, df.select([c.name for c in columns]).to_arrow())
            try:
                conn.exec_driver_sql(f"INSERT INTO {target} ({names}) SELECT {names} FROM {view}")
            finally:
                # after a refused insert the transaction is aborted and unregistering fails
                # too: the insert's own error is the one to report
                with contextlib.suppress(Exception):
                    driver.unregister(view)
            total += df.height
            if on_chunk:
                on_chunk(total)
        return total
    if is_postgres(conn.engine):
        cols = ", ".join(quote(conn.engine, c.name) for c in columns)
        encoded = (
            (piece.height, binary_copy_rows(piece, columns))
            for df in chunks
            for piece in df.iter_slices(COPY_PIECE_ROWS)
            if piece.height
        )
        driver = conn.connection.driver_connection
        with (
            driver.cursor() as cur,
            cur.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT BINARY)") as copy,
        ):
            copy.write(COPY_BINARY_HEADER)
            for height, parts in prefetch(encoded, depth=4):
                for part in parts:
                    copy.write(memoryview(part))
                total += height
                if on_chunk:
                    on_chunk(total)
            copy.write(COPY_BINARY_TRAILER)
        return total
    placeholders = ", ".join("?" for _ in columns)
    names = ", ".join(quote(conn.engine, c.name) for c in columns)
    insert = f"INSERT INTO {target} ({names}) VALUES ({placeholders})"
    rows = ((df.height, _sqlite_rows(df)) for df in chunks if df.height)
    for height, batch in prefetch(rows):
        conn.exec_driver_sql(insert, batch)  # type: ignore[arg-type]
        total += height
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
        # JSON: check name -> {passed, blocking, reason} for this generation; NULL until checked
        sa.Column("checks", sa.Text),
        # URL of the Parquet parts this version was loaded from, kept for the bundle (issue 18)
        sa.Column("parts", sa.Text),
    )
    md.create_all(conn, checkfirst=True)
    present = {c["name"] for c in sa.inspect(conn).get_columns(REGISTER_TABLE, schema=schema)}
    # a register from before checks were recorded: its tables count as unchecked; from before
    # parts were kept: its tables are bundled from the destination
    for missing in [c for c in ("checks", "parts") if c not in present]:
        conn.exec_driver_sql(
            f"ALTER TABLE {qualified(conn.engine, schema, REGISTER_TABLE)} ADD COLUMN "
            f"{quote(conn.engine, missing)} TEXT"
        )
    return reg


def record_checks(
    engine: Engine,
    schema: str | None,
    table: str,
    config_fingerprint: str,
    outcomes: dict[str, dict],
) -> bool:
    """Store the check outcomes of ``table``'s latest generation in its register row
    (``outcomes``: check name -> {"passed", "blocking", "reason"}); False when the register holds
    no row of that generation (the table was rewritten from another config meanwhile)."""
    with engine.begin() as conn:
        reg = ensure_register(conn, schema)
        done = conn.execute(
            reg.update()
            .where(reg.c.table_name == table, reg.c.config_fingerprint == config_fingerprint)
            .values(checks=json.dumps(outcomes, sort_keys=True))
        )
        return bool(done.rowcount)


@dataclass
class RegisterEntry:
    kind: str
    config_fingerprint: str
    seed: int | None
    scale: float | None
    parent_rows: dict[str, int]
    generator_version: str
    parts: str | None = None  # where the parts it was loaded from are kept (core/distributed.py)


@runtime_checkable
class ParallelLoad(Protocol):
    """Rows that go into PostgreSQL over ``copy_streams`` connections at once (issue 18: a Dask
    cluster's parts, core/parallel_copy.py). ``replace_table`` hands them the table, the name of
    its staging table and the key; they fill the staging table and call :func:`swap_in`."""

    copy_streams: int

    def replace_in_parallel(
        self,
        engine: Engine,
        schema: str | None,
        table: str,
        temp: str,
        columns: list[ColumnDef],
        primary_key: str | None,
        pk_name: str | None,
        entry: RegisterEntry,
        on_chunk: Callable[[int], None] | None,
    ) -> int: ...


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
    """Build ``table`` from ``chunks`` under a temporary name and swap it in atomically.

    Rows the destination refuses (a value too long for its column, say) raise
    :class:`DatabaseError` naming the table and, when the database says, the column; the
    previous table stays as it was.
    """
    temp = f"{table}{TEMP_SUFFIX}"[:63]
    token = secrets.token_hex(4)
    pk_name = f"{table[:40]}_pk_{token}" if primary_key else None
    # PostgreSQL builds the primary key index once after the load (a bulk sort) rather than
    # row by row; SQLite cannot add a primary key to an existing table, so it declares it first.
    index_after = primary_key is not None and is_postgres(engine)
    try:
        # -- issue 18: rows that load themselves over several PostgreSQL connections (a Dask
        # cluster's parts, core/parallel_copy.py) get the staging table's name; the rest below
        if is_postgres(engine) and isinstance(chunks, ParallelLoad) and chunks.copy_streams > 1:
            return chunks.replace_in_parallel(
                engine, schema, table, temp, columns, primary_key, pk_name, entry, on_chunk
            )
        # -- end of issue 18
        return _replace(
            engine,
            schema,
            table,
            temp,
            columns,
            chunks,
            primary_key,
            pk_name,
            index_after,
            entry,
            on_chunk,
        )
    except Exception as exc:
        problem = database_problem(exc, f"destination table {table}", columns)
        if problem is None:
            raise
        raise DatabaseError(problem) from exc


def _replace(
    engine: Engine,
    schema: str | None,
    table: str,
    temp: str,
    columns: list[ColumnDef],
    chunks: Iterable[pl.DataFrame],
    primary_key: str | None,
    pk_name: str | None,
    index_after: bool,
    entry: RegisterEntry,
    on_chunk: Callable[[int], None] | None,
) -> int:
    with engine.begin() as conn:
        _table(temp, schema, columns, None, None).drop(conn, checkfirst=True)
        new = _table(temp, schema, columns, None if index_after else primary_key, pk_name)
        new.create(conn)
        rows = load_chunks(conn, qualified(engine, schema, temp), columns, chunks, on_chunk)
        key_after = primary_key if index_after else None
        swap_in(conn, schema, table, temp, columns, key_after, pk_name, rows, entry)
    return rows


def swap_in(
    conn: Connection,
    schema: str | None,
    table: str,
    temp: str,
    columns: list[ColumnDef],
    primary_key: str | None,
    pk_name: str | None,
    rows: int,
    entry: RegisterEntry,
) -> None:
    """In ``conn``'s transaction: add ``primary_key`` (when given) to the filled table ``temp``,
    put it in the place of ``table`` and write the table's register row."""
    engine = conn.engine
    if primary_key:
        conn.exec_driver_sql(
            f"ALTER TABLE {qualified(engine, schema, temp)} ADD CONSTRAINT "
            f"{quote(engine, pk_name)} PRIMARY KEY ({quote(engine, primary_key)})"  # type: ignore[arg-type]
        )
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
            parts=entry.parts,
            written_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        )
    )


def database_problem(exc: BaseException, where: str, columns: list[ColumnDef]) -> str | None:
    """What a database refused, after ``where`` (e.g. "destination table concept") and the
    column when the database names it; None for an error that is not a database refusing a
    statement (a transient one, which a retry may fix, or one raised while generating rows).

    Only the database's primary message is used: its detail and COPY context can quote a value.
    """
    if is_transient_error(exc):
        return None
    orig = exc.orig if isinstance(exc, sa.exc.DBAPIError) else exc
    if not type(orig).__module__.startswith(("psycopg", "sqlite3", "duckdb", "_duckdb")):
        return None
    diag = getattr(orig, "diag", None)
    text = str(orig).strip().splitlines()
    primary = (diag.message_primary if diag is not None else None) or (text[0] if text else "")
    column = diag.column_name if diag is not None else None
    context = (diag.context or "") if diag is not None else ""
    found = re.search(r"COPY [^\n]*?, line \d+, column (.*)", context)
    if column is None and found:
        # the COPY context names the column, then (in text format) a colon and the value
        after = found.group(1)
        names = sorted((c.name for c in columns), key=len, reverse=True)
        column = next((n for n in names if after == n or after.startswith(n + ":")), None)
    where += f", column {column}" if column else ""
    return f"{where}: {primary}" if primary else f"{where}: {type(orig).__name__}"


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
        d["checks"] = json.loads(d["checks"]) if d.get("checks") else None
        out[d["table_name"]] = d
    return out


def drop_table(engine: Engine, schema: str | None, table: str) -> None:
    """Remove a table and its register row (a table the project no longer generates)."""
    with engine.begin() as conn:
        _table(table, schema, [ColumnDef("x", "integer")], None, None).drop(conn, checkfirst=True)
        reg = ensure_register(conn, schema)
        conn.execute(reg.delete().where(reg.c.table_name == table))
