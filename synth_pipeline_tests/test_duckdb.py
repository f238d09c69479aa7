"""DuckDB as a source and as a destination (duckdb:///path.duckdb through duckdb-engine).

The same extract, copied from SQLite into DuckDB, gives the same released statistics (the
aggregates are pushed down to DuckDB as they are to SQLite and PostgreSQL); the DuckDB source
refuses writes through the pipeline's own connection; a DuckDB destination table is replaced
all or nothing; and init, approve --all and run take a DuckDB extract to a DuckDB destination
and a bundle, through the CLI and Dagster.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import shutil

import polars as pl
import pytest
import sqlalchemy as sa

from synth_pipeline.core.database import open_destination, open_source
from synth_pipeline.core.schema import ColumnDef, read_table_schema
from synth_pipeline.core.write import RegisterEntry, replace_table
from synth_pipeline.resources import SourceDatabase

from . import core_path
from . import omop_extracts as ox
from .duckdb_extracts import copy_sqlite_to_duckdb
from .extract_fixtures import sqlite_extracts  # noqa: F401
from .test_any_extract import first_run

SPEC = ox.ExtractSpec(name="duckdb", cdm_version="5.4", persons=40, seed=3)
# through Dagster each table costs seconds of run overhead: a few tables keep it under 2 minutes
CLI_SPEC = ox.ExtractSpec(
    name="duckdb_cli",
    cdm_version="5.4",
    persons=40,
    seed=4,
    tables=("visit_occurrence", "condition_occurrence", "death"),
)

WRITES = [
    "CREATE TABLE intruder (x INTEGER)",
    "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
    "ethnicity_concept_id) VALUES (-1, 0, 1900, 0, 0)",
    "UPDATE person SET year_of_birth = 1800",
    "DELETE FROM person",
    "DROP TABLE person",
]


def _in_duckdb(sqlite_extracts, tmp_path_factory, spec):  # noqa: F811
    facts = sqlite_extracts(spec)
    url = copy_sqlite_to_duckdb(facts.url, tmp_path_factory.mktemp("duck") / "extract.duckdb")
    return facts, url


@pytest.fixture(scope="module")
def duckdb_source(sqlite_extracts, tmp_path_factory):  # noqa: F811
    return _in_duckdb(sqlite_extracts, tmp_path_factory, SPEC)


@pytest.fixture(scope="module")
def small_duckdb_source(sqlite_extracts, tmp_path_factory):  # noqa: F811
    return _in_duckdb(sqlite_extracts, tmp_path_factory, CLI_SPEC)


def _sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _released(root) -> dict[str, str]:
    """Each table's config text without what names the source's declared types and widths
    (DuckDB keeps no VARCHAR width), the fingerprints that hash them, and approval times."""
    dropped = ("sql_type:", "max_length:", "fingerprint:", "approved_at:")
    return {
        p.name: "\n".join(
            line for line in p.read_text().splitlines() if not any(word in line for word in dropped)
        )
        for p in sorted(root.rglob("*.yaml"))
        if p.name != "project.yaml"
    }


def test_statistics_from_duckdb_equal_those_from_sqlite(duckdb_source, tmp_path):
    facts, url = duckdb_source
    from_sqlite = core_path.draft_and_approve(facts.url, tmp_path / "sqlite")
    from_duckdb = core_path.draft_and_approve(url, tmp_path / "duckdb")
    a, b = _released(from_sqlite.root), _released(from_duckdb.root)
    assert len(a) >= 20 and a.keys() == b.keys()
    differ = {
        t: "\n".join(difflib.unified_diff(a[t].splitlines(), b[t].splitlines(), lineterm=""))
        for t in a
        if a[t] != b[t]
    }
    assert differ == {}, "\n".join(differ.values())


def test_duckdb_types_are_reflected(duckdb_source):
    _facts, url = duckdb_source
    engine = open_source(url)
    try:
        schema = read_table_schema(engine, None, "observation_period")
        kinds = {c.name: c.logical_type for c in schema.columns}
        assert kinds["observation_period_id"] == "integer"
        assert kinds["observation_period_start_date"] == "date"
        assert schema.primary_key == ["observation_period_id"]
        assert schema.primary_key_source == "declared"
    finally:
        engine.dispose()


@pytest.mark.parametrize("statement", WRITES)
@pytest.mark.parametrize("how", ["open_source", "resource", "url asks for read_write"])
def test_duckdb_source_refuses_writes(duckdb_source, tmp_path, statement, how):
    _facts, url = duckdb_source
    path = tmp_path / "extract.duckdb"
    shutil.copy(sa.engine.make_url(url).database, path)
    before = _sha256(path)
    if how == "resource":
        engine = SourceDatabase(url=f"duckdb:///{path}").engine()
    elif how == "url asks for read_write":
        engine = open_source(f"duckdb:///{path}?access_mode=read_write")
    else:
        engine = open_source(f"duckdb:///{path}")
    try:
        with pytest.raises(sa.exc.DBAPIError, match="read-only"), engine.begin() as conn:
            conn.exec_driver_sql(statement)
        with engine.connect() as conn:  # still readable
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM person").scalar_one() > 0
    finally:
        engine.dispose()
    assert _sha256(path) == before


def test_a_missing_duckdb_source_is_not_created(tmp_path):
    from synth_pipeline.core.errors import DatabaseError

    with pytest.raises(DatabaseError, match="no such DuckDB file"):
        open_source(f"duckdb:///{tmp_path / 'absent.duckdb'}")
    assert not (tmp_path / "absent.duckdb").exists()


def test_a_failed_duckdb_write_leaves_the_previous_table(tmp_path):
    url = f"duckdb:///{tmp_path / 'dst.duckdb'}"
    engine = open_destination(url)
    columns = [ColumnDef("id", "integer"), ColumnDef("d", "date"), ColumnDef("s", "string")]
    entry = RegisterEntry("synthetic", "sha256:x", 1, 1.0, {}, "test")

    def frame(start: int, n: int) -> pl.DataFrame:
        return pl.DataFrame(
            {
                "id": list(range(start, start + n)),
                "d": pl.date_range(pl.date(2020, 1, 1), pl.date(2020, 1, n), eager=True),
                "s": [f"v{i}" for i in range(n)],
            }
        )

    def failing():
        yield frame(1, 5)
        raise RuntimeError("generator failed halfway")

    try:
        assert (
            replace_table(engine, None, "t", columns, [frame(1, 3)], primary_key="id", entry=entry)
            == 3
        )
        with pytest.raises(RuntimeError, match="halfway"):
            replace_table(engine, None, "t", columns, failing(), primary_key="id", entry=entry)
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM t").scalar_one() == 3
            tables = {r[0] for r in conn.exec_driver_sql("SELECT table_name FROM duckdb_tables()")}
        assert not [t for t in tables if t.startswith("t") and t != "t" and "register" not in t]
        # a repeated key is refused by the primary key DuckDB declares
        with pytest.raises(Exception, match="(?i)duplicate|constraint"):
            replace_table(
                engine,
                None,
                "t",
                columns,
                [frame(1, 3), frame(1, 2)],
                primary_key="id",
                entry=entry,
            )
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM t").scalar_one() == 3
    finally:
        engine.dispose()


@pytest.mark.slow
def test_init_approve_run_from_duckdb_to_duckdb(small_duckdb_source, tmp_path, monkeypatch):
    """The whole chain through the CLI and Dagster, DuckDB at both ends, to a bundle whose
    Parquet files DuckDB reads back, and the trusted report's Achilles page."""
    monkeypatch.setenv("SYNTH_ACHILLES", "on")
    _facts, url = small_duckdb_source
    destination = tmp_path / "synthetic.duckdb"
    problems = first_run(tmp_path, url, f"duckdb:///{destination}")
    assert problems == []
    parquet = sorted((tmp_path / "bundle" / "parquet").glob("*/*.parquet"))
    assert any(p.parent.name == "person" for p in parquet)
    import duckdb

    con = duckdb.connect()
    n = con.execute(
        f"SELECT COUNT(*) FROM read_parquet('{tmp_path}/bundle/parquet/person/*.parquet')"
    ).fetchone()
    assert n[0] > 0
    # the trusted report ran Achilles on the DuckDB source and destination, never in the bundle
    from synth_pipeline.core import achilles

    pages = list((tmp_path / "work").rglob("achilles.json"))
    assert len(pages) == 1
    assert not list((tmp_path / "bundle").rglob("achilles*"))
    saved = json.loads(pages[0].read_text())
    assert achilles.available(), "the test extra brings duckcdm"
    assert saved["failed"] == {"source": [], "synthetic": []}
    assert saved["median_agreement"] is not None
