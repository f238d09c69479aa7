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

from . import vocabulary
from .config import (
    ColumnConfig,
    ProjectFiles,
    TableConfig,
    approval_problem,
    atomic_write_text,
    dump_yaml,
)
from .disclosure import DisclosurePolicy
from .errors import ConfigError
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


class Rules:
    """The plain-language rule behind each kind of released statistic, with the policy's numbers."""

    def __init__(self, policy: DisclosurePolicy, dp: PrivacyBudget | None):
        k, r = policy.k, policy.rounding
        self.k = k
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
        self.bins = (
            f"bins merged until each holds at least k={k}, outer edges coded at the k-th value "
            f"from each end ({band}), counts rounded to {r}"
        )
        self.shares = f"counts per category; a category below k={k} is withheld (0), rounded to {r}"
        self.pattern = (
            f"free text or identifier: only the name of the commonest shape among "
            f"{policy.pattern_sample_size} sampled values, never a value"
        )
        self.dp_quantiles = dp.quantiles if dp else ""


def _short(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(_short(v) for v in value)
    return str(value)


def _stats_items(prefix: str, cs: ColumnStats, rules: Rules) -> list[Released]:
    out: list[Released] = []
    noisy = rules.noise
    q_rule = rules.quantiles + (
        f" (under differential privacy: {rules.dp_quantiles})" if noisy else ""
    )

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
    if cs.values:
        add("values", [f"{v.value}: {v.count}" for v in cs.values], rules.values + noisy)
    if cs.other_count:
        add("other_count", cs.other_count, "rows of the folded values: " + rules.count + noisy)
    if cs.quantiles:
        add("quantiles", [f"p{p.p:g}={p.value}" for p in cs.quantiles], q_rule)
    if cs.years:
        add("years", [f"{b.start}..{b.end}: {b.count}" for b in cs.years], rules.bins + noisy)
    if cs.months:
        add("months", cs.months, "month of year: " + rules.shares + noisy)
    if cs.time_of_day is not None:
        tod = cs.time_of_day
        add(
            "time_of_day.midnight_share",
            tod.midnight_share,
            "from the released midnight and hour counts" + noisy,
        )
        if tod.hours:
            add("time_of_day.hours", tod.hours, "hour of day: " + rules.shares + noisy)
    if cs.length:
        add("length", [f"p{p.p:g}={p.value}" for p in cs.length], "string lengths: " + q_rule)
    if cs.pattern:
        add("pattern", cs.pattern, rules.pattern)
    if cs.offset is not None:
        add(
            "offset.quantiles",
            [f"p{p.p:g}={p.value}" for p in cs.offset.quantiles],
            f"days after {cs.offset.from_column}: " + q_rule,
        )
        if cs.offset.negative_share:
            add(
                "offset.negative_share",
                cs.offset.negative_share,
                "rows ending before they start, from released counts" + noisy,
            )
    if cs.fanout:
        add(
            "fanout",
            [f"{b.start}..{b.end}: {b.count}" for b in cs.fanout],
            "children per parent, parents counted: " + rules.bins + noisy,
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
    rules = Rules(policy, cfg.source.dp)
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
            Released("source.row_count", str(cfg.source.row_count), rules.count + rules.noise)
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
                f"epsilon {dp.table_epsilon:g} of {dp.project_epsilon:g} spent over "
                f"{dp.statistics} statistics ({dp.mechanism}, unit: {dp.unit})",
                "differential privacy budget account; outside the guarantee: "
                + "; ".join(dp.outside_guarantee),
            )
        )
    for name, col in cfg.columns.items():
        if col.stats:
            out.extend(_stats_items(f"columns.{name}.stats", col.stats, rules))
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
        + (f"epsilon {policy.epsilon:g}" if policy.epsilon is not None else "off"),
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
    if cfg.vocabulary_rule == "referenced" and cfg.table in vocabulary.CONCEPT_LEVEL:
        tables = ", ".join(f"{t} {n}" for t, n in sorted(released.by_table.items()))
        lines.append(
            f"  {len(released.ids)} concepts in the approved synthetic configs ({tables or 'none'}),"
            " plus those the copied vocabulary metadata names"
        )
        if released.unlisted:
            lines.append(
                "  values not listed (may not resolve in concept): " + ", ".join(released.unlisted)
            )
    rule = vocabulary.site_local_rule(cfg)
    lines.append(f"site-local rows: {vocabulary.site_local_text(rule)}")
    local = vocabulary.site_local_columns(released)
    if local and cfg.table in vocabulary.CONCEPT_LEVEL:
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
        f"site-local concept ids (above {vocabulary.SITE_LOCAL_ABOVE:,}, the site's own codes) in "
        f"{column}: {', '.join(map(str, ids))}; whether their concept rows are copied is "
        "concept.yaml's site_local"
        for column, ids in vocabulary.site_local_columns(found).items()
    ]
