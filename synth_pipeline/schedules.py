"""The refresh schedule: snapshot and statistics of every table, on the project's cron.

The cron is ``refresh_schedule`` in ``<project>/project.yaml`` (default Mondays 03:00). The
schedule starts STOPPED: turn it on in the UI (Automation, ``refresh_schedule``) or with
``dagster schedule start refresh_schedule -w workspace.yaml``; the daemon runs it. A refresh
that finds the same statistics changes nothing downstream; changed statistics refresh the
config, reset its review to draft, and stop at the approval gate until someone approves.
"""

from __future__ import annotations

import dagster as dg
from dagster._utils.schedules import is_valid_cron_string

from .assets import column_stats, schema_snapshot
from .concurrency import PROJECT_TAG
from .core.config import ProjectFiles
from .core.errors import ConfigError
from .partitions import OMOP_TABLES
from .settings import project_name

REFRESH_SCHEDULE = "refresh_schedule"


def build_refresh_schedule(files: ProjectFiles) -> dg.ScheduleDefinition:
    cron = files.load_project().refresh_schedule
    if not is_valid_cron_string(cron):
        raise ConfigError(
            f"{cron!r} is not a cron expression (five fields, e.g. '0 3 * * 1' for Mondays 03:00)",
            file=str(files.project_file),
            setting="refresh_schedule",
        )

    @dg.schedule(
        name=REFRESH_SCHEDULE,
        cron_schedule=cron,
        target=[schema_snapshot, column_stats],
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Re-reads the schema and statistics of every table ({cron}, from "
        "project.yaml's refresh_schedule).",
    )
    def refresh_schedule(context: dg.ScheduleEvaluationContext):
        tables = sorted(context.instance.get_dynamic_partitions(OMOP_TABLES))
        if not tables:
            return dg.SkipReason("no tables yet: run synth-pipeline init or the new-extract sensor")
        when = context.scheduled_execution_time.isoformat()
        return [
            dg.RunRequest(
                run_key=f"refresh:{t}:{when}",
                partition_key=t,
                tags={"synth_pipeline/trigger": REFRESH_SCHEDULE, PROJECT_TAG: project_name()},
            )
            for t in tables
        ]

    return refresh_schedule
