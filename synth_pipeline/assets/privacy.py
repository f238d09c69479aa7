"""The privacy checks on synthetic_table and the reports csv_bundle reads: wiring only, the
figures come from core/privacy.py."""

from __future__ import annotations

import dagster as dg

from ..core.config import TableConfig
from ..core.disclosure import release_count
from ..core.privacy import (
    ATTACK_COLUMNS,
    ATTACK_SETTINGS,
    CHECKS,
    EXCESS_SETTINGS,
    PrivacyReport,
    attack_rows,
    shown,
)
from ..core.privacy_bundle import destination_key, load_report, report_path, save_report
from ..core.privacy_measure import assess_table
from ..core.write import read_register
from ..environment import work_dir
from ..partitions import table_check
from ..resources import DestinationDatabase, SourceDatabase, SynthProject
from .presentation import bullet_list, markdown_table


def _check_description(name: str, what: str) -> str:
    if name in EXCESS_SETTINGS:
        return (
            f"The table's {what} against the source, set against chance (a real row left out "
            "of the source, the synthetic columns recombined at random) and a copy: its excess "
            f"over chance stays within project.yaml's privacy.{EXCESS_SETTINGS[name]}"
        )
    if name == "privacy_membership":
        return (
            "Telling source rows from held-out control rows by their distance to the nearest "
            "synthetic row (control rows: to the nearest of as many real rows) does no better "
            f"than an AUC of project.yaml's privacy.{ATTACK_SETTINGS[name]}"
        )
    if name in ATTACK_SETTINGS:
        return (
            f"The table's {what} (Giomi et al. 2022): attacks on source rows with the synthetic "
            "rows against the same attacks on held-out control rows with real rows of others; "
            f"the risk stays within project.yaml's privacy.{ATTACK_SETTINGS[name]}"
        )
    return (
        "No value seen fewer than k times in the source appears in the output "
        "(privacy.max_rare_category_leaks)"
    )


def privacy_check_specs(
    key: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> list[dg.AssetCheckSpec]:
    """The privacy checks of a project's synthetic_table (``key``), one result per table."""
    return [
        table_check(
            name,
            key,
            partitions,
            blocking=True,
            description=_check_description(name, what) + "; csv_bundle refuses a table that fails.",
        )
        for name, what in CHECKS.items()
    ]


def _path(project: SynthProject, destination: DestinationDatabase, table: str):
    key = destination_key(destination.resolved_url(project.project), destination.db_schema)
    return report_path(work_dir(), project.project, key, table)


def assess(
    cfg: TableConfig,
    source: SourceDatabase,
    destination: DestinationDatabase,
    project: SynthProject,
) -> PrivacyReport:
    """Measure the table just written against its source and keep the report for csv_bundle."""
    config = project.project_config()
    engine = destination.engine(project.project)
    report = assess_table(
        source.engine(),
        source.db_schema,
        engine,
        destination.db_schema,
        cfg,
        config.disclosure,
        config.privacy,
    )
    report.written_at = (
        read_register(engine, destination.db_schema).get(cfg.table, {}).get("written_at")
    )
    save_report(_path(project, destination, cfg.table), report)
    return report


def load_reports(
    project: SynthProject, destination: DestinationDatabase, tables: list[str]
) -> dict[str, PrivacyReport | None]:
    return {t: load_report(_path(project, destination, t)) for t in tables}


PRIVACY_HEADERS = [
    "check",
    "figure",
    "chance",
    "a real row left out",
    "synthetic columns recombined",
    "a copy",
    "excess over chance",
    "threshold",
    "verdict",
]


def _check_rows(report: PrivacyReport) -> list[list]:
    """One row per check: its figure against chance, a fresh row, recombined columns and a copy."""
    rows = []
    for check in EXCESS_SETTINGS:
        m = report.measure(check)
        passed, _ = report.verdict(check)
        s = shown(m, report.policy)
        figures = ["figure", "chance", "fresh_row", "recombined", "copy", "excess"]
        shown_figures = [s[f] for f in figures] if m.measured else [m.note, "", "", "", "", ""]
        rows.append(
            [CHECKS[check], *shown_figures, report.threshold(check), "pass" if passed else "FAIL"]
        )
    rare = "privacy_rare_categories"
    rows.append(
        [
            CHECKS[rare],
            report.rare_category_leaks,
            *[""] * 5,
            report.thresholds.max_rare_category_leaks,
            "pass" if report.verdict(rare)[0] else "FAIL",
        ]
    )
    return rows


def _released(counts: dict, report: PrivacyReport) -> dg.MetadataValue:
    return dg.MetadataValue.json({k: release_count(v, report.policy) for k, v in counts.items()})


def privacy_metadata(report: PrivacyReport) -> dict:
    """Each check's figure, chance and verdict, rounded like every released count."""
    if not report.assessed:
        return {"privacy": report.note}
    out = {
        "privacy": markdown_table(PRIVACY_HEADERS, _check_rows(report)),
        "privacy_dcr_samples": _released(report.dcr_samples, report),
        "privacy_columns_compared": ", ".join(report.columns) or "none",
    }
    if report.attacks.note:
        out["privacy_attacks"] = report.attacks.note
    else:
        out["privacy_attacks"] = markdown_table(ATTACK_COLUMNS, attack_rows(report))
        out["privacy_attack_samples"] = _released(report.attacks.samples, report)
    if report.config_notes:
        out["privacy_settings_no_longer_used"] = bullet_list(report.config_notes)
    return out
