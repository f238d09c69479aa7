"""Operating it in Dagster: the sensors, the schedule, staleness and automation, the checks.

Real parts only: a copy of the demo extract in SQLite (edited where a test needs a new
extract), a copy of the configuration files, an ephemeral Dagster instance, real
materialisations, sensor and schedule evaluations, and automation ticks evaluated without a
daemon (``dg.evaluate_automation_conditions``).
"""

from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from pathlib import Path

import dagster as dg
import pytest

from synth_pipeline.assets import project_assets
from synth_pipeline.core.config import approve
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.disclosure import DisclosurePolicy
from synth_pipeline.core.disclosure_audit import audit_released_counts
from synth_pipeline.core.errors import ConfigError
from synth_pipeline.core.watch import config_file_versions, extract_fingerprints
from synth_pipeline.definitions import build_definitions
from synth_pipeline.resources import SourceDatabase
from synth_pipeline.runner import execute, temporary_environment
from synth_pipeline.schedules import build_refresh_schedule
from synth_pipeline.sensors import build_config_file_sensor, build_new_extract_sensor

# the demo project's assets (keys demo/...), partitions and sensors
DEMO = project_assets("demo")
schema_snapshot, column_stats, reviewed_config, synthetic_table = DEMO.table_steps
csv_bundle = DEMO.csv_bundle
OMOP_TABLES = DEMO.partitions_name
config_file_sensor = build_config_file_sensor("demo")
new_extract_sensor = build_new_extract_sensor("demo")

# observation_period points to person and nothing points to it: editing it touches one chain
TABLES = ["person", "observation_period"]
EDITED = "observation_period"
TABLE_STEPS = [schema_snapshot, column_stats, reviewed_config, synthetic_table]


@pytest.fixture
def source_copy(tmp_path, demo_sqlite_url) -> Path:
    """A private copy of the demo extract that a test may change (a new extract landing)."""
    path = tmp_path / "source.sqlite"
    shutil.copy(demo_sqlite_url.removeprefix("sqlite:///"), path)
    return path


@pytest.fixture
def operations(tmp_path, source_copy, config_root):
    """The project's Definitions wired to the copies, with an ephemeral instance."""
    env = {
        "SYNTH_SOURCE_URL": f"sqlite:///{source_copy}",
        "SYNTH_DESTINATION_URL": f"sqlite:///{tmp_path / 'synthetic.sqlite'}",
        "SYNTH_PROJECT": "demo",
        "SYNTH_CONFIG_DIR": str(config_root),
        "SYNTH_BUNDLE_DIR": str(tmp_path / "bundle"),
    }
    with temporary_environment(env), dg.DagsterInstance.ephemeral() as instance:
        defs = build_definitions()
        yield {
            "defs": defs,
            "instance": instance,
            "files": ProjectFiles(config_root, "demo"),
            "resources": defs.resources,
            "source": f"sqlite:///{source_copy}",
        }


def _observe_config_files(ops, cursor: str | None) -> tuple[str | None, list[str]]:
    """One config_file_sensor tick; its observations are recorded as the daemon would."""
    with dg.build_sensor_context(
        instance=ops["instance"],
        cursor=cursor,
        resources={"project": ops["resources"]["project"]},
    ) as context:
        result = config_file_sensor(context)
    for event in result.asset_events:
        ops["instance"].report_runless_asset_event(event)
    return result.cursor, sorted(e.partition for e in result.asset_events)


def _materialise(ops, selection, partition: str | None = None) -> dg.ExecuteInProcessResult:
    result = dg.materialize(
        ops["defs"].assets,
        selection=selection,
        partition_key=partition,
        instance=ops["instance"],
        resources=ops["resources"],
        raise_on_error=False,
    )
    return result


DATA_VERSION = "dagster/data_version"


def _latest(instance, key: dg.AssetKey, partition: str | None, before: int | None = None):
    """The latest materialisation (an observation for the observable config files) of one
    asset partition, before storage id ``before`` if given, from the instance's records."""
    records_filter = dg.AssetRecordsFilter(
        asset_key=key,
        asset_partitions=[partition] if partition else None,
        before_storage_id=before,
    )
    found = instance.fetch_materializations(records_filter, limit=1).records
    if not found:
        found = instance.fetch_observations(records_filter, limit=1).records
    return found[0] if found else None


def _version(record) -> str | None:
    event = record.asset_materialization or record.asset_observation
    return (event.tags or {}).get(DATA_VERSION)


def _stale(ops, key: dg.AssetKey, partition: str | None = None) -> bool:
    """Whether the UI would show an asset partition as stale, judged from the event records
    alone (not with Dagster's resolver): since its latest materialisation a parent (the same
    table's) got a new data version, or (the bundle, fed by every table) a parent partition
    was materialised after it."""
    instance = ops["instance"]
    mine = _latest(instance, key, partition)
    assert mine is not None, f"{key.to_user_string()}[{partition}] was never materialised"
    for parent in ops["defs"].resolve_asset_graph().get(key).parent_keys:
        if partition is None:
            newer = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=parent, after_storage_id=mine.storage_id), limit=1
            ).records
            if newer:
                return True
            continue
        now = _latest(instance, parent, partition)
        then = _latest(instance, parent, partition, before=mine.storage_id)
        if now.storage_id > mine.storage_id and (then is None or _version(now) != _version(then)):
            return True
    return False


def _requested(result) -> set[tuple[str, str | None]]:
    keys = [schema_snapshot.key, column_stats.key, reviewed_config.key, synthetic_table.key]
    out = {(k.path[-1], p) for k in keys for p in result.get_requested_partitions(k)}
    if result.get_num_requested(csv_bundle.key):
        out.add(("csv_bundle", None))
    return out


# --- the new-extract sensor ------------------------------------------------------------------


def test_new_extract_sensor_fires_once_per_extract(source_copy):
    instance = dg.DagsterInstance.ephemeral()
    resources = {"source": SourceDatabase(url=f"sqlite:///{source_copy}")}

    def tick(cursor):
        with dg.build_sensor_context(
            instance=instance, cursor=cursor, resources=resources
        ) as context:
            result = new_extract_sensor(context)
        # build_sensor_context does not apply partition requests; the daemon would
        for request in result.dynamic_partitions_requests:
            instance.add_dynamic_partitions(OMOP_TABLES, list(request.partition_keys))
        return result

    first = tick(None)
    tables = sorted(
        extract_fingerprints(SourceDatabase(url=f"sqlite:///{source_copy}").engine(), None)
    )
    assert sorted(r.partition_key for r in first.run_requests) == tables
    assert sorted(instance.get_dynamic_partitions(OMOP_TABLES)) == tables

    # the same extract again: nothing requested
    second = tick(first.cursor)
    assert second.run_requests == []
    assert second.dynamic_partitions_requests == []

    # a new extract lands: care_site gained a row, and a table new to the extract appears
    with sqlite3.connect(source_copy) as conn:
        conn.execute(
            "INSERT INTO care_site (care_site_id, care_site_name, place_of_service_concept_id) "
            "SELECT MAX(care_site_id) + 1, 'new site', 0 FROM care_site"
        )
        conn.execute("CREATE TABLE episode (episode_id INTEGER PRIMARY KEY, person_id INTEGER)")
        conn.execute("INSERT INTO episode VALUES (1, 1)")
    third = tick(second.cursor)
    assert sorted(r.partition_key for r in third.run_requests) == ["care_site", "episode"]
    assert [list(r.partition_keys) for r in third.dynamic_partitions_requests] == [["episode"]]
    assert "episode" in instance.get_dynamic_partitions(OMOP_TABLES)
    # each request names its extract, so a lost cursor cannot ask for the same extract twice
    assert len({r.run_key for r in [*first.run_requests, *third.run_requests]}) == len(
        first.run_requests
    ) + len(third.run_requests)

    # and then it is quiet again
    assert tick(third.cursor).run_requests == []


def test_new_extract_sensor_targets_snapshot_and_statistics_only(operations):
    sensor = operations["defs"].resolve_sensor_def("demo__new_extract_sensor")
    job = operations["defs"].resolve_job_def(sensor.job_name)
    assert job.asset_layer.executable_asset_keys == {schema_snapshot.key, column_stats.key}


def test_a_new_release_in_cdm_source_marks_every_table(source_copy):
    engine = SourceDatabase(url=f"sqlite:///{source_copy}").engine()
    before = extract_fingerprints(engine, None)
    engine.dispose()
    with sqlite3.connect(source_copy) as conn:
        conn.execute("UPDATE cdm_source SET source_release_date = '2031-01-01'")
    engine = SourceDatabase(url=f"sqlite:///{source_copy}").engine()
    after = extract_fingerprints(engine, None)
    assert set(after) == set(before)
    assert all(after[t] != before[t] for t in before)


# --- the refresh schedule ----------------------------------------------------------------------


def test_refresh_schedule_reads_its_cron_and_asks_for_every_table(operations):
    files = operations["files"]
    project = files.load_project()
    project.refresh_schedule = "30 2 * * 0"
    files.save_project(project)
    schedule = build_refresh_schedule(files)
    assert schedule.cron_schedule == "30 2 * * 0"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED

    with dg.instance_for_test() as instance:  # a schedule context needs a persistent instance
        instance.add_dynamic_partitions(OMOP_TABLES, TABLES)
        context = dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=dt.datetime(2026, 11, 30, 2, 30, tzinfo=dt.UTC),
        )
        requests = schedule(context)
    assert sorted(r.partition_key for r in requests) == sorted(TABLES)
    job = operations["defs"].resolve_job_def(
        operations["defs"].resolve_schedule_def("demo__refresh_schedule").job_name
    )
    assert job.asset_layer.executable_asset_keys == {schema_snapshot.key, column_stats.key}


def test_a_bad_cron_is_refused_naming_the_file_and_setting(config_root):
    files = ProjectFiles(config_root, "demo")
    project = files.load_project()
    project.refresh_schedule = "every monday"
    files.save_project(project)
    with pytest.raises(ConfigError) as err:
        build_refresh_schedule(files)
    assert "project.yaml" in str(err.value)
    assert "refresh_schedule" in str(err.value)


# --- a config edit: stale, then refreshed by the automation, and nothing else -----------------


def _build_chain(ops) -> str | None:
    instance = ops["instance"]
    instance.add_dynamic_partitions(OMOP_TABLES, TABLES)
    cursor, observed = _observe_config_files(ops, None)
    assert observed == sorted(TABLES)
    for t in TABLES:
        result = _materialise(ops, TABLE_STEPS, t)
        assert result.success, t
    assert _materialise(ops, [csv_bundle]).success
    return cursor


@pytest.mark.slow
def test_config_edit_refreshes_exactly_the_dependent_partitions(operations):
    ops = operations
    instance, defs, files = ops["instance"], ops["defs"], ops["files"]
    cursor = _build_chain(ops)
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    assert _requested(tick) == set(), "everything is fresh: nothing to do"

    # the config sensor sees nothing while no file changes
    cursor, observed = _observe_config_files(ops, cursor)
    assert observed == []

    # a reviewer changes the row count and approves the change
    cfg = files.load_table(EDITED)
    cfg.rows += 5
    files.save_table(approve(cfg, "Reviewer", cfg.review.source_fingerprint))
    cursor, observed = _observe_config_files(ops, cursor)
    assert observed == [EDITED]

    assert _stale(ops, reviewed_config.key, EDITED)
    for key in (reviewed_config.key, synthetic_table.key):
        assert not _stale(ops, key, "person")

    # the automation refreshes the edited table's chain, one step a tick, and no other partition
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert _requested(tick) == {("reviewed_config", EDITED)}
    assert _materialise(ops, [reviewed_config], EDITED).success
    # Dagster's staleness goes one hop: the next step turns stale once its parent is rebuilt
    assert _stale(ops, synthetic_table.key, EDITED)
    assert not _stale(ops, synthetic_table.key, "person")

    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert _requested(tick) == {("synthetic_table", EDITED)}
    run = _materialise(ops, [synthetic_table], EDITED)
    assert run.success
    assert run.output_for_node("demo__synthetic_table", "synthetic_table")["rows"] == cfg.rows
    # the long step reports its progress: rows so far, rate, time left
    logs = [e.user_message for e in instance.all_logs(run.run_id)]
    assert any(f"{cfg.rows:,}/{cfg.rows:,} rows" in m and "rows/s" in m for m in logs), logs
    assert _stale(ops, csv_bundle.key)

    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert _requested(tick) == {("csv_bundle", None)}
    assert _materialise(ops, [csv_bundle]).success

    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert _requested(tick) == set()
    for t in TABLES:
        assert not _stale(ops, synthetic_table.key, t), t


@pytest.mark.slow
def test_an_unapproved_edit_stops_the_automation_at_the_gate(operations):
    ops = operations
    instance, defs, files = ops["instance"], ops["defs"], ops["files"]
    cursor = _build_chain(ops)
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance)

    cfg = files.load_table(EDITED)
    cfg.rows += 5  # edited after approval, not approved again
    files.save_table(cfg)
    _observe_config_files(ops, cursor)

    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert _requested(tick) == {("reviewed_config", EDITED)}
    run = _materialise(ops, [reviewed_config], EDITED)
    failed = [e for e in run.get_asset_check_evaluations() if not e.passed]
    assert [e.check_name for e in failed] == ["config_approved"]
    assert "edited after" in failed[0].description

    # the blocking check failed: the automation does not go on to generate
    tick = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=tick.cursor)
    assert _requested(tick) == set()


# --- checks on every step ----------------------------------------------------------------------


def test_every_step_has_checks_and_the_gates_block(operations):
    graph = operations["defs"].resolve_asset_graph()
    by_asset: dict[str, set[str]] = {}
    blocking = set()
    for key in graph.asset_check_keys:
        by_asset.setdefault(key.asset_key.to_user_string(), set()).add(key.name)
        if graph.get_check_spec(key).blocking:
            blocking.add(key.name)
    assert set(by_asset) == {
        "demo/schema_snapshot",
        "demo/column_stats",
        "demo/reviewed_config",
        "demo/synthetic_table",
        "demo/csv_bundle",
    }
    assert {
        "disclosure_rules_hold",
        "config_approved",
        "references_resolve",
        "rules_hold",
        "bundle_verifies",
    } <= blocking
    assert "schema_matches_config" not in blocking  # a drift redrafts; the approval gate stops it


def test_schema_drift_is_reported_against_the_config(operations, source_copy):
    operations["instance"].add_dynamic_partitions(OMOP_TABLES, ["care_site"])
    result = _materialise(operations, [schema_snapshot], "care_site")
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "schema_matches_config" and check.passed

    with sqlite3.connect(source_copy) as conn:
        conn.execute("ALTER TABLE care_site ADD COLUMN site_colour TEXT")
    result = _materialise(operations, [schema_snapshot], "care_site")
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed
    assert "site_colour" in check.description


def test_disclosure_check_passes_on_real_statistics_and_catches_a_small_count(operations):
    operations["instance"].add_dynamic_partitions(OMOP_TABLES, ["person"])
    result = _materialise(operations, [schema_snapshot, column_stats], "person")
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert checks["disclosure_rules_hold"].passed

    policy = DisclosurePolicy()
    released = result.output_for_node("demo__column_stats", "column_stats")["stats"]
    assert audit_released_counts(released, policy) == []
    column = next(c for c in released["columns"].values() if c.get("values"))
    column["values"][0]["count"] = 3  # a count below k slipped through
    problems = audit_released_counts(released, policy)
    assert len(problems) == 1 and problems[0].endswith("count = 3")


def test_config_file_versions_follow_the_bytes(config_root):
    files = ProjectFiles(config_root, "demo")
    before = config_file_versions(files, ["person", "no_such_table"])
    assert before["no_such_table"] == "no-file"
    path = files.table_file("person")
    path.write_text(path.read_text() + "\n# a comment is an edit too\n")
    after = config_file_versions(files, ["person", "no_such_table"])
    assert after["person"] != before["person"]
    assert after["no_such_table"] == before["no_such_table"]


@pytest.mark.slow
def test_a_headless_run_leaves_the_automation_nothing_to_redo(operations, tmp_path, source_copy):
    ops = operations
    report = execute(
        source_url=ops["source"],
        destination_url=f"sqlite:///{tmp_path / 'synthetic.sqlite'}",
        project="demo",
        config_root=ops["files"].root,
        bundle_dir=tmp_path / "bundle",
        tables=TABLES,
        instance=ops["instance"],
    )
    assert report.ok, report
    tick = dg.evaluate_automation_conditions(defs=ops["defs"], instance=ops["instance"])
    # the config sensor's first tick in the UI observes every file, at the versions the run read
    _, observed = _observe_config_files(ops, None)
    assert set(TABLES) <= set(observed)
    tick = dg.evaluate_automation_conditions(
        defs=ops["defs"], instance=ops["instance"], cursor=tick.cursor
    )
    assert _requested(tick) == set()
    for t in TABLES:
        assert not _stale(ops, reviewed_config.key, t), t
