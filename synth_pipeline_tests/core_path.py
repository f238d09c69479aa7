"""The default path through the library alone, without Dagster: what `init`, `approve --all`
and `run` do to each table (snapshot, statistics, proposal, approval, generation, write), in a
few seconds for a small extract. The tests that only need to know whether whatever `init`
drafts `run` accepts, and whether the rows keep the CDM's rules, use it; the CLI tests prove
the same path through Dagster on a few extracts."""

from __future__ import annotations

from pathlib import Path

from synth_pipeline.core.config import ProjectConfig, approve
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_destination, open_source
from synth_pipeline.core.propose import propose_table_config
from synth_pipeline.core.schema import ColumnDef, list_tables, read_table_schema
from synth_pipeline.core.summarise import summarise_table
from synth_pipeline.core.synthesise import TableRun, written_width
from synth_pipeline.core.write import RegisterEntry, replace_table

PROJECT = "core"


def draft_and_approve(
    source_url: str, root: Path, source_schema: str | None = None
) -> ProjectFiles:
    """Every table of the source drafted with the project's defaults and approved as drafted."""
    files = ProjectFiles(root, PROJECT)
    files.save_project(ProjectConfig(project=PROJECT))
    project = files.load_project()
    engine = open_source(source_url)
    try:
        for table in list_tables(engine, source_schema):
            schema = read_table_schema(engine, source_schema, table)
            stats = summarise_table(
                engine,
                source_schema,
                schema,
                project.disclosure,
                project.conditional.get(table, {}),
                sample_rows=project.statistics_sample_rows,
            )
            cfg = propose_table_config(schema, stats)
            files.save_table(approve(cfg, "core path", cfg.source.fingerprint))
    finally:
        engine.dispose()
    return files


def generate(files: ProjectFiles, destination_url: str, seed: int = 42) -> dict[str, int]:
    """Every synthetic table of the project written to the destination; rows per table."""
    engine = open_destination(destination_url)
    written = {}
    try:
        for table in files.tables():
            cfg = files.load_table(table)
            if cfg.kind != "synthetic":
                continue
            run = TableRun.for_project(files, cfg, seed, 1.0)
            columns = [ColumnDef(n, c.type, written_width(c)) for n, c in cfg.columns.items()]
            entry = RegisterEntry("synthetic", cfg.fingerprint(), seed, 1.0, {}, "core path")
            written[table] = replace_table(
                engine,
                None,
                table,
                columns,
                run.chunks(1 << 18),
                primary_key=cfg.primary_key,
                entry=entry,
            )
    finally:
        engine.dispose()
    return written
