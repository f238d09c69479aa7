"""A backfill starts its runs in any order, one per table: a table whose parents are not written
yet waits for them (its write step is retried, freeing the project's write slot) instead of
pointing at rows that are not there, and gives up after SYNTH_PARENT_WAIT_SECONDS naming
them. Runs outside a backfill (the CLI writes parents first) never wait."""

from __future__ import annotations

import sqlite3
import threading
import time

import dagster as dg
import pytest

from synth_pipeline.assets import project_assets
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_writable_destination
from synth_pipeline.core.errors import ConfigError
from synth_pipeline.core.generation import Generation, parents_not_written
from synth_pipeline.environment import parent_wait_seconds
from synth_pipeline.runner import temporary_environment

from .step_project import demo_on_instance

DEMO = project_assets("demo")
CHILD = "observation_period"  # its one parent in the demo's configs: person
PARENT = "person"  # whose own references are always NULL in the demo's configs
BACKFILL = {"dagster/backfill": "test-backfill"}


@pytest.fixture
def project(demo_sqlite_url, config_root, tmp_path):
    return demo_on_instance(tmp_path, demo_sqlite_url, config_root, [CHILD, PARENT])


def _materialise(project, table, tags=None):
    return dg.materialize(
        DEMO.all,
        selection=DEMO.table_steps,
        partition_key=table,
        instance=project["instance"],
        resources=project["resources"],
        tags=tags,
        raise_on_error=False,
    )


def _retries(instance, run_id) -> list:
    return instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)


def _tables(path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def _backfill_runs(instance) -> list:
    return instance.get_runs(filters=dg.RunsFilter(tags=BACKFILL))


def test_a_child_in_a_backfill_waits_for_its_parent_then_points_at_it(project):
    instance, done = project["instance"], {}
    with temporary_environment({"SYNTH_PARENT_WAIT_SECONDS": "240"}):
        child = threading.Thread(
            target=lambda: done.setdefault("result", _materialise(project, CHILD, BACKFILL))
        )
        child.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            runs = _backfill_runs(instance)
            if runs and _retries(instance, runs[0].run_id):
                break
            time.sleep(0.5)
        else:
            pytest.fail("the child's write step never waited for its parent")
        assert CHILD not in _tables(project["dest"]), "written before its parent"
        # the parent's run takes the write slot while the child waits: it is not held
        assert _materialise(project, PARENT).success
        child.join(timeout=300)
    result = done["result"]
    assert result.success
    [references] = [
        e for e in result.get_asset_check_evaluations() if e.check_name == "references_resolve"
    ]
    assert references.passed and references.partition == CHILD
    waited = [
        e.message
        for e in instance.all_logs(result.run_id)
        if "waiting for its parent(s) person" in (e.message or "")
    ]
    assert waited, "the run's log does not say what it waited for"

    # what counts as written: the approved config, at this seed and scale
    files = ProjectFiles(project["root"], "demo")
    cfg = files.load_table(CHILD)
    engine = open_writable_destination(f"sqlite:///{project['dest']}", None)
    try:
        seed = project["resources"]["project"].run_seed()
        assert parents_not_written(files, cfg, engine, None, Generation(seed, 1.0, 1000)) == []
        assert parents_not_written(files, cfg, engine, None, Generation(seed + 1, 1.0, 1000)) == [
            "person"
        ]
        assert parents_not_written(files, cfg, engine, None, Generation(seed, 2.0, 1000)) == [
            "person"
        ]
    finally:
        engine.dispose()


def test_a_backfill_gives_up_naming_the_parent_and_a_plain_run_never_waits(project):
    instance = project["instance"]
    with temporary_environment({"SYNTH_PARENT_WAIT_SECONDS": "2"}):
        result = _materialise(project, CHILD, BACKFILL)
    assert not result.success
    assert len(_retries(instance, result.run_id)) == 1
    [failure] = [e for e in result.all_events if e.is_step_failure]
    text = str(failure.step_failure_data.user_failure_data.description)
    assert "observation_period not written" in text and "person" in text, text
    assert "SYNTH_PARENT_WAIT_SECONDS" in text
    assert CHILD not in _tables(project["dest"])

    # outside a backfill the step does not wait: the table is written at once and its
    # references check says the parent is missing, as before
    plain = _materialise(project, CHILD)
    assert _retries(instance, plain.run_id) == []
    assert CHILD in _tables(project["dest"])
    [references] = [
        e for e in plain.get_asset_check_evaluations() if e.check_name == "references_resolve"
    ]
    assert not references.passed


@pytest.mark.parametrize("value", ["-1", "ten"])
def test_a_bad_wait_setting_is_named(value):
    with (
        temporary_environment({"SYNTH_PARENT_WAIT_SECONDS": value}),
        pytest.raises(ConfigError, match="SYNTH_PARENT_WAIT_SECONDS"),
    ):
        parent_wait_seconds()
