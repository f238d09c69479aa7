"""Instance storage on PostgreSQL (dagster-postgres) with partitions in parallel, each table's
run in one of the command's pool processes, and the embedded SQLite default untouched.

The run is conftest's ``pg_demo_run``, shared with test_pipeline_postgres.py: its Dagster
instance gets a fresh database of its own on the test server (configured by
``configs/dagster-postgres.yaml`` and the DAGSTER_PG_* variables, as a deployment would be);
the synthetic tables go to schema ``synthetic`` of the session's test database.
"""

from __future__ import annotations

import json
import os

import dagster as dg
import pytest
import sqlalchemy as sa

from synth_pipeline.core.bundle import verify_bundle
from synth_pipeline.core.database import normalise_url
from synth_pipeline.instance import instance_for_cli
from synth_pipeline.jobs import table_job_name
from synth_pipeline.runner import execute, temporary_environment


@pytest.mark.slow
def test_all_demo_partitions_run_in_parallel_on_postgres_storage(pg_demo_run):
    """conftest's ``pg_demo_run``: every table of the demo extract (in PostgreSQL) through
    ``execute(parallel=2)`` on an instance configured by configs/dagster-postgres.yaml."""
    instance = pg_demo_run["instance"]
    assert pg_demo_run["run_storage"] == "PostgresRunStorage"
    report, bundle, files = pg_demo_run["report"], pg_demo_run["bundle"], pg_demo_run["files"]
    destination_schema = pg_demo_run["destination_schema"]
    failed = {t.table: t.messages for t in report.tables if not t.ok}
    assert failed == {} and report.bundle_ok, (failed, report.bundle_messages)

    demo_tables = set(files.tables())
    assert len(demo_tables) == 37
    records = instance.get_run_records(
        dg.RunsFilter(job_name=table_job_name("demo"), statuses=[dg.DagsterRunStatus.SUCCESS])
    )
    by_table = {r.dagster_run.tags.get("dagster/partition"): r for r in records}
    assert set(by_table) == demo_tables

    # every table's run went through its four steps in one pool process, not in this one, and
    # the pool had two processes
    pids = set()
    for table, record in by_table.items():
        started = instance.get_records_for_run(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_START
        ).records
        assert len(started) == 4, table
        run_pids = {r.event_log_entry.dagster_event.pid for r in started}
        assert len(run_pids) == 1 and os.getpid() not in run_pids, (table, run_pids)
        pids |= run_pids
    assert len(pids) == 2, pids

    # two runs at a time: some runs overlap in time
    spans = sorted((r.start_time, r.end_time) for r in by_table.values())
    overlapping = sum(1 for a, b in zip(spans, spans[1:], strict=False) if b[0] < a[1])
    assert overlapping >= 1

    # parents were written before their children
    assert by_table["person"].end_time <= by_table["visit_occurrence"].start_time
    assert by_table["visit_occurrence"].end_time <= by_table["condition_occurrence"].start_time

    assert verify_bundle(bundle) == []
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert {t["table"] for t in manifest["tables"]} <= demo_tables
    engine = sa.create_engine(normalise_url(pg_demo_run["url"]))
    with engine.connect() as conn:
        persons = conn.execute(
            sa.text(f'SELECT COUNT(*) FROM "{destination_schema}"."person"')
        ).scalar_one()
    engine.dispose()
    assert persons == files.load_table("person").rows


def test_parallel_runs_refuse_an_ephemeral_instance(demo_sqlite_url, config_root, tmp_path):
    from synth_pipeline.core.errors import ConfigError

    with pytest.raises(ConfigError, match="--parallel"):
        execute(
            source_url=demo_sqlite_url,
            destination_url=f"sqlite:///{tmp_path / 'd.sqlite'}",
            project="demo",
            config_root=config_root,
            bundle_dir=tmp_path / "bundle",
            tables=["person"],
            instance=dg.DagsterInstance.ephemeral(),
            parallel=2,
        )


def test_the_embedded_default_keeps_sqlite_storage(tmp_path):
    with temporary_environment({"DAGSTER_HOME": str(tmp_path / "fresh_home")}):
        instance = instance_for_cli()
        assert type(instance.run_storage).__name__.startswith("Sqlite")
        assert "postgres" not in (tmp_path / "fresh_home" / "dagster.yaml").read_text()
