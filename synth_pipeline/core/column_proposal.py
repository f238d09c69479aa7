"""Proposing a generator for one column of a synthetic table, from its role, type and released
statistics: the choice, its parameters, and why (the ``why`` a reviewer reads in the config).
"""

from __future__ import annotations

from . import omop
from .schema import ColumnSchema, TableSchema, column_role
from .statistics import ColumnStats, TableStats, ends_at_a_cut


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
        return _without_values(schema, name, role)
    if role == "polymorphic":
        return _polymorphic(schema, name, cs, names)
    if role == "foreign_key":
        return _reference(schema, name, cs, names)
    if lt in ("date", "datetime"):
        return _dated(schema, name, cs, names, stats)
    proposal = _birth_part(name, names, stats) or _concept_twin(schema, name, cs, names, k)
    if proposal is not None:
        return proposal
    return _by_type(col, role, cs, k)


def _without_values(schema: TableSchema, name: str, role: str) -> tuple[str, dict, str]:
    """A column without usable source values: NULL, or a required reference uniform over its
    parent."""
    if not schema.column(name).nullable and role == "foreign_key":
        fk = schema.foreign_key(name)
        return (
            "foreign_key",
            {"table": fk.parent_table, "distribution": "uniform"},
            "required reference with no usable source values: uniform over the parent",
        )  # type: ignore[union-attr]
    return "always_null", {}, "every source value is NULL (or 0 meaning NULL)"


def _polymorphic(
    schema: TableSchema, name: str, cs: ColumnStats, names: list[str]
) -> tuple[str, dict, str]:
    """An id of a row of the table another column names, of the row's person where it has one."""
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


def _reference(
    schema: TableSchema, name: str, cs: ColumnStats, names: list[str]
) -> tuple[str, dict, str]:
    """A foreign key: the same person's preceding row for a self-reference, else a synthetic
    key of the parent (children per parent as released), of the row's person where it can."""
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


def _dated(
    schema: TableSchema, name: str, cs: ColumnStats, names: list[str], stats: TableStats
) -> tuple[str, dict, str]:
    """A date or datetime: its date twin's day, an offset from the column it is released
    against, or year bins (a placeholder year when none were released)."""
    lt = schema.column(name).logical_type
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
    if cs.offset is not None and not ends_at_a_cut(stats.columns.get(cs.offset.from_column), cs):
        start = cs.offset.from_column
        return "date_offset", {"from_column": start}, f"{start} plus released days, never before it"
    bins = "date_bins" if lt == "date" else "datetime_bins"
    if cs.years:
        detail = "day uniform" if lt == "date" else "time of day as released"
        return bins, {}, f"year bins and month-of-year counts, {detail}"
    return _no_distribution(schema.column(name).nullable, bins, stats.policy.k)


def _birth_part(name: str, names: list[str], stats: TableStats) -> tuple[str, dict, str] | None:
    """A part of birth taken from birth_datetime, where every birth_datetime was released."""
    if name in ("year_of_birth", "month_of_birth", "day_of_birth") and "birth_datetime" in names:
        bd = stats.columns.get("birth_datetime")
        if bd is not None and bd.years and bd.null_fraction == 0:
            part = name.split("_")[0]
            return (
                "date_part",
                {"date_column": "birth_datetime", "part": part},
                f"the {part} of birth_datetime, so the two agree",
            )
    return None


def _concept_twin(
    schema: TableSchema, name: str, cs: ColumnStats, names: list[str], k: int
) -> tuple[str, dict, str] | None:
    """A twin of a concept column agrees with it: values seen with the row's concept, or NULL
    (never a random string beside a real concept); None for a column that is no twin, or a
    required one without released combinations."""
    twins = omop.twin_of(schema.name, names, name)
    if not twins:
        return None
    by = twins if len(twins) > 1 else twins[0]
    if cs.conditional is not None and any(g.values for g in cs.conditional.groups):
        return (
            "conditional_choice",
            {"by": by, "other": "null"},
            f"agrees with {' and '.join(twins)}: the values each of their combinations was "
            f"seen with at least k={k} times; NULL for the rest",
        )
    if schema.column(name).nullable:
        return (
            "always_null",
            {},
            f"twin of {' and '.join(twins)}: no combination released, so NULL rather than "
            "a value that could disagree with it",
        )
    return None


def _by_type(col: ColumnSchema, role: str, cs: ColumnStats, k: int) -> tuple[str, dict, str]:
    """A number, boolean or string column by its released values."""
    if col.logical_type in ("integer", "float"):
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
    if col.logical_type == "boolean":
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
