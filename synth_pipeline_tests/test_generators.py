"""Each generator on its own: types, nulls, ranges, and agreement between derived columns."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from synth_pipeline.core.config import ColumnConfig, TableConfig
from synth_pipeline.core.statistics import (
    Bin,
    ColumnStats,
    DateOffset,
    QuantilePoint,
    TimeOfDay,
    ValueCount,
)
from synth_pipeline.core.synthesise import TableRun


def table(columns: dict[str, ColumnConfig], rows=5000, name="t") -> TableRun:
    cfg = TableConfig(
        table=name,
        kind="synthetic",
        rows=rows,
        primary_key="id",
        columns={
            "id": ColumnConfig(type="integer", sql_type="BIGINT", generator="primary_key"),
            **columns,
        },
    )
    return TableRun(
        cfg,
        seed=7,
        scale=1.0,
        parent_rows=lambda p: {"person": 300}.get(p, 0),
        parent_source_rows=lambda p: 290,
    )


def frame(run: TableRun) -> pl.DataFrame:
    return pl.concat(list(run.chunks(100_000)))


def test_primary_key_is_dense():
    df = frame(table({}, rows=70_000))
    assert df["id"].to_list() == list(range(1, 70_001))


def test_weighted_choice_keeps_proportions_nulls_and_other_value():
    stats = ColumnStats(
        null_fraction=0.2,
        values=[ValueCount(value=8507, count=600), ValueCount(value=8532, count=300)],
        other_count=100,
    )
    df = frame(
        table(
            {
                "g": ColumnConfig(
                    type="integer",
                    sql_type="INT",
                    generator="weighted_choice",
                    params={"other": "value", "other_value": 0},
                    stats=stats,
                )
            },
            rows=20_000,
        )
    )
    g = df["g"]
    assert 0.17 < g.null_count() / len(g) < 0.23
    shares = g.drop_nulls().value_counts(normalize=True)
    share = dict(zip(shares["g"].to_list(), shares["proportion"].to_list(), strict=True))
    assert set(share) == {8507, 8532, 0}
    assert 0.55 < share[8507] < 0.65 and 0.07 < share[0] < 0.13


def test_numeric_quantiles_stay_inside_the_coded_range():
    stats = ColumnStats(
        quantiles=[
            QuantilePoint(p=0.01, value=3.5),
            QuantilePoint(p=0.5, value=4.2),
            QuantilePoint(p=0.99, value=5.9),
        ]
    )
    df = frame(
        table(
            {
                "v": ColumnConfig(
                    type="float", sql_type="FLOAT", generator="numeric_quantiles", stats=stats
                )
            }
        )
    )
    assert df["v"].min() >= 3.5 and df["v"].max() <= 5.9
    assert 4.0 < df["v"].median() < 4.4


def test_dates_follow_bins_and_datetime_twins_agree():
    stats = ColumnStats(
        years=[Bin(start=1990, end=1994, count=50), Bin(start=2000, end=2000, count=50)],
        months=[10] * 12,
    )
    tod = ColumnStats(
        time_of_day=TimeOfDay(midnight_share=0.5, hours=[0] * 8 + [100] * 10 + [0] * 6)
    )
    run = table(
        {
            "d": ColumnConfig(type="date", sql_type="DATE", generator="date_bins", stats=stats),
            "dt": ColumnConfig(
                type="datetime",
                sql_type="TIMESTAMP",
                generator="datetime_from_date",
                params={"date_column": "d"},
                stats=tod,
            ),
            "y": ColumnConfig(
                type="integer",
                sql_type="INT",
                generator="date_part",
                params={"date_column": "dt", "part": "year"},
            ),
        }
    )
    df = frame(run)
    years = df["d"].dt.year()
    assert years.is_between(1990, 2000).all() and not years.is_between(1995, 1999).any()
    assert (df["dt"].dt.date() == df["d"]).all()
    assert (df["y"] == df["dt"].dt.year()).all()
    hours = df["dt"].dt.hour()
    midnight = (df["dt"].dt.time() == dt.time(0)).mean()
    assert 0.45 < midnight < 0.55
    assert hours.filter(hours != 0).is_between(8, 17).all()


def test_end_dates_never_precede_start_dates():
    start = ColumnStats(years=[Bin(start=2010, end=2012, count=100)])
    offset = ColumnStats(
        offset=DateOffset(
            from_column="s",
            quantiles=[QuantilePoint(p=0.01, value=-3), QuantilePoint(p=0.99, value=30)],
        )
    )
    df = frame(
        table(
            {
                "s": ColumnConfig(type="date", sql_type="DATE", generator="date_bins", stats=start),
                "e": ColumnConfig(
                    type="date",
                    sql_type="DATE",
                    generator="date_offset",
                    params={"from_column": "s"},
                    stats=offset,
                ),
            }
        )
    )
    assert (df["e"] >= df["s"]).all()
    assert ((df["e"] - df["s"]).dt.total_days() <= 30).all()


def test_foreign_keys_fall_in_the_parent_range_with_released_fanout():
    stats = ColumnStats(fanout=[Bin(start=1, end=1, count=100), Bin(start=5, end=8, count=100)])
    df = frame(
        table(
            {
                "person_id": ColumnConfig(
                    type="integer",
                    sql_type="BIGINT",
                    generator="foreign_key",
                    params={"table": "person"},
                    stats=stats,
                )
            },
            rows=3000,
        )
    )
    ids = df["person_id"]
    assert ids.min() >= 1 and ids.max() <= 300
    per_parent = ids.value_counts()["count"]
    assert per_parent.max() > 3  # fan-out, not one child each


@pytest.mark.parametrize("pattern", ["uuid", "digits", "code", "text"])
def test_string_patterns_are_shaped_and_bounded(pattern):
    stats = ColumnStats(
        length=[QuantilePoint(p=0.01, value=4), QuantilePoint(p=0.99, value=12)],
        pattern=pattern,
        listed=False,
    )
    df = frame(
        table(
            {
                "s": ColumnConfig(
                    type="string",
                    sql_type="VARCHAR(10)",
                    max_length=10,
                    generator="string_pattern",
                    stats=stats,
                )
            },
            rows=2000,
        )
    )
    s = df["s"]
    assert s.str.len_chars().max() <= 10
    if pattern == "digits":
        assert s.str.contains(r"^[0-9]+$").all()
    if pattern == "code":
        assert s.str.contains(r"^[A-Z0-9]+$").all()


def test_same_seed_same_rows_other_seed_other_rows():
    stats = ColumnStats(values=[ValueCount(value="a", count=50), ValueCount(value="b", count=50)])
    cols = {
        "c": ColumnConfig(type="string", sql_type="TEXT", generator="weighted_choice", stats=stats)
    }
    a, b = frame(table(cols)), frame(table(cols))
    assert a.equals(b)
    other = TableRun(
        table(cols).config,
        seed=8,
        scale=1.0,
        parent_rows=lambda p: 0,
        parent_source_rows=lambda p: None,
    )
    assert not frame(other).equals(a)
