"""Writing: a table larger than one chunk arrives whole, value for value, on both databases;
a failure mid-write leaves the previous table as it was."""

from __future__ import annotations

import polars as pl
import pytest
import sqlalchemy as sa

from synth_pipeline.core.database import open_destination
from synth_pipeline.core.synthesise import TableRun
from synth_pipeline.core.write import (
    ColumnDef,
    RegisterEntry,
    read_register,
    replace_table,
    stream_select,
)

from .conftest import DEMO_CONFIGS

CHUNK = 65_536  # the smallest chunk; the table below spans four of them


def measurement_run() -> TableRun:
    """The demo's approved measurement config at a scale that needs several chunks."""
    from synth_pipeline.core.config import ProjectFiles

    files = ProjectFiles(DEMO_CONFIGS, "demo")
    cfg = files.load_table("measurement")
    return TableRun(
        cfg,
        seed=11,
        scale=200_000 / cfg.rows,
        parent_rows=lambda p: {"person": 9_000, "visit_occurrence": 30_000}.get(p, 0),
        parent_source_rows=lambda p: None,
    )


def columns_of(run: TableRun) -> list[ColumnDef]:
    return [ColumnDef(n, c.type, c.max_length) for n, c in run.config.columns.items()]


def read_back(engine, run: TableRun) -> pl.DataFrame:
    cols = columns_of(run)
    names = ", ".join(f'"{c.name}"' for c in cols)
    sql = f'SELECT {names} FROM "{run.config.table}" ORDER BY "{run.config.primary_key}"'
    return pl.concat(list(stream_select(engine, sql, cols, 50_000)))


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request, tmp_path):
    if request.param == "sqlite":
        eng = open_destination(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    else:
        eng = open_destination(request.getfixturevalue("postgres_database"))
    yield eng
    with eng.begin() as conn:
        conn.execute(sa.text('DROP TABLE IF EXISTS "measurement"'))
        conn.execute(sa.text('DROP TABLE IF EXISTS "_synth_pipeline_tables"'))
    eng.dispose()


def test_a_table_of_several_chunks_is_written_completely(engine):
    run = measurement_run()
    assert run.rows > 3 * CHUNK
    expected = pl.concat(list(run.chunks(CHUNK)))
    entry = RegisterEntry("synthetic", "sha256:x", 11, run.scale, {}, "test")
    seen = []
    rows = replace_table(
        engine,
        None,
        "measurement",
        columns_of(run),
        run.chunks(CHUNK),
        primary_key="measurement_id",
        entry=entry,
        on_chunk=seen.append,
    )
    assert rows == run.rows == expected.height
    assert seen[-1] == rows and len(seen) >= 4
    got = read_back(engine, run)
    assert got.height == expected.height
    # every value of every column, nulls included, exactly as generated
    assert got.equals(expected), [c for c in expected.columns if not got[c].equals(expected[c])]
    assert read_register(engine, None)["measurement"]["rows"] == rows


def test_a_failure_mid_write_leaves_the_previous_table(engine):
    run = measurement_run()
    entry = RegisterEntry("synthetic", "sha256:first", 11, run.scale, {}, "test")
    first = replace_table(
        engine,
        None,
        "measurement",
        columns_of(run),
        run.chunks(CHUNK),
        primary_key="measurement_id",
        entry=entry,
    )

    def broken():
        chunks = run.chunks(CHUNK)
        yield next(chunks)
        yield next(chunks)
        raise RuntimeError("generator failed after two chunks")

    with pytest.raises(RuntimeError, match="after two chunks"):
        replace_table(
            engine,
            None,
            "measurement",
            columns_of(run),
            broken(),
            primary_key="measurement_id",
            entry=RegisterEntry("synthetic", "sha256:second", 11, run.scale, {}, "test"),
        )
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT COUNT(*) FROM "measurement"')).scalar_one() == first
    register = read_register(engine, None)["measurement"]
    assert register["config_fingerprint"] == "sha256:first"
    assert "measurement__synth_new" not in sa.inspect(engine).get_table_names()


def test_quantiles_are_the_same_nearest_rank_on_both_databases(tmp_path, postgres_database):
    """PostgreSQL's percentile_disc path gives exactly SQLite's ROW_NUMBER path (every rank of
    every k-value window, so the same released means)."""
    import numpy as np

    from synth_pipeline.core import disclosure as dc
    from synth_pipeline.core.summarise import _quantiles

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.integers(0, 40, 997), rng.integers(-5, 5_000, 2_000)])
    frame = pl.DataFrame(
        {
            "id": np.arange(values.size, dtype=np.int64),
            "v": pl.Series(values.tolist()).set(pl.Series(rng.random(values.size) < 0.1), None),
        }
    )
    cols = [ColumnDef("id", "integer"), ColumnDef("v", "integer")]
    entry = RegisterEntry("synthetic", "sha256:q", 1, 1.0, {}, "test")
    results = []
    policy = dc.DisclosurePolicy()
    for url in (f"sqlite:///{tmp_path / 'q.sqlite'}", postgres_database):
        eng = open_destination(url)
        replace_table(eng, None, "q", cols, iter([frame]), primary_key="id", entry=entry)
        n = frame["v"].count()
        grid = dc.quantile_grid(n, policy) + [0.0, 0.5, 1.0, 0.333333]
        with eng.connect() as conn:
            results.append(
                [
                    (q.p, q.value)
                    for q in _quantiles(conn, '"q"', '"v"', n, sorted(grid), policy, True)
                ]
            )
        with eng.begin() as conn:
            conn.execute(sa.text('DROP TABLE "q"'))
            conn.execute(sa.text('DROP TABLE "_synth_pipeline_tables"'))
        eng.dispose()
    assert len(results[0]) > 5
    assert results[0] == results[1]


def test_vocabulary_copy_can_be_skipped(demo_sqlite_url, config_root, tmp_path):
    """On request, vocabulary tables are left out; synthetic tables are written as usual."""
    import dagster as dg

    from synth_pipeline.core.schema import list_tables
    from synth_pipeline.runner import execute

    dest = f"sqlite:///{tmp_path / 'dest.sqlite'}"
    common = dict(
        source_url=demo_sqlite_url,
        destination_url=dest,
        project="demo",
        config_root=config_root,
        tables=["concept", "care_site"],
        instance=dg.DagsterInstance.ephemeral(),
    )
    report = execute(bundle_dir=tmp_path / "skipped", copy_vocabulary=False, **common)
    assert report.ok, [(t.table, t.messages) for t in report.tables]
    engine = open_destination(dest)
    assert set(list_tables(engine, None)) >= {"care_site"}
    assert "concept" not in list_tables(engine, None)
    report = execute(bundle_dir=tmp_path / "copied", **common)
    assert report.ok
    assert "concept" in list_tables(engine, None)
    with engine.connect() as conn:
        assert conn.execute(sa.text('SELECT COUNT(*) FROM "concept"')).scalar_one() > 0
