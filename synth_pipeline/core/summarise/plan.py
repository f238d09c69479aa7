"""Step 2 of :mod:`.summarise` and the plan of step 3: which columns are high-cardinality, which
numbers carry dates, and which expressions the grouped pass counts, with the ranks it brings
back."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import disclosure as dc
from .. import dp, omop
from ..database import qualified, quote
from ..dp import Noise
from ..schema import ColumnSchema, TableSchema, column_role
from ..sqlexpr import SqlExpressions
from .passes import Frequencies, Grouping
from .ranks import SampleFrame, high_cardinality_pass, sample_frame
from .release import dp_candidates
from .scalars import as_number, text_stored
from .windows import range_windows, rank_windows

SAMPLE_ROWS = 1_000_000  # ProjectConfig.statistics_sample_rows, the default
PROBE_ROWS = 100_000  # rows sampled to tell high-cardinality columns in a big table


@dataclass
class Plan:
    """What steps 2 and 4 found, and the groupings of step 3 (see the module's description)."""

    exact: list[Grouping]  # grouped over the whole table
    high_cardinality: set[str] = field(default_factory=set)  # more than the listing limit
    high_distinct: dict[str, int] = field(default_factory=dict)  # their exact counts, if known
    ranked: dict[str, Frequencies] = field(default_factory=dict)  # their quantile ranks
    sampled: bool = False  # ranked in a sample rather than the whole table
    parent_missing: dict[str, str] = field(default_factory=dict)
    sample_note: str | None = None
    date_numbers: dict[str, str] = field(default_factory=dict)  # column -> "days"/"seconds"


def plan_table(
    conn: Connection,
    sql: SqlExpressions,
    schema: str | None,
    tbl: str,
    table: TableSchema,
    scan: dict[str, Any],
    policy: dc.DisclosurePolicy,
    noise: Noise | None,
    sample_rows: int,
    distinct: dict[str, int] | None = None,
) -> Plan:
    """Step 2 (and step 4, which it runs), and the groupings of step 3, column by column.
    ``distinct``: the columns' distinct counts where already known (SQLite, see .local)."""
    plan = Plan(exact=[])
    _high_cardinality(conn, tbl, table, scan, policy, noise is None, sample_rows, plan, distinct)
    if noise is None:  # under differential privacy numbers stay numbers (see _date_numbers)
        plan.date_numbers = _date_numbers(conn, tbl, table, scan)
    planner = _Planner(conn.engine, sql, schema, table, scan, policy, noise, plan)
    for col in table.columns:
        role = column_role(table, col.name)
        if role in ("primary_key", "polymorphic") or int(scan[f"n:{col.name}"]) == 0:
            continue
        plan.exact += planner.groupings(col, role)
    return plan


def _high_cardinality(
    conn: Connection,
    tbl: str,
    table: TableSchema,
    scan: dict[str, Any],
    policy: dc.DisclosurePolicy,
    quantiles_allowed: bool,
    sample_rows: int,
    plan: Plan,
    distinct: dict[str, int] | None = None,
) -> None:
    """High-cardinality columns (more distinct values than may ever be listed) stay out of the
    grouped pass, where they would cost a hash table the size of the table each. They are told
    by distinct counts in the table, or for a big table in a small repeatable sample (more than
    the limit there means more in the table), and ranked apart: one sort each, in the whole
    table, or above ``sample_rows`` in a sample (their distinct counts are then not released).
    Codes are always counted exactly: they are listed whatever their number."""
    engine, total = conn.engine, int(scan["__rows"])
    values = [
        c
        for c in table.columns
        if column_role(table, c.name) == "value" and int(scan[f"n:{c.name}"])
    ]
    if not values:
        return
    probe = (
        sample_frame(engine, tbl, total, min(PROBE_ROWS, sample_rows))
        if total > PROBE_ROWS
        else None
    )
    if probe is None and distinct is not None and all(c.name in distinct for c in values):
        seen = [distinct[c.name] for c in values]  # counted in the whole table already
    else:
        parts = ", ".join(f"COUNT(DISTINCT {quote(engine, c.name)})" for c in values)
        seen = conn.execute(sa.text(f"SELECT {parts} FROM {probe.sql if probe else tbl}")).one()
    high = [
        c for c, d in zip(values, seen, strict=True) if int(d) > policy.max_distinct_for_listing
    ]
    plan.high_cardinality = {c.name for c in high}
    if probe is None:
        plan.high_distinct = {
            c.name: int(d) for c, d in zip(values, seen, strict=True) if c in high
        }
    plan.sampled = total > sample_rows
    frame = sample_frame(engine, tbl, total, sample_rows) if plan.sampled else None
    ranked = [c for c in high if c.logical_type in ("integer", "float")]
    if high and (ranked and quantiles_allowed or (probe and not frame)):
        distinct, plan.ranked = high_cardinality_pass(
            conn,
            frame.sql if frame else tbl,
            high if probe and not frame else [],
            ranked if quantiles_allowed else [],
            None if frame else {c.name: int(scan[f"n:{c.name}"]) for c in ranked},
            policy,
        )
        plan.high_distinct.update(distinct)
    if frame and high:
        plan.sample_note = _sample_note(high, probe, frame, policy)


def _sample_note(
    high: list[ColumnSchema],
    probe: SampleFrame | None,
    frame: SampleFrame,
    policy: dc.DisclosurePolicy,
) -> str:
    return (
        f"{', '.join(c.name for c in high)}: more than "
        f"{policy.max_distinct_for_listing} distinct values"
        + (
            f" in a sample of about {probe.rows:,} rows (distinct counts not released)"
            if probe
            else ""
        )
        + f"; quantiles from a sample of about {frame.rows:,} rows ({frame.method})"
    )


@dataclass
class _Planner:
    """The groupings of step 3 for each column of one table."""

    engine: Engine
    sql: SqlExpressions
    schema: str | None
    table: TableSchema
    scan: dict[str, Any]
    policy: dc.DisclosurePolicy
    noise: Noise | None
    plan: Plan

    @property
    def quantiles_allowed(self) -> bool:  # exact windows; under differential privacy see dp
        return self.noise is None

    @property
    def dp_quantiles(self) -> bool:
        return self.noise is not None and self.policy.dp_quantiles == "dp"

    def groupings(self, col: ColumnSchema, role: str) -> list[Grouping]:
        sql, plan, q = self.sql, self.plan, quote(self.engine, col.name)
        lt, non_null = col.logical_type, int(self.scan[f"n:{col.name}"])
        if col.name in plan.date_numbers:
            as_date = _number_as_date(sql, q, plan.date_numbers[col.name])
            return [
                Grouping(f"year:{col.name}", sql.year(as_date, not sql.pg), "all"),
                Grouping(f"month:{col.name}", sql.month(as_date, not sql.pg), "all"),
            ]
        if role == "foreign_key":
            return [
                reference_grouping(
                    self.engine, sql, self.schema, self.table, col, plan.parent_missing
                )
            ]
        out = []
        if col.name not in plan.high_cardinality:
            out.append(self.value_grouping(col, role))
        if self.dp_quantiles and role != "code" and lt in ("integer", "float"):
            out.append(self.dp_grouping(f"dpq:{col.name}", q, col, "values"))
        if lt == "string" and role != "code":
            g = Grouping(key=f"len:{col.name}", expr=sql.length(q), derived=("length", col.name))
            if self.quantiles_allowed:
                g.windows = rank_windows(non_null, self.policy)
            out.append(g)
            if self.dp_quantiles:
                out.append(self.dp_grouping(f"dplen:{col.name}", sql.length(q), col, "length"))
        if lt in ("date", "datetime"):
            out += self.date_groupings(col, q, non_null)
        return out

    def value_grouping(self, col: ColumnSchema, role: str) -> Grouping:
        policy, lt = self.policy, col.logical_type
        g = Grouping(
            f"v:{col.name}", quote(self.engine, col.name), "all", derived=("value", col.name)
        )
        if role == "code":
            return g
        if lt == "string":
            g.rows = "none" if policy.never_listed(col.name) else "listable"
            g.string_rule = True
        elif lt in ("integer", "float"):
            g.rows = "listable"  # only while few enough distinct values to list
            if self.quantiles_allowed:
                g.windows = rank_windows(int(self.scan[f"n:{col.name}"]), policy)
        elif lt in ("date", "datetime"):
            g.rows = "none"  # dates are released as bins, never listed
        return g

    def dp_grouping(self, key: str, expr: str, col: ColumnSchema, what: str) -> Grouping:
        """Under differential privacy: rows per quantile candidate bucket (see :mod:`.dp`)."""
        candidates = dp_candidates(col, what, self.policy)
        pg = self.sql.pg and not self.sql.duck
        return Grouping(key, dp.bucket_sql(expr, candidates, pg), rows="all")

    def date_groupings(self, col: ColumnSchema, q: str, non_null: int) -> list[Grouping]:
        """Year, month, the coded range's ends, hours, days after the start column."""
        sql, policy, text = self.sql, self.policy, text_stored(col)
        name = col.name
        out = [
            Grouping(f"year:{name}", sql.year(q, text), "all", derived=("year", name)),
            Grouping(f"month:{name}", sql.month(q, text), "all", derived=("month", name)),
        ]
        if self.quantiles_allowed:  # the coded range: k-value means at the two ends
            g = Grouping(f"day:{name}", sql.day_number(q, text), "all", derived=("day", name))
            g.windows = range_windows(non_null, policy)
            out.append(g)
        if col.logical_type == "datetime":
            hour = (
                f"CASE WHEN {q} IS NULL THEN NULL WHEN {sql.is_midnight(q, text)} THEN -1 "
                f"ELSE {sql.hour(q, text)} END"
            )
            out.append(Grouping(f"hour:{name}", hour, "all", derived=("hour", name)))
        start = omop.start_of([c.name for c in self.table.columns], col.name)
        if start is None:
            return out
        qs = quote(self.engine, start)
        diff = sql.day_difference(q, qs, text or text_stored(self.table.column(start)))
        g = Grouping(
            f"off:{col.name}",
            f"CASE WHEN {q} IS NOT NULL AND {qs} IS NOT NULL THEN {diff} END",
            rows="all",
            derived=("offset", name, start),
        )
        if self.quantiles_allowed:
            g.windows = rank_windows(int(self.scan[f"p:{col.name}"] or 0), policy)
        out.append(g)
        if self.dp_quantiles:
            out.append(self.dp_grouping(f"dpoff:{col.name}", g.expr, col, "offset"))
        return out


# Numbers that carry dates: day or second counts since 1970 between these dates.
_DATE_RANGE = (dt.date(1900, 1, 1), dt.date(2100, 12, 31))
_EPOCH = dt.date(1970, 1, 1)


def _date_named(table: TableSchema, col: ColumnSchema) -> bool:
    """A column the OMOP specification or its name says holds dates."""
    spec = omop.field_spec(table.name, col.name)
    if spec is not None and spec.logical_type in ("date", "datetime"):
        return True
    return col.name.lower().endswith(("_date", "_datetime"))


def _date_numbers(
    conn: Connection, tbl: str, table: TableSchema, scan: dict[str, Any]
) -> dict[str, str]:
    """Number columns that carry dates: named as dates (by the OMOP specification or a _date
    suffix) and holding only day counts ("days") or second counts ("seconds") since 1970 that
    fall between 1900 and 2100. They are summarised as dates (year bins and months), never as
    numbers, whose quantiles would be single rows' dates."""
    candidates = [
        c
        for c in table.columns
        if c.logical_type in ("integer", "float")
        and column_role(table, c.name) == "value"
        and int(scan[f"n:{c.name}"])
        and _date_named(table, c)
    ]
    if not candidates:
        return {}
    parts = ", ".join(
        f"MIN({quote(conn.engine, c.name)}), MAX({quote(conn.engine, c.name)})" for c in candidates
    )
    row = conn.execute(sa.text(f"SELECT {parts} FROM {tbl}")).one()
    low_day, high_day = ((d - _EPOCH).days for d in _DATE_RANGE)
    out = {}
    for i, c in enumerate(candidates):
        low, high = as_number(row[2 * i]), as_number(row[2 * i + 1])
        if low is None or high is None:
            continue
        if low_day <= low and high <= high_day:
            out[c.name] = "days"
        elif low_day * 86400 <= low and high <= (high_day + 1) * 86400 and high > high_day:
            out[c.name] = "seconds"
    return out


def _number_as_date(sql: SqlExpressions, q: str, unit: str) -> str:
    """SQL turning day or second counts since 1970 into a date (ISO text on SQLite)."""
    if sql.pg:
        if unit == "days":
            return f"(DATE '1970-01-01' + CAST(FLOOR({q}) AS INTEGER))"
        return f"CAST(to_timestamp({q}) AT TIME ZONE 'UTC' AS DATE)"
    seconds = f"{q} * 86400" if unit == "days" else q
    return f"date({seconds}, 'unixepoch')"


def reference_grouping(
    engine: Engine,
    sql: SqlExpressions,
    schema: str | None,
    table: TableSchema,
    col: ColumnSchema,
    parent_missing: dict[str, str],
) -> Grouping:
    """A reference: which values are usable, and which of them resolve to a parent row."""
    fk = table.foreign_key(col.name)
    assert fk is not None
    usable = "{x} IS NOT NULL AND {x} <> 0" if col.logical_type == "integer" else "{x} IS NOT NULL"
    parent_names = {n.lower(): n for n in sa.inspect(engine).get_table_names(schema=schema)}
    parent = parent_names.get(fk.parent_table)
    pcol = None
    if parent is None:
        parent_missing[col.name] = fk.parent_table
    else:
        parent_cols = {
            c["name"].lower(): c["name"]
            for c in sa.inspect(engine).get_columns(parent, schema=schema)
        }
        pcol = parent_cols.get(fk.parent_column.lower())
    resolves, keys = usable, None
    if pcol is not None:
        ptbl, pq = qualified(engine, schema, parent), quote(engine, pcol)
        keys = f"SELECT DISTINCT {pq} FROM {ptbl} WHERE {pq} IS NOT NULL"
        if sql.pg:  # a semi-join per distinct value, by the parent's key index or a hash
            resolves += f" AND EXISTS (SELECT 1 FROM {ptbl} p__ WHERE p__.{pq} = {{x}})"
        else:  # SQLite builds one temporary index for IN (subquery)
            resolves += f" AND {{x}} IN (SELECT {pq} FROM {ptbl} WHERE {pq} IS NOT NULL)"
    return Grouping(
        key=f"fk:{col.name}",
        expr=quote(engine, col.name),
        reference=(usable, resolves),
        derived=("reference0" if col.logical_type == "integer" else "reference", col.name),
        parent_keys=keys,
    )
