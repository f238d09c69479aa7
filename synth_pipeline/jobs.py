"""Jobs for runs launched by a run launcher (the UI's launchpad, ``--parallel``, a deployment).

Per project (``<project>__synthesise_table``, ``<project>__publish_bundle``,
``<project>__<step>_step``):
``synthesise_table``: the four table steps of one partition, one after another in the run's own
process (the in-process executor: each step needs the one before, so a process per step would
only add start-up time); several partitions run side by side as runs of their own. One table
per run: a step run over several tables yields no output for the next step of the same run
(assets/step.py), so for many tables backfill the assets instead, which runs each step once for
all of them.
``publish_bundle``: the CSV bundle, once every table is written.
``<step>_step`` (one per table step): that step alone, for one table or a range of them; the
CLI's ``--parallel`` launches these (launched.py). A job holding the earlier steps, run with
only this step's op selected, would hand the step its inputs as lists instead of by table.
All carry the project's tag.
"""

from __future__ import annotations

import dagster as dg

from .assets import project_assets
from .concurrency import PROJECT_TAG
from .projects import scoped

TABLE_JOB = "synthesise_table"
BUNDLE_JOB = "publish_bundle"
STEP_JOB = "step"


def table_job_name(project: str) -> str:
    return scoped(project, TABLE_JOB)


def bundle_job_name(project: str) -> str:
    return scoped(project, BUNDLE_JOB)


def step_job_name(project: str, step: str) -> str:
    """The job of one table step, for a range of tables (``<project>__<step>_step``)."""
    return scoped(project, f"{step}_{STEP_JOB}")


def build_jobs(project: str) -> list:
    assets = project_assets(project)
    step_jobs = [
        dg.define_asset_job(
            step_job_name(project, step.key.path[-1]),
            selection=[step],
            executor_def=dg.in_process_executor,
            tags={PROJECT_TAG: project},
            description=f"Step {step.key.path[-1]} of project {project} alone, for one table or a "
            "range of them (the CLI's --parallel launches these).",
        )
        for step in assets.table_steps
    ]
    return step_jobs + [
        dg.define_asset_job(
            table_job_name(project),
            selection=assets.table_steps,
            executor_def=dg.in_process_executor,
            tags={PROJECT_TAG: project},
            description=f"Snapshot, statistics, reviewed config and synthetic table of one OMOP "
            f"table of project {project}, in the run's process.",
        ),
        dg.define_asset_job(
            bundle_job_name(project),
            selection=[assets.csv_bundle],
            tags={PROJECT_TAG: project},
            description=f"Project {project}'s CSV bundle from the synthetic tables in its "
            "destination.",
        ),
    ]
