"""Fidelity against the source on synthetic_table, and the trusted-environment report csv_bundle
writes beside the work dir's copies: wiring only, the scores come from core/fidelity.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg

from ..core import achilles
from ..core.config import TableConfig
from ..core.fidelity import TableFidelity
from ..core.fidelity_source import score_against_source
from ..core.fidelity_trusted import (
    attach_source_report,
    load_source_report,
    save_source_report,
    source_report,
    source_report_dir,
)
from ..core.files import atomic_write_text
from ..core.privacy_bundle import destination_key
from ..core.report import fidelity_html
from ..core.write import read_register
from ..environment import achilles_switched_off, work_dir
from ..resources import DestinationDatabase, SourceDatabase, SynthProject
from .presentation import markdown_table


def _folder(project: SynthProject, destination: DestinationDatabase) -> Path:
    key = destination_key(destination.resolved_url(project.project), destination.db_schema)
    return source_report_dir(work_dir(), project.project, key)


def against_source(
    cfg: TableConfig,
    fidelity: TableFidelity,
    source: SourceDatabase,
    destination: DestinationDatabase,
    project: SynthProject,
) -> dict:
    """Score the table just written against its source, keep the report under the work dir,
    and return synthetic_table's metadata: both scores per column, worst against the source first."""
    engine = destination.engine(project.project)
    score_against_source(
        source.engine(),
        source.db_schema,
        engine,
        destination.db_schema,
        cfg,
        fidelity,
        project.project_config().disclosure.k,
    )
    written_at = read_register(engine, destination.db_schema).get(cfg.table, {}).get("written_at")
    report = source_report(fidelity, cfg, written_at)
    path = _folder(project, destination) / f"{cfg.table}.json"
    save_source_report(path, report)
    lines = [
        f"Median column score against the approved statistics: "
        f"{_show(report.median_against_approved)}; against the source: "
        f"{_show(report.median_against_source)}"
        + (f" ({report.note})" if report.note else "")
        + f". Trusted environment only, kept in {path}.",
        "",
        markdown_table(
            [
                "column",
                "score against the approved statistics",
                "score against the source",
                "metric against the source",
                "null similarity against the source",
                "note",
            ],
            [
                [
                    c.column,
                    c.score_against_approved,
                    _show(c.score_against_source),
                    c.metric_against_source or "",
                    _show(c.null_similarity_against_source),
                    c.note,
                ]
                for c in report.columns
            ],
        ).value,
    ]
    return {
        "median_column_score_against_source": report.median_against_source
        if report.median_against_source is not None
        else "n/a",
        "fidelity_against_source": dg.MetadataValue.md("\n".join(lines)),
    }


def trusted_report(
    project: SynthProject,
    destination: DestinationDatabase,
    fidelity: list[TableFidelity],
    register: dict[str, dict],
    threshold: float,
) -> dict:
    """Write the report with both scores (never into the bundle) from the kept per-table
    reports that describe the tables as written; return csv_bundle's metadata entry."""
    folder = _folder(project, destination)
    for t in fidelity:
        kept = load_source_report(folder / f"{t.table}.json")
        if kept is not None and kept.describes(register.get(t.table, {})):
            attach_source_report(t, kept)
        else:
            t.source_note = (
                f"not measured for this version; materialise synthetic_table[{t.table}] again"
            )
    path = folder / "fidelity.html"
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    atomic_write_text(
        path, fidelity_html(project.project, fidelity, created, threshold, against_source=True)
    )
    return {"fidelity_report_against_source": dg.MetadataValue.path(str(path))}


def achilles_report(
    context: dg.AssetExecutionContext,
    project: SynthProject,
    source: SourceDatabase,
    destination: DestinationDatabase,
    tables: list[str],
) -> dict:
    """OHDSI Achilles on the source and on the synthetic tables, written beside the trusted
    fidelity report (core/achilles.py); csv_bundle's metadata entries."""
    folder = _folder(project, destination)
    created = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if not project.project_config().fidelity.achilles or achilles_switched_off():
        return {}
    if not achilles.available():
        path = achilles.write_report(folder, project.project, None, created)
        context.log.info(f"Achilles not run: {achilles.INSTALL} brings duckcdm")
        return {"achilles_report": dg.MetadataValue.path(str(path))}
    # the generated tables on both sides (vocabulary tables are public and Achilles' analyses
    # do not read them; a table the project leaves out is empty on both sides)
    comparison = achilles.compare_sides(
        (source.engine(), source.db_schema),
        (destination.engine(project.project), destination.db_schema),
        work=folder,
        tables=tables,
        cdm_version=project.project_config().cdm_version,
    )
    path = achilles.write_report(folder, project.project, comparison, created)
    worst = comparison.worst_first()[:5]
    return {
        "achilles_report": dg.MetadataValue.path(str(path)),
        "median_achilles_agreement": comparison.median_agreement
        if comparison.median_agreement is not None
        else "n/a",
        "median_achilles_agreement_between_source_halves": comparison.median_halves
        if comparison.median_halves is not None
        else "n/a",
        "worst_achilles_analyses": markdown_table(
            ["analysis", "agreement", "source half against half"],
            [[f"{a.analysis_id} {a.name}", a.agreement, _show(a.halves)] for a in worst],
        ),
    }


def _show(v: float | None) -> str | float:
    return "n/a" if v is None else v
