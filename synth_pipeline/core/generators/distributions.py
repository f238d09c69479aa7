"""Generators that sample a released distribution: common values and numeric quantiles."""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from ..statistics import fits_type
from .base import POLARS_TYPES, Generator, apply_nulls, interpolate_quantiles, whole_numbers


class WeightedChoiceParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    other: Literal["drop", "value", "null", "quantiles"] = "drop"
    other_value: int | float | str | bool | None = None


class WeightedChoice(Generator):
    """Values seen at least k times, in their released proportions.

    The folded "other" share becomes: ``drop`` (spread over the listed values), ``value`` (one
    stand-in such as concept 0, "No matching concept"), ``null``, or ``quantiles`` (numbers drawn
    from the released quantiles).
    """

    name = "weighted_choice"
    summary = "Common values (seen at least k times) in their released proportions."
    types = frozenset({"integer", "float", "string", "boolean"})
    Params = WeightedChoiceParams

    @classmethod
    def check(cls, ctx_stats, params, logical_type):
        p = params
        has_values = bool(ctx_stats and ctx_stats.values)
        if not has_values and p.other in ("drop", "null"):  # type: ignore[attr-defined]
            return "needs stats.values (no value was seen at least k times); choose another generator or other: value"
        if p.other == "value" and p.other_value is None:  # type: ignore[attr-defined]
            return "params.other_value is required when other is value"
        if p.other == "quantiles" and not (ctx_stats and ctx_stats.quantiles):  # type: ignore[attr-defined]
            return "other: quantiles needs stats.quantiles"
        if ctx_stats and ctx_stats.values:
            for vc in ctx_stats.values:
                if not fits_type(vc.value, logical_type):
                    return f"stats.values holds {vc.value!r}, which is not a {logical_type}"
        return None

    @classmethod
    def possible_values(cls, stats, params):
        p: WeightedChoiceParams = params  # type: ignore[assignment]
        if p.other == "quantiles" and (stats is None or stats.other_count or not stats.values):
            return None  # the other share is drawn through quantiles: any number in the range
        values = [vc.value for vc in (stats.values or [])] if stats else []
        if p.other == "value" and p.other_value is not None:
            values.append(p.other_value)
        return values

    def block(self, ctx, start, count, block, done):
        p: WeightedChoiceParams = ctx.params  # type: ignore[assignment]
        stats = ctx.stats
        values = [vc.value for vc in (stats.values or [])] if stats else []
        weights = [float(vc.count) for vc in (stats.values or [])] if stats else []
        other = float(stats.other_count or 0) if stats else 0.0
        rng = ctx.rng(block)
        dtype = POLARS_TYPES[ctx.logical_type]
        use_other = p.other != "drop" and (other > 0 or not values)
        total = sum(weights) + (other if use_other else 0.0)
        if not values and use_other:
            other, total = 1.0, 1.0
        probs = np.array(weights + ([other] if use_other else []), dtype=float) / total
        pick = rng.choice(len(probs), size=count, p=probs)
        listed = (
            pl.Series(ctx.column, values, dtype=dtype, strict=False)
            if values
            else pl.Series(ctx.column, [], dtype=dtype)
        )
        idx = np.minimum(pick, max(len(values) - 1, 0))
        out = listed.gather(idx) if values else pl.Series(ctx.column, [None] * count, dtype=dtype)
        if use_other:
            is_other = pick == len(values)
            if p.other == "value":
                fill = pl.Series(ctx.column, [p.other_value] * count, dtype=dtype, strict=False)
            elif p.other == "quantiles":
                points = [(q.p, float(q.value)) for q in stats.quantiles]  # type: ignore[union-attr]
                nums = interpolate_quantiles(points, rng.random(count))
                if ctx.logical_type == "integer":
                    nums = whole_numbers(nums)
                fill = pl.Series(ctx.column, nums).cast(dtype)
            else:
                fill = pl.Series(ctx.column, [None] * count, dtype=dtype)
            out = (
                pl.select(pl.when(pl.lit(pl.Series(is_other))).then(fill).otherwise(out))
                .to_series()
                .alias(ctx.column)
            )
        return apply_nulls(ctx, out, block)


class NumericQuantilesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    minimum: float | None = None
    maximum: float | None = None


class NumericQuantiles(Generator):
    """Numbers by inverse-CDF sampling through the released quantiles (top- and bottom-coded),
    rounded for integer columns, optionally clipped to a reviewer's plausible range."""

    name = "numeric_quantiles"
    summary = "Numbers drawn through the released quantiles (p1..p99 coded), with nulls."
    types = frozenset({"integer", "float"})
    Params = NumericQuantilesParams
    needs_stats = ("quantiles",)

    def block(self, ctx, start, count, block, done):
        p: NumericQuantilesParams = ctx.params  # type: ignore[assignment]
        points = [(q.p, float(q.value)) for q in ctx.stats.quantiles]  # type: ignore[union-attr]
        nums = interpolate_quantiles(points, ctx.rng(block).random(count))
        if p.minimum is not None or p.maximum is not None:
            nums = np.clip(nums, p.minimum, p.maximum)
        if ctx.logical_type == "integer":
            nums = whole_numbers(nums).astype(np.int64)
        return apply_nulls(
            ctx, pl.Series(ctx.column, nums).cast(POLARS_TYPES[ctx.logical_type]), block
        )


class ConditionalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    by: str | list[str]
    other: Literal["pooled", "null"] = Field(
        "pooled",
        description="Rows whose group was not released: pooled (the pooled small groups, else "
        "the whole column) or null (twin columns: no value rather than one that disagrees).",
    )

    @property
    def by_columns(self) -> list[str]:
        return [self.by] if isinstance(self.by, str) else list(self.by)


def _group_index(ctx, done: dict[str, pl.Series]) -> tuple[np.ndarray, list]:
    """For each row, the index of its group in stats.conditional.groups (-1: pooled/other)."""
    cond = ctx.stats.conditional  # type: ignore[union-attr]
    by = cond.by_columns
    if len(by) == 1:
        keys = done[by[0]].to_list()
        lookup = {g.value: i for i, g in enumerate(cond.groups)}
    else:
        keys = list(zip(*(done[b].to_list() for b in by), strict=True))
        lookup = {
            tuple(g.value) if isinstance(g.value, list) else g.value: i
            for i, g in enumerate(cond.groups)
        }
    return np.array([lookup.get(k, -1) for k in keys], dtype=np.int64), cond.groups


def _fallback(ctx):
    """What rows of groups that were not released are drawn from (None: they are NULL)."""
    if ctx.params.other == "null":  # type: ignore[attr-defined]
        return None
    return ctx.stats.conditional.other or ctx.stats  # type: ignore[union-attr]


def _check_conditional(ctx_stats, params) -> str | None:
    cond = ctx_stats.conditional if ctx_stats else None
    if cond is None:
        return "needs stats.conditional (per-group statistics: list the pair under `conditional` in project.yaml)"
    if cond.by_columns != params.by_columns:  # type: ignore[attr-defined]
        return f"params.by is {params.by!r} but the statistics are per {cond.by!r}"  # type: ignore[attr-defined]
    return None


class ConditionalQuantiles(Generator):
    """Numbers drawn through the released quantiles of the row's group (e.g. value_as_number per
    measurement_concept_id); rows of pooled or unknown groups use the pooled or overall quantiles."""

    name = "conditional_quantiles"
    summary = "Numbers through the quantiles of the row's group (per value of another column)."
    types = frozenset({"integer", "float"})
    Params = ConditionalParams

    @classmethod
    def depends_on(cls, params):
        return params.by_columns  # type: ignore[attr-defined]

    @classmethod
    def check(cls, ctx_stats, params, logical_type):
        return _check_conditional(ctx_stats, params)

    def block(self, ctx, start, count, block, done):
        idx, groups = _group_index(ctx, done)
        rng = ctx.rng(block)
        u, nulls = rng.random(count), rng.random(count)
        out = np.full(count, np.nan)
        fallback = _fallback(ctx)
        for gi in np.unique(idx):
            rows = idx == gi
            src = groups[gi] if gi >= 0 else fallback
            if src is None or not src.quantiles:
                continue
            pts = [(q.p, float(q.value)) for q in src.quantiles]
            out[rows] = interpolate_quantiles(pts, u[rows])
            frac = getattr(src, "null_fraction", 0.0) or 0.0
            out[rows & (nulls < frac)] = np.nan
        if ctx.logical_type == "integer":
            out = whole_numbers(out)
        s = pl.Series(ctx.column, out).fill_nan(None)
        return s.cast(POLARS_TYPES[ctx.logical_type])


class ConditionalChoice(Generator):
    """Common values of the row's group (e.g. unit_concept_id per measurement_concept_id)."""

    name = "conditional_choice"
    summary = "Common values of the row's group (per value of another column)."
    types = frozenset({"integer", "string", "boolean", "float"})
    Params = ConditionalParams

    @classmethod
    def depends_on(cls, params):
        return params.by_columns  # type: ignore[attr-defined]

    @classmethod
    def possible_values(cls, stats, params):
        # a group's values, or for pooled and unknown groups the pooled or the column's values
        if stats is None:
            return []
        cond = stats.conditional
        sources = list(cond.groups if cond else [])
        if params.other != "null":  # type: ignore[attr-defined]
            sources += [*([cond.other] if cond and cond.other else []), stats]
        return [v.value for src in sources for v in (src.values or [])]

    @classmethod
    def check(cls, ctx_stats, params, logical_type):
        problem = _check_conditional(ctx_stats, params)
        if problem is None and not any(g.values for g in ctx_stats.conditional.groups):
            return "the per-group statistics hold no values (numbers are per group as quantiles: use conditional_quantiles)"
        return problem

    def block(self, ctx, start, count, block, done):
        idx, groups = _group_index(ctx, done)
        rng = ctx.rng(block)
        dtype = POLARS_TYPES[ctx.logical_type]
        picked = np.full(count, None, dtype=object)
        u, nulls = rng.random(count), rng.random(count)
        fallback = _fallback(ctx)
        for gi in np.unique(idx):
            rows = np.flatnonzero(idx == gi)
            src = groups[gi] if gi >= 0 else fallback
            if src is None:
                continue
            values = [v.value for v in (src.values or [])]
            if not values:
                continue
            w = np.array([v.count for v in src.values], dtype=float)
            cum = np.cumsum(w / w.sum())
            choice = np.minimum(np.searchsorted(cum, u[rows], side="right"), len(values) - 1)
            frac = getattr(src, "null_fraction", 0.0) or 0.0
            options = np.empty(len(values), dtype=object)
            options[:] = values
            picked[rows] = np.where(nulls[rows] < frac, None, options[choice])
        return pl.Series(ctx.column, picked.tolist(), dtype=dtype, strict=False)
