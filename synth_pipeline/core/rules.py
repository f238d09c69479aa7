"""Consistency rules, enforced by construction while a block of rows is generated.

Columns are first generated independently; then the rows' anchors are moved where the rules
need them (the person of an event's visit, a start date inside the person's visit or
observation period, after birth and before death), and every column derived from a moved
anchor (end dates, datetime twins, parts of dates) is generated again from its own random
stream, so it keeps its released distribution relative to the new anchor. No row is rejected
and redrawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .config import TableConfig
from .generators.base import WINDOW_END
from .generators.temporal import days_in_window, intersect, range_days
from .omop import EVENT_SHAPES, PARTS_OF_VISITS, EventShape, date_pairs
from .period_ages import released_lengths, starts_from_birth
from .relations import NO_BIRTH, NO_DEATH, ParentTables, Periods, Persons, days


def _dates(values: np.ndarray, like: pl.Series) -> pl.Series:
    s = pl.Series(like.name, values.astype(np.int64))
    out = s.cast(pl.Int32).cast(pl.Date)
    if like.dtype != pl.Date:
        out = out.cast(pl.Datetime("us"))
    return out.alias(like.name)


def _fk_target(cfg: TableConfig, column: str) -> str | None:
    col = cfg.columns.get(column)
    if col is None or col.generator != "foreign_key":
        return None
    return str(col.params.get("table"))


def _released(cfg: TableConfig, column: str) -> bool:
    """Whether the column's dates come from released statistics (not a placeholder)."""
    stats = cfg.columns[column].stats
    return bool(stats and (stats.years or stats.offset or stats.range))


@dataclass
class _Rows:
    """One block's rows while their anchors are placed: each row's person (``pid``, 0 for none)
    and start day, and the bounds the rules put on them (``lo``..``hi`` for the start, ``end_hi``
    the latest day an end may take)."""

    pid: np.ndarray
    start: np.ndarray
    n_person: int
    has_person: np.ndarray = field(init=False)
    has_start: np.ndarray = field(init=False)
    lo: np.ndarray = field(init=False)
    hi: np.ndarray = field(init=False)
    end_hi: np.ndarray = field(init=False)
    via_visit: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.pid)
        self.has_person = (self.pid >= 1) & (self.pid <= self.n_person)
        self.has_start = self.start != np.iinfo(np.int64).min
        self.lo = np.full(n, NO_BIRTH, dtype=np.int64)
        self.hi = np.full(n, NO_DEATH, dtype=np.int64)
        self.end_hi = np.full(n, NO_DEATH, dtype=np.int64)
        self.via_visit = np.zeros(n, dtype=bool)


def place_anchors(
    cfg: TableConfig,
    done: dict[str, pl.Series],
    relations: ParentTables | None,
    rng: np.random.Generator,
    window: tuple[int, int] | None = None,
) -> set[str]:
    """Move person and start date of each row where the table's rules need them.

    Returns the names of the columns changed (their dependants must be generated again) and
    records, under ``WINDOW_END + start``, the latest day an end date may take.
    """
    if relations is None:
        return set()
    placed = _persons_to_place(cfg, done, relations)
    if placed is None:
        return set()
    shape, persons = placed
    rules = cfg.rules
    person_s = done["person_id"]
    pid = person_s.fill_null(0).to_numpy().astype(np.int64)
    drawn = days(done[shape.start])
    start = _starting_days(cfg, done, shape, persons, pid, drawn, window, rng)
    rows = _Rows(pid, start, len(persons.birth))
    if (
        shape.kind == "event"
        and rules.visit_same_person
        and _fk_target(cfg, "visit_occurrence_id") == "visit_occurrence"
    ):
        _bound_by_visits(rows, relations, done)
    _bound_by_periods(cfg, shape, rows, _periods_to_keep(cfg, shape, relations), rng)
    if rules.within_lifetime:
        _bound_by_lifetime(rows, persons, shape)
    rows.hi = np.maximum(rows.hi, rows.lo)
    rows.end_hi = np.maximum(rows.end_hi, rows.lo)
    new_start = _placed_starts(cfg, shape, rows, window, rng)
    changed = _store_anchors(cfg, done, shape, rows, new_start, drawn, person_s)
    if _fit_ends(cfg, done, shape, rows, new_start):
        changed.add(shape.end)
    return changed


def _persons_to_place(
    cfg: TableConfig, done: dict[str, pl.Series], relations: ParentTables
) -> tuple[EventShape, Persons] | None:
    """The table's event shape and the persons its rows are placed among, or None when no rule
    moves its rows (no start, no person, no rule enabled, no person table)."""
    shape = EVENT_SHAPES.get(cfg.table)
    rules = cfg.rules
    if shape is None or shape.start not in done or _fk_target(cfg, "person_id") != "person":
        return None
    if not (rules.within_lifetime or rules.within_observation_period or rules.visit_same_person):
        return None
    persons = relations.persons()
    return None if persons is None else (shape, persons)


def _starting_days(
    cfg: TableConfig,
    done: dict[str, pl.Series],
    shape: EventShape,
    persons: Persons,
    pid: np.ndarray,
    drawn: np.ndarray,
    window: tuple[int, int] | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """The rows' start days before the rules bound them: as drawn, except an observation
    period's (at the window's start when nothing was released of it, at an age drawn from the
    released days from birth when those were)."""
    start = drawn
    if shape.kind == "lifetime" and window is not None and not _released(cfg, shape.start):
        # observation periods of which nothing was released span the extract's dates
        start = np.where(start == np.iinfo(np.int64).min, start, window[0])
        if shape.end in done and not _released(cfg, shape.end):
            done[shape.end] = _dates(np.full(len(start), window[1]), done[shape.end])
    ages = cfg.columns[shape.start].stats
    if shape.kind == "lifetime" and cfg.rules.within_lifetime and ages and ages.days_from_birth:
        lengths = released_lengths(cfg, shape.start, shape.end)
        start = starts_from_birth(
            ages.days_from_birth, start, done, shape.end, persons, pid, window, rng, lengths
        )
    return start


def _bound_by_visits(rows: _Rows, relations: ParentTables, done: dict[str, pl.Series]) -> None:
    """An event of a visit takes the visit's person, and its start the visit's days."""
    visits = relations.visits()
    if visits is None:
        return
    vid = done["visit_occurrence_id"].fill_null(0).to_numpy().astype(np.int64)
    via_visit = rows.via_visit = (vid >= 1) & (vid <= len(visits.person))
    v = vid[via_visit] - 1
    rows.pid[via_visit] = visits.person[v]
    rows.has_person = (rows.pid >= 1) & (rows.pid <= rows.n_person)
    rows.lo[via_visit], rows.hi[via_visit] = visits.start[v], visits.end[v]


def _periods_to_keep(
    cfg: TableConfig, shape: EventShape, relations: ParentTables
) -> Periods | None:
    """The observation periods the rows' starts must fall in, or None when no rule asks it."""
    if not cfg.rules.within_observation_period or shape.kind == "lifetime":
        return None
    if shape.kind == "death":
        return relations.periods_before_deaths()
    return relations.periods()


def _bound_by_periods(
    cfg: TableConfig,
    shape: EventShape,
    rows: _Rows,
    periods: Periods | None,
    rng: np.random.Generator,
) -> None:
    """Rows not placed by a visit inside a period of their person; every end inside the period
    its start (or its visit's start) falls in, a visit detail's inside its visit too."""
    via_visit = rows.via_visit
    if periods is not None and periods.count.sum() > 0:
        _into_periods(rows, periods, shape.kind == "death", rng)
        if via_visit.any():
            idx = periods.containing(rows.pid[via_visit], rows.lo[via_visit])
            rows.end_hi[via_visit] = np.where(
                idx >= 0, periods.end[np.maximum(idx, 0)], rows.hi[via_visit]
            )
    elif via_visit.any():
        rows.end_hi[via_visit] = NO_DEATH
    if cfg.table in PARTS_OF_VISITS and via_visit.any():  # a visit detail ends within its visit
        rows.end_hi[via_visit] = np.minimum(rows.end_hi[via_visit], rows.hi[via_visit])


def _into_periods(rows: _Rows, periods: Periods, death: bool, rng: np.random.Generator) -> None:
    """Each row not placed by a visit gets a period of its person (a person with one, if its
    own has none): the one its start falls in, else one drawn; a death its person's last."""
    pid, start, has_start, n_person = rows.pid, rows.start, rows.has_start, rows.n_person
    others = ~rows.via_visit & rows.has_person
    without = others & (periods.count[np.clip(pid - 1, 0, n_person - 1)] == 0)
    if without.any():  # only persons with an observation period have events
        candidates = np.flatnonzero(periods.count) + 1
        pid[without] = candidates[rng.integers(0, len(candidates), size=int(without.sum()))]
    p = pid[others] - 1
    pick = periods.first[p] + np.floor(rng.random(len(p)) * periods.count[p]).astype(np.int64)
    own = periods.containing(pid[others], start[others])  # a period of its own person first
    pick = np.where(has_start[others] & (own >= 0), own, pick)
    if death:  # a death recorded in the extract: in the person's last period
        pick = periods.first[p] + periods.count[p] - 1
        own = np.where(own == pick, own, -1)
    rows.lo[others], rows.hi[others] = periods.start[pick], periods.end[pick]
    rows.end_hi[others] = periods.end[pick]
    # the dates outside their person's periods are dealt out again among those rows, earliest
    # date to the earliest period, so the dates keep their distribution and the persons
    # their rows (giving the rows to persons observed then instead would bring the dates
    # back closer still, but lose the released children per person); what still falls
    # outside is redrawn from the column's years inside the window
    away = np.flatnonzero(others)[has_start[others] & (own < 0)]
    if len(away) > 1:
        rows.start = start.copy()
        rows.start[away[np.argsort(rows.lo[away], kind="stable")]] = np.sort(start[away])


def _bound_by_lifetime(rows: _Rows, persons: Persons, shape: EventShape) -> None:
    """Starts on or after the person's birth; starts and ends on or before the person's death
    (a death's own date excepted)."""
    q = np.clip(rows.pid - 1, 0, rows.n_person - 1)
    birth = np.where(rows.has_person, persons.birth[q], NO_BIRTH)
    death = np.where(rows.has_person, persons.death[q], NO_DEATH)
    rows.lo = np.maximum(rows.lo, birth)
    if shape.kind != "death":
        rows.hi = np.minimum(rows.hi, death)
        rows.end_hi = np.minimum(rows.end_hi, death)


def _placed_starts(
    cfg: TableConfig,
    shape: EventShape,
    rows: _Rows,
    window: tuple[int, int] | None,
    rng: np.random.Generator,
) -> np.ndarray:
    """Every start inside its bounds: one outside two bounds redrawn from the column's released
    dates between them, one outside a single bound moved onto it; then inside the column's
    coded range too, where the bounds allow."""
    start, has_start, lo, hi = rows.start, rows.has_start, rows.lo, rows.hi
    stats = cfg.columns[shape.start].stats
    bounded = (lo > NO_BIRTH) & (hi < NO_DEATH)
    outside = has_start & ((start < lo) | (start > hi))
    redraw = outside & bounded
    new_start = start.copy()
    new_start[redraw] = days_in_window(stats, lo[redraw], hi[redraw], rng.random(int(redraw.sum())))
    only_lo = outside & ~bounded
    new_start[only_lo] = np.clip(start[only_lo], lo[only_lo], hi[only_lo])
    bounds = intersect(range_days(stats), window)
    if bounds is not None:  # inside the start column's coded range too, where the window allows
        inside_lo, inside_hi = np.maximum(lo, bounds[0]), np.minimum(hi, bounds[1])
        fits = has_start & (inside_lo <= inside_hi)
        new_start[fits] = np.clip(new_start[fits], inside_lo[fits], inside_hi[fits])
    return new_start


def _store_anchors(
    cfg: TableConfig,
    done: dict[str, pl.Series],
    shape: EventShape,
    rows: _Rows,
    new_start: np.ndarray,
    drawn: np.ndarray,
    person_s: pl.Series,
) -> set[str]:
    """The moved starts and persons into ``done``, and the latest day of each row's end under
    ``WINDOW_END + start``; returns the columns changed."""
    rules = cfg.rules
    has_start, pid = rows.has_start, rows.pid
    changed = set()
    if (new_start != drawn).any():
        moved = _dates(np.where(has_start, new_start, 0), done[shape.start])
        done[shape.start] = (
            pl.select(pl.when(pl.lit(pl.Series(has_start))).then(moved).otherwise(None))
            .to_series()
            .alias(shape.start)
        )
        changed.add(shape.start)
    if (pid != person_s.fill_null(0).to_numpy()).any():
        ids = pl.Series("person_id", pid, dtype=pl.Int64)
        done["person_id"] = (
            pl.select(pl.when(pl.lit(pl.Series(pid == 0))).then(None).otherwise(ids))
            .to_series()
            .alias("person_id")
        )
        changed.add("person_id")
    if rules.end_after_start or rules.within_observation_period or rules.within_lifetime:
        done[WINDOW_END + shape.start] = _dates(
            np.clip(rows.end_hi, -(10**6), 10**6), done[shape.start].cast(pl.Date)
        )
        # the ends drawn from the start (before the limit was known) are drawn again below it
        changed.add(shape.start)
    return changed


def _fit_ends(
    cfg: TableConfig,
    done: dict[str, pl.Series],
    shape: EventShape,
    rows: _Rows,
    new_start: np.ndarray,
) -> bool:
    """An end not drawn from the start (one anchored at the data's end) moved between start
    and limit; returns whether any moved."""
    end_col = cfg.columns.get(shape.end) if shape.end else None
    if end_col is None or shape.end not in done or end_col.generator == "date_offset":
        return False
    end = days(done[shape.end])
    has_end = end != np.iinfo(np.int64).min
    fixed = np.clip(end, np.where(rows.has_start, new_start, end), rows.end_hi)
    if not (has_end.any() and (fixed[has_end] != end[has_end]).any()):
        return False
    done[shape.end] = (
        pl.select(
            pl.when(pl.lit(pl.Series(has_end)))
            .then(_dates(np.where(has_end, fixed, 0), done[shape.end]))
            .otherwise(None)
        )
        .to_series()
        .alias(shape.end)
    )
    return True


def align_twins(cfg: TableConfig, done: dict[str, pl.Series]) -> None:
    """Datetimes on their dates, and birth parts from birth_datetime, whatever generated them."""
    rules = cfg.rules
    if rules.datetime_matches_date:
        for name, col in cfg.columns.items():
            if (
                col.type != "datetime"
                or not name.endswith("_datetime")
                or col.generator == "datetime_from_date"
            ):
                continue
            twin = name[: -len("time")]
            if twin in done and done[twin].dtype == pl.Date and name in done:
                dt = done[name]
                time_of_day = dt - dt.dt.truncate("1d")
                fixed = done[twin].cast(pl.Datetime("us")) + time_of_day.fill_null(
                    pl.duration(days=0)
                )
                done[name] = (
                    pl.select(pl.when(dt.is_null()).then(None).otherwise(fixed))
                    .to_series()
                    .alias(name)
                )
    if rules.birth_parts_match and cfg.table == "person" and "birth_datetime" in done:
        birth = done["birth_datetime"]
        for part in ("year", "month", "day"):
            name = f"{part}_of_birth"
            if name in done and cfg.columns[name].generator != "date_part":
                derived = getattr(birth.dt, part)().cast(pl.Int64)
                done[name] = (
                    pl.select(pl.when(birth.is_null()).then(done[name]).otherwise(derived))
                    .to_series()
                    .alias(name)
                )


def settle_required_references(
    cfg: TableConfig, done: dict[str, pl.Series], contexts: dict, rng: np.random.Generator
) -> None:
    """A required polymorphic id left NULL (its person has no row in the table its value names:
    fact_id_2 for a person without conditions) takes another of the column's released values
    whose table holds a row of that person, and such a row; the naming column follows."""
    from .generators.references import PolymorphicReference, row_persons

    for name, col in cfg.columns.items():
        if col.generator != "polymorphic_reference" or col.nullable or name not in done:
            continue
        ctx = contexts[name]
        p = ctx.params
        missing = done[name].is_null().to_numpy() & done[p.by].is_not_null().to_numpy()
        if not missing.any() or ctx.relations is None or not p.person:
            continue
        persons = row_persons(ctx, done, p.person)
        if persons is None:
            continue
        ids = done[name].fill_null(0).to_numpy().astype(np.int64)
        values = np.array(done[p.by].to_list(), dtype=object)
        targets = list(PolymorphicReference.target_tables(col.stats, p).items())
        for i in rng.permutation(len(targets)):
            value, table = targets[i]
            index = ctx.relations.index(table, "person_id")
            rows = np.flatnonzero(missing & (persons > 0))
            if index is None or not len(rows):
                continue
            found = index.pick(persons[rows], rng.random(len(rows)))
            took = rows[found > 0]
            ids[took] = found[found > 0]
            kind = type(next((v for v in values if v is not None), value))
            values[took] = kind(value) if kind in (int, str) else value
            missing[took] = False
        done[name] = pl.Series(name, np.where(ids > 0, ids, 0), dtype=pl.Int64).replace(0, None)
        done[p.by] = pl.Series(p.by, values.tolist(), dtype=done[p.by].dtype, strict=False)


def order_pairs(cfg: TableConfig, done: dict[str, pl.Series], rng: np.random.Generator) -> None:
    """Every end on or after its start, whatever generated the two (the CDM's start/end pairs:
    dates first, then same-day datetimes, whose end time is drawn after the start time)."""
    if not cfg.rules.end_after_start:
        return
    pairs = [(a, b) for a, b in date_pairs(cfg.table, list(cfg.columns)) if a in done and b in done]
    for start, end in pairs:
        s, e = done[start], done[end]
        if s.dtype != pl.Date or e.dtype != pl.Date:
            continue
        limit = done.get(WINDOW_END + start)
        if limit is not None:  # the latest day the rules allow (death, end of the period)
            e = pl.select(pl.min_horizontal(e, limit.cast(pl.Date))).to_series().alias(end)
            e = pl.select(pl.when(done[end].is_null()).then(None).otherwise(e)).to_series()
        fixed = pl.select(
            pl.when(e.is_not_null() & s.is_not_null() & (e < s)).then(s).otherwise(e)
        ).to_series()
        e = done[end]
        if (fixed != e).any():
            done[end] = fixed.alias(end)
            twin = end + "time"  # its *_datetime keeps its time of day on the new date
            if twin in done and isinstance(done[twin].dtype, pl.Datetime):
                dt = done[twin]
                moved = fixed.cast(pl.Datetime("us")) + (dt - dt.dt.truncate("1d"))
                done[twin] = (
                    pl.select(pl.when(dt.is_null()).then(None).otherwise(moved))
                    .to_series()
                    .alias(twin)
                )
    for start, end in pairs:
        s, e = done[start], done[end]
        if not (isinstance(s.dtype, pl.Datetime) and isinstance(e.dtype, pl.Datetime)):
            continue
        before = (e < s).fill_null(False).to_numpy()
        if not before.any():
            continue
        # same day (an end on an earlier day was moved with its date above): a time after it
        start_us = s.cast(pl.Int64).to_numpy()
        day_end = (start_us // 86_400_000_000 + 1) * 86_400_000_000 - 1_000_000
        room = np.maximum(day_end - start_us, 0)
        later = (
            start_us + (np.floor(rng.random(len(start_us)) * (room // 1_000_000 + 1))) * 1_000_000
        )
        values = np.where(before, later, e.cast(pl.Int64).fill_null(0).to_numpy())
        done[end] = (
            pl.select(
                pl.when(e.is_null())
                .then(None)
                .otherwise(pl.Series(values.astype(np.int64)).cast(pl.Datetime("us")))
            )
            .to_series()
            .alias(end)
        )
