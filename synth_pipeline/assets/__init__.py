"""The five steps of the pipeline, one module each. Thin: read resources, call core, attach metadata.

Each module builds its asset for one project: ``project_assets("demo").synthetic_table`` is the
asset ``demo/synthetic_table``, in the group ``demo``, partitioned by the demo's tables.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import dagster as dg

from ..partitions import table_partitions
from .column_stats import build_column_stats
from .config_file import build_config_file
from .csv_bundle import build_csv_bundle
from .reviewed_config import build_reviewed_config
from .schema_snapshot import build_schema_snapshot
from .synthetic_table import build_synthetic_table


@dataclass(frozen=True)
class ProjectAssets:
    """One project's assets, under its key prefix."""

    project: str
    schema_snapshot: dg.AssetsDefinition
    column_stats: dg.AssetsDefinition
    reviewed_config: dg.AssetsDefinition
    synthetic_table: dg.AssetsDefinition
    csv_bundle: dg.AssetsDefinition
    config_file: dg.SourceAsset

    @property
    def partitions(self) -> dg.DynamicPartitionsDefinition:
        return table_partitions(self.project)

    @property
    def partitions_name(self) -> str:
        return self.partitions.name

    @property
    def config_steps(self) -> list[dg.AssetsDefinition]:
        return [self.schema_snapshot, self.column_stats, self.reviewed_config]

    @property
    def table_steps(self) -> list[dg.AssetsDefinition]:
        return [*self.config_steps, self.synthetic_table]

    @property
    def all(self) -> list:
        """The five steps in order, then the source asset standing for the reviewed files."""
        return [*self.table_steps, self.csv_bundle, self.config_file]


@functools.cache
def project_assets(project: str) -> ProjectAssets:
    """The assets of ``project`` (built once per process, so every user shares them)."""
    return ProjectAssets(
        project=project,
        schema_snapshot=build_schema_snapshot(project),
        column_stats=build_column_stats(project),
        reviewed_config=build_reviewed_config(project),
        synthetic_table=build_synthetic_table(project),
        csv_bundle=build_csv_bundle(project),
        config_file=build_config_file(project),
    )


__all__ = ["ProjectAssets", "project_assets"]
