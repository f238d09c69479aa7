"""Publishing a project's bundle from its destination, whoever asks (the csv_bundle asset, a
benchmark): only tables whose latest generation passed every blocking check, against the
approved configs of now, that fit together, and whose privacy report allows it; then the files,
their manifest and the reports, verified. A table generated on a Dask cluster has its files
written from the Parquet parts it was loaded from when they are exactly its rows
(core/bundle_parts.py); the gates are the same either way."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from .bundle import BundleSpec, verify_bundle, write_bundle
from .bundle_parts import kept_parts
from .config_files import ProjectFiles
from .errors import SynthPipelineError
from .fidelity import TableFidelity, table_fidelity
from .integrity import stale_references, unreleasable
from .privacy import PrivacyReport
from .privacy_bundle import bundle_problems, privacy_markdown
from .report import concept_labels, fidelity_html
from .rule_checks import count_violations
from .schema import ColumnDef
from .vocabulary_bundle import bundle_vocabulary, concept_names
from .write import read_register


@dataclass
class PublishedBundle:
    manifest: dict
    included: dict[str, dict]  # the register's entry of each table in the bundle
    generated: list[str]  # the synthetic tables among them (the others are copies)
    fidelity: list[TableFidelity]
    problems: list[str]  # what verifying the written files found
    read_from: dict[str, str]  # per table: the destination, or the parts it was loaded from


def releasable_tables(files: ProjectFiles, engine: sa.Engine, schema: str | None) -> dict:
    """The register's entries of the tables the bundle may hold; raises naming what refuses."""
    register = read_register(engine, schema)
    configured = set(files.tables())
    included = {t: e for t, e in register.items() if t in configured and e["kind"] != "skip"}
    # only tables whose latest generation passed every blocking check, from the approved
    # config of now, whichever run wrote them
    refused = unreleasable(included, {t: files.load_table(t).fingerprint() for t in included})
    if refused:
        raise SynthPipelineError("the bundle is refused: " + "; ".join(refused))
    problems = stale_references(included)
    if problems:
        raise SynthPipelineError(
            "the destination's tables do not fit together: " + "; ".join(problems)
        )
    return included


def bundle_tables(files, engine, schema, included: dict) -> list[dict]:
    """What write_bundle needs of each table: its columns as the destination has them, and
    the Parquet parts kept for its version when it was generated on a Dask cluster (or why
    they cannot be used: core/bundle_parts.py)."""
    insp = sa.inspect(engine)
    tables = []
    for t, entry in sorted(included.items()):
        cfg = files.load_table(t)
        present = [c["name"] for c in insp.get_columns(t, schema=schema)]
        columns = [
            ColumnDef(n, cfg.columns[n].type if n in cfg.columns else "string", None)
            for n in present
        ]
        pk = cfg.primary_key if cfg.kind == "synthetic" and cfg.primary_key in present else None
        order_by = [pk] if pk else present
        tables.append(
            {
                "table": t,
                "kind": entry["kind"],
                "columns": columns,
                "order_by": order_by,
                "config_fingerprint": entry["config_fingerprint"],
                "parts": kept_parts(entry, cfg, columns, order_by),
            }
        )
    return tables


def _fidelity(files, engine, schema, included: dict) -> list[TableFidelity]:
    existing = set(sa.inspect(engine).get_table_names(schema=schema))
    out = []
    for t, entry in sorted(included.items()):
        cfg = files.load_table(t)
        if cfg.kind == "synthetic":
            violations = count_violations(engine, schema, cfg, existing)
            out.append(
                table_fidelity(engine, schema, cfg, entry.get("parent_rows") or {}, violations)
            )
    return out


def publish_bundle(
    files: ProjectFiles,
    engine: sa.Engine,
    schema: str | None,
    out: Path,
    *,
    seed: int,
    scale: float,
    privacy_for: Callable[[list[str]], dict[str, PrivacyReport | None]],
    on_table: Callable[[str, int], None] | None = None,
    on_rows: Callable[[str, int], None] | None = None,
) -> PublishedBundle:
    """Write the project's bundle to ``out`` (replaced atomically) and verify it.

    ``privacy_for`` gives the privacy report kept for each synthetic table; a table whose
    report refuses release stops the bundle before anything is written."""
    config = files.load_project()
    included = releasable_tables(files, engine, schema)
    # vocabulary tables are public reference data copied as they are: nothing to assess
    generated = sorted(t for t, e in included.items() if e["kind"] == "synthetic")
    privacy = privacy_for(generated)
    refused = bundle_problems(privacy, included)
    if refused:
        raise SynthPipelineError("the bundle is refused: " + "; ".join(refused))
    tables = bundle_tables(files, engine, schema, included)
    fidelity = _fidelity(files, engine, schema, included)
    threshold = config.fidelity.min_median_column_score
    names = concept_names(engine, schema, concept_labels(fidelity))
    spec = BundleSpec(
        project=files.project,
        tables=tables,
        seed=seed,
        scale=scale,
        vocabulary=bundle_vocabulary(files, engine, schema, [t["table"] for t in tables]),
        formats=config.bundle_formats,
        reports={
            "fidelity.html": lambda created: fidelity_html(
                files.project, fidelity, created, threshold, names=names
            ),
            "privacy.md": lambda created: privacy_markdown(
                files.project, [r for r in privacy.values() if r], created, config.disclosure
            ),
        },
    )
    manifest = write_bundle(engine, schema, out, spec, on_table=on_table, on_rows=on_rows)
    read_from = {t["table"]: t["read_from"] for t in tables}
    return PublishedBundle(manifest, included, generated, fidelity, verify_bundle(out), read_from)
