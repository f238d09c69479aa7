"""Column statistics by aggregate SQL pushed down to the source, released through disclosure control.

A table costs a fixed number of statements, whatever its width:

1. one scan counts rows and, per column, non-null values, zeros in references, over-long
   strings and start/end pairs;
2. one statement counts the distinct values of the value columns, in the table or, above
   ``PROBE_ROWS``, in a repeatable sample of that many rows, to tell the high-cardinality
   columns (more than the listing limit there means more in the table);
3. one grouped statement counts every value of the other columns and of derived expressions
   (year, month, hour, string length, days from a start date) and, in the same statement,
   reduces them inside the database to what is needed: distinct counts, the frequencies of
   listable columns, the values at the ranks the quantile windows need, and children per parent
   of references. On PostgreSQL it is one scan (``GROUPING SETS``); SQLite, which has no
   grouping sets, reads the table once per expression inside that statement;
4. one statement ranks the high-cardinality columns (a sort each) for their quantiles and, when
   step 2 was sampled, their exact distinct counts (SQLite ranks in a second statement). Above
   ``sample_rows`` it runs on a repeatable sample instead (PostgreSQL ``TABLESAMPLE SYSTEM``,
   SQLite every n-th rowid); those columns' distinct counts are then not released and the
   table's findings say so. Every count, listed value and histogram stays exact.

Per-group statistics (``conditional``) add one or two grouped queries per configured pair, and
a never-listed string a small ``LIMIT`` sample whose shape alone is kept. Only aggregates cross
the connection. Raw aggregates stay inside :func:`summarise_table`; what it returns has passed
:mod:`.disclosure`.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
import json
import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import disclosure as dc
from . import dp, omop
from .database import is_duckdb, is_postgres, pg_like, qualified, quote
from .dp import Noise
from .schema import ColumnSchema, TableSchema, column_role, identifier_findings, list_tables
from .sqlexpr import SqlExpressions
from .statistics import (
    Bin,
    ColumnStats,
    ConditionalStats,
    DateOffset,
    DateRange,
    GroupStats,
    QuantilePoint,
    TableStats,
    Target,
    TimeOfDay,
    ValueCount,
    ends_at_a_cut,
)


def offset_source_column(columns: Sequence[str], name: str) -> str | None:
    """The start column an end column is measured from (``visit_end_date`` ->
    ``visit_start_date``, ``procedure_end_date`` -> ``procedure_date``): the CDM's pairs."""
    return omop.start_of(list(columns), name)


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


SAMPLE_ROWS = 1_000_000  # ProjectConfig.statistics_sample_rows, the default
PROBE_ROWS = 100_000  # rows sampled to tell high-cardinality columns in a big table


def summarise_table(
    engine: Engine,
    schema: str | None,
    table: TableSchema,
    policy: dc.DisclosurePolicy,
    conditional: dict[str, str] | None = None,
    noise: Noise | None = None,
    sample_rows: int = SAMPLE_ROWS,
) -> TableStats:
    """Released statistics of one source table.

    ``conditional`` maps a column to the column it is also summarised by (per-group statistics
    for conditional generators); pairs naming a column the table lacks are ignored.
    ``noise`` (differential privacy, see :mod:`.dp`) is added to every released count and
    histogram before the k and rounding rules; per-group statistics are then withheld.
    ``sample_rows``: above this many rows, high-cardinality columns are summarised from a
    sample (see the module's description).
    """
    conditional = {
        c: by
        for c, by in (conditional or {}).items()
        if c in {x.name for x in table.columns}
        and by in {x.name for x in table.columns}
        and c != by
    }
    # twin columns (*_source_concept_id, *_source_value beside *_concept_id) are summarised per
    # combination of the columns they agree with, so they can be generated consistently
    names = [c.name for c in table.columns]
    twins = {c: omop.twin_of(table.name, names, c) for c in names}
    twins = {c: by for c, by in twins.items() if by}
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
            columns=_release_dates(engine, schema, table),
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
        if sql.pg and not sql.duck:
            # the grouped pass hashes every grouped expression at once; let it do so in memory
            conn.execute(sa.text("SET LOCAL work_mem = '1GB'"))  # a ceiling, not an allocation
        scan = _first_scan(conn, sql, tbl, table)
        blanks = {c.name: int(scan.get(f"e:{c.name}") or 0) for c in table.columns}
        if any(blanks.values()):
            # an extract loaded from CSV keeps '' for NULL in numbers and dates: read them so
            tbl = _blanks_as_null(engine, tbl, table)
            scan = _first_scan(conn, sql, tbl, table)
            findings += [
                f"{name}: {rel(n)} empty strings where a {table.column(name).logical_type} "
                "belongs; treated as NULL"
                for name, n in blanks.items()
                if n
            ]
        total = int(scan["__rows"])
        plan = _plan(conn, sql, schema, tbl, table, scan, policy, noise, sample_rows)
        if noise is None:  # every combination a twin was seen with, in the same grouped pass
            plan.exact += [
                _Grouping(f"twin:{c}", sql.json_row([*by, c]), rows="all")
                for c, by in twins.items()
                if int(scan[f"n:{by[0]}"])
            ]
        exact = _grouped_pass(conn, tbl, plan.exact, policy)
        if plan.sample_note:
            findings.append(plan.sample_note)
        for col in table.columns:
            role = column_role(table, col.name)
            non_null = int(scan[f"n:{col.name}"])
            zeros = int(scan.get(f"z:{col.name}") or 0)
            values = exact.get(f"v:{col.name}") or exact.get(f"fk:{col.name}")
            # high-cardinality in a sampled table: the distinct count is not known exactly
            high = col.name in plan.high_cardinality and col.name not in plan.high_distinct
            if non_null == 0:
                distinct: int | None = 0
            elif role == "primary_key":
                distinct = int(scan.get(f"d:{col.name}", non_null))
            elif col.name in plan.high_distinct:
                distinct = plan.high_distinct[col.name]
            elif high or values is None:
                distinct = None
            else:
                distinct = values.distinct
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
                nulls, values_count = (
                    noise.counts(
                        f"{col.name}:nulls", [total - effective_non_null, effective_non_null]
                    )
                    if col.nullable
                    else (0, noise.counts("rows", [table.row_count])[0])
                )
                released_nn = dc.release_count(values_count, policy)
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
            if high:
                cs.distinct = None
                col_notes.append(
                    f"more than {policy.max_distinct_for_listing} distinct values in a sample: "
                    "distinct count not released"
                )
            else:
                cs.distinct = (
                    dc.release_count(distinct, policy)
                    if noise is None and distinct is not None
                    else None
                )
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
                dup = non_null - (distinct or 0)
                if dup:
                    findings.append(
                        f"primary key {col.name}: {rel(dup)} rows repeat a key value (duplicates); "
                        "synthetic keys are dense 1..n"
                    )
                cs.distinct = None
            elif role == "foreign_key":
                _summarise_reference(
                    exact[f"fk:{col.name}"],
                    plan.parent_missing.get(col.name),
                    table,
                    col,
                    total,
                    policy,
                    cs,
                    col_notes,
                    findings,
                    rel,
                    noise,
                )
            elif role == "polymorphic":
                cs.distinct, cs.listed = None, False
                col_notes.append(
                    "ids never listed: generated from the synthetic keys of the table its "
                    "naming column points to"
                )
            elif col.logical_type in ("date", "datetime") or col.name in plan.date_numbers:
                if col.name in plan.date_numbers:
                    unit = plan.date_numbers[col.name]
                    findings.append(
                        f"{col.name}: {col.logical_type} values that look like dates ({unit} since "
                        "1970, between 1900 and 2100): summarised as dates, in year bins and "
                        "months, never as numbers"
                    )
                    cs.distinct = None
                _summarise_dates(exact, table, col, scan, policy, cs, col_notes, findings, noise)
            else:
                ranked = plan.ranked.get(f"v:{col.name}")
                _summarise_values(
                    conn,
                    tbl,
                    col,
                    role,
                    non_null,
                    distinct,
                    values,
                    ranked,
                    plan.sampled,
                    exact.get(f"len:{col.name}"),
                    policy,
                    cs,
                    col_notes,
                    noise,
                    exact.get(f"dpq:{col.name}"),
                    exact.get(f"dplen:{col.name}"),
                )
                if col.name in twins and noise is not None:
                    col_notes.append(
                        f"per-{'/'.join(twins[col.name])} values withheld under differential "
                        "privacy"
                    )
                elif col.name in twins and f"twin:{col.name}" in exact:
                    cs.conditional = _twin_groups(
                        exact[f"twin:{col.name}"], twins[col.name], policy, col_notes
                    )
                elif col.name in conditional and col.logical_type in ("integer", "float"):
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

        for start, end in omop.date_pairs(table.name, [c.name for c in table.columns]):
            _offset_before_end(stats, start, end, notes.setdefault(start, []))
        for ref in omop.polymorphic(table.name, [c.name for c in table.columns]):
            if ref.column in stats and ref.by in stats:
                _polymorphic_targets(conn, schema, ref, stats[ref.by], stats[ref.column], findings)
        shape = omop.EVENT_SHAPES.get(table.name)
        if shape and shape.kind == "lifetime" and shape.start in stats:
            if noise is not None:
                notes.setdefault(shape.start, []).append(
                    "days from the person's birth withheld under differential privacy"
                )
            else:
                _days_from_birth(conn, schema, tbl, table, shape.start, stats[shape.start], policy)
                if stats[shape.start].days_from_birth:
                    notes.setdefault(shape.start, []).append(
                        f"days from the person's birth released as quantiles, each the mean of "
                        f"k={policy.k} neighbouring values (top- and bottom-coded)"
                    )

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


def _release_dates(
    engine: Engine, schema: str | None, table: TableSchema
) -> dict[str, ColumnStats]:
    """cdm_source's release dates (the latest of each column), which end the extract: no
    generated date lies after them. Metadata about the extract, not about a patient, so not
    held to the count rule."""
    if table.name != "cdm_source":
        return {}
    dates = [c for c in table.columns if c.name in ("source_release_date", "cdm_release_date")]
    if not dates:
        return {}
    sql = SqlExpressions(engine)
    tbl = qualified(engine, schema, table.source_name)
    parts = ", ".join(
        f"MAX({sql.as_date(quote(engine, c.name), _is_text_stored(c))})" for c in dates
    )
    with engine.connect() as conn:
        row = conn.execute(sa.text(f"SELECT {parts} FROM {tbl}")).one()
    out = {}
    for col, value in zip(dates, row, strict=True):
        day = _py(value)
        if isinstance(day, str) and re.match(r"^\d{4}-\d{2}-\d{2}", day):
            out[col.name] = ColumnStats(range=DateRange(low=day[:10], high=day[:10]))
    return out


def _numeric_type(sql_type: str) -> bool:
    t = sql_type.upper()
    return any(x in t for x in ("INT", "NUM", "REAL", "DOUBLE", "FLOAT", "DECIMAL"))


def _days_from_birth(
    conn: Connection,
    schema: str | None,
    tbl: str,
    table: TableSchema,
    start: str,
    cs: ColumnStats,
    policy: dc.DisclosurePolicy,
) -> None:
    """An observation period's start as days from its person's birth (the age at which
    observation starts, which the start's own dates and the birth's cannot carry), for the
    rows whose person is in the extract's person table."""
    names = list_tables(conn.engine, schema)
    if "person" not in names or "person_id" not in [c.name for c in table.columns]:
        return
    engine = conn.engine
    if _numeric_type(table.column(start).sql_type):
        return  # dates kept as day or second counts: not read as calendar dates here
    person_cols = {
        c["name"].lower(): c for c in sa.inspect(engine).get_columns(names["person"], schema=schema)
    }
    if "year_of_birth" not in person_cols:
        return
    sql = SqlExpressions(engine)
    birth_type = str(person_cols.get("birth_datetime", {}).get("type", "")).upper()
    usable = set(person_cols) - ({"birth_datetime"} if _numeric_type(birth_type) else set())
    birth = sql.birth_day_number("p", usable, not any(x in birth_type for x in ("DATE", "TIME")))
    begins = sql.day_number("t.s", _is_text_stored(table.column(start)))
    rows = conn.execute(
        sa.text(
            f"SELECT d, COUNT(*) FROM (SELECT {begins} - {birth} AS d FROM (SELECT "
            f"{quote(engine, start)} AS s, {quote(engine, 'person_id')} AS pid FROM {tbl}) t "
            f"JOIN {qualified(engine, schema, names['person'])} p "
            f"ON p.{quote(engine, 'person_id')} = t.pid) x WHERE d IS NOT NULL GROUP BY d "
            "ORDER BY d"
        )
    ).all()
    counts = [(int(d), int(n)) for d, n in rows]
    n = sum(c for _, c in counts)
    if n < 2 * policy.k:
        return
    cumulative = list(itertools.accumulate(c for _, c in counts))

    def values_at(ranks: list[int]) -> dict[int, Any]:
        return {r: counts[bisect.bisect_left(cumulative, r)][0] for r in ranks}

    grid = dc.quantile_grid(n, policy)
    cs.days_from_birth = _released_quantiles(n, grid, policy, True, values_at, counts) or None


def _polymorphic_targets(
    conn: Connection,
    schema: str | None,
    ref: omop.Polymorphic,
    by: ColumnStats,
    cs: ColumnStats,
    findings: list[str],
) -> None:
    """The table each released value of ``ref.by`` names, from the extract's DOMAIN table (domain
    concepts), CONCEPT table (CDM field concepts, named '<table>.<field>') or the OMOP domains.

    Only values already released (seen at least k times) are looked up; what they point to is
    public vocabulary."""
    values = [v.value for v in by.values or [] if v.value not in (0, None, "")]
    if not values or cs.non_null == 0:
        return
    names = list_tables(conn.engine, schema)
    found: dict[Any, str] = {}
    if ref.kind == "domain_id":
        found = {v: omop.DOMAIN_TABLES[v] for v in values if v in omop.DOMAIN_TABLES}
    elif ref.kind == "domain_concept":
        domains = dict(omop.STANDARD_DOMAIN_CONCEPTS)
        if "domain" in names:
            rows = conn.execute(
                sa.text(
                    f"SELECT {quote(conn.engine, 'domain_concept_id')}, "
                    f"{quote(conn.engine, 'domain_id')} FROM "
                    f"{qualified(conn.engine, schema, names['domain'])}"
                )
            ).all()
            domains.update({_py(c): str(d) for c, d in rows if c is not None and d})
        found = {
            v: omop.DOMAIN_TABLES[domains[v]]
            for v in values
            if v in domains and domains[v] in omop.DOMAIN_TABLES
        }
    elif ref.kind == "field_concept" and "concept" in names:
        ids = [v for v in values if isinstance(v, int)]
        if ids:
            params = {f"c{i}": v for i, v in enumerate(ids)}
            rows = conn.execute(
                sa.text(
                    f"SELECT {quote(conn.engine, 'concept_id')}, {quote(conn.engine, 'concept_name')}, "
                    f"{quote(conn.engine, 'concept_code')} FROM "
                    f"{qualified(conn.engine, schema, names['concept'])} WHERE "
                    f"{quote(conn.engine, 'concept_id')} IN ({', '.join(':' + k for k in params)})"
                ),
                params,
            ).all()
            for cid, name, code in rows:
                target = omop.field_concept_table(name) or omop.field_concept_table(code)
                if target:
                    found[_py(cid)] = target
    cs.targets = [Target(value=v, table=found[v]) for v in values if v in found] or None
    unknown = [str(v) for v in values if v not in found]
    if unknown:
        findings.append(
            f"{ref.column}: the table {ref.by} {', '.join(unknown)} names is not known "
            "(no DOMAIN or CDM field concept row in the extract): those ids are left NULL; "
            f"name the table under params.targets of {ref.column} to generate them"
        )


def _first_scan(
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
        start = offset_source_column(names, col.name)
        if start is not None and col.logical_type in ("date", "datetime"):
            qs = quote(engine, start)
            parts.append(f"SUM(CASE WHEN {q} IS NOT NULL AND {qs} IS NOT NULL THEN 1 ELSE 0 END)")
            labels.append(f"p:{col.name}")
    row = conn.execute(sa.text(f"SELECT {', '.join(parts)} FROM {tbl}")).one()
    return dict(zip(labels, row, strict=True))


def _blanks_as_null(engine: Engine, tbl: str, table: TableSchema) -> str:
    """SQLite: the table as a FROM clause in which '' reads as NULL in every column that is not
    a string (rowid kept, for the every-n-th-row sample)."""
    cols = ", ".join(
        f"NULLIF({quote(engine, c.name)}, '') AS {quote(engine, c.name)}"
        if c.logical_type != "string"
        else quote(engine, c.name)
        for c in table.columns
    )
    return f"(SELECT rowid AS rowid, {cols} FROM {tbl}) AS blanks_as_null"


# --- the grouped pass -------------------------------------------------------------------------


@dataclass
class _Grouping:
    """One expression of a grouped pass and what to bring back of its frequency table."""

    key: str
    expr: str
    rows: str = "none"  # "all": every (value, count); "listable": when the column may be listed
    string_rule: bool = False  # "listable" only when not identifier-like
    windows: list[tuple[int, int]] = field(default_factory=list)  # 1-based rank ranges wanted
    reference: tuple[str, str] | None = None  # foreign keys: (usable, resolves) over {x}


@dataclass
class _Frequencies:
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


def _grouped_pass(
    conn: Connection,
    frame: str,
    groupings: list[_Grouping],
    policy: dc.DisclosurePolicy,
) -> dict[str, _Frequencies]:
    """``frame`` (a FROM clause) grouped by every expression in one statement (one scan on
    PostgreSQL), reduced in the same statement to distinct counts, listable frequencies, rank
    windows and fan-out."""
    if not groupings:
        return {}
    pg = pg_like(conn.engine)
    m = len(groupings)
    if pg:
        # GROUPING SETS: one column per expression, NULL outside its own grouping set
        xs = [f"x{i}" for i in range(m)]
        which = " ".join(f"WHEN GROUPING({g.expr}) = 0 THEN {i}" for i, g in enumerate(groupings))
        cols = ", ".join(f"{g.expr} AS x{i}" for i, g in enumerate(groupings))
        sets = ", ".join(f"({g.expr})" for g in groupings)
        any_not_null = (
            " OR ".join(f"{x} IS NOT NULL" for x in xs)
            if is_duckdb(conn.engine)
            else f"num_nonnulls({', '.join(xs)}) > 0"
        )
        grouped = (
            f"SELECT CASE {which} END AS g, {cols}, COUNT(*) AS n FROM {frame} "
            f"GROUP BY GROUPING SETS ({sets})"
        )
        f_cte = f"f0 AS ({grouped}), f AS MATERIALIZED (SELECT * FROM f0 WHERE {any_not_null})"

        def x_of(i: int) -> str:
            return f"x{i}"

        big = "BIGINT"
    else:
        # SQLite has no GROUPING SETS: one grouped read per expression, all in this statement.
        # The unary + strips the column's affinity: a compound SELECT would otherwise convert
        # every value to the affinity of its first column (integers to text, say)
        # (fanning every row out over the expressions in a single read measured slower: one
        # big sort instead of many small ones)
        xs = ["x0"]
        parts = " UNION ALL ".join(
            f"SELECT {i} AS g, x0, COUNT(*) AS n FROM (SELECT +({g.expr}) AS x0 FROM {frame}) "
            f"WHERE x0 IS NOT NULL GROUP BY x0"
            for i, g in enumerate(groupings)
        )
        f_cte = f"f AS MATERIALIZED ({parts})"

        def x_of(i: int) -> str:
            return "x0"

        big = "INTEGER"
    x_list = ", ".join(f"f.{x}" for x in xs)
    nulls = ", ".join(f"NULL AS {x}" for x in xs)
    ctes = [f_cte, f"s AS (SELECT g, COUNT(*) AS d, CAST(SUM(n) AS {big}) AS nn FROM f GROUP BY g)"]
    branches = [f"SELECT 's' AS kind, g, d AS a, nn AS b, {nulls} FROM s"]

    def ids(pred) -> str:
        return ", ".join(str(i) for i, g in enumerate(groupings) if pred(g)) or "-1"

    share = float(policy.identifier_share)
    limit = int(policy.max_distinct_for_listing)
    branches.append(
        f"SELECT 'v', f.g, f.n, NULL, {x_list} FROM f JOIN s ON s.g = f.g WHERE "
        f"f.g IN ({ids(lambda g: g.rows == 'all')}) "
        f"OR (f.g IN ({ids(lambda g: g.rows == 'listable' and not g.string_rule)}) "
        f"AND s.d <= {limit}) "
        f"OR (f.g IN ({ids(lambda g: g.rows == 'listable' and g.string_rule)}) "
        f"AND s.d <= {limit} AND NOT (s.d > {share!r} * s.nn AND s.d >= {int(policy.k)}))"
    )
    wanted = [(i, a, b) for i, g in enumerate(groupings) for a, b in g.windows]
    if wanted:
        order = ", ".join(xs)
        ctes.append(
            f"w AS (SELECT f.g, f.n, SUM(f.n) OVER (PARTITION BY f.g ORDER BY {order} "
            f"ROWS UNBOUNDED PRECEDING) AS cum, {x_list} FROM f "
            f"WHERE f.g IN ({', '.join(sorted({str(i) for i, _, _ in wanted}))}))"
        )
        ctes.append(
            "want(g, a, b) AS (VALUES "
            + ", ".join(f"({i}, {int(a)}, {int(b)})" for i, a, b in wanted)
            + ")"
        )
        w_x = ", ".join(f"w.{x}" for x in xs)
        branches.append(
            f"SELECT 'w', w.g, w.n, CAST(w.cum AS {big}), {w_x} FROM w WHERE EXISTS ("
            "SELECT 1 FROM want WHERE want.g = w.g AND w.cum >= want.a AND w.cum - w.n < want.b)"
        )
    refs = [(i, g) for i, g in enumerate(groupings) if g.reference]
    if refs:
        usable = " ".join(
            f"WHEN {i} THEN ({g.reference[0].format(x='f.' + x_of(i))})" for i, g in refs
        )
        resolves = " ".join(
            f"WHEN {i} THEN ({g.reference[1].format(x='f.' + x_of(i))})" for i, g in refs
        )
        ctes.append(
            f"r AS MATERIALIZED (SELECT f.g, f.n, CASE f.g {usable} END AS usable, "
            f"CASE f.g {resolves} END AS ok FROM f "
            f"WHERE f.g IN ({', '.join(str(i) for i, _ in refs)}))"
        )
        branches.append(
            f"SELECT 'u', g, CAST(SUM(CASE WHEN usable THEN n ELSE 0 END) AS {big}), "
            f"CAST(SUM(CASE WHEN ok THEN n ELSE 0 END) AS {big}), {nulls} FROM r GROUP BY g"
        )
        branches.append(f"SELECT 'o', g, n, COUNT(*), {nulls} FROM r WHERE ok GROUP BY g, n")
    statement = "WITH " + ", ".join(ctes) + " " + " UNION ALL ".join(branches)
    out = {g.key: _Frequencies() for g in groupings}
    by_index = {i: out[g.key] for i, g in enumerate(groupings)}
    for kind, g, a, b, *x in conn.execute(sa.text(statement)):
        freq = by_index[int(g)]
        value = _py(x[int(g)] if pg else x[0])
        if kind == "s":
            freq.distinct, freq.total = int(a), int(b or 0)
        elif kind == "v":
            if freq.rows is None:
                freq.rows = []
            freq.rows.append((value, int(a)))
        elif kind == "w":
            freq.ranked.append((value, int(a), int(b)))
        elif kind == "u":
            freq.usable, freq.resolving = int(a or 0), int(b or 0)
        elif kind == "o":
            freq.fanout.append((int(a), int(b)))
    for grouping in groupings:
        freq = out[grouping.key]
        if grouping.rows == "all" and freq.rows is None:
            freq.rows = []  # no non-null value at all
    return out


@dataclass
class _Plan:
    """What steps 2 and 4 found, and the groupings of step 3 (see the module's description)."""

    exact: list[_Grouping]  # grouped over the whole table
    high_cardinality: set[str] = field(default_factory=set)  # more than the listing limit
    high_distinct: dict[str, int] = field(default_factory=dict)  # their exact counts, if known
    ranked: dict[str, _Frequencies] = field(default_factory=dict)  # their quantile ranks
    sampled: bool = False  # ranked in a sample rather than the whole table
    parent_missing: dict[str, str] = field(default_factory=dict)
    sample_note: str | None = None
    date_numbers: dict[str, str] = field(default_factory=dict)  # column -> "days"/"seconds"


def _windows_at(n: int, grid: list[float], k: int) -> dict[float, tuple[int, int]]:
    """The k-value rank window (first, last) released for each probability of the grid."""
    return {p: dc.quantile_window(dc.rank_for(p, n), n, k) for p in grid}


def _windows(n: int, policy: dc.DisclosurePolicy) -> list[tuple[int, int]]:
    """The rank windows a column of ``n`` values needs, to ask the database for beforehand."""
    return sorted(set(_windows_at(n, dc.quantile_grid(n, policy), policy.k).values()))


def _range_grid(n: int, policy: dc.DisclosurePolicy) -> list[float]:
    """The two ends of the quantile grid: where a coded range is bottom- and top-coded."""
    grid = dc.quantile_grid(n, policy)
    return [grid[0], grid[-1]] if len(grid) > 1 else []


def _range_windows(n: int, policy: dc.DisclosurePolicy) -> list[tuple[int, int]]:
    return sorted(set(_windows_at(n, _range_grid(n, policy), policy.k).values()))


def _ranks_in(windows) -> list[int]:
    return sorted({r for a, b in windows for r in range(a, b + 1)})


def _plan(
    conn: Connection,
    sql: SqlExpressions,
    schema: str | None,
    tbl: str,
    table: TableSchema,
    scan: dict[str, Any],
    policy: dc.DisclosurePolicy,
    noise: Noise | None,
    sample_rows: int,
) -> _Plan:
    engine = conn.engine
    total = int(scan["__rows"])
    names = [c.name for c in table.columns]
    quantiles_allowed = noise is None  # exact windows; under differential privacy see below
    dp_quantiles = noise is not None and policy.dp_quantiles == "dp"
    plan = _Plan(exact=[])

    def dp_grouping(key: str, expr: str, col: ColumnSchema, what: str) -> _Grouping:
        """Under differential privacy: rows per quantile candidate bucket (see :mod:`.dp`)."""
        candidates = _dp_candidates(col, what, policy)
        return _Grouping(key, dp.bucket_sql(expr, candidates, sql.pg and not sql.duck), rows="all")

    def value_grouping(col: ColumnSchema, role: str) -> _Grouping:
        q = quote(engine, col.name)
        lt = col.logical_type
        non_null = int(scan[f"n:{col.name}"])
        g = _Grouping(key=f"v:{col.name}", expr=q, rows="all")
        if role == "code":
            return g
        if lt == "string":
            g.rows = "none" if policy.never_listed(col.name) else "listable"
            g.string_rule = True
        elif lt in ("integer", "float"):
            g.rows = "listable"  # only while few enough distinct values to list
            if quantiles_allowed:
                g.windows = _windows(non_null, policy)
        elif lt in ("date", "datetime"):
            g.rows = "none"  # dates are released as bins, never listed
        return g

    # High-cardinality columns (more distinct values than may ever be listed) stay out of the
    # grouped pass, where they would cost a hash table the size of the table each. They are
    # told by distinct counts in the table, or for a big table in a small repeatable sample
    # (more than the limit there means more in the table), and ranked apart: one sort each,
    # in the whole table, or above ``sample_rows`` in a sample (their distinct counts are then
    # not released). Codes are always counted exactly: they are listed whatever their number.
    values = [
        c
        for c in table.columns
        if column_role(table, c.name) == "value" and int(scan[f"n:{c.name}"])
    ]
    if values:
        probe = (
            _sample_frame(engine, tbl, total, min(PROBE_ROWS, sample_rows))
            if total > PROBE_ROWS
            else None
        )
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
        frame = _sample_frame(engine, tbl, total, sample_rows) if plan.sampled else None
        ranked = [c for c in high if c.logical_type in ("integer", "float")]
        if high and (ranked and quantiles_allowed or (probe and not frame)):
            distinct, plan.ranked = _high_cardinality_pass(
                conn,
                frame.sql if frame else tbl,
                high if probe and not frame else [],
                ranked if quantiles_allowed else [],
                None if frame else {c.name: int(scan[f"n:{c.name}"]) for c in ranked},
                policy,
            )
            plan.high_distinct.update(distinct)
        if frame and high:
            plan.sample_note = (
                f"{', '.join(c.name for c in high)}: more than "
                f"{policy.max_distinct_for_listing} distinct values"
                + (
                    f" in a sample of about {probe.rows:,} rows (distinct counts not released)"
                    if probe
                    else ""
                )
                + f"; quantiles from a sample of about {frame.rows:,} rows ({frame.method})"
            )
    if noise is None:  # under differential privacy numbers stay numbers (see _date_numbers)
        plan.date_numbers = _date_numbers(conn, tbl, table, scan)
    for col in table.columns:
        role = column_role(table, col.name)
        non_null = int(scan[f"n:{col.name}"])
        if role in ("primary_key", "polymorphic") or non_null == 0:
            continue
        q = quote(engine, col.name)
        lt = col.logical_type
        if col.name in plan.date_numbers:
            as_date = _number_as_date(sql, q, plan.date_numbers[col.name])
            plan.exact.append(_Grouping(f"year:{col.name}", sql.year(as_date, not sql.pg), "all"))
            plan.exact.append(_Grouping(f"month:{col.name}", sql.month(as_date, not sql.pg), "all"))
            continue
        if role == "foreign_key":
            plan.exact.append(
                _reference_grouping(engine, sql, schema, table, col, plan.parent_missing)
            )
            continue
        if col.name not in plan.high_cardinality:
            plan.exact.append(value_grouping(col, role))
        if dp_quantiles and role != "code" and lt in ("integer", "float"):
            plan.exact.append(dp_grouping(f"dpq:{col.name}", q, col, "values"))
        if lt == "string" and role != "code":
            g = _Grouping(key=f"len:{col.name}", expr=sql.length(q))
            if quantiles_allowed:
                g.windows = _windows(non_null, policy)
            plan.exact.append(g)
            if dp_quantiles:
                plan.exact.append(dp_grouping(f"dplen:{col.name}", sql.length(q), col, "length"))
        if lt in ("date", "datetime"):
            text = _is_text_stored(col)
            plan.exact.append(_Grouping(f"year:{col.name}", sql.year(q, text), rows="all"))
            plan.exact.append(_Grouping(f"month:{col.name}", sql.month(q, text), rows="all"))
            if quantiles_allowed:  # the coded range: k-value means at the two ends
                g = _Grouping(f"day:{col.name}", sql.day_number(q, text), rows="all")
                g.windows = _range_windows(non_null, policy)
                plan.exact.append(g)
            if lt == "datetime":
                hour = (
                    f"CASE WHEN {q} IS NULL THEN NULL WHEN {sql.is_midnight(q, text)} THEN -1 "
                    f"ELSE {sql.hour(q, text)} END"
                )
                plan.exact.append(_Grouping(f"hour:{col.name}", hour, rows="all"))
            start = offset_source_column(names, col.name)
            if start is not None:
                qs = quote(engine, start)
                diff = sql.day_difference(q, qs, text or _is_text_stored(table.column(start)))
                g = _Grouping(
                    f"off:{col.name}",
                    f"CASE WHEN {q} IS NOT NULL AND {qs} IS NOT NULL THEN {diff} END",
                    rows="all",
                )
                if quantiles_allowed:
                    g.windows = _windows(int(scan[f"p:{col.name}"] or 0), policy)
                plan.exact.append(g)
                if dp_quantiles:
                    plan.exact.append(dp_grouping(f"dpoff:{col.name}", g.expr, col, "offset"))
    return plan


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
        low, high = _number(row[2 * i]), _number(row[2 * i + 1])
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


def _dp_candidates(col: ColumnSchema, what: str, policy: dc.DisclosurePolicy) -> list[float]:
    """The quantile candidates of a column's values, string lengths or days after its start
    column, under differential privacy: from the schema and the policy alone."""
    if what == "length":
        return dp.quantile_candidates(True, None, (0.0, float(col.max_length or 1_000_000)))
    if what == "offset":
        return dp.quantile_candidates(True, None, dp.DAY_BOUNDS)
    return dp.quantile_candidates(col.logical_type == "integer", policy.dp_range(col.name))


def _high_cardinality_pass(
    conn: Connection,
    frame: str,
    counted: list[ColumnSchema],
    ranked: list[ColumnSchema],
    non_null: dict[str, int] | None,
    policy: dc.DisclosurePolicy,
) -> tuple[dict[str, int], dict[str, _Frequencies]]:
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
    out = {f"v:{c.name}": _Frequencies(total=non_null[c.name]) for c in ranked}
    wanted = []
    for c in ranked:
        n = non_null[c.name]
        ranks = _ranks_in(_windows(n, policy))
        if ranks:
            wanted.append((c, quote(engine, c.name), n, ranks))
    aggregates = [f"COUNT(DISTINCT {quote(engine, c.name)})" for c in counted]
    pg = pg_like(engine)
    if pg:
        aggregates += [_percentiles_sql(q, n, ranks) for _, q, n, ranks in wanted]
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
            f"SELECT {i} AS i, rn, v FROM ({_row_numbers_sql(q, frame, ranks, f'{q} IS NOT NULL')})"
            for i, (_c, q, _n, ranks) in enumerate(wanted)
        )
        for i, r, v in conn.execute(sa.text(ranked_sql)):
            found[int(i)][int(r)] = v
    for i, (c, _q, _n, _ranks) in enumerate(wanted):
        out[f"v:{c.name}"].ranked = [(_py(v), 1, r) for r, v in found[i].items()]
    return distinct, out


@dataclass
class _SampleFrame:
    sql: str
    rows: int
    method: str


def _sample_frame(engine: Engine, tbl: str, total: int, sample_rows: int) -> _SampleFrame:
    """A repeatable sample of about ``sample_rows`` rows, as a FROM clause."""
    if is_postgres(engine):
        percent = round(100.0 * sample_rows / total, 4)
        return _SampleFrame(
            f"{tbl} TABLESAMPLE SYSTEM ({min(100.0, percent)}) REPEATABLE (42)",
            sample_rows,
            f"PostgreSQL TABLESAMPLE SYSTEM {percent:g}% of pages, repeatable",
        )
    step = max(2, total // sample_rows)
    return _SampleFrame(
        f"(SELECT * FROM {tbl} WHERE rowid % {step} = 0)",
        total // step,
        f"{'DuckDB' if is_duckdb(engine) else 'SQLite'} every {step}th rowid",
    )


def _reference_grouping(
    engine: Engine,
    sql: SqlExpressions,
    schema: str | None,
    table: TableSchema,
    col: ColumnSchema,
    parent_missing: dict[str, str],
) -> _Grouping:
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
    resolves = usable
    if pcol is not None:
        ptbl, pq = qualified(engine, schema, parent), quote(engine, pcol)
        if sql.pg:  # a semi-join per distinct value, by the parent's key index or a hash
            resolves += f" AND EXISTS (SELECT 1 FROM {ptbl} p__ WHERE p__.{pq} = {{x}})"
        else:  # SQLite builds one temporary index for IN (subquery)
            resolves += f" AND {{x}} IN (SELECT {pq} FROM {ptbl} WHERE {pq} IS NOT NULL)"
    return _Grouping(
        key=f"fk:{col.name}",
        expr=quote(engine, col.name),
        reference=(usable, resolves),
    )


# --- released statistics from the reduced frequencies ----------------------------------------


def _released_quantiles(
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
    windows = _windows_at(n, grid, policy.k)
    wanted = _ranks_in(windows.values())
    by_rank = {r: _number(v) for r, v in values_at(wanted).items()}
    held: dict[float, int] = {}
    for v, c in frequencies or []:
        x = _number(v)
        if x is not None:
            held[x] = held.get(x, 0) + int(c)
    points = []
    for p, (a, b) in windows.items():
        values = [by_rank.get(r) for r in range(a, b + 1)]
        if all(v is not None for v in values):
            value = dc.window_mean(values, integer, lambda x: held.get(x, 0) >= policy.k)  # type: ignore[arg-type]
            points.append(QuantilePoint(p=p, value=value))
    return _thin(points)


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
    """Released quantiles of an expression over the rows ``where`` selects (its own sort)."""
    return _released_quantiles(
        n,
        grid,
        policy,
        integer,
        lambda ranks: _values_at_ranks(conn, tbl, expr, n, ranks, where, params or {}),
    )


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
) -> dict[int, Any]:
    """The values at the given 1-based ranks of ``expr`` in ascending order, in one sorted pass.

    They stay inside this module: only their window means are released.
    """
    cond = f"{expr} IS NOT NULL" + (f" AND {where}" if where else "")
    if pg_like(conn.engine):
        values = conn.execute(
            sa.text(f"SELECT {_percentiles_sql(expr, n, ranks)} FROM {tbl} WHERE {cond}"), params
        ).scalar_one()
        return {r: _py(v) for r, v in zip(ranks, values or [], strict=False)}
    rows = conn.execute(sa.text(_row_numbers_sql(expr, tbl, ranks, cond)), params).all()
    return {int(r): _py(v) for r, v in rows}


def _percentiles_sql(expr: str, n: int, ranks: list[int]) -> str:
    """PostgreSQL: one aggregate (one sort, no window function) giving the values of ``expr``
    at the 1-based ranks among its ``n`` values. percentile_disc(p) is the value at rank
    ceil(p * n); p = (rank - 0.5) / n lands inside the rank's interval whatever the rounding."""
    probs = ", ".join(repr((r - 0.5) / n) for r in ranks)
    return f"percentile_disc(ARRAY[{probs}]::float8[]) WITHIN GROUP (ORDER BY {expr})"


def _row_numbers_sql(expr: str, frame: str, ranks: list[int], where: str) -> str:
    """SQLite: the rows (rn, v) of ``expr`` at the 1-based ranks, by ROW_NUMBER."""
    return (
        f"SELECT rn, v FROM (SELECT {expr} AS v, ROW_NUMBER() OVER (ORDER BY {expr}) AS rn "
        f"FROM {frame} WHERE {where}) WHERE rn IN ({', '.join(map(str, ranks))})"
    )


def _summarise_values(
    conn: Connection,
    tbl: str,
    col: ColumnSchema,
    role: str,
    non_null: int,
    distinct: int | None,
    values: _Frequencies | None,
    ranked: _Frequencies | None,
    sampled: bool,
    lengths: _Frequencies | None,
    policy: dc.DisclosurePolicy,
    cs: ColumnStats,
    notes: list[str],
    noise: Noise | None = None,
    dp_values: _Frequencies | None = None,
    dp_lengths: _Frequencies | None = None,
) -> None:
    lt = col.logical_type
    quantiles_allowed = noise is None
    high = distinct is None  # more distinct values in a sample than may ever be listed
    sampled = sampled and ranked is not None

    never_list = lt == "string" and (
        high
        or policy.never_listed(col.name)
        or distinct > policy.max_distinct_for_listing
        or (non_null and distinct / non_null > policy.identifier_share and distinct >= policy.k)
    )
    listable = role == "code" or (
        not never_list
        and (lt != "float" or (not high and distinct <= policy.max_distinct_for_listing))
    )
    if (
        lt in ("integer", "float")
        and role != "code"
        and (high or distinct > policy.max_distinct_for_listing)
    ):
        listable = False

    if listable:
        assert values is not None and values.rows is not None, col.name
        # a value of another type (text in a number column of a dirty extract) is never listed:
        # its rows count as other values
        pairs = [(v, n) for v, n in values.rows if _fits_type(v, lt)]
        if noise is None:
            released = dc.fold_frequencies(pairs, non_null, policy)
        else:
            domain = None if role == "code" else dp.value_domain(col.name, lt, policy)
            released = noise.release_values(
                f"{col.name}:values", pairs, domain, cs.non_null or 0, policy
            )
            if domain is not None:
                notes.append(
                    f"counted over every value of its declared domain ({domain[0]}..{domain[-1]}), "
                    "noise on each"
                )
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

    if lt in ("integer", "float") and role != "code" and noise is not None:
        cs.quantiles = _dp_quantiles(noise, dp_values, col, "values", policy, notes)
    elif lt in ("integer", "float") and role != "code":
        source = ranked if ranked is not None else values
        n = source.total if source is not None else 0
        grid = dc.quantile_grid(n, policy)
        cs.quantiles = (
            _released_quantiles(
                n, grid, policy, lt == "integer", source.values_at, values and values.rows
            )
            if source is not None
            else []
        )
        if cs.quantiles:
            notes.append(
                f"quantiles p{grid[0] * 100:g}..p{grid[-1] * 100:g} only, each the mean of "
                f"k={policy.k} neighbouring values (range top- and bottom-coded)"
                + (" in a sample" if sampled else "")
            )
        else:
            notes.append(f"fewer than {2 * policy.k} values: no quantiles released")
    if lt == "string" and noise is not None and role != "code":
        cs.length = _dp_quantiles(noise, dp_lengths, col, "length", policy, [])
    elif lt == "string":
        grid = dc.quantile_grid(non_null, policy) if quantiles_allowed else []
        cs.length = (
            _released_quantiles(non_null, grid, policy, True, lengths.values_at)
            if lengths is not None
            else []
        )
        if not cs.values:
            cs.pattern = _string_shape(
                conn, tbl, quote(conn.engine, col.name), policy.pattern_sample_size
            )


def _fits_type(value: Any, logical_type: str) -> bool:
    if logical_type == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if logical_type == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if logical_type == "boolean":
        return isinstance(value, bool) or value in (0, 1)
    return True


def _dp_quantiles(
    noise: Noise,
    buckets: _Frequencies | None,
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
    candidates = _dp_candidates(col, what, policy)
    points = noise.quantiles(f"{col.name}:{what}", buckets.rows or [], candidates, whole)
    notes.append(
        "quantiles by the exponential mechanism among candidates fixed before looking at the "
        "data" + (" (half-integers: no row holds one)" if whole else "")
    )
    return [QuantilePoint(p=p, value=v) for p, v in points]


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
    exact: dict[str, _Frequencies],
    table: TableSchema,
    col: ColumnSchema,
    scan: dict[str, Any],
    policy: dc.DisclosurePolicy,
    cs: ColumnStats,
    notes: list[str],
    findings: list[str],
    noise: Noise | None = None,
) -> None:
    years = list(exact[f"year:{col.name}"].rows or [])
    out_of_range = sum(c for y, c in years if y < 1677 or y > 2262)
    if out_of_range:
        r = dc.release_count(out_of_range, policy)
        how_many = (
            "some" if noise is not None else ("about " + str(r) if r else f"fewer than {policy.k}")
        )
        findings.append(f"{col.name}: {how_many} dates outside 1677..2262")
    if noise is None:
        binned = dc.merge_bins(years, policy)
    else:
        binned = noise.release_years(f"{col.name}:years", years, policy)
    cs.years = [Bin(start=a, end=b, count=c) for a, b, c in binned.bins]
    notes.extend(binned.notes)
    if cs.years:
        notes.append("dates released as year bins and month-of-year counts, never as dates")
    months = dict(exact[f"month:{col.name}"].rows or [])
    month_raw = [months.get(m, 0) for m in range(1, 13)]
    if noise is not None:
        month_raw = noise.counts(f"{col.name}:months", month_raw)
    month_counts, month_notes = dc.release_shares(month_raw, policy)
    cs.months = month_counts if any(month_counts) else None
    notes.extend(f"months: {n}" for n in month_notes)
    days = exact.get(f"day:{col.name}")
    if days is not None and days.total:
        cs.range = _date_range(days, policy, notes)
    if col.logical_type == "datetime":
        by_hour = dict(exact[f"hour:{col.name}"].rows or [])
        # one histogram over the rows: midnight (a date-only time) or the hour of the day
        cells = [int(by_hour.get(-1, 0))] + [by_hour.get(h, 0) for h in range(24)]
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
    if start is not None and f"off:{col.name}" in exact:
        offsets = exact[f"off:{col.name}"]
        n_pairs = int(scan[f"p:{col.name}"] or 0)
        negative = sum(c for d, c in offsets.rows or [] if d is not None and d < 0)
        if noise is None:
            grid = dc.quantile_grid(n_pairs, policy)
            quantiles = _released_quantiles(
                n_pairs, grid, policy, True, offsets.values_at, offsets.rows
            )
        else:
            quantiles = _dp_quantiles(
                noise, exact.get(f"dpoff:{col.name}"), col, "offset", policy, []
            )
            if not quantiles:
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
                if noise is None
                else f"days after {start} released as quantiles by the exponential mechanism "
                "among half-integers (no row holds one)"
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
    refs: _Frequencies,
    missing_parent: str | None,
    table: TableSchema,
    col: ColumnSchema,
    total: int,
    policy: dc.DisclosurePolicy,
    cs: ColumnStats,
    notes: list[str],
    findings: list[str],
    rel,
    noise: Noise | None = None,
) -> None:
    """A reference to a patient-level table: ids are never listed; fan-out and dangling counts."""
    cs.distinct = None
    cs.listed = False
    fk = table.foreign_key(col.name)
    assert fk is not None
    notes.append("ids never listed: generated from the parent's synthetic key range")
    if missing_parent is not None:
        findings.append(f"{col.name}: parent table {fk.parent_table} is not in the extract")
    usable, resolving = refs.usable, refs.resolving
    dangling = usable - resolving

    # children per parent, over the references that resolve
    fanout = sorted(refs.fanout)
    if noise is None:
        binned = dc.merge_bins(fanout, policy, dc.POWERS_OF_TWO)
    else:
        binned = noise.release_fanout(f"{col.name}:fanout", fanout, policy)
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
        handling = "the rows holding one are not generated (the column is required)"
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
    if numeric:
        _keep_off_rare_values(conn, tbl, q, groups + ([other] if other else []), k)
    notes.append(
        f"per {by}: {len(groups)} groups with at least {need} values released"
        + ("; smaller groups pooled" if small else "")
        + ("" if other is not None or not small else f" (pool below {need}: withheld)")
    )
    return ConditionalStats(by=by, groups=groups, other=other)


def _offset_before_end(
    stats: dict[str, ColumnStats], start: str, end: str, notes: list[str]
) -> None:
    """Where an end is anchored at the end of the data (:func:`.statistics.ends_at_a_cut`), the
    start's days before its end: the end's released offsets turned round (nothing new leaves)."""
    e, s = stats.get(end), stats.get(start)
    if e is None or s is None or e.offset is None or not ends_at_a_cut(s, e):
        return
    s.offset = DateOffset(
        from_column=end,
        quantiles=[
            QuantilePoint(p=round(1 - q.p, 6), value=-q.value)  # type: ignore[operator]
            for q in reversed(e.offset.quantiles)
        ],
        negative_share=e.offset.negative_share,
    )
    notes.append(
        f"days before {end}: its released offsets turned round ({end} ends at the end of the "
        "data: the start is drawn before it)"
    )


def _date_range(
    days: _Frequencies, policy: dc.DisclosurePolicy, notes: list[str]
) -> DateRange | None:
    """A date column's coded range: the k-date means at the ends of the quantile grid (p1 and
    p99), each kept as it is only where at least k rows hold that day, else moved inwards to a
    month boundary (the first day of the next month, the last day of the month before), so no
    end is a day fewer than k rows hold and the range stays inside the data."""
    ends = _released_quantiles(
        days.total, _range_grid(days.total, policy), policy, True, days.values_at, days.rows
    )
    if len(ends) != 2:
        return None
    held = {int(v): int(c) for v, c in days.rows or [] if v is not None}
    epoch = dt.date(1970, 1, 1)
    low, high = (float(p.value) for p in ends)
    if not (low == int(low) and held.get(int(low), 0) >= policy.k):
        first = epoch + dt.timedelta(days=math.floor(low))
        low = (dt.date(first.year + first.month // 12, first.month % 12 + 1, 1) - epoch).days
    if not (high == int(high) and held.get(int(high), 0) >= policy.k):
        last = epoch + dt.timedelta(days=math.ceil(high))
        high = (dt.date(last.year, last.month, 1) - epoch).days - 1
    if low > high:
        notes.append("range: the coded ends fall in one month; not released")
        return None
    notes.append(
        f"range coded to p{ends[0].p * 100:g}..p{ends[1].p * 100:g}: each end the mean of "
        f"k={policy.k} neighbouring dates, moved inwards to a month boundary unless k rows hold "
        "that day; no generated date lies outside it"
    )
    lo_day, hi_day = (epoch + dt.timedelta(days=int(x)) for x in (low, high))
    return DateRange(low=lo_day.isoformat(), high=hi_day.isoformat())


def _twin_groups(
    combinations: _Frequencies, by: list[str], policy: dc.DisclosurePolicy, notes: list[str]
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
