"""What an instance's event log says about a backfill, through Dagster's public API.

The rule the UI's per-table view rests on: each table a backfill selected has a run of its own,
which succeeded and in which each step materialised that table's partition once and each check
of the step reported once, for that partition; no run of the backfill touched another table.
:func:`backfill_problems` lists every way the log breaks it (an empty list: it holds).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import dagster as dg

BACKFILL_TAG = "dagster/backfill"
PARTITION_TAG = "dagster/partition"


def _run_problems(
    instance: dg.DagsterInstance,
    run: dg.DagsterRun,
    checks: Mapping[dg.AssetKey, Sequence[str]],
) -> list[str]:
    """How one run of the backfill breaks the rule: its partition's materialisations and check
    evaluations, each exactly once, and nothing for another partition."""
    table = run.tags.get(PARTITION_TAG)
    name = f"run {run.run_id[:8]} (partition {table})"
    problems = [] if run.status == dg.DagsterRunStatus.SUCCESS else [f"{name}: {run.status.value}"]
    materialised = Counter(
        (e.dagster_event.asset_key, e.dagster_event.partition)
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
    )
    evaluations = [
        e.dagster_event.event_specific_data  # an AssetCheckEvaluation
        for e in instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    ]
    evaluated = Counter((v.asset_check_key, v.partition) for v in evaluations)
    failed = sorted(f"{v.asset_check_key.name}[{v.partition}]" for v in evaluations if not v.passed)
    if failed:
        problems.append(f"{name}: checks failed: {failed}")
    want_mat = Counter({(key, table): 1 for key in checks})
    want_eval = Counter(
        {(dg.AssetCheckKey(key, c), table): 1 for key, names in checks.items() for c in names}
    )
    for label, got, want in (
        ("materialisations", materialised, want_mat),
        ("check evaluations", evaluated, want_eval),
    ):
        if got != want:
            extra = sorted(str(k) for k in got - want)
            missing = sorted(str(k) for k in want - got)
            problems.append(f"{name}: {label} missing {missing}, unexpected {extra}")
    return problems


def backfill_problems(
    instance: dg.DagsterInstance,
    backfill_id: str,
    selected: Sequence[str],
    checks: Mapping[dg.AssetKey, Sequence[str]],
) -> list[str]:
    """Every way the backfill's runs break the rule above: a selected table without a run or
    with several, a run over several tables or none, a run that failed, a step's materialisation
    or a check's evaluation missing, repeated or for another table. ``checks``: each step's asset
    key and the names of its checks."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={BACKFILL_TAG: backfill_id}))
    problems = []
    by_table = Counter(r.tags.get(PARTITION_TAG) for r in runs)
    for table in selected:
        if by_table[table] != 1:
            problems.append(f"table {table}: {by_table[table]} runs in backfill {backfill_id}")
    for table in set(by_table) - set(selected):
        problems.append(f"backfill {backfill_id} ran partition {table!r}, which was not selected")
    for run in runs:
        problems += _run_problems(instance, run, checks)
    return problems
