"""How the CLI's runs cover a step's tables: one in-process run per block of neighbouring
partitions (a partition range), or with ``--parallel`` runs launched through the instance's run
launcher (launched.py); a table that fails a step goes no further."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import dagster as dg

from .concurrency import PROCESS_TAG
from .core.table_order import dependency_waves
from .launched import PARALLEL_TAG, RANGE_END, RANGE_START, launch_and_wait, split_ranges
from .run_results import RunSummary, table_summaries


def neighbour_blocks(tables: list[str], order: list[str]) -> list[list[str]]:
    """``tables`` as runs of neighbours in the partitions' ``order``: each block is a
    partition range of one run."""
    place = {t: i for i, t in enumerate(order)}
    blocks: list[list[str]] = []
    for t in sorted(tables, key=place.__getitem__):
        if blocks and place[blocks[-1][-1]] == place[t] - 1:
            blocks[-1].append(t)
        else:
            blocks.append([t])
    return blocks


def step_blocks(tables: list[str], order: list[str], writes: bool) -> list[list[str]]:
    """The runs of one step: one per block of neighbouring partitions. A step that writes
    tables gets its blocks wave by wave when there are several, so parents come first (within
    a run the step itself writes parents first)."""
    blocks = neighbour_blocks(tables, order)
    if not writes or len(blocks) <= 1:
        return blocks
    return [block for wave in dependency_waves(tables) for block in neighbour_blocks(wave, order)]


StepRunner = Callable[[str, list[str]], Iterator[dict[str, RunSummary]]]


def run_steps(
    usable: list[str], steps: list[str], run_step: StepRunner
) -> dict[str, list[RunSummary]]:
    """Each step for the tables still going (``run_step`` yields, run by run, what each table
    of the run came to); a table that fails a step goes no further."""
    out: dict[str, list[RunSummary]] = {t: [] for t in usable}
    remaining = list(usable)
    for step in steps:
        for summaries in run_step(step, remaining):
            for t, summary in summaries.items():
                out[t].append(summary)
        remaining = [t for t in remaining if out[t][-1].success]
    return out


def in_process_runs(
    *,
    jobs: dict[str, dg.JobDefinition],
    order: list[str],
    instance: dg.DagsterInstance,
    run_config: dict,
    tags: dict[str, str],
    generated: bool,
) -> StepRunner:
    """One in-process run per step and block of tables (one run per step when the tables are
    neighbours among the partitions, as all of a source's are)."""

    def run_step(step: str, tables: list[str]) -> Iterator[dict[str, RunSummary]]:
        writes = step == "synthetic_table"
        for block in step_blocks(tables, order, writes):
            range_tags = {RANGE_START: block[0], RANGE_END: block[-1]} if len(block) > 1 else {}
            result = jobs[step].execute_in_process(
                partition_key=block[0] if len(block) == 1 else None,
                run_config=run_config,
                instance=instance,
                raise_on_error=False,
                tags={**tags, **range_tags},
            )
            yield table_summaries(result, block, generated and writes)

    return run_step


def launched_runs(
    *,
    parallel: int,
    jobs: dict[str, str],
    order: list[str],
    instance: dg.DagsterInstance,
    run_config: dict,
    tags: dict[str, str],
) -> StepRunner:
    """``--parallel``: a reading step's tables as up to ``parallel`` runs side by side, the
    write step's as one run per wave of blocks (the write pool lets one run write at a time),
    each run launched through the instance's run launcher (launched.py)."""
    # the launched runs live in processes of their own, not in this command's
    tags = {k: v for k, v in tags.items() if k != PROCESS_TAG}

    def run_step(step: str, tables: list[str]) -> Iterator[dict[str, RunSummary]]:
        writes = step == "synthetic_table"
        if writes:
            waves = [[block] for block in step_blocks(tables, order, writes)]
        else:
            waves = [split_ranges(neighbour_blocks(tables, order), parallel)]
        for ranges in waves:
            runs = launch_and_wait(
                instance,
                ranges,
                parallel=parallel,
                job_name=jobs[step],
                run_config=run_config,
                tags={**tags, PARALLEL_TAG: str(parallel)},
            )
            for block, run in runs:
                if run.error:
                    yield {t: RunSummary(run.run_id, False, [run.error], [], None) for t in block}
                else:
                    yield table_summaries(run, block, writes)

    return run_step


def combined(summaries: list[RunSummary]) -> RunSummary:
    """A table's runs, one per step it reached, as one summary."""
    last = summaries[-1]
    return RunSummary(
        last.run_id,
        all(s.success for s in summaries),
        [e for s in summaries for e in s.errors],
        [c for s in summaries for c in s.checks],
        last.synthetic_rows,
    )
