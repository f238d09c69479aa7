"""config_file[t]: the reviewed YAML file of a table, as an observable source asset.

Its data version is a hash of the file's bytes. Editing ``<project>/<table>.yaml`` gives the
partition a new data version at its next observation (the ``config_file_sensor`` observes every
30 seconds; "Observe sources" in the UI does it at once), which marks ``reviewed_config[t]``
and what is downstream of it stale, and lets the automation refresh exactly those partitions.
"""

import dagster as dg

from ..core.watch import config_file_versions
from ..partitions import table_partitions
from ..projects import dagster_name, partitions_name
from ..resources import SynthProject


def build_config_file(name: str) -> dg.SourceAsset:
    """Project ``name``'s config_file (``<name>/config_file``)."""

    @dg.observable_source_asset(
        name="config_file",
        key_prefix=[dagster_name(name)],
        partitions_def=table_partitions(name),
        group_name=dagster_name(name),
        description="resources/configuration-files/<project>/<table>.yaml as it is on disk; its "
        "data version is a hash of the file, so an edit makes reviewed_config[t] stale.",
    )
    def config_file(context, project: SynthProject) -> dg.DataVersionsByPartition:
        tables = context.instance.get_dynamic_partitions(partitions_name(name))
        versions = config_file_versions(project.for_project(name).files(), tables)
        return dg.DataVersionsByPartition({t: dg.DataVersion(v) for t, v in versions.items()})

    return config_file
