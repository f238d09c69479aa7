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
