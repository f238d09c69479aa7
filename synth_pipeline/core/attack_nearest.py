"""The attacker's search of the attacks (attacks.py): per target, the nearest of the attacker's
rows on all columns, on each part of the linkability split and on the columns outside each
column's group. Gower distances in float32, per column: categories by equality, numbers and
dates by their difference over the column's p1..p99 range (at most 1); NULL equal to NULL,
NULL and a value 1 apart. Each target breaks ties at random (fixed seed).

The work is done in blocks of a few targets so that a block's distances stay in the
processor's cache, in buffers reused from block to block; the figures are those of the plain
formulas (one column's Gower distances computed whole, as test_fast_paths.py does, and the per-group sums added in column order, then group
order), bit for bit, and the random draws are the same whatever the block size.
"""

from __future__ import annotations

import numpy as np

from .privacy import SPLIT_SEED

CELLS_PER_CHUNK = 4_000_000  # distances drawn tie-breaking priorities for at once
CELLS_PER_BLOCK = 80_000  # distances (per group) computed at once: fits in the cache
TIES_SPARSE = 16  # at most one distance in this many tied at a row's minimum: gather the ties


class _Column:
    """One column of the attacker's rows, converted once, measured against targets into a
    given buffer exactly as the plain formula measures them."""

    def __init__(self, values: np.ndarray, categorical: bool, scale: float):
        self.categorical, self.has_nan = categorical, bool(np.isnan(values).any())
        y = values.astype(np.float32)
        if categorical:
            y = np.nan_to_num(y, nan=-1.0)
        self.y, self.y_nan = y[None, :], np.isnan(y)[None, :]
        self.factor = np.float32(1.0 / scale)

    def into(self, a: np.ndarray, fix_nan: bool, out: np.ndarray) -> None:
        """``out`` = the distances of ``a``'s rows; ``fix_nan``: the NULL rules apply (a NULL
        among the chunk's targets or the attacker's rows, as the plain formula checks)."""
        x = a.astype(np.float32)[:, None]
        if self.categorical:
            np.not_equal(np.nan_to_num(x, nan=-1.0), self.y, out=out)
            return
        np.subtract(x, self.y, out=out)
        np.abs(out, out=out)
        np.multiply(out, self.factor, out=out)
        np.minimum(out, np.float32(1.0), out=out)
        if fix_nan:
            np.copyto(out, np.float32(1.0), where=np.isnan(out))
            np.copyto(out, np.float32(0.0), where=np.isnan(x) & self.y_nan)


class _Side:
    """One side of the comparison: its targets and the attacker's rows."""

    def __init__(self, targets: np.ndarray, reference: np.ndarray):
        self.targets, self.reference = targets, reference

    def nearest(self, categorical, scale, groups, split) -> None:
        """Per target: the distance to the nearest reference row, the nearest row on each
        part of the split, and on the columns outside each column's group."""
        t, r = self.targets, self.reference
        width, count = t.shape[1], max(groups) + 1
        self.distance = np.empty(len(t))
        self.leave_one_out = np.empty((len(t), width), dtype=np.int64)
        self.linked = np.zeros(len(t), dtype=bool)
        columns = [_Column(r[:, j], categorical[j], scale[j]) for j in range(width)]
        parts = None if split is None else [sorted({groups[j] for j in p}) for p in split]
        step = max(1, CELLS_PER_CHUNK // max(1, len(r) * (count + 3)))
        block = max(1, min(step, CELLS_PER_BLOCK // max(1, len(r))))
        by_group = np.empty((count, min(block, len(t)), len(r)), dtype=np.float32)
        total, work = (
            np.empty(by_group.shape[1:], np.float32),
            np.empty(by_group.shape[1:], np.float32),
        )
        ties = np.empty(by_group.shape[1:], dtype=bool)
        rng = np.random.default_rng(SPLIT_SEED)
        for i in range(0, len(t), step):
            chunk = t[i : i + step]
            # each target breaks its ties on its own: rows of one concept do not all share
            # the same first row's guess
            priority = rng.random((len(chunk), len(r)), dtype=np.float32)
            fix_nan = [
                columns[j].has_nan or bool(np.isnan(chunk[:, j]).any()) for j in range(width)
            ]
            for s in range(0, len(chunk), block):
                a, m = chunk[s : s + block], len(chunk[s : s + block])
                rows = slice(i + s, i + s + m)
                bg, tot, w, tie = by_group[:, :m], total[:m], work[:m], ties[:m]
                filled = [False] * count
                for j in range(width):
                    g = groups[j]
                    if not filled[g]:  # 0 + d is d: no distance is -0.0
                        columns[j].into(a[:, j], fix_nan[j], bg[g])
                        filled[g] = True
                    else:
                        columns[j].into(a[:, j], fix_nan[j], w)
                        bg[g] += w
                pri = priority[s : s + m]
                tot = _sum(bg, range(count), tot)  # one group: that group's distances
                self.distance[rows] = tot.min(axis=1)
                for g in range(count):
                    nearest = _nearest(np.subtract(tot, bg[g], out=w), pri, tie)
                    for j in range(width):
                        if groups[j] == g:
                            self.leave_one_out[rows, j] = nearest
                if parts is not None:
                    a_ = _nearest(_sum(bg, parts[0], w), pri, tie)
                    b_ = _nearest(_sum(bg, parts[1], w), pri, tie)
                    self.linked[rows] = a_ == b_


def _sum(by_group: np.ndarray, groups, out: np.ndarray) -> np.ndarray:
    """The groups' distances added in order, as ``by_group[groups].sum(axis=0)`` adds them."""
    groups = list(groups)
    if len(groups) == 1:
        return by_group[groups[0]]
    np.add(by_group[groups[0]], by_group[groups[1]], out=out)
    for g in groups[2:]:
        out += by_group[g]
    return out


def _nearest(
    distances: np.ndarray, priority: np.ndarray, ties: np.ndarray | None = None
) -> np.ndarray:
    """Per row, the column of the smallest distance; among ties, the one of highest priority
    (the first of those): ``np.where(distances <= min, priority, -1).argmax(axis=1)``."""
    m, n = distances.shape
    low = distances.min(axis=1, keepdims=True)
    if ties is None:
        ties = np.empty(distances.shape, dtype=bool)
    np.less_equal(distances, low, out=ties)
    if np.count_nonzero(ties) * TIES_SPARSE > m * n:
        return np.where(ties, priority, np.float32(-1.0)).argmax(axis=1)
    at = np.flatnonzero(ties)  # in row order, then column order
    row = at // n
    per_row = np.bincount(row, minlength=m)
    out = np.zeros(m, dtype=np.int64)  # a row without a minimum (NaN): the first column
    some = np.nonzero(per_row)[0]
    if not len(some):
        return out
    pri = priority.reshape(-1)[at] if priority.flags.c_contiguous else priority[row, at % n]
    starts = np.cumsum(per_row) - per_row
    best = np.maximum.reduceat(pri, starts[some])
    hit = np.flatnonzero(pri == np.repeat(best, per_row[some]))
    first = hit[np.searchsorted(row[hit], some)]
    out[some] = at[first] - row[first] * n
    return out
