"""Released statistics of a reference: children per parent, dangling references; and the
tables a polymorphic id's naming column points to."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from .. import disclosure as dc
from .. import omop
from ..database import qualified, quote
from ..schema import list_tables
from ..statistics import (
    Bin,
    ColumnStats,
    Target,
)
from .context import ColumnRead, TableRead
from .scalars import py_value


def summarise_reference(t: TableRead, c: ColumnRead) -> None:
    """A reference to a patient-level table: ids are never listed; fan-out and dangling counts."""
    col, cs, policy, noise = c.col, c.cs, t.policy, t.noise
    refs = t.exact[f"fk:{col.name}"]
    cs.distinct = None
    cs.listed = False
    fk = t.table.foreign_key(col.name)
    assert fk is not None
    c.notes.append("ids never listed: generated from the parent's synthetic key range")
    if t.plan.parent_missing.get(col.name) is not None:
        t.findings.append(f"{col.name}: parent table {fk.parent_table} is not in the extract")
    dangling = refs.usable - refs.resolving

    # children per parent, over the references that resolve
    fanout = sorted(refs.fanout)
    if noise is None:
        binned = dc.merge_bins(fanout, policy, dc.POWERS_OF_TWO)
    else:
        binned = noise.release_fanout(f"{col.name}:fanout", fanout, policy)
    cs.fanout = [Bin(start=a, end=b, count=n) for a, b, n in binned.bins] or None
    c.notes.extend(f"children per parent: {n}" for n in binned.notes)
    if not dangling:
        return
    cs.dangling = dc.release_count(dangling, policy) if noise is None else None
    what = (
        "person ids missing from person"
        if fk.parent_table == "person"
        else f"references to no {fk.parent_table} row"
    )
    if col.nullable:
        _dangling_as_null(t, c, refs.resolving)
        handling = "treated as NULL (the column is optional)"
    else:
        handling = "the rows holding one are not generated (the column is required)"
    t.findings.append(f"{col.name}: {t.about(dangling)} {what} (dangling); {handling}")


def _dangling_as_null(t: TableRead, c: ColumnRead, resolving: int) -> None:
    """An optional reference that points nowhere means no reference: NULL. The column's null
    split, released again over the references that resolve."""
    cs, policy, total = c.cs, t.policy, t.total
    if t.noise is None:
        released_total = dc.release_count(total, policy)
        released_null = dc.release_count(total - resolving, policy) or 0
        cs.non_null = dc.release_count(resolving, policy)
    else:  # replaces the column's null split released above (the same statistic)
        nulls, values = t.noise.counts(f"{c.col.name}:nulls", [total - resolving, resolving])
        released_null = dc.release_count(nulls, policy) or 0
        cs.non_null = dc.release_count(values, policy)
        released_total = released_null + (cs.non_null or 0)
    cs.null_fraction = round(min(1.0, released_null / released_total), 4) if released_total else 1.0
    if cs.non_null is None and resolving:
        cs.null_fraction = 1.0


def polymorphic_targets(
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
        found = _domain_concept_tables(conn, schema, names, values)
    elif ref.kind == "field_concept" and "concept" in names:
        found = _field_concept_tables(conn, schema, names, values)
    cs.targets = [Target(value=v, table=found[v]) for v in values if v in found] or None
    unknown = [str(v) for v in values if v not in found]
    if unknown:
        findings.append(
            f"{ref.column}: the table {ref.by} {', '.join(unknown)} names is not known "
            "(no DOMAIN or CDM field concept row in the extract): those ids are left NULL; "
            f"name the table under params.targets of {ref.column} to generate them"
        )


def _domain_concept_tables(
    conn: Connection, schema: str | None, names: dict[str, str], values: list[Any]
) -> dict[Any, str]:
    """Domain concept ids -> tables, by the extract's DOMAIN table and the standard domains."""
    domains = dict(omop.STANDARD_DOMAIN_CONCEPTS)
    if "domain" in names:
        rows = conn.execute(
            sa.text(
                f"SELECT {quote(conn.engine, 'domain_concept_id')}, "
                f"{quote(conn.engine, 'domain_id')} FROM "
                f"{qualified(conn.engine, schema, names['domain'])}"
            )
        ).all()
        domains.update({py_value(c): str(d) for c, d in rows if c is not None and d})
    return {
        v: omop.DOMAIN_TABLES[domains[v]]
        for v in values
        if v in domains and domains[v] in omop.DOMAIN_TABLES
    }


def _field_concept_tables(
    conn: Connection, schema: str | None, names: dict[str, str], values: list[Any]
) -> dict[Any, str]:
    """CDM field concept ids -> tables, by their names ('<table>.<field>') in CONCEPT."""
    found: dict[Any, str] = {}
    ids = [v for v in values if isinstance(v, int)]
    if not ids:
        return found
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
            found[py_value(cid)] = target
    return found
