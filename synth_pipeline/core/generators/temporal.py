"""Dates and datetimes from binned distributions, twins and offsets.

A date is drawn as a year (from released year bins), a month (released month-of-year counts)
and a uniform day. A ``*_datetime`` twin copies its ``*_date`` and adds a time of day, so the two
always agree. An end date is its start date plus a non-negative released offset in days.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict, Field

from .base import (
    WINDOW_END,
    ColumnContext,
    Generator,
    apply_nulls,
    days,
    interpolate_quantiles,
    quantile_share,
)

_EPOCH = np.datetime64("1970-01-01", "D")


class DateBinsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_year: int | None = Field(None, description="Placeholder range when no bins were released.")
    to_year: int | None = None


def _days(ctx: ColumnContext, count: int, block: int) -> np.ndarray:
    """Days since 1970-01-01 drawn from the year bins and month-of-year counts."""
    rng = ctx.rng(block)
    stats = ctx.stats
    params = ctx.params
    if stats and stats.years:
        bins = stats.years
        w = np.array([max(b.count, 0) for b in bins], dtype=float)
        w = w / w.sum() if w.sum() > 0 else np.full(len(bins), 1 / len(bins))
        which = rng.choice(len(bins), size=count, p=w)
        lo = np.array([b.start for b in bins])[which]
        hi = np.array([b.end for b in bins])[which]
        years = rng.integers(lo, hi + 1)
    elif ctx.window is not None:  # nothing released: anywhere in the extract's dates
        return ctx.window[0] + np.floor(
            rng.random(count) * (ctx.window[1] - ctx.window[0] + 1)
        ).astype(np.int64)
    else:
        lo, hi = params.from_year or 2000, params.to_year or params.from_year or 2000  # type: ignore[attr-defined]
        years = rng.integers(lo, hi + 1, size=count)
    if stats and stats.months and sum(stats.months) > 0:
        mw = np.array(stats.months, dtype=float)
        months = rng.choice(12, size=count, p=mw / mw.sum()) + 1
    else:
        months = rng.integers(1, 13, size=count)
    first = (years.astype("int64") - 1970) * 12 + (months - 1)
    month_start = np.datetime64("1970-01", "M") + first.astype("timedelta64[M]")
    next_start = month_start + np.timedelta64(1, "M")
    length = (next_start.astype("datetime64[D]") - month_start.astype("datetime64[D]")).astype(
        np.int64
    )
    day = np.floor(rng.random(count) * length).astype(np.int64)
    out = (month_start.astype("datetime64[D]") - _EPOCH).astype(np.int64) + day
    bounds = date_bounds(ctx)
    return np.clip(out, *bounds) if bounds else out


def date_bounds(ctx: ColumnContext) -> tuple[int, int] | None:
    """The days a column's dates may take: its coded range, inside the extract's window (the
    project's released ranges and the extract's release date), whichever are known."""
    return intersect(range_days(ctx.stats), ctx.window)


def intersect(a: tuple[int, int] | None, b: tuple[int, int] | None) -> tuple[int, int] | None:
    """The days in both spans (the first where they do not meet)."""
    if a is None or b is None:
        return a or b
    lo, hi = max(a[0], b[0]), min(a[1], b[1])
    return (lo, hi) if lo <= hi else a


def days_in_window(stats, lo: np.ndarray, hi: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Days drawn from the column's released year bins restricted to each row's window
    [lo, hi] (inclusive day numbers), uniform within a bin's years; uniform over the window
    where the bins put no weight in it. So a date moved into a person's observation period
    keeps the column's shape over the years the period covers."""
    window = np.floor(lo + u * (hi - lo + 1)).astype(np.int64)
    bins = stats.years if stats else None
    if not bins:
        return np.minimum(window, hi)
    first = [(np.datetime64(f"{b.start:04d}-01-01") - _EPOCH).astype(np.int64) for b in bins]
    last = [(np.datetime64(f"{b.end + 1:04d}-01-01") - _EPOCH).astype(np.int64) for b in bins]
    edges, weights = [], []
    for a, b, bin_ in zip(first, last, bins, strict=True):
        if edges and a > edges[-1]:  # a gap between bins holds nothing
            edges.append(a)
            weights.append(0.0)
        elif not edges:
            edges.append(a)
        edges.append(b)
        weights.append(float(max(bin_.count, 0)))
    x = np.array(edges, dtype=float)
    cdf = np.concatenate([[0.0], np.cumsum(weights)])
    f_lo = np.interp(lo.astype(float), x, cdf)
    f_hi = np.interp(hi.astype(float) + 1, x, cdf)
    mass = f_hi > f_lo
    drawn = np.interp(f_lo + u * (f_hi - f_lo), cdf, x)
    out = np.where(mass, np.floor(drawn).astype(np.int64), window)
    return np.clip(out, lo, hi)


def bins_days(stats) -> tuple[int, int] | None:
    """The days a column's released year bins span (1 January of the first year to 31
    December of the last), or None."""
    bins = stats.years if stats else None
    if not bins:
        return None
    first = np.datetime64(f"{bins[0].start:04d}-01-01")
    last = np.datetime64(f"{bins[-1].end + 1:04d}-01-01")
    return int((first - _EPOCH).astype(np.int64)), int((last - _EPOCH).astype(np.int64)) - 1


def range_days(stats) -> tuple[int, int] | None:
    """The column's coded range in days since 1970-01-01, or None when none was released."""
    r = stats.range if stats else None
    if r is None:
        return None
    low, high = (int((np.datetime64(d, "D") - _EPOCH).astype(np.int64)) for d in (r.low, r.high))
    return (low, high) if low <= high else None


def _seconds_of_day(ctx: ColumnContext, count: int, block: int) -> np.ndarray:
    tod = ctx.stats.time_of_day if ctx.stats else None
    if tod is None:
        return np.zeros(count, dtype=np.int64)
    rng = ctx.rng(block, "time")
    midnight = rng.random(count) < tod.midnight_share
    if tod.hours and sum(tod.hours) > 0:
        hw = np.array(tod.hours, dtype=float)
        hours = rng.choice(24, size=count, p=hw / hw.sum())
    else:
        hours = rng.integers(0, 24, size=count)
    secs = hours * 3600 + rng.integers(0, 3600, size=count)
    secs[midnight] = 0
    return secs.astype(np.int64)


def _check_bins(stats, params) -> str | None:
    if not (stats and stats.years) and params.from_year is None:
        return "needs stats.years or params.from_year (a placeholder range)"
    return None


class DateBins(Generator):
    name = "date_bins"
    summary = "Dates drawn from released year bins and month-of-year counts, day uniform."
    types = frozenset({"date"})
    Params = DateBinsParams

    @classmethod
    def check(cls, ctx_stats, params, logical_type):
        return _check_bins(ctx_stats, params)

    def block(self, ctx, start, count, block, done):
        days = _days(ctx, count, block)
        return apply_nulls(ctx, pl.Series(ctx.column, days.astype(np.int32)).cast(pl.Date), block)


class DatetimeBins(Generator):
    name = "datetime_bins"
    summary = "Datetimes: a binned date plus a time of day from the released hour profile."
    types = frozenset({"datetime"})
    Params = DateBinsParams

    @classmethod
    def check(cls, ctx_stats, params, logical_type):
        return _check_bins(ctx_stats, params)

    def block(self, ctx, start, count, block, done):
        micros = (_days(ctx, count, block) * 86400 + _seconds_of_day(ctx, count, block)) * 1_000_000
        return apply_nulls(ctx, pl.Series(ctx.column, micros).cast(pl.Datetime("us")), block)


class TwinParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    date_column: str


class DatetimeFromDate(Generator):
    """The ``*_datetime`` twin of a ``*_date`` column: same day, time from the released profile."""

    name = "datetime_from_date"
    summary = "Same day as its date twin, plus a time of day; null where the date is null."
    types = frozenset({"datetime"})
    Params = TwinParams

    @classmethod
    def depends_on(cls, params):
        return [params.date_column]  # type: ignore[attr-defined]

    def block(self, ctx, start, count, block, done):
        date = done[ctx.params.date_column]  # type: ignore[attr-defined]
        secs = pl.Series(_seconds_of_day(ctx, count, block) * 1_000_000).cast(pl.Duration("us"))
        out = date.cast(pl.Datetime("us")) + secs
        return out.alias(ctx.column)


class DatePartParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    date_column: str
    part: str = Field(description="year, month or day")


class DatePart(Generator):
    """year_of_birth, month_of_birth, day_of_birth taken from the generated birth date."""

    name = "date_part"
    summary = "Year, month or day of another generated date column, so the two agree."
    types = frozenset({"integer"})
    Params = DatePartParams

    @classmethod
    def depends_on(cls, params):
        return [params.date_column]  # type: ignore[attr-defined]

    @classmethod
    def check(cls, ctx_stats, params, logical_type):
        if params.part not in ("year", "month", "day"):  # type: ignore[attr-defined]
            return "params.part must be year, month or day"
        return None

    def block(self, ctx, start, count, block, done):
        src = done[ctx.params.date_column]  # type: ignore[attr-defined]
        part = ctx.params.part  # type: ignore[attr-defined]
        expr = getattr(pl.col("d").dt, part)()
        return pl.DataFrame({"d": src}).select(expr.cast(pl.Int64)).to_series().alias(ctx.column)


class DateOffsetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    from_column: str
    minimum_days: int = Field(
        0, description="End on or after start: offsets below this are raised to it."
    )
    before: bool = Field(
        False,
        description="The column is the start, drawn before from_column (its end, anchored at "
        "the end of the data): the released days are negative.",
    )


class DateOffset(Generator):
    """An end date or datetime: its start column plus a released offset in days, never negative.

    Where the end may not pass a day (the end of the row's observation period or the person's
    death, which the rules pass on, or the column's coded range), the offset is drawn from the
    released distribution below what is left, so ends do not pile up at the limit.
    """

    @staticmethod
    def _room(ctx, done, base: pl.Series) -> tuple[np.ndarray, np.ndarray] | None:
        """Days from each start to the earliest and the latest end allowed (the column's coded
        range, and the latest day the rules allow), or None when nothing limits them."""
        p: DateOffsetParams = ctx.params  # type: ignore[assignment]
        limit = None if p.before else done.get(WINDOW_END + p.from_column)
        bounds = date_bounds(ctx)
        if limit is None and bounds is None:
            return None
        start = base.cast(pl.Date).cast(pl.Int64).fill_null(0).to_numpy()
        far = np.iinfo(np.int64).max // 4
        first = np.full(len(start), -far, dtype=np.int64)
        last = np.full(len(start), far, dtype=np.int64)
        if limit is not None:
            last = np.minimum(last, limit.cast(pl.Date).cast(pl.Int64).fill_null(far).to_numpy())
        if p.before:  # a start: on or before its end
            last = np.minimum(last, start)
        if bounds is not None:
            last = np.minimum(last, bounds[1])
            first = np.minimum(np.maximum(first, bounds[0]), last)  # the latest day wins
        return (first - start).astype(float), (last - start).astype(float)

    name = "date_offset"
    summary = "Start column plus a released offset in days (never before the start)."
    types = frozenset({"date", "datetime"})
    Params = DateOffsetParams
    needs_stats = ("offset",)

    @classmethod
    def depends_on(cls, params):
        return [params.from_column]  # type: ignore[attr-defined]

    def block(self, ctx, start, count, block, done):
        p: DateOffsetParams = ctx.params  # type: ignore[assignment]
        base = done[p.from_column]
        points = [(q.p, float(q.value)) for q in ctx.stats.offset.quantiles]  # type: ignore[union-attr]
        u = ctx.rng(block).random(count)
        room = self._room(ctx, done, base)
        if room is not None:  # draw inside the days allowed rather than pile up at a limit
            first, last = quantile_share(points, room[0]), quantile_share(points, room[1])
            u = first + u * np.maximum(last - first, 0.0)
        offs = np.rint(interpolate_quantiles(points, u)).astype(np.int64)
        if (ctx.rules is None or ctx.rules.end_after_start) and p.before:
            offs = np.minimum(offs, -p.minimum_days)
        elif ctx.rules is None or ctx.rules.end_after_start:
            offs = np.maximum(offs, p.minimum_days)
        delta = pl.Series(offs * 86_400_000_000).cast(pl.Duration("us"))
        out = base.cast(pl.Datetime("us")) + delta
        if p.before:  # never before the coded range; the rules place it in the person's life
            bounds = date_bounds(ctx)
            if bounds is not None:
                low = pl.lit(int(bounds[0]) * 86_400_000_000).cast(pl.Datetime("us"))
                out = pl.select(
                    pl.max_horizontal(out, pl.min_horizontal(low, base.cast(pl.Datetime("us"))))
                ).to_series()
            if ctx.logical_type == "date":
                out = out.cast(pl.Date)
            return apply_nulls(ctx, out.alias(ctx.column), block)
        limit = done.get(WINDOW_END + p.from_column)
        if limit is not None:  # the latest day the rules allow (end of the visit's period, death)
            last = limit.cast(pl.Datetime("us")) + pl.duration(hours=23, minutes=59, seconds=59)
            out = pl.select(
                pl.min_horizontal(out, pl.max_horizontal(last, base.cast(pl.Datetime("us"))))
            ).to_series()
        bounds = date_bounds(ctx)
        if bounds is not None:  # never past the column's coded range, never before the start
            high = pl.lit(int(bounds[1]) * 86_400_000_000 + 86_399_000_000).cast(pl.Datetime("us"))
            out = pl.select(
                pl.min_horizontal(out, pl.max_horizontal(high, base.cast(pl.Datetime("us"))))
            ).to_series()
            out = self._into_range_start(ctx, out, limit, int(bounds[0]))
        if ctx.logical_type == "date":
            out = out.cast(pl.Date)
        return apply_nulls(ctx, out.alias(ctx.column), block)

    @staticmethod
    def _into_range_start(ctx, out: pl.Series, limit: pl.Series | None, low: int) -> pl.Series:
        """An end its offsets cannot bring up to the column's coded range (a start far below
        it): raised to the range's first day where the rules' latest day allows, else, when the
        column may be NULL, left NULL, since no day keeps both the range and the rules."""
        end = days(out)
        below = (end != np.iinfo(np.int64).min) & (end < low)
        if not below.any():
            return out
        latest = (
            days(limit.cast(pl.Date))
            if limit is not None
            else np.full(len(end), np.iinfo(np.int64).max)
        )
        raise_to = below & (latest >= low)
        blank = below & (latest < low) & ctx.nullable
        first_day = pl.lit(low * 86_400_000_000).cast(pl.Datetime("us"))
        return (
            pl.select(
                pl.when(pl.lit(pl.Series(blank)))
                .then(None)
                .when(pl.lit(pl.Series(raise_to)))
                .then(first_day)
                .otherwise(out)
            )
            .to_series()
            .alias(out.name)
        )
