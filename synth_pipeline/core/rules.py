"""Consistency rules, enforced by construction while a block of rows is generated.

Columns are first generated independently; then the rows' anchors are moved where the rules
need them (the person of an event's visit, a start date inside the person's visit or
observation period, after birth and before death), and every column derived from a moved
anchor (end dates, datetime twins, parts of dates) is generated again from its own random
stream, so it keeps its released distribution relative to the new anchor. No row is rejected
and redrawn.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from .config import TableConfig
from .generators.base import WINDOW_END, interpolate_quantiles, quantile_share
from .generators.temporal import days_in_window, intersect, range_days
from .omop import EVENT_SHAPES, PARTS_OF_VISITS, date_pairs
from .relations import NO_BIRTH, NO_DEATH, ParentTables, days


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
    shape = EVENT_SHAPES.get(cfg.table)
    rules = cfg.rules
    if (
        shape is None
        or relations is None
        or shape.start not in done
        or _fk_target(cfg, "person_id") != "person"
    ):
        return set()
    if not (rules.within_lifetime or rules.within_observation_period or rules.visit_same_person):
        return set()
    persons = relations.persons()
    if persons is None:
        return set()
    n_person = len(persons.birth)
    person_s = done["person_id"]
    pid = person_s.fill_null(0).to_numpy().astype(np.int64)
    has_person = (pid >= 1) & (pid <= n_person)
    start = drawn = days(done[shape.start])
    if shape.kind == "lifetime" and window is not None and not _released(cfg, shape.start):
        # observation periods of which nothing was released span the extract's dates
        start = np.where(start == np.iinfo(np.int64).min, start, window[0])
        if shape.end in done and not _released(cfg, shape.end):
            done[shape.end] = _dates(np.full(len(start), window[1]), done[shape.end])
    ages = cfg.columns[shape.start].stats
    if shape.kind == "lifetime" and rules.within_lifetime and ages and ages.days_from_birth:
        lengths = _released_lengths(cfg, shape.start, shape.end)
        start = _from_birth(
            ages.days_from_birth, start, done, shape.end, persons, pid, window, rng, lengths
        )
    has_start = start != np.iinfo(np.int64).min
    n = len(pid)
    lo = np.full(n, NO_BIRTH, dtype=np.int64)
    hi = np.full(n, NO_DEATH, dtype=np.int64)
    end_hi = np.full(n, NO_DEATH, dtype=np.int64)
    via_visit = np.zeros(n, dtype=bool)

    if (
        shape.kind == "event"
        and rules.visit_same_person
        and _fk_target(cfg, "visit_occurrence_id") == "visit_occurrence"
    ):
        visits = relations.visits()
        if visits is not None:
            vid = done["visit_occurrence_id"].fill_null(0).to_numpy().astype(np.int64)
            via_visit = (vid >= 1) & (vid <= len(visits.person))
            v = vid[via_visit] - 1
            pid[via_visit] = visits.person[v]
            has_person = (pid >= 1) & (pid <= n_person)
            lo[via_visit], hi[via_visit] = visits.start[v], visits.end[v]

    if not rules.within_observation_period or shape.kind == "lifetime":
        periods = None
    elif shape.kind == "death":
        periods = relations.periods_before_deaths()
    else:
        periods = relations.periods()
    if periods is not None and periods.count.sum() > 0:
        others = ~via_visit & has_person
        without = others & (periods.count[np.clip(pid - 1, 0, n_person - 1)] == 0)
        if without.any():  # only persons with an observation period have events
            candidates = np.flatnonzero(periods.count) + 1
            pid[without] = candidates[rng.integers(0, len(candidates), size=int(without.sum()))]
        p = pid[others] - 1
        pick = periods.first[p] + np.floor(rng.random(len(p)) * periods.count[p]).astype(np.int64)
        own = periods.containing(pid[others], start[others])  # a period of its own person first
        pick = np.where(has_start[others] & (own >= 0), own, pick)
        if shape.kind == "death":  # a death recorded in the extract: in the person's last period
            pick = periods.first[p] + periods.count[p] - 1
            own = np.where(own == pick, own, -1)
        lo[others], hi[others] = periods.start[pick], periods.end[pick]
        end_hi[others] = periods.end[pick]
        # the dates outside their person's periods are dealt out again among those rows, earliest
        # date to the earliest period, so the dates keep their distribution and the persons
        # their rows (giving the rows to persons observed then instead would bring the dates
        # back closer still, but lose the released children per person); what still falls
        # outside is redrawn from the column's years inside the window
        away = np.flatnonzero(others)[has_start[others] & (own < 0)]
        if len(away) > 1:
            start = start.copy()
            start[away[np.argsort(lo[away], kind="stable")]] = np.sort(start[away])
        if via_visit.any():
            idx = periods.containing(pid[via_visit], lo[via_visit])
            end_hi[via_visit] = np.where(idx >= 0, periods.end[np.maximum(idx, 0)], hi[via_visit])
    elif via_visit.any():
        end_hi[via_visit] = NO_DEATH
    if cfg.table in PARTS_OF_VISITS and via_visit.any():  # a visit detail ends within its visit
        end_hi[via_visit] = np.minimum(end_hi[via_visit], hi[via_visit])

    if rules.within_lifetime:
        q = np.clip(pid - 1, 0, n_person - 1)
        birth = np.where(has_person, persons.birth[q], NO_BIRTH)
        death = np.where(has_person, persons.death[q], NO_DEATH)
        lo = np.maximum(lo, birth)
        if shape.kind != "death":
            hi = np.minimum(hi, death)
            end_hi = np.minimum(end_hi, death)
    hi = np.maximum(hi, lo)
    end_hi = np.maximum(end_hi, lo)

    bounded = (lo > NO_BIRTH) & (hi < NO_DEATH)
    outside = has_start & ((start < lo) | (start > hi))
    redraw = outside & bounded
    new_start = start.copy()
    new_start[redraw] = days_in_window(
        cfg.columns[shape.start].stats, lo[redraw], hi[redraw], rng.random(int(redraw.sum()))
    )
    only_lo = outside & ~bounded
    new_start[only_lo] = np.clip(start[only_lo], lo[only_lo], hi[only_lo])
    bounds = intersect(range_days(cfg.columns[shape.start].stats), window)
    if bounds is not None:  # inside the start column's coded range too, where the window allows
        inside_lo, inside_hi = np.maximum(lo, bounds[0]), np.minimum(hi, bounds[1])
        fits = has_start & (inside_lo <= inside_hi)
        new_start[fits] = np.clip(new_start[fits], inside_lo[fits], inside_hi[fits])

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
            np.clip(end_hi, -(10**6), 10**6), done[shape.start].cast(pl.Date)
        )
        # the ends drawn from the start (before the limit was known) are drawn again below it
        changed.add(shape.start)
    end_col = cfg.columns.get(shape.end) if shape.end else None
    if end_col is not None and shape.end in done and end_col.generator != "date_offset":
        # an end not drawn from the start (one anchored at the data's end): between start and limit
        end = days(done[shape.end])
        has_end = end != np.iinfo(np.int64).min
        fixed = np.clip(end, np.where(has_start, new_start, end), end_hi)
        if has_end.any() and (fixed[has_end] != end[has_end]).any():
            done[shape.end] = (
                pl.select(
                    pl.when(pl.lit(pl.Series(has_end)))
                    .then(_dates(np.where(has_end, fixed, 0), done[shape.end]))
                    .otherwise(None)
                )
                .to_series()
                .alias(shape.end)
            )
            changed.add(shape.end)
    return changed


def _released_lengths(cfg: TableConfig, start: str, end: str | None) -> list | None:
    """The released days from ``start`` to ``end`` (the period's length) as (p, days) points:
    the end's offset after the start, or the start's offset before the end turned round."""
    for column, other, sign in ((end, start, 1.0), (start, end, -1.0)):
        col = cfg.columns.get(column) if column else None
        offset = col.stats.offset if col is not None and col.stats else None
        if offset is not None and offset.from_column == other and offset.quantiles:
            points = [(q.p, sign * float(q.value)) for q in offset.quantiles]
            return sorted(points) if sign > 0 else [(1 - p, v) for p, v in reversed(points)]
    return None


AGE_CELLS = 256  # cells of the released age distribution a start's age is drawn from
ROWS_AT_ONCE = 8192


def _from_birth(
    quantiles, start, done, end_column, persons, pid, window, rng: np.random.Generator, lengths=None
) -> np.ndarray:
    """Starts at the person's birth plus days drawn from the released days from birth, inside
    what the person's life leaves before the row's end (or the extract's), so the age at which
    observation starts keeps its distribution; rows without a person or a birth keep theirs.

    With the period's released length (days from start to end), the age is drawn from the
    released ages weighted by how likely the length it leaves before the row's end is (the age
    given that age plus length make the room between birth and end, the two taken as
    independent): the start keeps its age and the period its length. A row whose room no
    released age and length can make takes its age as before, from the ages below the room."""
    n_person = len(persons.birth)
    known = (pid >= 1) & (pid <= n_person) & (start != np.iinfo(np.int64).min)
    birth = persons.birth[np.clip(pid - 1, 0, n_person - 1)]
    known &= birth > NO_BIRTH
    if end_column and end_column in done:
        end = days(done[end_column])
        end = np.where(end == np.iinfo(np.int64).min, window[1] if window else start, end)
    else:
        end = np.full(len(start), window[1]) if window else start
    room = np.maximum(end - birth, 0).astype(float)
    points = [(q.p, float(q.value)) for q in quantiles]
    first = quantile_share(points, np.zeros(len(start)))
    last = quantile_share(points, room)
    u = first + rng.random(len(start)) * np.maximum(last - first, 0.0)
    jitter = rng.random(len(start))
    if lengths:
        # the cells of the age distribution (equal shares), their ages at each edge
        edges = np.linspace(0.0, 1.0, AGE_CELLS + 1)
        at = interpolate_quantiles(points, edges)
        lo_age, hi_age = at[:-1], np.maximum(at[1:], at[:-1] + 1.0)
        for a in range(0, len(start), ROWS_AT_ONCE):
            r = room[a : a + ROWS_AT_ONCE, None]
            # the share of released lengths within [room - hi_age, room - lo_age], per day of age
            weight = (
                quantile_share(lengths, (r - lo_age).ravel()).reshape(r.shape[0], -1)
                - quantile_share(lengths, (r - hi_age).ravel()).reshape(r.shape[0], -1)
            ) / (hi_age - lo_age)
            weight = np.where(lo_age[None, :] <= r, np.maximum(weight, 0.0), 0.0)
            total = weight.sum(axis=1)
            feasible = total > 0
            cum = np.cumsum(weight, axis=1)
            pick = (rng.random(len(total)) * total)[:, None]
            cell = np.minimum((cum < pick).sum(axis=1), AGE_CELLS - 1)
            drawn = (cell + jitter[a : a + ROWS_AT_ONCE]) / AGE_CELLS
            u[a : a + ROWS_AT_ONCE] = np.where(feasible, drawn, u[a : a + ROWS_AT_ONCE])
    age = np.clip(np.rint(interpolate_quantiles(points, u)), 0, room).astype(np.int64)
    return np.where(known, birth + age, start)


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
