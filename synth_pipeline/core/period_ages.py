"""An observation period's start at an age drawn from the released days from birth.

:func:`rules.place_anchors` calls this for a lifetime table (observation_period) whose start
column has released days from birth: the age at which observation starts keeps its released
distribution and, with the period's released length, the period its length.
"""

from __future__ import annotations

import numpy as np

from .config import TableConfig
from .generators.base import interpolate_quantiles, quantile_share
from .relations import NO_BIRTH, days


def released_lengths(cfg: TableConfig, start: str, end: str | None) -> list | None:
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


def starts_from_birth(
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
