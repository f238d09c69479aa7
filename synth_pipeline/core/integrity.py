"""Checks on the destination: row counts and references, computed by SQL on the written tables."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .database import qualified, quote


def dangling_references(
    engine: Engine,
    schema: str | None,
    table: str,
    references: dict[str, str],
    parent_rows: dict[str, int],
) -> dict[str, int]:
    """Per foreign-key column, rows whose reference falls outside the parent's key range 1..n.

    Synthetic parents have dense keys, so a range test is a full referential-integrity test.
    """
    out: dict[str, int] = {}
    if not references:
        return out
    tbl = qualified(engine, schema, table)
    with engine.connect() as conn:
        for column, parent in references.items():
            q = quote(engine, column)
            n = int(parent_rows.get(parent, 0))
            bad = conn.execute(
                sa.text(
                    f"SELECT COUNT(*) FROM {tbl} WHERE {q} IS NOT NULL AND ({q} < 1 OR {q} > :n)"
                ),
                {"n": n},
            ).scalar_one()
            out[column] = int(bad)
    return out


def stale_references(register: dict[str, dict]) -> list[str]:
    """Tables whose references were drawn against a parent row count that the parent no longer has."""
    problems = []
    for table, entry in sorted(register.items()):
        for parent, used in sorted((entry.get("parent_rows") or {}).items()):
            if used == 0:
                continue
            current = register.get(parent)
            if current is None:
                problems.append(f"{table} references {parent}, which is not in the destination")
            elif int(current["rows"]) < int(used):
                problems.append(
                    f"{table} was generated against {used} {parent} rows but {parent} now has "
                    f"{current['rows']}: re-materialise synthetic_table[{table}]"
                )
    return problems
