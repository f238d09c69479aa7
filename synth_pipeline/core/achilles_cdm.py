"""One side's OMOP tables copied into DuckDB for Achilles (:mod:`.achilles`): every CDM table
with the CDM's columns and types, the side's values read as text in batches and typed by DuckDB.
"""

from __future__ import annotations

import pyarrow as pa
from sqlalchemy.engine import Engine

from .database import is_postgres, qualified, quote

BATCH_ROWS = 100_000


def load_cdm(
    engine: Engine,
    schema: str | None,
    con,
    tables: list[str] | None = None,
    cdm_version: str = "5.4",
    half: int | None = None,
) -> dict[str, int]:
    """Copy the OMOP tables of ``engine`` (in ``schema``) into the DuckDB connection ``con``'s
    ``main`` schema with the CDM's columns and types; returns rows per table.

    Every CDM table Achilles may read is created: a table the side lacks (or ``tables`` leaves
    out: pass the project's generated tables, so vocabularies and left-out tables stay empty on
    both sides) is empty, a column it lacks is NULL, a value that does not parse as the CDM's type
    (dirty extracts) is NULL. Values are read as text in batches and typed by DuckDB, so any
    dialect and any declared type will do. ``half`` (0 or 1) keeps only the persons whose
    person_id is even (0) or odd (1), in every table that has a person_id.
    """
    import sqlalchemy as sa
    from duckcdm.omop import RESULTS_TABLES, cdm_fields

    versions = ("5.4", "5.3") if cdm_version.startswith("5.4") else ("5.3", "5.4")
    present = {t.lower(): t for t in sa.inspect(engine).get_table_names(schema=schema)}
    wanted = {t.lower() for t in tables} if tables is not None else None
    rows: dict[str, int] = {}
    for table, fields in cdm_fields(versions).items():
        if table in RESULTS_TABLES:
            continue
        defs = ", ".join(f'"{c}" {t}' for c, t in fields)
        con.execute(f'CREATE OR REPLACE TABLE main."{table}" ({defs})')
        name = present.get(table)
        if name is None or (wanted is not None and table not in wanted):
            continue
        have = {
            c["name"].lower(): c["name"]
            for c in sa.inspect(engine).get_columns(name, schema=schema)
        }
        cols = [(c, t) for c, t in fields if c in have]
        if not cols:
            continue
        sql = _select_text(engine, schema, name, have, cols, half)
        rows[table] = _copy_rows(engine, sql, con, table, cols)
    return rows


def _select_text(
    engine: Engine,
    schema: str | None,
    name: str,
    have: dict[str, str],
    cols: list[tuple[str, str]],
    half: int | None,
) -> str:
    """The statement reading the side's table ``name`` as text in the CDM's columns ``cols``
    (``have``: its column names by lower-case name), one parity of person_id if ``half``."""
    select = ", ".join(f"CAST({quote(engine, have[c])} AS TEXT)" for c, _ in cols)
    sql = f"SELECT {select} FROM {qualified(engine, schema, name)}"
    if half is not None and "person_id" in have:
        pid = quote(engine, have["person_id"])
        parity = f"MOD({pid}, 2)" if is_postgres(engine) else f"({pid} % 2)"
        sql += f" WHERE {parity} {'=' if half == 0 else '<>'} 0"
    return sql


def _copy_rows(engine: Engine, sql: str, con, table: str, cols: list[tuple[str, str]]) -> int:
    """Insert the text rows ``sql`` reads into DuckDB's ``table``, each value cast to its CDM
    type (NULL where it does not parse), in batches; returns the rows."""
    typed = ", ".join(
        f"TRY_CAST(NULLIF(c{i}, '') AS {t}) AS \"{c}\"" for i, (c, t) in enumerate(cols)
    )
    names = ", ".join(f'"{c}"' for c, _ in cols)
    arrow_schema = pa.schema([(f"c{i}", pa.string()) for i in range(len(cols))])
    n = 0
    with engine.connect() as conn:
        result = conn.execution_options(stream_results=True).exec_driver_sql(sql)
        while batch := result.fetchmany(BATCH_ROWS):
            columns = list(zip(*batch, strict=True))
            incoming = pa.table(
                [pa.array([None if v is None else str(v) for v in col]) for col in columns],
                schema=arrow_schema,
            )
            con.register("_incoming", incoming)
            con.execute(f'INSERT INTO main."{table}" ({names}) SELECT {typed} FROM _incoming')
            con.unregister("_incoming")
            n += len(batch)
    return n
