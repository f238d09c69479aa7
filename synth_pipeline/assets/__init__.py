"""The five steps of the pipeline, one module each. Thin: read resources, call core, attach metadata."""

from .column_stats import column_stats
from .config_file import config_file
from .csv_bundle import csv_bundle
from .reviewed_config import reviewed_config
from .schema_snapshot import schema_snapshot
from .synthetic_table import synthetic_table

# the five steps in order, then the source asset standing for the reviewed YAML files
ALL_ASSETS = [
    schema_snapshot,
    column_stats,
    reviewed_config,
    synthetic_table,
    csv_bundle,
    config_file,
]

__all__ = [
    "ALL_ASSETS",
    "column_stats",
    "config_file",
    "csv_bundle",
    "reviewed_config",
    "schema_snapshot",
    "synthetic_table",
]
