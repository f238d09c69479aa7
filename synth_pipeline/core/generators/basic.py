"""Generators that need no distribution: keys, constants and always-null."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from .base import BLOCK_ROWS, POLARS_TYPES, ColumnContext, Generator, apply_nulls, null_mask


class PrimaryKey(Generator):
    name = "primary_key"
    summary = "Dense keys 1..rows; the source's own ids are never used."
    types = frozenset({"integer"})

    def block(self, ctx, start, count, block, done):
        return pl.Series(ctx.column, np.arange(start + 1, start + count + 1, dtype=np.int64))


class ConstantParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    value: int | float | str | bool


class Constant(Generator):
    name = "constant"
    summary = "The same value in every row (the reviewer writes it)."
    types = frozenset({"integer", "float", "string", "boolean", "date", "datetime"})
    Params = ConstantParams

    @classmethod
    def check(cls, ctx_stats, params, logical_type):
        v = params.value  # type: ignore[attr-defined]
        ok = {
            "integer": isinstance(v, int) and not isinstance(v, bool),
            "float": isinstance(v, int | float) and not isinstance(v, bool),
            "string": isinstance(v, str),
            "boolean": isinstance(v, bool),
            "date": isinstance(v, str),
            "datetime": isinstance(v, str),
        }[logical_type]
        if not ok:
            return f"params.value {v!r} is not a {logical_type}"
        return None

    def block(self, ctx, start, count, block, done):
        v = ctx.params.value  # type: ignore[attr-defined]
        s = pl.Series(ctx.column, [v] * count)
        return apply_nulls(ctx, s.cast(POLARS_TYPES[ctx.logical_type], strict=True), block)


class AlwaysNull(Generator):
    name = "always_null"
    summary = "NULL in every row (all-null source columns, or columns left out on purpose)."
    types = frozenset({"integer", "float", "string", "boolean", "date", "datetime"})

    def block(self, ctx, start, count, block, done):
        return pl.Series(ctx.column, [None] * count, dtype=POLARS_TYPES[ctx.logical_type])


class ForeignKeyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str
    distribution: str = "fanout"  # fanout: children per parent as released; uniform: any parent


class ForeignKey(Generator):
    """References drawn from the parent's synthetic key range 1..n(parent), so each resolves.

    With the released children-per-parent distribution, each parent gets a number of children
    drawn from it (parents without children in their released share), scaled to the rows wanted;
    rows are then assigned to parents in order. Nulls follow the column's null fraction.
    """

    name = "foreign_key"
    summary = "References into the synthetic parent's key range; every one resolves."
    types = frozenset({"integer"})
    Params = ForeignKeyParams

    @classmethod
    def check(cls, ctx_stats, params, logical_type):
        if params.distribution not in ("fanout", "uniform"):  # type: ignore[attr-defined]
            return "params.distribution must be fanout or uniform"
        return None

    def _counts(self, ctx: ColumnContext) -> np.ndarray | None:
        key = "fk_counts"
        if key in ctx.cache:
            return ctx.cache[key]
        params = ctx.params
        n_parent = ctx.parent_rows(params.table)  # type: ignore[attr-defined]
        counts = None
        fanout = ctx.stats.fanout if ctx.stats else None
        if params.distribution == "fanout" and fanout and n_parent > 0 and ctx.rows > 0:  # type: ignore[attr-defined]
            rng = ctx.rng(0, "fanout")
            referenced = sum(b.count for b in fanout)
            parent_source = ctx.parent_source_rows(params.table) or referenced  # type: ignore[attr-defined]
            share = min(1.0, referenced / parent_source) if parent_source else 1.0
            weights = np.array([b.count for b in fanout], dtype=float)
            weights /= weights.sum()
            which = rng.choice(len(fanout), size=n_parent, p=weights)
            lo = np.array([b.start for b in fanout])[which]
            hi = np.array([b.end for b in fanout])[which]
            draws = rng.integers(lo, hi + 1).astype(float)
            draws[rng.random(n_parent) >= share] = 0
            if draws.sum() == 0:
                draws[:] = 1
            wanted = int(self._non_null_before(ctx)[-1])
            scaled = draws * (wanted / draws.sum())
            counts = np.floor(scaled).astype(np.int64)
            short = wanted - counts.sum()
            if short > 0:
                remainder = scaled - counts
                counts[np.argsort(-remainder, kind="stable")[:short]] += 1
            counts = np.cumsum(counts)
        ctx.cache[key] = counts
        return counts

    def _non_null_before(self, ctx: ColumnContext) -> np.ndarray:
        """Non-null rows before each block (and, last, in the whole table): the null masks of
        all blocks are drawn once, so children are dealt to parents in the same order whatever
        the chunking."""
        key = "fk_non_null"
        if key not in ctx.cache:
            blocks = -(-ctx.rows // BLOCK_ROWS)
            sizes = [min(BLOCK_ROWS, ctx.rows - b * BLOCK_ROWS) for b in range(blocks)]
            kept = [int((~null_mask(ctx, b, n)).sum()) for b, n in enumerate(sizes)]
            ctx.cache[key] = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
        return ctx.cache[key]

    def block(self, ctx, start, count, block, done):
        n_parent = ctx.parent_rows(ctx.params.table)  # type: ignore[attr-defined]
        if n_parent <= 0:
            return pl.Series(ctx.column, [None] * count, dtype=pl.Int64)
        cum = self._counts(ctx)
        nulls = null_mask(ctx, block, count)
        if cum is None:
            ids = ctx.rng(block).integers(1, n_parent + 1, size=count)
            return apply_nulls(ctx, pl.Series(ctx.column, ids.astype(np.int64)), block)
        # the block's non-null rows take the next places in the parents' sequence of children
        first = self._non_null_before(ctx)[block]
        places = first + np.arange(int((~nulls).sum()))
        ids = np.zeros(count, dtype=np.int64)
        ids[~nulls] = np.searchsorted(cum, places, side="right") + 1
        out = pl.Series(ctx.column, ids)
        return (
            pl.select(pl.when(pl.lit(pl.Series(nulls))).then(None).otherwise(out))
            .to_series()
            .alias(ctx.column)
        )
