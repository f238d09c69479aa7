"""``--parallel N``: a step's tables as partition ranges, each range one run of the step's job
(jobs.py), handed to the instance's own run launcher with ``dagster job launch`` (Dagster's
public command for launching a run), at most N at a time.

Dagster's default launcher runs each run in a process of its own; the next step starts once
the runs of a step have all ended. The project's write pool still
lets one run at a time write its destination (concurrency.py), so the write step is one run for
all its tables (parents first), or one per wave when the tables are not neighbours. Each
launch inherits this command's environment, and so does the run it starts: the runs read the
command's source, destination and project, and nothing secret goes into their config or tags.

An instance whose dagster.yaml queues runs for the daemon (``QueuedRunCoordinator``, Dagster's
default) is refused: the daemon would start them with its own environment, not this command's.
So is one with another launcher than Dagster's default (a container's environment is not this
command's either).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import dagster as dg

from .concurrency import free_run_slots, pid_gone
from .core.database import redact_text
from .core.errors import ConfigError

DEFINITIONS_MODULE = "synth_pipeline.definitions"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
PARALLEL_TAG = "synth_pipeline/parallel"  # the N of the command that launched the run
POLL_SECONDS = 0.5
WORKER_CHECK_POLLS = 10  # is the run's process still there: every 10 polls
START_PATIENCE_SECONDS = 300.0  # a launched run not started by then never will be


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
    if not isinstance(instance.run_launcher, dg.DefaultRunLauncher):
        raise ConfigError(
            f"{instance.root_directory}/dagster.yaml sets run_launcher "
            f"{type(instance.run_launcher).__name__}, whose runs would not have this command's "
            "settings; parallel runs need Dagster's DefaultRunLauncher (docs/deployment.md)",
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
) -> tuple[str, subprocess.Popen, IO[str]]:
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
    # a file, not a pipe: the run's processes inherit it and may write to it long after the
    # launch, and a pipe nobody reads would stop them once full
    output = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (launch_and_wait closes it)
    process = subprocess.Popen(
        command, env=env, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
    )
    return run_id, process, output


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    started = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.RUN_START).records
    return started[0].event_log_entry.dagster_event.pid if started else None


def _stuck(instance: dg.DagsterInstance, run_id: str, waited: float, patience: float) -> str | None:
    """Why a run that has not ended never will: its process died without ending it (killed,
    out of memory), or it has not started ``patience`` seconds after its launch. The process
    is on this machine: require_direct_launches allows Dagster's default launcher only."""
    pid = _worker_pid(instance, run_id)
    if pid is not None and pid_gone(pid):
        return f"the run's process (pid {pid}) ended before the run did"
    if pid is None and waited > patience:
        return f"the run did not start within {patience:.0f} s of its launch"
    return None


def _ended(
    instance: dg.DagsterInstance, run_id: str, start_patience: float = START_PATIENCE_SECONDS
) -> tuple[dg.DagsterRun | None, str | None]:
    """The run once it has ended, and why when it had to be ended here (see :func:`_stuck`):
    such a run is marked failed rather than waited for for ever. A run that did not succeed
    gives back any write slot it still holds, which otherwise only the daemon's run monitoring
    would do."""
    waited, why = 0.0, None
    while (run := instance.get_run_by_id(run_id)) is None or not run.is_finished:
        if round(waited / POLL_SECONDS) % WORKER_CHECK_POLLS == 0:
            why = _stuck(instance, run_id, waited, start_patience)
        if why:
            run = instance.get_run_by_id(run_id)  # it may have ended meanwhile
            if run is not None and run.is_finished:
                why = None
            elif run is not None:
                instance.report_run_failed(run, why)
                run = instance.get_run_by_id(run_id)
            break
        time.sleep(POLL_SECONDS)
        waited += POLL_SECONDS
    if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
        free_run_slots(instance, run_id)
    return run, why


def _why_not_launched(output: str) -> str:
    lines = [x.strip() for x in output.strip().splitlines() if x.strip()]
    errors = [x for x in lines if "Error" in x or "error" in x]
    return redact_text((errors or lines or ["no output"])[-1])


def read_back(instance: dg.DagsterInstance, run_id: str, why: str | None) -> LaunchedRun:
    """A launched run that has ended, as run_results.py reads runs. A failed run that never
    reached its step gets its run's own failure as its error, so its tables are not taken for
    done."""
    run = instance.get_run_by_id(run_id)
    events = [r.dagster_event for r in instance.all_logs(run_id) if r.is_dagster_event]
    ok = run is not None and run.status == dg.DagsterRunStatus.SUCCESS
    if not ok and not why and not any(e.is_step_event for e in events):
        failures = [
            e.message
            for e in events
            if e.event_type in (dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.RUN_CANCELED)
            and e.message
        ]
        status = run.status.value if run is not None else "missing"
        why = redact_text(failures[-1] if failures else f"the run ended {status} before its step")
    return LaunchedRun(run_id, ok, events, why)


def batches(ranges: list[list[str]], parallel: int) -> list[list[list[str]]]:
    """The ranges in launch order, ``parallel`` at a time."""
    return [ranges[i : i + parallel] for i in range(0, len(ranges), parallel)]


def launch_and_wait(
    instance: dg.DagsterInstance,
    ranges: list[list[str]],
    *,
    parallel: int,
    job_name: str,
    run_config: dict,
    tags: dict[str, str],
) -> Iterator[tuple[list[str], LaunchedRun]]:
    """Launch one run per range of tables, ``parallel`` at a time, and yield each range with
    its run once the runs launched with it have ended."""
    for batch in batches(ranges, parallel):
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
            for tables in batch
        ]
        outcomes = []
        for tables, run_id, process, output in launches:
            with output:
                process.wait()
                if process.returncode != 0:
                    output.seek(0)
                    why = f"the run was not launched: {_why_not_launched(output.read())}"
                    outcomes.append((tables, LaunchedRun(run_id, False, [], why)))
                    continue
            _, why = _ended(instance, run_id)
            outcomes.append((tables, read_back(instance, run_id, why)))
        yield from outcomes
