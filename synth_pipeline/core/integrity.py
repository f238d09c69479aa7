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
    parent_keys: dict[str, str | None],
) -> dict[str, int]:
    """Per foreign-key column, rows whose reference has no row in the parent table as the
    destination holds it now (``parent_keys``: parent table -> its key column).

    Read from the destination, not from the configs the keys were drawn from: a parent written
    with fewer rows, from another config or by another run is caught. A parent missing from the
    destination (or without a key column) leaves every non-null reference dangling.
    """
    out: dict[str, int] = {}
    if not references:
        return out
    tbl = qualified(engine, schema, table)
    present = set(sa.inspect(engine).get_table_names(schema=schema))
    with engine.connect() as conn:
        for column, parent in references.items():
            q = quote(engine, column)
            key = parent_keys.get(parent)
            if parent in present and key:
                par = qualified(engine, schema, parent)
                sql = (
                    f"SELECT COUNT(*) FROM {tbl} c WHERE c.{q} IS NOT NULL AND NOT EXISTS "
                    f"(SELECT 1 FROM {par} p WHERE p.{quote(engine, key)} = c.{q})"
                )
            else:
                sql = f"SELECT COUNT(*) FROM {tbl} WHERE {q} IS NOT NULL"
            out[column] = int(conn.execute(sa.text(sql)).scalar_one())
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


def unreleasable(register: dict[str, dict], fingerprints: dict[str, str]) -> list[str]:
    """Why tables of the register may not be published, naming the table and the check: a
    generation with no recorded check outcome, a blocking check that failed, or a generation
    from a config other than the approved one now (``fingerprints``: table -> fingerprint)."""
    problems = []
    for table, entry in sorted(register.items()):
        checks = entry.get("checks")
        if checks is None:
            problems.append(
                f"table {table}: its latest generation has no recorded check outcome (the run "
                f"stopped, or it predates the register's checks): re-materialise "
                f"synthetic_table[{table}]"
            )
            continue
        for name, outcome in sorted(checks.items()):
            if outcome.get("blocking") and not outcome.get("passed"):
                reason = outcome.get("reason") or "failed"
                problems.append(
                    f"table {table}: blocking check {name} failed in its latest generation "
                    f"({reason})"
                )
        now = fingerprints.get(table)
        if now is not None and entry.get("config_fingerprint") != now:
            problems.append(
                f"table {table}: generated from config {entry.get('config_fingerprint')}, but the "
                f"approved config is now {now}: re-materialise synthetic_table[{table}]"
            )
    return problems
