"""Which vocabulary rows may be copied to the destination.

Many extracts carry only the part of the OMOP vocabulary their records use, so copying their
``concept`` table as it is would tell the world which concepts occur in the source, rare ones
included. By default (``vocabulary_rows: referenced``) a concept-level vocabulary table is
therefore filtered to the concepts the synthetic tables can contain: the values their approved
configs release for concept-valued columns, plus the concepts the small vocabulary metadata
tables (vocabulary, domain, concept_class, relationship) name, which are copied whole. The set
is read from the configuration files alone, never from generated data, and the filter runs in
the source database with the ids bound as one parameter.

Site-local tables (``source_to_concept_map``, anything not in the public vocabulary's layout)
are not copied by default: their proposal is ``kind: skip``, and ``referenced`` refuses them.
``vocabulary_rows: all`` copies a table whole, for an extract known to carry the full public
vocabulary.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from . import omop
from .config import ProjectFiles, TableConfig, approval_problem
from .database import is_postgres, qualified, quote
from .errors import ConfigError
from .generators import CATALOGUE

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


def is_site_local(table: str) -> bool:
    """A vocabulary-kind table that is not part of the public vocabulary's layout
    (source_to_concept_map maps a site's own codes)."""
    return table not in CONCEPT_LEVEL and table not in METADATA


def proposal(table: str) -> tuple[str, str | None, str]:
    """(kind, vocabulary_rows, finding) that ``init`` proposes for a vocabulary table."""
    if is_site_local(table):
        return (
            "skip",
            None,
            "site-local vocabulary table: not public and may hold the site's own codes; not "
            "copied (to copy it whole: kind: vocabulary, vocabulary_rows: all)",
        )
    return "vocabulary", "referenced", rule_text(table, "referenced")


def rule_text(table: str, rule: str) -> str:
    """The rule that decides which rows of ``table`` are copied, in words."""
    if rule == "all":
        return "vocabulary_rows: all: every source row is copied (the reviewer chose to)"
    if table in METADATA:
        return (
            "vocabulary_rows: referenced: vocabulary metadata, copied whole; the concept each "
            f"row names ({METADATA[table]}) is copied to concept too"
        )
    if table in CONCEPT_LEVEL:
        cols = " and ".join(CONCEPT_LEVEL[table])
        return (
            "vocabulary_rows: referenced: only rows whose "
            f"{cols} {'are' if len(CONCEPT_LEVEL[table]) > 1 else 'is'} among the concepts the "
            "approved synthetic tables can contain (their configs' listed values) or the "
            "vocabulary metadata names"
        )
    return "vocabulary_rows: referenced: a site-local table, never copied under this rule"


def is_concept_column(table: str, column: str) -> bool:
    """A column whose values are concept ids: *_concept_id, or a reference to concept."""
    if column.lower().endswith("_concept_id"):
        return True
    spec = omop.field_spec(table, column)
    return bool(spec and spec.fk_table == "concept")


@dataclass
class ReleasedConcepts:
    """The concept ids the approved synthetic tables can write, and where they come from."""

    ids: set[int] = field(default_factory=set)
    by_table: dict[str, int] = field(default_factory=dict)
    # concept-valued columns whose values are not a list (numbers through quantiles, say):
    # what they write may not resolve in the copied concept table
    unlisted: list[str] = field(default_factory=list)


def released_concepts(files: ProjectFiles) -> ReleasedConcepts:
    """Concept ids in the approved configs of the project's synthetic tables, from the files
    alone: the values each concept-valued column's generator can write."""
    out = ReleasedConcepts()
    for table in files.tables():
        cfg = files.load_table(table)
        if cfg.kind != "synthetic" or approval_problem(cfg, None) is not None:
            continue
        found: set[int] = set()
        for name, col in cfg.columns.items():
            if col.generator is None or not is_concept_column(table, name):
                continue
            gen = CATALOGUE[col.generator]
            values = gen.possible_values(col.stats, gen.Params.model_validate(col.params))
            if values is None:
                out.unlisted.append(f"{table}.{name} ({col.generator})")
                continue
            for v in values:
                concept = _as_concept_id(v)
                if concept is None:
                    raise ConfigError(
                        f"{v!r} is not a concept id; a concept-valued column needs whole numbers",
                        file=str(files.table_file(table)),
                        table=table,
                        column=name,
                        setting="params" if col.generator == "constant" else "stats.values",
                    )
                found.add(concept)
        if found:
            out.by_table[table] = len(found)
            out.ids |= found
    return out


def _as_concept_id(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value.strip())
    return None


@dataclass
class CopyPlan:
    """How one vocabulary table is copied: a WHERE clause over bound parameters, or none."""

    table: str
    rule: str
    where: str | None = None  # SQL over quoted identifiers and driver placeholders only
    params: tuple = ()
    concepts: int | None = None  # the size of the concept set, when one filters the rows
    from_configs: int | None = None  # ... of which the approved synthetic configs list
    unlisted: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.rule == "all":
            return f"{self.table}: vocabulary_rows all: every source row copied"
        if self.concepts is None:
            return f"{self.table}: vocabulary metadata, copied whole"
        return (
            f"{self.table}: only rows for a set of {self.concepts} concepts are copied "
            f"({self.from_configs} listed in the approved synthetic configs, the rest named by "
            "the vocabulary metadata tables; vocabulary_rows: referenced)"
        )


def check_vocabulary_config(files: ProjectFiles, cfg: TableConfig) -> None:
    """Refuse a vocabulary table whose rows the chosen rule cannot decide (a site-local table
    under ``referenced``), naming the file and the setting."""
    if (
        cfg.kind == "vocabulary"
        and cfg.vocabulary_rule == "referenced"
        and is_site_local(cfg.table)
    ):
        raise ConfigError(
            f"{cfg.table} is not part of the public vocabulary (it may map the site's own "
            "codes), so vocabulary_rows: referenced cannot filter it; set kind: skip, or "
            "vocabulary_rows: all to publish it whole",
            file=str(files.table_file(cfg.table)),
            table=cfg.table,
            setting="vocabulary_rows",
        )


def plan_copy(
    files: ProjectFiles,
    cfg: TableConfig,
    source: Engine,
    source_schema: str | None,
    source_tables: dict[str, str],
) -> CopyPlan:
    """Decide which rows of vocabulary table ``cfg.table`` are copied from the source.

    ``source_tables`` maps the source's lower-case table names to their spelling there.
    """
    check_vocabulary_config(files, cfg)
    table, rule = cfg.table, cfg.vocabulary_rule
    if rule == "all" or table in METADATA:
        return CopyPlan(table, rule)
    released = released_concepts(files)
    ids = set(released.ids) | metadata_concepts(files, source, source_schema, source_tables)
    missing = [c for c in CONCEPT_LEVEL[table] if c not in cfg.columns]
    if missing:
        raise ConfigError(
            f"the table has no column {', '.join(missing)}, which vocabulary_rows: referenced "
            "filters on; set vocabulary_rows: all or kind: skip",
            file=str(files.table_file(table)),
            table=table,
            setting="vocabulary_rows",
        )
    where, params = membership(source, CONCEPT_LEVEL[table], sorted(ids))
    return CopyPlan(table, rule, where, params, len(ids), len(released.ids), released.unlisted)


def metadata_concepts(
    files: ProjectFiles, source: Engine, schema: str | None, source_tables: dict[str, str]
) -> set[int]:
    """Concepts named by the vocabulary metadata tables the project copies (whole)."""
    out: set[int] = set()
    for table, column in METADATA.items():
        if table not in source_tables or not files.has_table(table):
            continue
        cfg = files.load_table(table)
        if cfg.kind != "vocabulary" or column not in cfg.columns:
            continue
        sql = (
            f"SELECT DISTINCT {quote(source, column)} FROM "
            f"{qualified(source, schema, source_tables[table])} "
            f"WHERE {quote(source, column)} IS NOT NULL"
        )
        with source.connect() as conn:
            for (value,) in conn.exec_driver_sql(sql):
                concept = _as_concept_id(value)
                if concept is not None:
                    out.add(concept)
    return out


def selected_rows(source: Engine, schema: str | None, source_table: str, plan: CopyPlan) -> int:
    """How many source rows ``plan`` lets through, counted in the source before the copy, so the
    row-count check compares the rows written with the rows the rule selects."""
    sql = f"SELECT COUNT(*) FROM {qualified(source, schema, source_table)}"
    if plan.where:
        if is_postgres(source) and plan.params:
            sql = sql.replace("%", "%%")  # the identifiers' own % signs, not placeholders
        sql += f" WHERE {plan.where}"
    with source.connect() as conn:
        return int(conn.exec_driver_sql(sql, plan.params or None).scalar_one())


def membership(engine: Engine, columns: tuple[str, ...], ids: list[int]) -> tuple[str, tuple]:
    """A WHERE clause saying every column is one of ``ids``, with the ids bound as a single
    parameter per column (an array on PostgreSQL, a JSON array read by json_each on SQLite),
    so the statement's size does not grow with the set and no value is pasted into SQL."""
    if is_postgres(engine):
        # the driver's placeholders are %s: any % inside an identifier is doubled
        terms = [
            f"{quote(engine, c).replace('%', '%%')} = ANY(CAST(%s AS BIGINT[]))" for c in columns
        ]
        value: object = ids
    else:
        terms = [f"{quote(engine, c)} IN (SELECT value FROM json_each(?))" for c in columns]
        value = json.dumps(ids)
    return " AND ".join(terms), tuple(value for _ in columns)
