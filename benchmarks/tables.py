"""The tables the benchmarks generate: approved-config shapes like a hospital's, built in code.

``measurement_like`` is a 20-column table shaped like OMOP ``measurement``: keys, references with
a children-per-parent profile, coded concepts, dates and datetimes, numbers drawn through
quantiles, short codes and free-text-like strings, with realistic null shares. Its statistics
are invented (no source was read), so it can be shared and run anywhere.
"""

from __future__ import annotations

from synth_pipeline.core.config import ColumnConfig, TableConfig
from synth_pipeline.core.statistics import (
    Bin,
    ColumnStats,
    QuantilePoint,
    TimeOfDay,
    ValueCount,
)
from synth_pipeline.core.synthesise import TableRun

SEED = 20261128


def _q(points: list[tuple[float, float]]) -> list[QuantilePoint]:
    return [QuantilePoint(p=p, value=v) for p, v in points]


def _values(values: list, start: int = 1000, step: int = 37) -> list[ValueCount]:
    return [
        ValueCount(value=v, count=start + step * (len(values) - i)) for i, v in enumerate(values)
    ]


def _col(type_: str, sql: str, generator: str, params=None, stats=None, max_length=None):
    return ColumnConfig(
        type=type_,
        sql_type=sql,
        generator=generator,
        params=params or {},
        stats=stats,
        max_length=max_length,
    )


def measurement_like(rows: int, name: str = "measurement") -> TableConfig:
    """A measurement-like table of ``rows`` rows and 20 columns."""
    years = [Bin(start=y, end=y, count=100 + 10 * (y - 2000)) for y in range(2000, 2025)]
    months = [80, 75, 90, 85, 88, 84, 79, 81, 92, 95, 90, 70]
    fanout = [
        Bin(start=a, end=b, count=c) for a, b, c in [(1, 5, 300), (6, 20, 500), (21, 60, 200)]
    ]
    concepts = _values([3000000 + 17 * i for i in range(50)])
    cols = {
        "measurement_id": _col("integer", "BIGINT", "primary_key"),
        "person_id": _col(
            "integer",
            "BIGINT",
            "foreign_key",
            {"table": "person", "distribution": "fanout"},
            ColumnStats(fanout=fanout),
        ),
        "measurement_concept_id": _col(
            "integer",
            "BIGINT",
            "weighted_choice",
            {"other": "value", "other_value": 0},
            ColumnStats(values=concepts, other_count=500),
        ),
        "measurement_date": _col(
            "date", "DATE", "date_bins", {}, ColumnStats(years=years, months=months)
        ),
        "measurement_datetime": _col(
            "datetime",
            "TIMESTAMP",
            "datetime_from_date",
            {"date_column": "measurement_date"},
            ColumnStats(
                null_fraction=0.05,
                time_of_day=TimeOfDay(midnight_share=0.3, hours=[1 + (h % 12) for h in range(24)]),
            ),
        ),
        "measurement_time": _col(
            "string",
            "VARCHAR(10)",
            "string_pattern",
            {"pattern": "digits"},
            ColumnStats(null_fraction=0.6, length=_q([(0.01, 4), (0.99, 6)])),
            max_length=10,
        ),
        "measurement_type_concept_id": _col(
            "integer",
            "BIGINT",
            "weighted_choice",
            {},
            ColumnStats(values=_values([44818702, 44818703, 44818704])),
        ),
        "operator_concept_id": _col(
            "integer",
            "BIGINT",
            "weighted_choice",
            {},
            ColumnStats(null_fraction=0.8, values=_values([4172703, 4171756, 4172704])),
        ),
        "value_as_number": _col(
            "float",
            "DOUBLE PRECISION",
            "numeric_quantiles",
            {},
            ColumnStats(
                null_fraction=0.1,
                quantiles=_q([(0.01, 0.2), (0.25, 4.1), (0.5, 7.5), (0.75, 40.0), (0.99, 310.0)]),
            ),
        ),
        "value_as_concept_id": _col(
            "integer",
            "BIGINT",
            "weighted_choice",
            {},
            ColumnStats(null_fraction=0.7, values=_values([45884084, 45878583, 45880649, 9189])),
        ),
        "unit_concept_id": _col(
            "integer",
            "BIGINT",
            "weighted_choice",
            {"other": "null"},
            ColumnStats(values=_values([8840 + i for i in range(20)]), other_count=400),
        ),
        "range_low": _col(
            "float",
            "DOUBLE PRECISION",
            "numeric_quantiles",
            {},
            ColumnStats(null_fraction=0.4, quantiles=_q([(0.01, 0.0), (0.5, 3.5), (0.99, 70.0)])),
        ),
        "range_high": _col(
            "float",
            "DOUBLE PRECISION",
            "numeric_quantiles",
            {},
            ColumnStats(null_fraction=0.4, quantiles=_q([(0.01, 1.0), (0.5, 11.0), (0.99, 400.0)])),
        ),
        "provider_id": _col(
            "integer",
            "BIGINT",
            "foreign_key",
            {"table": "provider", "distribution": "uniform"},
            ColumnStats(null_fraction=0.3),
        ),
        "visit_occurrence_id": _col(
            "integer",
            "BIGINT",
            "foreign_key",
            {"table": "visit_occurrence", "distribution": "fanout"},
            ColumnStats(null_fraction=0.1, fanout=fanout[:2]),
        ),
        "visit_detail_id": _col(
            "integer",
            "BIGINT",
            "foreign_key",
            {"table": "visit_detail", "distribution": "uniform"},
            ColumnStats(null_fraction=0.9),
        ),
        "measurement_source_value": _col(
            "string",
            "VARCHAR(50)",
            "string_pattern",
            {"pattern": "code"},
            ColumnStats(length=_q([(0.01, 4), (0.5, 7), (0.99, 12)])),
            max_length=50,
        ),
        "measurement_source_concept_id": _col(
            "integer",
            "BIGINT",
            "weighted_choice",
            {"other": "quantiles"},
            ColumnStats(
                values=concepts[:20],
                other_count=3000,
                quantiles=_q([(0.01, 3000000), (0.5, 3020000), (0.99, 46000000)]),
            ),
        ),
        "unit_source_value": _col(
            "string",
            "VARCHAR(50)",
            "weighted_choice",
            {},
            ColumnStats(null_fraction=0.2, values=_values(["mg/dL", "mmol/L", "%", "g/L", "U/L"])),
            max_length=50,
        ),
        "value_source_value": _col(
            "string",
            "VARCHAR(50)",
            "string_pattern",
            {"pattern": "code"},
            ColumnStats(null_fraction=0.3, length=_q([(0.01, 1), (0.5, 4), (0.99, 8)])),
            max_length=50,
        ),
    }
    assert len(cols) == 20
    return TableConfig(
        table=name, kind="synthetic", rows=rows, primary_key="measurement_id", columns=cols
    )


PARENT_ROWS = {"person": 0.05, "provider": 0.0005, "visit_occurrence": 0.25, "visit_detail": 0.5}


def measurement_run(rows: int, name: str = "measurement") -> TableRun:
    """The generation run of :func:`measurement_like`, with parents sized in proportion."""
    parents = {p: max(10, int(rows * share)) for p, share in PARENT_ROWS.items()}
    return TableRun(
        measurement_like(rows, name),
        seed=SEED,
        scale=1.0,
        parent_rows=lambda p: parents.get(p, 0),
        parent_source_rows=lambda p: parents.get(p),
    )
