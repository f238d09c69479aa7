"""Every value a table's config took from the source, and the rule that let it out, worded
with the disclosure policy's numbers (what ``synth-pipeline review`` lists, see :mod:`review`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import TableConfig
from .disclosure import YEAR_GRID, DisclosurePolicy
from .statistics import ColumnStats, ConditionalStats, PrivacyBudget


@dataclass
class Released:
    """One value the config took from the source."""

    where: str  # e.g. columns.gender_concept_id.stats.values
    value: str
    rule: str


class RuleWording:
    """The plain-language rule behind each kind of released statistic, with the policy's numbers."""

    def __init__(self, policy: DisclosurePolicy, dp: PrivacyBudget | None):
        k, r = policy.k, policy.rounding
        self.k = k
        self.policy, self.dp = policy, dp
        self.count = f"count rule: released only when at least k={k}, rounded to a multiple of {r}"
        self.noise = (
            f"; plus {dp.mechanism} noise at epsilon {dp.statistic_epsilon:g} before the k rule"
            if dp
            else ""
        )
        band = f"p{policy.low_percentile:g}..p{policy.high_percentile:g}"
        self.quantiles = (
            f"quantiles inside {band}, each the mean of k={k} neighbouring values, at least k "
            "values beyond each end and between points (no raw minimum, maximum or single value)"
        )
        self.values = (
            f"values seen at least k={k} times (at most {policy.max_listed_values} listed), "
            f"counts rounded to {r}; rarer values folded into other"
        )
        cuts = "cut between neighbours each held by at least k={k} rows or on the grid of "
        self.bins = (
            f"contiguous bins of at least k={k}, {cuts.format(k=k)}{YEAR_GRID}-year multiples; "
            f"outer edges at the cut point around the k-th value from each end ({band}); counts "
            f"rounded to {r}"
        )
        self.fanout_bins = (
            f"contiguous bins of at least k={k}, {cuts.format(k=k)}powers of two; outer edges "
            f"at the cut point around the k-th value from each end ({band}); counts rounded to {r}"
        )
        self.dp_bins = (
            f"contiguous bins merged from noisy bucket counts until each holds at least k={k}, "
            f"outer edges at the grid point around the k-th noisy value from each end ({band}); "
            f"counts rounded to {r}"
        )
        self.dp_values = (
            f"values whose noisy count reached the listing threshold (at most "
            f"{policy.max_listed_values} listed), counts rounded to {r}; the rest folded into other"
        )
        self.shares = f"counts per category; a category below k={k} is withheld (0), rounded to {r}"
        self.pattern = (
            f"free text or identifier: only the name of the commonest shape among "
            f"{policy.pattern_sample_size} sampled values, never a value"
        )
        self.dp_quantiles = dp.quantiles if dp else ""

    def private(self, statistic: str, column: str | None = None, col_type: str = "") -> str:
        """Under differential privacy: how ``statistic`` of ``column`` was made private and
        what it spent (empty when differential privacy is off)."""
        dp, policy = self.dp, self.policy
        if dp is None:
            return ""
        eps = f"epsilon {dp.statistic_epsilon:g}"
        owner = column or "rows"
        if statistic == "count" or statistic not in dp.plan.get(owner, []):
            # the non-null count of a required column is the row count
            statistic, owner = "count", "rows"
        how = {
            "count": f"{dp.mechanism} noise on the count",
            "nulls": f"{dp.mechanism} noise on the null and non-null counts",
            "months": f"{dp.mechanism} noise on each of the 12 months, present or not",
            "hours": f"{dp.mechanism} noise on midnight and each of the 24 hours, present or not",
            "negative": f"{dp.mechanism} noise on the count",
            "years": f"{dp.mechanism} noise on every {YEAR_GRID}-year bucket of "
            f"{policy.dp_years[0]}..{policy.dp_years[1]}, present or not; a bucket below "
            f"{dp.listing_threshold} reads as empty; edges on the {YEAR_GRID}-year grid",
            "fanout": f"{dp.mechanism} noise on every bucket 1, 2-3, 4-7, ... up to "
            f"{policy.dp_max_children} children (sensitivity 2); a bucket below "
            f"{dp.listing_threshold} reads as empty; edges on powers of two",
            "quantiles": dp.quantiles,
            "length": dp.quantiles,
            "offset": dp.quantiles,
        }.get(statistic)
        if statistic == "values":
            declared = policy.dp_range(column or "") if col_type == "integer" else None
            domain = (
                "true and false, present or not"
                if col_type == "boolean"
                else f"every integer of the declared range {declared[0]:g}..{declared[1]:g}, "
                "present or not"
                if declared
                else "each value present (stability histogram)"
            )
            how = (
                f"{dp.mechanism} noise on {domain}; listed only at a noisy count of at least "
                f"{dp.listing_threshold} (so a value one row holds is listed with probability "
                f"below delta {dp.statistic_delta:g})"
            )
        return f"; differential privacy: {how}, {eps} (budget: {owner}.{statistic})"


def _short(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(_short(v) for v in value)
    return str(value)


@dataclass
class _Items:
    """One column's released items as they are collected, with the wording of their rules."""

    prefix: str
    rules: RuleWording
    column: str | None
    col_type: str
    out: list[Released] = field(default_factory=list)

    @property
    def dp_on(self) -> bool:
        return bool(self.rules.noise)

    def add(self, where: str, value: object, rule: str) -> None:
        self.out.append(Released(f"{self.prefix}.{where}", _short(value), rule))

    def private(self, statistic: str) -> str:
        return self.rules.private(statistic, self.column, self.col_type)


def _stats_items(
    prefix: str, cs: ColumnStats, rules: RuleWording, column: str | None = None, col_type: str = ""
) -> list[Released]:
    """The released items of one column's statistics, each with its rule, in review's order."""
    items = _Items(prefix, rules, column, col_type)
    _counts(items, cs)
    _values(items, cs)
    _calendar(items, cs)
    _strings(items, cs)
    _relative(items, cs)
    if cs.conditional is not None:
        _conditional(items, cs.conditional)
    return items.out


def _counts(items: _Items, cs: ColumnStats) -> None:
    """The column's counts: non-null, the null share, distinct, zeros read as NULL, dangling."""
    rules, add = items.rules, items.add
    noisy = items.private("nulls")
    if cs.non_null is not None:
        add("non_null", cs.non_null, rules.count + noisy)
    if cs.null_fraction:
        add(
            "null_fraction",
            cs.null_fraction,
            "from released counts: a null count below k is released as no nulls, a non-null "
            "count below k as all NULL" + noisy,
        )
    if cs.distinct is not None:
        add("distinct", cs.distinct, rules.count)
    if cs.zero_as_null is not None:
        add("zero_as_null", cs.zero_as_null, rules.count)
    if cs.dangling is not None:
        add("dangling", cs.dangling, rules.count)


def _values(items: _Items, cs: ColumnStats) -> None:
    """The listed values, the rows of the values folded into other, the quantiles."""
    rules, add, private, dp_on = items.rules, items.add, items.private, items.dp_on
    values_rule = rules.dp_values if dp_on else rules.values
    if cs.values:
        add("values", [f"{v.value}: {v.count}" for v in cs.values], values_rule + private("values"))
    if cs.other_count:
        add(
            "other_count",
            cs.other_count,
            "rows of the folded values: "
            + ("the released non-null count less the listed counts" if dp_on else rules.count)
            + private("values"),
        )
    if cs.quantiles:
        add(
            "quantiles",
            [f"p{p.p:g}={p.value}" for p in cs.quantiles],
            ("quantiles" if dp_on else rules.quantiles) + private("quantiles"),
        )


def _calendar(items: _Items, cs: ColumnStats) -> None:
    """A date's year bins and months, a datetime's midnight share and hours."""
    rules, add, private = items.rules, items.add, items.private
    if cs.years:
        add(
            "years",
            [f"{b.start}..{b.end}: {b.count}" for b in cs.years],
            (rules.dp_bins if items.dp_on else rules.bins) + private("years"),
        )
    if cs.months:
        add("months", cs.months, "month of year: " + rules.shares + private("months"))
    if cs.time_of_day is not None:
        tod = cs.time_of_day
        add(
            "time_of_day.midnight_share",
            tod.midnight_share,
            "from the released midnight and hour counts" + private("hours"),
        )
        if tod.hours:
            add("time_of_day.hours", tod.hours, "hour of day: " + rules.shares + private("hours"))


def _strings(items: _Items, cs: ColumnStats) -> None:
    """A string's length quantiles and the name of its commonest shape."""
    if cs.length:
        items.add(
            "length",
            [f"p{p.p:g}={p.value}" for p in cs.length],
            "string lengths"
            + (items.private("length") if items.dp_on else ": " + items.rules.quantiles),
        )
    if cs.pattern:
        items.add("pattern", cs.pattern, items.rules.pattern)


def _relative(items: _Items, cs: ColumnStats) -> None:
    """What is released relative to another value: days after another column, days from the
    person's birth, children per parent."""
    rules, add, private, dp_on = items.rules, items.add, items.private, items.dp_on
    q_rule = rules.quantiles
    if cs.offset is not None:
        add(
            "offset.quantiles",
            [f"p{p.p:g}={p.value}" for p in cs.offset.quantiles],
            f"days after {cs.offset.from_column}" + (private("offset") if dp_on else ": " + q_rule),
        )
        if cs.offset.negative_share:
            add(
                "offset.negative_share",
                cs.offset.negative_share,
                "rows ending before they start, from released counts" + private("negative"),
            )
    if cs.days_from_birth:  # never under differential privacy: withheld there
        add(
            "days_from_birth",
            [f"p{p.p:g}={p.value}" for p in cs.days_from_birth],
            "days from the person's birth: " + q_rule,
        )
    if cs.fanout:
        add(
            "fanout",
            [f"{b.start}..{b.end}: {b.count}" for b in cs.fanout],
            "children per parent, parents counted: "
            + (rules.dp_bins if dp_on else rules.fanout_bins)
            + private("fanout"),
        )


def _conditional(items: _Items, c: ConditionalStats) -> None:
    """Each released group of the column's statistics per value of another column."""
    rules, add = items.rules, items.add
    for g in c.groups + ([c.other] if c.other else []):
        label = f"conditional[{c.by}={g.value if g.value is not None else 'other (pooled)'}]"
        add(f"{label}.count", g.count, rules.count)
        if g.quantiles:
            add(f"{label}.quantiles", [f"p{p.p:g}={p.value}" for p in g.quantiles], rules.quantiles)
        if g.values:
            add(f"{label}.values", [f"{v.value}: {v.count}" for v in g.values], rules.values)
    items.out.append(
        Released(
            f"{items.prefix}.conditional",
            f"{len(c.groups)} groups by {c.by}",
            f"a group is released only with at least {2 * rules.k} values (k={rules.k} for "
            "codes); smaller groups pooled, a pool below that withheld",
        )
    )


def released_values(cfg: TableConfig, policy: DisclosurePolicy) -> list[Released]:
    """Every value in ``cfg`` that was derived from the source, with the rule that let it out."""
    rules = RuleWording(policy, cfg.source.dp)
    out: list[Released] = []
    if cfg.kind == "vocabulary":
        out.append(
            Released(
                "rows",
                str(cfg.rows),
                "vocabulary table, not summarised: count rule (released only when at least "
                f"k={policy.k}, rounded to a multiple of {policy.rounding})",
            )
        )
        return out
    if cfg.source.row_count is not None:
        out.append(
            Released(
                "source.row_count", str(cfg.source.row_count), rules.count + rules.private("count")
            )
        )
    rows_rule = (
        "the released source row count"
        if cfg.rows == (cfg.source.row_count or 0)
        else f"set by hand or k={policy.k} for a table below k (source row count withheld)"
    )
    out.append(Released("rows", str(cfg.rows), rows_rule))
    for i, finding in enumerate(cfg.source.findings):
        out.append(
            Released(
                f"source.findings[{i}]",
                finding,
                "dirty data seen: counts by the count rule ('fewer than k' otherwise"
                + ("; withheld under differential privacy" if cfg.source.dp else "")
                + ")",
            )
        )
    if cfg.source.dp is not None:
        out.append(_budget_account(cfg.source.dp))
    for name, col in cfg.columns.items():
        if col.stats:
            out.extend(_stats_items(f"columns.{name}.stats", col.stats, rules, name, col.type))
    return out


def _budget_account(dp: PrivacyBudget) -> Released:
    """What the table's statistics spent of the differential privacy budget."""
    return Released(
        "source.dp",
        f"epsilon {dp.table_epsilon:g} of {dp.project_epsilon:g} and delta "
        f"{dp.table_delta or 0:g} of {dp.project_delta or 0:g} spent over "
        f"{dp.statistics} statistics, epsilon {dp.statistic_epsilon:g} each "
        f"({dp.mechanism}, unit: {dp.unit}); listing threshold {dp.listing_threshold}",
        "differential privacy budget account (each item below names the statistic it "
        "spent); outside the guarantee: " + "; ".join(dp.outside_guarantee),
    )
