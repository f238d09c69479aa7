"""Dirty extracts: init, approve and run succeed, and every kind of dirt is reported as a
warning (in column_stats metadata, the run's log and the file's findings), never a crash.

The extracts are built by dirty_extract.py: OMOP 5.3 and 5.4 in SQLite, and in PostgreSQL a
schema, tables and columns whose names only survive if they are quoted everywhere.
"""

from __future__ import annotations

import dagster as dg
import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

from synth_pipeline import cli
from synth_pipeline.core.bundle import verify_bundle
from synth_pipeline.core.config import ColumnConfig
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import normalise_url, open_destination, qualified
from synth_pipeline.core.generators import CATALOGUE, ColumnContext
from synth_pipeline.core.statistics import ColumnStats, QuantilePoint
from synth_pipeline.runner import execute

from . import dirty_extract as dirty
from .pipeline_assertions import dangling_by_join


def init_approve_run(tmp_path, source, destination, *, schema=None, destination_schema=None):
    root = tmp_path / "configuration-files"
    init = ["init", "--source", source, "--project", "dirty", "--config-dir", str(root)]
    assert cli.main(init + (["--schema", schema] if schema else [])) == 0
    approve = ["approve", "--project", "dirty", "--all", "--reviewer", "R. Eviewer"]
    assert cli.main(approve + ["--config-dir", str(root)]) == 0
    instance = dg.DagsterInstance.ephemeral()
    report = execute(
        source_url=source,
        source_schema=schema,
        destination_url=destination,
        destination_schema=destination_schema,
        project="dirty",
        config_root=root,
        bundle_dir=tmp_path / "bundle",
        instance=instance,
    )
    return report, instance, ProjectFiles(root, "dirty")


def findings_metadata(instance, table: str) -> str:
    """The `dirty_data_found` metadata of the latest column_stats materialisation of a table."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(["dirty", "column_stats"]), asset_partitions=[table]
        ),
        limit=1,
    ).records
    return records[0].asset_materialization.metadata["dirty_data_found"].value


def warnings_logged(instance, run_ids) -> str:
    return "\n".join(
        e.user_message
        for r in run_ids
        for e in instance.all_logs(r)
        if e.level == 30  # WARNING
    )


EXPECTED = {
    "person": [
        "primary key person_id: about 15 rows repeat a key value (duplicates)",
        "location_id: every value is NULL",
        "provider_id: about 415 rows hold 0 for NULL; treated as NULL",
        "provider_id: parent table provider is not in the extract",
        "birth_datetime: about 25 dates outside 1677..2262",
        "person_source_value: about 415 values longer than the declared width 50",
    ],
    "observation_period": [
        "person_id: about 40 person ids missing from person (dangling)",
        "rows end before observation_period_start_date",
    ],
    "visit_occurrence": [
        "person ids missing from person (dangling)",
        "provider_id: about 1200 rows hold 0 for NULL",
        "preceding_visit_occurrence_id: about 300 references to no visit_occurrence row",
    ],
    "condition_occurrence": [
        "visit_occurrence_id: about 300 references to no visit_occurrence row (dangling)",
        "condition_start_date: about 10 dates outside 1677..2262",
    ],
    "death": ["empty table: it stays empty"],
}


def assert_written_and_consistent(report, files, destination, schema=None):
    assert [(t.table, t.messages) for t in report.tables if not t.ok] == []
    assert report.bundle_ok, report.bundle_messages
    engine = open_destination(destination)
    try:
        assert {k: v for k, v in dangling_by_join(engine, schema, files).items() if v} == {}
        with engine.connect() as conn:
            count = {
                t: conn.execute(
                    sa.text(f"SELECT COUNT(*) FROM {qualified(engine, schema, t)}")
                ).scalar_one()
                for t in ("person", "visit_occurrence", "death")
            }
            keys = conn.execute(
                sa.text(
                    f"SELECT MIN(person_id), MAX(person_id), COUNT(DISTINCT person_id) "
                    f"FROM {qualified(engine, schema, 'person')}"
                )
            ).one()
    finally:
        engine.dispose()
    assert count["person"] == files.load_table("person").rows == 415
    assert count["death"] == 0
    assert tuple(keys) == (1, 415, 415), "64-bit, negative and duplicate ids became 1..n"


@pytest.mark.slow
def test_dirty_omop_53_extract_in_sqlite(tmp_path):
    source = f"sqlite:///{tmp_path / 'source.sqlite'}"
    dirty.build(source, cdm_version="5.3")
    destination = f"sqlite:///{tmp_path / 'synthetic.sqlite'}"
    report, instance, files = init_approve_run(tmp_path, source, destination)
    assert_written_and_consistent(report, files, destination)
    logged = warnings_logged(instance, report.run_ids)
    for table, expected in EXPECTED.items():
        shown = findings_metadata(instance, table)
        in_file = "\n".join(files.load_table(table).source.findings)
        for finding in expected:
            assert finding in shown, (table, finding, shown)
            assert finding in in_file, (table, finding)
            assert finding in logged, (table, finding)
    assert "admitting_source_concept_id" in files.load_table("visit_occurrence").columns
    assert verify_bundle(tmp_path / "bundle") == []


@pytest.mark.slow
def test_dirty_omop_54_extract_into_postgres(tmp_path, postgres_database):
    """The same dirt in a 5.4 extract, written to PostgreSQL, which (unlike SQLite) enforces
    declared widths and 64-bit limits: common values wider than their source column, values at
    both ends of the 64-bit range and dates outside 1677..2262 all arrive."""
    source = f"sqlite:///{tmp_path / 'source.sqlite'}"
    dirty.build(source, cdm_version="5.4")
    admin = sa.create_engine(normalise_url(postgres_database))
    with admin.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS dirty54 CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA dirty54")
    report, instance, files = init_approve_run(
        tmp_path, source, postgres_database, destination_schema="dirty54"
    )
    assert_written_and_consistent(report, files, postgres_database, "dirty54")
    visit = files.load_table("visit_occurrence")
    assert {"admitted_from_concept_id", "discharged_to_concept_id"} <= set(visit.columns)
    assert "gender_source_value: about 415 values longer than the declared width 3" in (
        findings_metadata(instance, "person")
    )
    with admin.connect() as conn:
        wards = set(conn.exec_driver_sql("SELECT DISTINCT ward FROM dirty54.person").scalars())
        big = conn.exec_driver_sql("SELECT MIN(big_counter), MAX(big_counter) FROM dirty54.person")
        low, high = big.one()
        years = conn.exec_driver_sql(
            "SELECT MIN(EXTRACT(YEAR FROM birth_datetime)), MAX(EXTRACT(YEAR FROM birth_datetime)) "
            "FROM dirty54.person"
        ).one()
    admin.dispose()
    assert wards == {"cardiology", "oncology", "ICU"}, "common values kept whole, not cut to 4"
    assert low < -(2**62) and high > 2**62, "values near both 64-bit limits, no overflow"
    assert years[0] < 1677 or years[1] > 2262, "released out-of-range years are generated"


@pytest.mark.slow
def test_quoted_and_mixed_case_identifiers_in_postgres(tmp_path, postgres_database):
    """Schema `Cdm Extract`, tables `Person` and `VISIT_OCCURRENCE` with upper-case columns,
    and a table called `Lab "Results"; DROP TABLE person; --`: all read, generated and
    exported; nothing is executed from a name."""
    admin = sa.create_engine(normalise_url(postgres_database))
    dirty.build(postgres_database, schema=dirty.QUOTED_SCHEMA, quoting=True)
    with admin.begin() as conn:
        conn.exec_driver_sql('DROP SCHEMA IF EXISTS "Synthetic Out" CASCADE')
        conn.exec_driver_sql('CREATE SCHEMA "Synthetic Out"')
    report, instance, files = init_approve_run(
        tmp_path,
        postgres_database,
        postgres_database,
        schema=dirty.QUOTED_SCHEMA,
        destination_schema="Synthetic Out",
    )
    assert_written_and_consistent(report, files, postgres_database, "Synthetic Out")
    lab = dirty.QUOTED_TABLE.lower()
    assert files.load_table(lab).rows == 300
    assert set(files.load_table(lab).columns) == {"Person_Id", "select", "Free Text"}
    with admin.connect() as conn:
        n_source = conn.exec_driver_sql('SELECT COUNT(*) FROM "Cdm Extract"."Person"').scalar_one()
        lab_rows = conn.execute(
            sa.text(
                f'SELECT COUNT(*), COUNT("Free Text") FROM {qualified(admin, "Synthetic Out", lab)}'
            )
        ).one()
    admin.dispose()
    assert n_source == 415, "the source's person table is still there"
    assert lab_rows[0] == 300 and lab_rows[1] > 0
    shown = findings_metadata(instance, "visit_occurrence")
    assert "table spelled 'VISIT_OCCURRENCE' in the source: written as visit_occurrence" in shown
    assert "VISIT_START_DATE: spelled unlike the OMOP field visit_start_date" in shown
    assert (tmp_path / "bundle" / f"{lab}.csv").exists()
    assert verify_bundle(tmp_path / "bundle") == []


def test_a_table_name_that_cannot_be_a_file_name_is_refused_alone(tmp_path, isolated_environment):
    """A table called `../../escape` would write its config and CSV outside their folders: it
    is reported as failed, nothing is written for it, and the other tables still run."""
    path = tmp_path / "source.sqlite"
    dirty.build(f"sqlite:///{path}")
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql('CREATE TABLE "../../escape" (x INTEGER)')
        conn.exec_driver_sql('INSERT INTO "../../escape" VALUES (1), (2)')
    engine.dispose()
    root = tmp_path / "cfg" / "configuration-files"
    report = execute(
        source_url=f"sqlite:///{path}",
        project="dirty",
        config_root=root,
        config_only=True,
        instance=dg.DagsterInstance.ephemeral(),
    )
    outcome = {t.table: t for t in report.tables}
    assert not outcome["../../escape"].ok
    assert (
        "its name is empty, dots only or starts with a dot" in outcome["../../escape"].messages[0]
    )
    assert outcome["person"].ok
    for folder in (tmp_path, isolated_environment):
        assert sorted(p.name for p in folder.rglob("escape*")) == []


def test_quantiles_at_the_64_bit_limits_do_not_wrap():
    """Interpolated as floats, a quantile near 2**63 - 1 rounds to 2**63, which NumPy wrapped to
    -2**63 and Polars refused; generated integers now stay inside the 64-bit range."""
    top = 2**63 - 1
    stats = ColumnStats(
        non_null=100,
        quantiles=[QuantilePoint(p=0.01, value=top - 300), QuantilePoint(p=0.99, value=top)],
    )
    col = ColumnConfig(type="integer", sql_type="BIGINT", generator="numeric_quantiles")
    gen = CATALOGUE["numeric_quantiles"]
    ctx = ColumnContext(
        table="t",
        column="c",
        logical_type="integer",
        nullable=True,
        max_length=None,
        stats=stats,
        params=gen.Params.model_validate(col.params),
        rows=10_000,
        seed=1,
        parent_rows=lambda p: 0,
        parent_source_rows=lambda p: None,
    )
    values = gen().block(ctx, 0, 10_000, 0, {})
    assert values.dtype == pl.Int64
    assert values.min() > 0 and values.max() <= top
    assert np.all(values.to_numpy() >= top - 2048)


@pytest.mark.parametrize("name", ["person", "Person", 'a "quoted"; name'])
def test_identifiers_are_quoted_not_pasted(name, tmp_path):
    """qualified() quotes with the database's own rules: the name round-trips exactly."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'q.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE TABLE {qualified(engine, None, name)} (x INTEGER)")
    assert sa.inspect(engine).get_table_names() == [name]
    engine.dispose()
