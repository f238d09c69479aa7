"""``--parallel N``: a step's tables as up to N partition ranges, each range one run of the
step's job (jobs.py), handed to the instance's own run launcher with ``dagster job launch``, Dagster's public command for launching a run.

The launcher (Dagster's default runs each run in a process of its own) starts the runs of a step
side by side; the next step starts once they have all ended. The project's write pool still
lets one run at a time write its destination (concurrency.py), so the write step is one run for
all its tables (parents first), or one per wave when the tables are not neighbours. Each
launch inherits this command's environment, and so does the run it starts: the runs read the
command's source, destination and project, and nothing secret goes into their config or tags.

An instance whose dagster.yaml queues runs for the daemon (``QueuedRunCoordinator``, Dagster's
default) is refused: the daemon would start them with its own environment, not this command's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import dagster as dg

from .core.database import redact_text
from .core.errors import ConfigError

DEFINITIONS_MODULE = "synth_pipeline.definitions"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
PARALLEL_TAG = "synth_pipeline/parallel"  # the N of the command that launched the run
POLL_SECONDS = 0.5
WORKER_CHECK_POLLS = 10  # is the run's process still there: every 10 polls


def require_direct_launches(instance: dg.DagsterInstance) -> None:
    """Refuse an instance whose runs would not run with this command's settings."""
    if instance.is_ephemeral:
        raise ConfigError(
            "parallel runs need a persistent instance: set DAGSTER_HOME to a folder whose "
            "dagster.yaml uses PostgreSQL storage (see configs/dagster-postgres.yaml)",
            setting="--parallel",
        )
    if isinstance(instance.run_coordinator, dg.QueuedRunCoordinator):
        raise ConfigError(
            f"{instance.root_directory}/dagster.yaml queues runs for the Dagster daemon "
            "(run_coordinator: QueuedRunCoordinator, Dagster's default), which would start them "
            "with its own settings, not this command's; give the command a DAGSTER_HOME whose "
            "dagster.yaml has the same storage and run_coordinator DefaultRunCoordinator "
            "(docs/deployment.md), or launch a backfill from the UI",
            setting="--parallel",
        )


def partition_tags(tables: list[str]) -> dict[str, str]:
    """The tags that make a run of ``tables`` (neighbours among the partitions)."""
    if len(tables) == 1:
        return {"dagster/partition": tables[0]}
    return {RANGE_START: tables[0], RANGE_END: tables[-1]}


def split_ranges(blocks: list[list[str]], parts: int) -> list[list[str]]:
    """``blocks`` (each a range of neighbouring partitions) cut in halves, the longest first,
    until there are ``parts`` ranges or every range is one table; order kept."""
    out = [list(b) for b in blocks if b]
    while len(out) < parts:
        i = max(range(len(out)), key=lambda j: len(out[j]))
        if len(out[i]) < 2:
            break
        half = len(out[i]) // 2
        out[i : i + 1] = [out[i][:half], out[i][half:]]
    return out


@dataclass
class LaunchedRun:
    """A launched run's outcome read back from the instance, with the attributes of an
    in-process result that run_results.py reads; ``error`` when it was not launched or its
    process died)."""

    run_id: str
    success: bool
    all_events: list
    error: str | None = None

    def get_asset_check_evaluations(self) -> list:
        return [
            e.asset_check_evaluation_data
            for e in self.all_events
            if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        ]


def _launch(
    instance: dg.DagsterInstance,
    *,
    job_name: str,
    tables: list[str],
    run_config: dict,
    tags: dict[str, str],
) -> tuple[str, subprocess.Popen]:
    run_id = str(uuid.uuid4())
    command = [
        sys.executable, "-m", "dagster", "job", "launch",
        "-m", DEFINITIONS_MODULE,
        "-j", job_name,
        "--run-id", run_id,
        "--config-json", json.dumps(run_config),
        "--tags", json.dumps({**tags, **partition_tags(tables)}),
    ]  # fmt: skip
    env = {**os.environ, "DAGSTER_HOME": str(instance.root_directory)}
    process = subprocess.Popen(
        command,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return run_id, process


def _worker_gone(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the run's process if it ran on this machine (Dagster's default launcher)
    and has ended; None while it lives or when another launcher's process is not ours to see."""
    if not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
        return None
    started = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START).records
    pid = started[0].event_log_entry.dagster_event.pid if started else None
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    except PermissionError:
        return None
    return None


def _ended(instance: dg.DagsterInstance, run_id: str) -> tuple[dg.DagsterRun, str | None]:
    """The run once it has ended, and why, when its process died without ending it (killed,
    out of memory): the run is then marked failed rather than waited for for ever."""
    polls = 0
    while True:
        run = instance.get_run_by_id(run_id)
        if run is not None and run.is_finished:
            return run, None
        if run is not None and polls % WORKER_CHECK_POLLS == 0:
            pid = _worker_gone(instance, run_id)
            run = instance.get_run_by_id(run_id)  # it may have ended just before its process
            if pid is not None and run is not None and not run.is_finished:
                why = f"the run's process (pid {pid}) ended before the run did"
                instance.report_run_failed(run, why)
                return instance.get_run_by_id(run_id) or run, why
        polls += 1
        time.sleep(POLL_SECONDS)


def _why_not_launched(output: str) -> str:
    lines = [x.strip() for x in output.strip().splitlines() if x.strip()]
    errors = [x for x in lines if "Error" in x or "error" in x]
    return redact_text((errors or lines or ["no output"])[-1])


def launch_and_wait(
    instance: dg.DagsterInstance,
    ranges: list[list[str]],
    *,
    job_name: str,
    run_config: dict,
    tags: dict[str, str],
) -> Iterator[tuple[list[str], LaunchedRun]]:
    """Launch one run per range of tables, all at once, then yield each range with its run
    once every run has ended."""
    launches = [
        (
            tables,
            *_launch(
                instance,
                job_name=job_name,
                tables=tables,
                run_config=run_config,
                tags=tags,
            ),
        )
        for tables in ranges
    ]
    outcomes = []
    for tables, run_id, process in launches:
        output, _ = process.communicate()
        if process.returncode != 0:
            why = f"the run was not launched: {_why_not_launched(output)}"
            outcomes.append((tables, LaunchedRun(run_id, False, [], why)))
            continue
        run, died = _ended(instance, run_id)
        events = [r.dagster_event for r in instance.all_logs(run_id) if r.is_dagster_event]
        ok = run.status == dg.DagsterRunStatus.SUCCESS
        outcomes.append((tables, LaunchedRun(run_id, ok, events, died)))
    yield from outcomes
