"""Instance storage on PostgreSQL (dagster-postgres) with partitions in parallel (each step's
tables as runs launched through the instance's run launcher, side by side), and the embedded
SQLite default untouched.

The run is conftest's ``pg_demo_run``, shared with test_pipeline_postgres.py: its Dagster
instance gets a fresh database of its own on the test server (configured by
``configs/dagster-postgres.yaml`` and the DAGSTER_PG_* variables, as a deployment would be);
the synthetic tables go to schema ``synthetic`` of the session's test database.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml

from synth_pipeline.concurrency import PROCESS_TAG
from synth_pipeline.core.bundle import verify_bundle
from synth_pipeline.core.database import normalise_url
from synth_pipeline.core.errors import ConfigError
from synth_pipeline.instance import instance_for_cli
from synth_pipeline.jobs import step_job_name
from synth_pipeline.launched import (
    _ended,
    _stuck,
    _why_not_launched,
    batches,
    launch_and_wait,
    read_back,
    require_direct_launches,
)
from synth_pipeline.projects import partitions_name
from synth_pipeline.run_results import table_summaries
from synth_pipeline.runner import execute, temporary_environment

READING_STEPS = ["schema_snapshot", "column_stats", "reviewed_config"]


def _range(run: dg.DagsterRun, order: list[str]) -> list[str]:
    """The tables a run was over, read from its tags."""
    if run.tags.get("dagster/partition"):
        return [run.tags["dagster/partition"]]
    first = order.index(run.tags["dagster/asset_partition_range_start"])
    return order[first : order.index(run.tags["dagster/asset_partition_range_end"]) + 1]


def _pids(instance: dg.DagsterInstance, run_id: str) -> set[int]:
    started = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.STEP_START)
    return {r.event_log_entry.dagster_event.pid for r in started.records}


@pytest.mark.slow
def test_all_demo_partitions_run_in_parallel_on_postgres_storage(pg_demo_run):
    """conftest's ``pg_demo_run``: every table of the demo extract (in PostgreSQL) through
    ``execute(parallel=2)`` on an instance configured by configs/dagster-postgres.yaml, with
    runs launched directly."""
    instance = pg_demo_run["instance"]
    assert pg_demo_run["run_storage"] == "PostgresRunStorage"
    report, bundle, files = pg_demo_run["report"], pg_demo_run["bundle"], pg_demo_run["files"]
    destination_schema = pg_demo_run["destination_schema"]
    failed = {t.table: t.messages for t in report.tables if not t.ok}
    assert failed == {} and report.bundle_ok, (failed, report.bundle_messages)

    demo_tables = set(files.tables())
    assert len(demo_tables) == 37
    order = instance.get_dynamic_partitions(partitions_name("demo"))
    runs = {}
    for step in [*READING_STEPS, "synthetic_table"]:
        records = instance.get_run_records(dg.RunsFilter(job_name=step_job_name("demo", step)))
        runs[step] = [r for r in records if r.dagster_run.tags.get("synth_pipeline/parallel")]
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in runs[step])
        # launched runs live in processes of their own: no tag ties them to the command's
        assert not any(PROCESS_TAG in r.dagster_run.tags for r in runs[step])
        covered = [t for r in runs[step] for t in _range(r.dagster_run, order)]
        assert sorted(covered) == sorted(demo_tables), step  # every table once

    # each reading step: two runs over halves of the tables, side by side, each in a process
    # of its own (not this one), the next step's runs starting after both ended
    for before, step in zip(READING_STEPS, READING_STEPS[1:] + ["synthetic_table"], strict=True):
        assert len(runs[before]) == 2, before
        halves = [len(_range(r.dagster_run, order)) for r in runs[before]]
        assert abs(halves[0] - halves[1]) <= 1, (before, halves)
        (a, b) = sorted(runs[before], key=lambda r: r.start_time)
        assert b.start_time < a.end_time, f"{before}'s runs did not overlap"
        pids = [_pids(instance, r.dagster_run.run_id) for r in (a, b)]
        assert all(len(p) == 1 for p in pids) and pids[0] != pids[1], pids
        assert os.getpid() not in pids[0] | pids[1]
        last_end = max(r.end_time for r in runs[before])
        assert all(r.start_time >= last_end for r in runs[step]), step

    # the write step: one run (one writer at a time anyway), parents written first
    (write,) = runs["synthetic_table"]
    written = instance.get_records_for_run(
        write.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    place = {r.event_log_entry.dagster_event.partition: i for i, r in enumerate(written)}
    assert set(place) == demo_tables
    assert place["person"] < place["visit_occurrence"] < place["condition_occurrence"]

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


def _parallel_run_of_person(instance, source_url, config_root, tmp_path):
    return execute(
        source_url=source_url,
        destination_url=f"sqlite:///{tmp_path / 'd.sqlite'}",
        project="demo",
        config_root=config_root,
        bundle_dir=tmp_path / "bundle",
        tables=["person"],
        instance=instance,
        parallel=2,
    )


def test_parallel_runs_refuse_an_ephemeral_instance(demo_sqlite_url, config_root, tmp_path):
    with pytest.raises(ConfigError, match="--parallel"):
        _parallel_run_of_person(
            dg.DagsterInstance.ephemeral(), demo_sqlite_url, config_root, tmp_path
        )


def test_parallel_runs_refuse_an_instance_that_queues_them(demo_sqlite_url, config_root, tmp_path):
    """The embedded default queues runs for the daemon (Dagster's QueuedRunCoordinator), which
    would start them with its own settings, not the command's: refused, naming the file and
    the setting, before any run."""
    home = tmp_path / "home"
    with temporary_environment({"DAGSTER_HOME": str(home)}):
        instance = instance_for_cli()
        with pytest.raises(ConfigError, match="QueuedRunCoordinator") as refused:
            _parallel_run_of_person(instance, demo_sqlite_url, config_root, tmp_path)
        assert str(home / "dagster.yaml") in str(refused.value)
        assert refused.value.setting == "--parallel"
        assert instance.get_runs_count() == 0


def _launching_home(tmp_path) -> str:
    """A DAGSTER_HOME (SQLite storage) whose instance launches runs directly."""
    home = tmp_path / "home"
    home.mkdir()
    direct = {"module": "dagster.core.run_coordinator", "class": "DefaultRunCoordinator"}
    (home / "dagster.yaml").write_text(yaml.safe_dump({"run_coordinator": direct}))
    return str(home)


def test_a_run_that_cannot_be_launched_fails_its_tables_saying_why(tmp_path):
    """A launch that Dagster refuses (here: no such job) comes back as its tables' failure
    with the launcher's reason, not as a wait for ever."""
    with temporary_environment({"DAGSTER_HOME": _launching_home(tmp_path)}):
        instance = dg.DagsterInstance.get()
        require_direct_launches(instance)  # launches directly: accepted
        ((tables, run),) = list(
            launch_and_wait(
                instance,
                [["person", "death"]],
                parallel=2,
                job_name="demo__no_such_step",
                run_config={},
                tags={},
            )
        )
    assert tables == ["person", "death"] and not run.success
    assert run.error and "demo__no_such_step" in run.error, run.error


def _started_run(instance, name: str, pid: int | None) -> str:
    """A run as a launch leaves it, started by process ``pid`` (None: not started yet)."""
    run = instance.add_run(dg.DagsterRun(job_name=f"demo__{name}", run_id=str(uuid.uuid4())))
    if pid is not None:
        start = dg.DagsterEvent(dg.DagsterEventType.RUN_START.value, run.job_name, pid=pid)
        instance.report_dagster_event(start, run.run_id)
    return run.run_id


def test_a_launched_run_whose_process_died_is_failed_not_waited_for(tmp_path):
    """A started run whose process is gone (killed, out of memory) never ends by itself: the
    command marks it failed, says why, and frees the write slot it held (with no daemon, no
    one else would, and the next write would wait for ever). A run whose process lives is
    left to run."""
    with temporary_environment({"DAGSTER_HOME": _launching_home(tmp_path)}):
        instance = dg.DagsterInstance.get()
        gone = subprocess.Popen(["true"])
        gone.wait()
        dead = _started_run(instance, "dead", gone.pid)
        alive = _started_run(instance, "alive", os.getpid())
        storage = instance.event_log_storage
        storage.set_concurrency_slots("writes", 1)
        assert storage.claim_concurrency_slot("writes", dead, "step").is_claimed
        assert _stuck(instance, alive, 0, 300) is None
        assert str(gone.pid) in (_stuck(instance, dead, 0, 300) or "")
        ended, why = _ended(instance, dead)
        assert ended.status == dg.DagsterRunStatus.FAILURE
        assert why and str(gone.pid) in why
        assert storage.get_concurrency_info("writes").active_slot_count == 0
        assert not instance.get_run_by_id(alive).is_finished


def test_a_launched_run_that_never_starts_is_failed_and_its_tables_not_taken_for_done(tmp_path):
    """A run with no process after the launch's patience is failed, naming the wait; a failed
    run that never reached its step reports its own failure for every table of its range,
    instead of nothing (which a run of several tables would read as every table done)."""
    with temporary_environment({"DAGSTER_HOME": _launching_home(tmp_path)}):
        instance = dg.DagsterInstance.get()
        never = _started_run(instance, "never", None)
        ended, why = _ended(instance, never, start_patience=0)
        assert ended.status == dg.DagsterRunStatus.FAILURE
        assert why and "did not start" in why
        assert instance.get_run_by_id(never).is_finished is not False  # it is finished now

        failed = instance.add_run(
            dg.DagsterRun(
                job_name="demo__failed",
                run_id=str(uuid.uuid4()),
                status=dg.DagsterRunStatus.FAILURE,
            )
        )
        run = read_back(instance, failed.run_id, None)
        assert not run.success and run.error and "FAILURE" in run.error
        summaries = table_summaries(run, ["person", "death"], generated=False)
        assert not any(s.success for s in summaries.values())


def test_parallel_runs_refuse_another_launcher_and_name_it(tmp_path):
    """A launcher other than Dagster's default (a container's, say) would not pass this
    command's settings to its runs."""
    home = Path(_launching_home(tmp_path))
    settings = yaml.safe_load((home / "dagster.yaml").read_text())
    settings["run_launcher"] = {
        "module": "dagster.core.launcher.sync_in_memory_run_launcher",
        "class": "SyncInMemoryRunLauncher",
    }
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    with (
        temporary_environment({"DAGSTER_HOME": str(home)}),
        pytest.raises(ConfigError, match="SyncInMemoryRunLauncher") as refused,
    ):
        require_direct_launches(dg.DagsterInstance.get())
    assert refused.value.setting == "--parallel"


def test_ranges_launch_at_most_parallel_at_a_time_and_a_failed_launch_hides_passwords():
    ranges = [["a"], ["b"], ["c", "d"], ["e"], ["f"]]
    assert batches(ranges, 2) == [[["a"], ["b"]], [["c", "d"], ["e"]], [["f"]]]
    assert batches(ranges, 9) == [ranges]
    output = "starting\nsqlalchemy OperationalError: postgresql://me:s3cret@db/x refused\n"
    why = _why_not_launched(output)
    assert "OperationalError" in why and "s3cret" not in why


def test_the_embedded_default_keeps_sqlite_storage(tmp_path):
    with temporary_environment({"DAGSTER_HOME": str(tmp_path / "fresh_home")}):
        instance = instance_for_cli()
        assert type(instance.run_storage).__name__.startswith("Sqlite")
        assert "postgres" not in (tmp_path / "fresh_home" / "dagster.yaml").read_text()
