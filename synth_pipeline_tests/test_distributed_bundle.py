"""A cluster's table bundled from the Parquet parts it was loaded from (issue 18), only when they
are exactly the rows of the table version the bundle publishes.

One table written on a real LocalCluster of two workers into SQLite; each check of
core/bundle_parts.py then fails once on a part set made wrong in one way (another run's, edited,
incomplete, out of order), and the bundle is still byte for byte the destination's, saying it
read the destination and why. The identity of the bundle from parts with the in-process bundle,
on SQLite and PostgreSQL, and a killed worker leaving the previous version's parts, are in
test_distributed.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from synth_pipeline.core.bundle_parts import kept_parts
from synth_pipeline.core.database import open_destination
from synth_pipeline.core.distributed import (
    PART_LIST,
    PartResult,
    _list_parts,
    distributed_chunks,
)
from synth_pipeline.core.generators import BLOCK_ROWS
from synth_pipeline.core.publication import bundle_tables
from synth_pipeline.core.write import read_register

from .test_distributed import (
    TABLE,
    bundle,
    bundle_and_source,
    client,  # noqa: F401 - the module's LocalCluster of two workers
    demo_files,
    kept_sets,
    on_cluster,
    scale_for,
    write,
)

SEED, ROWS = 31, 3 * BLOCK_ROWS + 100  # four parts, the last one short


@dataclass
class Written:
    engine: sa.Engine
    folder: Path  # the parts kept for the table's version
    other: Path  # the parts of another run (seed 32) of the same table
    expected: dict  # the bundle read from the destination, file by file


@pytest.fixture(scope="module")
def written(client, tmp_path_factory):  # noqa: F811
    """A table written on the cluster into SQLite (its parts kept), another run's part set
    (seed 32, into another destination and parts folder), and the bundle of the destination."""
    root = tmp_path_factory.mktemp("parts_bundle")
    engine = open_destination(f"sqlite:///{root / 'dest.sqlite'}")
    other = open_destination(f"sqlite:///{root / 'other.sqlite'}")
    on_cluster(client, engine, None, SEED, scale_for(ROWS), root / "parts")
    on_cluster(client, other, None, SEED + 1, scale_for(ROWS), root / "other-parts")
    [url], [other_url] = kept_sets(root / "parts"), kept_sets(root / "other-parts")
    expected, said = bundle_and_source(
        engine, None, root / "expected", SEED, scale_for(ROWS), parts=False
    )
    assert said == "destination"
    yield Written(
        engine,
        Path(url.removeprefix("file://")),
        Path(other_url.removeprefix("file://")),
        expected,
    )
    for e in (engine, other):
        e.dispose()


def edit_list(folder: Path, change) -> None:
    listed = json.loads((folder / PART_LIST).read_text())
    change(listed)
    (folder / PART_LIST).write_text(json.dumps(listed))


def rewrite_part(folder: Path, index: int, change) -> None:
    """Part ``index`` rewritten with ``change`` applied, its size and sha256 listed anew (as a
    worker would have listed them)."""
    listed = json.loads((folder / PART_LIST).read_text())
    entry = listed["parts"][index]
    path = folder / entry["file"]
    df = change(pl.read_parquet(path))
    df.write_parquet(path)
    data = path.read_bytes()
    entry["bytes"], entry["sha256"] = len(data), hashlib.sha256(data).hexdigest()
    (folder / PART_LIST).write_text(json.dumps(listed))


def nan_in_first_row(df: pl.DataFrame) -> pl.DataFrame:
    first = pl.int_range(pl.len()) == 0
    return df.with_columns(
        pl.when(first)
        .then(float("nan"))
        .otherwise(pl.col("value_as_number"))
        .alias("value_as_number")
    )


def register_names(engine, url: str) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE _synth_pipeline_tables SET parts = :u WHERE table_name = :t"),
            {"u": url, "t": TABLE},
        )


# each way a part set can be wrong, and what the bundle says of it
CASES = {
    "list of another version": (
        lambda folder, other, engine: edit_list(folder, lambda d: d.update(seed=SEED + 1)),
        "are of another version of the table (seed 32, the destination's 31)",
    ),
    "register names another run's parts": (
        lambda folder, other, engine: register_names(engine, f"file://{other}"),
        "are of another version of the table (seed 32, the destination's 31)",
    ),
    "list gone": (
        lambda folder, other, engine: (folder / PART_LIST).unlink(),
        "no part list at file://",
    ),
    "list of another folder": (
        lambda folder, other, engine: edit_list(folder, lambda d: d.update(url=f"file://{other}")),
        "is of another folder or table",
    ),
    "other columns": (
        lambda folder, other, engine: edit_list(folder, lambda d: d["columns"].pop()),
        "hold other columns than the destination's table",
    ),
    "a part of another run under its name": (
        lambda folder, other, engine: shutil.copyfile(
            next(other.glob("part-000001-*.parquet")), next(folder.glob("part-000001-*.parquet"))
        ),
        "part-000001-",  # ... is not the file its worker wrote (sha256)
    ),
    "parts listed out of order": (
        lambda folder, other, engine: edit_list(folder, lambda d: d["parts"].reverse()),
        "keys not 1 onwards in order",
    ),
    "a part left out of the list": (
        lambda folder, other, engine: edit_list(folder, lambda d: d["parts"].pop()),
        f"the parts hold {3 * BLOCK_ROWS} rows, the table {ROWS}",
    ),
    "a NaN, which SQLite holds as NULL": (
        lambda folder, other, engine: rewrite_part(folder, 2, nan_in_first_row),
        "a float column holds NaN",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_parts_that_are_not_the_tables_rows_are_not_bundled(case, written, tmp_path):
    engine, folder = written.engine, written.folder
    url = read_register(engine, None)[TABLE]["parts"]
    saved = tmp_path / "saved"
    shutil.copytree(folder, saved)
    # unchanged, the parts are what the bundle is written from
    files, said = bundle_and_source(engine, None, tmp_path / "ok", SEED, scale_for(ROWS))
    assert said.startswith("parts: 4 ") and files == written.expected
    spoil, reason = CASES[case]
    try:
        spoil(folder, written.other, engine)
        files, said = bundle_and_source(engine, None, tmp_path / "bundle", SEED, scale_for(ROWS))
        assert files == written.expected  # the destination's rows, byte for byte
        # what csv_bundle logs and shows: the table was read from the destination, and why
        assert said.startswith("destination (parts not used: ") and reason in said, said
    finally:
        shutil.rmtree(folder)
        shutil.copytree(saved, folder)
        register_names(engine, url)


def test_only_rows_in_key_order_are_taken_from_parts(written):
    engine = written.engine
    entry = read_register(engine, None)[TABLE]
    [table] = bundle_tables(demo_files(), engine, None, {TABLE: entry})
    cfg = demo_files().load_table(TABLE)
    assert kept_parts(entry, cfg, table["columns"], ["measurement_id"]) is not None
    names = [c.name for c in table["columns"]]
    assert "not by a generated key" in kept_parts(entry, cfg, table["columns"], names)
    other = cfg.model_copy(deep=True)
    other.columns["measurement_id"].generator = "constant"
    assert "is not generated as 1..n" in kept_parts(
        entry, other, table["columns"], ["measurement_id"]
    )
    assert kept_parts({**entry, "parts": None}, cfg, table["columns"], ["measurement_id"]) is None


def test_a_new_version_removes_the_parts_it_supersedes(client, tmp_path):  # noqa: F811
    """The next version written on the cluster keeps its own parts only (the previous
    version's and a killed run's folder go); without ``keep`` none are kept."""
    engine = open_destination(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    parts = tmp_path / "parts"
    scale = scale_for(2 * BLOCK_ROWS)
    on_cluster(client, engine, None, 1, scale, parts)
    [first] = kept_sets(parts)
    killed = parts / "demo.measurement.0123456789ab"  # a run killed before its swap
    killed.mkdir()
    (killed / "part-000000-00000000.parquet").write_bytes(b"unfinished")
    (parts / "demo.person.0123456789ab").mkdir()  # another table's: left alone
    on_cluster(client, engine, None, 2, scale, parts)
    [second] = [u for u in kept_sets(parts) if "measurement" in u]
    assert second != first and read_register(engine, None)[TABLE]["parts"] == second
    assert kept_sets(parts) == sorted([second, f"file://{parts}/demo.person.0123456789ab"])
    with distributed_chunks(
        client, demo_files(), TABLE, 3, scale, str(parts), part_rows=BLOCK_ROWS, keep=False
    ) as chunks:
        write(engine, None, chunks, 3, scale)
    assert read_register(engine, None)[TABLE]["parts"] is None
    # the folder of this run is gone; the previous version's stays until the next one kept
    assert kept_sets(parts) == sorted([second, f"file://{parts}/demo.person.0123456789ab"])
    assert bundle(engine, None, tmp_path / "bundle", 3, scale, "destination")
    engine.dispose()


def test_a_lost_workers_unfinished_file_is_not_listed(tmp_path):
    folder = tmp_path / "demo.measurement.abc"
    folder.mkdir()
    for name in ("part-000000-aaaa.parquet", "part-000000-bbbb.parquet"):
        pq.write_table(pl.DataFrame({"a": [1]}).to_arrow(), folder / name)
    data = (folder / "part-000000-bbbb.parquet").read_bytes()
    done = PartResult(0, str(folder / "part-000000-bbbb.parquet"), 1, len(data), "x")
    import fsspec

    assert _list_parts(fsspec.filesystem("file"), str(folder), {"table": TABLE}, [done])
    assert sorted(p.name for p in folder.iterdir()) == [PART_LIST, "part-000000-bbbb.parquet"]
    listed = json.loads((folder / PART_LIST).read_text())
    assert listed["parts"] == [
        {"file": "part-000000-bbbb.parquet", "rows": 1, "bytes": len(data), "sha256": "x"}
    ]
