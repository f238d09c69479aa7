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
from .dp import Noise
from .schema import ColumnSchema, TableSchema, column_role, identifier_findings
from .sqlexpr import SqlExpressions
from .statistics import (
    Bin,
    ColumnStats,
    ConditionalStats,
    DateOffset,
    GroupStats,
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


def _is_text_stored(col: ColumnSchema) -> bool:
    t = col.sql_type.upper()
    return not any(x in t for x in ("DATE", "TIME"))


def summarise_table(
    engine: Engine,
    schema: str | None,
    table: TableSchema,
    policy: dc.DisclosurePolicy,
    conditional: dict[str, str] | None = None,
    noise: Noise | None = None,
) -> TableStats:
    """Released statistics of one source table.

    ``conditional`` maps a column to the column it is also summarised by (per-group statistics
    for conditional generators); pairs naming a column the table lacks are ignored.
    ``noise`` (differential privacy, see :mod:`.dp`) is added to every released count and
    histogram before the k and rounding rules; per-group statistics are then withheld.
    """
    conditional = {
        c: by
        for c, by in (conditional or {}).items()
        if c in {x.name for x in table.columns}
        and by in {x.name for x in table.columns}
        and c != by
    }
    kind = table.kind
    if kind == "vocabulary":
        # Reference data: nothing about patients to summarise. An extract may carry only the
        # concepts its records use, so even the row count passes the count rule.
        return TableStats(
            table=table.name,
            kind=kind,
            row_count=dc.release_count(table.row_count, policy),
            columns={},
            findings=["vocabulary table: reference data, not summarised"],
            policy=policy,
        )
    if noise is not None and kind != "metadata":
        row_count = dc.release_count(noise.counts("rows", [table.row_count])[0], policy)
    else:
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
    sql = SqlExpressions(engine)
    findings: list[str] = identifier_findings(table)
    notes: dict[str, list[str]] = {}
    stats: dict[str, ColumnStats] = {}

    def rel(n: int) -> str:
        if noise is not None:
            return "some"  # counts in findings are withheld under differential privacy
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
            # 0 in an optional reference means NULL; in a required one it is a broken reference
            zero_is_null = role == "foreign_key" and col.nullable
            effective_non_null = non_null - zeros if zero_is_null else non_null
            cs = ColumnStats()
            if noise is None:
                released_nn = dc.release_count(effective_non_null, policy)
                released_total = dc.release_count(total, policy)
                released_null = dc.release_count(total - effective_non_null, policy)
            else:
                nulls, values = (
                    noise.counts(
                        f"{col.name}:nulls", [total - effective_non_null, effective_non_null]
                    )
                    if col.nullable
                    else (0, noise.counts("rows", [table.row_count])[0])
                )
                released_nn = dc.release_count(values, policy)
                released_null = dc.release_count(nulls, policy)
                released_total = (released_nn or 0) + (released_null or 0)
            cs.non_null = released_nn
            if released_null is None:
                col_notes.append(f"null count below k={policy.k}: released as no nulls")
                released_null = 0
            if released_nn is None and effective_non_null and released_total:
                # the few values left must not show as a null fraction just under 1
                col_notes.append(f"non-null count below k={policy.k}: released as all NULL")
                cs.null_fraction = 1.0
            elif released_total:
                cs.null_fraction = round(min(1.0, released_null / released_total), 4)
            elif effective_non_null == 0:
                cs.null_fraction = 1.0
            cs.distinct = dc.release_count(distinct, policy) if noise is None else None
            if cs.distinct is None and distinct and noise is None:
                col_notes.append(f"distinct count below k={policy.k}: withheld")
            if zeros and role == "foreign_key":
                cs.zero_as_null = dc.release_count(zeros, policy) if noise is None else None
                handling = (
                    "treated as NULL"
                    if zero_is_null
                    else "a required reference: drawn from the parent"
                )
                findings.append(f"{col.name}: {rel(zeros)} rows hold 0 for NULL; {handling}")
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
                    conn,
                    engine,
                    sql,
                    schema,
                    tbl,
                    table,
                    col,
                    policy,
                    cs,
                    col_notes,
                    findings,
                    rel,
                    noise,
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
                    noise,
                )
                if col.name in conditional and col.logical_type in ("integer", "float"):
                    if noise is not None:
                        col_notes.append(
                            f"per-{conditional[col.name]} statistics withheld under differential privacy"
                        )
                    else:
                        cs.conditional = _summarise_by_group(
                            conn, tbl, table, col, conditional[col.name], role, policy, col_notes
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
        dp=noise.budget if noise is not None else None,
    )


def _first_scan(
    conn: Connection, sql: SqlExpressions, tbl: str, table: TableSchema
) -> dict[str, Any]:
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
    """Released quantiles: at each probability of the grid, the mean of the k values around its
    nearest rank (:func:`.disclosure.quantile_window`), so no point is one record's value."""
    if not grid or n <= 0:
        return []
    windows = {p: dc.quantile_window(dc.rank_for(p, n), n, policy.k) for p in grid}
    wanted = sorted({r for a, b in windows.values() for r in range(a, b + 1)})
    by_rank = _values_at_ranks(conn, tbl, expr, n, wanted, where, params or {})
    points = []
    for p, (a, b) in windows.items():
        values = [by_rank.get(r) for r in range(a, b + 1)]
        if all(v is not None for v in values):
            points.append(QuantilePoint(p=p, value=dc.window_mean(values, integer)))  # type: ignore[arg-type]
    return _thin(points)


def _number(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None  # a non-numeric value in a numeric column (dirty data) joins no window


def _values_at_ranks(
    conn: Connection,
    tbl: str,
    expr: str,
    n: int,
    ranks: list[int],
    where: str,
    params: dict[str, Any],
) -> dict[int, float | None]:
    """The values at the given 1-based ranks of ``expr`` in ascending order, in one sorted pass.

    They stay inside this module: only their window means are released.
    """
    cond = f"{expr} IS NOT NULL" + (f" AND {where}" if where else "")
    if is_postgres(conn.engine):
        # one sort, no window function: percentile_disc(p) is the value at rank ceil(p * n);
        # p = (rank - 0.5) / n lands inside the rank's interval whatever the rounding
        probs = ", ".join(repr((r - 0.5) / n) for r in ranks)
        values = conn.execute(
            sa.text(
                f"SELECT percentile_disc(ARRAY[{probs}]::float8[]) WITHIN GROUP (ORDER BY {expr}) "
                f"FROM {tbl} WHERE {cond}"
            ),
            params,
        ).scalar_one()
        return {r: _number(_py(v)) for r, v in zip(ranks, values or [], strict=False)}
    in_list = ", ".join(str(r) for r in ranks)
    rows = conn.execute(
        sa.text(
            f"SELECT rn, v FROM (SELECT {expr} AS v, ROW_NUMBER() OVER (ORDER BY {expr}) AS rn "
            f"FROM {tbl} WHERE {cond}) s WHERE rn IN ({in_list})"
        ),
        params,
    ).all()
    return {int(r): _number(_py(v)) for r, v in rows}


def _grouped(conn: Connection, tbl: str, expr: str, where: str = "") -> list[tuple[Any, int]]:
    cond = f"WHERE {expr} IS NOT NULL" + (f" AND {where}" if where else "")
    rows = conn.execute(
        sa.text(f"SELECT {expr} AS v, COUNT(*) FROM {tbl} {cond} GROUP BY {expr}")
    ).all()
    return [(_py(v), int(c)) for v, c in rows]


def _summarise_values(
    conn: Connection,
    engine: Engine,
    sql: SqlExpressions,
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
    noise: Noise | None = None,
) -> None:
    q = quote(engine, col.name)
    lt = col.logical_type
    if lt in ("date", "datetime"):
        _summarise_dates(conn, sql, tbl, table, col, non_null, policy, cs, notes, findings, noise)
        return
    quantiles_allowed = noise is None or policy.dp_quantiles == "not_noised"

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
        pairs = _grouped(conn, tbl, q)
        if noise is not None:
            pairs = noise.pairs(f"{col.name}:values", pairs)
        released = dc.fold_frequencies(pairs, non_null, policy)
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

    if lt in ("integer", "float") and role != "code" and not quantiles_allowed:
        notes.append("quantiles withheld under differential privacy")
    elif lt in ("integer", "float") and role != "code":
        grid = dc.quantile_grid(non_null, policy)
        cs.quantiles = _quantiles(conn, tbl, q, non_null, grid, policy, lt == "integer")
        if cs.quantiles:
            notes.append(
                f"quantiles p{grid[0] * 100:g}..p{grid[-1] * 100:g} only, each the mean of "
                f"k={policy.k} neighbouring values (range top- and bottom-coded)"
            )
        else:
            notes.append(f"fewer than {2 * policy.k} values: no quantiles released")
    if lt == "string":
        length_expr = sql.length(q)
        grid = dc.quantile_grid(non_null, policy) if quantiles_allowed else []
        cs.length = _quantiles(conn, tbl, length_expr, non_null, grid, policy, True)
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
    sql: SqlExpressions,
    tbl: str,
    table: TableSchema,
    col: ColumnSchema,
    non_null: int,
    policy: dc.DisclosurePolicy,
    cs: ColumnStats,
    notes: list[str],
    findings: list[str],
    noise: Noise | None = None,
) -> None:
    q = quote(conn.engine, col.name)
    text = _is_text_stored(col)
    years = _grouped(conn, tbl, sql.year(q, text))
    out_of_range = sum(c for y, c in years if y < 1677 or y > 2262)
    if out_of_range:
        r = dc.release_count(out_of_range, policy)
        how_many = (
            "some" if noise is not None else ("about " + str(r) if r else f"fewer than {policy.k}")
        )
        findings.append(f"{col.name}: {how_many} dates outside 1677..2262")
    if noise is not None:
        years = noise.pairs(f"{col.name}:years", years)
    binned = dc.merge_bins(years, policy)
    cs.years = [Bin(start=a, end=b, count=c) for a, b, c in binned.bins]
    notes.extend(binned.notes)
    if cs.years:
        notes.append("dates released as year bins and month-of-year counts, never as dates")
    months = dict(_grouped(conn, tbl, sql.month(q, text)))
    month_raw = [months.get(m, 0) for m in range(1, 13)]
    if noise is not None:
        month_raw = noise.counts(f"{col.name}:months", month_raw)
    month_counts, month_notes = dc.release_shares(month_raw, policy)
    cs.months = month_counts if any(month_counts) else None
    notes.extend(f"months: {n}" for n in month_notes)
    if col.logical_type == "datetime":
        midnight = conn.execute(
            sa.text(
                f"SELECT SUM(CASE WHEN {sql.is_midnight(q, text)} THEN 1 ELSE 0 END) FROM {tbl} WHERE {q} IS NOT NULL"
            )
        ).scalar_one()
        by_hour = dict(
            _grouped(conn, tbl, sql.hour(q, text), where=f"NOT {sql.is_midnight(q, text)}")
        )
        # one histogram over the rows: midnight (a date-only time) or the hour of the day
        cells = [int(midnight or 0)] + [by_hour.get(h, 0) for h in range(24)]
        if noise is not None:
            cells = noise.counts(f"{col.name}:hours", cells)
        released_midnight = dc.release_count(cells[0], policy) or 0
        hours, hour_notes = dc.release_shares(cells[1:], policy)
        notes.extend(f"hours: {n}" for n in hour_notes)
        timed = sum(hours)
        # the share comes from released counts only, so a few odd times cannot show in it
        share = 1.0 if not timed else round(released_midnight / (released_midnight + timed), 3)
        cs.time_of_day = TimeOfDay(midnight_share=share, hours=hours if timed else None)
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
        allowed = noise is None or policy.dp_quantiles == "not_noised"
        grid = dc.quantile_grid(n_pairs, policy) if allowed else []
        quantiles = _quantiles(
            conn, tbl, diff, n_pairs, grid, policy, True, where=f"{qs} IS NOT NULL"
        )
        if not allowed:
            notes.append(f"days after {start}: quantiles withheld under differential privacy")
        if quantiles:
            if noise is None:
                neg = dc.release_count(negative, policy) or 0
                released_pairs = dc.release_count(n_pairs, policy) or n_pairs
            else:
                neg = dc.release_count(noise.counts(f"{col.name}:negative", [negative])[0], policy)
                neg, released_pairs = neg or 0, cs.non_null or 0
            cs.offset = DateOffset(
                from_column=start,
                quantiles=quantiles,
                negative_share=min(1.0, round(neg / released_pairs, 4)) if neg else 0.0,
            )
            notes.append(
                f"days after {start} released as quantiles, each the mean of k={policy.k} "
                "neighbouring values (top- and bottom-coded)"
            )
        if negative:
            r = dc.release_count(negative, policy)
            how_many = (
                "some"
                if noise is not None
                else ("about " + str(r) if r else f"fewer than {policy.k}")
            )
            findings.append(f"{col.name}: {how_many} rows end before {start}")


def _summarise_reference(
    conn: Connection,
    engine: Engine,
    sql: SqlExpressions,
    schema: str | None,
    tbl: str,
    table: TableSchema,
    col: ColumnSchema,
    policy: dc.DisclosurePolicy,
    cs: ColumnStats,
    notes: list[str],
    findings: list[str],
    rel,
    noise: Noise | None = None,
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

    notes.append("ids never listed: generated from the parent's synthetic key range")
    parent_names = {n.lower(): n for n in sa.inspect(engine).get_table_names(schema=schema)}
    parent = parent_names.get(fk.parent_table)
    pcol = None
    if parent is None:
        findings.append(f"{col.name}: parent table {fk.parent_table} is not in the extract")
    else:
        parent_cols = {
            c["name"].lower(): c["name"]
            for c in sa.inspect(engine).get_columns(parent, schema=schema)
        }
        pcol = parent_cols.get(fk.parent_column.lower())
    resolves = valid(q)
    if pcol is not None:
        ptbl, pq = qualified(engine, schema, parent), quote(engine, pcol)
        if sql.pg:  # a semi-join PostgreSQL runs as a hash or merge join
            resolves += f" AND EXISTS (SELECT 1 FROM {ptbl} p WHERE p.{pq} = {tbl}.{q})"
        else:  # SQLite builds one temporary index for IN (subquery); EXISTS would loop
            resolves += f" AND {q} IN (SELECT {pq} FROM {ptbl} WHERE {pq} IS NOT NULL)"
    total, usable, resolving = conn.execute(
        sa.text(
            f"SELECT COUNT(*), SUM(CASE WHEN {valid(q)} THEN 1 ELSE 0 END), "
            f"SUM(CASE WHEN {resolves} THEN 1 ELSE 0 END) FROM {tbl}"
        )
    ).one()
    total, usable, resolving = int(total), int(usable or 0), int(resolving or 0)
    dangling = usable - resolving

    # children per parent, over the references that resolve
    per_parent = conn.execute(
        sa.text(
            f"SELECT n, COUNT(*) FROM (SELECT {q} AS r, COUNT(*) AS n FROM {tbl} WHERE {resolves} GROUP BY {q}) s GROUP BY n"
        )
    ).all()
    fanout = [(int(n), int(c)) for n, c in per_parent]
    if noise is not None:
        # one more child moves its parent one bin along: two bins change by one each
        fanout = noise.pairs(f"{col.name}:fanout", fanout, sensitivity=2)
    binned = dc.merge_bins(fanout, policy)
    cs.fanout = [Bin(start=a, end=b, count=c) for a, b, c in binned.bins] or None
    notes.extend(f"children per parent: {n}" for n in binned.notes)
    if not dangling:
        return
    cs.dangling = dc.release_count(dangling, policy) if noise is None else None
    what = (
        "person ids missing from person"
        if fk.parent_table == "person"
        else f"references to no {fk.parent_table} row"
    )
    if col.nullable:
        # an optional reference that points nowhere means no reference: NULL
        if noise is None:
            released_total = dc.release_count(total, policy)
            released_null = dc.release_count(total - resolving, policy) or 0
            cs.non_null = dc.release_count(resolving, policy)
        else:  # replaces the column's null split released above (the same statistic)
            nulls, values = noise.counts(f"{col.name}:nulls", [total - resolving, resolving])
            released_null = dc.release_count(nulls, policy) or 0
            cs.non_null = dc.release_count(values, policy)
            released_total = released_null + (cs.non_null or 0)
        cs.null_fraction = (
            round(min(1.0, released_null / released_total), 4) if released_total else 1.0
        )
        if cs.non_null is None and resolving:
            cs.null_fraction = 1.0
        handling = "treated as NULL (the column is optional)"
    else:
        handling = "drawn from the synthetic parent like the others (the column is required)"
    findings.append(f"{col.name}: {rel(dangling)} {what} (dangling); {handling}")


def _summarise_by_group(
    conn: Connection,
    tbl: str,
    table: TableSchema,
    col: ColumnSchema,
    by: str,
    role: str,
    policy: dc.DisclosurePolicy,
    notes: list[str],
) -> ConditionalStats | None:
    """The column per value of ``by``: quantiles (numbers) or common values (codes) per group.

    A group is released only when it holds enough rows for its own statistic (2k values for
    quantiles, k for values); smaller groups are pooled into one ``other`` group, and a pool
    below k is withheld.
    """
    engine = conn.engine
    q, g = quote(engine, col.name), quote(engine, by)
    k = policy.k
    sizes = conn.execute(
        sa.text(f"SELECT {g}, COUNT(*), COUNT({q}) FROM {tbl} WHERE {g} IS NOT NULL GROUP BY {g}")
    ).all()
    sizes = [(_py(v), int(n), int(nn)) for v, n, nn in sizes]
    numeric = role != "code"
    need = 2 * k if numeric else k
    big = sorted((s for s in sizes if s[2] >= need and s[1] >= k), key=lambda s: (-s[1], str(s[0])))
    big = big[: policy.max_listed_values]
    big_values = {s[0] for s in big}
    small = [s for s in sizes if s[0] not in big_values]
    groups: list[GroupStats] = []

    def null_fraction(n: int, nn: int) -> float:
        released_n, released_null = dc.release_count(n, policy), dc.release_count(n - nn, policy)
        return round(min(1.0, (released_null or 0) / released_n), 4) if released_n else 0.0

    if numeric:
        wanted = []
        for value, _n, nn in big:
            for p in dc.quantile_grid(nn, policy):
                first, last = dc.quantile_window(dc.rank_for(p, nn), nn, k)
                wanted.append((value, p, first, last))
        means = _window_means_by_group(conn, tbl, q, g, wanted, col.logical_type == "integer")
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
                    null_fraction=null_fraction(n, nn),
                    quantiles=_thin(pts),
                )
            )
    else:
        pairs = conn.execute(
            sa.text(
                f"SELECT {g}, {q}, COUNT(*) FROM {tbl} WHERE {g} IS NOT NULL AND {q} IS NOT NULL GROUP BY {g}, {q}"
            )
        ).all()
        by_group: dict[Any, list[tuple[Any, int]]] = {}
        for gv, v, c in pairs:
            by_group.setdefault(_py(gv), []).append((_py(v), int(c)))
        for value, n, nn in big:
            released = dc.fold_frequencies(by_group.get(value, []), nn, policy)
            groups.append(
                GroupStats(
                    value=value,
                    count=dc.release_count(n, policy) or 0,
                    null_fraction=null_fraction(n, nn),
                    values=[ValueCount(value=v, count=c) for v, c in released.values],
                    other_count=released.other_count,
                )
            )
    other = None
    pooled_n, pooled_nn = sum(s[1] for s in small), sum(s[2] for s in small)
    if small and pooled_nn >= need:
        other = GroupStats(
            value=None,
            count=dc.release_count(pooled_n, policy) or 0,
            null_fraction=null_fraction(pooled_n, pooled_nn),
        )
        if not numeric:
            pooled: dict[Any, int] = {}
            for s in small:
                for v, c in by_group.get(s[0], []):
                    pooled[v] = pooled.get(v, 0) + c
            released = dc.fold_frequencies(list(pooled.items()), pooled_nn, policy)
            other.values = [ValueCount(value=v, count=c) for v, c in released.values]
            other.other_count = released.other_count
        else:
            small_values = [s[0] for s in small]
            other.quantiles = _pooled_quantiles(
                conn, tbl, q, g, small_values, pooled_nn, policy, col.logical_type == "integer"
            )
    if not groups and other is None:
        return None
    notes.append(
        f"per {by}: {len(groups)} groups with at least {need} values released"
        + ("; smaller groups pooled" if small else "")
        + ("" if other is not None or not small else f" (pool below {need}: withheld)")
    )
    return ConditionalStats(by=by, groups=groups, other=other)


def _thin(points: list[QuantilePoint]) -> list[QuantilePoint]:
    return [
        pt
        for i, pt in enumerate(points)
        if i in (0, len(points) - 1) or not (points[i - 1].value == pt.value == points[i + 1].value)
    ]


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
        found.setdefault(int(i), []).append(_number(_py(v)))
    return {
        i: dc.window_mean(vs, integer)  # type: ignore[arg-type]
        for i, vs in found.items()
        if len(vs) == wanted[i][3] - wanted[i][2] + 1 and all(v is not None for v in vs)
    }


def _pooled_quantiles(conn, tbl, q, g, group_values, n, policy, integer) -> list[QuantilePoint]:
    grid = dc.quantile_grid(n, policy)
    params = {f"s{i}": v for i, v in enumerate(group_values)}
    where = f"{g} IN ({', '.join(':' + k for k in params)})"
    return _quantiles(conn, tbl, q, n, grid, policy, integer, where=where, params=params)
