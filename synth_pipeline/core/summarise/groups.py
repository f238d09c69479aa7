"""Per-group statistics: a column per value of another (``conditional`` pairs), and a twin column
per combination of the columns it agrees with. Small groups are pooled; a pool below k is
withheld."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import disclosure as dc
from ..database import quote
from ..statistics import (
    ConditionalStats,
    GroupStats,
    QuantilePoint,
    ValueCount,
)
from .context import ColumnRead, TableRead
from .passes import Frequencies
from .release import quantiles_where, thin
from .scalars import as_number, py_value


def summarise_by_group(t: TableRead, c: ColumnRead, by: str) -> ConditionalStats | None:
    """The column per value of ``by``: quantiles (numbers) or common values (codes) per group.

    A group is released only when it holds enough rows for its own statistic (2k values for
    quantiles, k for values); smaller groups are pooled into one ``other`` group, and a pool
    below k is withheld.
    """
    engine, policy, k = t.conn.engine, t.policy, t.policy.k
    q, g = quote(engine, c.col.name), quote(engine, by)
    sizes = t.conn.execute(
        sa.text(f"SELECT {g}, COUNT(*), COUNT({q}) FROM {t.tbl} WHERE {g} IS NOT NULL GROUP BY {g}")
    ).all()
    sizes = [(py_value(v), int(n), int(nn)) for v, n, nn in sizes]
    numeric = c.role != "code"
    need = 2 * k if numeric else k
    big = sorted((s for s in sizes if s[2] >= need and s[1] >= k), key=lambda s: (-s[1], str(s[0])))
    big = big[: policy.max_listed_values]
    big_values = {s[0] for s in big}
    small = [s for s in sizes if s[0] not in big_values]
    integer = c.col.logical_type == "integer"
    if numeric:
        groups = _quantile_groups(t, q, g, big, integer)
        other = _pooled_quantile_group(t, q, g, small, need, integer)
        if groups or other is not None:
            _keep_off_rare_values(t.conn, t.tbl, q, groups + ([other] if other else []), k)
    else:
        by_group = _values_by_group(t, q, g)
        groups = [
            _value_group(value, n, nn, by_group.get(value, []), policy) for value, n, nn in big
        ]
        other = _pooled_value_group(small, by_group, need, policy)
    if not groups and other is None:
        return None
    c.notes.append(
        f"per {by}: {len(groups)} groups with at least {need} values released"
        + ("; smaller groups pooled" if small else "")
        + ("" if other is not None or not small else f" (pool below {need}: withheld)")
    )
    return ConditionalStats(by=by, groups=groups, other=other)


def _null_fraction(n: int, nn: int, policy: dc.DisclosurePolicy) -> float:
    released_n, released_null = dc.release_count(n, policy), dc.release_count(n - nn, policy)
    return round(min(1.0, (released_null or 0) / released_n), 4) if released_n else 0.0


def _quantile_groups(
    t: TableRead, q: str, g: str, big: list[tuple[Any, int, int]], integer: bool
) -> list[GroupStats]:
    """Each big group's quantiles, the k-value window means of its own ranks."""
    policy = t.policy
    wanted = []
    for value, _n, nn in big:
        for p in dc.quantile_grid(nn, policy):
            first, last = dc.quantile_window(dc.rank_for(p, nn), nn, policy.k)
            wanted.append((value, p, first, last))
    means = _window_means_by_group(t.conn, t.tbl, q, g, wanted, integer)
    groups = []
    for value, n, nn in big:
        pts = [
            QuantilePoint(p=p, value=means[i])
            for i, (v, p, _, _) in enumerate(wanted)
            if v == value and i in means
        ]
        groups.append(
            GroupStats(
                value=value,
                count=dc.release_count(n, policy) or 0,
                null_fraction=_null_fraction(n, nn, policy),
                quantiles=thin(pts),
            )
        )
    return groups


def _pooled_quantile_group(
    t: TableRead, q: str, g: str, small: list[tuple[Any, int, int]], need: int, integer: bool
) -> GroupStats | None:
    """The small groups pooled into one, with the quantiles of their values together."""
    pooled_n, pooled_nn = sum(s[1] for s in small), sum(s[2] for s in small)
    if not (small and pooled_nn >= need):
        return None
    other = GroupStats(
        value=None,
        count=dc.release_count(pooled_n, t.policy) or 0,
        null_fraction=_null_fraction(pooled_n, pooled_nn, t.policy),
    )
    small_values = [s[0] for s in small]
    other.quantiles = _pooled_quantiles(
        t.conn, t.tbl, q, g, small_values, pooled_nn, t.policy, integer
    )
    return other


def _values_by_group(t: TableRead, q: str, g: str) -> dict[Any, list[tuple[Any, int]]]:
    """(value, count) pairs of the column per value of the group column."""
    pairs = t.conn.execute(
        sa.text(
            f"SELECT {g}, {q}, COUNT(*) FROM {t.tbl} WHERE {g} IS NOT NULL AND {q} IS NOT NULL GROUP BY {g}, {q}"
        )
    ).all()
    by_group: dict[Any, list[tuple[Any, int]]] = {}
    for gv, v, n in pairs:
        by_group.setdefault(py_value(gv), []).append((py_value(v), int(n)))
    return by_group


def _value_group(
    value: Any, n: int, nn: int, pairs: list[tuple[Any, int]], policy: dc.DisclosurePolicy
) -> GroupStats:
    released = dc.fold_frequencies(pairs, nn, policy)
    return GroupStats(
        value=value,
        count=dc.release_count(n, policy) or 0,
        null_fraction=_null_fraction(n, nn, policy),
        values=[ValueCount(value=v, count=c) for v, c in released.values],
        other_count=released.other_count,
    )


def _pooled_value_group(
    small: list[tuple[Any, int, int]],
    by_group: dict[Any, list[tuple[Any, int]]],
    need: int,
    policy: dc.DisclosurePolicy,
) -> GroupStats | None:
    """The small groups pooled into one, with the common values of them all."""
    pooled_n, pooled_nn = sum(s[1] for s in small), sum(s[2] for s in small)
    if not (small and pooled_nn >= need):
        return None
    pooled: dict[Any, int] = {}
    for s in small:
        for v, c in by_group.get(s[0], []):
            pooled[v] = pooled.get(v, 0) + c
    return _value_group(None, pooled_n, pooled_nn, list(pooled.items()), policy)


def twin_groups(
    combinations: Frequencies, by: list[str], policy: dc.DisclosurePolicy, notes: list[str]
) -> ConditionalStats | None:
    """A twin column's values per combination of the columns it agrees with (gender_source_value
    per gender_concept_id and gender_source_concept_id), from the grouped pass's counts of
    every (by..., value) combination.

    A combination is a group: released when it holds at least k rows, with its values seen at
    least k times in it; smaller groups are pooled, and a pool below k is withheld."""
    sizes: dict[Any, list[int]] = {}
    pairs: dict[Any, list[tuple[Any, int]]] = {}
    for text, n in combinations.rows or []:
        *keys, value = json.loads(text)
        key = keys[0] if len(keys) == 1 else tuple(keys)
        size = sizes.setdefault(key, [0, 0])
        size[0] += n
        if value is not None:
            size[1] += n
            pairs.setdefault(key, []).append((value, n))
    k = policy.k
    ordered = sorted(sizes.items(), key=lambda kv: (-kv[1][0], str(kv[0])))
    big = [kv for kv in ordered if kv[1][1] >= k][: policy.max_listed_values]
    small = [kv for kv in ordered if kv not in big]

    def group(value, n: int, nn: int, values: list[tuple[Any, int]]) -> GroupStats:
        released = dc.fold_frequencies(values, nn, policy)
        released_n, released_null = dc.release_count(n, policy), dc.release_count(n - nn, policy)
        return GroupStats(
            value=list(value) if isinstance(value, tuple) else value,
            count=released_n or 0,
            null_fraction=round(min(1.0, (released_null or 0) / released_n), 4)
            if released_n
            else 0.0,
            values=[ValueCount(value=v, count=c) for v, c in released.values],
            other_count=released.other_count,
        )

    groups = [group(key, n, nn, pairs.get(key, [])) for key, (n, nn) in big]
    pooled_n, pooled_nn = sum(s[0] for _, s in small), sum(s[1] for _, s in small)
    other = None
    if small and pooled_nn >= k:
        merged: Counter = Counter()
        for key, _ in small:
            for v, c in pairs.get(key, []):
                merged[v] += c
        other = group(None, pooled_n, pooled_nn, list(merged.items()))
    if not groups and other is None:
        return None
    notes.append(
        f"per combination of {' and '.join(by)}: {len(groups)} with at least k={k} values "
        "released" + ("; smaller ones pooled" if small else "")
    )
    return ConditionalStats(by=by if len(by) > 1 else by[0], groups=groups, other=other)


def _keep_off_rare_values(
    conn: Connection, tbl: str, q: str, groups: list[GroupStats], k: int
) -> None:
    """Per-group quantiles, moved off values fewer than k rows of the column hold.

    A group's window is a run of ranks within the group, so rows of other groups can hold a
    value between its ends, and its mean can land on one. Such a point moves to the midpoint
    between it and the column's next distinct value, which no row holds.
    """
    points = [pt for g in groups for pt in g.quantiles or []]
    values = sorted({float(pt.value) for pt in points})
    if not values:
        return
    params = {f"v{i}": v for i, v in enumerate(values)}
    held = conn.execute(
        sa.text(
            f"SELECT {q}, COUNT(*) FROM {tbl} WHERE {q} IN ({', '.join(':' + p for p in params)}) "
            f"GROUP BY {q}"
        ),
        params,
    ).all()
    moved: dict[float, float] = {}
    for value, rows in held:
        v = float(value)
        if int(rows) >= k:
            continue
        above = conn.execute(sa.text(f"SELECT MIN({q}) FROM {tbl} WHERE {q} > :v"), {"v": v})
        below = conn.execute(sa.text(f"SELECT MAX({q}) FROM {tbl} WHERE {q} < :v"), {"v": v})
        neighbour = above.scalar_one()
        neighbour = neighbour if neighbour is not None else below.scalar_one()
        if neighbour is None:  # a column of one value: no point that no row holds
            moved[v] = v
            continue
        midpoint = (v + float(neighbour)) / 2
        rounded = float(f"{midpoint:.6g}")
        moved[v] = rounded if min(v, neighbour) < rounded < max(v, neighbour) else midpoint
    for pt in points:
        if float(pt.value) in moved:
            pt.value = moved[float(pt.value)]


def _window_means_by_group(
    conn: Connection,
    tbl: str,
    q: str,
    g: str,
    wanted: list[tuple[Any, float, int, int]],
    integer: bool,
) -> dict[int, int | float]:
    """Per wanted (group, p, first rank, last rank): the mean of the group's values at those
    ranks (ranks within each group, one ordered pass). Keyed by the position in ``wanted``."""
    if not wanted:
        return {}
    params: dict[str, Any] = {}
    rows_sql = []
    for i, (value, _p, first, last) in enumerate(wanted):
        params[f"g{i}"], params[f"a{i}"], params[f"b{i}"] = value, first, last
        rows_sql.append(f"({i}, :g{i}, :a{i}, :b{i})")
    sql = (
        f"WITH want(i, gv, a, b) AS (VALUES {', '.join(rows_sql)}) "
        f"SELECT w.i, s.v FROM (SELECT {g} AS gv, {q} AS v, "
        f"ROW_NUMBER() OVER (PARTITION BY {g} ORDER BY {q}) AS rn FROM {tbl} "
        f"WHERE {g} IS NOT NULL AND {q} IS NOT NULL) s "
        "JOIN want w ON s.gv = w.gv AND s.rn BETWEEN w.a AND w.b"
    )
    found: dict[int, list[float | None]] = {}
    for i, v in conn.execute(sa.text(sql), params).all():
        found.setdefault(int(i), []).append(as_number(py_value(v)))
    return {
        i: dc.window_mean(vs, integer)  # type: ignore[arg-type]
        for i, vs in found.items()
        if len(vs) == wanted[i][3] - wanted[i][2] + 1 and all(v is not None for v in vs)
    }


def _pooled_quantiles(conn, tbl, q, g, group_values, n, policy, integer) -> list[QuantilePoint]:
    grid = dc.quantile_grid(n, policy)
    params = {f"s{i}": v for i, v in enumerate(group_values)}
    where = f"{g} IN ({', '.join(':' + k for k in params)})"
    return quantiles_where(conn, tbl, q, n, grid, policy, integer, where=where, params=params)
