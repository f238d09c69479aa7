"""The review gate: nothing is generated from a draft, hand-edited or stale configuration,
whether the run comes from the CLI or from Dagster, and the reason names the table."""

from __future__ import annotations

import shutil
import sqlite3

import dagster as dg
import pytest
import yaml

from synth_pipeline import cli
from synth_pipeline.assets import project_assets
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.dask_resource import DaskCluster
from synth_pipeline.resources import (
    DestinationDatabase,
    JsonStateIOManager,
    SourceDatabase,
    SynthProject,
)

# the demo project's assets (keys demo/...) and partitions
DEMO = project_assets("demo")
ALL_ASSETS = DEMO.all
OMOP_TABLES = DEMO.partitions_name
schema_snapshot, column_stats, reviewed_config, synthetic_table = DEMO.table_steps


@pytest.fixture
def source_copy(demo_sqlite_url, tmp_path):
    path = tmp_path / "source.sqlite"
    shutil.copy(demo_sqlite_url.removeprefix("sqlite:///"), path)
    return path


def run_person(config_root, source_path, tmp_path, capsys):
    code = cli.main(
        [
            "run",
            "--source",
            f"sqlite:///{source_path}",
            "--destination",
            f"sqlite:///{tmp_path / 'dest.sqlite'}",
            "--project",
            "demo",
            "--bundle",
            str(tmp_path / "bundle"),
            "--tables",
            "person",
            "--config-dir",
            str(config_root),
        ]
    )
    return code, capsys.readouterr().out


def set_review(path, **changes):
    data = yaml.safe_load(path.read_text())
    data["review"].update(changes)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_cli_refuses_a_draft(config_root, source_copy, tmp_path, capsys):
    set_review(config_root / "demo" / "person.yaml", status="draft")
    code, out = run_person(config_root, source_copy, tmp_path, capsys)
    assert code == 1
    assert "person" in out and "draft" in out and "config_approved" in out
    assert not (tmp_path / "dest.sqlite").exists() or "person" not in _tables(
        tmp_path / "dest.sqlite"
    )


def test_cli_refuses_a_config_edited_after_approval(config_root, source_copy, tmp_path, capsys):
    path = config_root / "demo" / "person.yaml"
    data = yaml.safe_load(path.read_text())
    data["columns"]["gender_concept_id"]["params"] = {"other": "value", "other_value": 0}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, out = run_person(config_root, source_copy, tmp_path, capsys)
    assert code == 1
    assert "edited after" in out and "person" in out


def test_cli_refuses_after_the_source_changed(config_root, source_copy, tmp_path, capsys):
    with sqlite3.connect(source_copy) as conn:
        conn.execute("DELETE FROM person WHERE person_id % 3 = 0")
    code, out = run_person(config_root, source_copy, tmp_path, capsys)
    assert code == 1
    assert "source schema or statistics changed" in out and "previously approved by" in out
    refreshed = ProjectFiles(config_root, "demo").load_table("person")
    assert refreshed.review.status == "draft"
    assert refreshed.rows < 2695


def _tables(path):
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _resources(config_root, source_path, tmp_path):
    return {
        "source": SourceDatabase(url=f"sqlite:///{source_path}"),
        "destination": DestinationDatabase(url=f"sqlite:///{tmp_path / 'dest.sqlite'}"),
        "project": SynthProject(
            project="demo", config_root=str(config_root), bundle_dir=str(tmp_path / "bundle")
        ),
        "state_io_manager": JsonStateIOManager(base_dir=str(tmp_path / "state")),
        "dask": DaskCluster(),
    }


def _make_draft(config_root, source_path):
    set_review(config_root / "demo" / "person.yaml", status="draft")


def _edit_after_approval(config_root, source_path):
    path = config_root / "demo" / "person.yaml"
    data = yaml.safe_load(path.read_text())
    # a reviewer slips a value into the released statistics without a new approval
    data["columns"]["race_concept_id"]["stats"]["values"].append({"value": 8657, "count": 100})
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _change_the_source(config_root, source_path):
    with sqlite3.connect(source_path) as conn:
        conn.execute("DELETE FROM person WHERE person_id % 3 = 0")


@pytest.mark.parametrize(
    ("breakage", "reason"),
    [
        (_make_draft, "draft, not approved by a reviewer"),
        (_edit_after_approval, "edited after"),
        (_change_the_source, "source schema or statistics changed"),
    ],
    ids=["draft", "edited-after-approval", "stale-fingerprint"],
)
def test_dagster_blocking_check_fails_and_generation_does_not_run(
    config_root, source_copy, tmp_path, breakage, reason
):
    breakage(config_root, source_copy)
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(OMOP_TABLES, ["person"])
    result = dg.materialize(
        ALL_ASSETS,
        selection=[schema_snapshot, column_stats, reviewed_config, synthetic_table],
        partition_key="person",
        instance=instance,
        resources=_resources(config_root, source_copy, tmp_path),
        raise_on_error=False,
    )
    assert not result.success
    [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "config_approved"]
    assert not check.passed
    assert check.description.startswith("table person: ") and reason in check.description
    materialized = {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}
    assert "synthetic_table" not in materialized
    assert "reviewed_config" in materialized


def test_generation_itself_refuses_when_statistics_moved_on(config_root, source_copy, tmp_path):
    """Even run alone (no blocking check in the same run), synthetic_table refuses a config
    whose approval no longer matches the latest statistics."""
    instance = dg.DagsterInstance.ephemeral()
    instance.add_dynamic_partitions(OMOP_TABLES, ["person"])
    resources = _resources(config_root, source_copy, tmp_path)
    first = dg.materialize(
        ALL_ASSETS,
        selection=[schema_snapshot, column_stats, reviewed_config],
        partition_key="person",
        instance=instance,
        resources=resources,
    )
    assert first.success
    with sqlite3.connect(source_copy) as conn:
        conn.execute("DELETE FROM person WHERE person_id % 2 = 0")
    again = dg.materialize(
        ALL_ASSETS,
        selection=[schema_snapshot, column_stats],
        partition_key="person",
        instance=instance,
        resources=resources,
    )
    assert again.success
    result = dg.materialize(
        ALL_ASSETS,
        selection=[synthetic_table],
        partition_key="person",
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    assert not result.success
    errors = [e.step_failure_data.error for e in result.all_events if e.is_step_failure]
    text = " ".join(
        (err.message or "") + " ".join(c.message for c in [err.cause] if c) for err in errors
    )
    assert "person" in text and "changed since the approval" in text
