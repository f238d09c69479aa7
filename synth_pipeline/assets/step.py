"""What every table step's asset shares: its key under the project's prefix, its group, one
partition per table, and values stored by the state IO manager."""

from __future__ import annotations

import dagster as dg

from ..partitions import table_partitions
from ..projects import asset_key, dagster_name


def table_step(project: str, step: str, *, reads: tuple[str, ...] = (), **asset_args):
    """The ``@dg.asset`` decorator of ``project``'s ``step`` (``<project>/<step>``); ``reads``
    names the earlier steps whose stored values it takes as inputs."""
    ins = {parent: dg.AssetIn(key=asset_key(project, parent)) for parent in reads}
    return dg.asset(
        name=step,
        key_prefix=[dagster_name(project)],
        ins=ins or None,
        partitions_def=table_partitions(project),
        io_manager_key="state_io_manager",
        group_name=dagster_name(project),
        **asset_args,
    )
