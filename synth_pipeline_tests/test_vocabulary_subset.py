"""Vocabulary tables carry only the concepts the synthetic tables can contain (issue 3).

An extract often holds only the part of the OMOP vocabulary its records use; copying it as it
is would publish which concepts occur in the source, rare ones included. These tests read the
approved configs themselves (not through the code under test) to know which concepts may leave,
and look at what reached the destination and the bundle: the demo extract in SQLite and in
PostgreSQL, the adversarial extract with its concepts seen once, and a reviewer's
``vocabulary_rows: all``.
"""

from __future__ import annotations

import json

import dagster as dg
import polars as pl
import pytest
import sqlalchemy as sa
import yaml

from synth_pipeline.core.config import approve
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_destination, open_source
from synth_pipeline.core.errors import ConfigError
from synth_pipeline.core.preflight import check_configuration
from synth_pipeline.core.review import review_text
from synth_pipeline.runner import execute

from . import adversarial as adv

CONCEPT_LEVEL = {
    "concept": ("concept_id",),
    "concept_synonym": ("concept_id",),
    "drug_strength": ("drug_concept_id",),
    "concept_ancestor": ("ancestor_concept_id", "descendant_concept_id"),
    "concept_relationship": ("concept_id_1", "concept_id_2"),
}
METADATA = {
    "vocabulary": "vocabulary_concept_id",
    "domain": "domain_concept_id",
    "concept_class": "concept_class_concept_id",
    "relationship": "relationship_concept_id",
}
VOCABULARY_TABLES = [*CONCEPT_LEVEL, *METADATA, "source_to_concept_map"]


# ---------------------------------------------------------------------------------------------
# What may leave, read straight from the YAML files


def approved_config_concepts(files: ProjectFiles) -> set[int]:
    """Every concept id an approved synthetic config lists for a *_concept_id column: common
    values, per-group values, the stand-in for other values, constants."""
    out: set[int] = set()
    for table in files.tables():
        data = yaml.safe_load(files.table_file(table).read_text())
        if data["kind"] != "synthetic" or data["review"]["status"] != "approved":
            continue
        for name, col in data["columns"].items():
            if not name.endswith("_concept_id"):
                continue
            stats = col.get("stats") or {}
            params = col.get("params") or {}
            groups = (stats.get("conditional") or {}).get("groups", [])
            other = (stats.get("conditional") or {}).get("other") or {}
            if col["generator"] == "weighted_choice":
                out |= {v["value"] for v in stats.get("values") or []}
                if params.get("other") == "value":
                    out.add(params["other_value"])
            elif col["generator"] == "conditional_choice":
                # the pooled group's and the column's values only where a row can fall back on
                # them; with other: null such rows are NULL
                pooled = [other, stats] if params.get("other", "pooled") != "null" else []
                for src in [*groups, *pooled]:
                    out |= {v["value"] for v in src.get("values") or []}
            elif col["generator"] == "constant":
                out.add(params["value"])
    return out


def column_values(engine, schema, table: str, column: str) -> set:
    name = f'"{schema}"."{table}"' if schema else f'"{table}"'
    with engine.connect() as conn:
        return {v for (v,) in conn.execute(sa.text(f'SELECT DISTINCT "{column}" FROM {name}'))}


def select_columns(engine, schema, table: str, columns) -> list[tuple]:
    name = f'"{schema}"."{table}"' if schema else f'"{table}"'
    cols = ", ".join(f'"{c}"' for c in columns)
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(f"SELECT {cols} FROM {name}"))]


def table_names(engine, schema) -> set[str]:
    return set(sa.inspect(engine).get_table_names(schema=schema))


def expected_concepts(source, schema, files: ProjectFiles) -> set[int]:
    """The concepts the destination's concept table must hold: those of the approved configs and
    of the vocabulary metadata, as far as the source's concept table has them."""
    wanted = approved_config_concepts(files)
    for table, column in METADATA.items():
        if table in table_names(source, schema):
            wanted |= column_values(source, schema, table, column)
    return wanted & column_values(source, schema, "concept", "concept_id")


def synthetic_concept_values(engine, schema, files: ProjectFiles) -> dict[str, set]:
    out = {}
    for table in files.tables():
        cfg = files.load_table(table)
        if cfg.kind != "synthetic" or table not in table_names(engine, schema):
            continue
        for column in cfg.columns:
            if column.endswith("_concept_id"):
                out[f"{table}.{column}"] = column_values(engine, schema, table, column) - {None}
    return out


def assert_referenced_subset(source, source_schema, dest, dest_schema, files: ProjectFiles):
    """The destination's vocabulary holds exactly the rows the referenced rule allows."""
    allowed = expected_concepts(source, source_schema, files)
    copied = column_values(dest, dest_schema, "concept", "concept_id")
    in_source = column_values(source, source_schema, "concept", "concept_id")
    assert copied == allowed
    # the filter did something: the source's concept table holds concepts no config lists
    assert copied < in_source
    assert approved_config_concepts(files) & in_source <= copied
    for table, columns in CONCEPT_LEVEL.items():
        if table not in table_names(source, source_schema):
            continue
        rows = select_columns(dest, dest_schema, table, columns)
        for row in rows:
            assert set(row) <= allowed, (table, row)
        # and every source row with all its ends in the set was copied
        src_rows = select_columns(source, source_schema, table, columns)
        assert len(rows) == sum(1 for r in src_rows if set(r) <= allowed), table
    assert "source_to_concept_map" not in table_names(dest, dest_schema)


# ---------------------------------------------------------------------------------------------
# The demo extract in SQLite (the README's demo run)


def test_demo_concept_table_holds_exactly_the_referenced_concepts(demo_run, demo_sqlite_url):
    assert demo_run["code"] == 0
    files = demo_run["files"]
    source = open_source(demo_sqlite_url)
    dest = open_destination(demo_run["url"])
    assert_referenced_subset(source, None, dest, None, files)
    concept_rows = column_values(dest, None, "concept", "concept_id")
    assert len(concept_rows) < len(column_values(source, None, "concept", "concept_id"))
    # every concept a synthetic table wrote resolves, as far as the source's vocabulary has it
    in_source = column_values(source, None, "concept", "concept_id")
    values = synthetic_concept_values(dest, None, files)
    assert sum(len(v) for v in values.values()) > 100
    for where, vals in values.items():
        assert not (vals & in_source) - concept_rows, where
    # concept_ancestor and concept_relationship kept rows, with both ends in the set
    for table in ("concept_ancestor", "concept_relationship"):
        with dest.connect() as conn:
            assert conn.execute(sa.text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one() > 0


def test_demo_bundle_carries_the_subset_and_no_local_mapping(demo_run, demo_sqlite_url):
    bundle = demo_run["out"] / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    tables = {t["table"]: t for t in manifest["tables"]}
    assert "source_to_concept_map" not in tables
    assert not (bundle / "source_to_concept_map.csv").exists()
    published = set(
        pl.read_csv(bundle / "concept.csv", infer_schema=False)["concept_id"].cast(pl.Int64)
    )
    expected = expected_concepts(open_source(demo_sqlite_url), None, demo_run["files"])
    assert published == expected
    assert tables["concept"]["rows"] == len(expected)
    readme = (bundle / "README.md").read_text()
    assert "copied as they are" not in readme


def test_demo_run_records_the_rule_and_counts_the_selected_rows(demo_run):
    from synth_pipeline.runner import temporary_environment

    with temporary_environment({"DAGSTER_HOME": str(demo_run["dagster_home"])}):
        instance = dg.DagsterInstance.get()
    dest = open_destination(demo_run["url"])
    for table in ("concept", "concept_ancestor", "vocabulary"):
        (record,) = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["demo", "synthetic_table"]), asset_partitions=[table]
            ),
            limit=1,
        ).records
        rule = record.asset_materialization.metadata["vocabulary_rows"].value
        if table == "vocabulary":
            assert "copied whole" in rule
        else:
            assert "vocabulary_rows: referenced" in rule and "concepts" in rule
        # the row-count check compared the rows written with the rows the rule selected in
        # the source (counted there, not taken from the copy), and both match the destination
        key = dg.AssetCheckKey(dg.AssetKey(["demo", "synthetic_table"]), "row_count_matches_config")
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=100)
        # the run wrote every table (one run per step): its evaluation of this table
        (latest,) = [
            h for h in history if h.run_id == record.event_log_entry.run_id and h.partition == table
        ]
        evaluation = latest.event.dagster_event.event_specific_data
        with dest.connect() as conn:
            held = conn.execute(sa.text(f'SELECT COUNT(*) FROM "{table}"')).scalar_one()
        assert evaluation.passed, table
        assert evaluation.metadata["expected"].value == held == evaluation.metadata["rows"].value


def test_demo_configs_record_the_rule(demo_run):
    files = demo_run["files"]
    for table in CONCEPT_LEVEL:
        data = yaml.safe_load(files.table_file(table).read_text())
        assert data["kind"] == "vocabulary" and data["vocabulary_rows"] == "referenced"
        assert any("vocabulary_rows: referenced" in f for f in data["source"]["findings"])
    local = yaml.safe_load(files.table_file("source_to_concept_map").read_text())
    assert local["kind"] == "skip"
    # the reviewer is told how many concepts the approved configs release
    text = " ".join(review_text(files, "concept").split())
    n = len(approved_config_concepts(files))
    assert n > 100 and f"{n} concepts in the approved synthetic configs" in text


# ---------------------------------------------------------------------------------------------
# A reviewer who knows the extract carries the full vocabulary


def test_vocabulary_rows_all_copies_the_whole_table(demo_sqlite_url, config_root, tmp_path):
    files = ProjectFiles(config_root, "demo")
    cfg = files.load_table("concept")
    cfg.vocabulary_rows = "all"
    files.save_table(cfg)
    dest_url = f"sqlite:///{tmp_path / 'dest.sqlite'}"
    common = dict(
        source_url=demo_sqlite_url,
        destination_url=dest_url,
        project="demo",
        config_root=config_root,
        tables=["concept"],
        instance=dg.DagsterInstance.ephemeral(),
    )
    # the choice is part of what a reviewer approves: an unapproved edit is refused
    refused = execute(bundle_dir=tmp_path / "refused", **common)
    assert not refused.ok
    assert "edited after" in " ".join(m for t in refused.tables for m in t.messages)
    files.save_table(approve(cfg, "Vocabulary Reviewer", None))
    report = execute(bundle_dir=tmp_path / "all", **common)
    assert report.ok, [(t.table, t.messages) for t in report.tables]
    source = open_source(demo_sqlite_url)
    dest = open_destination(dest_url)
    assert column_values(dest, None, "concept", "concept_id") == column_values(
        source, None, "concept", "concept_id"
    )
    with source.connect() as s, dest.connect() as d:
        q = sa.text('SELECT COUNT(*) FROM "concept"')
        assert d.execute(q).scalar_one() == s.execute(q).scalar_one()


def test_bad_vocabulary_rows_settings_name_file_and_setting(config_root, demo_sqlite_url):
    files = ProjectFiles(config_root, "demo")
    path = files.table_file("concept")
    original = path.read_text()
    path.write_text(original.replace("vocabulary_rows: referenced", "vocabulary_rows: some"))
    with pytest.raises(ConfigError) as err:
        files.load_table("concept")
    assert "vocabulary_rows" in str(err.value) and str(path) in str(err.value)
    path.write_text(original)
    # on a synthetic table the setting means nothing: refused
    person = files.table_file("person")
    person.write_text(
        person.read_text().replace("kind: synthetic\n", "kind: synthetic\nvocabulary_rows: all\n")
    )
    with pytest.raises(ConfigError) as err:
        files.load_table("person")
    assert "vocabulary_rows" in str(err.value) and "person" in str(err.value)
    person.write_text(person.read_text().replace("vocabulary_rows: all\n", ""))
    # a site-local table cannot be filtered by concept: copying it needs an explicit all
    local = files.table_file("source_to_concept_map")
    local.write_text(local.read_text().replace("kind: skip", "kind: vocabulary"))
    source_tables = sa.inspect(open_source(demo_sqlite_url)).get_table_names()
    with pytest.raises(ConfigError) as err:
        check_configuration(files, source_tables)
    message = str(err.value)
    assert "source_to_concept_map" in message and "vocabulary_rows" in message
    assert str(local) in message
    local.write_text(
        local.read_text().replace("kind: vocabulary", "kind: vocabulary\nvocabulary_rows: all")
    )
    check_configuration(files, source_tables)
    # site_local: only exclude or include, and only on a vocabulary table
    assert "site_local: exclude\n" in original  # drafted so: site-local concepts left out
    path.write_text(original.replace("site_local: exclude\n", "site_local: some\n"))
    with pytest.raises(ConfigError) as err:
        files.load_table("concept")
    assert "site_local" in str(err.value) and str(path) in str(err.value)
    path.write_text(original)
    person.write_text(
        person.read_text().replace("kind: synthetic\n", "kind: synthetic\nsite_local: include\n")
    )
    with pytest.raises(ConfigError) as err:
        check_configuration(files, source_tables)
    assert "setting site_local" in str(err.value) and str(person) in str(err.value)


def test_demo_local_vocabularies_are_left_out(demo_run, demo_sqlite_url):
    """The demo's vocabulary table lists 31 JNJ_* vocabularies whose vocabulary_concept_id is 0:
    local vocabularies, not public OMOP ones, so they are not copied (site_local: exclude)."""
    source = open_source(demo_sqlite_url)
    rows = select_columns(source, None, "vocabulary", ["vocabulary_id", "vocabulary_concept_id"])
    public = {v for v, c in rows if c not in (0, None)}
    assert len(rows) - len(public) == 31
    copied = column_values(open_destination(demo_run["url"]), None, "vocabulary", "vocabulary_id")
    assert copied == public
    bundle = demo_run["out"] / "bundle"
    published = set(pl.read_csv(bundle / "vocabulary.csv", infer_schema=False)["vocabulary_id"])
    assert published == public
    readme = " ".join((bundle / "README.md").read_text().split())
    assert "hold a subset of the public OMOP vocabulary" in readme
    assert "local vocabularies are not included in concept," in readme


# ---------------------------------------------------------------------------------------------
# The demo extract in PostgreSQL


@pytest.fixture
def pg_vocab(pg_demo_run):
    """conftest's ``pg_demo_run`` (init, approve --all and a run of every table, from schema
    cdm into schema synthetic), shared with test_pipeline_postgres.py."""
    report, files = pg_demo_run["report"], pg_demo_run["files"]
    vocabulary = [t for t in VOCABULARY_TABLES if files.has_table(t)]
    assert vocabulary and {t.table for t in report.tables} >= set(vocabulary)
    assert [
        (t.table, t.messages) for t in report.tables if t.table in vocabulary and not t.ok
    ] == []
    return {
        "url": pg_demo_run["url"],
        "files": files,
        "source_schema": pg_demo_run["source_schema"],
        "destination_schema": pg_demo_run["destination_schema"],
    }


def test_postgres_copies_only_the_referenced_concepts(pg_vocab):
    source = open_source(pg_vocab["url"])
    dest = open_destination(pg_vocab["url"])
    src_schema, dst_schema = pg_vocab["source_schema"], pg_vocab["destination_schema"]
    assert_referenced_subset(source, src_schema, dest, dst_schema, pg_vocab["files"])
    with dest.connect() as conn:
        n = conn.execute(
            sa.text(f'SELECT COUNT(*) FROM "{dst_schema}"."concept_ancestor"')
        ).scalar_one()
    assert n > 0


# ---------------------------------------------------------------------------------------------
# The adversarial extract: concepts seen once, a site's own code


@pytest.fixture
def adversarial_run(adversarial_runs):
    """conftest's adversarial extract at k = 10 in SQLite, shared with test_adversarial.py."""
    shared = adversarial_runs("sqlite", 10)
    done = shared["pipeline"]
    return {
        "code": done.code,
        "source": open_source(shared["source"]),
        "destination": open_destination(done.destination_url),
        "bundle": done.bundle,
        "files": done.files,
    }


def test_rare_concepts_stay_out_of_the_vocabulary(adversarial_run):
    run = adversarial_run
    assert run["code"] == 0
    rare = set(adv.RARE_CONCEPT_NAMES)
    in_source = column_values(run["source"], None, "concept", "concept_id")
    assert rare <= in_source, "the fixture's concept table holds the rare concepts"
    copied = column_values(run["destination"], None, "concept", "concept_id")
    assert copied, "common concepts are copied"
    assert not copied & rare
    assert copied == expected_concepts(run["source"], None, run["files"])
    ancestors = column_values(run["destination"], None, "concept_ancestor", "descendant_concept_id")
    assert ancestors and not ancestors & rare
    bundle = run["bundle"]
    published = set(pl.read_csv(bundle / "concept.csv", infer_schema=False)["concept_id"])
    assert published == {str(c) for c in copied}
    text = adv.bundle_text(bundle)
    for name in adv.RARE_CONCEPT_NAMES.values():
        assert name not in text
    assert adv.LOCAL_CODE not in text
    assert "source_to_concept_map" not in table_names(run["destination"], None)
    assert "Concept 8527" in text  # a common concept's row was published
