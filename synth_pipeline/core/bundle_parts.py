"""A table's bundle files written from the Parquet parts a Dask cluster generated (issue 18).

A table generated on a cluster was loaded into the destination from Parquet parts, which are
kept in a folder that its register row names (core/distributed.py). The bundle then writes the
table's CSV and Parquet from those parts, read one after the other in key order, instead of
reading the whole table back out of the destination. It does so only when the parts are
exactly the rows of the version the bundle's gates passed (core/publication.py decides which
tables go in, as before, from the register and the destination):

- the table's register row names the folder, and the folder's part list describes that same
  version: its own URL, the table, config fingerprint, seed, scale, rows and generator version
  (a folder's URL holds a token of the run that wrote it, so a part set of another run, older
  or of another destination, never matches);
- the parts hold the destination's columns, and the bundle orders the table by its key, which
  the parts hold as 1..n in part order (the ``primary_key`` generator);
- while read: each part file has the size and sha256 its worker wrote (the bytes that were
  loaded into the destination), its keys continue the previous part's, no float is NaN (SQLite
  would have stored it as NULL), and the rows add up to the register's.

Otherwise the table is read from the destination as before, and its files rewritten from
there if a check fails halfway; the reason goes to the bundle step's log and metadata. The
values are cast to the types the destination hands back and go through the same writer in
batches of the same size (core/bundle.py), so the files are byte for byte those the
destination gives. One part's file is in memory at a time (its sha256 is checked before it is
parsed), never the whole table.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from .config import TableConfig
from .distributed import PART_LIST
from .schema import ColumnDef
from .transfer import ROW_TYPES

# the register's fields a part list must repeat to be of the table's version
_VERSION_FIELDS = ("config_fingerprint", "seed", "scale", "rows", "generator_version")


class PartsUnusable(Exception):
    """The kept parts are not exactly the table's rows: the destination is read instead."""


@dataclass(frozen=True)
class KeptParts:
    """A table version's parts, in key order, as its part list gives them."""

    url: str
    rows: int
    key: str
    parts: tuple[dict, ...]  # file, rows, bytes, sha256

    def describe(self) -> str:
        return f"{len(self.parts)} Parquet parts at {self.url}"

    def frames(self, columns: list[ColumnDef], batch_rows: int) -> Iterator[pl.DataFrame]:
        """The rows as the destination gives them, in frames of exactly ``batch_rows`` (the
        last shorter); raises :class:`PartsUnusable` on the first part that fails a check."""
        pending: list[pl.DataFrame] = []
        held = 0
        for df in self._checked(columns):
            pending.append(df)
            held += df.height
            while held >= batch_rows:
                whole = pl.concat(pending, rechunk=True)
                yield whole.head(batch_rows)
                rest = whole.slice(batch_rows)
                pending, held = ([rest] if rest.height else []), rest.height
        if held:
            yield pl.concat(pending, rechunk=True)

    def _checked(self, columns: list[ColumnDef]) -> Iterator[pl.DataFrame]:
        import fsspec

        fs, folder = fsspec.core.url_to_fs(self.url)
        # the types the destination's rows are read back as: the same text and Parquet
        casts = [pl.col(c.name).cast(ROW_TYPES[c.logical_type]) for c in columns]
        floats = [c.name for c in columns if c.logical_type == "float"]
        next_key = 1
        for part in self.parts:
            name = part["file"]
            try:
                data = fs.cat_file(f"{folder}/{name}")
            except OSError as exc:
                raise PartsUnusable(f"part {name} cannot be read: {exc}") from exc
            if len(data) != part["bytes"] or hashlib.sha256(data).hexdigest() != part["sha256"]:
                raise PartsUnusable(f"part {name} is not the file its worker wrote (sha256)")
            try:
                batches = pq.ParquetFile(pa.BufferReader(data)).iter_batches(batch_size=65_536)
                for batch in batches:
                    df = pl.from_arrow(batch).select(casts)  # type: ignore[union-attr]
                    keys = df[self.key].to_numpy()
                    if not np.array_equal(keys, np.arange(next_key, next_key + df.height)):
                        raise PartsUnusable(f"part {name}: keys not {next_key} onwards in order")
                    if any(df[f].is_nan().any() for f in floats):
                        raise PartsUnusable(f"part {name}: a float column holds NaN")
                    next_key += df.height
                    yield df
            except (pa.ArrowException, pl.exceptions.PolarsError) as exc:
                raise PartsUnusable(f"part {name}: {type(exc).__name__}: {exc}") from exc
        if next_key - 1 != self.rows:
            raise PartsUnusable(f"the parts hold {next_key - 1} rows, the table {self.rows}")


def kept_parts(
    entry: dict, cfg: TableConfig, columns: list[ColumnDef], order_by: list[str]
) -> KeptParts | str | None:
    """The parts kept for the table version of register row ``entry``; None when it names
    none (not generated on a cluster), or why they cannot be used."""
    import fsspec

    url = entry.get("parts")
    if not url:
        return None
    key = cfg.primary_key
    if entry["kind"] != "synthetic" or key is None or order_by != [key]:
        return f"the bundle orders {cfg.table} by {', '.join(order_by)}, not by a generated key"
    if cfg.columns[key].generator != "primary_key":
        return f"{key} is not generated as 1..n (generator {cfg.columns[key].generator})"
    try:
        fs, folder = fsspec.core.url_to_fs(url)
        listed = json.loads(fs.cat_file(f"{folder}/{PART_LIST}"))
    except FileNotFoundError:
        return f"no part list at {url} (removed, or its run stopped before writing it)"
    except (OSError, ValueError) as exc:
        return f"cannot read the part list at {url}: {type(exc).__name__}: {exc}"
    if listed.get("url") != url or listed.get("table") != cfg.table:
        return f"the part list at {url} is of another folder or table"
    for field in _VERSION_FIELDS:
        if listed.get(field) != entry.get(field):
            return (
                f"the parts at {url} are of another version of the table ({field} "
                f"{listed.get(field)!r}, the destination's {entry.get(field)!r})"
            )
    if sorted(listed.get("columns") or []) != sorted(c.name for c in columns):
        return f"the parts at {url} hold other columns than the destination's table"
    return KeptParts(url, int(entry["rows"]), key, tuple(listed["parts"]))


def export_preferring_parts(
    export: Callable[..., int],
    parts: KeptParts | str | None,
    columns: list[ColumnDef],
    batch_rows: int,
) -> tuple[int, str]:
    """Write a table's bundle files with ``export`` (core/bundle.py's ``export_table_csv``
    with the table's arguments) from its kept parts when they pass every check, else from
    the destination; returns (rows, where they were read from and why)."""
    if isinstance(parts, KeptParts):
        try:
            return export(frames=parts.frames(columns, batch_rows)), f"parts: {parts.describe()}"
        except PartsUnusable as exc:
            parts = f"{exc}; its files were rewritten from the destination"
    return export(), "destination" + (f" (parts not used: {parts})" if parts else "")
