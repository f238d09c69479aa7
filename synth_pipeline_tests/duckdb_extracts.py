"""Copy an extract built in SQLite (omop_extracts, the demo) into a DuckDB file, typed as the
SQLite file declares its columns, primary keys kept: a DuckDB source for the tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import duckdb
import polars as pl
import sqlalchemy as sa

from synth_pipeline.core.database import sqlite_path


def _duckdb_type(declared: sa.types.TypeEngine) -> str:
    if isinstance(declared, sa.BigInteger):
        return "BIGINT"
    if isinstance(declared, sa.Integer):
        return "INTEGER"
    if isinstance(declared, sa.Float | sa.Numeric):
        return "DOUBLE"
    if isinstance(declared, sa.DateTime):
        return "TIMESTAMP"
    if isinstance(declared, sa.Date):
        return "DATE"
    if isinstance(declared, sa.String) and declared.length:
        return f"VARCHAR({declared.length})"
    return "VARCHAR"


def _cast(name: str, duckdb_type: str) -> str:
    """The SQLite value as the DuckDB type; '' (a CSV's NULL in SQLite) is NULL outside text."""
    if duckdb_type.startswith("VARCHAR"):
        return f'"{name}"'
    return f"CAST(NULLIF(CAST(\"{name}\" AS VARCHAR), '') AS {duckdb_type})"


def copy_sqlite_to_duckdb(sqlite_url: str, target: Path) -> str:
    """Every table of the SQLite file at ``sqlite_url`` in a new DuckDB file ``target``; its URL."""
    path = sqlite_path(sa.engine.make_url(sqlite_url))
    assert path is not None, sqlite_url
    engine = sa.create_engine(sqlite_url)
    insp = sa.inspect(engine)
    target.unlink(missing_ok=True)
    duck = duckdb.connect(str(target))
    lite = sqlite3.connect(path)
    try:
        for table in insp.get_table_names():
            cols = insp.get_columns(table)
            pk = insp.get_pk_constraint(table).get("constrained_columns") or []
            defs = [f'"{c["name"]}" {_duckdb_type(c["type"])}' for c in cols]
            if pk:
                defs.append("PRIMARY KEY (" + ", ".join(f'"{p}"' for p in pk) + ")")
            duck.execute(f'CREATE TABLE "{table}" ({", ".join(defs)})')
            names = ", ".join(f'"{c["name"]}"' for c in cols)
            rows = lite.execute(f'SELECT {names} FROM "{table}"').fetchall()
            if not rows:
                continue
            frame = pl.DataFrame(
                rows, schema=[c["name"] for c in cols], orient="row", infer_schema_length=None
            )
            duck.register("incoming", frame.to_arrow())
            casts = ", ".join(_cast(c["name"], _duckdb_type(c["type"])) for c in cols)
            duck.execute(f'INSERT INTO "{table}" SELECT {casts} FROM incoming')
            duck.unregister("incoming")
    finally:
        lite.close()
        duck.close()
        engine.dispose()
    return f"duckdb:///{target}"
