"""Column statistics by aggregate SQL pushed down to the source, released through disclosure control.

One scan counts rows, nulls, distinct values, zeros and over-long strings for every column at
once; then one grouped or ordered query per column that needs frequencies, bins or quantiles.
Only aggregates cross the connection (and, for never-listed strings, a small sample whose
shape alone is kept). Raw aggregates stay inside :func:`summarise_table`; what it returns has
passed :mod:`.disclosure`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import disclosure as dc
from .database import is_postgres, qualified, quote
from .schema import ColumnSchema, TableSchema, column_role
from .statistics import (
    Bin,
    ColumnStats,
    DateOffset,
    QuantilePoint,
    TableStats,
    TimeOfDay,
    ValueCount,
)

# Twin columns: an end column summarised as an offset from its start column.
_END_SUFFIXES = (("_end_date", "_start_date"), ("_end_datetime", "_start_datetime"))


def offset_source_column(columns: Sequence[str], name: str) -> str | None:
    """The start column an end column is measured from (``visit_end_date`` -> ``visit_start_date``)."""
    names = set(columns)
    for end, start in _END_SUFFIXES:
        if name.endswith(end):
            candidate = name[: -len(end)] + start
            if candidate in names:
                return candidate
    if name == "verbatim_end_date" and "drug_exposure_start_date" in names:
        return "drug_exposure_start_date"
    return None


def _py(value: Any) -> Any:
    """Database scalars as plain JSON-able Python values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value


class _Sql:
    """Dialect-specific expressions over one quoted column or expression."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.pg = is_postgres(engine)

    def length(self, col: str) -> str:
        return f"CHAR_LENGTH(CAST({col} AS TEXT))" if self.pg else f"LENGTH({col})"

    def year(self, col: str, text: bool) -> str:
        if self.pg and not text:
            return f"CAST(EXTRACT(YEAR FROM {col}) AS INTEGER)"
        return self._text_part(col, 1, 4)

    def month(self, col: str, text: bool) -> str:
        if self.pg and not text:
            return f"CAST(EXTRACT(MONTH FROM {col}) AS INTEGER)"
        return self._text_part(col, 6, 2)

    def hour(self, col: str, text: bool) -> str:
        if self.pg and not text:
            return f"CAST(EXTRACT(HOUR FROM {col}) AS INTEGER)"
        return self._text_part(col, 12, 2)

    def is_midnight(self, col: str, text: bool) -> str:
        if self.pg and not text:
            return f"(CAST({col} AS TIME) = TIME '00:00:00')"
        t = f"CAST({col} AS TEXT)"
        return f"(LENGTH({t}) <= 10 OR SUBSTR({t}, 12, 8) = '00:00:00')"

    def _text_part(self, col: str, start: int, length: int) -> str:
        t = f"CAST({col} AS TEXT)"
        part = f"SUBSTR({t}, {start}, {length})"
        if self.pg:
            return f"(CASE WHEN {part} ~ '^[0-9]+$' THEN CAST({part} AS INTEGER) END)"
        return f"(CASE WHEN {part} GLOB '[0-9]*' THEN CAST({part} AS INTEGER) END)"

    def day_difference(self, end: str, start: str, text: bool) -> str:
        if self.pg and not text:
            return f"CAST(FLOOR(EXTRACT(EPOCH FROM (CAST({end} AS TIMESTAMP) - CAST({start} AS TIMESTAMP))) / 86400) AS INTEGER)"
        if self.pg:
            return f"(CAST(SUBSTR({end}, 1, 10) AS DATE) - CAST(SUBSTR({start}, 1, 10) AS DATE))"
        return (
            f"CAST(julianday(SUBSTR({end}, 1, 10)) - julianday(SUBSTR({start}, 1, 10)) AS INTEGER)"
        )


def _is_text_stored(col: ColumnSchema) -> bool:
    t = col.sql_type.upper()
    return not any(x in t for x in ("DATE", "TIME"))


def summarise_table(
    engine: Engine, schema: str | None, table: TableSchema, policy: dc.DisclosurePolicy
) -> TableStats:
    """Released statistics of one source table."""
    kind = table.kind
    if kind == "vocabulary":
        # Public reference data, copied as it is: nothing about patients to summarise.
        return TableStats(
            table=table.name,
            kind=kind,
            row_count=table.row_count,
            columns={},
            findings=["vocabulary table: public reference data, copied as it is"],
            policy=policy,
        )
    row_count = dc.release_count(table.row_count, policy)
    if kind == "metadata":
        return TableStats(
            table=table.name,
            kind=kind,
            row_count=row_count,
            columns={},
            findings=["metadata about the extract: not generated from statistics"],
            policy=policy,
        )

    tbl = qualified(engine, schema, table.source_name)
    sql = _Sql(engine)
    findings: list[str] = []
    notes: dict[str, list[str]] = {}
    stats: dict[str, ColumnStats] = {}

    def rel(n: int) -> str:
        r = dc.release_count(n, policy)
        return f"about {r}" if r is not None else f"fewer than {policy.k}"

    if table.row_count == 0:
        findings.append("empty table: it stays empty")

    with engine.connect() as conn:
        scan = _first_scan(conn, sql, tbl, table)
        total = int(scan["__rows"])
        for col in table.columns:
            role = column_role(table, col.name)
            non_null = int(scan[f"n:{col.name}"])
            zeros = int(scan.get(f"z:{col.name}") or 0)
            distinct = int(scan[f"d:{col.name}"])
            col_notes: list[str] = []
            effective_non_null = non_null - zeros if role == "foreign_key" else non_null
            cs = ColumnStats()
            released_nn = dc.release_count(effective_non_null, policy)
            released_total = dc.release_count(total, policy)
            released_null = dc.release_count(total - effective_non_null, policy)
            cs.non_null = released_nn
            if released_null is None:
                col_notes.append(f"null count below k={policy.k}: released as no nulls")
                released_null = 0
            if released_total:
                cs.null_fraction = round(min(1.0, released_null / released_total), 4)
            elif effective_non_null == 0:
                cs.null_fraction = 1.0
            cs.distinct = dc.release_count(distinct, policy)
            if cs.distinct is None and distinct:
                col_notes.append(f"distinct count below k={policy.k}: withheld")
            if zeros and role == "foreign_key":
                cs.zero_as_null = dc.release_count(zeros, policy)
                findings.append(f"{col.name}: {rel(zeros)} rows hold 0 for NULL; treated as NULL")
            longer = int(scan.get(f"l:{col.name}") or 0)
            if longer:
                findings.append(
                    f"{col.name}: {rel(longer)} values longer than the declared width {col.max_length}"
                )
            if non_null == 0:
                if total:
                    findings.append(f"{col.name}: every value is NULL")
                stats[col.name] = cs
                notes[col.name] = col_notes
                continue

            if role == "primary_key":
                dup = non_null - distinct
                if dup:
                    findings.append(
                        f"primary key {col.name}: {rel(dup)} rows repeat a key value (duplicates); "
                        "synthetic keys are dense 1..n"
                    )
                cs.distinct = None
            elif role == "foreign_key":
                _summarise_reference(
                    conn, engine, sql, schema, tbl, table, col, policy, cs, col_notes, findings, rel
                )
            else:
                _summarise_values(
                    conn,
                    engine,
                    sql,
                    tbl,
                    table,
                    col,
                    role,
                    non_null,
                    distinct,
                    policy,
                    cs,
                    col_notes,
                    findings,
                )
            stats[col.name] = cs
            notes[col.name] = col_notes

    return TableStats(
        table=table.name,
        kind=kind,
        row_count=row_count if row_count is not None else None,
        columns=stats,
        disclosure={c: n for c, n in notes.items() if n},
        findings=findings,
        policy=policy,
    )


def _first_scan(conn: Connection, sql: _Sql, tbl: str, table: TableSchema) -> dict[str, Any]:
    """Row count and, per column, non-null, distinct, zero and over-long counts in one scan."""
    parts = ["COUNT(*) AS c0"]
    labels = ["__rows"]
    for col in table.columns:
        q = quote(conn.engine, col.name)
        parts += [f"COUNT({q})", f"COUNT(DISTINCT {q})"]
        labels += [f"n:{col.name}", f"d:{col.name}"]
        if col.logical_type == "integer" and column_role(table, col.name) == "foreign_key":
            parts.append(f"SUM(CASE WHEN {q} = 0 THEN 1 ELSE 0 END)")
            labels.append(f"z:{col.name}")
        if col.logical_type == "string" and col.max_length:
            parts.append(
                f"SUM(CASE WHEN {sql.length(q)} > {int(col.max_length)} THEN 1 ELSE 0 END)"
            )
            labels.append(f"l:{col.name}")
    row = conn.execute(sa.text(f"SELECT {', '.join(parts)} FROM {tbl}")).one()
    return dict(zip(labels, row, strict=True))


def _quantiles(
    conn: Connection, tbl: str, expr: str, n: int, grid: list[float], where: str = ""
) -> list[QuantilePoint]:
    """Values at the given probabilities (nearest rank, as percentile_disc), one ordered pass."""
    if not grid or n <= 0:
        return []
    ranks = {dc.rank_for(p, n): p for p in grid}
    cond = f"{expr} IS NOT NULL" + (f" AND {where}" if where else "")
    if is_postgres(conn.engine):
        # one sort, no window: percentile_disc(p) is the value at rank ceil(p * n) (rank 1 for
        # p = 0), the same nearest rank as rank_for, computed in the same double arithmetic
        order = sorted(ranks)
        probs = ", ".join(repr(float(ranks[r])) for r in order)
        values = conn.execute(
            sa.text(
                f"SELECT percentile_disc(ARRAY[{probs}]::float8[]) WITHIN GROUP (ORDER BY {expr}) "
                f"FROM {tbl} WHERE {cond}"
            )
        ).scalar_one()
        by_rank = {r: _py(v) for r, v in zip(order, values or [], strict=False) if v is not None}
    else:
        in_list = ", ".join(str(r) for r in sorted(ranks))
        rows = conn.execute(
            sa.text(
                f"SELECT rn, v FROM (SELECT {expr} AS v, ROW_NUMBER() OVER (ORDER BY {expr}) AS rn "
                f"FROM {tbl} WHERE {cond}) s WHERE rn IN ({in_list}) ORDER BY rn"
            )
        ).all()
        by_rank = {int(r): _py(v) for r, v in rows}
    points = [(ranks[r], by_rank[r]) for r in sorted(ranks) if r in by_rank]
    # a point between two equal neighbours adds nothing to the inverse CDF: leave it out
    kept = [
        pt
        for i, pt in enumerate(points)
        if i in (0, len(points) - 1) or not (points[i - 1][1] == pt[1] == points[i + 1][1])
    ]
    return [QuantilePoint(p=p, value=v) for p, v in kept]


def _grouped(conn: Connection, tbl: str, expr: str, where: str = "") -> list[tuple[Any, int]]:
    cond = f"WHERE {expr} IS NOT NULL" + (f" AND {where}" if where else "")
    rows = conn.execute(
        sa.text(f"SELECT {expr} AS v, COUNT(*) FROM {tbl} {cond} GROUP BY {expr}")
    ).all()
    return [(_py(v), int(c)) for v, c in rows]


def _summarise_values(
    conn: Connection,
    engine: Engine,
    sql: _Sql,
    tbl: str,
    table: TableSchema,
    col: ColumnSchema,
    role: str,
    non_null: int,
    distinct: int,
    policy: dc.DisclosurePolicy,
    cs: ColumnStats,
    notes: list[str],
    findings: list[str],
) -> None:
    q = quote(engine, col.name)
    lt = col.logical_type
    if lt in ("date", "datetime"):
        _summarise_dates(conn, sql, tbl, table, col, non_null, policy, cs, notes, findings)
        return

    never_list = lt == "string" and (
        policy.never_listed(col.name)
        or distinct > policy.max_distinct_for_listing
        or (non_null and distinct / non_null > policy.identifier_share and distinct >= policy.k)
    )
    listable = role == "code" or (
        not never_list and (lt != "float" or distinct <= policy.max_distinct_for_listing)
    )
    if lt in ("integer", "float") and role != "code" and distinct > policy.max_distinct_for_listing:
        listable = False

    if listable:
        released = dc.fold_frequencies(_grouped(conn, tbl, q), non_null, policy)
        cs.values = [ValueCount(value=v, count=c) for v, c in released.values]
        cs.other_count = released.other_count
        notes.extend(released.notes)
    else:
        cs.listed = False
        cs.distinct = None if lt == "string" else cs.distinct
        if lt == "string":
            notes.append(
                "free text or identifier: values never listed, only a length and shape profile"
            )

    if lt in ("integer", "float") and role != "code":
        grid = dc.quantile_grid(non_null, policy)
        cs.quantiles = _quantiles(conn, tbl, q, non_null, grid)
        if cs.quantiles:
            notes.append(
                f"quantiles p{grid[0] * 100:g}..p{grid[-1] * 100:g} only (range top- and bottom-coded)"
            )
        else:
            notes.append(f"fewer than {2 * policy.k} values: no quantiles released")
    if lt == "string":
        length_expr = sql.length(q)
        grid = dc.quantile_grid(non_null, policy)
        cs.length = _quantiles(conn, tbl, length_expr, non_null, grid)
        if not cs.values:
            cs.pattern = _string_shape(conn, tbl, q, policy.pattern_sample_size)


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_DIGITS = re.compile(r"^[0-9]+$")
_CODE = re.compile(r"^[A-Za-z0-9._\-/]+$")


def shape_of(value: str) -> str:
    if _UUID.match(value):
        return "uuid"
    if _DIGITS.match(value):
        return "digits"
    if _CODE.match(value):
        return "code"
    return "text"


def _string_shape(conn: Connection, tbl: str, q: str, sample: int) -> str:
    """The commonest shape among a sample of values; only the shape's name is kept."""
    rows = conn.execute(
        sa.text(f"SELECT {q} FROM {tbl} WHERE {q} IS NOT NULL LIMIT {int(sample)}")
    ).all()
    shapes = Counter(shape_of(str(r[0])) for r in rows)
    return shapes.most_common(1)[0][0] if shapes else "text"


def _summarise_dates(
    conn: Connection,
    sql: _Sql,
    tbl: str,
    table: TableSchema,
    col: ColumnSchema,
    non_null: int,
    policy: dc.DisclosurePolicy,
    cs: ColumnStats,
    notes: list[str],
    findings: list[str],
) -> None:
    q = quote(conn.engine, col.name)
    text = _is_text_stored(col)
    years = _grouped(conn, tbl, sql.year(q, text))
    out_of_range = sum(c for y, c in years if y < 1677 or y > 2262)
    if out_of_range:
        r = dc.release_count(out_of_range, policy)
        findings.append(
            f"{col.name}: {'about ' + str(r) if r else f'fewer than {policy.k}'} dates outside 1677..2262"
        )
    binned = dc.merge_bins(years, policy)
    cs.years = [Bin(start=a, end=b, count=c) for a, b, c in binned.bins]
    notes.extend(binned.notes)
    if cs.years:
        notes.append("dates released as year bins and month-of-year counts, never as dates")
    months = dict(_grouped(conn, tbl, sql.month(q, text)))
    month_counts, month_notes = dc.release_shares([months.get(m, 0) for m in range(1, 13)], policy)
    cs.months = month_counts if any(month_counts) else None
    notes.extend(f"months: {n}" for n in month_notes)
    if col.logical_type == "datetime":
        midnight = conn.execute(
            sa.text(
                f"SELECT SUM(CASE WHEN {sql.is_midnight(q, text)} THEN 1 ELSE 0 END) FROM {tbl} WHERE {q} IS NOT NULL"
            )
        ).scalar_one()
        midnight = int(midnight or 0)
        other = non_null - midnight
        hours = None
        if other >= policy.k:
            by_hour = dict(
                _grouped(conn, tbl, sql.hour(q, text), where=f"NOT {sql.is_midnight(q, text)}")
            )
            hours, hour_notes = dc.release_shares([by_hour.get(h, 0) for h in range(24)], policy)
            notes.extend(f"hours: {n}" for n in hour_notes)
        share = 1.0 if other < policy.k else round(midnight / non_null, 3)
        cs.time_of_day = TimeOfDay(midnight_share=share, hours=hours)
    start = offset_source_column([c.name for c in table.columns], col.name)
    if start is not None:
        qs = quote(conn.engine, start)
        start_col = table.column(start)
        diff = sql.day_difference(q, qs, text or _is_text_stored(start_col))
        counts = conn.execute(
            sa.text(
                f"SELECT COUNT(*), SUM(CASE WHEN {diff} < 0 THEN 1 ELSE 0 END) FROM {tbl} "
                f"WHERE {q} IS NOT NULL AND {qs} IS NOT NULL"
            )
        ).one()
        n_pairs, negative = int(counts[0]), int(counts[1] or 0)
        grid = dc.quantile_grid(n_pairs, policy)
        quantiles = _quantiles(conn, tbl, diff, n_pairs, grid, where=f"{qs} IS NOT NULL")
        if quantiles:
            neg = dc.release_count(negative, policy) or 0
            released_pairs = dc.release_count(n_pairs, policy) or n_pairs
            cs.offset = DateOffset(
                from_column=start,
                quantiles=quantiles,
                negative_share=round(neg / released_pairs, 4) if neg else 0.0,
            )
            notes.append(f"days after {start} released as quantiles (top- and bottom-coded)")
        if negative:
            r = dc.release_count(negative, policy)
            findings.append(
                f"{col.name}: {'about ' + str(r) if r else f'fewer than {policy.k}'} rows end before {start}"
            )


def _summarise_reference(
    conn: Connection,
    engine: Engine,
    sql: _Sql,
    schema: str | None,
    tbl: str,
    table: TableSchema,
    col: ColumnSchema,
    policy: dc.DisclosurePolicy,
    cs: ColumnStats,
    notes: list[str],
    findings: list[str],
    rel,
) -> None:
    """A reference to a patient-level table: ids are never listed; fan-out and dangling counts."""
    q = quote(engine, col.name)
    cs.distinct = None
    cs.listed = False
    fk = table.foreign_key(col.name)
    assert fk is not None

    def valid(ref: str) -> str:
        return (
            f"{ref} IS NOT NULL AND {ref} <> 0"
            if col.logical_type == "integer"
            else f"{ref} IS NOT NULL"
        )

    per_parent = conn.execute(
        sa.text(
            f"SELECT n, COUNT(*) FROM (SELECT {q} AS r, COUNT(*) AS n FROM {tbl} WHERE {valid(q)} GROUP BY {q}) s GROUP BY n"
        )
    ).all()
    binned = dc.merge_bins([(int(n), int(c)) for n, c in per_parent], policy)
    cs.fanout = [Bin(start=a, end=b, count=c) for a, b, c in binned.bins] or None
    notes.extend(f"children per parent: {n}" for n in binned.notes)
    notes.append("ids never listed: generated from the parent's synthetic key range")

    parent_names = {n.lower(): n for n in sa.inspect(engine).get_table_names(schema=schema)}
    parent = parent_names.get(fk.parent_table)
    if parent is None:
        findings.append(f"{col.name}: parent table {fk.parent_table} is not in the extract")
        return
    parent_cols = {
        c["name"].lower(): c["name"] for c in sa.inspect(engine).get_columns(parent, schema=schema)
    }
    pcol = parent_cols.get(fk.parent_column.lower())
    if pcol is None:
        return
    ptbl = qualified(engine, schema, parent)
    pq = quote(engine, pcol)
    if sql.pg:  # an anti-join PostgreSQL runs as a hash or merge join
        missing = f"NOT EXISTS (SELECT 1 FROM {ptbl} p WHERE p.{pq} = c.{q})"
    else:  # SQLite builds one temporary index for IN (subquery); NOT EXISTS would loop
        missing = f"c.{q} NOT IN (SELECT {pq} FROM {ptbl} WHERE {pq} IS NOT NULL)"
    dangling = conn.execute(
        sa.text(f"SELECT COUNT(*) FROM {tbl} c WHERE {valid('c.' + q)} AND {missing}")
    ).scalar_one()
    dangling = int(dangling or 0)
    if dangling:
        cs.dangling = dc.release_count(dangling, policy)
        what = (
            "person ids missing from person"
            if fk.parent_table == "person"
            else f"references to no {fk.parent_table} row"
        )
        findings.append(
            f"{col.name}: {rel(dangling)} {what} (dangling); synthetic references all resolve"
        )
