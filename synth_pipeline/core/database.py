"""Connections: read-only sources, writable destinations, and URLs that never show a password."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Engine, make_url

from .errors import DatabaseError

_PASSWORD_IN_TEXT = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")
# libpq also takes a password as a parameter: ?password=..., or password=... in a DSN
_PASSWORD_PARAMETER = re.compile(
    r"((?:^|[?&\s;'\"(])(?:ssl)?(?:password|passwd|pwd)\s*=\s*)('[^']*'|[^&\s;'\")]+)",
    re.IGNORECASE,
)


def normalise_url(url: str | URL) -> URL:
    """Parse a SQLAlchemy URL; bare ``postgresql://`` means psycopg 3, which does COPY."""
    try:
        u = make_url(url) if isinstance(url, str) else url
    except Exception as exc:  # noqa: BLE001 - SQLAlchemy raises several kinds
        raise DatabaseError(f"not a database URL: {redact_text(str(url))!r} ({exc})") from None
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    if u.get_backend_name() == "duckdb":
        from .duckdb_dialect import register

        register()
    return u


def redact(url: str | URL | None) -> str:
    """The URL as text with its password replaced by ***."""
    if url is None:
        return "<none>"
    try:
        u = make_url(url) if isinstance(url, str) else url
        return redact_text(u.render_as_string(hide_password=True))
    except Exception:  # noqa: BLE001 - whatever it is, never echo a secret
        return redact_text(str(url))


def redact_text(text: str) -> str:
    """Hide anything that looks like the password of a URL or DSN inside free text."""
    return _PASSWORD_PARAMETER.sub(r"\1***", _PASSWORD_IN_TEXT.sub(r"\1***\3", text))


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


def is_duckdb(engine: Engine) -> bool:
    return engine.dialect.name == "duckdb"


def pg_like(engine: Engine) -> bool:
    """PostgreSQL, or DuckDB, whose SQL (GROUPING SETS, percentile_disc over arrays, ANY over an
    array, typed dates) is PostgreSQL's for what the statistics and checks ask of it."""
    return is_postgres(engine) or is_duckdb(engine)


def file_path(url: URL) -> Path | None:
    """The file of a SQLite or DuckDB URL; None for a server or an in-memory database."""
    if url.get_backend_name() == "duckdb":
        db = url.database
        return Path(db) if db and db != ":memory:" and not db.startswith("md:") else None
    return sqlite_path(url)


def sqlite_path(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    db = url.database
    if db.startswith("file:"):
        db = db[len("file:") :]
    return Path(db)


def open_source(url: str | URL) -> Engine:
    """An engine on the source extract that cannot write.

    SQLite files open with ``mode=ro``; DuckDB files with ``read_only=True``; PostgreSQL sessions
    start with ``default_transaction_read_only=on``. The file or server must exist: a source is
    never created.
    """
    u = normalise_url(url)
    backend = u.get_backend_name()
    if backend == "sqlite":
        path = sqlite_path(u)
        if path is None:
            raise DatabaseError(f"source {redact(u)}: an in-memory SQLite database has no extract")
        if not path.exists():
            raise DatabaseError(f"source {redact(u)}: no such SQLite file {path}")
        ro = URL.create(
            "sqlite", database=f"file:{path.resolve()}", query={"mode": "ro", "uri": "true"}
        )
        engine = sa.create_engine(ro)
    elif backend == "duckdb":
        path = file_path(u)
        if path is None:
            raise DatabaseError(f"source {redact(u)}: an in-memory DuckDB database has no extract")
        if not path.exists():
            raise DatabaseError(f"source {redact(u)}: no such DuckDB file {path}")
        # DuckDB lets a config access_mode override read_only=True: a URL's own is dropped
        u = u.difference_update_query([k for k in u.query if k.lower() == "access_mode"])
        engine = sa.create_engine(
            u, connect_args={"read_only": True, "config": {"access_mode": "read_only"}}
        )
    elif backend == "postgresql":
        engine = sa.create_engine(
            u,
            connect_args={"options": "-c default_transaction_read_only=on"},
            pool_pre_ping=True,
        )
    else:
        engine = sa.create_engine(u)
    _check_connects(engine, "source", u)
    return engine


def open_destination(url: str | URL) -> Engine:
    """An engine on the destination database, which must already exist (SQLite and DuckDB files
    are created)."""
    u = normalise_url(url)
    if u.get_backend_name() in ("sqlite", "duckdb"):
        path = file_path(u)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(u, pool_pre_ping=True)
    if u.get_backend_name() == "sqlite":
        transactional_sqlite(engine)
    _check_connects(engine, "destination", u)
    return engine


def transactional_sqlite(engine: Engine) -> Engine:
    """Make SQLite run DDL inside the transaction too, so a table swap is all or nothing.

    Python's sqlite3 driver only opens transactions before DML; this hands BEGIN to
    SQLAlchemy (the recipe in SQLAlchemy's SQLite dialect documentation).
    """

    @event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection, _record):  # pragma: no cover - driver hook
        dbapi_connection.isolation_level = None

    @event.listens_for(engine, "begin")
    def _begin(conn):  # pragma: no cover - driver hook
        conn.exec_driver_sql("BEGIN")

    return engine


def _check_connects(engine: Engine, role: str, url: URL) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - driver errors vary; we say which database failed
        engine.dispose()
        detail = redact_text(str(getattr(exc, "orig", exc) or exc)).strip().splitlines()
        raise DatabaseError(
            f"cannot connect to the {role} database {redact(url)}: {' '.join(detail)[:500]}"
        ) from None


def check_schema_exists(engine: Engine, schema: str | None, role: str) -> None:
    if not schema:
        return
    names = sa.inspect(engine).get_schema_names()
    if schema not in names:
        raise DatabaseError(
            f"the {role} database {redact(engine.url)} has no schema {schema!r} "
            f"(it has: {', '.join(sorted(names))})"
        )


def open_writable_destination(url: str | URL, schema: str | None = None) -> Engine:
    """The destination, checked before anything is written: it connects, the schema exists,
    and it lets us create tables there."""
    engine = open_destination(url)
    try:
        check_schema_exists(engine, schema, "destination")
        check_can_create_tables(engine, schema)
    except BaseException:
        engine.dispose()
        raise
    return engine


def check_can_create_tables(engine: Engine, schema: str | None) -> None:
    """Create a scratch table in a transaction that is rolled back, so a destination without
    write permission fails here, with its name, rather than halfway through a run."""
    probe = qualified(engine, schema, f"_synth_pipeline_probe_{secrets.token_hex(4)}")
    try:
        with engine.connect() as conn, conn.begin() as tx:
            conn.exec_driver_sql(f"CREATE TABLE {probe} (x INTEGER)")
            tx.rollback()
    except sa.exc.DBAPIError as exc:
        if is_transient_error(exc):
            raise
        where = f" in schema {schema!r}" if schema else ""
        raise DatabaseError(
            f"the destination database {redact(engine.url)} does not let us create tables{where}: "
            f"{_first_line(exc)}"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = redact_text(str(getattr(exc, "orig", None) or exc)).strip()
    return (text.splitlines() or [""])[0][:300]


def is_transient_error(exc: BaseException) -> bool:
    """A database error a retry can fix: a dropped or refused connection, a locked SQLite file.

    SQL errors, missing tables and refused permissions are not. Errors raised by the drivers
    themselves count too (COPY runs on psycopg's own cursor, outside SQLAlchemy's wrapping).
    """
    orig: BaseException | None = exc
    if isinstance(exc, sa.exc.DBAPIError):
        if exc.connection_invalidated:
            return True
        orig = exc.orig
        if not isinstance(exc, sa.exc.OperationalError):
            return False
    if orig is None:
        return False
    if type(orig).__module__.startswith("psycopg"):
        import psycopg

        return isinstance(orig, psycopg.OperationalError)
    return "database is locked" in str(orig)


def qualified(engine: Engine, schema: str | None, table: str) -> str:
    """A quoted, schema-qualified table name; identifiers are always quoted, never pasted."""
    prep = engine.dialect.identifier_preparer
    name = prep.quote_identifier(table)
    return f"{prep.quote_identifier(schema)}.{name}" if schema else name


def quote(engine: Engine, identifier: str) -> str:
    return engine.dialect.identifier_preparer.quote_identifier(identifier)


def sqlite_rows(
    conn: sa.Connection, sql: str, params: tuple | None = None, batch_rows: int | None = None
) -> Iterator[list[tuple]]:
    """An SQLite statement's rows as the driver's own tuples, in batches (all at once when
    ``batch_rows`` is None): the values SQLAlchemy hands back for text SQL, without building a
    Row per row. Driver errors are raised as SQLAlchemy raises them."""
    dbapi = conn.dialect.loaded_dbapi
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql, params or ())
        while True:
            batch = cursor.fetchall() if batch_rows is None else cursor.fetchmany(batch_rows)
            if batch:
                yield batch
            if not batch or batch_rows is None:
                break
    except dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(sql, params, exc, dbapi.Error) from exc
    finally:
        cursor.close()
