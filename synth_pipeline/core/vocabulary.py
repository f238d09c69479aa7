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

A site's own concepts are not public vocabulary either: OMOP reserves concept ids above
2,000,000,000 for them, and a local vocabulary has no concept of its own
(``vocabulary_concept_id`` 0) or a site-local one, or holds only site-local concepts. Under
``site_local: exclude`` (the default) their rows are left out of every vocabulary table: the
concepts, the synonyms, ancestors and relationships that name one, and the local vocabularies'
rows; ``site_local: include`` copies them, a reviewer's choice. The bundle's README says which.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import omop
from .config import TableConfig, approval_problem
from .config_files import ProjectFiles
from .database import is_postgres, pg_like, qualified, quote
from .errors import ConfigError
from .generators import CATALOGUE
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


def proposal(table: str) -> tuple[str, str | None, str]:
    """(kind, vocabulary_rows, finding) that ``init`` proposes for a vocabulary table; a
    copied table is also proposed ``site_local: exclude``."""
    if is_site_local(table):
        return (
            "skip",
            None,
            "site-local vocabulary table: not public and may hold the site's own codes; not "
            "copied (to copy it whole: kind: vocabulary, vocabulary_rows: all)",
        )
    return (
        "vocabulary",
        "referenced",
        rule_text(table, "referenced") + "; " + site_local_text("exclude"),
    )


def site_local_text(rule: SiteLocalRule) -> str:
    """What ``site_local`` does to a vocabulary table's copy, in words."""
    if rule == "include":
        return (
            "site_local: include: the site's own concepts (concept_id above 2,000,000,000) and "
            "local vocabularies are copied with the public rows (the reviewer chose to); they "
            "are not public OMOP vocabulary"
        )
    return (
        "site_local: exclude: the site's own concepts (concept_id above 2,000,000,000), the "
        "concepts of local vocabularies (vocabulary_concept_id 0 or above 2,000,000,000, or "
        "only site-local concepts in them) and those vocabularies' rows are left out, with the "
        "synonyms, ancestors and relationships that name them (include copies them)"
    )


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
    by_column: dict[str, set[int]] = field(default_factory=dict)  # "table.column" -> ids
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
        by_column = config_concepts(cfg, str(files.table_file(table)), out.unlisted)
        found = set().union(*by_column.values()) if by_column else set()
        out.by_column.update({f"{table}.{c}": ids for c, ids in by_column.items() if ids})
        if found:
            out.by_table[table] = len(found)
            out.ids |= found
    return out


def config_concepts(
    cfg: TableConfig, file: str | None = None, unlisted: list[str] | None = None
) -> dict[str, set[int]]:
    """Per concept-valued column of a synthetic table's config, the concept ids its generator
    can write; a column whose values are not a list is named in ``unlisted``."""
    out: dict[str, set[int]] = {}
    for name, col in cfg.columns.items():
        if col.generator is None or not is_concept_column(cfg.table, name):
            continue
        gen = CATALOGUE[col.generator]
        values = gen.possible_values(col.stats, gen.Params.model_validate(col.params))
        if values is None:
            if unlisted is not None:
                unlisted.append(f"{cfg.table}.{name} ({col.generator})")
            continue
        out[name] = set()
        for v in values:
            concept = _as_concept_id(v)
            if concept is None:
                raise ConfigError(
                    f"{v!r} is not a concept id; a concept-valued column needs whole numbers",
                    file=file,
                    table=cfg.table,
                    column=name,
                    setting="params" if col.generator == "constant" else "stats.values",
                )
            out[name].add(concept)
    return out


def site_local_columns(released: ReleasedConcepts) -> dict[str, list[int]]:
    """The columns whose released values include site-local concept ids, with those ids."""
    out = {}
    for column, ids in sorted(released.by_column.items()):
        local = sorted(i for i in ids if is_site_local_concept(i))
        if local:
            out[column] = local
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
    site_local: SiteLocalRule = "exclude"
    local_vocabularies: list[str] = field(default_factory=list)  # in the source
    site_local_rows: int = 0  # source rows the rule selects but site_local: exclude leaves out

    def describe(self) -> str:
        if self.rule == "all":
            text = f"{self.table}: vocabulary_rows all: every source row copied"
        elif self.concepts is None:
            text = f"{self.table}: vocabulary metadata, copied whole"
        else:
            text = (
                f"{self.table}: only rows for a set of {self.concepts} concepts are copied "
                f"({self.from_configs} listed in the approved synthetic configs, the rest named "
                "by the vocabulary metadata tables; vocabulary_rows: referenced)"
            )
        if is_site_local(self.table):
            return text + " (a site-local table, copied as the reviewer chose)"
        if self.site_local == "include":
            return (
                text + "; site-local concepts and local vocabularies included (site_local: include)"
            )
        names = self.local_vocabularies
        local = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        return (
            f"{text}, less {self.site_local_rows} rows of site-local concepts (ids above "
            f"{SITE_LOCAL_ABOVE:,}) and local vocabularies ({local or 'none in the source'}) "
            "(site_local: exclude)"
        )


def check_vocabulary_config(files: ProjectFiles, cfg: TableConfig) -> None:
    """Refuse a vocabulary table whose rows the chosen rule cannot decide (a site-local table
    under ``referenced``), and ``site_local`` on a table that is not copied from the
    vocabulary, naming the file and the setting."""
    if cfg.kind == "synthetic" and cfg.site_local is not None:
        raise ConfigError(
            "site_local applies to vocabulary tables only (kind: vocabulary); remove it",
            file=str(files.table_file(cfg.table)),
            table=cfg.table,
            setting="site_local",
        )
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
    table, rule, local_rule = cfg.table, cfg.vocabulary_rule, site_local_rule(cfg)
    # only the vocabulary table and the concept-level ones filter on local vocabularies
    needs_local = local_rule == "exclude" and (table == "vocabulary" or table in CONCEPT_LEVEL)
    local = local_vocabularies(source, source_schema, source_tables) if needs_local else []
    plan = CopyPlan(table, rule, site_local=local_rule, local_vocabularies=local)
    chosen: list[_Clause] = []
    if rule == "referenced" and table in CONCEPT_LEVEL:
        released = released_concepts(files)
        ids = set(released.ids) | metadata_concepts(
            files, source, source_schema, source_tables, local if needs_local else None
        )
        _require_columns(files, cfg, CONCEPT_LEVEL[table], "vocabulary_rows", "referenced")
        chosen = [
            _in_list(source, quote(source, c), sorted(ids), "BIGINT") for c in CONCEPT_LEVEL[table]
        ]
        plan.concepts, plan.from_configs = len(ids), len(released.ids)
        plan.unlisted = released.unlisted
    excluded = (
        site_local_clauses(files, cfg, source, source_schema, source_tables, local)
        if local_rule == "exclude"
        else []
    )
    plan.where, plan.params = _render(source, chosen + excluded)
    if excluded:
        src = source_tables.get(table, table)
        plan.site_local_rows = _count(source, source_schema, src, *_render(source, chosen)) - (
            _count(source, source_schema, src, plan.where, plan.params)
        )
    return plan


def _require_columns(
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
) -> list[_Clause]:
    """Conditions that keep a vocabulary table's rows clear of site-local concepts and local
    vocabularies (``local``), in the database of ``engine`` whose tables are ``tables``."""
    table = cfg.table
    if table == "vocabulary":
        return [_not_in_list(engine, quote(engine, "vocabulary_id"), local)] if local else []
    if table in METADATA:
        _require_columns(files, cfg, (METADATA[table],), "site_local", "exclude")
        return [_concept_not_site_local(engine, quote(engine, METADATA[table]))]
    if table not in CONCEPT_LEVEL:
        return []  # a site-local table the reviewer chose to copy whole
    _require_columns(files, cfg, CONCEPT_LEVEL[table], "site_local", "exclude")
    out = [_concept_not_site_local(engine, quote(engine, c)) for c in CONCEPT_LEVEL[table]]
    if local and table == "concept":
        _require_columns(files, cfg, ("vocabulary_id",), "site_local", "exclude")
        out.append(_not_in_list(engine, quote(engine, "vocabulary_id"), local))
    elif local and "concept" in tables:
        # the concepts of a local vocabulary, wherever their ids lie
        concept = qualified(engine, schema, tables["concept"])
        of_local = _in_list(engine, quote(engine, "vocabulary_id"), local, "TEXT")
        for c in CONCEPT_LEVEL[table]:
            out.append(
                _Clause(
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
    if _has_columns(
        engine, schema, tables, "vocabulary", ("vocabulary_id", "vocabulary_concept_id")
    ):
        own = quote(engine, "vocabulary_concept_id")
        queries.append(
            f"SELECT {v} FROM {qualified(engine, schema, tables['vocabulary'])} "
            f"WHERE COALESCE({own}, 0) = 0 OR {own} > {above}"
        )
    if _has_columns(engine, schema, tables, "concept", ("vocabulary_id", "concept_id")):
        queries.append(
            f"SELECT {v} FROM {qualified(engine, schema, tables['concept'])} "
            f"GROUP BY {v} HAVING MIN({c}) > {above}"
        )
    with engine.connect() as conn:
        for sql in queries:
            found |= {str(x) for x in conn.exec_driver_sql(sql).scalars() if x is not None}
    return sorted(found)


def _has_columns(
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
        not_null = _Clause(f"{quote(source, column)} IS NOT NULL")
        where, params = _render(source, [not_null, *clauses])
        sql = with_where(
            source,
            f"SELECT DISTINCT {quote(source, column)} FROM "
            f"{qualified(source, schema, source_tables[table])}",
            where,
            params,
        )
        with source.connect() as conn:
            for (value,) in conn.exec_driver_sql(sql, params or None):
                concept = _as_concept_id(value)
                if concept is not None:
                    out.add(concept)
    return out


def selected_rows(source: Engine, schema: str | None, source_table: str, plan: CopyPlan) -> int:
    """How many source rows ``plan`` lets through, counted in the source before the copy, so the
    row-count check compares the rows written with the rows the rule selects."""
    return _count(source, schema, source_table, plan.where, plan.params)


def _count(engine: Engine, schema: str | None, table: str, where: str | None, params: tuple) -> int:
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
class _Clause:
    sql: str  # over quoted identifiers and _MARK placeholders
    params: tuple = ()


def _in_list(engine: Engine, expr: str, values: list, sql_type: str) -> _Clause:
    if pg_like(engine):
        return _Clause(f"{expr} = ANY(CAST({_MARK} AS {sql_type}[]))", (list(values),))
    return _Clause(f"{expr} IN (SELECT value FROM json_each({_MARK}))", (json.dumps(values),))


def _not_in_list(engine: Engine, expr: str, values: list[str]) -> _Clause:
    inside = _in_list(engine, expr, values, "TEXT")
    return _Clause(f"({expr} IS NULL OR NOT ({inside.sql}))", inside.params)


def _concept_not_site_local(engine: Engine, expr: str) -> _Clause:
    return _Clause(f"COALESCE({expr}, 0) <= {SITE_LOCAL_ABOVE}")


def _render(engine: Engine, clauses: list[_Clause]) -> tuple[str | None, tuple]:
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


# ---------------------------------------------------------------------------------------------
# What a bundle's vocabulary holds, for its README


@dataclass
class BundleVocabulary:
    """What the vocabulary tables of a bundle hold, read from the destination and the configs."""

    tables: dict[
        str, tuple[str, SiteLocalRule]
    ]  # vocabulary table -> (vocabulary_rows, site_local)
    site_local_concepts: int = 0  # rows of the bundle's concept table that are site-local
    local_vocabularies: list[str] = field(default_factory=list)  # with a row in its vocabulary
    # "table.column" -> concept ids its config lists that have no row in the bundle's concept
    # table: site-local ones (above 2,000,000,000), and others (0, OMOP's "no concept", aside)
    site_local_without_rows: dict[str, list[int]] = field(default_factory=dict)
    others_without_rows: dict[str, list[int]] = field(default_factory=dict)


def bundle_vocabulary(
    files: ProjectFiles, engine: Engine, schema: str | None, tables: list[str]
) -> BundleVocabulary:
    """What the bundle of ``tables`` (written from the destination ``engine``) holds of the
    vocabulary: which tables under which rules, how many site-local concepts and local
    vocabularies, and which synthetic columns carry concept ids without a concept row."""
    configs = {t: files.load_table(t) for t in tables if files.has_table(t)}
    out = BundleVocabulary(
        {
            t: (c.vocabulary_rule, site_local_rule(c))
            for t, c in sorted(configs.items())
            if c.kind == "vocabulary"
        }
    )
    present = {t: t for t in out.tables}  # the destination spells them as the configs do
    local = local_vocabularies(engine, schema, present)
    if "vocabulary" in present and local:
        sql = f"SELECT {quote(engine, 'vocabulary_id')} FROM {qualified(engine, schema, 'vocabulary')}"
        with engine.connect() as conn:
            copied = {str(x) for x in conn.exec_driver_sql(sql).scalars()}
        out.local_vocabularies = sorted(copied & set(local))
    released = released_concepts(files)
    listed = {
        column: ids
        for column, ids in released.by_column.items()
        if column.split(".", 1)[0] in configs
    }
    wanted = sorted({i for ids in listed.values() for i in ids})
    known: set[int] = set()
    if "concept" in present:
        concept = qualified(engine, schema, "concept")
        local_rows = [_Clause(f"COALESCE({quote(engine, 'concept_id')}, 0) > {SITE_LOCAL_ABOVE}")]
        if local:
            of_local = _in_list(engine, quote(engine, "vocabulary_id"), local, "TEXT")
            local_rows = [_Clause(f"({local_rows[0].sql} OR {of_local.sql})", of_local.params)]
        out.site_local_concepts = _count(engine, schema, "concept", *_render(engine, local_rows))
        where, params = _render(
            engine, [_in_list(engine, quote(engine, "concept_id"), wanted, "BIGINT")]
        )
        sql = with_where(
            engine, f"SELECT {quote(engine, 'concept_id')} FROM {concept}", where, params
        )
        with engine.connect() as conn:
            known = {int(x) for x in conn.exec_driver_sql(sql, params or None).scalars()}
    for column, ids in sorted(listed.items()):
        missing = sorted(i for i in ids if i not in known and i != 0)
        site_local = [i for i in missing if is_site_local_concept(i)]
        others = [i for i in missing if not is_site_local_concept(i)]
        if site_local:
            out.site_local_without_rows[column] = site_local
        if others:
            out.others_without_rows[column] = others
    return out


def concept_names(engine: Engine, schema: str | None, ids: set[str]) -> dict[str, str]:
    """Names of the concepts among ``ids`` (as text), from the destination's concept table when
    it holds one (public vocabulary rows), for labelling the fidelity report's plots."""
    wanted = sorted({int(i) for i in ids if i.lstrip("-").isdigit() and int(i) != 0})
    if not wanted or "concept" not in {
        t.lower() for t in sa.inspect(engine).get_table_names(schema=schema)
    }:
        return {}
    out: dict[str, str] = {}
    with engine.connect() as conn:
        for start in range(0, len(wanted), 500):
            part = wanted[start : start + 500]
            rows = conn.execute(
                sa.text(
                    f"SELECT {quote(engine, 'concept_id')}, {quote(engine, 'concept_name')} "
                    f"FROM {qualified(engine, schema, 'concept')} WHERE "
                    f"{quote(engine, 'concept_id')} IN ({', '.join(str(i) for i in part)})"
                )
            ).all()
            out.update({str(c): str(n) for c, n in rows if n})
    return out
