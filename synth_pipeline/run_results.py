"""What the CLI reports of a Dagster run: success, the first line of each error, failed checks
and the rows written, read while the run's result is still open (any URL password hidden)."""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from .assets.step import BLOCKED_TABLES, FAILED_TABLES
from .core.database import redact_text


@dataclass
class RunSummary:
    """What the report needs of one run, read while its result is still open."""

    run_id: str
    success: bool
    errors: list[str]
    checks: list[str]
    synthetic_rows: int | None


def table_summaries(result, tables: list[str], generated: bool) -> dict[str, RunSummary]:
    """What each table of a run came to. A run of one table is :func:`summarise_run`; in a run
    of several, a table succeeded when each step of the run materialised it and named it in no
    failure, its errors are those the failure names it in (or, if the step failed before
    reaching it, the step's own), its checks those evaluated for it."""
    if len(tables) == 1:
        return {tables[0]: summarise_run(result, generated)}
    materialised: dict[str, set] = {t: set() for t in tables}
    rows: dict[str, int] = {}
    for event in result.all_events:
        if event.is_step_materialization:
            materialization = event.step_materialization_data.materialization
            materialised.setdefault(materialization.partition, set()).add(event.step_key)
            if event.asset_key.path[-1] == "synthetic_table" and generated:
                count = materialization.metadata.get("dagster/row_count")
                rows[materialization.partition] = int(count.value) if count else 0
    named, blocked, unnamed = _failures_by_table(result)
    steps = {e.step_key for e in result.all_events if e.step_key and e.is_step_event}
    out = {}
    for t in tables:
        errors = named.get(t, [])
        # a run with no step at all (it failed before its step) materialised nothing either
        if not errors and t not in blocked and (not steps or materialised.get(t) != steps):
            errors = unnamed or ["not materialised"]
        checks = [
            f"check {e.check_name} failed: {e.description or e.check_name}"
            for e in result.get_asset_check_evaluations()
            if e.partition == t and not e.passed
        ]
        ok = not errors and t not in blocked
        out[t] = RunSummary(result.run_id, ok, errors, checks, rows.get(t) if ok else None)
    return out


def _failures_by_table(result) -> tuple[dict[str, list[str]], set[str], list[str]]:
    """From the failures of a run of several tables: {table: [why]}, the tables a blocking
    check stopped, and the failures that name no table (a step that failed before its tables)."""
    named: dict[str, list[str]] = {}
    blocked: set[str] = set()
    for event in result.all_events:
        if not (event.is_step_failure and event.step_failure_data):
            continue
        user = event.step_failure_data.user_failure_data
        metadata = user.metadata if user else {}
        for table, why in _json(metadata, FAILED_TABLES).items():
            named.setdefault(table, []).append(redact_text(why))
        blocked.update(_json(metadata, BLOCKED_TABLES))
    errors, _ = run_failures(result)
    return named, blocked, [] if named or blocked else errors


def _json(metadata, key: str) -> dict:
    value = metadata.get(key)
    return value.value if value is not None else {}


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
