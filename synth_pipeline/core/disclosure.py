"""Disclosure control: the rules every number passes before it leaves the trusted environment.

Each function takes raw aggregates (which never leave ``summarise``) and returns what may be
released, together with a plain-language note of what the rule changed, so the reviewer sees
which rule touched which column.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Columns whose values are identifiers or free text: described by a length and pattern
# profile, never listed. Glob patterns on lower-case column names. Other *_source_value columns
# are categories (gender M/F, a visit's kind, a source code): listed when each value passes k and
# the column is not identifier-like (identifier_share, max_distinct_for_listing).
DEFAULT_NEVER_LIST = [
    "person_source_value",
    "provider_source_value",
    "care_site_source_value",
    "location_source_value",
    "*_source_id",
    "note_text",
    "note_title",
    "snippet",
    "lexical_variant",
    "value_as_string",
    "sig",
    "lot_number",
    "unique_device_id",
    "npi",
    "dea",
    "provider_name",
    "care_site_name",
    "address_1",
    "address_2",
    "zip",
    "term_modifiers",
]


# Year bins are cut on multiples of this many years unless a cut is supported by k rows on
# each side (see :func:`merge_bins`); under differential privacy years are counted in buckets
# of this width.
YEAR_GRID = 5

# OMOP integers whose domain is known without looking at the data.
DEFAULT_DP_RANGES = {
    "year_of_birth": (1850.0, 2100.0),
    "month_of_birth": (1.0, 12.0),
    "day_of_birth": (1.0, 31.0),
}


class DisclosurePolicy(BaseModel):
    """Project-wide disclosure rules, written into ``project.yaml`` so the reviewer sees each."""

    model_config = ConfigDict(extra="forbid")

    min_cell_count: int = Field(
        10, ge=1, description="k: a count below this is never released (ONS uses 10)."
    )
    rounding: int = Field(5, ge=1, description="Released counts are rounded to a multiple of this.")
    low_percentile: float = Field(
        1.0, ge=0, lt=50, description="Numeric and date ranges are bottom-coded here."
    )
    high_percentile: float = Field(
        99.0, gt=50, le=100, description="Numeric and date ranges are top-coded here."
    )
    max_listed_values: int = Field(
        50, ge=0, description="At most this many common values are listed per column."
    )
    max_distinct_for_listing: int = Field(
        1000,
        ge=1,
        description="A column with more distinct values than this is high-cardinality: never listed.",
    )
    identifier_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="A string column whose distinct values exceed this share of its rows is "
        "treated as an identifier: never listed.",
    )
    never_list: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NEVER_LIST),
        description="Column name patterns whose values are never listed (free text, identifiers).",
    )
    pattern_sample_size: int = Field(
        1000,
        ge=10,
        description="Rows read to recognise the shape of a never-listed string column; only "
        "the shape's name leaves.",
    )
    epsilon: float | None = Field(
        None,
        gt=0,
        description="Differential privacy budget of the whole project (None: off). Split equally "
        "over the source's patient-level tables, then over each table's released statistics "
        "(counts, histograms, listed values, quantiles); see docs/disclosure.md's differential privacy "
        "section for what is noised and what is withheld.",
    )
    delta: float = Field(
        1e-7,
        gt=0,
        lt=1,
        description="Differential privacy delta of the whole project, split like epsilon: the "
        "chance that a listing taken from the data's own domain (concept ids, strings, numbers "
        "without a declared range) lists a value held by one row. A value is listed only when "
        "its noisy count reaches the threshold epsilon and delta set. Keep it far below "
        "1 / rows.",
    )
    dp_mechanism: Literal["geometric", "laplace"] = Field(
        "geometric",
        description="Noise under differential privacy: two-sided geometric (integer, exact) or "
        "Laplace (rounded to an integer).",
    )
    dp_quantiles: Literal["dp", "withheld"] = Field(
        "dp",
        description="Quantiles (numbers, string lengths, days between dates) under differential "
        "privacy: chosen by the exponential mechanism among candidates that do not depend on "
        "the data (dp), or withheld.",
    )
    dp_ranges: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: dict(DEFAULT_DP_RANGES),
        description="Declared domains of numeric columns under differential privacy (column "
        "name pattern -> [low, high]): an integer column's values are counted over every "
        "integer of its range (noise on each, present or not), and its quantile candidates "
        "come from the range. Other numbers take candidates from a fixed logarithmic grid.",
    )
    dp_years: tuple[int, int] = Field(
        (1850, 2100),
        description="Declared range of the years of dates under differential privacy: years "
        f"are counted in {YEAR_GRID}-year buckets over it (noise on each), years outside fall "
        "in the first or last bucket.",
    )
    dp_max_children: int = Field(
        1024,
        ge=2,
        description="Children per parent under differential privacy are counted in buckets "
        "1, 2-3, 4-7, ... up to this many (noise on each); more fall in the last bucket.",
    )

    @model_validator(mode="before")
    @classmethod
    def _no_unnoised_quantiles(cls, data: object) -> object:
        # 'not_noised' (quantiles outside the epsilon guarantee) is no longer offered. Files
        # written before carry it with epsilon off, where it never meant anything.
        if isinstance(data, dict) and data.get("dp_quantiles") == "not_noised":
            if data.get("epsilon") is not None:
                raise ValueError(
                    "dp_quantiles: not_noised is no longer offered (quantiles would be released "
                    "outside the epsilon guarantee); use dp or withheld"
                )
            data = {**data, "dp_quantiles": "dp"}
        return data

    @model_validator(mode="after")
    def _ranges_ordered(self) -> DisclosurePolicy:
        for pattern, (low, high) in self.dp_ranges.items():
            if not low < high:
                raise ValueError(f"dp_ranges.{pattern}: low must be below high")
        if not self.dp_years[0] < self.dp_years[1]:
            raise ValueError("dp_years: the first year must be below the last")
        return self

    @model_validator(mode="after")
    def _percentiles_ordered(self) -> DisclosurePolicy:
        if self.low_percentile >= self.high_percentile:
            raise ValueError("low_percentile must be below high_percentile")
        return self

    @property
    def k(self) -> int:
        return self.min_cell_count

    def never_listed(self, column: str) -> bool:
        c = column.lower()
        return any(fnmatch.fnmatchcase(c, p.lower()) for p in self.never_list)

    def dp_range(self, column: str) -> tuple[float, float] | None:
        """The declared domain of a numeric column under differential privacy, if any."""
        c = column.lower()
        for pattern, bounds in self.dp_ranges.items():
            if fnmatch.fnmatchcase(c, pattern.lower()):
                return bounds
        return None


def release_count(n: int, policy: DisclosurePolicy) -> int | None:
    """A count as it may be released: zero stays zero, below k is withheld (None), others are
    rounded to the nearest multiple of ``rounding`` (never below k after rounding)."""
    if n <= 0:
        return 0
    if n < policy.k:
        return None
    r = policy.rounding
    rounded = int(r * math.floor(n / r + 0.5))
    return max(rounded, policy.k)


def about_count(n: int, policy: DisclosurePolicy) -> str:
    """A count in words as it may be shown: "about N" rounded by the count rule, else "fewer
    than k" (zero and withheld counts alike)."""
    r = release_count(n, policy)
    return f"about {r}" if r else f"fewer than {policy.k}"


@dataclass
class ReleasedValues:
    values: list[tuple[object, int]]  # (value, released count), most common first
    other_count: int  # released count of the rows whose value was folded (0 if withheld)
    notes: list[str]


def fold_frequencies(
    pairs: Sequence[tuple[object, int]],
    non_null: int,
    policy: DisclosurePolicy,
    threshold: int | None = None,
) -> ReleasedValues:
    """Keep values seen at least k times (at most ``max_listed_values``), fold the rest.

    ``pairs`` are (value, exact count) for every distinct non-null value the query returned.
    Under differential privacy they are noisy counts, ``threshold`` is the noisy count a value
    must reach to be listed (see :func:`.dp.listing_threshold`) and ``non_null`` the released
    non-null count: the other share is what that leaves beyond the listed values, so it reads
    only released numbers.
    """
    bar = policy.k if threshold is None else max(policy.k, threshold)
    ordered = sorted(pairs, key=lambda p: (-p[1], str(p[0])))
    kept: list[tuple[object, int]] = []
    folded_values = 0
    folded_rows = 0
    listed_rows = 0
    for value, count in ordered:
        if count >= bar and len(kept) < policy.max_listed_values:
            released = release_count(count, policy)
            assert released is not None
            kept.append((value, released))
            listed_rows += count
        else:
            folded_values += 1
            folded_rows += count
    notes: list[str] = []
    if threshold is not None:
        folded_rows = max(0, non_null - listed_rows)
        notes.append(
            f"values listed only with a noisy count of at least {bar} (the differential privacy "
            "listing threshold); the rest folded into other"
        )
    if folded_values and threshold is None:
        rare = sum(1 for _, c in ordered if c < policy.k)
        if rare:
            notes.append(f"values seen fewer than k={policy.k} times folded into other")
        if folded_values > rare:
            notes.append(f"only the {policy.max_listed_values} most common values listed")
    other = release_count(folded_rows, policy) or 0
    if folded_rows and not other:
        notes.append(f"other bucket below k={policy.k}: withheld")
    return ReleasedValues(values=kept, other_count=other, notes=notes)


def quantile_grid(n: int, policy: DisclosurePolicy) -> list[float]:
    """Probabilities at which quantiles may be released for a column of ``n`` values.

    The ends are top- and bottom-coded: at least k values lie at or beyond the lowest and the
    highest released point, and consecutive points are at least k values apart.
    """
    k = policy.k
    if n < 2 * k:
        return []
    lo = max(policy.low_percentile / 100, k / n)
    hi = min(policy.high_percentile / 100, 1 - k / n)
    if hi < lo:
        return []
    # up to 21 points (every 5%), thinned so each interval holds at least k values
    max_intervals = max(1, int((hi - lo) * n // k))
    intervals = min(20, max_intervals)
    if hi == lo:
        return [round(lo, 6)]
    return [round(lo + (hi - lo) * i / intervals, 6) for i in range(intervals + 1)]


def rank_for(p: float, n: int) -> int:
    """1-based rank of the value at probability p (PostgreSQL's percentile_disc definition)."""
    return min(n, max(1, math.ceil(p * n)))


def quantile_window(rank: int, n: int, k: int) -> tuple[int, int]:
    """The 1-based ranks (first, last) of the k values whose mean is released for ``rank``.

    Centred on the rank; with the ranks :func:`quantile_grid` gives (at least k from each end)
    the window never reaches the k/2 smallest or largest values, so no extreme enters a
    statistic, and no released quantile is a single record's value.
    """
    first = max(1, rank - (k - 1) // 2)
    last = min(n, first + k - 1)
    return max(1, last - k + 1), last


def window_mean(
    values: Sequence[float], integer: bool, common: Callable[[float], bool] | None = None
) -> int | float:
    """The released value of a quantile window: the mean of its k values, rounded to a whole
    number for whole-number data (integers, lengths, days) and to six significant digits
    otherwise.

    A mean can land on one of the window's own values (a rounded integer mean usually does).
    That is released only when at least k rows hold it: all k values of the window are it, or
    ``common`` (the column's frequencies, when known) says so. Otherwise the midpoint between
    it and its distinct neighbour in the window is released instead: the window is a run of
    consecutive ranks, so no value of the data lies strictly between two neighbouring distinct
    values of it. For whole numbers one apart the midpoint is a half (1911.5), which no row
    holds. So no released point is a value fewer than k rows hold.
    """
    numbers = sorted(float(v) for v in values)
    m = math.fsum(numbers) / len(numbers)
    released: float = float(math.floor(m + 0.5)) if integer else float(f"{m:.6g}")
    distinct = sorted(set(numbers))
    if released in distinct and len(distinct) > 1 and not (common and common(released)):
        i = distinct.index(released)
        neighbour = distinct[i + 1] if i + 1 < len(distinct) else distinct[i - 1]
        midpoint = (released + neighbour) / 2
        released = midpoint if integer else float(f"{midpoint:.6g}")
        if released in distinct:  # six digits were not enough to tell them apart
            released = midpoint
    return int(released) if integer and released == int(released) else released


@dataclass
class ReleasedBins:
    bins: list[tuple[int, int, int]]  # (from, to, released count), inclusive edges
    notes: list[str]


@dataclass(frozen=True)
class Grid:
    """Coarse cut points of a bin layout, fixed before looking at the data: multiples of
    ``step`` (years), or powers of two from 1 (children per parent) when ``step`` is 0."""

    step: int = 0

    @property
    def name(self) -> str:
        return f"multiples of {self.step}" if self.step else "powers of two"

    def floor(self, key: int) -> int:
        """The largest grid point at or below ``key``."""
        if self.step:
            return key - key % self.step
        return 1 << (max(1, key).bit_length() - 1)

    def next_above(self, key: int) -> int:
        """The smallest grid point above ``key``."""
        if self.step:
            return self.floor(key) + self.step
        return 1 if key < 1 else self.floor(key) * 2

    def points(self, low: int, high: int) -> list[int]:
        """The grid points in (low, high]."""
        out, c = [], self.next_above(low)
        while c <= high:
            out.append(c)
            c = self.next_above(c)
        return out


YEARS = Grid(YEAR_GRID)
POWERS_OF_TWO = Grid(0)


def merge_bins(
    counts: Sequence[tuple[int, int]],
    policy: DisclosurePolicy,
    grid: Grid = YEARS,
    grid_only: bool = False,
) -> ReleasedBins:
    """Contiguous bins over ordered integer keys (years, children per parent), each holding at
    least k rows.

    A bin edge is a cut point: a point of the coarse ``grid``, or (unless ``grid_only``, as
    for noisy counts of grid buckets) a key where it and the key before it each hold at least
    k rows. So no edge is a value that few rows hold, and the
    bins leave no gaps that would show empty keys. The outer edges are coded: the first bin
    starts at the last cut point at or below the key where the k-th smallest value lies (or
    ``low_percentile``, if further in), and the last ends before the first cut point above the
    k-th largest; the rows beyond are counted in the end bins, so no raw minimum or maximum
    leaves.
    """
    k = policy.k
    items = sorted((int(a), int(c)) for a, c in counts if c > 0)
    total = sum(c for _, c in items)
    if total < k:
        return ReleasedBins(
            [], [f"fewer than k={k} values: distribution withheld"] if total else []
        )
    held = dict(items)
    # keys a bin may also start at: each of it and the key before it holds at least k rows
    supported = {c for c in held if not grid_only and held[c] >= k and held.get(c - 1, 0) >= k}
    first, last = _coded_range(items, total, policy, grid, supported)
    cuts = sorted(set(grid.points(first, last)) | {c for c in supported if first < c <= last})
    bins = _cut(items, cuts, first, last, total, k)
    released = [(a, b, release_count(c, policy) or 0) for a, b, c in bins]
    notes = []
    if items[0][0] < first or items[-1][0] > last:
        notes.append(
            f"range coded to p{policy.low_percentile:g}..p{policy.high_percentile:g} (at least "
            f"k={k} values beyond each end), rows beyond counted in the end bins"
        )
    notes.append(
        f"bins of at least k={k} values, contiguous, cut on the {grid.name} or between "
        f"neighbours each held by at least k={k} rows"
        if not grid_only
        else f"bins of at least k={k} values, contiguous, cut on the {grid.name}"
    )
    return ReleasedBins(released, notes)


def _coded_range(
    items: list[tuple[int, int]],
    total: int,
    policy: DisclosurePolicy,
    grid: Grid,
    supported: set[int],
) -> tuple[int, int]:
    """The first bin's start and the last bin's end: the last cut point at or below the key of
    the k-th smallest value (or ``low_percentile``), the one before the first cut point above
    the key of the k-th largest (or ``high_percentile``)."""
    k = policy.k
    low_key = _key_at_rank(items, max(k, math.ceil(policy.low_percentile / 100 * total)))
    high_key = _key_at_rank(
        items, total - max(k, math.ceil((1 - policy.high_percentile / 100) * total)) + 1
    )
    high_key = max(high_key, low_key)
    first = max([grid.floor(low_key)] + [c for c, _ in items if c <= low_key and c in supported])
    after = min(
        [grid.next_above(high_key)] + [c for c, _ in items if c > high_key and c in supported]
    )
    return first, after - 1


def _cut(
    items: list[tuple[int, int]], cuts: list[int], first: int, last: int, total: int, k: int
) -> list[list[int]]:
    """[from, to, rows] bins from ``first`` to ``last``: a bin ends at a cut once it holds k
    rows and at least k rows are left for the rest; the last bin takes the rest."""
    bins: list[list[int]] = []
    start, acc = first, 0
    pending = iter(items)
    rest = total
    item = next(pending, None)
    for cut in cuts:
        while item is not None and item[0] < cut:
            acc += item[1]
            item = next(pending, None)
        if acc >= k and rest - acc >= k:
            bins.append([start, cut - 1, acc])
            rest -= acc
            start, acc = cut, 0
    bins.append([start, last, rest])
    return bins


def _key_at_rank(items: Sequence[tuple[int, int]], rank: int) -> int:
    acc = 0
    for key, c in items:
        acc += c
        if acc >= rank:
            return key
    return items[-1][0]


def release_shares(counts: Sequence[int], policy: DisclosurePolicy) -> tuple[list[int], list[str]]:
    """Counts over a fixed set of categories (months, hours): those below k are withheld (0)."""
    out = []
    withheld = 0
    for c in counts:
        r = release_count(c, policy)
        if r is None:
            withheld += 1
            out.append(0)
        else:
            out.append(r)
    notes = (
        [f"{'a category' if withheld == 1 else 'categories'} below k={policy.k} withheld"]
        if withheld
        else []
    )
    return out, notes
