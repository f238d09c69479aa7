"""Optional differential privacy for every released statistic of a source table.

Off unless ``project.yaml`` sets ``disclosure.epsilon``. The budget (epsilon and delta) is split
equally over the source's patient-level tables, and a table's share equally over the statistics
its schema says it may release (:func:`statistics_plan`: the row count; per column its
null/non-null split, listed values, quantiles, year bins, months, hours, children per parent,
end-before-start count). The plan depends on the schema alone, so the split leaks nothing.

How each kind of statistic is made private (docs/disclosure.md's differential privacy section says the
same to a reviewer):

- counts and histograms over a domain fixed before looking at the data (null split, months,
  hours, years in buckets of a declared range, children per parent in power-of-two buckets,
  values of an integer column with a declared range, booleans): two-sided geometric noise on
  every cell, present in the data or not, scaled to the statistic's sensitivity;
- values whose domain only the data know (concept ids, strings, other numbers): a
  stability-based histogram: noise on the count of each value present, and a value is listed
  only when its noisy count reaches a threshold set by epsilon and delta (computed with
  OpenDP's privacy map of its Laplace-threshold mechanism), so a value one row holds is
  listed with probability below delta;
- quantiles (numbers, string lengths, days from a start date): the exponential mechanism
  (report-noisy-max with Gumbel noise, scale from OpenDP's privacy map of its quantile
  mechanism) over candidates fixed before looking at the data: half-integers for whole
  numbers (so no released quantile is a value a row holds), a logarithmic grid or a declared
  range otherwise.

The k and rounding rules still apply to what the noise gives; bin edges and listings read only
noisy counts. All of it is post-processing of the noisy statistics.

The unit of privacy is one row of the table: neighbouring extracts differ in one row. A person
with many rows in a table is protected at epsilon times their row count. What is released
without noise is listed in each table's ``dp.outside_guarantee``.

The noise must not change from run to run on the same data, or every run would invalidate the
approvals, and repeated runs would let noise be averaged away. OpenDP draws from the operating
system's randomness and cannot be seeded, so its samplers are not used: the noise is drawn
here, from a random stream keyed by HMAC-SHA256 of a secret key, the table, the statistic and
its exact counts, from the same distributions whose privacy OpenDP accounts for. The same data
give the same noisy statistics; changed data give fresh noise (a new release, spending the
budget again). The key is a random file created on first use under the work folder
(``SYNTH_WORK_DIR``), inside the trusted environment, never written to a configuration or a
bundle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .disclosure import (
    POWERS_OF_TWO,
    YEARS,
    DisclosurePolicy,
    ReleasedBins,
    ReleasedValues,
    fold_frequencies,
    merge_bins,
)
from .dp_key import load_or_create_key
from .errors import ConfigError
from .omop import start_of
from .schema import TableSchema, column_role, table_kind
from .statistics import PrivacyBudget

OUTSIDE_GUARANTEE = [
    "which columns are listed or profiled (the identifier and high-cardinality tests on exact "
    "distinct counts) and the shapes of free text",
    "the presence of dirty-data findings (their counts are withheld under differential privacy)",
    "the table's columns, types and keys",
]

# Quantiles released under differential privacy: fixed, so the choice leaks nothing.
DP_PROBABILITIES = (0.1, 0.25, 0.5, 0.75, 0.9)
PER_DECADE = 20  # candidates of the logarithmic grid per power of ten (steps of about 12%)
MAX_DECLARED_VALUES = 100_000  # a declared range counted value by value is at most this wide
DAY_BOUNDS = (-366.0, 36525.0)  # days from a start date: a year before to a century after


def patient_tables(table_names: Iterable[str]) -> list[str]:
    """The tables that share the budget: every table that is summarised (not vocabulary or
    metadata about the extract)."""
    return sorted(t for t in table_names if table_kind(t) not in ("vocabulary", "metadata"))


def statistics_plan(table: TableSchema, policy: DisclosurePolicy) -> dict[str, list[str]]:
    """Which statistics of a table spend the budget, from its schema alone.

    The plan must not depend on the data, or the split of the budget would leak it: a column
    whose values turn out to be never listed still has its share set aside.
    """
    names = [c.name for c in table.columns]
    quantiles = policy.dp_quantiles == "dp"
    plan: dict[str, list[str]] = {"rows": ["count"]}
    for col in table.columns:
        role = column_role(table, col.name)
        if role == "primary_key":
            continue
        stats = ["nulls"] if col.nullable else []
        lt = col.logical_type
        if role == "foreign_key":
            stats.append("fanout")
        elif lt in ("date", "datetime"):
            stats += ["years", "months"] + (["hours"] if lt == "datetime" else [])
            if start_of(names, col.name):
                stats += ["negative"] + (["offset"] if quantiles else [])
        else:
            if not (lt == "string" and policy.never_listed(col.name)):
                stats.append("values")
            if quantiles and role != "code" and lt in ("integer", "float"):
                stats.append("quantiles")
            if quantiles and role != "code" and lt == "string":
                stats.append("length")
        if stats:
            plan[col.name] = stats
    return plan


@lru_cache(maxsize=64)
def listing_threshold(epsilon: float, delta: float) -> int:
    """The smallest noisy count at which a value of a data-derived domain may be listed, for
    noise of scale 1/epsilon: the threshold of OpenDP's Laplace-threshold mechanism whose
    privacy map gives (epsilon, delta) when one row changes one count by one."""
    import opendp.prelude as odp

    odp.enable_features("contrib")
    domain = odp.map_domain(odp.atom_domain(T=str), odp.atom_domain(T=int))
    metric = odp.l01inf_distance(odp.absolute_distance(T=int))

    def delta_at(threshold: int) -> float:
        m = odp.m.make_laplace_threshold(domain, metric, scale=1 / epsilon, threshold=threshold)
        return m.map((1, 1, 1))[1]

    low, high = 1, 2
    while delta_at(high) > delta:
        low, high = high, high * 2
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if delta_at(mid) > delta else (low, mid)
    return high


@lru_cache(maxsize=256)
def quantile_scale(alpha: float, epsilon: float) -> float:
    """The Gumbel noise scale of the exponential mechanism for the ``alpha`` quantile at
    ``epsilon``, from OpenDP's privacy map of its quantile mechanism (scores normalised as in
    :func:`quantile_scores`)."""
    import opendp.prelude as odp

    odp.enable_features("contrib")
    space = odp.vector_domain(odp.atom_domain(T=float, nan=False)), odp.symmetric_distance()
    return odp.binary_search_param(
        lambda scale: odp.m.make_private_quantile(
            *space, odp.max_divergence(), candidates=[0.0, 1.0], alpha=alpha, scale=scale
        ),
        d_in=1,
        d_out=epsilon,
    )


def budget_for(
    table: TableSchema, policy: DisclosurePolicy, tables_sharing: int
) -> PrivacyBudget | None:
    """The table's budget account, or None when differential privacy is off."""
    if policy.epsilon is None:
        return None
    plan = statistics_plan(table, policy)
    statistics = sum(len(v) for v in plan.values())
    share = policy.epsilon / max(1, tables_sharing)
    delta_share = policy.delta / max(1, tables_sharing)
    each, delta_each = share / statistics, delta_share / statistics
    quantiles = (
        "withheld: no quantiles are released under differential privacy"
        if policy.dp_quantiles == "withheld"
        else f"exponential mechanism at p{', p'.join(f'{p * 100:g}' for p in DP_PROBABILITIES)}, "
        "each spending an equal part of the statistic's epsilon, among candidates fixed before "
        "looking at the data (half-integers for whole numbers, a declared range or a "
        f"logarithmic grid of {PER_DECADE} points a decade otherwise)"
    )
    return PrivacyBudget(
        mechanism=policy.dp_mechanism,
        project_epsilon=policy.epsilon,
        project_delta=policy.delta,
        tables_sharing=tables_sharing,
        table_epsilon=round(share, 8),
        table_delta=float(f"{delta_share:.4g}"),
        statistics=statistics,
        statistic_epsilon=round(each, 10),
        statistic_delta=float(f"{delta_each:.4g}"),
        listing_threshold=max(policy.k, listing_threshold(round(each, 10), delta_each)),
        plan=plan,
        spent={c: round(len(v) * each, 8) for c, v in plan.items()},
        quantiles=quantiles,
        outside_guarantee=list(OUTSIDE_GUARANTEE),
    )


# --- domains fixed before looking at the data ---------------------------------------------


def value_domain(column: str, logical_type: str, policy: DisclosurePolicy) -> list | None:
    """The values a column's listing counts whatever the data hold (booleans, integers with a
    declared range), or None when only the data know them (a stability histogram then)."""
    if logical_type == "boolean":
        return [False, True]
    declared = policy.dp_range(column)
    if logical_type != "integer" or declared is None:
        return None
    low, high = math.ceil(declared[0]), math.floor(declared[1])
    if high - low + 1 > MAX_DECLARED_VALUES:
        raise ConfigError(
            f"the declared range {low}..{high} of {column} is too wide to count value by value "
            f"(more than {MAX_DECLARED_VALUES:,}); narrow it or remove it",
            setting="disclosure.dp_ranges",
            column=column,
        )
    return list(range(low, high + 1))


def in_domain(values: Sequence[tuple[object, int]], domain: list) -> list[int]:
    """Counts of the ``domain``'s values, in its order (rows outside it are left out)."""
    boolean = domain == [False, True]
    counts = dict.fromkeys(domain, 0)
    for value, n in values:
        if boolean:
            key: object = (
                value if isinstance(value, bool) else str(value).lower() in ("1", "true", "t")
            )
        else:
            try:
                number = float(value)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                continue
            if number != int(number):
                continue
            key = int(number)
        if key in counts:
            counts[key] += int(n)
    return list(counts.values())


def year_buckets(years: Sequence[tuple[int, int]], policy: DisclosurePolicy) -> list[list[int]]:
    """(first year of bucket, rows) for every bucket of the declared year range, in order;
    years outside the range are counted in the end buckets."""
    low, high = policy.dp_years
    starts = list(range(YEARS.floor(low), high + 1, YEARS.step))
    counts = dict.fromkeys(starts, 0)
    for year, n in years:
        counts[YEARS.floor(min(max(int(year), low), high))] += int(n)
    return [[y, c] for y, c in counts.items()]


def fanout_buckets(fanout: Sequence[tuple[int, int]], policy: DisclosurePolicy) -> list[list[int]]:
    """(least children of bucket, parents) for the buckets 1, 2-3, 4-7, ... up to
    ``dp_max_children``, in order; more children are counted in the last bucket."""
    top = POWERS_OF_TWO.floor(policy.dp_max_children)
    starts = [1 << i for i in range(top.bit_length())]
    counts = dict.fromkeys(starts, 0)
    for children, n in fanout:
        counts[POWERS_OF_TWO.floor(min(max(int(children), 1), top))] += int(n)
    return [[c, n] for c, n in counts.items()]


def quantile_candidates(
    whole: bool,
    declared: tuple[float, float] | None,
    bounds: tuple[float, float] = (-1e10, 1e10),
) -> list[float]:
    """Where a quantile may land, fixed before looking at the data.

    Whole numbers (integers, lengths, days) take half-integers, which no row holds: every
    half-integer of a declared range (thinned to about 1000 when wider), or else those of
    -20..20 and of the logarithmic grid beyond (about 12% apart). Other numbers take 1000
    points inside a declared range, or a logarithmic grid of ``PER_DECADE`` points a decade
    from 0.001 to 10^10 and their negatives. ``bounds`` narrows the grid where the schema knows more
    (string lengths are not negative, days between dates stay within a century).
    """
    if declared is not None:
        low, high = declared
        if whole:
            low, high = math.floor(low), math.ceil(high)
            step = max(1, math.ceil((high - low + 1) / 1000))
            return [x + 0.5 for x in range(low - 1, high + 1, step)]
        return [float(f"{low + (high - low) * (i + 0.5) / 1000:.6g}") for i in range(1000)]
    magnitudes = [10 ** ((j + 0.5) / PER_DECADE) for j in range(-3 * PER_DECADE, 10 * PER_DECADE)]
    grid = magnitudes + [-m for m in magnitudes]
    if whole:
        grid = [math.floor(g) + 0.5 for g in grid] + [i + 0.5 for i in range(-21, 21)]
    else:
        grid = [float(f"{g:.6g}") for g in grid]
    low, high = bounds
    return sorted({g for g in grid if low <= g <= high})


def bucket_sql(expr: str, candidates: Sequence[float], pg: bool) -> str:
    """SQL giving, for each value of ``expr``, how many candidates are at or below it (its
    bucket; NULL stays NULL): PostgreSQL's width_bucket, elsewhere a binary search of CASEs."""
    if pg:
        array = ", ".join(repr(float(c)) for c in candidates)
        return f"width_bucket(CAST({expr} AS DOUBLE PRECISION), ARRAY[{array}]::float8[])"

    def node(low: int, high: int) -> str:
        if low == high:
            return str(low)
        mid = (low + high) // 2
        return (
            f"CASE WHEN {expr} < {float(candidates[mid])!r} THEN {node(low, mid)} "
            f"ELSE {node(mid + 1, high)} END"
        )

    return f"CASE WHEN {expr} IS NULL THEN NULL ELSE {node(0, len(candidates))} END"


def quantile_scores(
    buckets: Sequence[tuple[int, int]], candidates: Sequence[float], alpha: float
) -> np.ndarray:
    """How far each candidate is from the ``alpha`` quantile: |(1 - alpha) L - alpha G|, with L
    the values below the candidate and G those at or above it (OpenDP's score divided by its
    denominator). One row more or less moves a score by at most max(alpha, 1 - alpha)."""
    per_bucket = np.zeros(len(candidates) + 1, dtype=np.float64)
    for b, n in buckets:
        per_bucket[int(b)] += n
    below = np.cumsum(per_bucket)[:-1]  # values in buckets 0..j lie below candidate j
    n = per_bucket.sum()
    return np.abs((1 - alpha) * below - alpha * (n - below))


@dataclass
class Noise:
    """Noise for the statistics of one table, stable for the same data."""

    key: bytes
    table: str
    budget: PrivacyBudget

    @property
    def mechanism(self) -> str:
        return self.budget.mechanism

    def counts(self, label: str, counts: Sequence[int], sensitivity: int = 1) -> list[int]:
        """Noisy versions of ``counts`` (one histogram), clipped at 0.

        ``sensitivity`` is how far one row can move the histogram in L1 (1 for a count or a
        histogram over the rows; 2 for children per parent, where a row moves its parent
        from one bin to the next).
        """
        if not counts:
            return []
        eps = self.budget.statistic_epsilon
        message = json.dumps([self.table, label, [int(c) for c in counts]]).encode()
        digest = hmac.new(self.key, message, hashlib.sha256).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "big"))
        n = len(counts)
        if self.mechanism == "laplace":
            noise = np.rint(rng.laplace(0.0, sensitivity / eps, n)).astype(np.int64)
        else:
            # two-sided geometric (discrete Laplace): P(z) proportional to exp(-eps |z| / sensitivity)
            p = -math.expm1(-eps / sensitivity)
            noise = rng.geometric(p, n).astype(np.int64) - rng.geometric(p, n).astype(np.int64)
        return [max(0, int(c) + int(z)) for c, z in zip(counts, noise, strict=True)]

    def pairs(
        self, label: str, pairs: Sequence[tuple[object, int]], sensitivity: int = 1
    ) -> list[tuple[object, int]]:
        """Noisy counts of (value, count) pairs, in a stable order."""
        ordered = sorted(pairs, key=lambda p: (type(p[0]).__name__, str(p[0])))
        labelled = f"{label}:" + json.dumps([str(v) for v, _ in ordered])
        noisy = self.counts(labelled, [c for _, c in ordered], sensitivity)
        return [(v, c) for (v, _), c in zip(ordered, noisy, strict=True)]

    def bucket_counts(self, label: str, counts: Sequence[int], sensitivity: int = 1) -> list[int]:
        """Noisy counts of a histogram over a fixed domain of buckets, those below
        :attr:`threshold` read as empty: noise in the many empty buckets of a declared range
        would otherwise add up to rows that do not exist, and no bucket one row holds shows."""
        return [c if c >= self.threshold else 0 for c in self.counts(label, counts, sensitivity)]

    @property
    def threshold(self) -> int:
        """The noisy count a value must reach to be listed (see :func:`listing_threshold`)."""
        assert self.budget.listing_threshold is not None
        return self.budget.listing_threshold

    def listing(
        self, label: str, pairs: Sequence[tuple[object, int]], domain: list | None
    ) -> list[tuple[object, int]]:
        """Noisy counts for a listing: over every value of a fixed ``domain`` (see
        :func:`value_domain`), or over the values present (a stability histogram, to be
        thresholded at :attr:`threshold`)."""
        if domain is None:
            return self.pairs(label, pairs)
        return list(zip(domain, self.counts(label, in_domain(pairs, domain)), strict=True))

    def release_values(
        self,
        label: str,
        pairs: Sequence[tuple[object, int]],
        domain: list | None,
        non_null: int,
        policy: DisclosurePolicy,
    ) -> ReleasedValues:
        """A listing: noisy counts (:meth:`listing`), values listed only at :attr:`threshold`,
        the other share from the released ``non_null`` count."""
        return fold_frequencies(
            self.listing(label, pairs, domain), non_null, policy, self.threshold
        )

    def release_years(
        self, label: str, years: Sequence[tuple[int, int]], policy: DisclosurePolicy
    ) -> ReleasedBins:
        """Year bins: noise on every bucket of the declared range, edges on the grid only."""
        buckets = year_buckets(years, policy)
        noisy = self.bucket_counts(label, [c for _, c in buckets])
        return merge_bins(
            [(y, c) for (y, _), c in zip(buckets, noisy, strict=True)], policy, grid_only=True
        )

    def release_fanout(
        self, label: str, fanout: Sequence[tuple[int, int]], policy: DisclosurePolicy
    ) -> ReleasedBins:
        """Children per parent: noise on every bucket 1, 2-3, 4-7, ...; one more child moves
        its parent at most one bucket along, so two buckets change by one each (sensitivity 2)."""
        buckets = fanout_buckets(fanout, policy)
        noisy = self.bucket_counts(label, [c for _, c in buckets], sensitivity=2)
        return merge_bins(
            [(b, c) for (b, _), c in zip(buckets, noisy, strict=True)],
            policy,
            POWERS_OF_TWO,
            grid_only=True,
        )

    def quantiles(
        self,
        label: str,
        buckets: Sequence[tuple[int, int]],
        candidates: Sequence[float],
        whole: bool,
    ) -> list[tuple[float, int | float]]:
        """(p, value) at each of ``DP_PROBABILITIES``: the exponential mechanism over the
        candidates (report-noisy-max with Gumbel noise), each probability spending an equal
        part of the statistic's epsilon; the points are sorted so they rise with p."""
        buckets = sorted((int(b), int(n)) for b, n in buckets if n)
        message = json.dumps([self.table, label, "quantiles", buckets]).encode()
        digest = hmac.new(self.key, message, hashlib.sha256).digest()
        rng = np.random.default_rng(int.from_bytes(digest, "big"))
        eps = self.budget.statistic_epsilon / len(DP_PROBABILITIES)
        chosen = []
        for alpha in DP_PROBABILITIES:
            scores = quantile_scores(buckets, candidates, alpha)
            noisy = -scores + rng.gumbel(0.0, quantile_scale(alpha, eps), len(candidates))
            chosen.append(float(candidates[int(np.argmax(noisy))]))
        values = sorted(chosen)
        return [
            (p, v if whole or v != int(v) else int(v))
            for p, v in zip(DP_PROBABILITIES, values, strict=True)
        ]


def noise_for(
    table: TableSchema, policy: DisclosurePolicy, source_tables: Iterable[str], work_dir: Path
) -> Noise | None:
    """The noise of one table's statistics, or None when differential privacy is off."""
    budget = budget_for(table, policy, len(patient_tables(source_tables)))
    if budget is None:
        return None
    return Noise(load_or_create_key(work_dir), table.name, budget)
