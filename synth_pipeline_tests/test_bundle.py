"""Bundle export: the same CSV bytes from a SQLite and a PostgreSQL destination, streamed."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
import sqlalchemy as sa

from synth_pipeline.core.bundle import BundleSpec, export_table_csv, verify_bundle, write_bundle
from synth_pipeline.core.database import open_destination
from synth_pipeline.core.schema import ColumnDef
from synth_pipeline.core.write import RegisterEntry, replace_table

COLUMNS = [
    ColumnDef("id", "integer"),
    ColumnDef("n", "integer"),
    ColumnDef("x", "float"),
    ColumnDef("s", "string", 40),
    ColumnDef("d", "date"),
    ColumnDef("ts", "datetime"),
    ColumnDef("b", "boolean"),
]

# awkward values: nulls everywhere, empty and quoted strings, newlines, non-ASCII, whole and
# tiny and huge floats, negative and 64-bit integers, dates either side of 2000, fractions of
# a second (the bundle prints whole seconds)
FRAME = pl.DataFrame(
    {
        "id": [1, 2, 3, 4, 5, 6],
        "n": [0, -7, None, 2**62, -(2**62), 42],
        "x": [1.0, None, 0.1, 1e20, -2.5e-8, 70.70077051478012],
        "s": ["plain", None, "", 'say "hi", then go', "two\nlines", "Zürich ∑"],
        "d": [
            dt.date(1999, 12, 31),
            dt.date(2000, 1, 1),
            None,
            dt.date(1970, 1, 1),
            dt.date(2262, 4, 11),
            dt.date(1677, 9, 22),
        ],
        "ts": [
            dt.datetime(2020, 3, 26, 18, 44, 42),
            None,
            dt.datetime(1999, 12, 31, 23, 59, 59, 999999),
            dt.datetime(2000, 1, 1),
            dt.datetime(1970, 1, 1, 0, 0, 1, 500),
            dt.datetime(2024, 2, 29, 12),
        ],
        "b": [True, False, None, True, False, True],
    },
    schema={
        "id": pl.Int64,
        "n": pl.Int64,
        "x": pl.Float64,
        "s": pl.Utf8,
        "d": pl.Date,
        "ts": pl.Datetime("us"),
        "b": pl.Boolean,
    },
)

ENTRY = RegisterEntry("synthetic", "sha256:test", 1, 1.0, {}, "test")


def _export(engine, tmp_path, name: str, frames: list[pl.DataFrame]) -> bytes:
    replace_table(engine, None, "t", COLUMNS, iter(frames), primary_key="id", entry=ENTRY)
    path = tmp_path / f"{name}.csv"
    rows = export_table_csv(engine, None, "t", COLUMNS, ["id"], path, batch_rows=4)
    assert rows == sum(f.height for f in frames)
    return path.read_bytes()


@pytest.fixture
def pg_engine(postgres_database):
    engine = open_destination(postgres_database)
    yield engine
    with engine.begin() as conn:
        conn.execute(sa.text('DROP TABLE IF EXISTS "t"'))
    engine.dispose()


def test_postgres_and_sqlite_bundles_are_byte_identical(tmp_path, pg_engine):
    sqlite = open_destination(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    from_sqlite = _export(sqlite, tmp_path, "sqlite", [FRAME])
    from_postgres = _export(pg_engine, tmp_path, "postgres", [FRAME])
    assert from_sqlite == from_postgres
    lines = from_sqlite.decode().split("\n")
    assert lines[0] == "id,n,x,s,d,ts,b"
    assert lines[1] == "1,0,1.0,plain,1999-12-31,2020-03-26 18:44:42,true"
    # NULL is an empty field, the empty string a quoted one; fractions of a second are cut
    assert lines[3] == '3,,0.1,"",,1999-12-31 23:59:59,'
    assert not list(tmp_path.glob(".*.copy")), "the PostgreSQL scratch file is removed"


def test_export_reads_back_every_value(tmp_path, pg_engine):
    path = tmp_path / "out.csv"
    many = pl.concat([FRAME.with_columns(pl.col("id") + 6 * i) for i in range(50)])
    replace_table(pg_engine, None, "t", COLUMNS, iter([many]), primary_key="id", entry=ENTRY)
    assert export_table_csv(pg_engine, None, "t", COLUMNS, ["id"], path, batch_rows=7) == 300
    back = pl.read_csv(path, schema={c.name: pl.Utf8 for c in COLUMNS})
    assert back["id"].cast(pl.Int64).to_list() == list(range(1, 301))
    assert back["s"].to_list() == many["s"].to_list()
    assert back["n"].cast(pl.Int64).to_list() == many["n"].to_list()
    assert back["x"].cast(pl.Float64).to_list() == many["x"].to_list()


def _both_formats(engine, tmp_path, name: str) -> tuple[bytes, bytes]:
    replace_table(engine, None, "t", COLUMNS, iter([FRAME]), primary_key="id", entry=ENTRY)
    csv, parquet = tmp_path / f"{name}.csv", tmp_path / name / "t.parquet"
    rows = export_table_csv(
        engine, None, "t", COLUMNS, ["id"], csv, batch_rows=4, parquet_path=parquet
    )
    assert rows == FRAME.height
    return csv.read_bytes(), parquet.read_bytes()


def test_parquet_holds_the_csv_rows_typed_and_the_same_from_either_destination(tmp_path, pg_engine):
    sqlite = open_destination(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    csv_sqlite, parquet_sqlite = _both_formats(sqlite, tmp_path, "sqlite")
    csv_postgres, parquet_postgres = _both_formats(pg_engine, tmp_path, "postgres")
    assert csv_sqlite == csv_postgres
    assert parquet_sqlite == parquet_postgres, "the same Parquet bytes whichever the destination"
    parquet = pl.read_parquet(tmp_path / "sqlite" / "t.parquet")
    assert dict(parquet.schema) == {
        "id": pl.Int64,
        "n": pl.Int64,
        "x": pl.Float64,
        "s": pl.Utf8,
        "d": pl.Date,
        "ts": pl.Datetime("us"),
        "b": pl.Boolean,
    }
    # read back, the CSV's rows equal the Parquet's (empty string and NULL kept apart)
    csv = pl.read_csv(tmp_path / "sqlite.csv", schema=parquet.schema)
    assert csv.equals(parquet)
    assert parquet["s"].to_list() == FRAME["s"].to_list()
    assert parquet["ts"].to_list()[2] == dt.datetime(1999, 12, 31, 23, 59, 59)


def test_a_parquet_only_bundle_verifies_and_a_changed_file_does_not(tmp_path):
    engine = open_destination(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    replace_table(engine, None, "t", COLUMNS, iter([FRAME]), primary_key="id", entry=ENTRY)
    tables = [
        {
            "table": "t",
            "kind": "synthetic",
            "columns": COLUMNS,
            "order_by": ["id"],
            "config_fingerprint": "sha256:test",
        }
    ]
    out = tmp_path / "bundle"
    with pytest.raises(ValueError, match="bundle_formats"):
        write_bundle(
            engine, None, out, BundleSpec("p", tables, seed=1, scale=1.0, formats=["xlsx"])
        )
    assert not out.exists(), "nothing written for an unknown format"
    manifest = write_bundle(
        engine, None, out, BundleSpec("p", tables, seed=1, scale=1.0, formats=["parquet"])
    )
    assert manifest["formats"] == ["parquet"]
    assert manifest["tables"][0]["file"] == "parquet/t/t.parquet"
    assert not list(out.glob("*.csv"))
    assert pl.read_parquet(out / "parquet/t/t.parquet").height == FRAME.height
    assert "parquet/t/t.parquet" in (out / "README.md").read_text()
    assert verify_bundle(out) == []
    (out / "parquet/t/t.parquet").write_bytes(b"PAR1 changed")
    assert verify_bundle(out) == ["parquet/t/t.parquet: sha256 does not match the manifest"]
