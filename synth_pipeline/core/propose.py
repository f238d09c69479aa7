"""Proposing a table's config (its kind, rows, and a generator for every column, chosen in
:mod:`column_proposal`), and refreshing a reviewed config when the source changes.

The proposal is a draft: it says which generator it picked and why, and a reviewer can change
any choice. A refresh keeps the reviewer's choices (generator, parameters, kind, rows when they
were changed by hand) and replaces only what came from the source.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import omop, vocabulary
from .column_proposal import propose_column
from .config import ColumnConfig, ReviewBlock, SourceSummary, TableConfig
from .generators import CATALOGUE
from .schema import ColumnSchema, TableSchema
from .statistics import ColumnStats, TableStats, fingerprint_of


def source_fingerprint(schema: TableSchema, stats: TableStats) -> str:
    """What an approval is tied to: the table's shape and its released statistics.

    The exact row count is left out (a hash of a small number can be reversed).
    """
    shape = {
        "columns": [[c.name, c.logical_type, c.sql_type, c.nullable] for c in schema.columns],
        "primary_key": schema.primary_key,
        "foreign_keys": [[f.column, f.parent_table, f.parent_column] for f in schema.foreign_keys],
    }
    return fingerprint_of({"shape": shape, "stats": stats.model_dump(mode="json", by_alias=True)})


def rows_to_generate(stats: TableStats, schema: TableSchema) -> tuple[int, str | None]:
    """The rows a draft generates: the released row count, less the rows a required reference
    of which points nowhere (every synthetic reference resolves, so such rows have no place:
    squeezed onto the existing parents they would double each one's children)."""
    k = stats.policy.k
    if stats.row_count is None:
        return k, f"source row count is below k={k}: generating k rows"
    column, dangling = _most_dangling(schema, stats.columns)
    if not dangling:
        return stats.row_count, None
    rows = max(0, stats.row_count - dangling)
    return rows, (
        f"rows: {rows}, the released {stats.row_count} less the about {dangling} rows whose "
        f"{column} names no row of its table (a required reference; set rows to change it)"
    )


def _most_dangling(schema: TableSchema, columns: dict[str, ColumnStats]) -> tuple[str, int]:
    """The required foreign key with the most released dangling references, and their count."""
    found = [
        (columns[fk.column].dangling or 0, fk.column)
        for fk in schema.foreign_keys
        if fk.column in columns and not schema.column(fk.column).nullable
    ]
    count, column = max(found, default=(0, ""))
    return column, count


def drafted_rows(cfg: TableConfig) -> int:
    """The rows a draft of this config proposed (the released count less dangling rows), to
    tell a hand-set row count from a proposed one."""
    rows = cfg.source.row_count or 0
    dangling = [
        c.stats.dangling or 0
        for c in cfg.columns.values()
        if c.generator == "foreign_key" and not c.nullable and c.stats
    ]
    return max(0, rows - max(dangling, default=0))


@dataclass
class _TableDraft:
    """What a draft decides for a whole table before its columns: the kind, the rows to
    generate, the vocabulary choices, and the findings to show the reviewer."""

    kind: str
    rows: int
    findings: list[str]
    vocabulary_rows: str | None = None
    site_local: str | None = None


def propose_table_config(schema: TableSchema, stats: TableStats) -> TableConfig:
    draft = _draft_table(schema, stats)
    names = [c.name for c in schema.columns]
    columns = {
        col.name: _column_config(schema, col, names, stats, draft.kind) for col in schema.columns
    }
    pk = schema.primary_key[0] if len(schema.primary_key) == 1 else None
    return TableConfig(
        table=schema.name,
        kind=draft.kind,  # type: ignore[arg-type]
        vocabulary_rows=draft.vocabulary_rows,  # type: ignore[arg-type]
        site_local=draft.site_local,  # type: ignore[arg-type]
        rows=draft.rows,
        primary_key=pk,
        source=SourceSummary(
            row_count=stats.row_count,
            fingerprint=source_fingerprint(schema, stats),
            findings=draft.findings,
            dp=stats.dp,
        ),
        columns=columns,
        review=ReviewBlock(),
    )


def _draft_table(schema: TableSchema, stats: TableStats) -> _TableDraft:
    """The table's kind and rows: a vocabulary table by the vocabulary rules, a metadata table
    skipped, any other synthetic with the rows :func:`_synthetic_rows` proposes."""
    findings = list(stats.findings)
    if schema.kind == "vocabulary":
        kind, vocabulary_rows, rule = vocabulary.proposal(schema.name)
        site_local = "exclude" if kind == "vocabulary" else None
        rows = (stats.row_count or 0) if kind == "vocabulary" else 0
        findings.append(rule)
        return _TableDraft(kind, rows, findings, vocabulary_rows, site_local)
    if schema.kind == "metadata":
        findings.append("skipped by default: describes the real extract; write your own if needed")
        return _TableDraft("skip", 0, findings)
    rows, findings = _synthetic_rows(schema, stats, findings)
    return _TableDraft("synthetic", rows, findings)


def _synthetic_rows(
    schema: TableSchema, stats: TableStats, findings: list[str]
) -> tuple[int, list[str]]:
    """The rows of a synthetic table and its findings: none for an empty source table, nor for
    one whose required polymorphic id no released value can name a table for."""
    rows, note = rows_to_generate(stats, schema)
    if note:
        findings.append(note)
    if schema.row_count == 0:
        rows = 0
    for ref in omop.polymorphic(schema.name, [c.name for c in schema.columns]):
        cs = stats.columns.get(ref.column)
        if rows and not schema.column(ref.column).nullable and not (cs and cs.targets):
            rows = 0  # every row needs an id of a table no released value names
            findings = [f for f in findings if f != note]
            findings.append(
                f"no rows generated: {ref.column} is required, and no value of {ref.by} seen "
                f"at least k={stats.policy.k} times names a table (name one under "
                f"params.targets of {ref.column} and set rows to generate it)"
            )
    return rows, findings


def _column_config(
    schema: TableSchema, col: ColumnSchema, names: list[str], stats: TableStats, kind: str
) -> ColumnConfig:
    """One column's draft: a proposed generator in a synthetic table, none in any other; its
    statistics kept for a synthetic table (and a skipped one's range)."""
    cs = stats.columns.get(col.name)
    if kind == "synthetic":
        generator, params, why = propose_column(schema, col.name, cs, names, stats)
    else:
        generator, params, why = None, {}, f"{kind} table: not generated"
    return ColumnConfig(
        type=col.logical_type,
        sql_type=col.sql_type,
        nullable=col.nullable,
        max_length=col.max_length,
        generator=generator,
        params=params,
        why=why,
        stats=cs if kind == "synthetic" or (kind == "skip" and cs and cs.range) else None,
        disclosure=stats.disclosure.get(col.name, []),
    )


def refresh_table_config(existing: TableConfig, proposed: TableConfig) -> TableConfig:
    """Carry a reviewer's choices over to a fresh proposal; anything from the source is replaced.

    Kept: the table's kind, hand-set rows, and for every column still present its generator and
    parameters (when they still fit the new statistics). The result is a draft.
    """
    out = proposed.model_copy(deep=True)
    out.kind = existing.kind
    if existing.vocabulary_rows is not None or existing.kind != proposed.kind:
        out.vocabulary_rows = existing.vocabulary_rows  # the reviewer's choice, or its absence
    if existing.site_local is not None or existing.kind != proposed.kind:
        out.site_local = existing.site_local
    drafted = {existing.source.row_count or 0, drafted_rows(existing)}
    if existing.rows not in drafted and existing.kind == "synthetic":
        out.rows = existing.rows  # set by hand
    for name, col in out.columns.items():
        old = existing.columns.get(name)
        if old is None or old.type != col.type:
            continue
        gen = CATALOGUE.get(old.generator or "")
        if gen is None or col.type not in gen.types:
            continue
        try:
            params = gen.Params.model_validate(old.params)
        except Exception:  # noqa: BLE001 - invalid old params: keep the new proposal
            continue
        if gen.check(col.stats, params, col.type) is None and all(
            d in out.columns for d in gen.depends_on(params)
        ):
            col.generator, col.params, col.why = old.generator, old.params, old.why
    previous = existing.review
    note = "statistics refreshed because the source schema or statistics changed"
    note += "".join(f"; {change}" for change in column_changes(existing, out))
    if previous.status == "approved":
        note += f"; previously approved by {previous.reviewer} on {previous.approved_at}"
    out.review = ReviewBlock(comment=note)
    return out


def column_changes(existing: TableConfig, proposed: TableConfig) -> list[str]:
    """What changed in a table's columns between a reviewed file and the source, in words."""
    return describe_column_changes(
        {n: c.type for n, c in existing.columns.items()},
        {n: c.type for n, c in proposed.columns.items()},
    )


def schema_drift(table: TableSchema, cfg: TableConfig) -> list[str]:
    """How the source table's columns differ from those a config was written for, in words."""
    return describe_column_changes(
        {n: c.type for n, c in cfg.columns.items()},
        {c.name: c.logical_type for c in table.columns},
    )


def describe_column_changes(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """Columns removed, added and retyped between two column -> logical type maps, in words."""
    removed = [c for c in old if c not in new]
    added = [c for c in new if c not in old]
    retyped = [f"{c} ({old[c]} -> {new[c]})" for c in new if c in old and old[c] != new[c]]
    out = []
    if removed:
        out.append(f"columns no longer in the source: {', '.join(removed)}")
    if added:
        out.append(f"new source columns not yet reviewed: {', '.join(added)}")
    if retyped:
        out.append(f"columns whose type changed: {', '.join(retyped)}")
    return out
