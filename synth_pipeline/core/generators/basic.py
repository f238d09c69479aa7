"""Generators that need no distribution: keys, constants and always-null."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from ..omop import EVENT_SHAPES
from .base import (
    BLOCK_ROWS,
    POLARS_TYPES,
    ColumnContext,
    Generator,
    apply_nulls,
    days,
    null_mask,
)


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

    @classmethod
    def possible_values(cls, stats, params):
        return [params.value]  # type: ignore[attr-defined]

    def block(self, ctx, start, count, block, done):
        v = ctx.params.value  # type: ignore[attr-defined]
        s = pl.Series(ctx.column, [v] * count)
        return apply_nulls(ctx, s.cast(POLARS_TYPES[ctx.logical_type], strict=True), block)


class AlwaysNull(Generator):
    name = "always_null"
    summary = "NULL in every row (all-null source columns, or columns left out on purpose)."
    types = frozenset({"integer", "float", "string", "boolean", "date", "datetime"})

    @classmethod
    def possible_values(cls, stats, params):
        return []

    def block(self, ctx, start, count, block, done):
        return pl.Series(ctx.column, [None] * count, dtype=POLARS_TYPES[ctx.logical_type])


class ForeignKeyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    table: str
    distribution: str = "fanout"  # fanout: children per parent as released; uniform: any parent
    person: str | None = Field(
        None,
        description="The row's person column: the reference is then one of that person's rows "
        "of the parent (visit_detail_id of an event: a visit detail of the same person).",
    )
    within: str | None = Field(
        None,
        description="With person: a column the parent row must share as well, where the parent "
        "has it (visit_occurrence_id: a visit detail of the event's own visit).",
    )
    during: str | None = Field(
        None,
        description="With person: the row's date that must fall within the parent row's dates "
        "(an event's start within its visit detail).",
    )


class ForeignKey(Generator):
    """References drawn from the parent's synthetic key range 1..n(parent), so each resolves.

    With the released children-per-parent distribution, parents are dealt children in key order:
    each parent's count is drawn from the released bins (parents without children in their
    released share), scaled so the expected total matches the rows wanted, and rounded at
    random. Counts are drawn for 2^20 parents at a time, as the rows need them, so memory does
    not grow with the parent table. Rows left over when the parents run out go to parents drawn
    uniformly. Nulls follow the column's null fraction.
    """

    name = "foreign_key"
    summary = "References into the synthetic parent's key range; every one resolves."
    types = frozenset({"integer"})
    Params = ForeignKeyParams
    PARENTS_PER_DRAW = 1 << 20

    @classmethod
    def check(cls, ctx_stats, params, logical_type):
        if params.distribution not in ("fanout", "uniform"):  # type: ignore[attr-defined]
            return "params.distribution must be fanout or uniform"
        if params.within and not params.person:  # type: ignore[attr-defined]
            return "params.within needs params.person"
        return None

    @classmethod
    def depends_on(cls, params):
        from .references import person_columns

        p: ForeignKeyParams = params  # type: ignore[assignment]
        return [*person_columns(p.person), *(c for c in (p.within, p.during) if c)]

    def block(self, ctx, start, count, block, done):
        ids = self._references(ctx, start, count, block, done)
        p: ForeignKeyParams = ctx.params  # type: ignore[assignment]
        if p.person is None or ctx.relations is None:
            return ids
        return self._same_person(ctx, block, ids, done)

    def _same_person(self, ctx, block, ids: pl.Series, done) -> pl.Series:
        """Each reference moved to one of the row's person's parent rows (of the same ``within``
        where the parent has that column too); NULL where the person has none."""
        from .references import row_persons

        p: ForeignKeyParams = ctx.params  # type: ignore[assignment]
        relations = ctx.relations
        person = row_persons(ctx, done, p.person)  # type: ignore[arg-type]
        if person is None:
            return ids
        u = ctx.rng(block, "same-person").random(len(person))
        out = np.zeros(len(person), dtype=np.int64)
        decided = np.zeros(len(person), dtype=bool)
        shape = EVENT_SHAPES.get(p.table)
        dated = p.during in done and shape is not None and shape.end is not None
        day = days(done[p.during]) if dated else None

        def choose(index, key: np.ndarray, rows: np.ndarray) -> np.ndarray:
            if day is not None:  # the parent row whose dates hold the row's date
                return index.containing(key[rows], day[rows])
            return index.pick(key[rows], u[rows])

        order, until = (shape.start, shape.end) if dated else (None, None)
        if p.within and p.within in done:
            index = relations.index(p.table, p.within, order, until)
            if index is not None:
                key = done[p.within].fill_null(0).cast(pl.Int64).to_numpy()
                decided = key > 0
                out[decided] = choose(index, key, decided)
        index = relations.index(p.table, "person_id", order, until)
        if index is not None:
            rest = ~decided  # a row of a visit takes a row of that visit, or none
            out[rest] = choose(index, person, rest)
        elif not decided.any():
            return ids
        keep = ids.is_not_null().to_numpy() & (out > 0)
        return pl.Series(ctx.column, np.where(keep, out, 0), dtype=pl.Int64).replace(0, None)

    def _references(self, ctx, start, count, block, done) -> pl.Series:
        n_parent = ctx.parent_rows(ctx.params.table)  # type: ignore[attr-defined]
        if n_parent <= 0:
            return pl.Series(ctx.column, [None] * count, dtype=pl.Int64)
        fanout = ctx.stats.fanout if ctx.stats else None
        if ctx.params.distribution != "fanout" or not fanout:  # type: ignore[attr-defined]
            ids = ctx.rng(block).integers(1, n_parent + 1, size=count)
            return apply_nulls(ctx, pl.Series(ctx.column, ids.astype(np.int64)), block)
        nulls = null_mask(ctx, block, count)
        ids = np.zeros(count, dtype=np.int64)
        ids[~nulls] = self._deal(ctx, block, int((~nulls).sum()), n_parent)
        out = pl.Series(ctx.column, ids)
        return (
            pl.select(pl.when(pl.lit(pl.Series(nulls))).then(None).otherwise(out))
            .to_series()
            .alias(ctx.column)
        )

    def _deal(self, ctx: ColumnContext, block: int, k: int, n_parent: int) -> np.ndarray:
        """Parent ids for the next ``k`` non-null rows of ``block`` (blocks come in order)."""
        state = ctx.cache.get("fk_deal")
        if state is None or block < state["next_block"] - 1:
            state = {
                "next_block": 0,
                "pos": 0,
                "draw": -1,
                "cum": np.zeros(0, np.int64),
                "base": 0,
                "last": None,
            }
            ctx.cache["fk_deal"] = state
        if block == state["next_block"] - 1 and state["last"] is not None:
            return state["last"]  # the same block again (a column regenerated under the rules)
        while state["next_block"] < block:  # catch up on skipped blocks, in order
            b = state["next_block"]
            n = min(BLOCK_ROWS, ctx.rows - b * BLOCK_ROWS)
            self._take(ctx, state, int((~null_mask(ctx, b, n)).sum()), n_parent, b)
            state["next_block"] += 1
        ids = self._take(ctx, state, k, n_parent, block)
        state["next_block"], state["last"] = block + 1, ids
        return ids

    def _take(self, ctx, state, k, n_parent, block) -> np.ndarray:
        parts = []
        while k > 0:
            end = state["base"] + (int(state["cum"][-1]) if len(state["cum"]) else 0)
            if state["pos"] >= end:
                if (state["draw"] + 1) * self.PARENTS_PER_DRAW >= n_parent:  # parents used up
                    parts.append(ctx.rng(block, "overflow").integers(1, n_parent + 1, size=k))
                    break
                state["base"] = end
                state["draw"] += 1
                state["cum"] = np.cumsum(self._counts(ctx, state["draw"], n_parent))
                continue
            take = min(k, end - state["pos"])
            local = state["pos"] - state["base"] + np.arange(take)
            first_parent = state["draw"] * self.PARENTS_PER_DRAW
            parts.append(first_parent + np.searchsorted(state["cum"], local, side="right") + 1)
            state["pos"] += take
            k -= take
        return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)

    def _counts(self, ctx: ColumnContext, draw: int, n_parent: int) -> np.ndarray:
        """Children of parents draw*2^20 .. (draw+1)*2^20 - 1 (their own random stream)."""
        fanout = ctx.stats.fanout  # type: ignore[union-attr]
        params = ctx.params
        lo_parent = draw * self.PARENTS_PER_DRAW
        n = min(self.PARENTS_PER_DRAW, n_parent - lo_parent)
        rng = ctx.rng(draw, "fanout")
        weights = np.array([b.count for b in fanout], dtype=float)
        weights /= weights.sum()
        referenced = sum(b.count for b in fanout)
        parent_source = ctx.parent_source_rows(params.table) or referenced  # type: ignore[attr-defined]
        share = min(1.0, referenced / parent_source) if parent_source else 1.0
        mean = share * float(
            sum(w * (b.start + b.end) / 2 for w, b in zip(weights, fanout, strict=True))
        )
        frac = ctx.stats.null_fraction if ctx.stats else 0.0
        factor = ctx.rows * (1 - frac) / (n_parent * mean) if mean > 0 else 0.0
        which = rng.choice(len(fanout), size=n, p=weights)
        lo = np.array([b.start for b in fanout])[which]
        hi = np.array([b.end for b in fanout])[which]
        draws = rng.integers(lo, hi + 1).astype(float)
        draws[rng.random(n) >= share] = 0
        return np.floor(draws * factor + rng.random(n)).astype(np.int64)
