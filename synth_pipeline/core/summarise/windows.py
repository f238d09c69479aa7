"""Rank windows: a released quantile is the mean of the k values around its nearest rank, so
the ranks each needs are known before the data are read (and asked of the database beforehand)."""

from __future__ import annotations

from .. import disclosure as dc


def windows_at(n: int, grid: list[float], k: int) -> dict[float, tuple[int, int]]:
    """The k-value rank window (first, last) released for each probability of the grid."""
    return {p: dc.quantile_window(dc.rank_for(p, n), n, k) for p in grid}


def rank_windows(n: int, policy: dc.DisclosurePolicy) -> list[tuple[int, int]]:
    """The rank windows a column of ``n`` values needs, to ask the database for beforehand."""
    return sorted(set(windows_at(n, dc.quantile_grid(n, policy), policy.k).values()))


def range_grid(n: int, policy: dc.DisclosurePolicy) -> list[float]:
    """The two ends of the quantile grid: where a coded range is bottom- and top-coded."""
    grid = dc.quantile_grid(n, policy)
    return [grid[0], grid[-1]] if len(grid) > 1 else []


def range_windows(n: int, policy: dc.DisclosurePolicy) -> list[tuple[int, int]]:
    return sorted(set(windows_at(n, range_grid(n, policy), policy.k).values()))


def ranks_in(windows) -> list[int]:
    return sorted({r for a, b in windows for r in range(a, b + 1)})
