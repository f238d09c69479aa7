"""Strings from a length and shape profile: never a real value."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from .base import Generator, apply_nulls, interpolate_quantiles

# Neutral filler for free text: no names, no clinical words.
_WORDS = np.array(
    [
        "lorem",
        "ipsum",
        "dolor",
        "sit",
        "amet",
        "consectetur",
        "adipiscing",
        "elit",
        "sed",
        "do",
        "eiusmod",
        "tempor",
        "incididunt",
        "ut",
        "labore",
        "et",
        "dolore",
        "magna",
        "aliqua",
        "enim",
        "ad",
        "minim",
        "veniam",
        "quis",
        "nostrud",
        "exercitation",
        "ullamco",
        "laboris",
        "nisi",
        "aliquip",
        "ex",
        "ea",
        "commodo",
        "consequat",
    ]
)
_ALNUM = np.array(list("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"))
_DIGITS = np.array(list("0123456789"))
_HEX = np.array(list("0123456789abcdef"))


class StringPatternParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    pattern: str | None = Field(
        None, description="uuid, digits, code or text; defaults to the released stats.pattern"
    )
    prefix: str = Field("", description="Put before every value, e.g. SYN- to mark it synthetic.")


class StringPattern(Generator):
    """Random strings of the released shape (uuid, digits, code, text) and length profile."""

    name = "string_pattern"
    summary = "Random strings shaped like the column (uuid, digits, code, text); never real values."
    types = frozenset({"string"})
    Params = StringPatternParams

    @classmethod
    def check(cls, ctx_stats, params, logical_type):
        pattern = params.pattern or (ctx_stats.pattern if ctx_stats else None) or "code"  # type: ignore[attr-defined]
        if pattern not in ("uuid", "digits", "code", "text"):
            return f"pattern {pattern!r} is not one of uuid, digits, code, text"
        return None

    def block(self, ctx, start, count, block, done):
        p: StringPatternParams = ctx.params  # type: ignore[assignment]
        stats = ctx.stats
        pattern = p.pattern or (stats.pattern if stats else None) or "code"
        rng = ctx.rng(block)
        if stats and stats.length:
            points = [(q.p, float(q.value)) for q in stats.length]
            lengths = np.maximum(
                1, np.rint(interpolate_quantiles(points, rng.random(count)))
            ).astype(int)
        else:
            lengths = np.full(count, 8)
        if ctx.max_length:
            lengths = np.minimum(lengths, max(1, ctx.max_length - len(p.prefix)))
        if pattern == "uuid":
            hexes = _HEX[rng.integers(0, 16, size=(count, 32))]
            values = [
                f"{''.join(h[:8])}-{''.join(h[8:12])}-4{''.join(h[13:16])}-a{''.join(h[17:20])}-{''.join(h[20:])}"
                for h in hexes
            ]
        elif pattern == "text":
            words = _WORDS[rng.integers(0, len(_WORDS), size=(count, 64))]
            values = [
                " ".join(w)[:n].rstrip() or "lorem" for w, n in zip(words, lengths, strict=True)
            ]
        else:
            alphabet = _DIGITS if pattern == "digits" else _ALNUM
            width = int(lengths.max()) if count else 1
            chars = alphabet[rng.integers(0, len(alphabet), size=(count, width))]
            values = ["".join(c[:n]) for c, n in zip(chars, lengths, strict=True)]
        if p.prefix:
            values = [p.prefix + v for v in values]
        if ctx.max_length:
            values = [v[: ctx.max_length] for v in values]
        return apply_nulls(ctx, pl.Series(ctx.column, values, dtype=pl.Utf8), block)
