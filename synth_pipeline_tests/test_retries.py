"""Transient database errors are retried with backoff; other errors fail at once.

The connection is dropped for real: another session calls pg_terminate_backend on the
pipeline's backend while its query (or COPY) is running, found in pg_stat_activity by the
application_name set in the pipeline's URL. Dagster then shows the step up for retry, the
warning in the log, and the step succeeding on its next attempt.
"""

from __future__ import annotations

import threading
import time

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from synth_pipeline import cli
from synth_pipeline.assets import project_assets
from synth_pipeline.core.bundle import verify_bundle
from synth_pipeline.core.database import normalise_url
from synth_pipeline.dask_resource import DaskCluster
from synth_pipeline.resources import (
    DestinationDatabase,
    JsonStateIOManager,
    SourceDatabase,
    SynthProject,
)

from . import dirty_extract as dirty

# the "retry" project's assets (keys retry/...), its partitions
RETRY = project_assets("retry")
ALL_ASSETS = RETRY.all
OMOP_TABLES = RETRY.partitions_name


class Terminator(threading.Thread):
    """Terminates, once, the first backend of ``application`` seen running a matching query."""

    def __init__(self, url: str, application: str, query_like: str):
        super().__init__(daemon=True)
        self.engine = sa.create_engine(normalise_url(url), isolation_level="AUTOCOMMIT")
        self.application, self.query_like = application, query_like
        self.stop = threading.Event()
        self.terminated: str | None = None

    def run(self) -> None:
        with self.engine.connect() as conn:
            while not self.stop.is_set():
                row = conn.execute(
                    sa.text(
                        "SELECT pid, query FROM pg_stat_activity WHERE application_name = :app "
                        "AND state = 'active' AND query LIKE :q"
                    ),
                    {"app": self.application, "q": self.query_like},
                ).first()
                if row is not None:
                    conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": row.pid})
                    self.terminated = row.query
                    return
                time.sleep(0.002)

    def __enter__(self) -> Terminator:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.join()
        self.engine.dispose()


def tagged(url: str, application: str) -> str:
    u = make_url(url).update_query_dict({"application_name": application})
    return u.render_as_string(hide_password=False)


def step_events(result, step: str, kind: dg.DagsterEventType) -> list:
    return [e for e in result.all_events if e.step_key == step and e.event_type == kind]


def retry_warnings(instance, result) -> list[str]:
    return [
        e.user_message
        for e in instance.all_logs(result.run_id)
        if "transient database error, retrying" in e.user_message
    ]


def test_a_source_connection_dropped_mid_query_is_retried(postgres_database, tmp_path):
    admin = sa.create_engine(normalise_url(postgres_database))
    with admin.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS retry_src CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA retry_src")
        conn.exec_driver_sql(
            "CREATE TABLE retry_src.big_events AS SELECT g AS event_id, mod(g, 97) AS kind, "
            "random() * 100 AS amount, md5(g::text) AS note, DATE '2000-01-01' + mod(g, 9000) AS day "
            "FROM generate_series(1, 1500000) g"
        )
    admin.dispose()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(OMOP_TABLES, ["big_events"])
    resources = {
        "source": SourceDatabase(
            url=tagged(postgres_database, "synth_retry_source"), db_schema="retry_src"
        ),
        "destination": DestinationDatabase(url=f"sqlite:///{tmp_path / 'dest.sqlite'}"),
        "project": SynthProject(project="retry", config_root=str(tmp_path / "cfg")),
        "state_io_manager": JsonStateIOManager(base_dir=str(tmp_path / "state")),
        "dask": DaskCluster(),
    }
    with Terminator(postgres_database, "synth_retry_source", "SELECT COUNT(*) AS c0%") as killer:
        result = dg.materialize(
            ALL_ASSETS,
            selection=ALL_ASSETS[:2],
            partition_key="big_events",
            instance=instance,
            resources=resources,
            raise_on_error=False,
        )
    assert killer.terminated is not None, "the connection was dropped mid-query"
    assert result.success
    assert (
        len(step_events(result, "retry__column_stats", dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 1
    )
    assert len(step_events(result, "retry__column_stats", dg.DagsterEventType.STEP_RESTARTED)) == 1
    [warning] = retry_warnings(instance, result)
    assert "terminating connection due to administrator command" in warning
    stats = result.output_for_node("retry__column_stats", "column_stats")["stats"]
    assert stats["row_count"] == 1500000 and set(stats["columns"]) >= {"kind", "amount"}


@pytest.fixture
def dirty_project(tmp_path):
    source = f"sqlite:///{tmp_path / 'source.sqlite'}"
    dirty.build(source)
    root = tmp_path / "configuration-files"
    common = ["--project", "retry", "--config-dir", str(root)]
    assert cli.main(["init", "--source", source, "--tables", "person", *common]) == 0
    assert cli.main(["approve", "--all", "--reviewer", "R", *common]) == 0
    return source, root


@pytest.mark.slow
def test_destination_connections_dropped_mid_copy_are_retried(
    postgres_database, tmp_path, dirty_project
):
    """Once while COPY loads the new table, once while COPY exports it to the bundle. The
    export's COPY runs on psycopg's own cursor outside a transaction, so its error is
    psycopg's, not SQLAlchemy's: it is recognised as transient all the same."""
    source, root = dirty_project
    admin = sa.create_engine(normalise_url(postgres_database))
    with admin.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS retry_dst CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA retry_dst")
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(OMOP_TABLES, ["person"])
    scale = 2000.0  # 830,000 rows: COPY in and out long enough to be caught running
    bundle = tmp_path / "bundle"
    resources = {
        "source": SourceDatabase(url=source),
        "destination": DestinationDatabase(
            url=tagged(postgres_database, "synth_retry_destination"), db_schema="retry_dst"
        ),
        "project": SynthProject(
            project="retry", config_root=str(root), bundle_dir=str(bundle), scale=scale
        ),
        "state_io_manager": JsonStateIOManager(base_dir=str(tmp_path / "state")),
        "dask": DaskCluster(),
    }

    def materialize(selection, **partition):
        return dg.materialize(
            ALL_ASSETS,
            selection=selection,
            instance=instance,
            resources=resources,
            raise_on_error=False,
            **partition,
        )

    with Terminator(postgres_database, "synth_retry_destination", "COPY %FROM STDIN%") as killer:
        result = materialize(ALL_ASSETS[:4], partition_key="person")
    assert killer.terminated is not None and "person__synth_new" in killer.terminated
    assert result.success
    assert (
        len(step_events(result, "retry__synthetic_table", dg.DagsterEventType.STEP_UP_FOR_RETRY))
        == 1
    )
    assert retry_warnings(instance, result)
    with admin.connect() as conn:
        rows = conn.exec_driver_sql("SELECT COUNT(*) FROM retry_dst.person").scalar_one()
        keys = conn.exec_driver_sql(
            "SELECT COUNT(DISTINCT person_id), MIN(person_id), MAX(person_id) FROM retry_dst.person"
        ).one()
    admin.dispose()
    assert rows == 415 * scale == keys[0] and tuple(keys[1:]) == (1, rows)

    with Terminator(postgres_database, "synth_retry_destination", "COPY (SELECT %") as killer:
        result = materialize([ALL_ASSETS[4]])
    assert killer.terminated is not None and "TO STDOUT" in killer.terminated
    assert result.success
    assert len(step_events(result, "retry__csv_bundle", dg.DagsterEventType.STEP_UP_FOR_RETRY)) == 1
    [warning] = retry_warnings(instance, result)
    assert "terminating connection due to administrator command" in warning
    assert verify_bundle(bundle) == []
    assert result.output_for_node("retry__csv_bundle")["tables"][0]["rows"] == rows


@pytest.mark.slow
def test_errors_a_retry_cannot_fix_fail_at_once(tmp_path, dirty_project):
    """A destination that refuses writes is reported on the first attempt, without retries."""
    source, root = dirty_project
    path = tmp_path / "read-only.sqlite"
    sa.create_engine(f"sqlite:///{path}").connect().close()
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(OMOP_TABLES, ["person"])
    resources = {
        "source": SourceDatabase(url=source),
        "destination": DestinationDatabase(url=f"sqlite:///file:{path}?mode=ro&uri=true"),
        "project": SynthProject(project="retry", config_root=str(root)),
        "state_io_manager": JsonStateIOManager(base_dir=str(tmp_path / "state")),
        "dask": DaskCluster(),
    }
    result = dg.materialize(
        ALL_ASSETS,
        selection=ALL_ASSETS[:4],
        partition_key="person",
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    assert step_events(result, "retry__synthetic_table", dg.DagsterEventType.STEP_FAILURE)
    assert (
        step_events(result, "retry__synthetic_table", dg.DagsterEventType.STEP_UP_FOR_RETRY) == []
    )
    assert retry_warnings(instance, result) == []
