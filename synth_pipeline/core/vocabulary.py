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

import copy
from dataclasses import dataclass, field

from sqlalchemy.engine import Engine

from . import omop
from .config import TableConfig, approval_problem
from .config_files import ProjectFiles
from .database import quote
from .errors import ConfigError
from .generators import CATALOGUE
from .vocabulary_source import (
    CONCEPT_LEVEL,
    METADATA,
    SITE_LOCAL_ABOVE,
    Clause,
    SiteLocalRule,
    as_concept_id,
    count_rows,
    in_list,
    is_site_local,
    is_site_local_concept,
    local_vocabularies,
    metadata_concepts,
    render_clauses,
    require_columns,
    site_local_clauses,
    site_local_rule,
)


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


_RELEASED: dict[tuple, ReleasedConcepts] = {}


def released_concepts(files: ProjectFiles) -> ReleasedConcepts:
    """Concept ids in the approved configs of the project's synthetic tables, from the files
    alone: the values each concept-valued column's generator can write. Remembered while no
    file of the project changes (a run asks once per vocabulary table); a copy is handed out."""
    key = (str(files.folder.resolve()), _files_stamp(files))
    if key not in _RELEASED:
        found = _released_concepts(files)
        _RELEASED.clear()
        _RELEASED[key] = found
    return copy.deepcopy(_RELEASED[key])


def _files_stamp(files: ProjectFiles) -> tuple:
    """Every file of the project by name, inode, size and modification time: a file written
    again (atomically: a new inode) changes it."""
    stats = ((p.name, p.stat()) for p in sorted(files.folder.glob("*.yaml")))
    return tuple((n, st.st_ino, st.st_size, st.st_mtime_ns) for n, st in stats)


def _released_concepts(files: ProjectFiles) -> ReleasedConcepts:
    out = ReleasedConcepts()
    for table in files.tables():
        cfg = files.load_table(table, shared=True)  # read only
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
            concept = as_concept_id(v)
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
    chosen: list[Clause] = []
    if rule == "referenced" and table in CONCEPT_LEVEL:
        released = released_concepts(files)
        ids = set(released.ids) | metadata_concepts(
            files, source, source_schema, source_tables, local if needs_local else None
        )
        require_columns(files, cfg, CONCEPT_LEVEL[table], "vocabulary_rows", "referenced")
        chosen = [
            in_list(source, quote(source, c), sorted(ids), "BIGINT") for c in CONCEPT_LEVEL[table]
        ]
        plan.concepts, plan.from_configs = len(ids), len(released.ids)
        plan.unlisted = released.unlisted
    excluded = (
        site_local_clauses(files, cfg, source, source_schema, source_tables, local)
        if local_rule == "exclude"
        else []
    )
    plan.where, plan.params = render_clauses(source, chosen + excluded)
    if excluded:
        src = source_tables.get(table, table)
        plan.site_local_rows = count_rows(
            source, source_schema, src, *render_clauses(source, chosen)
        ) - (count_rows(source, source_schema, src, plan.where, plan.params))
    return plan


def selected_rows(source: Engine, schema: str | None, source_table: str, plan: CopyPlan) -> int:
    """How many source rows ``plan`` lets through, counted in the source before the copy, so the
    row-count check compares the rows written with the rows the rule selects."""
    return count_rows(source, schema, source_table, plan.where, plan.params)
