"""Released statistics of a date column: year bins, months, hours, its coded range, days after
its start column; and the dates read apart (cdm_source's release dates, days from birth)."""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import math
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import disclosure as dc
from .. import omop
from ..database import qualified, quote
from ..schema import TableSchema, list_tables
from ..sqlexpr import SqlExpressions
from ..statistics import (
    Bin,
    ColumnStats,
    DateOffset,
    DateRange,
    QuantilePoint,
    TimeOfDay,
    ends_at_a_cut,
)
from .context import ColumnRead, TableRead
from .passes import Frequencies
from .release import noisy_quantiles, released_quantiles
from .scalars import numeric_type, py_value, text_stored
from .windows import range_grid


def summarise_dates(t: TableRead, c: ColumnRead) -> None:
    """A date column: year bins and months, its coded range, the hours of a datetime, and the
    days after its start column."""
    _years_and_months(t, c)
    days = t.exact.get(f"day:{c.col.name}")
    if days is not None and days.total:
        c.cs.range = coded_range(days, t.policy, c.notes)
    if c.col.logical_type == "datetime":
        _hours(t, c)
    start = omop.start_of([x.name for x in t.table.columns], c.col.name)
    if start is not None and f"off:{c.col.name}" in t.exact:
        _offsets(t, c, start)


def _years_and_months(t: TableRead, c: ColumnRead) -> None:
    col, cs, policy, noise = c.col, c.cs, t.policy, t.noise
    years = list(t.exact[f"year:{col.name}"].rows or [])
    out_of_range = sum(n for y, n in years if y < 1677 or y > 2262)
    if out_of_range:
        t.findings.append(f"{col.name}: {t.about(out_of_range)} dates outside 1677..2262")
    if noise is None:
        binned = dc.merge_bins(years, policy)
    else:
        binned = noise.release_years(f"{col.name}:years", years, policy)
    cs.years = [Bin(start=a, end=b, count=n) for a, b, n in binned.bins]
    c.notes.extend(binned.notes)
    if cs.years:
        c.notes.append("dates released as year bins and month-of-year counts, never as dates")
    months = dict(t.exact[f"month:{col.name}"].rows or [])
    month_raw = [months.get(m, 0) for m in range(1, 13)]
    if noise is not None:
        month_raw = noise.counts(f"{col.name}:months", month_raw)
    month_counts, month_notes = dc.release_shares(month_raw, policy)
    cs.months = month_counts if any(month_counts) else None
    c.notes.extend(f"months: {n}" for n in month_notes)


def _hours(t: TableRead, c: ColumnRead) -> None:
    by_hour = dict(t.exact[f"hour:{c.col.name}"].rows or [])
    # one histogram over the rows: midnight (a date-only time) or the hour of the day
    cells = [int(by_hour.get(-1, 0))] + [by_hour.get(h, 0) for h in range(24)]
    if t.noise is not None:
        cells = t.noise.counts(f"{c.col.name}:hours", cells)
    released_midnight = dc.release_count(cells[0], t.policy) or 0
    hours, hour_notes = dc.release_shares(cells[1:], t.policy)
    c.notes.extend(f"hours: {n}" for n in hour_notes)
    timed = sum(hours)
    # the share comes from released counts only, so a few odd times cannot show in it
    share = 1.0 if not timed else round(released_midnight / (released_midnight + timed), 3)
    c.cs.time_of_day = TimeOfDay(midnight_share=share, hours=hours if timed else None)


def _offsets(t: TableRead, c: ColumnRead, start: str) -> None:
    """Days after the start column: quantiles and the share of rows ending before it."""
    col, policy, noise = c.col, t.policy, t.noise
    offsets = t.exact[f"off:{col.name}"]
    n_pairs = int(t.scan[f"p:{col.name}"] or 0)
    negative = sum(n for d, n in offsets.rows or [] if d is not None and d < 0)
    if noise is None:
        grid = dc.quantile_grid(n_pairs, policy)
        quantiles = released_quantiles(n_pairs, grid, policy, True, offsets.values_at, offsets.rows)
    else:
        dp_offsets = t.exact.get(f"dpoff:{col.name}")
        quantiles = noisy_quantiles(noise, dp_offsets, col, "offset", policy, [])
        if not quantiles:
            c.notes.append(f"days after {start}: quantiles withheld under differential privacy")
    if quantiles:
        if noise is None:
            neg = dc.release_count(negative, policy) or 0
            released_pairs = dc.release_count(n_pairs, policy) or n_pairs
        else:
            neg = dc.release_count(noise.counts(f"{col.name}:negative", [negative])[0], policy)
            neg, released_pairs = neg or 0, c.cs.non_null or 0
        c.cs.offset = DateOffset(
            from_column=start,
            quantiles=quantiles,
            negative_share=min(1.0, round(neg / released_pairs, 4)) if neg else 0.0,
        )
        c.notes.append(
            f"days after {start} released as quantiles, each the mean of k={policy.k} "
            "neighbouring values (top- and bottom-coded)"
            if noise is None
            else f"days after {start} released as quantiles by the exponential mechanism "
            "among half-integers (no row holds one)"
        )
    if negative:
        t.findings.append(f"{col.name}: {t.about(negative)} rows end before {start}")


def coded_range(
    days: Frequencies, policy: dc.DisclosurePolicy, notes: list[str]
) -> DateRange | None:
    """A date column's coded range: the k-date means at the ends of the quantile grid (p1 and
    p99), each kept as it is only where at least k rows hold that day, else moved inwards to a
    month boundary (the first day of the next month, the last day of the month before), so no
    end is a day fewer than k rows hold and the range stays inside the data."""
    ends = released_quantiles(
        days.total, range_grid(days.total, policy), policy, True, days.values_at, days.rows
    )
    if len(ends) != 2:
        return None
    held = {int(v): int(c) for v, c in days.rows or [] if v is not None}
    epoch = dt.date(1970, 1, 1)
    low, high = (float(p.value) for p in ends)
    if not (low == int(low) and held.get(int(low), 0) >= policy.k):
        first = epoch + dt.timedelta(days=math.floor(low))
        low = (dt.date(first.year + first.month // 12, first.month % 12 + 1, 1) - epoch).days
    if not (high == int(high) and held.get(int(high), 0) >= policy.k):
        last = epoch + dt.timedelta(days=math.ceil(high))
        high = (dt.date(last.year, last.month, 1) - epoch).days - 1
    if low > high:
        notes.append("range: the coded ends fall in one month; not released")
        return None
    notes.append(
        f"range coded to p{ends[0].p * 100:g}..p{ends[1].p * 100:g}: each end the mean of "
        f"k={policy.k} neighbouring dates, moved inwards to a month boundary unless k rows hold "
        "that day; no generated date lies outside it"
    )
    lo_day, hi_day = (epoch + dt.timedelta(days=int(x)) for x in (low, high))
    return DateRange(low=lo_day.isoformat(), high=hi_day.isoformat())


def offset_before_end(
    stats: dict[str, ColumnStats], start: str, end: str, notes: list[str]
) -> None:
    """Where an end is anchored at the end of the data (:func:`.statistics.ends_at_a_cut`), the
    start's days before its end: the end's released offsets turned round (nothing new leaves)."""
    e, s = stats.get(end), stats.get(start)
    if e is None or s is None or e.offset is None or not ends_at_a_cut(s, e):
        return
    s.offset = DateOffset(
        from_column=end,
        quantiles=[
            QuantilePoint(p=round(1 - q.p, 6), value=-q.value)  # type: ignore[operator]
            for q in reversed(e.offset.quantiles)
        ],
        negative_share=e.offset.negative_share,
    )
    notes.append(
        f"days before {end}: its released offsets turned round ({end} ends at the end of the "
        "data: the start is drawn before it)"
    )


def release_dates(engine: Engine, schema: str | None, table: TableSchema) -> dict[str, ColumnStats]:
    """cdm_source's release dates (the latest of each column), which end the extract: no
    generated date lies after them. Metadata about the extract, not about a patient, so not
    held to the count rule."""
    if table.name != "cdm_source":
        return {}
    dates = [c for c in table.columns if c.name in ("source_release_date", "cdm_release_date")]
    if not dates:
        return {}
    sql = SqlExpressions(engine)
    tbl = qualified(engine, schema, table.source_name)
    parts = ", ".join(f"MAX({sql.as_date(quote(engine, c.name), text_stored(c))})" for c in dates)
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT {parts} FROM {tbl}")).one()
    out = {}
    for col, value in zip(dates, row, strict=True):
        day = py_value(value)
        if isinstance(day, str) and re.match(r"^\d{4}-\d{2}-\d{2}", day):
            out[col.name] = ColumnStats(range=DateRange(low=day[:10], high=day[:10]))
    return out


def days_from_birth(
    conn: Connection,
    schema: str | None,
    tbl: str,
    table: TableSchema,
    start: str,
    cs: ColumnStats,
    policy: dc.DisclosurePolicy,
) -> None:
    """An observation period's start as days from its person's birth (the age at which
    observation starts, which the start's own dates and the birth's cannot carry), for the
    rows whose person is in the extract's person table."""
    names = list_tables(conn.engine, schema)
    if "person" not in names or "person_id" not in [c.name for c in table.columns]:
        return
    engine = conn.engine
    if numeric_type(table.column(start).sql_type):
        return  # dates kept as day or second counts: not read as calendar dates here
    person_cols = {
        c["name"].lower(): c for c in sa.inspect(engine).get_columns(names["person"], schema=schema)
    }
    if "year_of_birth" not in person_cols:
        return
    sql = SqlExpressions(engine)
    birth_type = str(person_cols.get("birth_datetime", {}).get("type", "")).upper()
    usable = set(person_cols) - ({"birth_datetime"} if numeric_type(birth_type) else set())
    birth = sql.birth_day_number("p", usable, not any(x in birth_type for x in ("DATE", "TIME")))
    begins = sql.day_number("t.s", text_stored(table.column(start)))
    rows = conn.execute(
        sa.text(
            f"SELECT d, COUNT(*) FROM (SELECT {begins} - {birth} AS d FROM (SELECT "
            f"{quote(engine, start)} AS s, {quote(engine, 'person_id')} AS pid FROM {tbl}) t "
            f"JOIN {qualified(engine, schema, names['person'])} p "
            f"ON p.{quote(engine, 'person_id')} = t.pid) x WHERE d IS NOT NULL GROUP BY d "
            "ORDER BY d"
        )
    ).all()
    counts = [(int(d), int(n)) for d, n in rows]
    n = sum(c for _, c in counts)
    if n < 2 * policy.k:
        return
    cumulative = list(itertools.accumulate(c for _, c in counts))

    def values_at(ranks: list[int]) -> dict[int, Any]:
        return {r: counts[bisect.bisect_left(cumulative, r)][0] for r in ranks}

    grid = dc.quantile_grid(n, policy)
    cs.days_from_birth = released_quantiles(n, grid, policy, True, values_at, counts) or None
