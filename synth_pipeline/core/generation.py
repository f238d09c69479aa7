"""One table's generation step as the library does it, whoever runs it (the synthetic_table
asset, a benchmark, a test): refuse a config that is not the approved one, write the table
(generated from its config, vocabulary copied from the source, or dropped when skipped), then
measure what was written (references, rules, fidelity against the approved statistics)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

import polars as pl
import sqlalchemy as sa

from . import GENERATOR_VERSION, omop
from .config import TableConfig, require_approved
from .config_files import ProjectFiles
from .database import redact_text
from .errors import ConfigError
from .fidelity import TableFidelity, table_fidelity
from .integrity import dangling_references
from .rule_checks import count_violations
from .schema import ColumnDef, list_tables
from .synthesise import FIRST_CHUNK_ROWS, TableRun, referenced_tables, written_width
from .transfer import copy_table
from .vocabulary import plan_copy as plan_vocabulary_copy
from .vocabulary import selected_rows as vocabulary_rows_selected
from .write import RegisterEntry, drop_table, read_register, replace_table

# given the rows a table is to have, the callback told the rows written so far
ProgressFor = Callable[[int], Callable[[int], None]]
# given a table's run and the chunk size, its rows as chunks while the block lasts (in-process
# by default; the Dask resource hands out a cluster's parts)
ChunksFor = Callable[[TableRun, int], AbstractContextManager[Iterator[pl.DataFrame]]]


def in_process_chunks(run: TableRun, chunk_rows: int):
    return nullcontext(run.chunks(chunk_rows, first_rows=FIRST_CHUNK_ROWS))


@dataclass(frozen=True)
class Generation:
    """What a run asks of the generation: its seed, scale and chunk size, and whether
    vocabulary tables are copied."""

    seed: int
    scale: float
    chunk_rows: int
    copy_vocabulary: bool = True


@dataclass
class WrittenTable:
    """What writing one table did."""

    table: str
    kind: str
    rows: int
    expected: int
    fingerprint: str
    # False when nothing new was written (a vocabulary copy skipped on request)
    generated: bool
    parent_rows: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what was done, for the log
    vocabulary_rule: str | None = None  # which vocabulary rows were copied, and why
    seconds: float = 0.0


@dataclass
class WrittenTableChecks:
    """What was measured on a written table; an error computing a value fails its check."""

    dangling: dict[str, int] | None = None
    references_error: str | None = None
    rules_error: str | None = None
    fidelity: TableFidelity | None = None


def columns_of(cfg: TableConfig) -> list[ColumnDef]:
    return [ColumnDef(name, c.type, written_width(c)) for name, c in cfg.columns.items()]


def current_approved_config(
    files: ProjectFiles, table: str, reviewed: TableConfig, source_fingerprint: str
) -> TableConfig:
    """The table's config file, refused unless it is the one reviewed_config checked and it is
    approved against the latest statistics (a source that changed since is refused even before
    reviewed_config is refreshed)."""
    cfg = files.load_table(table)
    if cfg.model_dump() != reviewed.model_dump():
        raise ConfigError(
            "the file changed after reviewed_config was materialised; materialise "
            f"reviewed_config[{table}] first so the change is checked",
            file=str(files.table_file(table)),
            table=table,
        )
    require_approved(cfg, source_fingerprint)
    return cfg


def write_table(
    files: ProjectFiles,
    cfg: TableConfig,
    *,
    source: sa.Engine,
    source_schema: str | None,
    destination: sa.Engine,
    schema: str | None,
    generation: Generation,
    progress_for: ProgressFor | None = None,
    chunks_for: ChunksFor = in_process_chunks,
) -> WrittenTable:
    """Write ``cfg``'s table into the destination, replacing it atomically."""
    table = cfg.table
    started = time.monotonic()
    entry = RegisterEntry(
        cfg.kind, cfg.fingerprint(), generation.seed, generation.scale, {}, GENERATOR_VERSION
    )
    out = WrittenTable(table, cfg.kind, 0, 0, cfg.fingerprint(), generated=cfg.kind != "skip")
    if cfg.kind == "skip":
        drop_table(destination, schema, table)
        out.notes.append(
            f"{table}: kind skip, not generated (removed from the destination if it was there)"
        )
    elif cfg.kind == "vocabulary" and not generation.copy_vocabulary:
        out.generated = False
        out.notes.append(
            f"{table}: vocabulary copy skipped on request; the destination's table is left as it "
            "is, and references into it wait for a later load"
        )
    elif cfg.kind == "vocabulary":
        plan, source_table = _plan_vocabulary_copy(files, cfg, out, source, source_schema)
        out.rows = copy_table(
            source,
            source_schema,
            source_table,
            destination,
            schema,
            table,
            columns_of(cfg),
            entry=entry,
            on_chunk=progress_for(out.expected) if progress_for else None,
            where=plan.where,
            params=plan.params,
        )
    else:
        run = TableRun.for_project(files, cfg, generation.seed, generation.scale)
        out.warnings = run.warnings
        out.parent_rows = {p: run.parent_rows(p) for p in set(referenced_tables(cfg).values())}
        entry.parent_rows = out.parent_rows
        out.expected = run.rows
        on_chunk = progress_for(out.expected) if progress_for else None
        with chunks_for(run, generation.chunk_rows) as chunks:
            # a cluster's parts are kept for the bundle: the register row says where
            entry.parts = getattr(chunks, "kept_at", None)
            out.rows = _replace(destination, schema, cfg, chunks, entry, on_chunk)
    out.seconds = time.monotonic() - started
    return out


def _replace(destination, schema, cfg: TableConfig, chunks, entry, on_chunk) -> int:
    """Load the generated chunks into a new table and swap it in (the primary key built
    after the load when the key is generated)."""
    generated_key = cfg.primary_key and cfg.columns[cfg.primary_key].generator == "primary_key"
    return replace_table(
        destination,
        schema,
        cfg.table,
        columns_of(cfg),
        chunks,
        primary_key=cfg.primary_key if generated_key else None,
        entry=entry,
        on_chunk=on_chunk,
    )


def _plan_vocabulary_copy(files, cfg, out: WrittenTable, source, source_schema):
    """(plan, the table's name in the source) of a vocabulary table's copy: by default only the rows for concepts the approved
    synthetic tables can contain (core/vocabulary.py), filtered in the source database."""
    names = list_tables(source, source_schema)
    plan = plan_vocabulary_copy(files, cfg, source, source_schema, names)
    out.notes.append(plan.describe())
    out.warnings += [f"{c}: values not listed, may not resolve in concept" for c in plan.unlisted]
    out.vocabulary_rule = plan.describe()
    source_table = names.get(cfg.table, cfg.table)
    # the rows the rule selects in the source now, which the copy must write
    out.expected = vocabulary_rows_selected(source, source_schema, source_table, plan)
    return plan, source_table


def measure_written_table(
    files: ProjectFiles,
    cfg: TableConfig,
    written: WrittenTable,
    destination: sa.Engine,
    schema: str | None,
) -> WrittenTableChecks:
    """References, rules and fidelity of a synthetic table just written (nothing to measure
    for a copied or skipped one)."""
    checks = WrittenTableChecks(dangling={})
    if cfg.kind != "synthetic":
        return checks
    checks.dangling, checks.references_error = guarded(
        lambda: dangling_references(
            destination, schema, cfg.table, referenced_tables(cfg), parent_keys(files, cfg)
        )
    )
    present = set(list_tables(destination, schema))
    violations, checks.rules_error = guarded(
        lambda: count_violations(destination, schema, cfg, present)
    )
    checks.fidelity = table_fidelity(
        destination, schema, cfg, written.parent_rows, violations or {}
    )
    return checks


def guarded(compute):
    """(value, None), or (None, the error's text) when computing it raised."""
    try:
        return compute(), None
    except Exception as exc:  # any error fails the check that needed the value
        text = " ".join(str(exc).split())
        return None, redact_text(f"{type(exc).__name__}: {text}")[:2000]


def parent_keys(files: ProjectFiles, cfg: TableConfig) -> dict[str, str | None]:
    """Each referenced parent's key column: from its config, else the OMOP spec."""
    out: dict[str, str | None] = {}
    for parent in set(referenced_tables(cfg).values()):
        key = files.load_table(parent, shared=True).primary_key if files.has_table(parent) else None
        if key is None:
            spec = omop.table_spec(parent)
            keys = spec.primary_key if spec else []
            key = keys[0] if len(keys) == 1 else None
        out[parent] = key
    return out


def parents_not_written(
    files: ProjectFiles,
    cfg: TableConfig,
    destination: sa.Engine,
    schema: str | None,
    generation: Generation,
) -> list[str]:
    """The project's parents of ``cfg``'s table that the destination does not yet hold as their
    approved configs ask (same config, seed and scale): the table's references would point at
    rows that are not there. A parent without a config file, a skipped one and the table itself
    (a self-reference) do not count."""
    register = read_register(destination, schema)
    missing = []
    for parent in sorted(set(referenced_tables(cfg).values()) - {cfg.table}):
        if not files.has_table(parent):
            continue
        parent_cfg = files.load_table(parent)
        if parent_cfg.kind == "skip" or (
            parent_cfg.kind == "vocabulary" and not generation.copy_vocabulary
        ):
            continue
        row = register.get(parent)
        current = (
            row is not None
            and row["config_fingerprint"] == parent_cfg.fingerprint()
            and row["seed"] == generation.seed
            and row["scale"] is not None
            and abs(row["scale"] - generation.scale) < 1e-12
        )
        if not current:
            missing.append(parent)
    return missing
