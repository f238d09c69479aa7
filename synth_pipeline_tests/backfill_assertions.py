"""What an instance's event log says about a backfill, through Dagster's public API.

The rule for a backfill of table steps (one run per step): each step has exactly one run in the
backfill, which targets that step alone, covers exactly the selected tables (its partition
range, or its one partition) and succeeded; in it the step materialised each selected table
once and each of the step's checks reported once per table, and passed; no run of the backfill
touched a table that was not selected. :func:`backfill_problems` lists every way the log breaks
it (an empty list: it holds).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

import dagster as dg

BACKFILL_TAG = "dagster/backfill"
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def run_tables(run: dg.DagsterRun, order: Sequence[str]) -> list[str]:
    """The tables a run covers, read from its tags: its partition range (in ``order``, the
    partitions' order), or its one partition; none without either."""
    start, end = run.tags.get(RANGE_START_TAG), run.tags.get(RANGE_END_TAG)
    if start is not None and end is not None:
        if start not in order or end not in order:
            return [start, end]  # unknown keys: reported as not selected
        return list(order[order.index(start) : order.index(end) + 1])
    return [run.tags[PARTITION_TAG]] if PARTITION_TAG in run.tags else []


def _events(instance: dg.DagsterInstance, run_id: str):
    """A run's materialisations as (asset key, partition) and its check evaluations."""
    materialised = [
        (e.dagster_event.asset_key, e.dagster_event.partition)
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    ]
    evaluations = [
        e.dagster_event.event_specific_data  # an AssetCheckEvaluation
        for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    return materialised, evaluations


def _step_problems(
    key: dg.AssetKey,
    checks: Sequence[str],
    run_id: str,
    made: Counter,
    evaluated: Counter,
    selected: Sequence[str],
) -> list[str]:
    """How one step's events in the backfill break the rule: ``made`` counts its
    materialisations by (run, partition), ``evaluated`` its checks' evaluations by (check,
    run, partition)."""
    name = f"step {key.to_user_string()}"
    problems = []
    want = Counter({(run_id, t): 1 for t in selected})
    if made != want:
        problems.append(
            f"{name}: materialisations (run, table) missing {sorted(want - made)},"
            f" unexpected {sorted(made - want)}"
        )
    for check in checks:
        got = Counter({(r, t): n for (c, r, t), n in evaluated.items() if c == check})
        if got != want:
            problems.append(
                f"{name}: check {check} evaluations (run, table) missing {sorted(want - got)},"
                f" unexpected {sorted(got - want)}"
            )
    return problems


def backfill_problems(
    instance: dg.DagsterInstance,
    backfill_id: str,
    selected: Sequence[str],
    checks: Mapping[dg.AssetKey, Sequence[str]],
    partitions: str,
) -> list[str]:
    """Every way the backfill's runs break the rule above: a step without a run or with several,
    a run of several steps, a run that failed or covers other tables than the selected ones, a
    materialisation or check evaluation missing, repeated, made by another run or for another
    table, a check that failed. ``checks``: each step's asset key and the names of its checks;
    ``partitions``: the name of the steps' dynamic partitions (their order gives a range's
    tables)."""
    order = instance.get_dynamic_partitions(partitions)
    runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
    problems: list[str] = []
    step_runs: dict[dg.AssetKey, list[str]] = defaultdict(list)
    made: dict[dg.AssetKey, Counter] = defaultdict(Counter)
    evaluated: dict[dg.AssetKey, Counter] = defaultdict(Counter)
    for run in runs:
        name = f"run {run.run_id[:8]}"
        materialised, evaluations = _events(instance, run.run_id)
        # the steps it targets (a run of dg.materialize has none: the steps it recorded)
        targets = run.asset_selection or {k for k, _ in materialised} | {
            v.asset_check_key.asset_key for v in evaluations
        }
        steps = sorted(set(targets) & set(checks), key=str)
        for key in steps:
            step_runs[key].append(run.run_id)
        if len(steps) > 1:
            problems.append(f"{name} runs {len(steps)} steps: {[k.path[-1] for k in steps]}")
        if run.status != dg.DagsterRunStatus.SUCCESS:
            problems.append(f"{name}: {run.status.value}")
        tables = run_tables(run, order)
        if sorted(tables) != sorted(selected):
            problems.append(f"{name} covers {tables}, not the selected {sorted(selected)}")
        for key, table in materialised:
            made[key][(run.run_id, table)] += 1
        for v in evaluations:
            key = v.asset_check_key.asset_key
            evaluated[key][(v.asset_check_key.name, run.run_id, v.partition)] += 1
            if not v.passed:
                problems.append(f"{name}: check {v.asset_check_key.name}[{v.partition}] failed")
        outside = {t for _, t in materialised} | {v.partition for v in evaluations}
        for table in sorted(outside - set(selected), key=str):
            problems.append(f"backfill {backfill_id} ran partition {table!r}, not selected")
    for key, names in checks.items():
        if len(step_runs[key]) != 1:
            problems.append(
                f"step {key.to_user_string()}: {len(step_runs[key])} runs in backfill"
                f" {backfill_id}, not one"
            )
            continue
        problems += _step_problems(
            key, names, step_runs[key][0], made[key], evaluated[key], selected
        )
    return problems
