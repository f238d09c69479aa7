"""The whole chain on the demo extract, embedded default (SQLite source and destination).

The first run goes through the README's main command (``synth-pipeline demo``); the second,
with the same seed, through the headless runner on an ephemeral instance.
"""

from __future__ import annotations

import json

import dagster as dg

from synth_pipeline import settings
from synth_pipeline.core.database import open_destination, open_source
from synth_pipeline.runner import environment, execute

from .pipeline_assertions import (
    bundle_problems,
    dangling_by_join,
    leaked_rare_values,
    outside_coded_ranges,
    row_count_mismatches,
)


def test_demo_command_succeeds_and_writes_a_bundle(demo_run, capsys):
    assert demo_run["code"] == 0
    assert (demo_run["out"] / "bundle" / "manifest.json").exists()
    assert (demo_run["out"] / "synthetic.sqlite").exists()


def test_every_synthetic_reference_resolves(demo_run):
    engine = open_destination(f"sqlite:///{demo_run['out'] / 'synthetic.sqlite'}")
    dangling = dangling_by_join(engine, None, demo_run["files"])
    assert dangling, "the demo has foreign keys to check"
    assert {k: v for k, v in dangling.items() if v} == {}


def test_row_counts_match_the_configs(demo_run):
    engine = open_destination(f"sqlite:///{demo_run['out'] / 'synthetic.sqlite'}")
    assert row_count_mismatches(engine, None, demo_run["files"], 1.0) == {}


def test_bundle_checksums_and_disclaimer_verify(demo_run):
    assert bundle_problems(demo_run["out"] / "bundle", demo_run["files"]) == []


def test_no_rare_source_category_leaks(demo_run):
    source = open_source(f"sqlite:///{settings.demo_source_path()}")
    destination = open_destination(f"sqlite:///{demo_run['out'] / 'synthetic.sqlite'}")
    assert leaked_rare_values(source, None, destination, None, demo_run["files"]) == []


def test_numbers_stay_inside_the_coded_ranges(demo_run):
    destination = open_destination(f"sqlite:///{demo_run['out'] / 'synthetic.sqlite'}")
    assert outside_coded_ranges(destination, None, demo_run["files"]) == []


def test_demo_configs_were_not_rewritten(demo_run):
    """The committed demo configs are approved for the demo extract as it is: a run keeps them."""
    files = demo_run["files"]
    for table in files.tables():
        assert files.load_table(table).review.status == "approved", table


def test_same_seed_gives_identical_files(demo_run, tmp_path):
    files = demo_run["files"]
    report = execute(
        source_url=f"sqlite:///{settings.demo_source_path()}",
        destination_url=f"sqlite:///{tmp_path / 'again.sqlite'}",
        project="demo",
        config_root=files.root,
        bundle_dir=tmp_path / "bundle",
        instance=dg.DagsterInstance.ephemeral(),
    )
    assert report.ok, [(t.table, t.messages) for t in report.tables if not t.ok]
    first = json.loads((demo_run["out"] / "bundle" / "manifest.json").read_text())
    second = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert [(t["file"], t["sha256"]) for t in first["tables"]] == [
        (t["file"], t["sha256"]) for t in second["tables"]
    ]
    for t in first["tables"]:
        assert (demo_run["out"] / "bundle" / t["file"]).read_bytes() == (
            tmp_path / "bundle" / t["file"]
        ).read_bytes()


def test_dirty_data_is_reported_in_metadata(demo_run):
    with environment({"DAGSTER_HOME": str(demo_run["dagster_home"])}):
        instance = dg.DagsterInstance.get()
    found = {}
    for table in ("drug_exposure", "measurement", "condition_occurrence", "observation_period"):
        records = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["demo", "column_stats"]), asset_partitions=[table]
            ),
            limit=1,
        ).records
        assert records, f"column_stats[{table}] was materialised"
        found[table] = records[0].asset_materialization.metadata["dirty_data_found"].value
    assert "duplicates" in found["drug_exposure"]
    assert "0 for NULL" in found["measurement"]
    assert "dangling" in found["condition_occurrence"]
    assert "person ids missing from person" in found["observation_period"]
