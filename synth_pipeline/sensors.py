"""Sensors: a new extract in the source, an edited configuration file.

Each project has its own pair (``<project>__new_extract_sensor``, ``<project>__config_file_sensor``),
reading and requesting only that project's partitions.

``new_extract_sensor`` keeps a fingerprint per source table in its cursor (row count, largest
primary key, the ``cdm_source`` release) and, when one moves, requests ``schema_snapshot`` and
``column_stats`` for that table only; a table new in the source becomes a new partition.
``config_file_sensor`` keeps a hash per YAML file and records an observation of
``config_file[t]`` when a file changes, which the automation turns into a refresh of that
table's config, synthetic table and the bundle.
"""

from __future__ import annotations

import hashlib
import json

import dagster as dg

from .assets import project_assets
from .assets.step import DATA_VERSION_TAG
from .concurrency import PROJECT_TAG
from .core.config_files import ProjectFiles
from .core.schema import unusable_name
from .core.watch import changed_tables, config_file_versions, extract_fingerprints
from .partitions import table_partitions
from .projects import asset_key, partitions_name, scoped
from .resources import SourceDatabase, SynthProject

NEW_EXTRACT_SENSOR = "new_extract_sensor"
CONFIG_FILE_SENSOR = "config_file_sensor"


def _load_cursor(cursor: str | None) -> dict[str, str]:
    if not cursor:
        return {}
    try:
        value = json.loads(cursor)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def build_new_extract_sensor(name: str) -> dg.SensorDefinition:
    """Project ``name``'s new-extract sensor (``<name>__new_extract_sensor``)."""
    assets = project_assets(name)

    @dg.sensor(
        name=scoped(name, NEW_EXTRACT_SENSOR),
        target=[assets.schema_snapshot, assets.column_stats],
        minimum_interval_seconds=600,
        default_status=dg.DefaultSensorStatus.STOPPED,
        description=f"Notices a new extract of project {name} (row counts, largest ids, "
        "cdm_source release per table) and requests schema_snapshot and column_stats for the "
        "tables that changed; a new table becomes a new partition. Reads only aggregates; turn "
        "it on in the UI's Automation tab.",
    )
    def new_extract_sensor(
        context: dg.SensorEvaluationContext, source: SourceDatabase
    ) -> dg.SensorResult:
        before = _load_cursor(context.cursor)
        now = extract_fingerprints(source.engine(), source.db_schema)
        usable = {t: v for t, v in now.items() if not unusable_name(t)}
        changed = changed_tables(before, usable)
        known = set(context.instance.get_dynamic_partitions(partitions_name(name)))
        new = sorted(t for t in usable if t not in known)
        cursor = json.dumps(usable, sort_keys=True)
        if not changed and not new:
            return dg.SensorResult(
                skip_reason=f"the extract is unchanged ({len(usable)} tables)", cursor=cursor
            )
        context.log.info(
            f"extract changed in {len(changed)} table(s): {', '.join(changed)}"
            + (f"; new partitions: {', '.join(new)}" if new else "")
        )
        return dg.SensorResult(
            run_requests=[
                dg.RunRequest(
                    # the same extract never asks twice, even if the cursor were lost
                    run_key=f"extract:{t}:{hashlib.sha256(usable[t].encode()).hexdigest()[:16]}",
                    partition_key=t,
                    tags={"synth_pipeline/trigger": NEW_EXTRACT_SENSOR, PROJECT_TAG: name},
                )
                for t in changed
            ],
            dynamic_partitions_requests=[table_partitions(name).build_add_request(new)]
            if new
            else [],
            cursor=cursor,
        )

    return new_extract_sensor


def build_config_file_sensor(name: str) -> dg.SensorDefinition:
    """Project ``name``'s config-file sensor (``<name>__config_file_sensor``)."""

    @dg.sensor(
        name=scoped(name, CONFIG_FILE_SENSOR),
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Hashes every table's YAML file of project {name} and records a new data "
        "version of config_file[t] when one changes, so reviewed_config[t] and what follows "
        "turn stale.",
    )
    def config_file_sensor(
        context: dg.SensorEvaluationContext, project: SynthProject
    ) -> dg.SensorResult:
        files = project.for_project(name).files()
        before = _load_cursor(context.cursor)
        tables = context.instance.get_dynamic_partitions(partitions_name(name))
        now = config_file_versions(files, tables)
        changed = changed_tables(before, now)
        cursor = json.dumps(now, sort_keys=True)
        if not changed:
            return dg.SensorResult(skip_reason="no configuration file changed", cursor=cursor)
        context.log.info(f"configuration changed: {', '.join(changed)}")
        return dg.SensorResult(
            asset_events=config_observations(files, {t: now[t] for t in changed}),
            cursor=cursor,
        )

    return config_file_sensor


def config_observations(files: ProjectFiles, versions: dict[str, str]) -> list[dg.AssetObservation]:
    """Observations of the project's config_file[t] carrying each file's hash as the data
    version."""
    return [
        dg.AssetObservation(
            asset_key=asset_key(files.project, "config_file"),
            partition=t,
            tags={DATA_VERSION_TAG: v},
            metadata={"file": dg.MetadataValue.path(str(files.table_file(t)))},
        )
        for t, v in sorted(versions.items())
    ]


def record_config_observations(
    instance: dg.DagsterInstance, files: ProjectFiles, tables: list[str]
) -> None:
    """Record the current version of the tables' files, as the sensor would (headless runs do
    this first, so a config the run reads is not seen as changed afterwards)."""
    for event in config_observations(files, config_file_versions(files, tables)):
        instance.report_runless_asset_event(event)
