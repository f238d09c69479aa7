"""The demo project's steps on a temporary instance of a test's own, for tests that
materialise steps directly (``dg.materialize``) rather than through the CLI."""

from __future__ import annotations

import dagster as dg

from synth_pipeline.assets import project_assets
from synth_pipeline.concurrency import ensure_write_pool
from synth_pipeline.dask_resource import DaskCluster
from synth_pipeline.resources import (
    DestinationDatabase,
    JsonStateIOManager,
    SourceDatabase,
    SynthProject,
)


def demo_on_instance(tmp_path, source_url: str, config_root, tables: list[str]) -> dict:
    """A local instance under ``tmp_path`` with ``tables`` as demo's partitions (in that
    order) and the write pool as the CLI sets it, and the resources of a run that writes
    ``tmp_path/dest.sqlite``: {"instance", "resources", "dest", "root"}."""
    (tmp_path / "home").mkdir()
    instance = dg.DagsterInstance.local_temp(str(tmp_path / "home"))
    instance.add_dynamic_partitions(project_assets("demo").partitions_name, tables)
    ensure_write_pool(instance, "demo")  # the project's one write slot, as the CLI sets it
    dest = tmp_path / "dest.sqlite"
    resources = {
        "source": SourceDatabase(url=source_url),
        "destination": DestinationDatabase(url=f"sqlite:///{dest}"),
        "project": SynthProject(
            project="demo", config_root=str(config_root), bundle_dir=str(tmp_path / "bundle")
        ),
        "state_io_manager": JsonStateIOManager(base_dir=str(tmp_path / "state")),
        "dask": DaskCluster(),
    }
    return {"instance": instance, "resources": resources, "dest": dest, "root": config_root}
