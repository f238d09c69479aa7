"""The Dagster instance the CLI's runs are stored in, and keeping its SQLite files cheap to write.

The embedded default stores runs and events in SQLite files under ``DAGSTER_HOME`` (WAL
journal). Dagster opens and closes a connection for every event it stores, and SQLite
checkpoints the write-ahead log and deletes it whenever the last connection to a database
closes, so each of the hundreds of events of a command paid for a checkpoint and two file
deletions. A command holds one idle connection to each of those files while it runs: the
other connections are then never the last, and an event costs a commit only.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path

import dagster as dg

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


@contextmanager
def storage_kept_open(instance: dg.DagsterInstance) -> Iterator[list[Path]]:
    """Hold an idle connection to each of the instance's SQLite files while the block runs
    (see the module's docstring); nothing is read or written through them."""
    with ExitStack() as stack:
        held = []
        for path in storage_files(instance):
            connection = stack.enter_context(closing(sqlite3.connect(path, timeout=30)))
            connection.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            held.append(path)
        yield held
