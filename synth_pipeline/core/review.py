"""What a reviewer reads before approving: every value a table's config took from the source, the
rule that let it out, and what changed since the last approval.

``synth-pipeline approve`` keeps a copy of each file it approves under
``<project>/.approved/<table>.yaml`` (committed with the project); ``synth-pipeline review``
diffs the file against that copy.
"""

from __future__ import annotations

import difflib
import textwrap
from pathlib import Path

import yaml

from . import vocabulary, vocabulary_source
from .config import ColumnConfig, TableConfig, approval_problem
from .config_files import ProjectFiles, dump_yaml
from .disclosure import DisclosurePolicy
from .errors import ConfigError
from .files import atomic_write_text
from .released import Released, released_values

APPROVED_DIR = ".approved"


def approved_copy_path(files: ProjectFiles, table: str) -> Path:
    return files.folder / APPROVED_DIR / f"{table}.yaml"


def keep_approved_copy(files: ProjectFiles, table: str) -> Path:
    """Copy the table's file, as just approved, to ``.approved/`` for later diffs."""
    path = approved_copy_path(files, table)
    atomic_write_text(path, files.table_file(table).read_text(encoding="utf-8"))
    return path


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
    lines = _heading(files, table, cfg, policy, width)
    items = released_values(cfg, policy)
    if not items:
        lines.append("  none")
    lines += _released_lines(cfg, items, width)
    lines.append("")
    lines += _changes(files, table)
    return "\n".join(lines) + "\n"


def _heading(
    files: ProjectFiles, table: str, cfg: TableConfig, policy: DisclosurePolicy, width: int
) -> list[str]:
    """The table, its review status, the disclosure rules, and what is copied of a vocabulary
    table (or the site-local ids a synthetic table lists), wrapped to ``width``."""
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
    return lines


def _released_lines(cfg: TableConfig, items: list[Released], width: int) -> list[str]:
    """The released values with their rules: the table's first, then each column's under its
    generator, with the disclosure rules applied to it."""
    lines = []
    for item in items:
        if not item.where.startswith("columns."):
            lines += _shown(item, "  ", item.where, width)
    for name, col in cfg.columns.items():
        mine = [i for i in items if i.where.startswith(f"columns.{name}.stats.")]
        if not mine and not col.disclosure:
            continue
        lines.append(f"  column {name} ({_generator(col)})")
        for item in mine:
            lines += _shown(item, "    ", item.where[len(f"columns.{name}.stats.") :], width)
        for note in col.disclosure:
            lines.extend(
                textwrap.wrap(
                    note, width, initial_indent="    applied: ", subsequent_indent="             "
                )
            )
    return lines


def _shown(item: Released, indent: str, where: str, width: int) -> list[str]:
    """One released value and, below it, its rule, wrapped to ``width``."""
    return textwrap.wrap(
        f"{where}: {item.value}",
        width,
        initial_indent=indent,
        subsequent_indent=indent + "    ",
        break_on_hyphens=False,
    ) + textwrap.wrap(
        item.rule,
        width,
        initial_indent=indent + "    rule: ",
        subsequent_indent=indent + "          ",
    )


def _changes(files: ProjectFiles, table: str) -> list[str]:
    """The diff of the table's file against its last approved copy, or why there is none."""
    diff = approved_diff(files, table)
    if diff is None:
        return [
            f"changes since the last approval: no approved copy in {APPROVED_DIR}/ "
            "(kept by synth-pipeline approve); see git history"
        ]
    if not diff:
        return ["changes since the last approval: none"]
    return ["changes since the last approval:"] + ["  " + d for d in diff]


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
