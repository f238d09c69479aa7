"""Jobs for runs launched by a run launcher (the UI's launchpad, `--parallel`, a deployment).

``synthesise_table``: the four table steps of one partition under the multiprocess executor,
so several partitions can run side by side on an instance with PostgreSQL storage.
``publish_bundle``: the CSV bundle, once every table is written.

``reconstructable`` needs module-level functions that return the job; they load the
Definitions afresh in each step's process, from the same environment variables.
"""

from __future__ import annotations

import dagster as dg

from .assets import column_stats, csv_bundle, reviewed_config, schema_snapshot, synthetic_table

TABLE_JOB = "synthesise_table"
BUNDLE_JOB = "publish_bundle"

synthesise_table_job = dg.define_asset_job(
    TABLE_JOB,
    selection=[schema_snapshot, column_stats, reviewed_config, synthetic_table],
    executor_def=dg.multiprocess_executor,
    description="Snapshot, statistics, reviewed config and synthetic table of one OMOP table, "
    "each step in its own process.",
)

publish_bundle_job = dg.define_asset_job(
    BUNDLE_JOB,
    selection=[csv_bundle],
    description="The CSV bundle from the synthetic tables in the destination.",
)

ALL_JOBS = [synthesise_table_job, publish_bundle_job]


def table_job() -> dg.JobDefinition:
    from .definitions import defs

    return defs.resolve_job_def(TABLE_JOB)


def bundle_job() -> dg.JobDefinition:
    from .definitions import defs

    return defs.resolve_job_def(BUNDLE_JOB)
