"""Statistics cost a fixed number of statements per table, whatever its width, on SQLite and
PostgreSQL alike; a table above ``sample_rows`` takes only its high-cardinality columns from a
sample, says so in its findings, and keeps every count exact."""

from __future__ import annotations

import uuid

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa
from sqlalchemy import event

from synth_pipeline.core.database import open_destination, open_source
from synth_pipeline.core.disclosure import DisclosurePolicy
from synth_pipeline.core.disclosure_audit import audit_released_counts
from synth_pipeline.core.schema import ColumnDef, read_table_schema
from synth_pipeline.core.summarise import summarise_table
from synth_pipeline.core.write import RegisterEntry, replace_table

NARROW = ["measurement_concept_id", "measurement_date", "value_as_number", "unit_source_value"]
WIDE = NARROW + [
    "measurement_datetime",
    "measurement_type_concept_id",
    "value_as_concept_id",
    "unit_concept_id",
    "range_low",
    "range_high",
    "measurement_source_value",
    "value_source_value",
]
TYPES = {
    "measurement_date": "date",
    "measurement_datetime": "datetime",
    "value_as_number": "float",
    "range_low": "float",
    "range_high": "float",
    "unit_source_value": "string",
    "measurement_source_value": "string",
    "value_source_value": "string",
}


def measurement_frame(rows: int, columns: list[str], seed: int = 7) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    days = rng.integers(0, 3650, rows)
    data: dict[str, object] = {
        "measurement_id": np.arange(1, rows + 1, dtype=np.int64),
        "person_id": rng.integers(1, rows // 20 + 2, rows),
    }
    for name in columns:
        kind = TYPES.get(name, "integer")
        if kind == "float":
            data[name] = np.round(rng.lognormal(2.0, 1.0, rows), 4)
        elif kind == "date":
            data[name] = pl.Series(days).cast(pl.Date)
        elif kind == "datetime":
            data[name] = pl.Series(
                days * 86_400_000_000 + rng.integers(0, 86_400, rows) * 10**6
            ).cast(pl.Datetime("us"))
        elif kind == "string":
            data[name] = [f"code-{v}" for v in rng.integers(0, 40, rows)]
        else:
            data[name] = rng.choice([3004249, 3012888, 3027018, 3020891, 3013682], rows)
    return pl.DataFrame(data)


def load(url: str, schema: str | None, frame: pl.DataFrame) -> None:
    engine = open_destination(url)
    if schema:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    cols = [ColumnDef(n, TYPES.get(n, "integer")) for n in frame.columns]
    entry = RegisterEntry("synthetic", "sha256:test", 1, 1.0, {}, "test")
    replace_table(
        engine,
        schema,
        "measurement",
        cols,
        iter([frame]),
        primary_key="measurement_id",
        entry=entry,
    )
    engine.dispose()


def summarise_counting(url: str, schema: str | None, **kwargs):
    """The table's released statistics and the statements that read the table itself."""
    engine = open_source(url)
    table = read_table_schema(engine, schema, "measurement")
    statements: list[str] = []

    @event.listens_for(engine, "before_cursor_execute")
    def record(conn, cursor, statement, params, context, executemany):
        # reads of the table; a never-listed string's shape sample (LIMIT) is not a pass
        if '"measurement"' in statement and " LIMIT " not in statement:
            statements.append(statement)

    stats = summarise_table(engine, schema, table, DisclosurePolicy(), **kwargs)
    engine.dispose()
    return stats, statements


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request, tmp_path):
    """A fresh database (SQLite file) or schema (PostgreSQL) factory for one test."""
    if request.param == "sqlite":
        return lambda name: (f"sqlite:///{tmp_path / (name + '.sqlite')}", None)
    url = request.getfixturevalue("postgres_database")
    return lambda name: (url, f"s_{name}_{uuid.uuid4().hex[:6]}")


def test_statements_do_not_grow_with_the_number_of_columns(database):
    counts = {}
    for name, columns in (("narrow", NARROW), ("wide", WIDE)):
        url, schema = database(name)
        load(url, schema, measurement_frame(3_000, columns))
        stats, statements = summarise_counting(url, schema)
        assert set(stats.columns) == {"measurement_id", "person_id", *columns}
        assert stats.columns["value_as_number"].quantiles, name
        counts[name] = len(statements)
    # first scan, distinct counts, the grouped pass, the high-cardinality ranks: the wide table
    # has three times the columns and the same statements
    assert counts["wide"] == counts["narrow"], counts
    assert counts["wide"] <= 6, counts


def test_a_big_table_takes_high_cardinality_columns_from_a_stated_sample(database):
    url, schema = database("big")
    load(url, schema, measurement_frame(120_000, WIDE))
    exact, _ = summarise_counting(url, schema)
    sampled, statements = summarise_counting(url, schema, sample_rows=20_000)
    assert len(statements) <= 7

    assert not any("sample" in f for f in exact.findings)
    (note,) = [f for f in sampled.findings if "sample of about" in f]
    for column in ("value_as_number", "range_low", "measurement_datetime"):
        assert column in note
        assert exact.columns[column].distinct is not None
        assert sampled.columns[column].distinct is None
        assert any("not released" in n for n in sampled.disclosure[column])
    assert "measurement_concept_id" not in note.split(":")[0]

    # every count, listed value and histogram is exact all the same
    for column in ("measurement_concept_id", "unit_concept_id", "person_id"):
        assert sampled.columns[column] == exact.columns[column], column
    for field in ("years", "months", "time_of_day", "non_null", "null_fraction", "length"):
        assert getattr(sampled.columns["measurement_datetime"], field) == getattr(
            exact.columns["measurement_datetime"], field
        ), field
    assert sampled.columns["unit_source_value"] == exact.columns["unit_source_value"]

    # quantiles from the sample: still k-value window means, close to the whole table's
    whole = {q.p: q.value for q in exact.columns["value_as_number"].quantiles}
    part = {q.p: q.value for q in sampled.columns["value_as_number"].quantiles}
    assert set(part) == set(whole)
    for p in (0.25, 0.5, 0.75):
        nearest = min(whole, key=lambda x: abs(x - p))
        assert abs(part[nearest] - whole[nearest]) / whole[nearest] < 0.1, (p, part, whole)
    assert any("in a sample" in n for n in sampled.disclosure["value_as_number"])
    assert (
        audit_released_counts(sampled.model_dump(mode="json", by_alias=True), sampled.policy) == []
    )


def test_sqlite_and_postgres_release_the_same_statistics(tmp_path, postgres_database):
    frame = measurement_frame(5_000, WIDE, seed=11)
    sqlite_url = f"sqlite:///{tmp_path / 'same.sqlite'}"
    schema = f"same_{uuid.uuid4().hex[:6]}"
    load(sqlite_url, None, frame)
    load(postgres_database, schema, frame)
    on_sqlite, _ = summarise_counting(sqlite_url, None)
    on_postgres, _ = summarise_counting(postgres_database, schema)
    assert on_sqlite.columns["value_as_number"].quantiles
    assert on_sqlite.model_dump() == on_postgres.model_dump()
