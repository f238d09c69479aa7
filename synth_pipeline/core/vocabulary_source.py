"""The vocabulary tables in the source: which they are, which concepts and vocabularies are
site-local, and the SQL that selects their rows (WHERE clauses over bound parameters).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .config import TableConfig
from .config_files import ProjectFiles
from .database import is_postgres, pg_like, qualified, quote
from .errors import ConfigError
from .transfer import with_where

# Concept-level tables: the columns that must all name a concept of the set for a row to be
# copied (both ends of an ancestry or a relationship, the concept of a synonym or a strength).
CONCEPT_LEVEL: dict[str, tuple[str, ...]] = {
    "concept": ("concept_id",),
    "concept_synonym": ("concept_id",),
    "drug_strength": ("drug_concept_id",),
    "concept_ancestor": ("ancestor_concept_id", "descendant_concept_id"),
    "concept_relationship": ("concept_id_1", "concept_id_2"),
}
# Vocabulary metadata: small lists of vocabularies, domains, classes and relationship types,
# copied whole; the concept each row names joins the set so it resolves in ``concept``.
METADATA: dict[str, str] = {
    "vocabulary": "vocabulary_concept_id",
    "domain": "domain_concept_id",
    "concept_class": "concept_class_concept_id",
    "relationship": "relationship_concept_id",
}


# OMOP reserves concept ids above this for a site's own concepts.
SITE_LOCAL_ABOVE = 2_000_000_000

SiteLocalRule = Literal["exclude", "include"]


def site_local_rule(cfg: TableConfig) -> SiteLocalRule:
    """Whether a vocabulary table's copy keeps site-local rows; exclude unless the file says
    include."""
    return cfg.site_local or "exclude"


def is_site_local_concept(concept_id: int) -> bool:
    return concept_id > SITE_LOCAL_ABOVE


def is_site_local(table: str) -> bool:
    """A vocabulary-kind table that is not part of the public vocabulary's layout
    (source_to_concept_map maps a site's own codes)."""
    return table not in CONCEPT_LEVEL and table not in METADATA


def as_concept_id(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


def require_columns(
    files: ProjectFiles, cfg: TableConfig, columns: tuple[str, ...], setting: str, value: str
) -> None:
    missing = [c for c in columns if c not in cfg.columns]
    if missing:
        raise ConfigError(
            f"the table has no column {', '.join(missing)}, which {setting}: {value} "
            "filters on; set vocabulary_rows: all, site_local: include or kind: skip",
            file=str(files.table_file(cfg.table)),
            table=cfg.table,
            setting=setting,
        )


def site_local_clauses(
    files: ProjectFiles,
    cfg: TableConfig,
    engine: Engine,
    schema: str | None,
    tables: dict[str, str],
    local: list[str],
) -> list[Clause]:
    """Conditions that keep a vocabulary table's rows clear of site-local concepts and local
    vocabularies (``local``), in the database of ``engine`` whose tables are ``tables``."""
    table = cfg.table
    if table == "vocabulary":
        return [not_in_list(engine, quote(engine, "vocabulary_id"), local)] if local else []
    if table in METADATA:
        require_columns(files, cfg, (METADATA[table],), "site_local", "exclude")
        return [concept_not_site_local(engine, quote(engine, METADATA[table]))]
    if table not in CONCEPT_LEVEL:
        return []  # a site-local table the reviewer chose to copy whole
    require_columns(files, cfg, CONCEPT_LEVEL[table], "site_local", "exclude")
    out = [concept_not_site_local(engine, quote(engine, c)) for c in CONCEPT_LEVEL[table]]
    if local and table == "concept":
        require_columns(files, cfg, ("vocabulary_id",), "site_local", "exclude")
        out.append(not_in_list(engine, quote(engine, "vocabulary_id"), local))
    elif local and "concept" in tables:
        # the concepts of a local vocabulary, wherever their ids lie
        concept = qualified(engine, schema, tables["concept"])
        of_local = in_list(engine, quote(engine, "vocabulary_id"), local, "TEXT")
        for c in CONCEPT_LEVEL[table]:
            out.append(
                Clause(
                    f"{quote(engine, c)} NOT IN (SELECT {quote(engine, 'concept_id')} FROM "
                    f"{concept} WHERE {quote(engine, 'concept_id')} IS NOT NULL AND "
                    f"{of_local.sql})",
                    of_local.params,
                )
            )
    return out


def local_vocabularies(engine: Engine, schema: str | None, tables: dict[str, str]) -> list[str]:
    """The local vocabularies among the ``vocabulary`` and ``concept`` tables of ``engine``'s
    database (``tables``: lower-case name to spelling): vocabulary rows whose
    vocabulary_concept_id is 0, NULL or site-local, and vocabularies holding only site-local
    concepts."""
    found: set[str] = set()
    above = f"{SITE_LOCAL_ABOVE}"
    v, c = quote(engine, "vocabulary_id"), quote(engine, "concept_id")
    queries = []
    if has_columns(
        engine, schema, tables, "vocabulary", ("vocabulary_id", "vocabulary_concept_id")
    ):
        own = quote(engine, "vocabulary_concept_id")
        queries.append(
            f"SELECT {v} FROM {qualified(engine, schema, tables['vocabulary'])} "
            f"WHERE COALESCE({own}, 0) = 0 OR {own} > {above}"
        )
    if has_columns(engine, schema, tables, "concept", ("vocabulary_id", "concept_id")):
        queries.append(
            f"SELECT {v} FROM {qualified(engine, schema, tables['concept'])} "
            f"GROUP BY {v} HAVING MIN({c}) > {above}"
        )
    with engine.connect() as conn:
        for sql in queries:
            found |= {str(x) for x in conn.exec_driver_sql(sql).scalars() if x is not None}
    return sorted(found)


def has_columns(
    engine: Engine, schema: str | None, tables: dict[str, str], table: str, columns: tuple
) -> bool:
    if table not in tables:
        return False
    present = {c["name"] for c in sa.inspect(engine).get_columns(tables[table], schema=schema)}
    return set(columns) <= present


def metadata_concepts(
    files: ProjectFiles,
    source: Engine,
    schema: str | None,
    source_tables: dict[str, str],
    local: list[str] | None = None,
) -> set[int]:
    """Concepts named by the rows of the vocabulary metadata tables the project copies (whole,
    less their site-local rows under site_local: exclude); ``local``: the source's local
    vocabularies, when already known."""
    out: set[int] = set()
    for table, column in METADATA.items():
        if table not in source_tables or not files.has_table(table):
            continue
        cfg = files.load_table(table)
        if cfg.kind != "vocabulary" or column not in cfg.columns:
            continue
        clauses = []
        if site_local_rule(cfg) == "exclude":
            if local is None:
                local = local_vocabularies(source, schema, source_tables)
            clauses = site_local_clauses(files, cfg, source, schema, source_tables, local)
        not_null = Clause(f"{quote(source, column)} IS NOT NULL")
        where, params = render_clauses(source, [not_null, *clauses])
        sql = with_where(
            source,
            f"SELECT DISTINCT {quote(source, column)} FROM "
            f"{qualified(source, schema, source_tables[table])}",
            where,
            params,
        )
        with source.connect() as conn:
            for (value,) in conn.exec_driver_sql(sql, params or None):
                concept = as_concept_id(value)
                if concept is not None:
                    out.add(concept)
    return out


def count_rows(
    engine: Engine, schema: str | None, table: str, where: str | None, params: tuple
) -> int:
    sql = with_where(
        engine, f"SELECT COUNT(*) FROM {qualified(engine, schema, table)}", where, params
    )
    with engine.connect() as conn:
        return int(conn.exec_driver_sql(sql, params or None).scalar_one())


# ---------------------------------------------------------------------------------------------
# WHERE clauses over bound parameters: no value is ever pasted into SQL, and a set of ids is one
# parameter (an array on PostgreSQL, a JSON array read by json_each on SQLite), so a statement's
# size does not grow with it.

_MARK = "\x00"  # a placeholder, until the statement's parameters are known


@dataclass(frozen=True)
class Clause:
    sql: str  # over quoted identifiers and _MARK placeholders
    params: tuple = ()


def in_list(engine: Engine, expr: str, values: list, sql_type: str) -> Clause:
    if pg_like(engine):
        return Clause(f"{expr} = ANY(CAST({_MARK} AS {sql_type}[]))", (list(values),))
    return Clause(f"{expr} IN (SELECT value FROM json_each({_MARK}))", (json.dumps(values),))


def not_in_list(engine: Engine, expr: str, values: list[str]) -> Clause:
    inside = in_list(engine, expr, values, "TEXT")
    return Clause(f"({expr} IS NULL OR NOT ({inside.sql}))", inside.params)


def concept_not_site_local(engine: Engine, expr: str) -> Clause:
    return Clause(f"COALESCE({expr}, 0) <= {SITE_LOCAL_ABOVE}")


def render_clauses(engine: Engine, clauses: list[Clause]) -> tuple[str | None, tuple]:
    """The clauses joined by AND, with the driver's placeholders (``?`` on SQLite, ``%s`` on
    PostgreSQL, where a literal % is then written %%), and their parameters in order."""
    if not clauses:
        return None, ()
    sql = " AND ".join(c.sql for c in clauses)
    params = tuple(p for c in clauses for p in c.params)
    if is_postgres(engine):
        if params:
            sql = sql.replace("%", "%%")
        return sql.replace(_MARK, "%s"), params
    return sql.replace(_MARK, "?"), params
