"""The one Definitions object: every project's assets, checks, jobs, sensors, schedule and
automation, and the resources they share.

``dagster dev -w workspace.yaml`` loads ``defs`` from here. Each project folder under the
configuration root (a folder with a ``project.yaml``) contributes its own assets under its key
prefix and group (``demo/synthetic_table`` in the group ``demo``), with its own partitions,
jobs, sensors, schedule and automation (see projects.py). Connection URLs come from the
environment (see environment.py and the README); with none set, the source is the bundled demo
extract and each project's destination an SQLite file of its own under the work folder.
"""

from __future__ import annotations

import dagster as dg

from . import environment
from .assets import project_assets
from .automation import build_automation_sensor
from .dask_resource import DaskCluster
from .jobs import build_jobs
from .projects import project_names
from .resources import DestinationDatabase, JsonStateIOManager, SourceDatabase, SynthProject
from .schedules import build_refresh_schedule
from .sensors import build_config_file_sensor, build_new_extract_sensor


def _env_or_none(names: tuple[str, ...]):
    found = environment.first_env(names)
    return dg.EnvVar(found[0]) if found else None


def build_resources() -> dict[str, object]:
    """Resources wired to the environment: URLs as EnvVar references, never as literal text.

    They serve every project: each asset reads its own project's files through
    ``SynthProject.for_project``, and stored values sit under the asset's key, whose prefix is
    the project."""
    return {
        "source": SourceDatabase(
            url=_env_or_none(environment.SOURCE_URL_VARS),
            db_schema=_env_or_none(environment.SOURCE_SCHEMA_VARS),
        ),
        "destination": DestinationDatabase(
            url=_env_or_none(environment.DESTINATION_URL_VARS),
            db_schema=_env_or_none(environment.DESTINATION_SCHEMA_VARS),
        ),
        "project": SynthProject(
            project=environment.project_name(),
            config_root=str(environment.config_root()),
            bundle_dir=str(environment.bundle_dir(environment.project_name())),
        ),
        "state_io_manager": JsonStateIOManager(base_dir=str(environment.work_dir() / "state")),
        # none unless SYNTH_DASK_SCHEDULER or SYNTH_DASK_LOCAL_WORKERS is set (docs/distributed.md)
        "dask": DaskCluster(),
    }


def build_project_definitions(project: SynthProject) -> dg.Definitions:
    """One project's assets, checks, jobs, sensors, schedule and automation (no resources)."""
    name = project.project
    return dg.Definitions(
        assets=project_assets(name).all,
        jobs=build_jobs(name),
        sensors=[
            build_new_extract_sensor(name),
            build_config_file_sensor(name),
            build_automation_sensor(name),
        ],
        schedules=[build_refresh_schedule(project.files())],
    )


def build_definitions(projects: list[str] | None = None) -> dg.Definitions:
    """Every project under the configuration root (or those named), merged."""
    resources = build_resources()
    shared: SynthProject = resources["project"]  # type: ignore[assignment]
    names = projects or project_names(environment.config_root()) or [shared.project]
    return dg.Definitions.merge(
        *(build_project_definitions(shared.for_project(n)) for n in names),
        # runs launched from the UI (a backfill's included) run their steps in the run's own
        # process, as the table job does (jobs.py): a process per step only adds start-up time
        dg.Definitions(resources=resources, executor=dg.in_process_executor),
    )


defs = build_definitions()
