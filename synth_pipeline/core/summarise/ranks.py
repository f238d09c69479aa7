"""Step 4 of :mod:`.summarise`: the high-cardinality columns' distinct counts and the values at
the ranks their quantile windows need, in one sort per column (PostgreSQL ``percentile_disc``,
SQLite ``ROW_NUMBER``), over the table or a repeatable sample of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import disclosure as dc
from ..database import is_duckdb, is_postgres, pg_like, quote
from ..schema import ColumnSchema
from .passes import Frequencies
from .scalars import py_value
from .windows import rank_windows, ranks_in


@dataclass
class SampleFrame:
    sql: str
    rows: int
    method: str


def sample_frame(engine: Engine, tbl: str, total: int, sample_rows: int) -> SampleFrame:
    """A repeatable sample of about ``sample_rows`` rows, as a FROM clause."""
    if is_postgres(engine):
        percent = round(100.0 * sample_rows / total, 4)
        return SampleFrame(
            f"{tbl} TABLESAMPLE SYSTEM ({min(100.0, percent)}) REPEATABLE (42)",
            sample_rows,
            f"PostgreSQL TABLESAMPLE SYSTEM {percent:g}% of pages, repeatable",
        )
    step = max(2, total // sample_rows)
    return SampleFrame(
        f"(SELECT * FROM {tbl} WHERE rowid % {step} = 0)",
        total // step,
        f"{'DuckDB' if is_duckdb(engine) else 'SQLite'} every {step}th rowid",
    )


def high_cardinality_pass(
    conn: Connection,
    frame: str,
    counted: list[ColumnSchema],
    ranked: list[ColumnSchema],
    non_null: dict[str, int] | None,
    policy: dc.DisclosurePolicy,
) -> tuple[dict[str, int], dict[str, Frequencies]]:
    """Distinct counts of ``counted`` and, of ``ranked``, the values at the ranks the quantile
    windows need, over ``frame``. ``non_null``: the columns' counts in the frame, when known
    (the whole table); else they are counted first. One statement (a sort per column), and
    on SQLite a second one for the ranks (ROW_NUMBER per column)."""
    engine = conn.engine
    if non_null is None and ranked:
        counts = conn.execute(
            sa.text(
                "SELECT "
                + ", ".join(f"COUNT({quote(engine, c.name)})" for c in ranked)
                + f" FROM {frame}"
            )
        ).one()
        non_null = {c.name: int(n) for c, n in zip(ranked, counts, strict=True)}
    non_null = non_null or {}
    out = {f"v:{c.name}": Frequencies(total=non_null[c.name]) for c in ranked}
    wanted = []
    for c in ranked:
        n = non_null[c.name]
        ranks = ranks_in(rank_windows(n, policy))
        if ranks:
            wanted.append((c, quote(engine, c.name), n, ranks))
    aggregates = [f"COUNT(DISTINCT {quote(engine, c.name)})" for c in counted]
    pg = pg_like(engine)
    if pg:
        aggregates += [percentiles_sql(q, n, ranks) for _, q, n, ranks in wanted]
    row = (
        conn.execute(sa.text(f"SELECT {', '.join(aggregates)} FROM {frame}")).one()
        if aggregates
        else ()
    )
    distinct = {c.name: int(d) for c, d in zip(counted, row, strict=False)}
    found: dict[int, dict[int, Any]] = {i: {} for i in range(len(wanted))}
    if pg:
        for i, (_c, _q, _n, ranks) in enumerate(wanted):
            found[i] = dict(zip(ranks, row[len(counted) + i] or [], strict=False))
    elif wanted:
        # SQLite: each column ranked by ROW_NUMBER, all in one statement
        ranked_sql = " UNION ALL ".join(
            f"SELECT {i} AS i, rn, v FROM ({row_numbers_sql(q, frame, ranks, f'{q} IS NOT NULL')})"
            for i, (_c, q, _n, ranks) in enumerate(wanted)
        )
        for i, r, v in conn.execute(sa.text(ranked_sql)):
            found[int(i)][int(r)] = v
    for i, (c, _q, _n, _ranks) in enumerate(wanted):
        out[f"v:{c.name}"].ranked = [(py_value(v), 1, r) for r, v in found[i].items()]
    return distinct, out


def values_at_ranks(
    conn: Connection,
    tbl: str,
    expr: str,
    n: int,
    ranks: list[int],
    where: str,
    params: dict[str, Any],
) -> dict[int, Any]:
    """The values at the given 1-based ranks of ``expr`` in ascending order, in one sorted pass.

    They stay inside this module: only their window means are released.
    """
    cond = f"{expr} IS NOT NULL" + (f" AND {where}" if where else "")
    if pg_like(conn.engine):
        values = conn.execute(
            sa.text(f"SELECT {percentiles_sql(expr, n, ranks)} FROM {tbl} WHERE {cond}"), params
        ).scalar_one()
        return {r: py_value(v) for r, v in zip(ranks, values or [], strict=False)}
    rows = conn.execute(sa.text(row_numbers_sql(expr, tbl, ranks, cond)), params).all()
    return {int(r): py_value(v) for r, v in rows}


def percentiles_sql(expr: str, n: int, ranks: list[int]) -> str:
    """PostgreSQL: one aggregate (one sort, no window function) giving the values of ``expr``
    at the 1-based ranks among its ``n`` values. percentile_disc(p) is the value at rank
    ceil(p * n); p = (rank - 0.5) / n lands inside the rank's interval whatever the rounding."""
    probs = ", ".join(repr((r - 0.5) / n) for r in ranks)
    return f"percentile_disc(ARRAY[{probs}]::float8[]) WITHIN GROUP (ORDER BY {expr})"


def row_numbers_sql(expr: str, frame: str, ranks: list[int], where: str) -> str:
    """SQLite: the rows (rn, v) of ``expr`` at the 1-based ranks, by ROW_NUMBER."""
    return (
        f"SELECT rn, v FROM (SELECT {expr} AS v, ROW_NUMBER() OVER (ORDER BY {expr}) AS rn "
        f"FROM {frame} WHERE {where}) WHERE rn IN ({', '.join(map(str, ranks))})"
    )
