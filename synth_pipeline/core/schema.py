"""Reading the structure of a source extract: tables, columns, types, keys and row counts.

Reflection goes through SQLAlchemy on a read-only connection. Keys the database does not
declare are taken from the OMOP CDM specification, and each key says where it came from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from pydantic import BaseModel
from sqlalchemy.engine import Engine

from . import omop
from .database import check_schema_exists, qualified, redact
from .errors import DatabaseError

LogicalType = Literal["integer", "float", "string", "date", "datetime", "boolean"]
TableKind = Literal["clinical", "vocabulary", "metadata", "other"]


class ColumnSchema(BaseModel):
    name: str
    sql_type: str  # as the database declares it, e.g. VARCHAR(50)
    logical_type: LogicalType
    nullable: bool
    max_length: int | None = None


class ForeignKey(BaseModel):
    column: str
    parent_table: str
    parent_column: str
    source: Literal["declared", "omop_spec"]


class TableSchema(BaseModel):
    name: str  # lower-case: the partition key and the OMOP name
    source_name: str  # as the database spells it
    kind: TableKind
    columns: list[ColumnSchema]
    primary_key: list[str]
    primary_key_source: Literal["declared", "omop_spec", "none"]
    foreign_keys: list[ForeignKey]
    row_count: int  # exact; stays inside the trusted environment, never in a config

    def column(self, name: str) -> ColumnSchema:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def foreign_key(self, column: str) -> ForeignKey | None:
        for fk in self.foreign_keys:
            if fk.column == column:
                return fk
        return None


def logical_type_of(sql_type: sa.types.TypeEngine, spec: omop.FieldSpec | None) -> LogicalType:
    """Map a reflected SQL type to the handful of types generators know.

    Declared types win; a vague declaration (SQLite's NUMERIC or no type at all) defers to
    the OMOP specification of the field when there is one.
    """
    t = sql_type
    if isinstance(t, sa.Boolean):
        return "boolean"
    if isinstance(t, sa.DateTime):
        return "datetime"
    if isinstance(t, sa.Date):
        return "date"
    if isinstance(t, sa.Integer):
        return "integer"
    if isinstance(t, sa.Float):
        return "float"
    if isinstance(t, sa.Numeric):
        if getattr(t, "scale", None) == 0:
            return "integer"
        if spec is not None and spec.logical_type in ("integer", "float"):
            return spec.logical_type  # type: ignore[return-value]
        return "float"
    if isinstance(t, sa.String):
        # SQLite often stores dates as TEXT; the specification knows better.
        if spec is not None and spec.logical_type in ("date", "datetime") and not t.length:
            return spec.logical_type  # type: ignore[return-value]
        return "string"
    if isinstance(t, sa.types.NullType) and spec is not None:
        return spec.logical_type  # type: ignore[return-value]
    return "string"


def _sql_type_text(t: sa.types.TypeEngine, engine: Engine) -> str:
    try:
        return t.compile(dialect=engine.dialect)
    except Exception:  # noqa: BLE001 - exotic types still need a name
        return type(t).__name__.upper()


def list_tables(engine: Engine, schema: str | None) -> dict[str, str]:
    """Tables in the source: lower-case name to the name as the database spells it."""
    check_schema_exists(engine, schema, "source")
    names = sa.inspect(engine).get_table_names(schema=schema)
    out: dict[str, str] = {}
    for n in sorted(names):
        key = n.lower()
        if key in out:
            raise DatabaseError(
                f"source {redact(engine.url)} has two tables whose names differ only in case: "
                f"{out[key]!r} and {n!r}; rename one so each table has one partition"
            )
        out[key] = n
    return out


def unusable_name(name: str) -> str | None:
    """Why a table name cannot name a partition, a config file and a bundle file, or None.

    Any other name is fine: identifiers are quoted in SQL, never pasted.
    """
    if not name.strip() or name.strip(".") == "" or name.startswith("."):
        return "its name is empty, dots only or starts with a dot, which cannot name a file"
    bad = sorted({ch for ch in name if ch in "/\\" or ord(ch) < 32})
    if bad:
        return f"its name holds {', '.join(repr(ch) for ch in bad)}, which cannot be in a file name"
    return None


def identifier_findings(table: TableSchema) -> list[str]:
    """Spellings worth a warning: OMOP names in another case are read, but not recognised by
    the consistency rules and twin columns, which know the OMOP spelling."""
    out = []
    if table.source_name != table.name:
        out.append(f"table spelled {table.source_name!r} in the source: written as {table.name}")
    for c in table.columns:
        if c.name != c.name.lower() and omop.field_spec(table.name, c.name) is not None:
            out.append(
                f"{c.name}: spelled unlike the OMOP field {c.name.lower()}; generated as a plain "
                "column (twins and consistency rules need the OMOP spelling: rename it in the "
                "extract or a view)"
            )
    return out


def table_kind(name: str) -> TableKind:
    if name in omop.METADATA_TABLES:
        return "metadata"
    if omop.is_vocabulary_table(name):
        return "vocabulary"
    if omop.table_spec(name) is not None or name in ("cohort", "cohort_attribute"):
        return "clinical"
    return "other"


def read_table_schema(engine: Engine, schema: str | None, table: str) -> TableSchema:
    """Reflect one table (given by its lower-case name) and count its rows."""
    source_name = _source_name(engine, schema, table)
    insp = sa.inspect(engine)
    columns = _reflected_columns(insp, engine, schema, table, source_name)
    primary_key, pk_source = _primary_key(insp, schema, table, source_name, columns)
    fks = _foreign_keys(insp, schema, table, source_name, columns)
    with engine.connect() as conn:
        row_count = conn.execute(
            sa.text(f"SELECT COUNT(*) FROM {qualified(engine, schema, source_name)}")
        ).scalar_one()
    return TableSchema(
        name=table,
        source_name=source_name,
        kind=table_kind(table),
        columns=columns,
        primary_key=primary_key,
        primary_key_source=pk_source,
        foreign_keys=fks,
        row_count=int(row_count),
    )


def _source_name(engine: Engine, schema: str | None, table: str) -> str:
    """The table's name as the source spells it; an error for a table the source lacks, or one
    whose name cannot name a partition and a file."""
    names = list_tables(engine, schema)
    if table not in names:
        raise DatabaseError(
            f"source {redact(engine.url)}: no table {table!r}"
            + (f" in schema {schema!r}" if schema else "")
        )
    source_name = names[table]
    problem = unusable_name(table)
    if problem:
        raise DatabaseError(
            f"source table {source_name!r} cannot be used: {problem}; rename it in the extract "
            "or a view"
        )
    return source_name


def _reflected_columns(
    insp: sa.Inspector, engine: Engine, schema: str | None, table: str, source_name: str
) -> list[ColumnSchema]:
    """The table's columns: declared types and widths, logical types and NOT NULL helped by
    the OMOP specification."""
    columns: list[ColumnSchema] = []
    for col in insp.get_columns(source_name, schema=schema):
        spec = omop.field_spec(table, col["name"])
        t = col["type"]
        length = getattr(t, "length", None) if isinstance(t, sa.String) else None
        columns.append(
            ColumnSchema(
                name=col["name"],
                sql_type=_sql_type_text(t, engine),
                logical_type=logical_type_of(t, spec),
                # NOT NULL as declared, or as the OMOP specification requires
                nullable=bool(col.get("nullable", True))
                and not (spec is not None and spec.required),
                # the width the source declares, never the CDM's: a site's values may be
                # longer than the specification allows (None: no declared width, text)
                max_length=length or None,
            )
        )
    return columns


def _primary_key(
    insp: sa.Inspector,
    schema: str | None,
    table: str,
    source_name: str,
    columns: list[ColumnSchema],
) -> tuple[list[str], str]:
    """The declared primary key, else the OMOP specification's (in the source's spelling), and
    where it came from."""
    pk_declared = (
        insp.get_pk_constraint(source_name, schema=schema).get("constrained_columns") or []
    )
    if pk_declared:
        return list(pk_declared), "declared"
    col_by_lower = {c.name.lower(): c.name for c in columns}
    spec_table = omop.table_spec(table)
    spec_pk = [
        col_by_lower[p] for p in (spec_table.primary_key if spec_table else []) if p in col_by_lower
    ]
    return spec_pk, ("omop_spec" if spec_pk else "none")


def _foreign_keys(
    insp: sa.Inspector,
    schema: str | None,
    table: str,
    source_name: str,
    columns: list[ColumnSchema],
) -> list[ForeignKey]:
    """The declared foreign keys, then the OMOP specification's for the columns without one."""
    fks: list[ForeignKey] = []
    for fk in insp.get_foreign_keys(source_name, schema=schema):
        for c, pc in zip(fk["constrained_columns"], fk["referred_columns"], strict=False):
            fks.append(
                ForeignKey(
                    column=c,
                    parent_table=fk["referred_table"].lower(),
                    parent_column=pc,
                    source="declared",
                )
            )
    declared_cols = {f.column for f in fks}
    for c in columns:
        if c.name in declared_cols:
            continue
        spec = omop.field_spec(table, c.name)
        if spec and spec.fk_table:
            fks.append(
                ForeignKey(
                    column=c.name,
                    parent_table=spec.fk_table,
                    parent_column=spec.fk_field or spec.fk_table + "_id",
                    source="omop_spec",
                )
            )
    return fks


ColumnRole = Literal["primary_key", "foreign_key", "polymorphic", "code", "value"]


def column_role(table: TableSchema, column: str) -> ColumnRole:
    """What a column is for, which decides how it may be summarised and generated.

    primary_key  the table's single-column key: regenerated as 1..n, never summarised
    foreign_key  a reference to a patient-level table (person, visit...): ids never listed
    polymorphic  an id into the table another column of the row names (fact_relationship's
                 fact_id_1 by domain_concept_id_1, measurement_event_id ...): never listed
    code         a reference to public vocabulary (concept ids, domain ids): values listed
    value        everything else
    """
    if (
        len(table.primary_key) == 1
        and table.primary_key[0] == column
        and table.kind != "vocabulary"
    ):
        return "primary_key"
    fk = table.foreign_key(column)
    if fk is not None:
        return "code" if table_kind(fk.parent_table) == "vocabulary" else "foreign_key"
    if column.lower().endswith("_concept_id"):
        return "code"
    if any(
        p.column == column for p in omop.polymorphic(table.name, [c.name for c in table.columns])
    ):
        return "polymorphic"
    return "value"


# ---------------------------------------------------------------------------------------------
# A column as the destination gets it


@dataclass(frozen=True)
class ColumnDef:
    name: str
    logical_type: str
    max_length: int | None = None


def sa_type(logical_type: str, max_length: int | None) -> sa.types.TypeEngine:
    return {
        "integer": sa.BigInteger(),
        "float": sa.Double(),
        "string": sa.String(max_length) if max_length else sa.Text(),
        "date": sa.Date(),
        "datetime": sa.DateTime(),
        "boolean": sa.Boolean(),
    }[logical_type]
