"""One partition per OMOP table, a partitions definition per project.

The tables come from the source, not from code: the CLI adds the source's tables before a run
and the new-extract sensor adds any table that appears, so a new table is a new partition
without a code change. Each project has its own (``<project>__omop_table``), so adding a table
to one project never shows it in another.
"""

import functools

import dagster as dg

from .projects import partitions_name


@functools.cache
def table_partitions(project: str) -> dg.DynamicPartitionsDefinition:
    return dg.DynamicPartitionsDefinition(name=partitions_name(project))


def table_check(
    name: str, asset: dg.AssetKey, partitions, *, blocking: bool, description: str
) -> dg.AssetCheckSpec:
    """A check of a project's partitioned step with one result per table (``partitions``:
    the project's :func:`table_partitions`), so one table's result never stands for another's."""
    return dg.AssetCheckSpec(
        name, asset=asset, partitions_def=partitions, blocking=blocking, description=description
    )
