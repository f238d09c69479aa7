"""Generation does not depend on how rows are chunked, and the vectorised strings are the
strings a row-by-row join of the same random draws gives."""

from __future__ import annotations

import itertools

import numpy as np
import polars as pl
import pytest

from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.generators import BLOCK_ROWS
from synth_pipeline.core.generators.base import ColumnContext, interpolate_quantiles
from synth_pipeline.core.generators.text import (
    _ALNUM,
    _DIGITS,
    _HEX,
    _WORDS,
    StringPattern,
    StringPatternParams,
)
from synth_pipeline.core.statistics import ColumnStats, QuantilePoint
from synth_pipeline.core.synthesise import TableRun, chunk_size

from .conftest import DEMO_CONFIGS

# the demo tables that together use every generator (dates and twins, offsets, date parts,
# strings of every shape, weighted choices, quantiles, keys and references)
TABLES = ["person", "visit_occurrence", "measurement", "drug_exposure", "condition_occurrence"]


def run_of(table: str, rows: int) -> TableRun:
    files = ProjectFiles(DEMO_CONFIGS, "demo")
    cfg = files.load_table(table)
    parents = {"person": 3_000, "visit_occurrence": 9_000, "provider": 50, "care_site": 20}
    return TableRun(
        cfg,
        seed=5,
        scale=rows / max(cfg.rows, 1),
        parent_rows=lambda p: parents.get(p, 0),
        parent_source_rows=lambda p: None,
    )


@pytest.mark.parametrize("table", TABLES)
def test_chunked_output_equals_unchunked(table):
    run = run_of(table, 2 * BLOCK_ROWS + 12_345)
    whole = list(run.chunks(10**9))
    assert len(whole) == 1 and whole[0].height == run.rows
    for chunk_rows in (1, 1000, BLOCK_ROWS - 1, BLOCK_ROWS, BLOCK_ROWS + 1, 99_999, 131_072):
        chunks = list(run.chunks(chunk_rows))
        assert all(c.height <= chunk_size(chunk_rows) for c in chunks)
        assert len(chunks) > 1
        assert pl.concat(chunks).equals(whole[0]), (table, chunk_rows)
    # a smaller first chunk (so a writer starts sooner) changes the boundaries, not the rows
    for chunk_rows, first_rows in ((131_072, 1), (BLOCK_ROWS, BLOCK_ROWS), (10**9, BLOCK_ROWS)):
        chunks = list(run.chunks(chunk_rows, first_rows=first_rows))
        assert chunks[0].height == min(BLOCK_ROWS, run.rows), (chunk_rows, first_rows)
        assert all(c.height <= chunk_size(chunk_rows) for c in chunks[1:])
        assert pl.concat(chunks).equals(whole[0]), (table, chunk_rows, first_rows)


def test_the_seed_matters():
    a = pl.concat(list(run_of("measurement", 1000).chunks(BLOCK_ROWS)))
    run = run_of("measurement", 1000)
    run.seed = 6
    b = pl.concat(list(run.chunks(BLOCK_ROWS)))
    assert not a.equals(b)


def reference_strings(ctx: ColumnContext, count: int, block: int) -> list[str | None]:
    """The row-by-row implementation the vectorised one replaced, kept as the definition."""
    p = ctx.params
    stats = ctx.stats
    pattern = p.pattern or (stats.pattern if stats else None) or "code"
    rng = ctx.rng(block)
    if stats and stats.length:
        points = [(q.p, float(q.value)) for q in stats.length]
        lengths = np.maximum(1, np.rint(interpolate_quantiles(points, rng.random(count)))).astype(
            int
        )
    else:
        lengths = np.full(count, 8)
    if ctx.max_length:
        lengths = np.minimum(lengths, max(1, ctx.max_length - len(p.prefix)))
    if pattern == "uuid":
        hexes = [[chr(c) for c in row] for row in _HEX[rng.integers(0, 16, size=(count, 32))]]
        values = [
            f"{''.join(h[:8])}-{''.join(h[8:12])}-4{''.join(h[13:16])}-a{''.join(h[17:20])}-{''.join(h[20:])}"
            for h in hexes
        ]
    elif pattern == "text":
        words = _WORDS[rng.integers(0, len(_WORDS), size=(count, 64))]
        values = [" ".join(w)[:n].rstrip() or "lorem" for w, n in zip(words, lengths, strict=True)]
    else:
        alphabet = _DIGITS if pattern == "digits" else _ALNUM
        width = int(lengths.max()) if count else 1
        chars = alphabet[rng.integers(0, len(alphabet), size=(count, width))]
        values = ["".join(chr(x) for x in c[:n]) for c, n in zip(chars, lengths, strict=True)]
    values = [(p.prefix + v)[: ctx.max_length] if ctx.max_length else p.prefix + v for v in values]
    frac = stats.null_fraction if stats else 0.0
    if frac > 0 and count:
        nulls = ctx.rng(block, "nulls").random(count) < frac
        values = [None if z else v for v, z in zip(values, nulls, strict=True)]
    return values


@pytest.mark.parametrize(
    "pattern,prefix,max_length",
    list(
        itertools.product(["uuid", "text", "code", "digits"], ["", "SYN-", "é"], [None, 1, 7, 50])
    ),
)
def test_vectorised_strings_equal_the_row_by_row_definition(pattern, prefix, max_length):
    for length, null_fraction, count in [
        (None, 0.0, 5),
        ([(0.01, 1), (0.99, 3)], 0.3, 1000),
        ([(0.01, 3), (0.5, 10), (0.99, 40)], 0.0, 3000),
        ([(0.01, 100), (0.99, 900)], 0.1, 200),
        ([(0.01, 2), (0.99, 9)], 0.0, 0),
    ]:
        stats = ColumnStats(
            null_fraction=null_fraction,
            length=[QuantilePoint(p=a, value=b) for a, b in length] if length else None,
        )
        ctx = ColumnContext(
            table="t",
            column="c",
            logical_type="string",
            nullable=True,
            max_length=max_length,
            stats=stats,
            params=StringPatternParams(pattern=pattern, prefix=prefix),
            rows=count,
            seed=3,
            parent_rows=lambda p: 0,
            parent_source_rows=lambda p: None,
        )
        got = StringPattern().block(ctx, 0, count, 4, {})
        assert got.dtype == pl.Utf8 and got.len() == count
        assert got.to_list() == reference_strings(ctx, count, 4), (pattern, prefix, length)
