"""The CDM's own semantics, taken from the field specification: start/end pairs, references the
specification defines in prose (self-references, polymorphic ids), twin columns; and the
generation steps that keep them: same-day datetimes in order, ends inside the coded range and
the rules' window, references to the right person's rows."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from synth_pipeline.core import omop
from synth_pipeline.core.config import ColumnConfig, Rules, TableConfig
from synth_pipeline.core.generators import CATALOGUE, ColumnContext
from synth_pipeline.core.relations import RowIndex
from synth_pipeline.core.rules import order_pairs
from synth_pipeline.core.statistics import (
    ColumnStats,
    ConditionalStats,
    DateOffset,
    DateRange,
    GroupStats,
    QuantilePoint,
    ValueCount,
)

SPEC = Path(__file__).resolve().parents[2] / "shared" / "data" / "omop-cdm-spec"


def spec_fields(version: str) -> dict[str, dict[str, dict[str, str]]]:
    """The OHDSI field-level specification as published (not our reduced copy)."""
    path = SPEC / f"OMOP_CDMv{version}_Field_Level.csv"
    if not path.exists():  # a checkout without ../shared: the packaged reduction
        return {
            t: {f: {"cdmDatatype": s.datatype} for f, s in spec.fields.items()}
            for t, spec in omop.cdm_tables(version).items()
        }
    out: dict[str, dict[str, dict[str, str]]] = {}
    with path.open(encoding="latin-1") as f:
        for row in csv.DictReader(f):
            out.setdefault(row["cdmTableName"].lower(), {})[row["cdmFieldName"].lower()] = row
    return out


@pytest.mark.parametrize("version", ["5.3", "5.4"])
def test_every_end_field_of_the_spec_has_its_start(version):
    for table, fields in spec_fields(version).items():
        names = list(fields)
        ends = [
            f
            for f, row in fields.items()
            if row["cdmDatatype"].lower() in ("date", "datetime") and "_end" in f
        ]
        pairs = dict((end, start) for start, end in omop.date_pairs(table, names))
        for end in ends:
            assert end in pairs, (version, table, end)
            assert fields[pairs[end]]["cdmDatatype"].lower() in ("date", "datetime")
    assert omop.start_of(["procedure_date", "procedure_end_date"], "procedure_end_date") == (
        "procedure_date"
    )
    assert omop.start_of(
        ["drug_exposure_start_date", "verbatim_end_date"], "verbatim_end_date"
    ) == ("drug_exposure_start_date")
    assert omop.start_of(["visit_start_date"], "visit_start_date") is None


@pytest.mark.parametrize("version", ["5.3", "5.4"])
def test_self_references_and_polymorphic_ids_exist_in_the_spec(version):
    fields = spec_fields(version)
    own = {
        (t, c)
        for t, cols in fields.items()
        for c in omop.self_references(t, list(cols))
        if t in omop.cdm_tables(version)
    }
    assert ("visit_occurrence", "preceding_visit_occurrence_id") in own
    assert ("visit_detail", "preceding_visit_detail_id") in own
    parent = "parent_visit_detail_id" if version == "5.4" else "visit_detail_parent_id"
    assert ("visit_detail", parent) in own
    for table, refs in omop.POLYMORPHIC.items():
        if table not in fields:
            continue
        for ref in refs:
            if ref.column in fields[table]:
                assert ref.by in fields[table], (version, table, ref)
    assert [
        p.column for p in omop.polymorphic("fact_relationship", list(fields["fact_relationship"]))
    ] == [
        "fact_id_1",
        "fact_id_2",
    ]


def test_twins_pair_source_columns_with_their_concept():
    person = list(omop.cdm_tables("5.4")["person"].fields)
    assert omop.twin_of("person", person, "gender_source_value") == [
        "gender_concept_id",
        "gender_source_concept_id",
    ]
    assert omop.twin_of("person", person, "gender_source_concept_id") == ["gender_concept_id"]
    assert omop.twin_of("person", person, "person_source_value") == []  # an identifier
    visit53 = list(omop.cdm_tables("5.3")["visit_occurrence"].fields)
    assert omop.twin_of("visit_occurrence", visit53, "admitting_source_value") == [
        "admitting_source_concept_id"
    ]
    assert omop.twin_of("not_omop", ["a_concept_id", "a_source_value"], "a_source_value") == []
    assert omop.field_concept_table("visit_occurrence.visit_occurrence_id") == "visit_occurrence"
    assert omop.field_concept_table("Visit Occurrence") is None
    assert omop.field_concept_table("no_table.no_field") is None


def test_same_day_datetimes_end_after_their_start():
    cfg = TableConfig(
        table="visit_occurrence",
        kind="synthetic",
        rows=4,
        columns={
            c: ColumnConfig(type=t, sql_type="x", generator="always_null")
            for c, t in (
                ("visit_start_date", "date"),
                ("visit_start_datetime", "datetime"),
                ("visit_end_date", "date"),
                ("visit_end_datetime", "datetime"),
            )
        },
    )
    day = dt.date(2020, 5, 1)
    done = {
        "visit_start_date": pl.Series([day] * 4),
        "visit_start_datetime": pl.Series(
            [dt.datetime(2020, 5, 1, h) for h in (9, 23, 10, 10)]
        ).cast(pl.Datetime("us")),
        "visit_end_date": pl.Series([day, day, dt.date(2020, 4, 30), day]),
        "visit_end_datetime": pl.Series(
            [
                dt.datetime(2020, 5, 1, 8),
                dt.datetime(2020, 5, 1, 1),
                dt.datetime(2020, 4, 30, 7),
                None,
            ]
        ).cast(pl.Datetime("us")),
    }
    order_pairs(cfg, done, np.random.default_rng(1))
    start, end = done["visit_start_datetime"], done["visit_end_datetime"]
    assert (done["visit_end_date"] >= done["visit_start_date"]).all()
    assert all(e is None or e >= s for s, e in zip(start, end, strict=True))
    # ends stay on their dates, and a missing end stays missing
    assert end[3] is None
    assert all(e.date() == d for e, d in zip(end[:3], done["visit_end_date"][:3], strict=True))
    # without the rule nothing moves
    cfg.rules = Rules(end_after_start=False)
    before = {k: v.clone() for k, v in done.items()}
    done["visit_end_datetime"] = pl.Series([dt.datetime(2020, 5, 1, 1)] * 4)
    order_pairs(cfg, done, np.random.default_rng(1))
    assert done["visit_end_datetime"][0] == dt.datetime(2020, 5, 1, 1)
    assert before["visit_start_date"].equals(done["visit_start_date"])


def _context(generator: str, stats: ColumnStats, params: dict, rows: int, **kw) -> ColumnContext:
    gen = CATALOGUE[generator]
    return ColumnContext(
        table=kw.pop("table", "t"),
        column=kw.pop("column", "c"),
        logical_type=kw.pop("logical_type", "date"),
        nullable=True,
        max_length=None,
        stats=stats,
        params=gen.Params.model_validate(params),
        rows=rows,
        seed=3,
        parent_rows=kw.pop("parent_rows", lambda t: 0),
        parent_source_rows=lambda t: None,
        **kw,
    )


def test_end_dates_stay_inside_their_coded_range_without_piling_up():
    offsets = [QuantilePoint(p=p, value=v) for p, v in ((0.01, 0), (0.5, 400), (0.99, 9000))]
    stats = ColumnStats(
        offset=DateOffset(from_column="s", quantiles=offsets),
        range=DateRange(low="2010-01-01", high="2019-12-31"),
    )
    ctx = _context("date_offset", stats, {"from_column": "s"}, 5000)
    starts = (
        pl.Series("s", np.full(5000, (dt.date(2019, 1, 1) - dt.date(1970, 1, 1)).days))
        .cast(pl.Int32)
        .cast(pl.Date)
    )
    ends = CATALOGUE["date_offset"]().block(ctx, 0, 5000, 0, {"s": starts})
    assert ends.max() <= dt.date(2019, 12, 31)
    assert ends.min() >= dt.date(2019, 1, 1)
    # drawn below the limit, not clipped to it: the last day holds no pile of rows
    assert (ends == dt.date(2019, 12, 31)).sum() < 50
    # a range that starts after the start: the end is drawn inside it
    stats.range = DateRange(low="2019-06-01", high="2019-12-31")
    ends = CATALOGUE["date_offset"]().block(ctx, 0, 5000, 0, {"s": starts})
    assert ends.min() >= dt.date(2019, 6, 1) and ends.max() <= dt.date(2019, 12, 31)


def test_dates_from_bins_stay_inside_their_coded_range():
    from synth_pipeline.core.statistics import Bin

    stats = ColumnStats(
        years=[Bin(start=2018, end=2019, count=100)],
        months=[10] * 12,
        range=DateRange(low="2018-03-15", high="2019-08-20"),
    )
    out = CATALOGUE["date_bins"]().block(_context("date_bins", stats, {}, 3000), 0, 3000, 0, {})
    assert out.min() >= dt.date(2018, 3, 15) and out.max() <= dt.date(2019, 8, 20)


def test_row_index_finds_the_same_persons_rows_and_earlier_ones():
    frame = pl.DataFrame(
        {
            "person_id": [2, 1, 2, 1, 3],
            "d": pl.Series([10, 5, 3, 5, 7]).cast(pl.Int32).cast(pl.Date),
        }
    )
    index = RowIndex.build(frame, "person_id", "d")
    # person 2's rows are ids 3 (day 3) and 1 (day 10); person 1's are ids 2 and 4 (both day 5)
    assert index.before(np.array([2, 2, 1, 3]), np.array([10, 3, 5, 8])).tolist() == [3, 0, 0, 5]
    picks = index.pick(np.array([1] * 50 + [4]), np.linspace(0, 0.999, 51))
    assert set(picks[:50].tolist()) == {2, 4} and picks[50] == 0


def test_twins_take_values_of_their_combination_or_null():
    groups = [
        GroupStats(value=[8507, 100], count=50, values=[ValueCount(value="M", count=50)]),
        GroupStats(value=[8532, 101], count=50, values=[ValueCount(value="F", count=50)]),
    ]
    stats = ColumnStats(
        values=[ValueCount(value="M", count=50), ValueCount(value="F", count=50)],
        conditional=ConditionalStats(
            by=["gender_concept_id", "gender_source_concept_id"],
            groups=groups,
            other=GroupStats(value=None, count=20, values=[ValueCount(value="U", count=20)]),
        ),
    )
    params = {"by": ["gender_concept_id", "gender_source_concept_id"], "other": "null"}
    ctx = _context("conditional_choice", stats, params, 4, logical_type="string")
    done = {
        "gender_concept_id": pl.Series([8507, 8532, 8507, 0]),
        "gender_source_concept_id": pl.Series([100, 101, 101, 0]),
    }
    out = CATALOGUE["conditional_choice"]().block(ctx, 0, 4, 0, done)
    assert out.to_list() == ["M", "F", None, None]  # an unreleased combination: no value
    assert CATALOGUE["conditional_choice"].possible_values(stats, ctx.params) == ["M", "F"]
    pooled = _context(
        "conditional_choice", stats, params | {"other": "pooled"}, 4, logical_type="string"
    )
    assert CATALOGUE["conditional_choice"]().block(pooled, 0, 4, 0, done).to_list()[2:] == [
        "U",
        "U",
    ]


def test_rows_of_a_required_reference_that_points_nowhere_are_not_generated(tmp_path):
    """An observation period per person, and as many again for persons missing from person:
    the draft generates one per synthetic person (as the released fan-out says), not two."""
    import sqlite3

    from .core_path import draft_and_approve, generate

    source = tmp_path / "source.sqlite"
    with sqlite3.connect(source) as db:
        db.execute(
            "CREATE TABLE person (person_id INTEGER NOT NULL PRIMARY KEY, gender_concept_id "
            "INTEGER NOT NULL, year_of_birth INTEGER NOT NULL, race_concept_id INTEGER NOT NULL, "
            "ethnicity_concept_id INTEGER NOT NULL)"
        )
        db.execute(
            "CREATE TABLE observation_period (observation_period_id INTEGER NOT NULL PRIMARY KEY, "
            "person_id INTEGER NOT NULL, observation_period_start_date DATE NOT NULL, "
            "observation_period_end_date DATE NOT NULL, period_type_concept_id INTEGER NOT NULL)"
        )
        db.executemany(
            "INSERT INTO person VALUES (?, 8507, ?, 0, 0)", [(i, 1950 + i % 3) for i in range(60)]
        )
        db.executemany(
            "INSERT INTO observation_period VALUES (?, ?, ?, '2019-12-31', 44814724)",
            # persons 0..59 once each, then 60 rows for persons 1000..1059, not in person
            [(i, i if i < 60 else 940 + i, f"201{i % 10}-01-01") for i in range(120)],
        )
    files = draft_and_approve(f"sqlite:///{source}", tmp_path / "configs")
    cfg = files.load_table("observation_period")
    dangling = cfg.columns["person_id"].stats.dangling
    assert dangling == 60 and cfg.source.row_count == 120
    assert cfg.rows == 60
    assert any("rows: 60, the released 120 less" in f for f in cfg.source.findings)
    destination = tmp_path / "synthetic.sqlite"
    generate(files, f"sqlite:///{destination}")
    with sqlite3.connect(destination) as db:
        per_person = db.execute(
            "SELECT n, COUNT(*) FROM (SELECT COUNT(*) n FROM observation_period GROUP BY "
            "person_id) GROUP BY n"
        ).fetchall()
        persons = db.execute("SELECT COUNT(*) FROM person").fetchone()[0]
    assert per_person == [(1, persons)]


def test_events_are_written_after_the_observation_periods_their_rules_read():
    from synth_pipeline.core.table_order import dependency_waves, order_parents_first

    tables = ["condition_era", "death", "condition_occurrence", "observation_period", "person"]
    order = order_parents_first(tables)
    for event in ("condition_era", "condition_occurrence", "death"):
        assert order.index("observation_period") < order.index(event), order
    waves = dependency_waves(tables)
    assert waves[0] == ["person"] and waves[1] == ["observation_period"], waves


def test_observation_starts_at_the_released_age(tmp_path):
    """Persons born 1930..1969 observed from the age of 40 to 43 until 2019: their synthetic
    periods start at those ages too (dates and births alone would spread them over 0..80)."""
    import sqlite3

    from .core_path import draft_and_approve, generate

    rng = np.random.default_rng(7)
    source = tmp_path / "source.sqlite"
    births = [dt.date(1930 + i % 40, 1 + i % 12, 1 + i % 28) for i in range(300)]
    ages = rng.integers(40 * 365, 43 * 365, size=len(births))
    with sqlite3.connect(source) as db:
        db.execute(
            "CREATE TABLE person (person_id INTEGER NOT NULL PRIMARY KEY, gender_concept_id "
            "INTEGER NOT NULL, year_of_birth INTEGER NOT NULL, month_of_birth INTEGER, "
            "day_of_birth INTEGER, race_concept_id INTEGER NOT NULL, ethnicity_concept_id "
            "INTEGER NOT NULL)"
        )
        db.execute(
            "CREATE TABLE observation_period (observation_period_id INTEGER NOT NULL PRIMARY KEY, "
            "person_id INTEGER NOT NULL, observation_period_start_date DATE NOT NULL, "
            "observation_period_end_date DATE NOT NULL, period_type_concept_id INTEGER NOT NULL)"
        )
        db.executemany(
            "INSERT INTO person VALUES (?, 8507, ?, ?, ?, 0, 0)",
            [(i, b.year, b.month, b.day) for i, b in enumerate(births)],
        )
        db.executemany(
            "INSERT INTO observation_period VALUES (?, ?, ?, '2019-12-31', 44814724)",
            [
                (i, i, (b + dt.timedelta(days=int(a))).isoformat())
                for i, (b, a) in enumerate(zip(births, ages, strict=True))
            ],
        )
    files = draft_and_approve(f"sqlite:///{source}", tmp_path / "configs")
    released = files.load_table("observation_period").columns["observation_period_start_date"]
    assert released.stats.days_from_birth
    assert 40 * 365 <= released.stats.days_from_birth[0].value <= 43 * 365
    destination = tmp_path / "synthetic.sqlite"
    generate(files, f"sqlite:///{destination}")
    with sqlite3.connect(destination) as db:
        years = [
            r[0]
            for r in db.execute(
                "SELECT CAST(strftime('%Y', o.observation_period_start_date) AS INTEGER) "
                "- p.year_of_birth FROM observation_period o JOIN person p USING (person_id)"
            )
        ]
    assert len(years) == len(births)
    inside = sum(39 <= y <= 44 for y in years) / len(years)
    assert inside > 0.95, sorted(years)[:: len(years) // 20]
