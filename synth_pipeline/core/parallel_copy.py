"""A table's parts loaded into PostgreSQL over several connections at once (issue 18).

One COPY stream is what limits a table generated on a Dask cluster once a few workers feed it
(benchmarks/distributed.md). The parts of a table are independent (each holds whole key
ranges), so ``copy_streams`` connections each COPY a disjoint set of them into one staging
table:

1. the staging table (no primary key yet) is created and committed, so every connection sees
   it; a logged table, as an UNLOGGED one would be written to the WAL whole, by one process,
   when made logged at the swap;
2. each stream, a thread with a connection of its own, takes the next part no stream has taken
   yet and COPYs its rows (binary, core/write.py's ``load_chunks``) in a transaction of its
   own, committed when no part is left;
3. one transaction then adds the primary key, swaps the staging table in and writes the
   register row (core/write.py's ``swap_in``), as the one-stream path does: readers see the
   previous table or the whole new one.

Any failure (a part that cannot be had, a COPY the server refuses, a duplicate key) cancels
the other streams, waits for them and drops the staging table: the previous table and its
register row are untouched. The staging table has the name the one-stream path uses, so one
left by a killed process is dropped by the next write of its table either way.

Rows lie in the table in another physical order than on the one-stream path; nothing depends
on it: keys are generated values (never assigned by the database), the bundle reads the rows
ordered by key (core/publication.py), and privacy samples order rows by their values first.

``PartStreams`` is iterable too, in key order: SQLite, DuckDB and ``copy_streams: 1`` take the
parts through the one transaction of core/write.py as before.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator

import polars as pl
from sqlalchemy.engine import Engine

from .database import qualified
from .errors import ConfigError
from .schema import ColumnDef
from .write import RegisterEntry, _table, load_chunks, swap_in

# Streams when the setting says nothing: past a few, one loader process's encoding and the
# server's cores are what limit (benchmarks/distributed.md).
DEFAULT_COPY_STREAMS = 4
_REPORT_SECONDS = 0.5  # how often the streams' rows are summed for the progress callback


class Cancelled(Exception):
    """A stream stopped because another one failed."""


# given a part's index and an event set when the load is given up, the part's rows in key
# order; expected to raise Cancelled soon once the event is set while it waits
TakePart = Callable[[int, threading.Event], Iterable[pl.DataFrame]]


def copy_streams_setting(value: int | str | None, setting: str) -> int:
    """A number of COPY streams as configured (None: the default), refused unless >= 1."""
    if value is None or value == "":
        return DEFAULT_COPY_STREAMS
    try:
        streams = int(value)
    except ValueError:
        streams = 0
    if streams < 1:
        raise ConfigError(
            f"{setting}={value!r} is not a number of COPY streams (1 or more)", setting=setting
        )
    return streams


class PartStreams:
    """A table's rows as ``count`` parts, each part's frames from ``take``.

    Iterated, the parts come one after the other in key order (one COPY stream, SQLite,
    DuckDB). Given to core/write.py's ``replace_table`` with a PostgreSQL destination,
    ``copy_streams`` streams (at most one a part) share the parts: each takes the next part no
    stream has taken yet, so every part is loaded once and a slow part holds up one stream
    only. Either way, once.
    """

    def __init__(self, count: int, take: TakePart, copy_streams: int = DEFAULT_COPY_STREAMS):
        self.count = count
        self.copy_streams = max(1, min(copy_streams, count))
        self._take = take
        # the folder the parts stay in once the table is swapped in (core/distributed.py), for
        # the register row: the bundle reads them instead of the table (core/bundle_parts.py)
        self.kept_at: str | None = None
        self._next = 0
        self._lock = threading.Lock()
        self._cancelled = threading.Event()

    def __iter__(self) -> Iterator[pl.DataFrame]:
        return self._stream()

    def _stream(self) -> Iterator[pl.DataFrame]:
        while True:
            with self._lock:
                index, self._next = self._next, self._next + 1
            if index >= self.count:
                return
            for df in self._take(index, self._cancelled):
                if self._cancelled.is_set():
                    raise Cancelled
                yield df

    def cancel(self) -> None:
        """Stop every stream at its next frame (or while it waits for a part)."""
        self._cancelled.set()

    def replace_in_parallel(
        self,
        engine: Engine,
        schema: str | None,
        table: str,
        temp: str,
        columns: list[ColumnDef],
        primary_key: str | None,
        pk_name: str | None,
        entry: RegisterEntry,
        on_chunk: Callable[[int], None] | None,
    ) -> int:
        """Fill the staging table ``temp`` over ``copy_streams`` connections, then swap it in
        as ``table`` with its key and register row; on any failure drop it and raise."""
        staging = _table(temp, schema, columns, None, None)
        with engine.begin() as conn:
            staging.drop(conn, checkfirst=True)
            staging.create(conn)
        try:
            rows = self._copy(engine, qualified(engine, schema, temp), columns, on_chunk)
            with engine.begin() as conn:
                swap_in(conn, schema, table, temp, columns, primary_key, pk_name, rows, entry)
            return rows
        except BaseException:
            # the previous table and register row were never touched; only the staging table
            # goes (if the server cannot be reached now, the next write of the table drops it)
            with contextlib.suppress(Exception), engine.begin() as conn:
                staging.drop(conn, checkfirst=True)
            raise

    def _copy(
        self,
        engine: Engine,
        target: str,
        columns: list[ColumnDef],
        on_chunk: Callable[[int], None] | None,
    ) -> int:
        n = self.copy_streams
        loaded = [0] * n  # rows each stream has sent so far
        rows: list[int | None] = [None] * n  # rows each stream committed
        errors: list[BaseException | None] = [None] * n

        def load(i: int) -> None:
            def count(total: int) -> None:
                loaded[i] = total

            try:
                with engine.begin() as conn:
                    rows[i] = load_chunks(conn, target, columns, self._stream(), count)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below
                errors[i] = exc
                self.cancel()

        threads = [
            threading.Thread(target=load, args=(i,), name=f"synth-copy-{i}", daemon=True)
            for i in range(n)
        ]
        for t in threads:
            t.start()
        reported = 0
        try:
            for t in threads:
                while t.is_alive():
                    t.join(_REPORT_SECONDS)
                    if on_chunk and sum(loaded) != reported:
                        reported = sum(loaded)
                        on_chunk(reported)  # on the caller's thread, as the one-stream path
        finally:
            self.cancel()  # a no-op when every stream is done
            for t in threads:
                t.join()
        failed = [e for e in errors if e is not None]
        if failed:
            # the failure that stopped the others, not a stream cancelled because of it
            raise next((e for e in failed if not isinstance(e, Cancelled)), failed[0])
        total = sum(r or 0 for r in rows)
        if on_chunk and total != reported:
            on_chunk(total)
        return total
