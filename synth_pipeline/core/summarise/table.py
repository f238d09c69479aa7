"""One source table's released statistics: the passes of :mod:`.summarise` run in order, each
column handed to the summary of its kind, then what spans columns."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from .. import disclosure as dc
from .. import omop
from ..database import qualified
from ..dp import Noise
from ..schema import ColumnSchema, TableSchema, column_role, identifier_findings
from ..sqlexpr import SqlExpressions
from ..statistics import ColumnStats, TableStats
from .context import ColumnRead, TableRead
from .dates import days_from_birth, offset_before_end, release_dates, summarise_dates
from .groups import summarise_by_group, twin_groups
from .local import LocalRead, countable_here, read_columns
from .passes import Grouping, blanks_as_null, first_scan, grouped_pass
from .plan import SAMPLE_ROWS, plan_table
from .references import polymorphic_targets, summarise_reference
from .release import about
from .values import summarise_values


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
    names = {x.name for x in table.columns}
    conditional = {
        c: by for c, by in (conditional or {}).items() if c in names and by in names and c != by
    }
    if table.kind in ("vocabulary", "metadata"):
        return _not_summarised(engine, schema, table, policy, noise)
    if noise is not None:
        row_count = dc.release_count(noise.counts("rows", [table.row_count])[0], policy)
    else:
        row_count = dc.release_count(table.row_count, policy)
    findings: list[str] = identifier_findings(table)
    if table.row_count == 0:
        findings.append("empty table: it stays empty")
    stats: dict[str, ColumnStats] = {}
    notes: dict[str, list[str]] = {}
    with engine.connect() as conn:
        t = _read(conn, schema, table, policy, noise, sample_rows, findings)
        for col in table.columns:
            stats[col.name], notes[col.name] = _summarise_column(t, col, conditional)
        _across_columns(t, stats, notes)
    return TableStats(
        table=table.name,
        kind=table.kind,
        row_count=row_count if row_count is not None else None,
        columns=stats,
        disclosure={c: n for c, n in notes.items() if n},
        findings=findings,
        policy=policy,
        dp=noise.budget if noise is not None else None,
    )


def _not_summarised(
    engine: Engine,
    schema: str | None,
    table: TableSchema,
    policy: dc.DisclosurePolicy,
    noise: Noise | None,
) -> TableStats:
    """Reference data and metadata about the extract: their row count, and cdm_source's
    release dates."""
    if table.kind == "vocabulary":
        # Reference data: nothing about patients to summarise. An extract may carry only the
        # concepts its records use, so even the row count passes the count rule.
        return TableStats(
            table=table.name,
            kind=table.kind,
            row_count=dc.release_count(table.row_count, policy),
            columns={},
            findings=["vocabulary table: reference data, not summarised"],
            policy=policy,
        )
    return TableStats(
        table=table.name,
        kind=table.kind,
        row_count=dc.release_count(table.row_count, policy),
        columns=release_dates(engine, schema, table),
        findings=["metadata about the extract: not generated from statistics"],
        policy=policy,
    )


def _twins(table: TableSchema) -> dict[str, list[str]]:
    """Twin columns (*_source_concept_id, *_source_value beside *_concept_id), summarised per
    combination of the columns they agree with, so they can be generated consistently."""
    names = [c.name for c in table.columns]
    twins = {c: omop.twin_of(table.name, names, c) for c in names}
    return {c: by for c, by in twins.items() if by}


def _read(
    conn: Connection,
    schema: str | None,
    table: TableSchema,
    policy: dc.DisclosurePolicy,
    noise: Noise | None,
    sample_rows: int,
    findings: list[str],
) -> TableRead:
    """Steps 1 to 4: the first scan (again over blanks read as NULL where a CSV left ''), the
    plan, and the grouped pass, with every twin's combinations when there is no noise (on
    SQLite the plain column expressions counted in Python from one read, see .local)."""
    engine = conn.engine
    tbl = qualified(engine, schema, table.source_name)
    sql = SqlExpressions(engine)
    if sql.pg and not sql.duck:
        # the grouped pass hashes every grouped expression at once; let it do so in memory
        conn.execute(sa.text("SET LOCAL work_mem = '1GB'"))  # a ceiling, not an allocation
    scan = first_scan(conn, sql, tbl, table)
    blanks = {c.name: int(scan.get(f"e:{c.name}") or 0) for c in table.columns}
    if any(blanks.values()):
        # an extract loaded from CSV keeps '' for NULL in numbers and dates: read them so
        tbl = blanks_as_null(engine, tbl, table)
        scan = first_scan(conn, sql, tbl, table)
        findings += [
            f"{name}: {about(n, policy, noise)} empty strings where a "
            f"{table.column(name).logical_type} belongs; treated as NULL"
            for name, n in blanks.items()
            if n
        ]
    read = (
        _read_once(conn, tbl, table, scan, noise) if countable_here(conn, schema, table) else None
    )
    distinct = read.distinct() if read else None
    plan = plan_table(conn, sql, schema, tbl, table, scan, policy, noise, sample_rows, distinct)
    if noise is None:  # every combination a twin was seen with, in the same grouped pass
        plan.exact += [
            Grouping(f"twin:{c}", sql.json_row([*by, c]), "all", derived=("combo", *by, c))
            for c, by in _twins(table).items()
            if int(scan[f"n:{by[0]}"])
        ]
    exact = read.frequencies(plan.exact, policy) if read else {}
    exact.update(grouped_pass(conn, tbl, [g for g in plan.exact if g.key not in exact], policy))
    if plan.sample_note:
        findings.append(plan.sample_note)
    return TableRead(conn, sql, schema, tbl, table, policy, noise, scan, plan, exact, findings)


def _read_once(
    conn: Connection, tbl: str, table: TableSchema, scan: dict, noise: Noise | None
) -> LocalRead | None:
    """SQLite: every column holding a value but the primary key read once (see .local), with
    the (end, start) of every date and the combinations of every twin."""
    names = [c.name for c in table.columns]
    columns = [c for c in names if column_role(table, c) != "primary_key" and int(scan[f"n:{c}"])]
    tuples = [(c, s) for c in columns if (s := omop.start_of(names, c)) in names]
    if noise is None:
        tuples += [(*by, c) for c, by in _twins(table).items() if by[0] in columns]
    columns += [c for t in tuples for c in t if c not in columns]
    return read_columns(conn, tbl, columns, tuples) if columns else None


def _summarise_column(
    t: TableRead, col: ColumnSchema, conditional: dict[str, str]
) -> tuple[ColumnStats, list[str]]:
    """One column's released statistics and disclosure notes: its counts, then the statistics
    of its kind (reference, polymorphic id, dates, values)."""
    c = _column_read(t, col)
    _release_counts(t, c)
    if c.non_null == 0:
        if t.total:
            t.findings.append(f"{col.name}: every value is NULL")
    elif c.role == "primary_key":
        dup = c.non_null - (c.distinct or 0)
        if dup:
            t.findings.append(
                f"primary key {col.name}: {t.about(dup)} rows repeat a key value (duplicates); "
                "synthetic keys are dense 1..n"
            )
        c.cs.distinct = None
    elif c.role == "foreign_key":
        summarise_reference(t, c)
    elif c.role == "polymorphic":
        c.cs.distinct, c.cs.listed = None, False
        c.notes.append(
            "ids never listed: generated from the synthetic keys of the table its "
            "naming column points to"
        )
    elif col.logical_type in ("date", "datetime") or col.name in t.plan.date_numbers:
        if col.name in t.plan.date_numbers:
            t.findings.append(
                f"{col.name}: {col.logical_type} values that look like dates "
                f"({t.plan.date_numbers[col.name]} since 1970, between 1900 and 2100): "
                "summarised as dates, in year bins and months, never as numbers"
            )
            c.cs.distinct = None
        summarise_dates(t, c)
    else:
        summarise_values(t, c)
        _per_group(t, c, conditional)
    return c.cs, c.notes


def _column_read(t: TableRead, col: ColumnSchema) -> ColumnRead:
    """What the passes counted of a column, its distinct count where known exactly."""
    role = column_role(t.table, col.name)
    non_null = int(t.scan[f"n:{col.name}"])
    values = t.exact.get(f"v:{col.name}") or t.exact.get(f"fk:{col.name}")
    # high-cardinality in a sampled table: the distinct count is not known exactly
    high = col.name in t.plan.high_cardinality and col.name not in t.plan.high_distinct
    if non_null == 0:
        distinct: int | None = 0
    elif role == "primary_key":
        distinct = int(t.scan.get(f"d:{col.name}", non_null))
    elif col.name in t.plan.high_distinct:
        distinct = t.plan.high_distinct[col.name]
    elif high or values is None:
        distinct = None
    else:
        distinct = values.distinct
    return ColumnRead(col, role, non_null, distinct, values, ColumnStats(), [])


def _release_counts(t: TableRead, c: ColumnRead) -> None:
    """A column's released non-null count, null fraction and distinct count, and the findings
    on its zeros (references) and over-long values."""
    col, cs, policy, noise = c.col, c.cs, t.policy, t.noise
    zeros = int(t.scan.get(f"z:{col.name}") or 0)
    # 0 in an optional reference means NULL; in a required one it is a broken reference
    zero_is_null = c.role == "foreign_key" and col.nullable
    effective_non_null = c.non_null - zeros if zero_is_null else c.non_null
    released_nn, released_null, released_total = _null_split(t, col, effective_non_null)
    cs.non_null = released_nn
    if released_null is None:
        c.notes.append(f"null count below k={policy.k}: released as no nulls")
        released_null = 0
    if released_nn is None and effective_non_null and released_total:
        # the few values left must not show as a null fraction just under 1
        c.notes.append(f"non-null count below k={policy.k}: released as all NULL")
        cs.null_fraction = 1.0
    elif released_total:
        cs.null_fraction = round(min(1.0, released_null / released_total), 4)
    elif effective_non_null == 0:
        cs.null_fraction = 1.0
    _release_distinct(t, c)
    if zeros and c.role == "foreign_key":
        cs.zero_as_null = dc.release_count(zeros, policy) if noise is None else None
        handling = (
            "treated as NULL" if zero_is_null else "a required reference: drawn from the parent"
        )
        t.findings.append(f"{col.name}: {t.about(zeros)} rows hold 0 for NULL; {handling}")
    longer = int(t.scan.get(f"l:{col.name}") or 0)
    if longer:
        t.findings.append(
            f"{col.name}: {t.about(longer)} values longer than the declared width {col.max_length}"
        )


def _null_split(
    t: TableRead, col: ColumnSchema, non_null: int
) -> tuple[int | None, int | None, int | None]:
    """Released (non-null, null, total) counts of a column, noised under differential privacy."""
    policy, total = t.policy, t.total
    if t.noise is None:
        return (
            dc.release_count(non_null, policy),
            dc.release_count(total - non_null, policy),
            dc.release_count(total, policy),
        )
    nulls, values_count = (
        t.noise.counts(f"{col.name}:nulls", [total - non_null, non_null])
        if col.nullable
        else (0, t.noise.counts("rows", [t.table.row_count])[0])
    )
    released_nn = dc.release_count(values_count, policy)
    released_null = dc.release_count(nulls, policy)
    return released_nn, released_null, (released_nn or 0) + (released_null or 0)


def _release_distinct(t: TableRead, c: ColumnRead) -> None:
    high = c.col.name in t.plan.high_cardinality and c.col.name not in t.plan.high_distinct
    if high:
        c.cs.distinct = None
        c.notes.append(
            f"more than {t.policy.max_distinct_for_listing} distinct values in a sample: "
            "distinct count not released"
        )
        return
    c.cs.distinct = (
        dc.release_count(c.distinct, t.policy)
        if t.noise is None and c.distinct is not None
        else None
    )
    if c.cs.distinct is None and c.distinct and t.noise is None:
        c.notes.append(f"distinct count below k={t.policy.k}: withheld")


def _per_group(t: TableRead, c: ColumnRead, conditional: dict[str, str]) -> None:
    """A value column's statistics per group: a twin's per combination of the columns it agrees
    with, else a number's per value of its ``conditional`` column."""
    col, twins = c.col, _twins(t.table)
    if col.name in twins and t.noise is not None:
        c.notes.append(
            f"per-{'/'.join(twins[col.name])} values withheld under differential privacy"
        )
    elif col.name in twins and f"twin:{col.name}" in t.exact:
        c.cs.conditional = twin_groups(
            t.exact[f"twin:{col.name}"], twins[col.name], t.policy, c.notes
        )
    elif col.name in conditional and col.logical_type in ("integer", "float"):
        if t.noise is not None:
            c.notes.append(
                f"per-{conditional[col.name]} statistics withheld under differential privacy"
            )
        else:
            c.cs.conditional = summarise_by_group(t, c, conditional[col.name])


def _across_columns(
    t: TableRead, stats: dict[str, ColumnStats], notes: dict[str, list[str]]
) -> None:
    """What spans columns: a start's days before its end, the tables polymorphic ids point to,
    and an observation period's start as days from its person's birth."""
    table, names = t.table, [c.name for c in t.table.columns]
    for start, end in omop.date_pairs(table.name, names):
        offset_before_end(stats, start, end, notes.setdefault(start, []))
    for ref in omop.polymorphic(table.name, names):
        if ref.column in stats and ref.by in stats:
            polymorphic_targets(t.conn, t.schema, ref, stats[ref.by], stats[ref.column], t.findings)
    shape = omop.EVENT_SHAPES.get(table.name)
    if not (shape and shape.kind == "lifetime" and shape.start in stats):
        return
    if t.noise is not None:
        notes.setdefault(shape.start, []).append(
            "days from the person's birth withheld under differential privacy"
        )
        return
    days_from_birth(t.conn, t.schema, t.tbl, table, shape.start, stats[shape.start], t.policy)
    if stats[shape.start].days_from_birth:
        notes.setdefault(shape.start, []).append(
            f"days from the person's birth released as quantiles, each the mean of "
            f"k={t.policy.k} neighbouring values (top- and bottom-coded)"
        )
