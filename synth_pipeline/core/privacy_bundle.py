"""The privacy reports between synthetic_table and csv_bundle (kept inside the trusted
environment), and the bundle's privacy.md.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from . import DISCLAIMER
from .database import redact
from .disclosure import DisclosurePolicy, about_count
from .files import atomic_write_text
from .privacy import (
    AT_CHANCE,
    ATTACK_COLUMNS,
    PrivacyReport,
    attack_rows,
    attack_samples,
    shown,
)

# ---------------------------------------------------------------------------------------------
# Keeping reports between synthetic_table and csv_bundle (inside the trusted environment)


def destination_key(url: str, schema: str | None) -> str:
    """A short name for a destination (its URL without password, and schema)."""
    return hashlib.sha256(f"{redact(url)}|{schema or ''}".encode()).hexdigest()[:12]


def report_path(work_dir: Path, project: str, destination: str, table: str) -> Path:
    return Path(work_dir) / "privacy" / project / destination / f"{table}.json"


def save_report(path: Path, report: PrivacyReport) -> None:
    atomic_write_text(path, report.model_dump_json(indent=1) + "\n")


def load_report(path: Path) -> PrivacyReport | None:
    """A kept report; one written by an older version (other fields) counts as missing, so the
    table is measured again."""
    if not path.exists():
        return None
    try:
        return PrivacyReport.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValueError:
        return None


def bundle_problems(
    reports: dict[str, PrivacyReport | None], register: dict[str, dict[str, Any]]
) -> list[str]:
    """Why tables may not go into a bundle: a failed, missing or out-of-date privacy report."""
    problems = []
    for table, report in sorted(reports.items()):
        entry = register.get(table, {})
        if report is None:
            problems.append(
                f"{table}: no privacy report; materialise synthetic_table[{table}] again"
            )
        elif (
            report.config_fingerprint != entry.get("config_fingerprint")
            or report.written_at != entry.get("written_at")
            or (report.assessed and report.synthetic_rows != int(entry.get("rows") or 0))
        ):
            problems.append(
                f"{table}: the privacy report is for another version of the table; "
                f"materialise synthetic_table[{table}] again"
            )
        elif not report.passed:
            problems.append(
                f"{table}: privacy checks failed: "
                + "; ".join(f"{c}: {why}" for c, why in report.failures.items())
            )
    return problems


# ---------------------------------------------------------------------------------------------
# The bundle's section

_MEASURE_COLUMNS = [
    "table",
    "rows",
    "figure",
    "chance",
    "a real row left out",
    "synthetic columns recombined",
    "copy",
    "excess over chance",
    "threshold",
    "verdict",
]
_SECTIONS = {
    "privacy_exact_matches": (
        "Exact matches",
        "Share of synthetic rows equal to some source row on every column generated from "
        "released statistics. A real row left out: the share of source rows with an identical "
        "twin among the others. A copy scores 1.",
    ),
    "privacy_unique_matches": (
        "Unique matches",
        "Share of synthetic rows matching a source row that is unique on its quasi-identifiers "
        "(person: year of birth, gender, race, ethnicity; events: concept and date). A real row "
        "left out: the share of source rows matching a row unique among the others. A copy "
        "scores the share of source rows that are unique.",
    ),
    "privacy_dcr": (
        "Distance to closest record",
        "Chance that a synthetic row is closer to the source (Gower distance to the nearest "
        "source row) than a real row left out of the source is, ties counting half. A real row "
        "left out scores 0.5; a copy 1 minus half the share of real rows with an identical twin.",
    ),
}


def _verdict(r: PrivacyReport, check: str) -> str:
    if check in r.failures:
        return "FAIL"
    if check == "privacy_rare_categories":
        return "pass"
    m = r.measure(check)
    if m.note == AT_CHANCE:
        return "pass (at chance)"
    return "pass" if m.measured else "n/a"


def privacy_markdown(
    project: str, reports: list[PrivacyReport], created: str, policy: DisclosurePolicy
) -> str:
    """The bundle's privacy report: rates and aggregates only, every one rounded like a
    released count."""
    k = policy.k
    assessed = sorted(
        (r for r in reports if r.assessed and r.synthetic_rows), key=lambda x: x.table
    )
    lines = [
        DISCLAIMER,
        "",
        f"# Privacy report: project {project}",
        "",
        f"Computed {created} inside the trusted environment by comparing each synthetic",
        "table with its source table. Only rates appear here; no source value or count does:",
        f"every rate is a count rounded like every released count (k={k}, multiples of",
        f"{policy.rounding}) over the released size, printed no finer than that rounding allows.",
        "",
        "Each figure is set against chance and against what a copy of the source would score.",
        "Chance is the larger of two figures that involve no copying: a real row left out of the",
        "source (each source row a generator could write from the released statistics, measured",
        "against the others) and the synthetic table's own columns recombined at random. The",
        "excess over chance is (figure - chance) / (copy - chance): 0 is chance, 1 a copy. A",
        "table fails a check when its excess is above the threshold with 99% confidence; where",
        "a copy would score no more than chance, the check passes at chance.",
    ]
    notes = sorted({n for r in reports for n in r.config_notes})
    if notes:
        lines += ["", "Settings of an older project.yaml that no longer apply:", ""]
        lines += [f"- {n}" for n in notes]
    lines += _measure_sections(assessed, policy)
    lines += _rare_section(assessed, k)
    lines += _attack_section(assessed, policy)
    others = sorted(r.table for r in reports if r not in assessed)
    if others:
        lines += ["", f"Not assessed (empty, or nothing to compare): {', '.join(others)}."]
    lines += [
        "",
        "Vocabulary tables are public reference data, limited to the concepts the synthetic tables can "
        "contain unless a reviewer chose to copy a table whole, and not assessed.",
        "",
        DISCLAIMER,
        "",
    ]
    return "\n".join(lines)


def _section(title: str, what: list[str], columns: list[str]) -> list[str]:
    """A section's heading, its text and the head of its table."""
    return [
        "",
        f"## {title}",
        "",
        *what,
        "",
        "| " + " | ".join(columns) + " |",
        "|---" * len(columns) + "|",
    ]


def _measure_sections(assessed: list[PrivacyReport], policy: DisclosurePolicy) -> list[str]:
    """One table per figure measured against chance (exact matches, unique matches, DCR)."""
    lines: list[str] = []
    for check, (title, what) in _SECTIONS.items():
        lines += _section(title, [what], _MEASURE_COLUMNS)
        for r in assessed:
            m = r.measure(check)
            if not m.measured:
                lines.append(f"| {r.table} | {r.synthetic_rows} | n/a | | | | | {m.note} | | n/a |")
                continue
            s = shown(m, r.policy)
            lines.append(
                f"| {r.table} | {r.synthetic_rows} | {s['figure']} | {s['chance']} "
                f"| {s['fresh_row']} | {s['recombined']} | {s['copy']} | {s['excess']} "
                f"| {r.threshold(check)} | {_verdict(r, check)} |"
            )
        if check == "privacy_dcr":
            lines += [
                "",
                "Samples (synthetic / real rows left out / reference): "
                + "; ".join(
                    f"{r.table} "
                    + " / ".join(
                        about_count(r.dcr_samples[s], policy)
                        for s in ("synthetic", "held_out", "reference")
                    )
                    for r in assessed
                    if r.dcr_samples
                )
                + ".",
            ]
    return lines


def _rare_section(assessed: list[PrivacyReport], k: int) -> list[str]:
    what = f"Values seen fewer than k={k} times in the source that appear in the output."
    lines = _section("Rare categories", [what], ["table", "values", "threshold", "verdict"])
    for r in assessed:
        lines.append(
            f"| {r.table} | {r.rare_category_leaks} | {r.thresholds.max_rare_category_leaks} "
            f"| {_verdict(r, 'privacy_rare_categories')} |"
        )
    return lines


def _attack_section(assessed: list[PrivacyReport], policy: DisclosurePolicy) -> list[str]:
    lines = _section(
        "Attacks",
        [
            "Singling-out, linkability and attribute-inference risk after Giomi et al. 2022",
            "(anonymeter), and a membership-inference test. The source is split by a fixed seed:",
            "targets from the source attacked with synthetic rows, against targets from a held-out",
            "control half attacked with as many real rows of the source (none of them a control",
            "target) in the synthetic rows' place. Risk = (training rate - control rate) / (1 -",
            "control rate): 0 when the synthetic rows tell no more about the people in the source than",
            "real rows of others tell about someone outside it, 1 when every attack succeeds.",
            "Membership: the AUC of telling source targets from control targets by the distance to",
            "their attacker's nearest row (0.5 is chance). A table fails when a risk or the AUC is",
            "above its threshold with 99% confidence. Inference shows its worst column.",
        ],
        ["table", *ATTACK_COLUMNS],
    )
    for r in assessed:
        if r.attacks.note:
            lines.append(f"| {r.table} | all | | | | {r.attacks.note} | | n/a |")
            continue
        for row in attack_rows(r):
            lines.append(f"| {r.table} | " + " | ".join(row) + " |")
    sampled = [r for r in assessed if r.attacks.samples]
    if sampled:
        lines += [
            "",
            "Samples: "
            + "; ".join(f"{r.table} {attack_samples(r, policy)}" for r in sampled)
            + ".",
        ]
    return lines
