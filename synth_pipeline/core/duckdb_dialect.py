"""DuckDB through the maintained SQLAlchemy dialect duckdb-engine, with one repair.

duckdb-engine 0.17 reflects columns with SQLAlchemy's PostgreSQL catalog query, which since
SQLAlchemy 2.0.45 reads ``pg_catalog.pg_collation``; DuckDB has no such table, so every
``inspect(engine).get_columns`` fails (duckdb_engine issues 1379 and 1391, open). This subclass
reads the columns from DuckDB's own ``duckdb_columns()`` instead and hands them to the same
PostgreSQL type parser, so the types come out as the dialect would reflect them. It is
registered as the ``duckdb`` dialect when a ``duckdb://`` URL is first opened, so URLs stay as
users write them. Nothing else of the dialect changes.

duckdb and duckdb-engine are an optional extra: ``pip install 'synth_pipeline[duckdb]'``.
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy.dialects import registry

from .errors import DatabaseError

try:  # the optional extra
    from duckdb_engine import Dialect as _DuckDBEngineDialect
except ImportError:  # pragma: no cover - exercised only without the extra
    _DuckDBEngineDialect = None  # type: ignore[assignment,misc]

# DuckDB's type names as PostgreSQL's format_type() spells them, which the parser knows
_PG_NAMES = {
    "double": "double precision",
    "float": "real",
    "decimal": "numeric",
    "blob": "bytea",
    "timestamp with time zone": "timestamp with time zone",
}
_ARGS = re.compile(r"^([^(]*)(\(.*\))?$")


def _format_type(duckdb_type: str) -> str:
    found = _ARGS.match(duckdb_type.strip().lower())
    base, args = (found.group(1).strip(), found.group(2) or "") if found else (duckdb_type, "")
    return _PG_NAMES.get(base, base) + args


if _DuckDBEngineDialect is not None:

    class DuckDBDialect(_DuckDBEngineDialect):  # type: ignore[misc,valid-type]
        """duckdb-engine's dialect with column reflection read from ``duckdb_columns()``."""

        supports_statement_cache = False

        def get_multi_columns(
            self,
            connection: Any,
            schema: str | None = None,
            filter_names: Any = None,
            scope: Any = None,
            kind: Any = None,
            **kw: Any,
        ):
            from sqlalchemy import text

            try:
                from sqlalchemy.dialects.postgresql.base import _NamedTypeLoader
            except ImportError:  # SQLAlchemy before 2.1: duckdb-engine's own reflection works
                return super().get_multi_columns(
                    connection, schema, filter_names, scope, kind, **kw
                )
            where = ["database_name = current_database()", "schema_name = :schema"]
            params: dict[str, Any] = {"schema": schema or "main"}
            names = list(filter_names or [])
            if names:
                marks = ", ".join(f":t{i}" for i in range(len(names)))
                where.append(f"table_name IN ({marks})")
                params |= {f"t{i}": n for i, n in enumerate(names)}
            rows = connection.execute(
                text(
                    "SELECT table_name, column_name AS name, data_type, is_nullable, "
                    'column_default AS "default", comment FROM duckdb_columns() WHERE '
                    + " AND ".join(where)
                    + " ORDER BY table_name, column_index"
                ),
                params,
            ).mappings()
            shaped = [
                {
                    "name": r["name"],
                    "table_name": r["table_name"],
                    "format_type": _format_type(r["data_type"]),
                    "default": r["default"],
                    "not_null": not r["is_nullable"],
                    "comment": r["comment"],
                    "generated": None,
                    "identity_options": None,
                    "collation": None,
                }
                for r in rows
            ]
            columns = self._get_columns_info(shaped, _NamedTypeLoader(self, connection, kw), schema)
            return columns.items()

        # Primary and foreign keys: the PostgreSQL catalog query casts to REGCLASS, which DuckDB
        # does not have either; DuckDB lists its constraints in duckdb_constraints().
        def _constraints(self, connection: Any, table_name: str, schema: str | None, kind: str):
            from sqlalchemy import text

            return connection.execute(
                text(
                    "SELECT constraint_name, constraint_column_names, referenced_table, "
                    "referenced_column_names FROM duckdb_constraints() WHERE "
                    "database_name = current_database() AND schema_name = :schema AND "
                    "table_name = :table AND constraint_type = :kind ORDER BY constraint_index"
                ),
                {"schema": schema or "main", "table": table_name, "kind": kind},
            ).all()

        def get_pk_constraint(self, connection: Any, table_name: str, schema=None, **kw: Any):
            found = self._constraints(connection, table_name, schema, "PRIMARY KEY")
            if not found:
                return {"constrained_columns": [], "name": None}
            name, cols, _, _ = found[0]
            return {"constrained_columns": list(cols), "name": name}

        def get_foreign_keys(self, connection: Any, table_name: str, schema=None, **kw: Any):
            return [
                {
                    "name": name,
                    "constrained_columns": list(cols),
                    "referred_schema": schema,
                    "referred_table": parent,
                    "referred_columns": list(parent_cols),
                    "options": {},
                }
                for name, cols, parent, parent_cols in self._constraints(
                    connection, table_name, schema, "FOREIGN KEY"
                )
            ]

else:  # pragma: no cover
    DuckDBDialect = None  # type: ignore[assignment,misc]


def register() -> None:
    """Make ``duckdb://`` URLs use :class:`DuckDBDialect`; a clear error without the extra."""
    if DuckDBDialect is None:
        raise DatabaseError(
            "a duckdb:// URL needs DuckDB and its SQLAlchemy dialect: "
            "pip install 'synth_pipeline[duckdb]' (duckdb, duckdb-engine)"
        )
    registry.register("duckdb", __name__, "DuckDBDialect")
