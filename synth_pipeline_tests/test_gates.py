"""Gates that cannot be walked around (issue 13): the bundle publishes only tables whose latest
generation passed every blocking check, checks read what they claim to check and fail on any
error, check results are per table, projects keep apart, a typo in a project is refused, and
one writer of the destination at a time."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import sqlite3
import time
import uuid
from concurrent.futures import ProcessPoolExecutor

import dagster as dg
import pytest
import sqlalchemy as sa

from synth_pipeline import cli
from synth_pipeline.assets import project_assets
from synth_pipeline.automation import automation_sensor_name
from synth_pipeline.concurrency import PROJECT_TAG, ensure_write_pool
from synth_pipeline.core.config import approve
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import normalise_url
from synth_pipeline.core.rule_checks import count_violations
from synth_pipeline.core.write import read_register
from synth_pipeline.dask_resource import DaskCluster
from synth_pipeline.definitions import build_definitions
from synth_pipeline.jobs import bundle_job_name, table_job_name
from synth_pipeline.projects import write_pool
from synth_pipeline.resources import (
    DestinationDatabase,
    JsonStateIOManager,
    SourceDatabase,
    SynthProject,
)
from synth_pipeline.runner import execute, temporary_environment

TABLES = ["person", "visit_occurrence"]
# observation periods made by hand in the destination: visits outside every period break the
# within_observation_period rule (the periods are not generated, so the test needs no config)
NO_PERIODS = (
    "CREATE TABLE observation_period (person_id INTEGER, observation_period_start_date DATE, "
    "observation_period_end_date DATE)"
)
# the demo project's assets (keys demo/...) and partitions
DEMO = project_assets("demo")
ALL_ASSETS = DEMO.all
OMOP_TABLES = DEMO.partitions_name
schema_snapshot, column_stats, reviewed_config, synthetic_table = DEMO.table_steps
csv_bundle = DEMO.csv_bundle
STEPS = DEMO.table_steps


def _resources(config_root, source_url, dest_url, tmp_path, dest_schema=None):
    return {
        "source": SourceDatabase(url=source_url),
        "destination": DestinationDatabase(url=dest_url, db_schema=dest_schema),
        "project": SynthProject(
            project="demo", config_root=str(config_root), bundle_dir=str(tmp_path / "bundle")
        ),
        "state_io_manager": JsonStateIOManager(base_dir=str(tmp_path / "state")),
        "dask": DaskCluster(),
    }


def _materialise(instance, resources, table, selection=STEPS):
    return dg.materialize(
        ALL_ASSETS,
        selection=selection,
        partition_key=table,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )


def _instance(tables=TABLES):
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(OMOP_TABLES, tables)
    return instance


def _check(result, name, partition=None):
    found = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    if partition is not None:
        found = [e for e in found if e.partition == partition]
    [evaluation] = found
    return evaluation


@pytest.fixture
def written(demo_sqlite_url, config_root, tmp_path):
    """person and visit_occurrence written to a SQLite destination."""
    dest = f"sqlite:///{tmp_path / 'dest.sqlite'}"
    resources = _resources(config_root, demo_sqlite_url, dest, tmp_path)
    instance = _instance()
    for t in TABLES:
        assert _materialise(instance, resources, t).success, t
    return {"instance": instance, "resources": resources, "path": tmp_path / "dest.sqlite"}


# 1. the bundle publishes only tables whose latest generation passed every blocking check


def _run(config_root, source, tmp_path, capsys, *tables):
    code = cli.main(
        [
            "run",
            "--source",
            source,
            "--destination",
            f"sqlite:///{tmp_path / 'dest.sqlite'}",
            "--project",
            "demo",
            "--bundle",
            str(tmp_path / "bundle"),
            "--tables",
            *tables,
            "--config-dir",
            str(config_root),
        ]
    )
    return code, capsys.readouterr().out


def test_a_narrower_run_does_not_publish_a_table_that_failed_earlier(
    demo_sqlite_url, config_root, tmp_path, capsys
):
    code, out = _run(config_root, demo_sqlite_url, tmp_path, capsys, *TABLES)
    assert code == 0, out
    # the destination gets observation periods that hold no visit
    with sqlite3.connect(tmp_path / "dest.sqlite") as conn:
        conn.execute(NO_PERIODS)
    code, out = _run(config_root, demo_sqlite_url, tmp_path, capsys, "visit_occurrence")
    assert code == 1 and "rules_hold" in out, out
    register = read_register(sa.create_engine(f"sqlite:///{tmp_path / 'dest.sqlite'}"), None)
    assert register["visit_occurrence"]["checks"]["rules_hold"]["passed"] is False
    # a later run of another table must not publish the failed one
    code, out = _run(config_root, demo_sqlite_url, tmp_path, capsys, "person")
    assert code == 1, out
    assert "the bundle is refused" in out
    assert "table visit_occurrence: blocking check rules_hold failed" in out


def test_the_bundle_refuses_an_unchecked_generation(written):
    with sqlite3.connect(written["path"]) as conn:
        conn.execute("UPDATE _synth_pipeline_tables SET checks = NULL WHERE table_name = 'person'")
    result = dg.materialize(
        ALL_ASSETS,
        selection=[csv_bundle],
        instance=written["instance"],
        resources=written["resources"],
        raise_on_error=False,
    )
    assert not result.success
    errors = " ".join(
        e.step_failure_data.error.cause.message if e.step_failure_data.error.cause else ""
        for e in result.all_events
        if e.is_step_failure
    ) + " ".join(e.step_failure_data.error.message for e in result.all_events if e.is_step_failure)
    assert "table person: its latest generation has no recorded check outcome" in errors


# 2. references_resolve reads the parent's keys in the destination


def test_references_resolve_reads_the_parent_in_the_destination(written):
    with sqlite3.connect(written["path"]) as conn:
        conn.execute("DELETE FROM person WHERE person_id % 2 = 0")  # half the parents gone
    result = _materialise(
        written["instance"], written["resources"], "visit_occurrence", [synthetic_table]
    )
    check = _check(result, "references_resolve", "visit_occurrence")
    assert not check.passed
    assert check.metadata["dangling_by_column"].value["person_id"] > 0
    assert "visit_occurrence" in check.description and "destination" in check.description


# 3. rules_hold fails when its SQL fails; an inapplicable rule is not an error


@pytest.fixture
def pg_schema(postgres_database):
    schema = f"gates_{uuid.uuid4().hex[:8]}"
    engine = sa.create_engine(normalise_url(postgres_database))
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    yield engine, schema
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
    engine.dispose()


def test_rules_hold_fails_when_its_sql_fails(
    demo_sqlite_url, config_root, tmp_path, postgres_database, pg_schema
):
    engine, schema = pg_schema
    resources = _resources(config_root, demo_sqlite_url, postgres_database, tmp_path, schema)
    instance = _instance()
    assert _materialise(instance, resources, "person").success
    # observation periods whose dates are text that is no date: the rule's SQL errors
    with engine.begin() as conn:
        conn.exec_driver_sql(
            f'CREATE TABLE "{schema}".observation_period (person_id bigint, '
            "observation_period_start_date text, observation_period_end_date text)"
        )
        conn.exec_driver_sql(
            f"INSERT INTO \"{schema}\".observation_period SELECT person_id, 'soon', 'later' "
            f'FROM "{schema}".person'
        )
    result = _materialise(instance, resources, "visit_occurrence")
    check = _check(result, "rules_hold", "visit_occurrence")
    assert not check.passed
    assert "soon" in check.metadata["error"].value or "date" in check.metadata["error"].value
    assert check.description.startswith("the check could not be computed")
    register = read_register(engine, schema)
    assert register["visit_occurrence"]["checks"]["rules_hold"]["passed"] is False


def test_a_rule_against_a_parent_without_its_columns_does_not_apply(written, config_root):
    engine = sa.create_engine(f"sqlite:///{written['path']}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE observation_period (person_id INTEGER)")
    cfg = ProjectFiles(config_root, "demo").load_table("visit_occurrence")
    present = set(sa.inspect(engine).get_table_names())
    counted = count_violations(engine, None, cfg, present)
    assert "within_observation_period" not in counted
    # the same rule against a broken table is an error, not a pass
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE visit_occurrence")
        conn.exec_driver_sql("CREATE TABLE visit_occurrence (person_id INTEGER)")
    with pytest.raises(sa.exc.DBAPIError):
        count_violations(engine, None, cfg, present)


# 4. check results are per partition


def test_check_results_belong_to_their_partition(written):
    instance = written["instance"]
    key = dg.AssetCheckKey(synthetic_table.key, "rules_hold")
    spec = next(s for s in synthetic_table.check_specs if s.name == "rules_hold")
    assert spec.partitions_def is not None
    with sqlite3.connect(written["path"]) as conn:
        conn.execute(NO_PERIODS)
    failed = _materialise(instance, written["resources"], "visit_occurrence", [synthetic_table])
    assert not _check(failed, "rules_hold", "visit_occurrence").passed
    # person's result stands for person only; visit_occurrence's failure is its own
    records = instance.event_log_storage.get_asset_check_execution_history(key, limit=20)
    by_partition = {}
    for r in records:
        by_partition.setdefault(r.partition, r.status.value)
    assert by_partition.get("visit_occurrence") == "FAILED"
    assert by_partition.get("person") == "SUCCEEDED"
    assert None not in by_partition


def test_a_failed_gate_on_one_table_does_not_hold_another_in_the_automation(
    demo_sqlite_url, config_root, tmp_path
):
    """all_deps_blocking_checks_passed reads each partition's own check results: the failed
    config_approved of observation_period holds its synthetic table, not person's."""
    env = {
        "SYNTH_SOURCE_URL": demo_sqlite_url,
        "SYNTH_DESTINATION_URL": f"sqlite:///{tmp_path / 'dest.sqlite'}",
        "SYNTH_PROJECT": "demo",
        "SYNTH_CONFIG_DIR": str(config_root),
        "SYNTH_WORK_DIR": str(tmp_path / "work"),
        "SYNTH_BUNDLE_DIR": str(tmp_path / "bundle"),
    }
    files = ProjectFiles(config_root, "demo")
    tables = ["person", "observation_period"]
    with temporary_environment(env), dg.DagsterInstance.ephemeral() as instance:
        defs = build_definitions(["demo"])
        instance.add_dynamic_partitions(OMOP_TABLES, tables)

        def materialise(selection, t):
            return dg.materialize(
                defs.assets,
                selection=selection,
                partition_key=t,
                instance=instance,
                resources=defs.resources,
                raise_on_error=False,
            )

        for t in tables:
            assert materialise(DEMO.config_steps, t).success, t
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        # both configs change: person's edit is approved, observation_period's is not
        for t in tables:
            cfg = files.load_table(t)
            cfg.rows += 5
            if t == "person":
                cfg = approve(cfg, "Reviewer", cfg.review.source_fingerprint)
            files.save_table(cfg)
        for t in tables:  # the failing table last: its result is the latest of the check
            result = materialise([reviewed_config], t)
            assert _check(result, "config_approved", t).passed == (t == "person"), t
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
        assert tick.get_requested_partitions(synthetic_table.key) == {"person"}


# 5. projects keep apart: keys, partitions, state, runs, automation, files and tables


def _second_project(config_root, name="other"):
    shutil.copytree(config_root / "demo", config_root / name)
    text = (config_root / name / "project.yaml").read_text()
    (config_root / name / "project.yaml").write_text(
        text.replace("project: demo", f"project: {name}")
    )


def test_each_project_has_its_own_assets_partitions_jobs_and_automation(config_root, tmp_path):
    _second_project(config_root)
    env = {"SYNTH_CONFIG_DIR": str(config_root), "SYNTH_WORK_DIR": str(tmp_path / "work")}
    with temporary_environment(env):
        defs = build_definitions()
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    steps = ["schema_snapshot", "column_stats", "reviewed_config", "synthetic_table", "csv_bundle"]
    for p in ("demo", "other"):
        assert {f"{p}/{a}" for a in [*steps, "config_file"]} <= keys
        assert {graph.get(dg.AssetKey([p, a])).group_name for a in steps} == {p}
        table = graph.get(dg.AssetKey([p, "synthetic_table"]))
        assert table.partitions_def.name == f"{p}__omop_table"
        # the checks are the project's, one result per table of the project
        for check in graph.get_check_keys_for_assets({table.key}):
            assert check.asset_key.path[0] == p
            assert graph.get_check_spec(check).partitions_def.name == f"{p}__omop_table"
        for a in steps[:-1]:
            deps = graph.get(dg.AssetKey([p, a])).parent_keys
            assert all(d.path[0] == p for d in deps), (a, deps)
        job = defs.resolve_job_def(table_job_name(p))
        assert {k.path[0] for k in job.asset_layer.executable_asset_keys} == {p}
        assert job.tags[PROJECT_TAG] == p
        assert defs.resolve_job_def(bundle_job_name(p)).tags[PROJECT_TAG] == p
        sensor = defs.resolve_sensor_def(automation_sensor_name(p))
        targeted = sensor.asset_selection.resolve(graph)
        assert targeted and {k.path[0] for k in targeted} == {p}
        assert defs.resolve_sensor_def(f"{p}__new_extract_sensor")
        assert defs.resolve_sensor_def(f"{p}__config_file_sensor")
        assert defs.resolve_schedule_def(f"{p}__refresh_schedule")


def _digest(path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_projects_on_one_instance_never_touch_each_other(
    demo_sqlite_url, config_root, tmp_path
):
    """The issue's case: a second project initialised and run on the instance of the first.
    Its runs write only its own state, destination, bundle and partitions, and leave the first
    project nothing to redo in the automation."""
    _second_project(config_root)
    (tmp_path / "home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "home"))
    work = tmp_path / "work"
    env = {
        "SYNTH_WORK_DIR": str(work),
        "SYNTH_CONFIG_DIR": str(config_root),
        "SYNTH_SOURCE_URL": demo_sqlite_url,
        "SYNTH_PROJECT": None,
        "SYNTH_DESTINATION_URL": None,
        "SYNTH_BUNDLE_DIR": None,
    }
    with temporary_environment(env):
        reports = {}
        for project in ("demo", "other"):
            if project == "other":  # what the first project holds once it is done
                demo_db = _digest(work / "demo" / "synthetic.sqlite")
                demo_manifest = _digest(work / "demo" / "bundle" / "manifest.json")
                demo_state = {p: _digest(p) for p in (work / "state" / "demo").rglob("*.json")}
            reports[project] = execute(
                source_url=demo_sqlite_url,
                project=project,
                config_root=config_root,
                tables=["person"],
                instance=instance,
            )
            assert reports[project].ok, reports[project]
        defs = build_definitions()
        tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    # the first project's destination, bundle and stored values are as it left them
    assert _digest(work / "demo" / "synthetic.sqlite") == demo_db
    assert _digest(work / "demo" / "bundle" / "manifest.json") == demo_manifest
    assert {p: _digest(p) for p in (work / "state" / "demo").rglob("*.json")} == demo_state
    assert (work / "other" / "synthetic.sqlite").exists()
    assert (work / "state" / "other" / "synthetic_table" / "person.json").exists()
    assert not (work / "state" / "synthetic_table").exists()
    # each run is tagged with its project and materialised that project's keys only
    runs = {r.run_id: r for r in instance.get_runs()}
    for project, report in reports.items():
        for run_id in report.run_ids:
            assert runs[run_id].tags[PROJECT_TAG] == project
            keys = {
                e.dagster_event.asset_key
                for e in instance.all_logs(run_id)
                if e.is_dagster_event and e.dagster_event.is_step_materialization
            }
            assert keys and {k.path[0] for k in keys} == {project}, (project, keys)
    # each project's partitions are its own: the source's tables, added once per project
    assert instance.get_dynamic_partitions("demo__omop_table")
    assert instance.get_dynamic_partitions("other__omop_table")
    for project in ("demo", "other"):
        key = dg.AssetKey([project, "synthetic_table"])
        assert instance.get_materialized_partitions(key) == {"person"}
    # and the second project's runs left the first nothing to redo
    requested = {
        k for k in defs.resolve_asset_graph().get_all_asset_keys() if tick.get_num_requested(k)
    }
    assert not {k for k in requested if k.path[0] == "demo"}, requested


# 6. a project that does not exist is refused by every command except init


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--tables", "person"],
        ["approve", "--all", "--reviewer", "someone"],
        ["review"],
    ],
    ids=["run", "approve", "review"],
)
def test_a_typo_in_the_project_is_refused(argv, demo_sqlite_url, config_root, tmp_path, capsys):
    extra = (
        ["--source", demo_sqlite_url, "--bundle", str(tmp_path / "b")] if argv[0] == "run" else []
    )
    code = cli.main([*argv, *extra, "--project", "demoo", "--config-dir", str(config_root)])
    err = capsys.readouterr().err
    assert code == 2
    assert "no project 'demoo'" in err and "demo" in err and "init" in err
    assert not (config_root / "demoo").exists()


# 7. one writer of a project's destination at a time, however the run started


def test_each_project_writes_through_its_own_one_slot_pool(config_root, tmp_path):
    _second_project(config_root)
    for p in ("demo", "other"):
        assets = project_assets(p)
        writers = [a for a in assets.all if isinstance(a, dg.AssetsDefinition) and a.op.pool]
        assert {a.op.pool for a in writers} == {write_pool(p)}
        assert {assets.synthetic_table.key, assets.csv_bundle.key} <= {
            k for a in writers for k in a.keys
        }
    assert write_pool("demo") != write_pool("other")


def test_a_write_waits_while_another_run_of_its_project_holds_the_slot(
    demo_sqlite_url, config_root, tmp_path
):
    """A run of the UI, a sensor or the automation is writing project demo: the CLI's write of
    demo waits for the slot, and project other's write goes ahead meanwhile."""
    _second_project(config_root)
    other = project_assets("other")
    (tmp_path / "home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "home"))
    instance.add_dynamic_partitions(OMOP_TABLES, ["person"])
    instance.add_dynamic_partitions(other.partitions_name, ["person"])
    for p in ("demo", "other"):
        ensure_write_pool(instance, p)
    storage = instance.event_log_storage
    dest = f"sqlite:///{tmp_path / 'dest.sqlite'}"
    resources = _resources(config_root, demo_sqlite_url, dest, tmp_path)
    other_dest = tmp_path / "other.sqlite"
    other_resources = {
        **_resources(config_root, demo_sqlite_url, f"sqlite:///{other_dest}", tmp_path),
        "project": SynthProject(
            project="other", config_root=str(config_root), bundle_dir=str(tmp_path / "ob")
        ),
    }
    assert _materialise(instance, resources, "person", STEPS[:3]).success
    # another run of demo holds its pool's one slot
    claim = storage.claim_concurrency_slot(write_pool("demo"), "other-run", "demo__synthetic_table")
    assert claim.is_claimed
    # demo's write, in a process of its own: while it waits for the slot Dagster 1.13's
    # in-process executor polls without sleeping, which in a thread of this process would hold
    # the interpreter's lock against the other project's run below (a 3 s write took 91 s)
    spawn = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=1, mp_context=spawn)
    waiting = pool.submit(
        _write_person, str(tmp_path / "home"), str(config_root), demo_sqlite_url, dest, tmp_path
    )
    # meanwhile project other writes its own person table: its pool is free
    result = dg.materialize(
        other.all,
        selection=other.table_steps,
        partition_key="person",
        instance=instance,
        resources=other_resources,
        raise_on_error=False,
    )
    assert result.success
    with sqlite3.connect(other_dest) as conn:
        assert conn.execute("SELECT COUNT(*) FROM person").fetchone()[0] > 0
    time.sleep(2)
    assert not waiting.done(), "the write went ahead while another run held the slot"
    assert not (tmp_path / "dest.sqlite").exists() or "person" not in {
        r[0]
        for r in sqlite3.connect(tmp_path / "dest.sqlite").execute(
            "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    storage.free_concurrency_slot_for_step("other-run", "demo__synthetic_table")
    with pool:
        assert waiting.result(timeout=300)


def _write_person(home: str, config_root: str, source_url: str, dest_url: str, tmp_path) -> bool:
    """demo's write of person on the instance in ``home`` (run in a spawned process)."""
    with dg.DagsterInstance.from_config(home) as instance:
        resources = _resources(config_root, source_url, dest_url, tmp_path)
        return _materialise(instance, resources, "person", [synthetic_table]).success


def test_a_killed_commands_write_slot_is_released_by_the_next_command(tmp_path):
    """A command killed while its run held the project's write slot (SIGKILL: nothing of it
    runs on) would keep the slot for ever and every later write would wait; the next command
    marks that run failed and frees the slot, and leaves a live command's claim alone."""
    import subprocess
    import sys

    from synth_pipeline.concurrency import PROCESS_TAG, release_abandoned_slots

    (tmp_path / "home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "home"))
    ensure_write_pool(instance, "demo")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    host = socket.gethostname()
    runs = {}
    for name, pid in (("killed", dead), ("alive", str(os.getpid()))):
        run = instance.create_run_for_job(
            dg.GraphDefinition(name=f"g_{name}").to_job(), tags={PROCESS_TAG: f"{host}:{pid}"}
        )
        runs[name] = run.run_id
    storage = instance.event_log_storage
    storage.set_concurrency_slots(write_pool("other"), 1)
    assert storage.claim_concurrency_slot(
        write_pool("demo"), runs["killed"], "demo__synthetic_table"
    ).is_claimed
    assert storage.claim_concurrency_slot(
        write_pool("other"), runs["alive"], "other__synthetic_table"
    ).is_claimed
    assert release_abandoned_slots(instance) == [runs["killed"]]
    assert storage.get_concurrency_info(write_pool("demo")).claimed_slots == []
    assert len(storage.get_concurrency_info(write_pool("other")).claimed_slots) == 1
    assert instance.get_run_by_id(runs["killed"]).status == dg.DagsterRunStatus.FAILURE
    assert not instance.get_run_by_id(runs["alive"]).is_finished
