"""The CLI's Dagster instance: its SQLite files are held open while a command runs, so a stored
event no longer ends with SQLite checkpointing the write-ahead log and deleting it, and its
commits do not wait for the disk to flush the log."""

from __future__ import annotations

import dagster as dg
import sqlalchemy as sa

from synth_pipeline.instance import instance_for_cli, storage_files, storage_kept_open
from synth_pipeline.runner import temporary_environment


@dg.asset
def tiny() -> int:
    return 1


def _wal(instance: dg.DagsterInstance):
    return [p.with_name(p.name + "-wal") for p in storage_files(instance)]


def test_the_instance_files_keep_their_log_while_a_command_holds_them(tmp_path):
    with temporary_environment({"DAGSTER_HOME": str(tmp_path / "home")}):
        instance = instance_for_cli()
        files = storage_files(instance)
        names = {p.name for p in files}
        assert {"runs.db", "event_log.db"} <= names, names

        # alone, the last connection's close checkpoints each log and deletes it
        assert dg.materialize([tiny], instance=instance).success
        assert not any(w.exists() for w in _wal(instance))

        with storage_kept_open(instance) as held:
            assert held == files
            assert dg.materialize([tiny], instance=instance).success
            kept = [w for w in _wal(instance) if w.exists()]
            assert {w.name for w in kept} >= {"runs.db-wal", "event_log.db-wal"}
        # released at the end of the block: the next close cleans up as before
        assert dg.materialize([tiny], instance=instance).success
        assert not any(w.exists() for w in _wal(instance))
        runs = instance.get_runs()
        assert len(runs) == 3 and all(r.is_success for r in runs)


def test_an_ephemeral_instance_has_no_files_to_hold():
    with dg.DagsterInstance.ephemeral() as instance:
        assert storage_files(instance) == []
        with storage_kept_open(instance) as held:
            assert held == []


def _synchronous(path) -> int:
    """SQLite's synchronous setting of a new SQLAlchemy connection to ``path`` (2 FULL, 1
    NORMAL), made the way Dagster's storage makes its connections."""
    engine = sa.create_engine(f"sqlite:///{path}", poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as connection:
            return connection.exec_driver_sql("PRAGMA synchronous").scalar()
    finally:
        engine.dispose()


def test_the_instance_commits_without_flushing_only_while_a_command_runs(tmp_path):
    other = tmp_path / "destination.db"
    with temporary_environment({"DAGSTER_HOME": str(tmp_path / "home")}):
        instance = instance_for_cli()
        events = next(p for p in storage_files(instance) if p.name == "event_log.db")
        assert _synchronous(events) == 2 and _synchronous(other) == 2
        with storage_kept_open(instance):
            assert _synchronous(events) == 1
            # any other SQLite file (the destination, the source) keeps SQLite's default
            assert _synchronous(other) == 2
            assert dg.materialize([tiny], instance=instance).success
        assert _synchronous(events) == 2
        assert instance.get_runs()[0].is_success
