"""Writing: a table larger than one chunk arrives whole, value for value, on both databases;
a failure mid-write leaves the previous table as it was."""

from __future__ import annotations

import polars as pl
import pytest
import sqlalchemy as sa

from synth_pipeline.core.database import open_destination
from synth_pipeline.core.schema import ColumnDef
from synth_pipeline.core.synthesise import TableRun
from synth_pipeline.core.transfer import stream_select
from synth_pipeline.core.write import RegisterEntry, read_register, replace_table

from .conftest import DEMO_CONFIGS

CHUNK = 65_536  # the smallest chunk; the table below spans four of them


def measurement_run() -> TableRun:
    """The demo's approved measurement config at a scale that needs several chunks."""
    from synth_pipeline.core.config_files import ProjectFiles

    files = ProjectFiles(DEMO_CONFIGS, "demo")
    cfg = files.load_table("measurement")
    return TableRun(
        cfg,
        seed=11,
        scale=200_000 / cfg.rows,
        parent_rows=lambda p: {"person": 9_000, "visit_occurrence": 30_000}.get(p, 0),
        parent_source_rows=lambda p: None,
    )


def columns_of(run: TableRun) -> list[ColumnDef]:
    return [ColumnDef(n, c.type, c.max_length) for n, c in run.config.columns.items()]


def read_back(engine, run: TableRun) -> pl.DataFrame:
    cols = columns_of(run)
    names = ", ".join(f'"{c.name}"' for c in cols)
    sql = f'SELECT {names} FROM "{run.config.table}" ORDER BY "{run.config.primary_key}"'
    return pl.concat(list(stream_select(engine, sql, cols, 50_000)))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def engine(request, tmp_path):
    if request.param == "sqlite":
        eng = open_destination(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    else:
        eng = open_destination(request.getfixturevalue("postgres_database"))
    yield eng
    with eng.begin() as conn:
        conn.execute(sa.text('DROP TABLE IF EXISTS "measurement"'))
        conn.execute(sa.text('DROP TABLE IF EXISTS "_synth_pipeline_tables"'))
    eng.dispose()


def test_a_table_of_several_chunks_is_written_completely(engine):
    run = measurement_run()
    assert run.rows > 3 * CHUNK
    expected = pl.concat(list(run.chunks(CHUNK)))
    entry = RegisterEntry("synthetic", "sha256:x", 11, run.scale, {}, "test")
    seen = []
    rows = replace_table(
        engine,
        None,
        "measurement",
        columns_of(run),
        run.chunks(CHUNK),
        primary_key="measurement_id",
        entry=entry,
        on_chunk=seen.append,
    )
    assert rows == run.rows == expected.height
    assert seen[-1] == rows and len(seen) >= 4
    got = read_back(engine, run)
    assert got.height == expected.height
    # every value of every column, nulls included, exactly as generated
    assert got.equals(expected), [c for c in expected.columns if not got[c].equals(expected[c])]
    assert read_register(engine, None)["measurement"]["rows"] == rows


def test_a_failure_mid_write_leaves_the_previous_table(engine):
    run = measurement_run()
    entry = RegisterEntry("synthetic", "sha256:first", 11, run.scale, {}, "test")
    first = replace_table(
        engine,
        None,
        "measurement",
        columns_of(run),
        run.chunks(CHUNK),
        primary_key="measurement_id",
        entry=entry,
    )

    def broken():
        chunks = run.chunks(CHUNK)
        yield next(chunks)
        yield next(chunks)
        raise RuntimeError("generator failed after two chunks")

    with pytest.raises(RuntimeError, match="after two chunks"):
        replace_table(
            engine,
            None,
            "measurement",
            columns_of(run),
            broken(),
            primary_key="measurement_id",
            entry=RegisterEntry("synthetic", "sha256:second", 11, run.scale, {}, "test"),
        )
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT COUNT(*) FROM "measurement"')).scalar_one() == first
    register = read_register(engine, None)["measurement"]
    assert register["config_fingerprint"] == "sha256:first"
    assert "measurement__synth_new" not in sa.inspect(engine).get_table_names()


def test_quantiles_are_the_same_nearest_rank_on_both_databases(tmp_path, postgres_database):
    """PostgreSQL's percentile_disc path gives exactly SQLite's ROW_NUMBER path (every rank of
    every k-value window, so the same released means)."""
    import numpy as np

    from synth_pipeline.core import disclosure as dc
    from synth_pipeline.core.summarise.release import quantiles_where as _quantiles

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.integers(0, 40, 997), rng.integers(-5, 5_000, 2_000)])
    frame = pl.DataFrame(
        {
            "id": np.arange(values.size, dtype=np.int64),
            "v": pl.Series(values.tolist()).set(pl.Series(rng.random(values.size) < 0.1), None),
        }
    )
    cols = [ColumnDef("id", "integer"), ColumnDef("v", "integer")]
    entry = RegisterEntry("synthetic", "sha256:q", 1, 1.0, {}, "test")
    results = []
    policy = dc.DisclosurePolicy()
    for url in (f"sqlite:///{tmp_path / 'q.sqlite'}", postgres_database):
        eng = open_destination(url)
        replace_table(eng, None, "q", cols, iter([frame]), primary_key="id", entry=entry)
        n = frame["v"].count()
        grid = dc.quantile_grid(n, policy) + [0.0, 0.5, 1.0, 0.333333]
        with eng.connect() as conn:
            results.append(
                [
                    (q.p, q.value)
                    for q in _quantiles(conn, '"q"', '"v"', n, sorted(grid), policy, True)
                ]
            )
        with eng.begin() as conn:
            conn.execute(sa.text('DROP TABLE "q"'))
            conn.execute(sa.text('DROP TABLE "_synth_pipeline_tables"'))
        eng.dispose()
    assert len(results[0]) > 5
    assert results[0] == results[1]


def test_vocabulary_copy_can_be_skipped(demo_sqlite_url, config_root, tmp_path):
    """On request, vocabulary tables are left out; synthetic tables are written as usual."""
    import dagster as dg

    from synth_pipeline.core.schema import list_tables
    from synth_pipeline.runner import execute

    dest = f"sqlite:///{tmp_path / 'dest.sqlite'}"
    common = dict(
        source_url=demo_sqlite_url,
        destination_url=dest,
        project="demo",
        config_root=config_root,
        tables=["concept", "care_site"],
        instance=dg.DagsterInstance.ephemeral(),
    )
    report = execute(bundle_dir=tmp_path / "skipped", copy_vocabulary=False, **common)
    assert report.ok, [(t.table, t.messages) for t in report.tables]
    engine = open_destination(dest)
    assert set(list_tables(engine, None)) >= {"care_site"}
    assert "concept" not in list_tables(engine, None)
    report = execute(bundle_dir=tmp_path / "copied", **common)
    assert report.ok
    assert "concept" in list_tables(engine, None)
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT COUNT(*) FROM "concept"')).scalar_one() > 0


# ---------------------------------------------------------------------------------------------
# Widths: a destination column is as wide as the source's own type, never the CDM's


CDM_CONCEPT_COLUMNS = [  # the widths the OMOP CDM gives concept's columns
    ColumnDef("concept_id", "integer"),
    ColumnDef("concept_name", "string", 255),
    ColumnDef("domain_id", "string", 20),
    ColumnDef("vocabulary_id", "string", 20),
    ColumnDef("concept_class_id", "string", 20),
    ColumnDef("standard_concept", "string", 1),
    ColumnDef("concept_code", "string", 50),
    ColumnDef("valid_start_date", "date"),
    ColumnDef("valid_end_date", "date"),
    ColumnDef("invalid_reason", "string", 1),
]


def pg_column_types(engine, schema: str, table: str) -> dict[str, str]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT column_name, data_type, character_maximum_length "
                "FROM information_schema.columns WHERE table_schema = :s AND table_name = :t"
            ),
            {"s": schema, "t": table},
        )
        return {name: f"{kind}({width})" if width else kind for name, kind, width in rows}


def source_concepts(engine, schema: str | None) -> list[tuple]:
    name = f'"{schema}"."concept"' if schema else '"concept"'
    with engine.connect() as conn:
        return sorted(tuple(r) for r in conn.execute(sa.text(f"SELECT * FROM {name}")))


@pytest.mark.parametrize(
    "declared, expected",
    [("TEXT", "text"), ("VARCHAR(255)", "character varying(255)")],
)
def test_a_site_vocabulary_longer_than_the_cdm_is_copied_as_the_source_declares_it(
    postgres_database, declared, expected
):
    """A 40-character vocabulary_id and a 120-character concept_code (the CDM says 20 and 50)
    reach a PostgreSQL destination, whose columns are typed as the source declares them."""
    from synth_pipeline.core.schema import read_table_schema
    from synth_pipeline.core.transfer import copy_table

    from . import site_vocabulary as sv

    schema = f"widths_{declared[:4].lower()}"
    sv.build(postgres_database, schema, text=declared)
    engine = open_destination(postgres_database)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema}_dst CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}_dst")
    try:
        # the snapshot holds the source's declared width, or none: never the CDM's 20 and 50
        snapshot = read_table_schema(engine, schema, "concept")
        width = None if declared == "TEXT" else 255
        assert snapshot.column("vocabulary_id").max_length == width
        assert snapshot.column("concept_code").max_length == width
        rows = copy_table(
            engine,
            schema,
            "concept",
            engine,
            f"{schema}_dst",
            "concept",
            CDM_CONCEPT_COLUMNS,
            entry=RegisterEntry("vocabulary", "sha256:x", None, None, {}, "test"),
        )
        types = pg_column_types(engine, f"{schema}_dst", "concept")
        assert types["vocabulary_id"] == types["concept_code"] == expected
        assert types["standard_concept"] == "character varying(1)"
        copied = source_concepts(engine, f"{schema}_dst")
        assert rows == len(copied) == len(sv.PUBLIC_CONCEPTS) + len(sv.LOCAL_CONCEPTS)
        assert copied == source_concepts(engine, schema)
        assert max(len(r[3]) for r in copied) == 40 and max(len(r[6]) for r in copied) == 120
    finally:
        engine.dispose()


def test_a_sqlite_source_holding_more_than_it_declares_is_copied_whole(tmp_path, postgres_database):
    """SQLite does not enforce declared widths: a VARCHAR(20) holding 40 characters is copied
    into a column widened to the longest value the copy selects."""
    from synth_pipeline.core.transfer import copy_table

    from . import site_vocabulary as sv

    source_url = f"sqlite:///{tmp_path / 'source.sqlite'}"
    sv.build(source_url, text="VARCHAR(20)")
    source = open_destination(source_url)
    dest = open_destination(postgres_database)
    with dest.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS widths_sqlite CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA widths_sqlite")
    try:
        copy_table(
            source,
            None,
            "concept",
            dest,
            "widths_sqlite",
            "concept",
            CDM_CONCEPT_COLUMNS,
            entry=RegisterEntry("vocabulary", "sha256:x", None, None, {}, "test"),
        )
        types = pg_column_types(dest, "widths_sqlite", "concept")
        assert types["vocabulary_id"] == "character varying(40)"
        assert types["concept_code"] == "character varying(120)"
        assert types["domain_id"] == "character varying(20)"  # its values fit what it declares
        # SQLite hands dates back as text: compare every other value
        assert [r[:7] for r in source_concepts(dest, "widths_sqlite")] == [
            r[:7] for r in source_concepts(source, None)
        ]
    finally:
        source.dispose()
        dest.dispose()


def test_rows_the_destination_refuses_fail_naming_table_and_column(postgres_database):
    """A value the destination cannot take fails the write with the table and column named
    (no value quoted), and the previous table stays."""
    from synth_pipeline.core.errors import DatabaseError

    engine = open_destination(postgres_database)
    columns = [ColumnDef("concept_id", "integer"), ColumnDef("Vocabulary Id", "string", 20)]
    entry = RegisterEntry("vocabulary", "sha256:x", None, None, {}, "test")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS refused CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA refused")
    first = pl.DataFrame({"concept_id": [1], "Vocabulary Id": ["SNOMED"]})
    replace_table(engine, "refused", "vocab", columns, [first], primary_key=None, entry=entry)
    long_value = "SITE_DIAGNOSES_OF_THE_GENERAL_HOSPITAL_0"
    second = pl.DataFrame({"concept_id": [2, 3], "Vocabulary Id": ["LOINC", long_value]})
    try:
        with pytest.raises(DatabaseError) as refused:
            replace_table(
                engine, "refused", "vocab", columns, [second], primary_key=None, entry=entry
            )
        message = str(refused.value)
        assert message.startswith("destination table vocab, column Vocabulary Id: value too long")
        assert long_value not in message
        with engine.connect() as conn:
            kept = conn.exec_driver_sql('SELECT "Vocabulary Id" FROM refused.vocab').scalars()
            assert list(kept) == ["SNOMED"]
    finally:
        engine.dispose()


def test_a_copy_the_source_refuses_names_the_source(tmp_path, postgres_database):
    """An error reading the source is not passed off as the destination's."""
    from synth_pipeline.core.errors import DatabaseError
    from synth_pipeline.core.transfer import copy_table

    from . import site_vocabulary as sv

    sv.build(postgres_database, "refusing_source")
    engine = open_destination(postgres_database)
    try:
        with pytest.raises(DatabaseError, match=r'^source table concept: column "nope"'):
            copy_table(
                engine,
                "refusing_source",
                "concept",
                engine,
                "refusing_source",
                "concept_copy",
                [ColumnDef("concept_id", "integer"), ColumnDef("nope", "string")],
                entry=RegisterEntry("vocabulary", "sha256:x", None, None, {}, "test"),
            )
    finally:
        engine.dispose()
