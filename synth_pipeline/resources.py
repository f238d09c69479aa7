"""Dagster resources: the source, the destination, the project's files, and stored asset values.

Database URLs reach the resources through environment variables (``dg.EnvVar``), so the UI,
run config and metadata show a variable's name and never a password.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from . import environment
from .core.config import ProjectConfig
from .core.config_files import ProjectFiles
from .core.database import open_source, open_writable_destination, redact
from .demo.loader import ensure_demo_sqlite


class SourceDatabase(dg.ConfigurableResource):
    """The OMOP extract, opened read-only. With no URL set, the bundled demo extract in SQLite."""

    url: str | None = None
    db_schema: str | None = None
    _engine: Engine | None = PrivateAttr(default=None)

    def resolved_url(self) -> str:
        if self.url:
            return self.url
        return ensure_demo_sqlite(environment.demo_source_path())

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = open_source(self.resolved_url())
        return self._engine

    def describe(self) -> str:
        return redact(self.resolved_url())

    def teardown_after_execution(self, context) -> None:
        if self._engine is not None:
            self._engine.dispose()


class DestinationDatabase(dg.ConfigurableResource):
    """The existing database the synthetic tables are written to."""

    url: str | None = None
    db_schema: str | None = None
    # one engine per project: with no URL set, each project has a database of its own
    _engines: dict[str, Engine] = PrivateAttr(default_factory=dict)

    def resolved_url(self, project: str) -> str:
        return self.url or environment.default_destination_url(project)

    def engine(self, project: str) -> Engine:
        if project not in self._engines:
            self._engines[project] = open_writable_destination(
                self.resolved_url(project), self.db_schema
            )
        return self._engines[project]

    def describe(self, project: str) -> str:
        return redact(self.resolved_url(project))

    def teardown_after_execution(self, context) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()


class SynthProject(dg.ConfigurableResource):
    """The reviewed configuration files of one project, and the run's seed, scale and bundle."""

    project: str = "demo"
    config_root: str = ""
    bundle_dir: str = ""
    seed: int | None = None
    scale: float | None = None
    chunk_rows: int | None = None
    copy_vocabulary: bool = True  # False: vocabulary tables are left for a later load

    def for_project(self, name: str) -> SynthProject:
        """This resource as the assets of project ``name`` read it: itself when it is that
        project's (a CLI run), else that project's own files and bundle folder (the UI's code
        location serves every project with one resource); a run's overrides (seed, scale,
        chunk rows, vocabulary copy) hold either way."""
        if name == self.project:
            return self
        return self.model_copy(
            update={"project": name, "bundle_dir": str(environment.default_bundle_dir(name))}
        )

    def files(self) -> ProjectFiles:
        return ProjectFiles(Path(self.config_root or environment.config_root()), self.project)

    def project_config(self) -> ProjectConfig:
        return self.files().load_project()

    def run_seed(self) -> int:
        return self.seed if self.seed is not None else self.project_config().seed

    def run_scale(self) -> float:
        return self.scale if self.scale is not None else self.project_config().scale

    def run_chunk_rows(self) -> int:
        return self.chunk_rows or self.project_config().chunk_rows

    def bundle_path(self) -> Path:
        return Path(self.bundle_dir) if self.bundle_dir else environment.bundle_dir(self.project)


class JsonStateIOManager(dg.ConfigurableIOManager):
    """Stores asset values as readable JSON files, one per partition, under the work folder
    (``state/<project>/<asset>/<table>.json``: the asset's key, whose prefix is the project, so
    another project's run never reads them).

    Everything stored here is either structure of the source (inside the trusted environment)
    or has passed disclosure control.
    """

    base_dir: str = ""

    def _path_of(self, key: dg.AssetKey, partition: str | None) -> Path:
        base = Path(self.base_dir or environment.work_dir() / "state")
        return base.joinpath(*key.path) / f"{partition or 'value'}.json"

    def store(self, key: dg.AssetKey, partition: str | None, obj: Any) -> None:
        """Store ``obj`` as ``key``'s value for ``partition`` (replacing the file atomically);
        a step of several tables stores each table's value through here."""
        if obj is None:
            return
        path = self._path_of(key, partition)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = obj.model_dump(mode="json", by_alias=True) if hasattr(obj, "model_dump") else obj
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True, default=str))
        tmp.replace(path)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        partition = context.asset_partition_key if context.has_asset_partitions else None
        self.store(context.asset_key, partition, obj)

    def load_input(self, context: dg.InputContext) -> Any:
        """One table's value; for a run of several tables a dict by table, None for a table
        with no stored value (the step fails that table alone)."""
        if context.has_asset_partitions and len(context.asset_partition_keys) > 1:
            paths = {t: self._path_of(context.asset_key, t) for t in context.asset_partition_keys}
            return {t: json.loads(p.read_text()) if p.exists() else None for t, p in paths.items()}
        partition = context.asset_partition_key if context.has_asset_partitions else None
        path = self._path_of(context.asset_key, partition)
        if not path.exists():
            raise FileNotFoundError(
                f"no stored value for {context.asset_key.to_user_string()} at {path}: "
                "materialise it first"
            )
        return json.loads(path.read_text())
