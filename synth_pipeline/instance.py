"""The Dagster instance the CLI's runs are stored in, and keeping its SQLite files cheap to write.

The embedded default stores runs and events in SQLite files under ``DAGSTER_HOME`` (WAL
journal). Dagster opens and closes a connection for every event it stores, and SQLite
checkpoints the write-ahead log and deletes it whenever the last connection to a database
closes, so each of the hundreds of events of a command paid for a checkpoint and two file
deletions. A command holds one idle connection to each of those files while it runs: the
other connections are then never the last, and an event costs a commit only.

A commit in SQLite's default (``synchronous=FULL``) waits for the disk to flush the log; with a
busy disk that wait was a large part of a command's Dagster time. While a command runs, Dagster's
connections to those files commit with ``synchronous=NORMAL``, which SQLite documents as safe
from corruption in WAL mode: a power cut (not a crash of the command) can lose the last few
events of the run history, never the synthetic tables or the bundle, which are other files.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from . import environment


def instance_for_cli() -> dg.DagsterInstance:
    """The instance under DAGSTER_HOME (created with our dagster.yaml when new)."""
    home = environment.dagster_home()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    if not (home / "dagster.yaml").exists():
        template = (environment.repo_root() / "configs" / "dagster.yaml").read_text()
        (home / "dagster.yaml").write_text(template.replace("${DAGSTER_HOME}", str(home)))
    return dg.DagsterInstance.get()


def storage_files(instance: dg.DagsterInstance) -> list[Path]:
    """The SQLite files holding ``instance``'s runs, events and schedules (none for an
    ephemeral instance or one whose storage is PostgreSQL)."""
    if instance.is_ephemeral:
        return []
    return sorted(Path(instance.root_directory).glob("*/*.db"))


def _main_file(connection: sqlite3.Connection) -> Path | None:
    rows = connection.execute("PRAGMA database_list").fetchall()
    return next((Path(file) for _, name, file in rows if name == "main" and file), None)


@contextmanager
def unflushed_commits(files: list[Path]) -> Iterator[None]:
    """While the block runs, every new SQLAlchemy connection to one of ``files`` commits with
    ``synchronous=NORMAL`` (see the module's docstring); connections to other files are left
    as they are."""
    targets = {p.resolve() for p in files}

    def relax(dbapi_connection, _record) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            main = _main_file(dbapi_connection)
            if main is not None and main.resolve() in targets:
                dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    if not targets:
        yield
        return
    sa.event.listen(sa.engine.Engine, "connect", relax)
    try:
        yield
    finally:
        sa.event.remove(sa.engine.Engine, "connect", relax)


@contextmanager
def storage_kept_open(instance: dg.DagsterInstance) -> Iterator[list[Path]]:
    """Hold an idle connection to each of the instance's SQLite files while the block runs and
    let the instance's own connections commit without waiting for the disk (see the module's
    docstring); nothing is read or written through the held connections."""
    files = storage_files(instance)
    with ExitStack() as stack:
        stack.enter_context(unflushed_commits(files))
        held = []
        for path in files:
            connection = stack.enter_context(closing(sqlite3.connect(path, timeout=30)))
            connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            held.append(path)
        yield held
