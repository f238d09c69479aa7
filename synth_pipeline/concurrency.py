"""At most one run writes a project's destination tables at a time, however the run started.

The steps that write a project's destination (``<project>/synthetic_table``,
``<project>/csv_bundle``) share the project's Dagster concurrency pool
(``synth_pipeline_writes__<project>``) with a limit of 1, so a CLI run, a run launched from the
UI, a sensor's, a schedule's or the automation's wait for each other's write step instead of
writing the same table together. Dagster's executors claim the slot (the in-process one the CLI
uses too), and the instance keeps the claims, so this holds across processes sharing
``DAGSTER_HOME``. Another project has a pool of its own and writes meanwhile. Reading the
source, summarising and reviewing still run side by side (``--parallel``).
"""

from __future__ import annotations

import os
import socket

import dagster as dg

from .projects import write_pool

WRITE_LIMIT = 1
PROJECT_TAG = "synth_pipeline/project"


def ensure_write_pool(instance: dg.DagsterInstance, project: str) -> None:
    """Give the project's write pool its limit of one slot (a new instance has none)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    pool = write_pool(project)
    info = storage.get_concurrency_info(pool)
    if info.slot_count != WRITE_LIMIT:
        storage.set_concurrency_slots(pool, WRITE_LIMIT)


PROCESS_TAG = "synth_pipeline/process"  # host:pid of the command that ran it in process


def process_tag() -> dict[str, str]:
    """The tag a command's in-process runs carry, so a later command can tell that the process
    holding a write slot is gone."""
    return {PROCESS_TAG: f"{socket.gethostname()}:{os.getpid()}"}


def pid_gone(pid: int) -> bool:
    """Whether no process of this machine has ``pid`` (one we may not signal is still there)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def free_run_slots(instance: dg.DagsterInstance, run_id: str) -> None:
    """Give back every concurrency slot ``run_id`` holds (a run that ended without its own
    process doing so)."""
    storage = instance.event_log_storage
    if storage.supports_global_concurrency_limits:
        storage.free_concurrency_slots_for_run(run_id)


def _process_gone(run: dg.DagsterRun) -> bool:
    host, _, pid = (run.tags.get(PROCESS_TAG) or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # not ours to judge: the daemon's run monitoring handles launched runs
    return pid_gone(int(pid))


def release_abandoned_slots(instance: dg.DagsterInstance) -> list[str]:
    """Free the write slots held by runs whose command was killed (SIGKILL, a reboot, the OOM
    killer): an in-process run's slot is released by its own process, so a killed one would
    keep it and every later write of the project would wait for ever. Such a run is marked
    failed. Returns the ids of the runs whose slots were freed."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return []
    freed = []
    for run_id in sorted(storage.get_concurrency_run_ids()):
        run = instance.get_run_by_id(run_id)
        if run is None or not (run.is_finished or _process_gone(run)):
            continue  # alive, or not a run of this instance's: left alone
        if not run.is_finished:
            instance.report_run_failed(run, "the command running it was killed; slot released")
        free_run_slots(instance, run_id)
        freed.append(run_id)
    return freed
