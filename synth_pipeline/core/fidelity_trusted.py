"""The trusted-environment fidelity report: both scores per column, kept under the work dir, never
published (docs/fidelity.md says why).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from .config import TableConfig
from .fidelity import (
    SourceScore,
    TableFidelity,
)
from .files import atomic_write_text

# ---------------------------------------------------------------------------------------------
# The trusted-environment report: both scores per column, kept under the work dir, never published


class SourceColumnScore(BaseModel):
    column: str
    generator: str
    metric_against_approved: str
    score_against_approved: float
    metric_against_source: str | None = None
    score_against_source: float | None = None
    null_similarity_against_source: float | None = None
    note: str = ""
    empty: bool = Field(False, description="NULL throughout on both sides: not in the median.")


class SourceFidelityReport(BaseModel):
    """One table's column scores against the approved statistics and against the source.

    Scores only, no value; it stays in the trusted environment (see docs/fidelity.md for why the
    scores against the source are not published)."""

    table: str
    config_fingerprint: str | None = None
    written_at: str | None = Field(None, description="The destination table's register stamp.")
    synthetic_rows: int = 0
    source_rows: int | None = Field(None, description="Exact; stays in the trusted environment.")
    note: str = ""
    median_against_approved: float | None = None
    median_against_source: float | None = None
    columns: list[SourceColumnScore] = Field(
        default_factory=list, description="Worst against the source first."
    )

    def describes(self, entry: dict[str, Any]) -> bool:
        """Whether this report was measured on the table a register entry describes."""
        return (
            self.config_fingerprint == entry.get("config_fingerprint")
            and self.written_at == entry.get("written_at")
            and self.synthetic_rows == int(entry.get("rows") or 0)
        )


def source_report(
    fidelity: TableFidelity, cfg: TableConfig, written_at: str | None
) -> SourceFidelityReport:
    columns = []
    for c in fidelity.worst_first(against_source=True):
        s = c.against_source
        columns.append(
            SourceColumnScore(
                column=c.column,
                generator=c.generator,
                metric_against_approved=c.metric,
                score_against_approved=c.score,
                metric_against_source=s.metric if s else None,
                score_against_source=s.score if s else None,
                null_similarity_against_source=s.null_similarity if s else None,
                note=s.note if s else "",
                empty=s.empty if s else False,
            )
        )
    return SourceFidelityReport(
        table=fidelity.table,
        config_fingerprint=cfg.fingerprint(),
        written_at=written_at,
        synthetic_rows=fidelity.rows,
        source_rows=fidelity.source_rows,
        note=fidelity.source_note,
        median_against_approved=fidelity.median_score,
        median_against_source=fidelity.median_source_score,
        columns=columns,
    )


def attach_source_report(fidelity: TableFidelity, report: SourceFidelityReport) -> None:
    """Put a kept report's scores against the source on freshly computed column scores."""
    fidelity.source_rows, fidelity.source_note = report.source_rows, report.note
    kept = {c.column: c for c in report.columns}
    for c in fidelity.columns:
        s = kept.get(c.column)
        if s is not None and s.metric_against_source is not None:
            c.against_source = SourceScore(
                s.metric_against_source,
                s.score_against_source,
                s.null_similarity_against_source,
                s.note,
                s.empty,
            )


def source_report_dir(work_dir: Path, project: str, destination: str) -> Path:
    """Where a project's reports against the source are kept for one destination: a
    ``<table>.json`` each and ``fidelity.html`` (trusted environment only)."""
    return Path(work_dir) / "fidelity" / project / destination


def save_source_report(path: Path, report: SourceFidelityReport) -> None:
    atomic_write_text(path, report.model_dump_json(indent=1) + "\n")


def load_source_report(path: Path) -> SourceFidelityReport | None:
    if not path.exists():
        return None
    return SourceFidelityReport.model_validate(json.loads(path.read_text(encoding="utf-8")))
