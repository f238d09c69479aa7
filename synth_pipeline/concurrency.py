"""At most one run writes the destination's tables at a time, however the run started.

The steps that write the destination (``synthetic_table``, ``csv_bundle``) share one Dagster
concurrency pool with a limit of 1, so a CLI run, a run launched from the UI, a sensor's, a
schedule's or the automation's wait for each other's write step instead of writing the same
table together. Dagster's executors claim the slot (the in-process one the CLI uses too), and
the instance keeps the claims, so this holds across processes sharing ``DAGSTER_HOME``.
Reading the source, summarising and reviewing still run side by side (``--parallel``).
"""

from __future__ import annotations

import dagster as dg

WRITE_POOL = "synth_pipeline_destination_writes"
WRITE_LIMIT = 1
PROJECT_TAG = "synth_pipeline/project"


def ensure_write_pool(instance: dg.DagsterInstance) -> None:
    """Give the instance's write pool its limit of one slot (a new instance has none)."""
    storage = instance.event_log_storage
    if not storage.supports_global_concurrency_limits:
        return
    info = storage.get_concurrency_info(WRITE_POOL)
    if info.slot_count != WRITE_LIMIT:
        storage.set_concurrency_slots(WRITE_POOL, WRITE_LIMIT)
