"""Runs in processes of their own: ``--parallel``'s pool, each process running one table's
``synthesise_table`` job at a time (its steps in that process), and the job as a reconstructable
target (``reconstructable`` needs a module-level function that returns it; each step's
process loads the Definitions afresh from the same environment variables, the project being
``SYNTH_PROJECT``)."""

from __future__ import annotations

import dagster as dg

from .core.database import redact_text
from .core.errors import ConfigError
from .core.table_order import dependency_waves
from .environment import project_name
from .jobs import table_job_name
from .run_results import RunSummary, summarise_run


def table_job() -> dg.JobDefinition:
    from .definitions import defs

    return defs.resolve_job_def(table_job_name(project_name()))


def run_table_job(home: str, run_config: dict, tags: dict[str, str]) -> RunSummary:
    """One table's ``synthesise_table`` job in a pool process (see :func:`launch_in_waves`).

    Runs start from a process's main thread, not from a thread, as Dagster's executors expect. The instance is the one whose ``dagster.yaml`` is in
    ``home``; the project and URLs come from the environment the pool inherited."""
    with (
        dg.DagsterInstance.from_config(home) as instance,
        dg.execute_job(
            dg.reconstructable(table_job),
            instance=instance,
            run_config=run_config,
            tags=tags,
            raise_on_error=False,
        ) as result,
    ):
        return summarise_run(result, generated=True)


def launch_in_waves(
    tables: list[str],
    instance: dg.DagsterInstance,
    run_config: dict,
    tags: dict[str, str],
    parallel: int,
) -> dict[str, RunSummary]:
    """Run each table's ``synthesise_table`` job on ``instance``, ``parallel`` at a time, each
    from one of ``parallel`` pool processes that live for the whole command, parents in an
    earlier wave than their children."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    if instance.is_ephemeral:
        raise ConfigError(
            "parallel runs need a persistent instance: set DAGSTER_HOME to a folder whose "
            "dagster.yaml uses PostgreSQL storage (see configs/dagster-postgres.yaml)",
            setting="--parallel",
        )
    home = instance.root_directory

    def summary(future) -> RunSummary:
        try:
            return future.result()
        except Exception as error:  # the pool process died (killed, out of memory)
            why = redact_text(str(error).strip().splitlines()[0] if str(error).strip() else "")
            return RunSummary("", False, [f"the run's process ended: {why}"], [], None)

    out: dict[str, RunSummary] = {}
    # spawned, not forked: a fork would copy this process's open database connections
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=spawn) as pool:
        for wave in dependency_waves(tables):
            futures = {
                t: pool.submit(
                    run_table_job,
                    home,
                    run_config,
                    {**tags, "dagster/partition": t, "synth_pipeline/parallel": str(parallel)},
                )
                for t in wave
            }
            out.update({t: summary(f) for t, f in futures.items()})
    return out
