"""A site's own vocabulary, on PostgreSQL (issue 12): concepts above 2,000,000,000 and local
vocabularies are named in the configs and the review, left out of the bundle by default and
copied when a reviewer says so; their 40-character vocabulary_id and 120-character
concept_code reach the destination; a vocabulary table that cannot be written fails the run.

The extract is built by site_vocabulary.py; what the tests expect is read from it and from the
files, not from the code under test.
"""

from __future__ import annotations

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
import yaml

from synth_pipeline import cli
from synth_pipeline.core.bundle import verify_bundle
from synth_pipeline.core.config import approve
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_destination
from synth_pipeline.core.review import review_text
from synth_pipeline.runner import execute

from . import site_vocabulary as sv

VOCABULARY_TABLES = [
    "concept",
    "vocabulary",
    "concept_synonym",
    "concept_ancestor",
    "concept_relationship",
]
# every test here runs, or reads, init + approve + run of the site's extract in PostgreSQL
pytestmark = pytest.mark.slow

LOCAL_VOCABULARIES = {sv.LOCAL_ZERO, sv.LOCAL_HIGH, sv.LOCAL_ONLY}
SITE_LOCAL = set(sv.SITE_LOCAL_CONCEPTS)


def fresh_schema(url: str, schema: str) -> None:
    engine = open_destination(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine.dispose()


def init_and_approve(url: str, source_schema: str, root) -> ProjectFiles:
    common = ["--project", "site", "--config-dir", str(root)]
    assert cli.main(["init", "--source", url, "--schema", source_schema, *common]) == 0
    assert cli.main(["approve", "--all", "--reviewer", "R. Eviewer", *common]) == 0
    return ProjectFiles(root, "site")


def run(url, source_schema, destination_schema, files: ProjectFiles, bundle, **kw):
    return execute(
        source_url=url,
        source_schema=source_schema,
        destination_url=url,
        destination_schema=destination_schema,
        project="site",
        config_root=files.root,
        bundle_dir=bundle,
        instance=dg.DagsterInstance.ephemeral(),
        **kw,
    )


def rows(url: str, schema: str, table: str) -> list[tuple]:
    engine = open_destination(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(f'SELECT * FROM {schema}."{table}"')]
    finally:
        engine.dispose()


def concept_ids_in(table_rows: list[tuple], table: str) -> set[int]:
    """The concept ids a vocabulary table's rows name (both ends of an ancestry or relation)."""
    positions = {
        "concept": [0],
        "concept_synonym": [0],
        "concept_ancestor": [0, 1],
        "concept_relationship": [0, 1],
    }[table]
    return {r[i] for r in table_rows for i in positions}


def readme_text(bundle) -> str:
    return " ".join((bundle / "README.md").read_text().split())


@pytest.fixture(scope="module")
def by_default(postgres_database, tmp_path_factory):
    """init, approve --all and run with every default, from a source declaring TEXT."""
    tmp = tmp_path_factory.mktemp("site-default")
    sv.build(postgres_database, "site_text", text="TEXT")
    fresh_schema(postgres_database, "site_default")
    files = init_and_approve(postgres_database, "site_text", tmp / "configuration-files")
    report = run(postgres_database, "site_text", "site_default", files, tmp / "bundle")
    return {"report": report, "files": files, "bundle": tmp / "bundle"}


def test_site_local_concepts_are_named_in_the_configs_and_the_review(by_default):
    files = by_default["files"]
    for table in VOCABULARY_TABLES:
        data = yaml.safe_load(files.table_file(table).read_text())
        assert data["kind"] == "vocabulary" and data["site_local"] == "exclude", table
    concept = " ".join(review_text(files, "concept").split())
    assert (
        "site_local: exclude: the site's own concepts (concept_id above 2,000,000,000)" in concept
    )
    assert (
        "condition_occurrence.condition_concept_id 2000000001, "
        "condition_occurrence.condition_source_concept_id 2000000002, 2000000003" in concept
    )
    conditions = " ".join(review_text(files, "condition_occurrence").split())
    assert "site-local concept ids (above 2,000,000,000, the site's own codes) in " in conditions
    assert "condition_occurrence.condition_source_concept_id: 2000000002, 2000000003" in conditions
    person = " ".join(review_text(files, "person").split())
    assert "site-local" not in person


def test_site_local_rows_stay_out_of_the_bundle_by_default(by_default, postgres_database):
    report, bundle = by_default["report"], by_default["bundle"]
    assert report.ok, [(t.table, t.messages) for t in report.tables] + report.bundle_messages
    assert verify_bundle(bundle) == []
    for table in ["concept", "concept_synonym", "concept_ancestor", "concept_relationship"]:
        held = concept_ids_in(rows(postgres_database, "site_default", table), table)
        assert held and not held & SITE_LOCAL, table
        published = pl.read_csv(bundle / f"{table}.csv", infer_schema=False)
        assert not set(published.to_numpy().ravel()) & {str(c) for c in SITE_LOCAL}, table
    # the public concepts the synthetic tables use are all there
    concepts = concept_ids_in(rows(postgres_database, "site_default", "concept"), "concept")
    assert {*sv.PUBLIC_CONDITIONS, sv.MALE, sv.FEMALE, sv.EHR} <= concepts
    vocabularies = {r[0] for r in rows(postgres_database, "site_default", "vocabulary")}
    assert vocabularies == {"SNOMED", "Gender"}
    published = set(pl.read_csv(bundle / "vocabulary.csv", infer_schema=False)["vocabulary_id"])
    assert published == {"SNOMED", "Gender"}
    readme = readme_text(bundle)
    assert "hold a subset of the public OMOP vocabulary" in readme
    assert (
        "Site-local concepts (concept_id above 2,000,000,000) and the site's local vocabularies "
        "are not included in concept, concept_ancestor, concept_relationship, concept_synonym, "
        "vocabulary (site_local: exclude)." in readme
    )
    assert (
        "These columns carry site-local concept ids that have no row in concept.csv, with the "
        "number of such ids: condition_occurrence.condition_concept_id (1), "
        "condition_occurrence.condition_source_concept_id (2)." in readme
    )
    assert "site_local: include" not in readme


def test_a_reviewer_can_include_site_local_concepts(postgres_database, tmp_path):
    """From a source declaring VARCHAR(255): the reviewer's site_local: include copies the
    site's concepts, with their long strings, and the README says so."""
    sv.build(postgres_database, "site_varchar", text="VARCHAR(255)")
    fresh_schema(postgres_database, "site_included")
    files = init_and_approve(postgres_database, "site_varchar", tmp_path / "configuration-files")
    for table in VOCABULARY_TABLES:
        cfg = files.load_table(table)
        cfg.site_local = "include"
        files.save_table(cfg)
    # the choice is part of what the reviewer approves: unapproved, it is refused
    refused = run(
        postgres_database,
        "site_varchar",
        "site_included",
        files,
        tmp_path / "refused",
        tables=["concept"],
    )
    assert not refused.ok
    assert "edited after" in " ".join(m for t in refused.tables for m in t.messages)
    for table in VOCABULARY_TABLES:
        files.save_table(approve(files.load_table(table), "R. Eviewer", None))
    report = run(postgres_database, "site_varchar", "site_included", files, tmp_path / "bundle")
    assert report.ok, [(t.table, t.messages) for t in report.tables] + report.bundle_messages

    concept = rows(postgres_database, "site_included", "concept")
    assert concept_ids_in(concept, "concept") >= SITE_LOCAL
    local = [r for r in concept if r[0] in SITE_LOCAL]
    assert {len(r[3]) for r in local} == {40} and {len(r[6]) for r in local} == {120}
    vocabularies = {r[0] for r in rows(postgres_database, "site_included", "vocabulary")}
    assert vocabularies == {"SNOMED", "Gender"} | LOCAL_VOCABULARIES
    for table, pairs in [
        ("concept_synonym", {c for c, _ in sv.SYNONYMS}),
        ("concept_ancestor", {x for pair in sv.ANCESTORS for x in pair}),
        ("concept_relationship", {x for a, b, _ in sv.RELATIONSHIPS for x in (a, b)}),
    ]:
        assert concept_ids_in(rows(postgres_database, "site_included", table), table) == pairs
    engine = open_destination(postgres_database)
    with engine.connect() as conn:
        types = dict(
            conn.execute(
                sa.text(
                    "SELECT column_name, character_maximum_length FROM information_schema.columns "
                    "WHERE table_schema = 'site_included' AND table_name = 'concept'"
                )
            ).all()
        )
    engine.dispose()
    assert types["vocabulary_id"] == types["concept_code"] == 255
    readme = readme_text(tmp_path / "bundle")
    assert (
        "concept, concept_ancestor, concept_relationship, concept_synonym, vocabulary include the "
        "site's own concepts and local vocabularies, as a reviewer chose (site_local: include): "
        f"3 site-local concepts in concept, the local vocabularies {sv.LOCAL_ZERO}, "
        f"{sv.LOCAL_ONLY}, {sv.LOCAL_HIGH}. They are the site's codes, not public OMOP "
        "vocabulary." in readme
    )
    assert "no row in concept.csv" not in readme
    assert "are not included in" not in readme
    published = pl.read_csv(tmp_path / "bundle" / "concept.csv", infer_schema=False)
    assert {str(c) for c in SITE_LOCAL} <= set(published["concept_id"])


def test_a_vocabulary_table_that_cannot_be_written_fails_the_run(
    by_default, postgres_database, tmp_path, capsys
):
    """A destination whose concept is a view, which the copy cannot replace: the CLI names the
    table and why, exits 1 and writes no bundle."""
    files = by_default["files"]
    fresh_schema(postgres_database, "site_blocked")
    engine = open_destination(postgres_database)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE VIEW site_blocked.concept AS SELECT 1 AS concept_id")
    engine.dispose()
    capsys.readouterr()
    code = cli.main(
        ["run", "--source", postgres_database, "--schema", "site_text"]
        + ["--destination", postgres_database, "--destination-schema", "site_blocked"]
        + ["--bundle", str(tmp_path / "bundle"), "--tables", "concept", "person"]
        + ["--project", "site", "--config-dir", str(files.root)]
    )
    out = capsys.readouterr().out
    assert code == 1
    lines = out.splitlines()
    (failed,) = [i for i, line in enumerate(lines) if line.split()[:2] == ["concept", "FAILED"]]
    assert 'destination table concept: "concept" is not a table' in lines[failed + 1]
    assert any(line.split()[:2] == ["person", "ok"] for line in lines)
    assert "not written because concept failed" in out
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize("site_local", ["exclude", "include"])
def test_whole_table_copies_leave_out_site_local_rows_too(by_default, tmp_path, site_local):
    """vocabulary_rows: all copies every public row; the site's own rows only when included.
    In SQLite, whose json_each binds the local vocabularies' names."""
    from synth_pipeline.core.schema import ColumnDef, list_tables
    from synth_pipeline.core.transfer import copy_table
    from synth_pipeline.core.vocabulary import plan_copy, selected_rows
    from synth_pipeline.core.write import RegisterEntry

    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    sv.build(source_url, text="VARCHAR(20)")
    source = open_destination(source_url)
    dest = open_destination(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    files = by_default["files"]
    expected = {
        "concept": (len(sv.PUBLIC_CONCEPTS), len(sv.LOCAL_CONCEPTS)),
        "vocabulary": (2, 3),
        "concept_synonym": (1, 2),
        "concept_ancestor": (2, 2),
        "concept_relationship": (1, 2),
    }
    for table, (public, local) in expected.items():
        cfg = files.load_table(table)
        cfg.vocabulary_rows, cfg.site_local = "all", site_local
        plan = plan_copy(files, cfg, source, None, list_tables(source, None))
        written = copy_table(
            source,
            None,
            table,
            dest,
            None,
            table,
            [ColumnDef(n, c.type, c.max_length) for n, c in cfg.columns.items()],
            entry=RegisterEntry("vocabulary", cfg.fingerprint(), None, None, {}, "test"),
            where=plan.where,
            params=plan.params,
        )
        with dest.connect() as conn:
            held = [tuple(r) for r in conn.exec_driver_sql(f'SELECT * FROM "{table}"')]
        assert written == len(held) == selected_rows(source, None, table, plan)
        if site_local == "exclude":
            assert len(held) == public and plan.site_local_rows == local, table
        else:
            assert len(held) == public + local and plan.site_local_rows == 0, table
        if table == "vocabulary":
            assert ({r[0] for r in held} & LOCAL_VOCABULARIES) == (
                LOCAL_VOCABULARIES if site_local == "include" else set()
            )
        else:
            assert bool(concept_ids_in(held, table) & SITE_LOCAL) == (site_local == "include")
    source.dispose()
    dest.dispose()
