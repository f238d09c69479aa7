"""The whole chain on the demo extract in PostgreSQL: init, approve, run, bundle.

The extract sits in schema ``cdm`` of a fresh database; the synthetic tables go to schema
``synthetic`` of the same server's database, as an existing destination. The run is conftest's
``pg_demo_run`` (two tables at a time on an instance with PostgreSQL storage), shared with
test_postgres_instance.py and test_vocabulary_subset.py.
"""

from __future__ import annotations

import pytest

from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_destination, open_source

from .pipeline_assertions import (
    bundle_problems,
    dangling_by_join,
    leaked_rare_values,
    outside_coded_ranges,
    row_count_mismatches,
)


@pytest.fixture
def pg_run(pg_demo_run):
    """conftest's ``pg_demo_run``: init, approve and run of the demo extract in PostgreSQL."""
    return pg_demo_run


def test_run_succeeds_for_every_table(pg_run):
    report = pg_run["report"]
    assert [(t.table, t.messages) for t in report.tables if not t.ok] == []
    assert report.bundle_ok, report.bundle_messages
    assert len(report.tables) == 37


def test_references_resolve_in_postgres(pg_run):
    engine = open_destination(pg_run["url"])
    dangling = dangling_by_join(engine, "synthetic", pg_run["files"])
    assert "condition_occurrence.person_id" in dangling
    assert {k: v for k, v in dangling.items() if v} == {}


def test_row_counts_match_in_postgres(pg_run):
    engine = open_destination(pg_run["url"])
    assert row_count_mismatches(engine, "synthetic", pg_run["files"], 1.0) == {}


def test_bundle_verifies_from_postgres(pg_run):
    assert bundle_problems(pg_run["bundle"], pg_run["files"]) == []


def test_nothing_rare_leaks_from_postgres(pg_run):
    source = open_source(pg_run["url"])
    destination = open_destination(pg_run["url"])
    assert leaked_rare_values(source, "cdm", destination, "synthetic", pg_run["files"]) == []
    assert outside_coded_ranges(destination, "synthetic", pg_run["files"]) == []


def test_statistics_match_the_sqlite_demo(pg_run, config_root):
    """Statistics are computed by the same definitions on both databases: the PostgreSQL draft
    releases the same numbers as the approved SQLite demo configs."""
    pg = pg_run["files"]
    demo = ProjectFiles(config_root, "demo")
    for table in ("person", "visit_occurrence", "measurement", "drug_exposure"):
        a, b = pg.load_table(table), demo.load_table(table)
        assert a.rows == b.rows
        for name, col in b.columns.items():
            assert a.columns[name].generator == col.generator, (table, name)
            assert a.columns[name].stats == col.stats, (table, name)
