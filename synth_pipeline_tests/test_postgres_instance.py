"""Instance storage on PostgreSQL (dagster-postgres) with partitions in parallel under the
multiprocess executor, and the embedded SQLite default untouched.

The Dagster instance gets a fresh database of its own on the test server (configured by
``configs/dagster-postgres.yaml`` and the DAGSTER_PG_* variables, as a deployment would be);
the synthetic tables go to a fresh schema of the session's test database.
"""

from __future__ import annotations

import json
import uuid

import dagster as dg
import pytest
import sqlalchemy as sa

from synth_pipeline.core.bundle import verify_bundle
from synth_pipeline.core.config import ProjectFiles
from synth_pipeline.core.database import normalise_url
from synth_pipeline.jobs import table_job_name
from synth_pipeline.runner import environment, execute, instance_for_cli

from .conftest import REPO


@pytest.fixture
def postgres_dagster_home(tmp_path, postgres_server_url):
    """A DAGSTER_HOME whose dagster.yaml is the project's PostgreSQL template, on a new database."""
    server = normalise_url(postgres_server_url)
    name = f"synth_dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO / "configs" / "dagster-postgres.yaml").read_text())
    env = {
        "DAGSTER_HOME": str(home),
        "DAGSTER_PG_HOST": server.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(server.port or 5432),
        "DAGSTER_PG_USER": server.username or "postgres",
        "DAGSTER_PG_PASSWORD": server.password or "",
        "DAGSTER_PG_DB": name,
    }
    with environment(env):
        yield home
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def destination_schema(postgres_database):
    schema = f"par_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(normalise_url(postgres_database))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    engine.dispose()
    return schema


def test_all_demo_partitions_run_in_parallel_on_postgres_storage(
    postgres_dagster_home,
    postgres_database,
    destination_schema,
    demo_sqlite_url,
    config_root,
    tmp_path,
):
    instance = instance_for_cli()  # DAGSTER_HOME's dagster.yaml: PostgreSQL storage
    assert type(instance.run_storage).__name__ == "PostgresRunStorage"
    bundle = tmp_path / "bundle"
    report = execute(
        source_url=demo_sqlite_url,
        destination_url=postgres_database,
        destination_schema=destination_schema,
        project="demo",
        config_root=config_root,
        bundle_dir=bundle,
        instance=instance,
        parallel=2,
    )
    failed = {t.table: t.messages for t in report.tables if not t.ok}
    assert failed == {} and report.bundle_ok, (failed, report.bundle_messages)

    demo_tables = set(ProjectFiles(config_root, "demo").tables())
    records = instance.get_run_records(
        dg.RunsFilter(job_name=table_job_name("demo"), statuses=[dg.DagsterRunStatus.SUCCESS])
    )
    by_table = {r.dagster_run.tags.get("dagster/partition"): r for r in records}
    assert set(by_table) == demo_tables

    # every step of every table ran in its own process (the multiprocess executor)
    for table, record in by_table.items():
        workers = instance.get_records_for_run(
            record.dagster_run.run_id, of_type=dg.DagsterEventType.STEP_WORKER_STARTED
        ).records
        assert len(workers) == 4, table

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
    engine = sa.create_engine(normalise_url(postgres_database))
    with engine.connect() as conn:
        persons = conn.execute(
            sa.text(f'SELECT COUNT(*) FROM "{destination_schema}"."person"')
        ).scalar_one()
    engine.dispose()
    assert persons == ProjectFiles(config_root, "demo").load_table("person").rows


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
    with environment({"DAGSTER_HOME": str(tmp_path / "fresh_home")}):
        instance = instance_for_cli()
        assert type(instance.run_storage).__name__.startswith("Sqlite")
        assert "postgres" not in (tmp_path / "fresh_home" / "dagster.yaml").read_text()
