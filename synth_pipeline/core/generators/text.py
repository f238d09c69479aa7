"""Strings from a length and shape profile: never a real value."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
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
_ALNUM = np.frombuffer(b"ABCDEFGHJKLMNPQRSTUVWXYZ0123456789", dtype=np.uint8)
_DIGITS = np.frombuffer(b"0123456789", dtype=np.uint8)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
# each word as ASCII bytes followed by one space, padded with spaces to a common width
_WORD_SIZES = np.array([len(w) + 1 for w in _WORDS], dtype=np.int64)
_WORD_BYTES = np.array(
    [list((w + " ").ljust(int(_WORD_SIZES.max())).encode()) for w in _WORDS], dtype=np.uint8
)


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
            ).astype(np.int64)
        else:
            lengths = np.full(count, 8, dtype=np.int64)
        if ctx.max_length:
            lengths = np.minimum(lengths, max(1, ctx.max_length - len(p.prefix)))
        # The random draws are the same as a row-by-row ``"".join`` would use; only the
        # assembly into strings is vectorised (a flat byte buffer plus offsets).
        if pattern == "uuid":
            data, sizes = _uuids(rng, count)
        elif pattern == "text":
            data, sizes = _filler_text(rng, count, lengths)
        else:
            alphabet = _DIGITS if pattern == "digits" else _ALNUM
            data, sizes = _characters(rng, count, lengths, alphabet)
        values = _string_series(ctx.column, data, sizes)
        if p.prefix or ctx.max_length:
            expr = pl.lit(values)
            if p.prefix:
                expr = pl.concat_str([pl.lit(p.prefix), expr])
            if ctx.max_length:
                expr = expr.str.slice(0, ctx.max_length)
            values = pl.select(expr.alias(ctx.column)).to_series()
        return apply_nulls(ctx, values, block)


def _string_series(name: str, data: np.ndarray, sizes: np.ndarray) -> pl.Series:
    """A string Series from concatenated ASCII bytes and the byte length of each value."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    arr = pa.Array.from_buffers(
        pa.large_utf8(),
        len(sizes),
        [None, pa.py_buffer(offsets), pa.py_buffer(np.ascontiguousarray(data, dtype=np.uint8))],
    )
    return pl.Series(name, arr, dtype=pl.Utf8)


def _characters(
    rng: np.random.Generator, count: int, lengths: np.ndarray, alphabet: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each value: the first ``length`` of a row of random characters from ``alphabet``."""
    width = int(lengths.max()) if count else 1
    chars = rng.integers(0, len(alphabet), size=(count, width))
    keep = np.arange(width) < lengths[:, None]
    return alphabet[chars[keep]], lengths


def _uuids(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Version-4-shaped UUIDs: 8-4-4-4-12 hex digits, the version digit 4 and variant a."""
    digits = _HEX[rng.integers(0, 16, size=(count, 32))]
    out = np.empty((count, 36), dtype=np.uint8)
    out[:, 0:8] = digits[:, 0:8]
    out[:, 9:13] = digits[:, 8:12]
    out[:, 15:18] = digits[:, 13:16]
    out[:, 20:23] = digits[:, 17:20]
    out[:, 24:36] = digits[:, 20:32]
    out[:, [8, 13, 18, 23]] = ord("-")
    out[:, 14] = ord("4")
    out[:, 19] = ord("a")
    return out.ravel(), np.full(count, 36, dtype=np.int64)


def _filler_text(
    rng: np.random.Generator, count: int, lengths: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each value: 64 random filler words joined by spaces, cut to its length, right-stripped."""
    words = rng.integers(0, len(_WORDS), size=(count, 64))
    if count == 0:
        return np.empty(0, dtype=np.uint8), np.zeros(0, dtype=np.int64)
    # every word and its following space is at least 3 bytes: later words never show
    shown = min(64, (int(lengths.max()) + 2) // 3 + 1)
    words = words[:, :shown]
    size = _WORD_SIZES[words]  # word plus one space
    end = np.cumsum(size, axis=1)
    begin = end - size
    cut = np.minimum(lengths, end[:, -1])
    # a cut right after a word leaves one trailing space (words never hold a space): strip it
    out_len = cut - (end == cut[:, None]).any(axis=1)
    piece = np.clip(out_len[:, None] - begin, 0, size).ravel()
    used = piece > 0
    piece, which = piece[used], words.ravel()[used]
    keep = np.arange(_WORD_BYTES.shape[1]) < piece[:, None]
    return _WORD_BYTES[which][keep], out_len
