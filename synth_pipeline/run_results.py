"""What the CLI reports of a Dagster run: success, the first line of each error, failed checks
and the rows written, read while the run's result is still open (any URL password hidden)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from .core.database import redact_text


@dataclass
class RunSummary:
    """What the report needs of one run, read while its result is still open."""

    run_id: str
    success: bool
    errors: list[str]
    checks: list[str]
    synthetic_rows: int | None


def summarise_run(result, generated: bool) -> RunSummary:
    errors, checks = run_failures(result)
    rows = None
    if result.success and generated:
        # read from the materialisation's metadata: a launched run's outputs are not loadable
        for event in result.all_events:
            # the run is one project's: its synthetic_table is <project>/synthetic_table
            if event.is_step_materialization and event.asset_key.path[-1] == "synthetic_table":
                metadata = event.step_materialization_data.materialization.metadata
                rows = int(metadata["dagster/row_count"].value)
    return RunSummary(result.run_id, result.success, errors, checks, rows)


def run_failures(result: dg.ExecuteInProcessResult) -> tuple[list[str], list[str]]:
    """(errors, failed checks) of a run, with any URL password hidden."""
    errors, checks = [], []
    for ev in result.all_events:
        if ev.is_step_failure and ev.step_failure_data and ev.step_failure_data.error:
            err = ev.step_failure_data.error
            if err.cls_name == "DagsterAssetCheckFailedError":
                continue  # reported below, with the check's own reason
            while err.cause is not None and "dagster" in (err.cls_name or "").lower():
                err = err.cause
            # the first line says what went wrong; later ones are context (SQL, COPY line, a link)
            lines = [x for x in (err.message or "").strip().splitlines() if x.strip()]
            text = lines[0] if lines else str(err)
            errors.append(redact_text(text))
    for evaluation in result.get_asset_check_evaluations():
        if not evaluation.passed:
            text = evaluation.description or evaluation.check_name
            checks.append(f"check {evaluation.check_name} failed: {text}")
    return list(dict.fromkeys(errors)), list(dict.fromkeys(checks))
