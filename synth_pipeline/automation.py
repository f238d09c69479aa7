"""Declarative automation: which partitions refresh by themselves, and when.

- ``reviewed_config[t]`` re-runs when its file, snapshot or statistics get a new data version
  (an edit, a new extract); not when a dependency was merely re-run to the same result.
- ``synthetic_table[t]`` and ``csv_bundle`` re-run when what they are built from changed, and
  only while every blocking check upstream passed: an unapproved or stale config stops the
  chain at the gate (blocking checks block within a run only, so the condition says it too,
  and the generating code refuses an unapproved config whatever launches it). The checks are
  partitioned, so the gate of ``synthetic_table[t]`` reads table t's results only.
- ``schema_snapshot`` and ``column_stats`` are read from the source only when the new-extract
  sensor or the refresh schedule asks, never by automation.

Each project has its own automation sensor (``<project>__automation``) over its own assets,
declared RUNNING so the conditions act as soon as the daemon runs; its runs carry the
project's tag.
"""

import dagster as dg

from .concurrency import PROJECT_TAG
from .projects import dagster_name, scoped

AUTOMATION_SENSOR = "automation"


def on_upstream_change() -> dg.AutomationCondition:
    """Run a partition that is missing, or whose dependencies' data versions changed."""
    return (
        (
            dg.AutomationCondition.newly_missing()
            | dg.AutomationCondition.any_deps_match(dg.AutomationCondition.data_version_changed())
        ).since_last_handled()
        & ~dg.AutomationCondition.any_deps_missing()
        & ~dg.AutomationCondition.any_deps_in_progress()
        & ~dg.AutomationCondition.in_progress()
    ).with_label("on_upstream_change")


def behind_gate() -> dg.AutomationCondition:
    """As on_upstream_change, and only while every blocking check upstream passed."""
    return (
        on_upstream_change() & dg.AutomationCondition.all_deps_blocking_checks_passed()
    ).with_label("on_upstream_change_behind_gate")


def automation_sensor_name(project: str) -> str:
    return scoped(project, AUTOMATION_SENSOR)


def build_automation_sensor(project: str) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        automation_sensor_name(project),
        target=dg.AssetSelection.key_prefixes([dagster_name(project)]),
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=30,
        emit_backfills=False,
        run_tags={PROJECT_TAG: project},
        description=f"Refreshes project {project}'s reviewed_config, synthetic_table and "
        "csv_bundle partitions whose inputs changed (an edited config, new statistics), and no "
        "others.",
    )
