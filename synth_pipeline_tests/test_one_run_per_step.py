"""One run per step for many tables (issue 15): the CLI, and a backfill from the UI, run each step
for all the tables at once, yet each table gets its own materialisation, metadata, data version
and check results, and a table that fails stops only itself.

The runs here are real materialisations of the demo's steps on a temporary instance, over a
partition range of three tables; what they wrote is read back from the instance and, for the
rows, from the destination with plain sqlite3."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import dagster as dg
import pytest
import yaml

from synth_pipeline.assets import project_assets
from synth_pipeline.assets.step import BLOCKED_TABLES, DATA_VERSION_TAG, FAILED_TABLES, STEPS
from synth_pipeline.launched import split_ranges
from synth_pipeline.run_results import table_summaries
from synth_pipeline.step_runs import neighbour_blocks, step_blocks

from .step_project import demo_on_instance

DEMO = project_assets("demo")
# neighbours among the partitions, in this order; observation_period's parent is person
TABLES = ["observation_period", "care_site", "person"]
RANGE = {
    "dagster/asset_partition_range_start": TABLES[0],
    "dagster/asset_partition_range_end": TABLES[-1],
}


@pytest.fixture
def project(demo_sqlite_url, config_root, tmp_path):
    return demo_on_instance(tmp_path, demo_sqlite_url, config_root, TABLES)


def _step(project, step: str) -> dg.ExecuteInProcessResult:
    """One run of ``step`` over the three tables."""
    return dg.materialize(
        DEMO.all,
        selection=[getattr(DEMO, step)],
        instance=project["instance"],
        resources=project["resources"],
        tags=RANGE,
        raise_on_error=False,
    )


def _materialisations(instance, step: str) -> list:
    key = getattr(DEMO, step).key
    return instance.fetch_materializations(key, limit=100).records


def _rows(path, table: str) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0]


def _failure_metadata(result) -> dict:
    [failure] = [e for e in result.all_events if e.is_step_failure]
    metadata = failure.step_failure_data.user_failure_data.metadata
    return {k: metadata[k].value for k in (FAILED_TABLES, BLOCKED_TABLES)}


def test_each_step_is_one_run_and_each_table_has_its_own_materialisation_and_checks(project):
    instance = project["instance"]
    results = {step: _step(project, step) for step in STEPS}
    assert all(r.success for r in results.values()), {s: r.success for s, r in results.items()}
    assert len(instance.get_runs()) == len(STEPS)
    for step, result in results.items():
        records = _materialisations(instance, step)
        # one materialisation per table, none without a partition, all from the step's run
        assert sorted(r.partition_key for r in records) == sorted(TABLES), step
        assert {r.run_id for r in records} == {result.run_id}
        checks = getattr(DEMO, step).check_specs
        for spec in checks:
            evaluated = [
                e for e in result.get_asset_check_evaluations() if e.check_name == spec.name
            ]
            assert sorted(e.partition for e in evaluated) == sorted(TABLES), (step, spec.name)
    # each table's own metadata: the rows written, as a query of the destination counts them
    for record in _materialisations(instance, "synthetic_table"):
        metadata = record.asset_materialization.metadata
        assert metadata["dagster/row_count"].value == _rows(project["dest"], record.partition_key)
    counts = {
        r.partition_key: r.asset_materialization.metadata["dagster/row_count"].value
        for r in _materialisations(instance, "schema_snapshot")
    }
    assert len(set(counts.values())) == len(TABLES), counts  # not one table's count for all
    # and its own data version, which declarative automation compares
    versions = {
        r.partition_key: r.asset_materialization.tags[DATA_VERSION_TAG]
        for r in _materialisations(instance, "schema_snapshot")
    }
    assert len(set(versions.values())) == len(TABLES), versions
    summaries = table_summaries(results["synthetic_table"], TABLES, generated=True)
    assert {t: s.synthetic_rows for t, s in summaries.items()} == {
        t: _rows(project["dest"], t) for t in TABLES
    }


def _unapprove(root, table: str) -> None:
    path = root / "demo" / f"{table}.yaml"
    data = yaml.safe_load(path.read_text())
    data["review"]["status"] = "draft"
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_table_that_fails_stops_only_itself(project):
    instance = project["instance"]
    _unapprove(project["root"], "care_site")
    for step in STEPS[:2]:
        assert _step(project, step).success
    reviewed = _step(project, "reviewed_config")
    # the blocking check fails for care_site alone; the others are materialised and pass
    assert not reviewed.success
    assert _failure_metadata(reviewed) == {
        FAILED_TABLES: {},
        BLOCKED_TABLES: {"care_site": ["config_approved"]},
    }
    approved = {
        e.partition: e.passed
        for e in reviewed.get_asset_check_evaluations()
        if e.check_name == "config_approved"
    }
    assert approved == {"observation_period": True, "care_site": False, "person": True}
    summaries = table_summaries(reviewed, TABLES, generated=False)
    assert [t for t, s in summaries.items() if not s.success] == ["care_site"]
    assert summaries["care_site"].errors == []
    assert "config_approved" in summaries["care_site"].checks[0]
    # the write step refuses care_site's unapproved config by itself and writes the others
    written = _step(project, "synthetic_table")
    assert not written.success
    failed = _failure_metadata(written)[FAILED_TABLES]
    assert list(failed) == ["care_site"] and "care_site" in failed["care_site"]
    records = _materialisations(instance, "synthetic_table")
    assert sorted(r.partition_key for r in records) == ["observation_period", "person"]
    with sqlite3.connect(project["dest"]) as conn:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"observation_period", "person"} <= names and "care_site" not in names
    summaries = table_summaries(written, TABLES, generated=True)
    assert not summaries["care_site"].success and summaries["care_site"].synthetic_rows is None
    assert summaries["person"].synthetic_rows == _rows(project["dest"], "person")


def test_a_table_without_its_earlier_step_fails_alone_naming_it(project):
    assert _step(project, "schema_snapshot").success
    state = project["resources"]["state_io_manager"].base_dir
    stored = list(Path(state).rglob("person.json"))
    assert len(stored) == 1
    stored[0].unlink()
    result = _step(project, "column_stats")
    failed = _failure_metadata(result)[FAILED_TABLES]
    assert list(failed) == ["person"] and "no stored schema_snapshot for person" in failed["person"]
    records = _materialisations(project["instance"], "column_stats")
    assert sorted(r.partition_key for r in records) == ["care_site", "observation_period"]


def test_runs_are_blocks_of_neighbouring_partitions_and_writes_come_parents_first():
    order = ["a", "observation_period", "b", "person", "c"]
    assert neighbour_blocks(["person", "a", "observation_period", "c"], order) == [
        ["a", "observation_period"],
        ["person", "c"],
    ]
    # neighbours: one run, whatever they hold (the step writes parents first within it)
    assert step_blocks(["observation_period", "b", "person"], order, writes=True) == [
        ["observation_period", "b", "person"]
    ]
    # apart: the write step's runs go wave by wave, the parent's first
    assert step_blocks(["observation_period", "person"], order, writes=True) == [
        ["person"],
        ["observation_period"],
    ]
    assert step_blocks(["observation_period", "person"], order, writes=False) == [
        ["observation_period"],
        ["person"],
    ]


def test_parallel_ranges_halve_the_longest_until_there_are_enough():
    """``--parallel N`` cuts a step's blocks into up to N ranges of neighbours, order kept."""
    assert split_ranges([["a", "b", "c", "d", "e"]], 2) == [["a", "b"], ["c", "d", "e"]]
    assert split_ranges([["a", "b", "c", "d", "e"]], 3) == [["a", "b"], ["c"], ["d", "e"]]
    assert split_ranges([["a"], ["b", "c"]], 3) == [["a"], ["b"], ["c"]]
    assert split_ranges([["a"], ["b"]], 4) == [["a"], ["b"]]  # no table split further
    assert split_ranges([["a", "b", "c"], ["d"]], 1) == [["a", "b", "c"], ["d"]]  # blocks kept
