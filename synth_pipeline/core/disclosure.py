"""Disclosure control: the rules every number passes before it leaves the trusted environment.

Each function takes raw aggregates (which never leave ``summarise``) and returns what may be
released, together with a plain-language note of what the rule changed, so the reviewer sees
which rule touched which column.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Sequence
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
        "over the source's patient-level tables, then over each table's released counts and "
        "histograms, which get noise before the k and rounding rules.",
    )
    dp_mechanism: Literal["geometric", "laplace"] = Field(
        "geometric",
        description="Noise under differential privacy: two-sided geometric (integer, exact) or "
        "Laplace (rounded to an integer).",
    )
    dp_quantiles: Literal["not_noised", "withheld"] = Field(
        "not_noised",
        description="Quantiles under differential privacy: released under the k rules only "
        "(outside the epsilon guarantee), or withheld.",
    )

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


@dataclass
class ReleasedValues:
    values: list[tuple[object, int]]  # (value, released count), most common first
    other_count: int  # released count of the rows whose value was folded (0 if withheld)
    notes: list[str]


def fold_frequencies(
    pairs: Sequence[tuple[object, int]],
    non_null: int,
    policy: DisclosurePolicy,
) -> ReleasedValues:
    """Keep values seen at least k times (at most ``max_listed_values``), fold the rest.

    ``pairs`` are (value, exact count) for every distinct non-null value the query returned.
    """
    ordered = sorted(pairs, key=lambda p: (-p[1], str(p[0])))
    kept: list[tuple[object, int]] = []
    folded_values = 0
    folded_rows = 0
    for value, count in ordered:
        if count >= policy.k and len(kept) < policy.max_listed_values:
            released = release_count(count, policy)
            assert released is not None
            kept.append((value, released))
        else:
            folded_values += 1
            folded_rows += count
    notes: list[str] = []
    if folded_values:
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


def window_mean(values: Sequence[float], integer: bool) -> int | float:
    """The released value of a quantile window: the mean of its k values, an integer for
    integer columns and six significant digits otherwise.

    A mean can land on one of the window's own values by chance (dense data on a grid of
    decimals). Then the midpoint between that value and its distinct neighbour is released
    instead: the window is a run of consecutive ranks, so no value of the data lies strictly
    between two neighbouring distinct values of it.
    """
    numbers = sorted(float(v) for v in values)
    m = math.fsum(numbers) / len(numbers)
    if integer:
        return int(math.floor(m + 0.5))
    released = float(f"{m:.6g}")
    distinct = sorted(set(numbers))
    if released in distinct and len(distinct) > 1:
        i = distinct.index(released)
        neighbour = distinct[i + 1] if i + 1 < len(distinct) else distinct[i - 1]
        midpoint = (released + neighbour) / 2
        released = float(f"{midpoint:.6g}")
        if released in distinct:  # six digits were not enough to tell them apart
            released = midpoint
    return released


@dataclass
class ReleasedBins:
    bins: list[tuple[int, int, int]]  # (from, to, released count), inclusive edges
    notes: list[str]


def merge_bins(counts: Sequence[tuple[int, int]], policy: DisclosurePolicy) -> ReleasedBins:
    """Variable-width bins over ordered integer keys (years, hours), each holding at least k rows.

    The outermost edges are coded: the first bin starts at the key where the k-th smallest value
    lies and the last ends where the k-th largest lies, so no raw minimum or maximum leaves.
    """
    k = policy.k
    items = sorted((int(a), int(c)) for a, c in counts if c > 0)
    total = sum(c for _, c in items)
    if total < k:
        return ReleasedBins(
            [], [f"fewer than k={k} values: distribution withheld"] if total else []
        )
    # bottom- and top-coded edges
    low_edge = _key_at_rank(items, max(k, math.ceil(policy.low_percentile / 100 * total)))
    high_edge = _key_at_rank(
        items, total - max(k, math.ceil((1 - policy.high_percentile / 100) * total)) + 1
    )
    if high_edge < low_edge:
        high_edge = low_edge
    clamped: dict[int, int] = {}
    for key, c in items:
        key = min(max(key, low_edge), high_edge)
        clamped[key] = clamped.get(key, 0) + c
    bins: list[list[int]] = []
    start = None
    acc = 0
    for key in sorted(clamped):
        if start is None:
            start = key
        acc += clamped[key]
        if acc >= k:
            bins.append([start, key, acc])
            start, acc = None, 0
    if acc:  # the remainder joins the last bin
        if bins:
            bins[-1][1] = max(bins[-1][1], high_edge)
            bins[-1][2] += acc
        else:
            bins.append([low_edge, high_edge, acc])
    if bins:
        bins[-1][1] = high_edge
    released = [(a, b, release_count(c, policy) or 0) for a, b, c in bins]
    notes = []
    raw_min, raw_max = items[0][0], items[-1][0]
    if raw_min < low_edge or raw_max > high_edge:
        notes.append(
            f"range coded to p{policy.low_percentile:g}..p{policy.high_percentile:g} (at least k={k} values beyond each end)"
        )
    if any(b - a > 0 for a, b, _ in released):
        notes.append(f"neighbouring bins merged until each holds at least k={k} values")
    return ReleasedBins(released, notes)


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


# Fields of the released statistics that hold counts of source rows (or parents, or values).
COUNT_FIELDS = frozenset(
    {"row_count", "count", "non_null", "distinct", "zero_as_null", "other_count", "dangling"}
)
COUNT_LISTS = frozenset({"months", "hours"})


def audit_released_counts(released: object, policy: DisclosurePolicy, where: str = "") -> list[str]:
    """Every count in released statistics (as JSON-able data), checked again after the fact.

    A released count is 0, or at least k and a multiple of the rounding (or k itself, which
    rounding never goes below). Returns one line per count that breaks the rule, naming where
    it is; an empty list means the statistics may leave.
    """
    problems: list[str] = []

    def fine(n: int) -> bool:
        return n == 0 or (n >= policy.k and (n % policy.rounding == 0 or n == policy.k))

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = f"{path}.{key}" if path else str(key)
                if key in COUNT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
                    if not fine(value):
                        problems.append(f"{here} = {value}")
                elif key in COUNT_LISTS and isinstance(value, list):
                    bad = [v for v in value if isinstance(v, int) and not fine(v)]
                    if bad:
                        problems.append(f"{here} holds {len(bad)} count(s) below k or unrounded")
                else:
                    walk(value, here)
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}[{i}]")

    walk(released, where)
    return problems
