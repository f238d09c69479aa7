"""Declarative automation: which partitions refresh by themselves, and when.

- ``reviewed_config[t]`` re-runs when its file, snapshot or statistics get a new data version
  (an edit, a new extract); not when a dependency was merely re-run to the same result.
- ``synthetic_table[t]`` and ``csv_bundle`` re-run when what they are built from changed, and
  only while every blocking check upstream passed: an unapproved or stale config stops the
  chain at the gate (blocking checks block within a run only, so the condition says it too,
  and the generating code refuses an unapproved config whatever launches it).
- ``schema_snapshot`` and ``column_stats`` are read from the source only when the new-extract
  sensor or the refresh schedule asks, never by automation.

The automation sensor is declared RUNNING so the conditions act as soon as the daemon runs.
"""

import dagster as dg

from .concurrency import PROJECT_TAG
from .settings import project_name

AUTOMATION_SENSOR = "synth_pipeline_automation"


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


automation_sensor = dg.AutomationConditionSensorDefinition(
    AUTOMATION_SENSOR,
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    emit_backfills=False,
    run_tags={PROJECT_TAG: project_name()},
    description="Refreshes reviewed_config, synthetic_table and csv_bundle partitions whose "
    "inputs changed (an edited config, new statistics), and no others.",
)
