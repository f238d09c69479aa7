"""What every column generator is and receives.

A generator turns one column's released statistics and the reviewer's parameters into values,
a block of rows at a time. Randomness comes from a stream per (seed, table, column, block),
so the output for a seed does not depend on how the rows are chunked for writing.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict

from ..statistics import ColumnStats

# Key under which the rules pass a block's latest allowed end day to end-date generators
# (suffixed with the start column's name).
WINDOW_END = "__window_end__:"

# Rows per random stream. Chunks handed to writers are whole multiples of this.
BLOCK_ROWS = 65_536

POLARS_TYPES: dict[str, pl.DataType] = {
    "integer": pl.Int64(),
    "float": pl.Float64(),
    "string": pl.Utf8(),
    "date": pl.Date(),
    "datetime": pl.Datetime("us"),
    "boolean": pl.Boolean(),
}


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class ColumnContext:
    """Everything a generator may use: the approved config of its column, nothing from the source."""

    table: str
    column: str
    logical_type: str
    nullable: bool
    max_length: int | None
    stats: ColumnStats | None
    params: BaseModel
    rows: int  # rows this run generates for the table
    seed: int
    parent_rows: Callable[[str], int]  # synthetic row count of another table in this run
    parent_source_rows: Callable[[str], int | None]  # released source row count of another table
    rules: Any = None  # the table's consistency rules (config.Rules), None in isolated use
    # the project's other tables regenerated on demand (synthesise.Relations), None in isolated
    # use: references that must reach a row of the same person need them
    relations: Any = None
    # the table's column configs (config.ColumnConfig by name), for generators that follow a
    # reference another column of the row holds
    columns: dict[str, Any] = field(default_factory=dict)
    # the extract's window in days since 1970-01-01 (synthesise.extract_window), when known
    window: tuple[int, int] | None = None
    cache: dict[str, Any] = field(default_factory=dict)

    def rng(self, block: int, purpose: str = "") -> np.random.Generator:
        key = [
            self.seed & 0xFFFFFFFF,
            zlib.crc32(self.table.encode()),
            zlib.crc32((self.column + "|" + purpose).encode()),
            block,
        ]
        return np.random.default_rng(np.random.SeedSequence(key))


class Generator:
    """A column generator. Subclasses set the class variables and implement :meth:`block`."""

    name: ClassVar[str]
    summary: ClassVar[str]
    types: ClassVar[frozenset[str]]
    Params: ClassVar[type[BaseModel]] = NoParams
    needs_stats: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def depends_on(cls, params: BaseModel) -> list[str]:
        """Columns of the same row that must be generated first."""
        return []

    @classmethod
    def check(
        cls, ctx_stats: ColumnStats | None, params: BaseModel, logical_type: str
    ) -> str | None:
        """A reason this generator cannot run with these statistics and parameters, or None."""
        for need in cls.needs_stats:
            if ctx_stats is None or not getattr(ctx_stats, need):
                return f"needs stats.{need}, which this column's statistics do not have"
        return None

    @classmethod
    def possible_values(cls, stats: ColumnStats | None, params: BaseModel) -> list | None:
        """Every value this generator can write, read from the approved config alone, or None
        when the values are not a finite list (numbers through quantiles, keys, dates...)."""
        return None

    def block(
        self, ctx: ColumnContext, start: int, count: int, block: int, done: dict[str, pl.Series]
    ) -> pl.Series:
        raise NotImplementedError


def null_mask(ctx: ColumnContext, block: int, count: int) -> np.ndarray:
    """Which rows of a block are NULL: a share equal to the column's released null fraction."""
    frac = ctx.stats.null_fraction if ctx.stats else 0.0
    if frac <= 0 or count == 0:
        return np.zeros(count, dtype=bool)
    return ctx.rng(block, "nulls").random(count) < frac


def apply_nulls(ctx: ColumnContext, values: pl.Series, block: int) -> pl.Series:
    """Blank a share of the rows equal to the column's released null fraction."""
    mask = null_mask(ctx, block, len(values))
    if not mask.any():
        return values
    return (
        pl.select(pl.when(pl.lit(pl.Series(mask))).then(None).otherwise(values))
        .to_series()
        .alias(values.name)
    )


# The largest float64 below 2**63. A quantile near the top of the 64-bit range rounds, as a
# float, to 2**63, which NumPy would wrap to -2**63 and Polars would refuse to cast.
_INT64_FLOAT_MAX = float(np.nextafter(2.0**63, 0))


def whole_numbers(nums: np.ndarray) -> np.ndarray:
    """Floats rounded to whole numbers that fit a 64-bit integer (NaN stays NaN)."""
    return np.clip(np.rint(nums), -(2.0**63), _INT64_FLOAT_MAX)


def interpolate_quantiles(points: list[tuple[float, float]], u: np.ndarray) -> np.ndarray:
    """Inverse CDF through released (probability, value) points; beyond the ends, the end values."""
    ps = np.array([p for p, _ in points], dtype=float)
    vs = np.array([v for _, v in points], dtype=float)
    if len(ps) == 1:
        return np.full(len(u), vs[0])
    # stretch the coded range over the whole unit interval so the ends are not piled up
    lo, hi = ps[0], ps[-1]
    scaled = lo + u * (hi - lo)
    return np.interp(scaled, ps, vs)


def quantile_share(points: list[tuple[float, float]], x: np.ndarray) -> np.ndarray:
    """The inverse of :func:`interpolate_quantiles`: for each value, the share u in [0, 1] of
    draws that land at or below it (so draws can be kept below a limit without piling up)."""
    ps = np.array([p for p, _ in points], dtype=float)
    vs = np.array([v for _, v in points], dtype=float)
    if len(ps) == 1 or ps[-1] == ps[0]:
        return np.where(x >= vs[0], 1.0, 0.0)
    scaled = np.interp(x, vs, ps, left=ps[0], right=ps[-1])
    return np.clip((scaled - ps[0]) / (ps[-1] - ps[0]), 0.0, 1.0)


def days(series: pl.Series) -> np.ndarray:
    """Dates or datetimes as int64 days since 1970-01-01 (nulls as the minimum int64)."""
    if series.dtype == pl.Date:
        out = series.cast(pl.Int64)
    else:
        out = (series.cast(pl.Datetime("us")).cast(pl.Int64) // 86_400_000_000).cast(pl.Int64)
    return out.fill_null(np.iinfo(np.int64).min).to_numpy()
