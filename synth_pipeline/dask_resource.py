"""The Dask cluster a big table's generation is spread over (core/distributed.py).

``DaskCluster`` holds a Dask client for the run: of the scheduler at ``scheduler_address``
(else ``SYNTH_DASK_SCHEDULER``, else Dask's own ``DASK_SCHEDULER_ADDRESS``), or of a
``LocalCluster`` of ``local_workers`` processes started on first use (else
``SYNTH_DASK_LOCAL_WORKERS``). With neither, nothing changes: every table is generated
in-process. The client is made only when a table reaches project.yaml's
``distributed_min_rows``, and closed when the step ends. docs/distributed.md has the settings.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
import polars as pl
from pydantic import PrivateAttr

from . import environment
from .core.config_files import ProjectFiles
from .core.distributed import PART_ROWS, distributed_chunks, remove_part_sets
from .core.errors import ConfigError
from .core.parallel_copy import copy_streams_setting
from .core.synthesise import FIRST_CHUNK_ROWS, TableRun

SCHEDULER_VARS = ("SYNTH_DASK_SCHEDULER", "DASK_SCHEDULER_ADDRESS")
LOCAL_WORKERS_VAR = "SYNTH_DASK_LOCAL_WORKERS"
PARTS_URL_VAR = "SYNTH_DASK_PARTS_URL"
COPY_STREAMS_VAR = "SYNTH_DASK_COPY_STREAMS"
KEEP_PARTS_VAR = "SYNTH_DASK_KEEP_PARTS"


class DaskCluster(dg.ConfigurableResource):
    """A Dask cluster for tables of ``distributed_min_rows`` rows or more (none by default)."""

    scheduler_address: str | None = None  # tcp://scheduler:8786
    local_workers: int | None = None  # a LocalCluster of this many worker processes
    # where the parts go: a folder every worker and the Dagster step reach (shared disk), or
    # an fsspec URL (s3://bucket/prefix, gs://..., abfs://...); default under the work folder
    parts_url: str | None = None
    part_rows: int = PART_ROWS
    retries: int = 1  # reruns of a part whose task raised (a lost worker is the scheduler's)
    # PostgreSQL connections that COPY the parts into the staging table at once (at most one a
    # part; core/parallel_copy.py); default SYNTH_DASK_COPY_STREAMS, else 4
    copy_streams: int | None = None
    # keep a table's parts once it is swapped in, for its bundle (until a later version of the
    # table replaces them); False deletes each part once loaded, the bundle reads the table;
    # default SYNTH_DASK_KEEP_PARTS, else True
    keep_parts: bool | None = None
    _client: Any = PrivateAttr(default=None)
    _cluster: Any = PrivateAttr(default=None)

    def address(self) -> str | None:
        if self.scheduler_address:
            return self.scheduler_address
        found = environment.first_env(SCHEDULER_VARS)
        return found[1] if found else None

    def workers(self) -> int:
        if self.local_workers is not None:
            return self.local_workers
        text = os.environ.get(LOCAL_WORKERS_VAR) or "0"
        try:
            return int(text)
        except ValueError:
            raise ConfigError(
                f"{LOCAL_WORKERS_VAR}={text!r} is not a number of workers",
                setting=LOCAL_WORKERS_VAR,
            ) from None

    def configured(self) -> bool:
        return bool(self.address()) or self.workers() > 0

    def resolved_parts_url(self) -> str:
        return (
            self.parts_url
            or os.environ.get(PARTS_URL_VAR)
            or str(environment.work_dir() / "dask-parts")
        )

    def resolved_copy_streams(self) -> int:
        if self.copy_streams is not None:
            return copy_streams_setting(self.copy_streams, "dask.copy_streams")
        return copy_streams_setting(os.environ.get(COPY_STREAMS_VAR), COPY_STREAMS_VAR)

    def resolved_keep_parts(self) -> bool:
        if self.keep_parts is not None:
            return self.keep_parts
        text = (os.environ.get(KEEP_PARTS_VAR) or "1").strip().lower()
        if text not in ("0", "1", "true", "false", "yes", "no"):
            raise ConfigError(
                f"{KEEP_PARTS_VAR}={text!r} is not 1 or 0 (true or false)", setting=KEEP_PARTS_VAR
            )
        return text in ("1", "true", "yes")

    def describe(self) -> str:
        address = self.address()
        return address if address else f"LocalCluster of {self.workers()} worker processes"

    def client(self):
        """The run's client, made on first use."""
        if self._client is None:
            try:
                from distributed import Client, LocalCluster
            except ImportError as exc:
                raise ConfigError(
                    "a Dask cluster is configured but dask.distributed is not installed; "
                    "pip install 'synth_pipeline[dask]'",
                    setting="dask",
                ) from exc
            address = self.address()
            if address:
                self._client = Client(address)
            else:
                self._cluster = LocalCluster(
                    n_workers=self.workers(),
                    threads_per_worker=1,  # generation takes one part at a time per process
                    processes=True,
                    dashboard_address=":0",
                )
                self._client = Client(self._cluster)
        return self._client

    @contextlib.contextmanager
    def table_chunks(
        self,
        run: TableRun,
        files: ProjectFiles,
        chunk_rows: int,
        log: Callable[[str], None] | None = None,
    ) -> Iterator[Iterator[pl.DataFrame]]:
        """The table's rows for the destination's load: from the cluster when one is
        configured and the table has ``distributed_min_rows`` rows or more, else in-process."""
        threshold = files.load_project().distributed_min_rows
        if not self.configured() or run.rows < threshold:
            yield run.chunks(chunk_rows, first_rows=FIRST_CHUNK_ROWS)
            self._forget_parts(files.project, run.config.table, log)
            return
        streams = self.resolved_copy_streams()
        if log:
            log(
                f"{run.config.table}: {run.rows} rows (distributed_min_rows {threshold}) "
                f"generated on the Dask cluster ({self.describe()}) in parts of "
                f"{self.part_rows} rows (a PostgreSQL destination takes them over up to "
                f"{streams} COPY streams)"
            )
        with distributed_chunks(
            self.client(),
            files,
            run.config.table,
            run.seed,
            run.scale,
            self.resolved_parts_url(),
            part_rows=self.part_rows,
            chunk_rows=chunk_rows,
            retries=self.retries,
            copy_streams=streams,
            keep=self.resolved_keep_parts(),
        ) as chunks:
            yield chunks
        if log and chunks.kept_at:
            log(f"{run.config.table}: its parts are kept for the bundle at {chunks.kept_at}")

    def _forget_parts(self, project: str, table: str, log: Callable[[str], None] | None) -> None:
        """The table was written in-process: the parts of a version generated on the cluster
        before are no one's (the register row no longer names them). The table is in place
        already, so a storage that cannot be reached is only logged."""
        try:
            removed = remove_part_sets(self.resolved_parts_url(), project, table)
        except Exception as exc:  # noqa: BLE001 - the table is written; the parts wait
            removed, problem = [], f"{type(exc).__name__}: {exc}"
            if log:
                log(f"{table}: could not look for the parts of its previous version: {problem}")
        if removed and log:
            log(f"{table}: removed the parts of its previous version: {removed}")

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._cluster is not None:
            self._cluster.close()
            self._cluster = None

    def teardown_after_execution(self, context) -> None:
        self.close()
