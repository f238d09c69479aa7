"""What each project is called in Dagster: its key prefix, partitions, pool and job names.

Every project under ``resources/configuration-files/<project>/`` (a folder with a
``project.yaml``) gets the same five assets under its own key prefix (``demo/synthetic_table``),
in an asset group of its own name, with its own partitions (its tables), checks, jobs, sensors,
schedule, automation and write pool: one project's runs, automation and data versions never
reach another's.
"""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg

from .core.config import PROJECT_FILE
from .core.errors import ConfigError

# Dagster names (key parts, partitions, jobs, sensors) allow letters, digits and underscores
_VALID = re.compile(r"^[A-Za-z0-9_]+$")


def dagster_name(project: str) -> str:
    """The project's name as Dagster spells it (key prefix, group, name prefix)."""
    if not _VALID.match(project):
        raise ConfigError(
            f"project name {project!r} is not usable in Dagster: use letters, digits and "
            "underscores only",
            setting="project",
        )
    return project


def asset_key(project: str, name: str) -> dg.AssetKey:
    return dg.AssetKey([dagster_name(project), name])


def scoped(project: str, name: str) -> str:
    """A definition's name within the project: ``<project>__<name>`` (sensors, jobs ...)."""
    return f"{dagster_name(project)}__{name}"


def partitions_name(project: str) -> str:
    """The name of the project's dynamic partitions: its tables."""
    return scoped(project, "omop_table")


def write_pool(project: str) -> str:
    """The concurrency pool of the steps that write the project's destination."""
    return f"synth_pipeline_writes__{dagster_name(project)}"


def project_names(config_root: Path) -> list[str]:
    """The projects under the configuration root: the folders holding a project.yaml."""
    return sorted(p.parent.name for p in Path(config_root).glob(f"*/{PROJECT_FILE}"))
