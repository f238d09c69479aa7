"""Steps 1 and 3 of :mod:`.summarise` (see there): the first scan, and the grouped pass with
its SQL per dialect (PostgreSQL and DuckDB ``GROUPING SETS``, SQLite one grouped read per
expression). Their results are raw aggregates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import disclosure as dc
from .. import omop
from ..database import is_duckdb, pg_like, quote, sqlite_rows
from ..schema import TableSchema, column_role
from ..sqlexpr import SqlExpressions
from .scalars import py_value


def first_scan(
    conn: Connection, sql: SqlExpressions, tbl: str, table: TableSchema
) -> dict[str, Any]:
    """The first pass: row count and, per column, non-null, zero and over-long counts, the
    start/end pairs of date twins, and distinct keys of an undeclared primary key."""
    engine = conn.engine
    parts = ["COUNT(*) AS c0"]
    labels = ["__rows"]
    names = [c.name for c in table.columns]
    for col in table.columns:
        q = quote(engine, col.name)
        role = column_role(table, col.name)
        parts.append(f"COUNT({q})")
        labels.append(f"n:{col.name}")
        if role == "primary_key" and table.primary_key_source != "declared":
            parts.append(f"COUNT(DISTINCT {q})")  # a declared key cannot repeat: no sort
            labels.append(f"d:{col.name}")
        if not sql.pg and col.logical_type != "string":
            # SQLite keeps whatever was loaded: '' where a CSV meant NULL
            parts.append(f"SUM(CASE WHEN {q} = '' THEN 1 ELSE 0 END)")
            labels.append(f"e:{col.name}")
        if col.logical_type == "integer" and role == "foreign_key":
            parts.append(f"SUM(CASE WHEN {q} = 0 THEN 1 ELSE 0 END)")
            labels.append(f"z:{col.name}")
        if col.logical_type == "string" and col.max_length:
            parts.append(
                f"SUM(CASE WHEN {sql.length(q)} > {int(col.max_length)} THEN 1 ELSE 0 END)"
            )
            labels.append(f"l:{col.name}")
        start = omop.start_of(names, col.name)
        if start is not None and col.logical_type in ("date", "datetime"):
            qs = quote(engine, start)
            parts.append(f"SUM(CASE WHEN {q} IS NOT NULL AND {qs} IS NOT NULL THEN 1 ELSE 0 END)")
            labels.append(f"p:{col.name}")
    row = conn.execute(sa.text(f"SELECT {', '.join(parts)} FROM {tbl}")).one()
    return dict(zip(labels, row, strict=True))


def blanks_as_null(engine: Engine, tbl: str, table: TableSchema) -> str:
    """SQLite: the table as a FROM clause in which '' reads as NULL in every column that is not
    a string (rowid kept, for the every-n-th-row sample)."""
    cols = ", ".join(
        f"NULLIF({quote(engine, c.name)}, '') AS {quote(engine, c.name)}"
        if c.logical_type != "string"
        else quote(engine, c.name)
        for c in table.columns
    )
    return f"(SELECT rowid AS rowid, {cols} FROM {tbl}) AS blanks_as_null"


@dataclass
class Grouping:
    """One expression of a grouped pass and what to bring back of its frequency table."""

    key: str
    expr: str
    rows: str = "none"  # "all": every (value, count); "listable": when the column may be listed
    string_rule: bool = False  # "listable" only when not identifier-like
    windows: list[tuple[int, int]] = field(default_factory=list)  # 1-based rank ranges wanted
    reference: tuple[str, str] | None = None  # foreign keys: (usable, resolves) over {x}
    # what expr computes, for counting it in Python on SQLite (see .local): (kind, column) with
    # kind value, length, year, month, day, hour, reference or reference0 (0 is no reference);
    # ("offset", end, start); ("combo", *columns) for json_row
    derived: tuple[str, ...] | None = None
    parent_keys: str | None = None  # references: the statement reading the parent's keys


@dataclass
class Frequencies:
    """What one grouped expression's frequency table reduced to (raw: never released as is)."""

    distinct: int = 0
    total: int = 0
    rows: list[tuple[Any, int]] | None = None
    ranked: list[tuple[Any, int, int]] = field(default_factory=list)  # (value, count, cum)
    usable: int = 0
    resolving: int = 0
    fanout: list[tuple[int, int]] = field(default_factory=list)

    def values_at(self, ranks: list[int]) -> dict[int, Any]:
        """The value at each 1-based rank in ascending order (the ranks asked for beforehand)."""
        out: dict[int, Any] = {}
        spans = [(cum - n + 1, cum, v) for v, n, cum in self.ranked]
        for r in ranks:
            for first, last, v in spans:
                if first <= r <= last:
                    out[r] = v
                    break
        return out


@dataclass
class _Frame:
    """The grouped frequencies as a CTE ``f`` (g, value column(s), n), in one dialect."""

    cte: str
    xs: list[str]  # the value columns of f
    x_of: Callable[[int], str]  # the value column of the i-th grouping
    big: str  # the dialect's 64-bit integer type


def _grouping_sets(frame: str, groupings: list[Grouping], duckdb: bool) -> _Frame:
    """PostgreSQL and DuckDB: GROUPING SETS, one column per expression, NULL outside its own
    grouping set."""
    xs = [f"x{i}" for i in range(len(groupings))]
    which = " ".join(f"WHEN GROUPING({g.expr}) = 0 THEN {i}" for i, g in enumerate(groupings))
    cols = ", ".join(f"{g.expr} AS x{i}" for i, g in enumerate(groupings))
    sets = ", ".join(f"({g.expr})" for g in groupings)
    any_not_null = (
        " OR ".join(f"{x} IS NOT NULL" for x in xs)
        if duckdb
        else f"num_nonnulls({', '.join(xs)}) > 0"
    )
    grouped = (
        f"SELECT CASE {which} END AS g, {cols}, COUNT(*) AS n FROM {frame} "
        f"GROUP BY GROUPING SETS ({sets})"
    )
    cte = f"f0 AS ({grouped}), f AS MATERIALIZED (SELECT * FROM f0 WHERE {any_not_null})"
    return _Frame(cte, xs, lambda i: f"x{i}", "BIGINT")


def _grouped_reads(frame: str, groupings: list[Grouping]) -> _Frame:
    """SQLite has no GROUPING SETS: one grouped read per expression, all in this statement.

    The unary + strips the column's affinity: a compound SELECT would otherwise convert every
    value to the affinity of its first column (integers to text, say). (Fanning every row out
    over the expressions in a single read measured slower: one big sort instead of many small
    ones.)"""
    parts = " UNION ALL ".join(
        f"SELECT {i} AS g, x0, COUNT(*) AS n FROM (SELECT +({g.expr}) AS x0 FROM {frame}) "
        f"WHERE x0 IS NOT NULL GROUP BY x0"
        for i, g in enumerate(groupings)
    )
    return _Frame(f"f AS MATERIALIZED ({parts})", ["x0"], lambda i: "x0", "INTEGER")


def grouped_pass(
    conn: Connection,
    frame: str,
    groupings: list[Grouping],
    policy: dc.DisclosurePolicy,
) -> dict[str, Frequencies]:
    """``frame`` (a FROM clause) grouped by every expression in one statement (one scan on
    PostgreSQL), reduced in the same statement to distinct counts, listable frequencies, rank
    windows and fan-out."""
    if not groupings:
        return {}
    pg = pg_like(conn.engine)
    f = (
        _grouping_sets(frame, groupings, is_duckdb(conn.engine))
        if pg
        else _grouped_reads(frame, groupings)
    )
    nulls = ", ".join(f"NULL AS {x}" for x in f.xs)
    ctes = [
        f.cte,
        f"s AS (SELECT g, COUNT(*) AS d, CAST(SUM(n) AS {f.big}) AS nn FROM f GROUP BY g)",
    ]
    branches = [
        f"SELECT 's' AS kind, g, d AS a, nn AS b, {nulls} FROM s",
        _listed(f, groupings, policy),
    ]
    _add_windows(f, groupings, ctes, branches)
    _add_references(f, groupings, ctes, branches)
    statement = sa.text("WITH " + ", ".join(ctes) + " " + " UNION ALL ".join(branches))
    if conn.dialect.name != "sqlite":
        return _frequencies(conn.execute(statement), groupings, pg)
    # SQLite: the driver's tuples, as SQLAlchemy would send the statement (no Row per row)
    sent = str(statement.compile(dialect=conn.dialect))
    return _frequencies(chain.from_iterable(sqlite_rows(conn, sent)), groupings, pg)


def _listed(f: _Frame, groupings: list[Grouping], policy: dc.DisclosurePolicy) -> str:
    """The branch bringing back every (value, count) of the groupings that may be listed."""

    def ids(pred) -> str:
        return ", ".join(str(i) for i, g in enumerate(groupings) if pred(g)) or "-1"

    share = float(policy.identifier_share)
    limit = int(policy.max_distinct_for_listing)
    x_list = ", ".join(f"f.{x}" for x in f.xs)
    return (
        f"SELECT 'v', f.g, f.n, NULL, {x_list} FROM f JOIN s ON s.g = f.g WHERE "
        f"f.g IN ({ids(lambda g: g.rows == 'all')}) "
        f"OR (f.g IN ({ids(lambda g: g.rows == 'listable' and not g.string_rule)}) "
        f"AND s.d <= {limit}) "
        f"OR (f.g IN ({ids(lambda g: g.rows == 'listable' and g.string_rule)}) "
        f"AND s.d <= {limit} AND NOT (s.d > {share!r} * s.nn AND s.d >= {int(policy.k)}))"
    )


def _add_windows(
    f: _Frame, groupings: list[Grouping], ctes: list[str], branches: list[str]
) -> None:
    """The values (with counts and cumulative counts) inside the rank windows asked for."""
    wanted = [(i, a, b) for i, g in enumerate(groupings) for a, b in g.windows]
    if not wanted:
        return
    x_list = ", ".join(f"f.{x}" for x in f.xs)
    ctes.append(
        f"w AS (SELECT f.g, f.n, SUM(f.n) OVER (PARTITION BY f.g ORDER BY {', '.join(f.xs)} "
        f"ROWS UNBOUNDED PRECEDING) AS cum, {x_list} FROM f "
        f"WHERE f.g IN ({', '.join(sorted({str(i) for i, _, _ in wanted}))}))"
    )
    ctes.append(
        "want(g, a, b) AS (VALUES "
        + ", ".join(f"({i}, {int(a)}, {int(b)})" for i, a, b in wanted)
        + ")"
    )
    w_x = ", ".join(f"w.{x}" for x in f.xs)
    branches.append(
        f"SELECT 'w', w.g, w.n, CAST(w.cum AS {f.big}), {w_x} FROM w WHERE EXISTS ("
        "SELECT 1 FROM want WHERE want.g = w.g AND w.cum >= want.a AND w.cum - w.n < want.b)"
    )


def _add_references(
    f: _Frame, groupings: list[Grouping], ctes: list[str], branches: list[str]
) -> None:
    """Of references: usable and resolving counts, and children per parent (fan-out)."""
    refs = [(i, g) for i, g in enumerate(groupings) if g.reference]
    if not refs:
        return
    nulls = ", ".join(f"NULL AS {x}" for x in f.xs)
    usable = " ".join(
        f"WHEN {i} THEN ({g.reference[0].format(x='f.' + f.x_of(i))})" for i, g in refs
    )
    resolves = " ".join(
        f"WHEN {i} THEN ({g.reference[1].format(x='f.' + f.x_of(i))})" for i, g in refs
    )
    ctes.append(
        f"r AS MATERIALIZED (SELECT f.g, f.n, CASE f.g {usable} END AS usable, "
        f"CASE f.g {resolves} END AS ok FROM f "
        f"WHERE f.g IN ({', '.join(str(i) for i, _ in refs)}))"
    )
    branches.append(
        f"SELECT 'u', g, CAST(SUM(CASE WHEN usable THEN n ELSE 0 END) AS {f.big}), "
        f"CAST(SUM(CASE WHEN ok THEN n ELSE 0 END) AS {f.big}), {nulls} FROM r GROUP BY g"
    )
    branches.append(f"SELECT 'o', g, n, COUNT(*), {nulls} FROM r WHERE ok GROUP BY g, n")


_PLAIN = frozenset({int, float, str, type(None)})  # what py_value hands back unchanged


def _frequencies(rows, groupings: list[Grouping], pg: bool) -> dict[str, Frequencies]:
    """The grouped pass's rows, by kind, into each grouping's frequencies."""
    out = {g.key: Frequencies() for g in groupings}
    by_index = [out[g.key] for g in groupings]
    for row in rows:  # (kind, g, a, b, value columns...)
        kind, i = row[0], int(row[1])
        freq = by_index[i]
        value = row[4 + i] if pg else row[4]
        if type(value) not in _PLAIN:
            value = py_value(value)
        if kind == "v":  # most rows
            if freq.rows is None:
                freq.rows = []
            freq.rows.append((value, int(row[2])))
        elif kind == "w":
            freq.ranked.append((value, int(row[2]), int(row[3])))
        elif kind == "s":
            freq.distinct, freq.total = int(row[2]), int(row[3] or 0)
        elif kind == "u":
            freq.usable, freq.resolving = int(row[2] or 0), int(row[3] or 0)
        elif kind == "o":
            freq.fanout.append((int(row[2]), int(row[3])))
    for grouping in groupings:
        freq = out[grouping.key]
        if grouping.rows == "all" and freq.rows is None:
            freq.rows = []  # no non-null value at all
    return out
