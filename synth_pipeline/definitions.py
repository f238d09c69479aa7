"""The one Definitions object: assets, checks, resources, sensors, schedules and automation.

``dagster dev -w workspace.yaml`` loads ``defs`` from here. Connection URLs come from the
environment (see settings.py and the README); with none set, the source is the bundled demo
extract and the destination an SQLite file under the work folder.
"""

from __future__ import annotations

import dagster as dg

from . import settings
from .assets import ALL_ASSETS
from .automation import automation_sensor
from .jobs import ALL_JOBS
from .resources import DestinationDatabase, JsonStateIOManager, SourceDatabase, SynthProject
from .schedules import build_refresh_schedule
from .sensors import config_file_sensor, new_extract_sensor


def _env_or_none(names: tuple[str, ...]):
    found = settings.first_env(names)
    return dg.EnvVar(found[0]) if found else None


def build_resources() -> dict[str, object]:
    """Resources wired to the environment: URLs as EnvVar references, never as literal text."""
    return {
        "source": SourceDatabase(
            url=_env_or_none(settings.SOURCE_URL_VARS),
            db_schema=_env_or_none(settings.SOURCE_SCHEMA_VARS),
        ),
        "destination": DestinationDatabase(
            url=_env_or_none(settings.DESTINATION_URL_VARS),
            db_schema=_env_or_none(settings.DESTINATION_SCHEMA_VARS),
        ),
        "project": SynthProject(
            project=settings.project_name(),
            config_root=str(settings.config_root()),
            bundle_dir=str(settings.bundle_dir(settings.project_name())),
        ),
        "state_io_manager": JsonStateIOManager(
            base_dir=str(settings.work_dir() / "state"), project=settings.project_name()
        ),
    }


def build_definitions() -> dg.Definitions:
    resources = build_resources()
    project: SynthProject = resources["project"]  # type: ignore[assignment]
    return dg.Definitions(
        assets=ALL_ASSETS,
        resources=resources,
        jobs=ALL_JOBS,
        sensors=[new_extract_sensor, config_file_sensor, automation_sensor],
        schedules=[build_refresh_schedule(project.files())],
    )


defs = build_definitions()
