"""Creating and filling destination tables in bulk, replaced atomically.

A table is built under a temporary name and swapped in within one transaction, together with
its row in the ``_synth_pipeline_tables`` register, so readers see the old table or the new
one and never a half-written one. PostgreSQL is filled with one binary COPY (psycopg 3), SQLite
with batched executemany inside the transaction; the next chunk is generated in a background
thread while the current one is written, and memory is bounded by a few chunks.
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

import numpy as np
import polars as pl
import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .database import is_duckdb, is_postgres, is_transient_error, qualified, quote
from .errors import DatabaseError
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


# PostgreSQL's binary COPY format: a signature, flags and header extension length, then per row
# a 16-bit field count and per field a 32-bit byte length (-1 for NULL) and the value's bytes,
# all big-endian; a field count of -1 ends the stream.
COPY_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
COPY_BINARY_TRAILER = b"\xff\xff"
_PG_EPOCH_DAYS = 10_957  # 2000-01-01 in days since 1970-01-01
_PG_EPOCH_MICROS = _PG_EPOCH_DAYS * 86_400_000_000
_BATCH_BYTES = 1 << 20  # rows are assembled in batches of about this size, to stay in cache
# Chunks are encoded and sent in pieces of this many rows, up to four pieces ahead of the
# database: small enough for the server to start early, large enough to amortise the calls.
COPY_PIECE_ROWS = 65_536
_UINT = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}
_FIXED = {
    "integer": (">i8", 8),
    "float": (">f8", 8),
    "date": (">i4", 4),
    "datetime": (">i8", 8),
    "boolean": (">u1", 1),
}


def _big_endian(values: np.ndarray, code: str, width: int) -> np.ndarray:
    """Values as big-endian bytes, seen as native unsigned integers of the same width."""
    return np.ascontiguousarray(values.astype(code)).view(_UINT[width])


def _strided(buf: np.ndarray, pos: int, row_bytes: int, rows: int, dtype) -> np.ndarray:
    """A view of one field in every row of a row-major byte buffer (unaligned is fine)."""
    return np.ndarray(shape=(rows,), dtype=dtype, buffer=buf, offset=pos, strides=(row_bytes,))


class _FixedField:
    """A fixed-width column: 4 length bytes, then the value (or only length -1 for NULL)."""

    def __init__(self, s: pl.Series, logical: str):
        code, self.width = _FIXED[logical]
        if logical == "date":
            v = s.cast(pl.Date).cast(pl.Int32).fill_null(0).to_numpy() - _PG_EPOCH_DAYS
        elif logical == "datetime":
            v = s.cast(pl.Datetime("us")).cast(pl.Int64).fill_null(0).to_numpy() - _PG_EPOCH_MICROS
        elif logical == "boolean":
            v = s.cast(pl.Boolean).cast(pl.UInt8).fill_null(0).to_numpy()
        elif logical == "integer":
            v = s.cast(pl.Int64).fill_null(0).to_numpy()
        else:
            v = s.cast(pl.Float64).fill_null(0).to_numpy()
        self.values = _big_endian(v, code, self.width)
        self.length = _big_endian(np.array([self.width]), ">i4", 4)[0]
        self.lengths = self.keep = None
        if s.null_count():
            valid = s.is_not_null().to_numpy()
            self.lengths = _big_endian(np.where(valid, self.width, -1), ">i4", 4)
            # every byte of a value is kept (1) or dropped (0) with its row's validity
            ones = _UINT[self.width](int.from_bytes(b"\x01" * self.width, "little"))
            self.keep = valid.astype(_UINT[self.width]) * ones

    def slot(self, a: int, b: int) -> int:
        return self.width

    def fill(self, out, keep, row_bytes: int, pos: int, a: int, b: int, width: int) -> None:
        n = b - a
        lengths = self.length if self.lengths is None else self.lengths[a:b]
        _strided(out, pos, row_bytes, n, np.uint32)[...] = lengths
        _strided(out, pos + 4, row_bytes, n, _UINT[self.width])[...] = self.values[a:b]
        if self.keep is not None:
            _strided(keep, pos + 4, row_bytes, n, _UINT[self.width])[...] = self.keep[a:b]


class _TextField:
    """A string column: 4 length bytes, then its UTF-8 bytes (or only length -1 for NULL)."""

    def __init__(self, s: pl.Series):
        n = len(s)
        arr = s.cast(pl.Utf8).to_arrow(compat_level=pl.CompatLevel.oldest())
        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if arr.type != pa.large_utf8():
            arr = arr.cast(pa.large_utf8())
        offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[arr.offset : arr.offset + n + 1]
        data = arr.buffers()[2]
        data = np.frombuffer(data, dtype=np.uint8) if data is not None else np.zeros(0, np.uint8)
        lens = np.diff(offsets)
        valid = s.is_not_null().to_numpy() if s.null_count() else None
        if valid is not None:
            lens = np.where(valid, lens, 0)
        widest = int(lens.max()) if n else 0
        # rows of the data buffer as overlapping windows, so a batch's values are one gather
        padded = np.concatenate([data, np.zeros(widest + 1, np.uint8)])
        self.windows = np.lib.stride_tricks.sliding_window_view(padded, max(widest, 1))
        self.starts = offsets[:-1]
        self.lens = lens
        self.lengths = _big_endian(lens if valid is None else np.where(valid, lens, -1), ">i4", 4)

    def slot(self, a: int, b: int) -> int:
        return int(self.lens[a:b].max()) if b > a else 0

    def fill(self, out, keep, row_bytes: int, pos: int, a: int, b: int, width: int) -> None:
        n = b - a
        _strided(out, pos, row_bytes, n, np.uint32)[...] = self.lengths[a:b]
        if not width:
            return
        body = np.ascontiguousarray(self.windows[self.starts[a:b], :width])
        _strided(out, pos + 4, row_bytes, n, f"V{width}")[...] = body.view(f"V{width}").ravel()
        inside = (np.arange(width) < self.lens[a:b, None]).view(np.uint8)
        _strided(keep, pos + 4, row_bytes, n, f"V{width}")[...] = inside.view(f"V{width}").ravel()


def binary_copy_rows(df: pl.DataFrame, columns: list[ColumnDef]) -> list[np.ndarray]:
    """The rows of ``df`` in PostgreSQL's binary COPY format (without header and trailer).

    Vectorised: each batch of rows is laid out in a row-major buffer with every field at its
    widest, filled column by column through strided views, and the unused bytes (NULL values,
    short strings) are then dropped in one filter.
    """
    n = df.height
    fields: list[_FixedField | _TextField] = [
        _TextField(df[c.name])
        if c.logical_type == "string"
        else _FixedField(df[c.name], c.logical_type)
        for c in columns
    ]
    fixed = 2 + sum(4 + f.width for f in fields if isinstance(f, _FixedField))
    texts = sum(1 for f in fields if isinstance(f, _TextField))
    masked = texts > 0 or any(f.keep is not None for f in fields if isinstance(f, _FixedField))
    count = _big_endian(np.array([len(fields)]), ">i2", 2)[0]
    step = max(16, _BATCH_BYTES // (fixed + 24 * texts))
    out = []
    for a in range(0, n, step):
        b = min(n, a + step)
        widths = [f.slot(a, b) for f in fields]
        row_bytes = 2 + sum(4 + w for w in widths)
        buf = np.empty((b - a) * row_bytes, np.uint8)
        keep = np.ones((b - a) * row_bytes, np.uint8) if masked else None
        _strided(buf, 0, row_bytes, b - a, np.uint16)[...] = count
        pos = 2
        for f, w in zip(fields, widths, strict=True):
            f.fill(buf, keep, row_bytes, pos, a, b, w)
            pos += 4 + w
        out.append(buf if keep is None else pl.Series(buf).filter(pl.Series(keep) != 0).to_numpy())
    return out


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
    )
    md.create_all(conn, checkfirst=True)
    present = {c["name"] for c in sa.inspect(conn).get_columns(REGISTER_TABLE, schema=schema)}
    if "checks" not in present:
        # a register from before checks were recorded: its tables count as unchecked
        conn.exec_driver_sql(
            f"ALTER TABLE {qualified(conn.engine, schema, REGISTER_TABLE)} ADD COLUMN "
            f"{quote(conn.engine, 'checks')} TEXT"
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
        if index_after:
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
                written_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
            )
        )
    return rows


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
_ROW_TYPES = {
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
            schema[c.name] = _ROW_TYPES[c.logical_type]
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
    sql = _filtered(
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


def _filtered(engine: Engine, sql: str, where: str | None, params: tuple) -> str:
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
        sql = _filtered(
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


def drop_table(engine: Engine, schema: str | None, table: str) -> None:
    """Remove a table and its register row (a table the project no longer generates)."""
    with engine.begin() as conn:
        _table(table, schema, [ColumnDef("x", "integer")], None, None).drop(conn, checkfirst=True)
        reg = ensure_register(conn, schema)
        conn.execute(reg.delete().where(reg.c.table_name == table))
