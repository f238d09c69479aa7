"""What a reviewer reads before approving: every value a table's config took from the source, the
rule that let it out, and what changed since the last approval.

``synth-pipeline approve`` keeps a copy of each file it approves under
``<project>/.approved/<table>.yaml`` (committed with the project); ``synth-pipeline review``
diffs the file against that copy.
"""

from __future__ import annotations

import difflib
import textwrap
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import vocabulary, vocabulary_source
from .config import ColumnConfig, TableConfig, approval_problem
from .config_files import ProjectFiles, dump_yaml
from .disclosure import YEAR_GRID, DisclosurePolicy
from .errors import ConfigError
from .files import atomic_write_text
from .statistics import ColumnStats, PrivacyBudget

APPROVED_DIR = ".approved"


def approved_copy_path(files: ProjectFiles, table: str) -> Path:
    return files.folder / APPROVED_DIR / f"{table}.yaml"


def keep_approved_copy(files: ProjectFiles, table: str) -> Path:
    """Copy the table's file, as just approved, to ``.approved/`` for later diffs."""
    path = approved_copy_path(files, table)
    atomic_write_text(path, files.table_file(table).read_text(encoding="utf-8"))
    return path


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


def _stats_items(
    prefix: str, cs: ColumnStats, rules: RuleWording, column: str | None = None, col_type: str = ""
) -> list[Released]:
    out: list[Released] = []
    dp_on = bool(rules.noise)

    def private(statistic: str) -> str:
        return rules.private(statistic, column, col_type)

    noisy = private("nulls")
    q_rule = rules.quantiles

    def add(field: str, value: object, rule: str) -> None:
        out.append(Released(f"{prefix}.{field}", _short(value), rule))

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
            "quantiles" if dp_on else q_rule,
        )
        out[-1].rule += private("quantiles")
    if cs.years:
        add(
            "years",
            [f"{b.start}..{b.end}: {b.count}" for b in cs.years],
            (rules.dp_bins if dp_on else rules.bins) + private("years"),
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
    if cs.length:
        add(
            "length",
            [f"p{p.p:g}={p.value}" for p in cs.length],
            "string lengths" + (private("length") if dp_on else ": " + q_rule),
        )
    if cs.pattern:
        add("pattern", cs.pattern, rules.pattern)
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
    if cs.conditional is not None:
        c = cs.conditional
        for g in c.groups + ([c.other] if c.other else []):
            label = f"conditional[{c.by}={g.value if g.value is not None else 'other (pooled)'}]"
            add(f"{label}.count", g.count, rules.count)
            if g.quantiles:
                add(f"{label}.quantiles", [f"p{p.p:g}={p.value}" for p in g.quantiles], q_rule)
            if g.values:
                add(f"{label}.values", [f"{v.value}: {v.count}" for v in g.values], rules.values)
        out.append(
            Released(
                f"{prefix}.conditional",
                f"{len(c.groups)} groups by {c.by}",
                f"a group is released only with at least {2 * rules.k} values (k={rules.k} for "
                "codes); smaller groups pooled, a pool below that withheld",
            )
        )
    return out


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
        dp = cfg.source.dp
        out.append(
            Released(
                "source.dp",
                f"epsilon {dp.table_epsilon:g} of {dp.project_epsilon:g} and delta "
                f"{dp.table_delta or 0:g} of {dp.project_delta or 0:g} spent over "
                f"{dp.statistics} statistics, epsilon {dp.statistic_epsilon:g} each "
                f"({dp.mechanism}, unit: {dp.unit}); listing threshold {dp.listing_threshold}",
                "differential privacy budget account (each item below names the statistic it "
                "spent); outside the guarantee: " + "; ".join(dp.outside_guarantee),
            )
        )
    for name, col in cfg.columns.items():
        if col.stats:
            out.extend(_stats_items(f"columns.{name}.stats", col.stats, rules, name, col.type))
    return out


def _generator(col: ColumnConfig) -> str:
    if not col.generator:
        return "not generated"
    params = ", ".join(f"{k}={v}" for k, v in col.params.items())
    return col.generator + (f": {params}" if params else "")


def _normalised(text: str) -> str:
    """The file as our writer lays it out, so a hand edit in another editor's style shows only
    what it changed (comments dropped)."""
    try:
        return dump_yaml(yaml.safe_load(text))
    except yaml.YAMLError:
        return text


def approved_diff(files: ProjectFiles, table: str) -> list[str] | None:
    """Unified diff of the table's file against its last approved copy (None: no copy kept)."""
    copy = approved_copy_path(files, table)
    if not copy.exists():
        return None
    before = _normalised(copy.read_text(encoding="utf-8")).splitlines()
    after = _normalised(files.table_file(table).read_text(encoding="utf-8")).splitlines()
    return list(
        difflib.unified_diff(
            before,
            after,
            fromfile=f"{APPROVED_DIR}/{table}.yaml (last approved)",
            tofile=f"{table}.yaml (now)",
            lineterm="",
        )
    )


def review_text(files: ProjectFiles, table: str, width: int = 100) -> str:
    """The review of one table as text: status, released values with their rules, the diff."""
    cfg = files.load_table(table)
    policy = files.load_project().disclosure
    problem = approval_problem(cfg, None)
    r = cfg.review
    if problem is None:
        status = f"approved by {r.reviewer} on {r.approved_at}; unedited since"
    else:
        status = f"NOT approved for generation: {problem}"
    lines = [
        f"== {table} ({cfg.kind}, {cfg.rows} rows) — {files.table_file(table)}",
        f"review: {status}",
        f"rules: k={policy.k}, rounding {policy.rounding}, ranges coded to "
        f"p{policy.low_percentile:g}..p{policy.high_percentile:g}, differential privacy "
        + (
            f"epsilon {policy.epsilon:g}, delta {policy.delta:g}"
            if policy.epsilon is not None
            else "off"
        ),
        "",
        "values taken from the source, and the rule that let each out:",
    ]
    listing = vocabulary_lines(files, cfg) if cfg.kind == "vocabulary" else site_local_lines(cfg)
    if listing:
        lines[3:3] = [
            w
            for line in listing
            for w in textwrap.wrap(
                line.strip(),
                width,
                initial_indent=line[: len(line) - len(line.lstrip())],
                subsequent_indent=line[: len(line) - len(line.lstrip())] + "    ",
                break_on_hyphens=False,
            )
        ]
    items = released_values(cfg, policy)
    if not items:
        lines.append("  none")

    def show(item: Released, indent: str, where: str) -> None:
        lines.extend(
            textwrap.wrap(
                f"{where}: {item.value}",
                width,
                initial_indent=indent,
                subsequent_indent=indent + "    ",
                break_on_hyphens=False,
            )
        )
        lines.extend(
            textwrap.wrap(
                item.rule,
                width,
                initial_indent=indent + "    rule: ",
                subsequent_indent=indent + "          ",
            )
        )

    for item in items:
        if not item.where.startswith("columns."):
            show(item, "  ", item.where)
    for name, col in cfg.columns.items():
        mine = [i for i in items if i.where.startswith(f"columns.{name}.stats.")]
        if not mine and not col.disclosure:
            continue
        lines.append(f"  column {name} ({_generator(col)})")
        for item in mine:
            show(item, "    ", item.where[len(f"columns.{name}.stats.") :])
        for note in col.disclosure:
            lines.extend(
                textwrap.wrap(
                    note, width, initial_indent="    applied: ", subsequent_indent="             "
                )
            )
    lines.append("")
    diff = approved_diff(files, table)
    if diff is None:
        lines.append(
            f"changes since the last approval: no approved copy in {APPROVED_DIR}/ "
            "(kept by synth-pipeline approve); see git history"
        )
    elif not diff:
        lines.append("changes since the last approval: none")
    else:
        lines.append("changes since the last approval:")
        lines += ["  " + d for d in diff]
    return "\n".join(lines) + "\n"


def vocabulary_lines(files: ProjectFiles, cfg: TableConfig) -> list[str]:
    """Which rows of a vocabulary table are copied, and for concept-level tables how many
    concepts the approved synthetic tables can contain now."""
    lines = [f"rows copied: {vocabulary.rule_text(cfg.table, cfg.vocabulary_rule)}"]
    released = vocabulary.released_concepts(files)
    if cfg.vocabulary_rule == "referenced" and cfg.table in vocabulary_source.CONCEPT_LEVEL:
        tables = ", ".join(f"{t} {n}" for t, n in sorted(released.by_table.items()))
        lines.append(
            f"  {len(released.ids)} concepts in the approved synthetic configs ({tables or 'none'}),"
            " plus those the copied vocabulary metadata names"
        )
        if released.unlisted:
            lines.append(
                "  values not listed (may not resolve in concept): " + ", ".join(released.unlisted)
            )
    rule = vocabulary_source.site_local_rule(cfg)
    lines.append(f"site-local rows: {vocabulary.site_local_text(rule)}")
    local = vocabulary.site_local_columns(released)
    if local and cfg.table in vocabulary_source.CONCEPT_LEVEL:
        fate = "copied" if rule == "include" else "left out"
        lines.append(
            f"  site-local concept ids the approved synthetic configs list (their rows are {fate}): "
            + ", ".join(f"{c} {', '.join(map(str, ids))}" for c, ids in local.items())
        )
    return lines


def site_local_lines(cfg: TableConfig) -> list[str]:
    """The columns of a synthetic table whose listed values are site-local concept ids."""
    found = vocabulary.ReleasedConcepts()
    try:
        listed = vocabulary.config_concepts(cfg)
    except ConfigError:
        return []  # a value that is no concept id: the run refuses the file and says why
    for name, ids in listed.items():
        found.by_column[f"{cfg.table}.{name}"] = ids
    return [
        f"site-local concept ids (above {vocabulary_source.SITE_LOCAL_ABOVE:,}, the site's own codes) in "
        f"{column}: {', '.join(map(str, ids))}; whether their concept rows are copied is "
        "concept.yaml's site_local"
        for column, ids in vocabulary.site_local_columns(found).items()
    ]
