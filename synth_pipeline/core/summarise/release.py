"""Disclosure rules on the passes' raw results: released quantiles (k-value window means, or
the exponential mechanism under differential privacy) and how findings say a count."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.engine import Connection

from .. import disclosure as dc
from .. import dp
from ..dp import Noise
from ..schema import ColumnSchema
from ..statistics import (
    QuantilePoint,
)
from .passes import Frequencies
from .ranks import values_at_ranks
from .scalars import as_number
from .windows import ranks_in, windows_at


def released_quantiles(
    n: int,
    grid: list[float],
    policy: dc.DisclosurePolicy,
    integer: bool,
    values_at: Callable[[list[int]], dict[int, Any]],
    frequencies: list[tuple[Any, int]] | None = None,
) -> list[QuantilePoint]:
    """Released quantiles: at each probability of the grid, the mean of the k values around its
    nearest rank (:func:`.disclosure.quantile_window`), so no point is a value fewer than k
    rows hold. ``frequencies``: the column's (value, count) pairs, when the pass brought them
    back (a mean on a value k rows hold may then stay)."""
    if not grid or n <= 0:
        return []
    windows = windows_at(n, grid, policy.k)
    wanted = ranks_in(windows.values())
    by_rank = {r: as_number(v) for r, v in values_at(wanted).items()}
    held: dict[float, int] = {}
    for v, c in frequencies or []:
        x = as_number(v)
        if x is not None:
            held[x] = held.get(x, 0) + int(c)
    points = []
    for p, (a, b) in windows.items():
        values = [by_rank.get(r) for r in range(a, b + 1)]
        if all(v is not None for v in values):
            value = dc.window_mean(values, integer, lambda x: held.get(x, 0) >= policy.k)  # type: ignore[arg-type]
            points.append(QuantilePoint(p=p, value=value))
    return thin(points)


def quantiles_where(
    conn: Connection,
    tbl: str,
    expr: str,
    n: int,
    grid: list[float],
    policy: dc.DisclosurePolicy,
    integer: bool,
    where: str = "",
    params: dict[str, Any] | None = None,
) -> list[QuantilePoint]:
    """Released quantiles of an expression over the rows ``where`` selects (its own sort)."""
    return released_quantiles(
        n,
        grid,
        policy,
        integer,
        lambda ranks: values_at_ranks(conn, tbl, expr, n, ranks, where, params or {}),
    )


def thin(points: list[QuantilePoint]) -> list[QuantilePoint]:
    return [
        pt
        for i, pt in enumerate(points)
        if i in (0, len(points) - 1) or not (points[i - 1].value == pt.value == points[i + 1].value)
    ]


def dp_candidates(col: ColumnSchema, what: str, policy: dc.DisclosurePolicy) -> list[float]:
    """The quantile candidates of a column's values, string lengths or days after its start
    column, under differential privacy: from the schema and the policy alone."""
    if what == "length":
        return dp.quantile_candidates(True, None, (0.0, float(col.max_length or 1_000_000)))
    if what == "offset":
        return dp.quantile_candidates(True, None, dp.DAY_BOUNDS)
    return dp.quantile_candidates(col.logical_type == "integer", policy.dp_range(col.name))


def noisy_quantiles(
    noise: Noise,
    buckets: Frequencies | None,
    col: ColumnSchema,
    what: str,
    policy: dc.DisclosurePolicy,
    notes: list[str],
) -> list[QuantilePoint]:
    """Quantiles under differential privacy (see :meth:`.dp.Noise.quantiles`), or withheld."""
    if policy.dp_quantiles == "withheld" or buckets is None:
        notes.append("quantiles withheld under differential privacy")
        return []
    whole = what != "values" or col.logical_type == "integer"
    candidates = dp_candidates(col, what, policy)
    points = noise.quantiles(f"{col.name}:{what}", buckets.rows or [], candidates, whole)
    notes.append(
        "quantiles by the exponential mechanism among candidates fixed before looking at the "
        "data" + (" (half-integers: no row holds one)" if whole else "")
    )
    return [QuantilePoint(p=p, value=v) for p, v in points]


def about(n: int, policy: dc.DisclosurePolicy, noise: Noise | None) -> str:
    """A raw count as a finding may say it: released, or below k."""
    if noise is not None:
        return "some"  # counts in findings are withheld under differential privacy
    r = dc.release_count(n, policy)
    return f"about {r}" if r is not None else f"fewer than {policy.k}"
