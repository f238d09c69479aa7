"""The refresh schedule: snapshot and statistics of every table, on the project's cron.

One per project (``<project>__refresh_schedule``). The cron is ``refresh_schedule`` in
``<project>/project.yaml`` (default Mondays 03:00). The schedule starts STOPPED: turn it on in
the UI (Automation, ``demo__refresh_schedule``) or with
``dagster schedule start demo__refresh_schedule -w workspace.yaml``; the daemon runs it. A refresh
that finds the same statistics changes nothing downstream; changed statistics refresh the
config, reset its review to draft, and stop at the approval gate until someone approves.
"""

from __future__ import annotations

import dagster as dg

from .assets import project_assets
from .concurrency import PROJECT_TAG
from .core.config import ProjectFiles
from .core.errors import ConfigError
from .projects import partitions_name, scoped

REFRESH_SCHEDULE = "refresh_schedule"


def _require_cron(cron: str, files: ProjectFiles) -> None:
    """Refuse a ``refresh_schedule`` Dagster would not accept, naming the file and setting."""
    try:
        dg.ScheduleDefinition(name="refresh_schedule_check", cron_schedule=cron, target="*")
    except dg.DagsterInvalidDefinitionError:
        raise ConfigError(
            f"{cron!r} is not a cron expression (five fields, e.g. '0 3 * * 1' for Mondays 03:00)",
            file=str(files.project_file),
            setting="refresh_schedule",
        ) from None


def build_refresh_schedule(files: ProjectFiles) -> dg.ScheduleDefinition:
    cron = files.load_project().refresh_schedule
    _require_cron(cron, files)
    name = files.project
    assets = project_assets(name)

    @dg.schedule(
        name=scoped(name, REFRESH_SCHEDULE),
        cron_schedule=cron,
        target=[assets.schema_snapshot, assets.column_stats],
        default_status=dg.DefaultScheduleStatus.STOPPED,
        description=f"Re-reads the schema and statistics of every table of project {name} "
        f"({cron}, from project.yaml's refresh_schedule).",
    )
    def refresh_schedule(context: dg.ScheduleEvaluationContext):
        tables = sorted(context.instance.get_dynamic_partitions(partitions_name(name)))
        if not tables:
            return dg.SkipReason("no tables yet: run synth-pipeline init or the new-extract sensor")
        when = context.scheduled_execution_time.isoformat()
        return [
            dg.RunRequest(
                run_key=f"refresh:{t}:{when}",
                partition_key=t,
                tags={"synth_pipeline/trigger": REFRESH_SCHEDULE, PROJECT_TAG: name},
            )
            for t in tables
        ]

    return refresh_schedule
