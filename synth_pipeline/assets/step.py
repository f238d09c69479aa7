"""What every table step's asset shares: its key under the project's prefix, its group, one
partition per table, values stored by the state IO manager, and how a run of many tables
records each table on its own.

A run of one table yields the step's ``Output`` and check results, as any Dagster asset does.
A run of several tables (the CLI's one run per step, a backfill's single run) does each table
in turn and yields what Dagster records for it: one materialisation per table with that table's metadata and
data version, one evaluation per check and table, its value stored for the next step. A table
that fails, or fails a blocking check, stops only itself; the step fails at the end naming the
failed tables (``FAILED_TABLES`` and ``BLOCKED_TABLES`` in the failure's metadata).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Iterable, Iterator

import dagster as dg

from ..core.database import is_transient_error
from ..partitions import table_partitions
from ..projects import asset_key, dagster_name
from .presentation import MAX_RETRIES, error_line

STEPS = ("schema_snapshot", "column_stats", "reviewed_config", "synthetic_table")
FAILED_TABLES = "failed_tables"  # the step failure's metadata: {table: why}, errors only
BLOCKED_TABLES = "blocked_tables"  # and {table: [blocking checks failed]}
# Dagster reads a materialisation's or observation's data version from this tag (an Output
# sets it itself)
DATA_VERSION_TAG = "dagster/data_version"
# No project has this many tables; a backfill's run of a step takes all its tables at once.
MAX_TABLES_PER_RUN = 10_000
# Dagster warns whenever it resolves a job of several steps, whose policies differ on purpose
# (step_backfill_policy); such a job runs one table per run, where no policy applies.
warnings.filterwarnings("ignore", message=r"Asset job .* varying BackfillPolicies")


def step_backfill_policy(step: str) -> dg.BackfillPolicy:
    """All of a backfill's tables in one run per step. The steps' policies differ (a cap no
    project reaches, one higher per step) because Dagster's backfill puts a parent and child
    of the same policy in one run, and a step of several tables yields no output for the next
    step of that run to start from: with different policies each step gets a run of its own,
    started once the tables before it are materialised."""
    return dg.BackfillPolicy.multi_run(
        max_partitions_per_run=MAX_TABLES_PER_RUN + STEPS.index(step)
    )


def table_step(
    project: str,
    step: str,
    *,
    reads: tuple[str, ...] = (),
    deps: Iterable = (),
    kinds: set[str],
    description: str,
    check_specs: list[dg.AssetCheckSpec],
    automation_condition: dg.AutomationCondition | None = None,
    pool: str | None = None,
):
    """The decorator of ``project``'s ``step`` (``<project>/<step>``); ``reads`` names the
    earlier steps whose stored values it takes as inputs. A one-output multi-asset so that its
    check results may be recorded per table rather than yielded once for the run."""
    key = asset_key(project, step)
    return dg.multi_asset(
        name=key.to_python_identifier(),
        outs={
            step: dg.AssetOut(
                key=key,
                is_required=False,
                io_manager_key="state_io_manager",
                group_name=dagster_name(project),
                kinds=kinds,
                description=description,
                automation_condition=automation_condition,
                backfill_policy=step_backfill_policy(step),
            )
        },
        ins={parent: dg.AssetIn(key=asset_key(project, parent)) for parent in reads} or None,
        deps=list(deps) or None,
        partitions_def=table_partitions(project),
        check_specs=check_specs,
        can_subset=True,
        pool=pool,
        backfill_policy=step_backfill_policy(step),
    )


Produce = Callable[..., Iterable[dg.Output | dg.AssetCheckResult]]


def each_table(
    context: dg.AssetExecutionContext,
    produce: Produce,
    inputs: dict[str, object],
    order: Callable[[list[str]], list[str]] = list,
) -> Iterator:
    """Run ``produce(table, **inputs)`` for the run's tables (``order`` sorts them; an input
    of several tables is a dict by table). One table: its events as they come. Several: each
    recorded on its own, as the module docstring says."""
    tables = list(context.partition_keys)
    step = context.asset_key.path[-1]  # the one output is named after the step
    if len(tables) == 1:
        for event in produce(tables[0], **inputs):
            yield (
                dg.Output(
                    event.value, step, metadata=event.metadata, data_version=event.data_version
                )
                if isinstance(event, dg.Output)
                else event
            )
        return
    failed: dict[str, str] = {}
    blocked: dict[str, list[str]] = {}
    for table in order(tables):
        try:
            events = _table_events(context, table, produce, inputs)
        except _TableFailed as failure:
            failed[table] = str(failure)
            context.log.error(f"{table}: {failure}")
            continue
        # yielded, not logged: what a step logs is lost when it then fails
        yield from events
        checks_failed = [
            e.check_name
            for e in events
            if isinstance(e, dg.AssetCheckEvaluation) and e.blocking and not e.passed
        ]
        if checks_failed:
            blocked[table] = checks_failed
    if failed or blocked:
        why = {
            **failed,
            **{t: f"blocking check(s) {', '.join(c)} failed" for t, c in blocked.items()},
        }
        raise dg.Failure(
            description=f"{len(why)} of {len(tables)} tables failed: "
            + "; ".join(f"{t}: {w}" for t, w in why.items()),
            metadata={
                FAILED_TABLES: dg.MetadataValue.json(failed),
                BLOCKED_TABLES: dg.MetadataValue.json(blocked),
            },
        )


class _TableFailed(Exception):
    """One table of a run of several failed (the message says why)."""


def _table_events(context, table: str, produce: Produce, inputs: dict) -> list:
    """One table of a run of several, done and its value stored: its materialisation and
    check evaluations. Raises ``_TableFailed`` when it could not be done."""
    missing = [name for name, values in inputs.items() if values.get(table) is None]
    if missing:
        raise _TableFailed(f"no stored {', '.join(missing)} for {table}: materialise it first")
    try:
        events = _with_retries(context, table, produce, {k: v[table] for k, v in inputs.items()})
    except dg.Failure as failure:
        raise _TableFailed(failure.description or type(failure).__name__) from failure
    except Exception as exc:
        raise _TableFailed(_first_line(exc)) from exc
    blocking = {spec.name for spec in context.assets_def.check_specs if spec.blocking}
    out: list = []
    for event in events:
        if isinstance(event, dg.Output):
            context.resources.state_io_manager.store(context.asset_key, table, event.value)
            tags = {DATA_VERSION_TAG: event.data_version.value} if event.data_version else {}
            out.append(
                dg.AssetMaterialization(
                    context.asset_key, metadata=event.metadata, partition=table, tags=tags
                )
            )
        else:
            out.append(
                dg.AssetCheckEvaluation(
                    asset_key=context.asset_key,
                    check_name=event.check_name,
                    passed=event.passed,
                    metadata=event.metadata,
                    severity=event.severity,
                    description=event.description,
                    blocking=event.check_name in blocking,
                    partition=table,
                )
            )
    return out


def _with_retries(context, table: str, produce: Produce, inputs: dict) -> list:
    """The table's events; a transient database error retries this table alone (as
    ``retry_transient`` retries a step of one table)."""
    for attempt in range(MAX_RETRIES + 1):
        try:
            return list(produce(table, **inputs))
        except Exception as exc:
            if not is_transient_error(exc) or attempt == MAX_RETRIES:
                raise
            context.log.warning(f"{table}: transient database error, retrying: {_first_line(exc)}")
            time.sleep(2**attempt)
    raise AssertionError("unreachable")


def _first_line(exc: BaseException) -> str:
    line = error_line(exc)
    return line if line == type(exc).__name__ else f"{type(exc).__name__}: {line}"
