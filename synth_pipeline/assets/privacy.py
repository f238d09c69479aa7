"""The privacy checks on synthetic_table and the reports csv_bundle reads: wiring only, the
figures come from core/privacy.py."""

from __future__ import annotations

import dagster as dg

from ..core.config import TableConfig
from ..core.privacy import (
    CHECKS,
    PrivacyReport,
    assess_table,
    destination_key,
    load_report,
    report_path,
    save_report,
)
from ..core.write import read_register
from ..resources import DestinationDatabase, SourceDatabase, SynthProject
from ..settings import work_dir
from .presentation import markdown_table

PRIVACY_CHECK_SPECS = [
    dg.AssetCheckSpec(
        name,
        asset="synthetic_table",
        blocking=True,
        description=f"The table's {what} against the source stays within project.yaml's "
        "privacy thresholds; csv_bundle refuses a table that fails.",
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
    settings = project.settings()
    engine = destination.engine(project.project)
    report = assess_table(
        source.engine(),
        source.db_schema,
        engine,
        destination.db_schema,
        cfg,
        settings.disclosure.k,
        settings.privacy,
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


def privacy_metadata(report: PrivacyReport) -> dict:
    if not report.assessed:
        return {"privacy": report.note}
    return {
        "privacy": markdown_table(
            ["measure", "value", "threshold"],
            [
                [
                    "exact-match rate (source rows with a twin)",
                    f"{report.exact_match_rate} ({report.exact_match_baseline})",
                    report.thresholds.max_exact_match_rate,
                ],
                [
                    f"unique match rate on {', '.join(report.quasi_identifiers) or 'none'} "
                    "(a fresh real row)",
                    f"{report.unique_match_rate} ({report.unique_match_baseline})",
                    f"baseline + {report.thresholds.max_unique_match_excess}",
                ],
                ["DCR share", report.dcr_closer_share, report.thresholds.max_dcr_closer_share],
                [
                    "rare categories leaked",
                    report.rare_category_leaks,
                    report.thresholds.max_rare_category_leaks,
                ],
            ],
        ),
        "privacy_dcr_samples": dg.MetadataValue.json(report.dcr_samples),
        "privacy_columns_compared": ", ".join(report.columns) or "none",
    }


def privacy_check_results(report: PrivacyReport) -> list[dg.AssetCheckResult]:
    out = []
    for name in CHECKS:
        passed, why = report.verdict(name)
        out.append(
            dg.AssetCheckResult(
                check_name=name,
                passed=passed,
                description=f"{report.table}: {why}",
                metadata={"table": report.table, "reason": why},
            )
        )
    return out
