"""Proposing a generator for every column, and refreshing a reviewed config when the source changes.

The proposal is a draft: it says which generator it picked and why, and a reviewer can change
any choice. A refresh keeps the reviewer's choices (generator, parameters, kind, rows when they
were changed by hand) and replaces only what came from the source.
"""

from __future__ import annotations

from . import omop, vocabulary
from .config import ColumnConfig, ReviewBlock, SourceSummary, TableConfig
from .generators import CATALOGUE
from .schema import TableSchema, column_role
from .statistics import ColumnStats, TableStats, ends_at_a_cut, fingerprint_of


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


def propose_table_config(schema: TableSchema, stats: TableStats) -> TableConfig:
    findings = list(stats.findings)
    vocabulary_rows = site_local = None
    if schema.kind == "vocabulary":
        kind, vocabulary_rows, rule = vocabulary.proposal(schema.name)
        site_local = "exclude" if kind == "vocabulary" else None
        rows = (stats.row_count or 0) if kind == "vocabulary" else 0
        findings.append(rule)
    elif schema.kind == "metadata":
        kind, rows = "skip", 0
        findings.append("skipped by default: describes the real extract; write your own if needed")
    else:
        kind = "synthetic"
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
    columns: dict[str, ColumnConfig] = {}
    names = [c.name for c in schema.columns]
    for col in schema.columns:
        cs = stats.columns.get(col.name)
        if kind == "synthetic":
            generator, params, why = propose_column(schema, col.name, cs, names, stats)
        else:
            generator, params, why = None, {}, f"{kind} table: not generated"
        columns[col.name] = ColumnConfig(
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
    pk = schema.primary_key[0] if len(schema.primary_key) == 1 else None
    return TableConfig(
        table=schema.name,
        kind=kind,  # type: ignore[arg-type]
        vocabulary_rows=vocabulary_rows,  # type: ignore[arg-type]
        site_local=site_local,  # type: ignore[arg-type]
        rows=rows,
        primary_key=pk,
        source=SourceSummary(
            row_count=stats.row_count,
            fingerprint=source_fingerprint(schema, stats),
            findings=findings,
            dp=stats.dp,
        ),
        columns=columns,
        review=ReviewBlock(),
    )


def propose_column(
    schema: TableSchema, name: str, cs: ColumnStats | None, names: list[str], stats: TableStats
) -> tuple[str, dict, str]:
    """(generator, params, why) for one column of a synthetic table."""
    col = schema.column(name)
    lt = col.logical_type
    role = column_role(schema, name)
    if role == "foreign_key" and lt != "integer":
        role = "value"  # synthetic keys are integers; a text reference is generated as a value
    k = stats.policy.k
    if role == "primary_key":
        return "primary_key", {}, "primary key: dense 1..rows, the source's ids are not used"
    if cs is None or (cs.non_null == 0 and cs.null_fraction >= 1.0):
        if not col.nullable and role == "foreign_key":
            fk = schema.foreign_key(name)
            return (
                "foreign_key",
                {"table": fk.parent_table, "distribution": "uniform"},
                "required reference with no usable source values: uniform over the parent",
            )  # type: ignore[union-attr]
        return "always_null", {}, "every source value is NULL (or 0 meaning NULL)"
    if role == "polymorphic":
        ref = next(p for p in omop.polymorphic(schema.name, names) if p.column == name)
        person = _row_person(schema, name, names)
        params = {"by": ref.by} | ({"person": person} if person else {})
        known = ", ".join(sorted({t.table for t in cs.targets or []})) or "none known yet"
        return (
            "polymorphic_reference",
            params,
            f"an id of a row of the table {ref.by} names ({known})"
            + (", of the row's person" if person else ""),
        )
    if role == "foreign_key":
        fk = schema.foreign_key(name)
        assert fk is not None
        if fk.parent_table == schema.name and "person_id" in names:
            return _preceding_row(schema, name, names)
        dist = "fanout" if cs.fanout else "uniform"
        params = {"table": fk.parent_table, "distribution": dist} | _same_person(
            schema, name, fk.parent_table, names
        )
        return (
            "foreign_key",
            params,
            f"reference to {fk.parent_table}: drawn from its synthetic keys 1..n"
            + (", children per parent as released" if cs.fanout else ", uniformly")
            + ("; a row of the same person" if "person" in params else ""),
        )
    if lt in ("date", "datetime"):
        twin = name[: -len("time")] if lt == "datetime" and name.endswith("_datetime") else None
        if twin and twin in names and schema.column(twin).logical_type == "date":
            return (
                "datetime_from_date",
                {"date_column": twin},
                f"same day as {twin}, time of day as released",
            )
        if cs.offset is not None and omop.start_of(names, cs.offset.from_column) == name:
            end = cs.offset.from_column  # a start drawn before an end anchored at the data's end
            return (
                "date_offset",
                {"from_column": end, "before": True},
                f"released days before {end}, which ends at the end of the data",
            )
        if cs.offset is not None and not ends_at_a_cut(
            stats.columns.get(cs.offset.from_column), cs
        ):
            start = cs.offset.from_column
            return (
                "date_offset",
                {"from_column": start},
                f"{start} plus released days, never before it",
            )
        bins = "date_bins" if lt == "date" else "datetime_bins"
        if cs.years:
            detail = "day uniform" if lt == "date" else "time of day as released"
            return bins, {}, f"year bins and month-of-year counts, {detail}"
        return _no_distribution(col.nullable, bins, k)
    if name in ("year_of_birth", "month_of_birth", "day_of_birth") and "birth_datetime" in names:
        bd = stats.columns.get("birth_datetime")
        if bd is not None and bd.years and bd.null_fraction == 0:
            part = name.split("_")[0]
            return (
                "date_part",
                {"date_column": "birth_datetime", "part": part},
                f"the {part} of birth_datetime, so the two agree",
            )
    # a twin of a concept column agrees with it: values seen with the row's concept, or NULL
    # (never a random string beside a real concept)
    twins = omop.twin_of(schema.name, names, name)
    if twins:
        by = twins if len(twins) > 1 else twins[0]
        if cs.conditional is not None and any(g.values for g in cs.conditional.groups):
            return (
                "conditional_choice",
                {"by": by, "other": "null"},
                f"agrees with {' and '.join(twins)}: the values each of their combinations was "
                f"seen with at least k={k} times; NULL for the rest",
            )
        if col.nullable:
            return (
                "always_null",
                {},
                f"twin of {' and '.join(twins)}: no combination released, so NULL rather than "
                "a value that could disagree with it",
            )
    if lt in ("integer", "float"):
        generator, params, why = _code(cs, k) if role == "code" else _independent_numeric(cs)
        if generator is None:
            return _no_distribution(col.nullable, "numeric", k)
        if cs.conditional is not None:
            alt = "conditional_choice" if role == "code" else "conditional_quantiles"
            why += (
                f"; statistics per {cs.conditional.by} are released: choose {alt} with by: "
                f"{cs.conditional.by} to use them (opt-in: columns stay independent otherwise)"
            )
        return generator, params, why
    if lt == "boolean":
        if cs.values:
            return "weighted_choice", {}, "true/false in released proportions"
        return _no_distribution(col.nullable, "boolean", k)
    # strings
    if cs.listed and cs.values:
        params = {"other": "drop"}
        return "weighted_choice", params, f"{len(cs.values)} short values seen at least k={k} times"
    return (
        "string_pattern",
        {},
        f"free text or identifier: random {cs.pattern or 'code'}-shaped strings of released lengths",
    )


def _preceding_row(schema: TableSchema, name: str, names: list[str]) -> tuple[str, dict, str]:
    """A self-reference (preceding visit, parent visit detail): the same person's earlier row."""
    shape = omop.EVENT_SHAPES.get(schema.name)
    order = shape.start if shape and shape.start in names else None
    order = order or next(
        (c.name for c in schema.columns if c.logical_type in ("date", "datetime")), None
    )
    if order is None:
        return "always_null", {}, "reference to another row of this table, which has no date"
    within = (
        "visit_occurrence_id"
        if "visit_occurrence_id" in names and schema.name != "visit_occurrence"
        else None
    )
    params = {"person": "person_id", "order_by": order} | ({"within": within} if within else {})
    return (
        "preceding_row",
        params,
        f"the same person's previous row by {order}"
        + (f" in the same {within}" if within else "")
        + ", NULL for the first",
    )


def _row_person(schema: TableSchema, name: str, names: list[str]) -> str | None:
    """Where a row's person is, for a reference that must reach a row of that person: its
    person_id; else the row a required reference of it points to (episode_event's episode_id:
    ``episode_id>episode``); else the row a polymorphic id points to (cost's cost_event_id for
    its payer_plan_period_id, fact_relationship's fact_id_1 for fact_id_2:
    ``fact_id_1@domain_concept_id_1``). None when the row has no person to follow."""
    if "person_id" in names:
        return "person_id"
    for fk in schema.foreign_keys:
        spec = omop.table_spec(fk.parent_table)
        owner = not schema.column(fk.column).nullable  # the row belongs to it
        if (
            fk.column != name
            and owner
            and fk.parent_table != schema.name
            and spec
            and ("person_id" in spec.fields)
        ):
            return f"{fk.column}>{fk.parent_table}"
    for ref in omop.polymorphic(schema.name, names):
        if ref.column == name:
            break  # only ids generated before this one
        return f"{ref.column}@{ref.by}"
    return None


def _same_person(schema: TableSchema, name: str, parent: str, names: list[str]) -> dict:
    """Params tying a reference to the row's own person, where both tables have one (a
    visit_detail_id of an event is a visit detail of the event's person and visit; cost's
    payer_plan_period_id one of the person of its cost event)."""
    spec = omop.table_spec(parent)
    shape = omop.EVENT_SHAPES.get(schema.name)
    anchored = shape is not None and shape.kind == "event" and name == "visit_occurrence_id"
    person = _row_person(schema, name, names)
    if (
        name == "person_id"
        or not schema.column(name).nullable  # a row's owner (episode_event's episode) leads
        or anchored  # the rules take the event's person from its visit
        or person is None
        or spec is None
        or "person_id" not in spec.fields
    ):
        return {}
    within = (
        "visit_occurrence_id"
        if "visit_occurrence_id" in names
        and "visit_occurrence_id" in spec.fields
        and name != "visit_occurrence_id"
        else None
    )
    parent_shape = omop.EVENT_SHAPES.get(parent)
    during = (
        shape.start
        if shape is not None and shape.start in names and parent_shape and parent_shape.end
        else None
    )
    return (
        {"person": person}
        | ({"within": within} if within else {})
        | ({"during": during} if during else {})
    )


def _code(cs: ColumnStats, k: int) -> tuple[str, dict, str]:
    if cs.values:
        return (
            "weighted_choice",
            {"other": "value", "other_value": 0} if cs.other_count else {},
            f"{len(cs.values)} concept/code values seen at least k={k} times"
            + ("; the rest become 0 (no matching concept)" if cs.other_count else ""),
        )
    return "constant", {"value": 0}, f"no code seen at least k={k} times: 0 (no matching concept)"


def _independent_numeric(cs: ColumnStats) -> tuple[str | None, dict, str]:
    covered = sum(v.count for v in cs.values or [])
    total = covered + (cs.other_count or 0)
    if cs.values and total and covered / total >= 0.95:
        params = {"other": "quantiles"} if cs.other_count and cs.quantiles else {}
        return "weighted_choice", params, f"{len(cs.values)} values cover most rows"
    if cs.quantiles:
        return "numeric_quantiles", {}, "numbers through the released quantiles"
    if cs.values:
        return "weighted_choice", {}, f"{len(cs.values)} common values (no quantiles released)"
    return None, {}, ""


def _no_distribution(nullable: bool, what: str, k: int) -> tuple[str, dict, str]:
    why = f"fewer than k={k} values: no distribution released"
    if nullable:
        return "always_null", {}, why + "; left NULL"
    if what in ("date_bins", "datetime_bins"):
        return what, {"from_year": 2000, "to_year": 2000}, why + "; placeholder year 2000"
    if what == "boolean":
        return "constant", {"value": False}, why + "; placeholder false"
    return "constant", {"value": 0}, why + "; placeholder 0"


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
