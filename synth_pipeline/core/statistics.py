"""The released statistics: everything here has passed disclosure control.

These models are what ``column_stats`` produces and what the per-table YAML carries under each
column's ``stats``. Nothing raw (no exact small count, no raw minimum or maximum, no list of
real dates, no free-text value) can be represented in them.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .disclosure import DisclosurePolicy

Scalar = int | float | str | bool


class ValueCount(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: Scalar
    count: int = Field(ge=0)


class QuantilePoint(BaseModel):
    model_config = ConfigDict(extra="forbid")
    p: float = Field(ge=0, le=1)
    value: int | float | str  # numbers, or ISO dates for date offsets


class Bin(BaseModel):
    """An inclusive range of integer keys (years, children per parent) and its released count."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    start: int = Field(alias="from")
    end: int = Field(alias="to")
    count: int = Field(ge=0)


class TimeOfDay(BaseModel):
    model_config = ConfigDict(extra="forbid")
    midnight_share: float = Field(ge=0, le=1)
    hours: list[int] | None = None  # 24 released counts of non-midnight times, or None


class DateOffset(BaseModel):
    """Days from another column of the same row to this one (end dates from start dates)."""

    model_config = ConfigDict(extra="forbid")
    from_column: str
    quantiles: list[QuantilePoint]
    negative_share: float = Field(0, ge=0, le=1)  # rows in the source that end before they start


class GroupStats(BaseModel):
    """Statistics of a column within one group of rows (rows sharing a value of another column,
    or a combination of values of several)."""

    model_config = ConfigDict(extra="forbid")
    value: Scalar | list[Scalar | None] | None = Field(
        None,
        description="The group's value (a list of values when grouped by several columns); "
        "None for the pooled small groups.",
    )
    count: int = Field(ge=0, description="Released count of the group's rows.")
    null_fraction: float = Field(0.0, ge=0, le=1)
    quantiles: list[QuantilePoint] | None = None
    values: list[ValueCount] | None = None
    other_count: int | None = None


class ConditionalStats(BaseModel):
    """A column summarised per value of another column (opt-in, see project.yaml `conditional`)."""

    model_config = ConfigDict(extra="forbid")
    by: str | list[str]
    groups: list[GroupStats]

    @property
    def by_columns(self) -> list[str]:
        return [self.by] if isinstance(self.by, str) else list(self.by)

    other: GroupStats | None = Field(None, description="Groups too small to release, pooled.")


class DateRange(BaseModel):
    """The coded range of a date column: no generated date lies outside it."""

    model_config = ConfigDict(extra="forbid")
    low: str = Field(description="ISO date: the mean of the k dates around the low percentile.")
    high: str = Field(description="ISO date: the mean of the k dates around the high percentile.")


class Target(BaseModel):
    """Where an id of a polymorphic reference points, for one value of the column naming it."""

    model_config = ConfigDict(extra="forbid")
    value: Scalar = Field(description="A domain concept, field concept or domain id.")
    table: str = Field(description="The CDM table whose rows ids with that value point to.")


class ColumnStats(BaseModel):
    """Released statistics of one column. Which fields are present depends on its type."""

    model_config = ConfigDict(extra="forbid")

    non_null: int | None = Field(None, description="Released count of non-null rows.")
    null_fraction: float = Field(0.0, ge=0, le=1)
    distinct: int | None = Field(None, description="Released count of distinct values.")
    zero_as_null: int | None = Field(
        None, description="Released count of rows holding 0 where NULL was meant (id columns)."
    )
    values: list[ValueCount] | None = Field(None, description="Values seen at least k times.")
    other_count: int | None = Field(None, description="Released count of rows with other values.")
    quantiles: list[QuantilePoint] | None = None
    years: list[Bin] | None = None
    months: list[int] | None = None  # 12 released counts, January first
    time_of_day: TimeOfDay | None = None
    length: list[QuantilePoint] | None = None
    pattern: str | None = None
    offset: DateOffset | None = None
    days_from_birth: list[QuantilePoint] | None = Field(
        None,
        description="Observation periods' starts: days from the person's birth, released as "
        "quantiles (k-value means), so the age at which observation starts is kept.",
    )
    range: DateRange | None = Field(
        None, description="Dates: the coded range (p_low..p_high as k-value means)."
    )
    targets: list[Target] | None = Field(
        None,
        description="Polymorphic references: the table each released value of the naming "
        "column points to (from the extract's DOMAIN and CONCEPT tables).",
    )
    fanout: list[Bin] | None = Field(
        None, description="Children per referenced parent (foreign keys), parents counted."
    )
    dangling: int | None = Field(
        None, description="Released count of references to no row of the parent table."
    )
    conditional: ConditionalStats | None = None
    listed: bool = Field(True, description="False when values are never listed (free text, ids).")


class PrivacyBudget(BaseModel):
    """The differential privacy budget a table's released statistics spent (when it is on)."""

    model_config = ConfigDict(extra="forbid")

    mechanism: str = Field(description="geometric (two-sided, integer) or laplace (rounded).")
    unit: str = Field(
        "row",
        description="What one neighbouring extract differs by: one row of this table. A person "
        "with several rows is protected at epsilon times their row count.",
    )
    project_epsilon: float = Field(description="project.yaml disclosure.epsilon.")
    project_delta: float | None = Field(None, description="project.yaml disclosure.delta.")
    tables_sharing: int = Field(description="Patient-level tables of the source sharing it.")
    table_epsilon: float = Field(description="This table's equal share.")
    table_delta: float | None = Field(None, description="This table's equal share of delta.")
    statistics: int = Field(description="Statistics of this table that spend the budget.")
    statistic_epsilon: float = Field(description="Each one's equal share of table_epsilon.")
    statistic_delta: float | None = Field(
        None, description="Each one's equal share of table_delta (spent by listings only)."
    )
    listing_threshold: int | None = Field(
        None,
        description="A value is listed only when its noisy count reaches this: the stability "
        "threshold for statistic_epsilon and statistic_delta (at least k).",
    )
    plan: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per column (and 'rows'), the statistics that spend statistic_epsilon each.",
    )
    spent: dict[str, float] = Field(
        description="Epsilon spent per column (and 'rows' for the row count); sums to table_epsilon."
    )
    quantiles: str = Field(description="How quantiles are treated under differential privacy.")
    outside_guarantee: list[str] = Field(
        default_factory=list, description="What is released without noise, and why."
    )


class TableStats(BaseModel):
    model_config = ConfigDict(extra="forbid")

    table: str
    kind: str
    row_count: int | None  # released; None when below k
    columns: dict[str, ColumnStats]
    disclosure: dict[str, list[str]] = Field(default_factory=dict)  # column -> rules applied
    findings: list[str] = Field(default_factory=list)  # dirty data seen, counts released
    policy: DisclosurePolicy
    dp: PrivacyBudget | None = None  # the differential privacy budget spent, when it is on

    def fingerprint(self) -> str:
        return fingerprint_of(self.model_dump(mode="json", by_alias=True))


def fingerprint_of(data: Any) -> str:
    """A stable sha256 of JSON-able data (key order and whitespace do not matter)."""
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def ends_at_a_cut(start: ColumnStats | None, end: ColumnStats) -> bool:
    """Whether an end date is anchored at the end of the data rather than at its start: at
    least half its dates lie in the data's last three years, at least twice the share of its
    start's (observation periods that run to the extract's date, while they start at any time).
    Such an end is drawn from its own bins, and its start before it."""

    def late_share(stats: ColumnStats | None, first_year: int) -> float:
        bins = (stats.years or []) if stats else []
        total = sum(b.count for b in bins)
        return sum(b.count for b in bins if b.end >= first_year) / total if total else 0.0

    if not end.years or end.offset is None:
        return False
    cut = end.years[-1].end - 2
    share = late_share(end, cut)
    return share >= 0.5 and share >= 2 * late_share(start, cut)


def fits_type(value: Any, logical_type: str) -> bool:
    """Whether a listed value is one of a column's logical type: summarising lists no other
    (text in a number column of a dirty extract), and a generator refuses stats that do."""
    if logical_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if logical_type == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if logical_type == "boolean":
        return isinstance(value, bool) or value in (0, 1)
    return True
