"""What a bundle's vocabulary holds, for its README: public or site-local, and the concept names
reports show.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from .config_files import ProjectFiles
from .database import qualified, quote
from .transfer import with_where
from .vocabulary import (
    released_concepts,
)
from .vocabulary_source import (
    SITE_LOCAL_ABOVE,
    Clause,
    SiteLocalRule,
    count_rows,
    in_list,
    is_site_local_concept,
    local_vocabularies,
    render_clauses,
    site_local_rule,
)

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
    configs = {t: files.load_table(t, shared=True) for t in tables if files.has_table(t)}
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
        local_rows = [Clause(f"COALESCE({quote(engine, 'concept_id')}, 0) > {SITE_LOCAL_ABOVE}")]
        if local:
            of_local = in_list(engine, quote(engine, "vocabulary_id"), local, "TEXT")
            local_rows = [Clause(f"({local_rows[0].sql} OR {of_local.sql})", of_local.params)]
        out.site_local_concepts = count_rows(
            engine, schema, "concept", *render_clauses(engine, local_rows)
        )
        where, params = render_clauses(
            engine, [in_list(engine, quote(engine, "concept_id"), wanted, "BIGINT")]
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
