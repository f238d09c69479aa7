"""The CLI's work on an extract done by the library alone, without Dagster: what ``init`` and
``run`` (and ``demo``) do to each table, so that the wall time of the command minus this one is
Dagster's share (see dagster_share.py).

Per table, parents first, as the assets do it: the schema snapshot, the released statistics
(disclosure control, the noise of differential privacy when the project sets it), the proposal;
``init`` drafts or refreshes the config file; ``run`` checks the approved config against the
statistics, writes the table, measures it (references, rules, fidelity against the approved
statistics and against the source, privacy against the source) and finally publishes the
bundle. Left out: the trusted-environment HTML reports and Achilles (the command is timed with
``SYNTH_ACHILLES=off`` too).

    python -m benchmarks.direct_core init --source URL --config-dir DIR --project P
    python -m benchmarks.direct_core run --source URL --config-dir DIR --project P \\
        --destination URL --bundle DIR --work-dir DIR
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from synth_pipeline.core.config import approval_problem
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_source, open_writable_destination
from synth_pipeline.core.fidelity_source import score_against_source
from synth_pipeline.core.generation import (
    Generation,
    current_approved_config,
    measure_written_table,
    write_table,
)
from synth_pipeline.core.privacy_measure import assess_table
from synth_pipeline.core.propose import (
    propose_table_config,
    refresh_table_config,
)
from synth_pipeline.core.publication import publish_bundle
from synth_pipeline.core.schema import list_tables, read_table_schema, unusable_name
from synth_pipeline.core.table_checks import register_outcomes, table_outcomes
from synth_pipeline.core.table_order import order_parents_first
from synth_pipeline.core.table_statistics import released_statistics
from synth_pipeline.core.write import read_register, record_checks


def _statistics(engine, schema, table: str, files: ProjectFiles, work_dir: Path):
    """(snapshot, statistics, source fingerprint) of one source table, as column_stats has them."""
    snapshot = read_table_schema(engine, schema, table)
    released = released_statistics(engine, schema, snapshot, files.load_project(), work_dir)
    return snapshot, released.stats, released.fingerprint


def _review(files: ProjectFiles, snapshot, stats, fingerprint: str) -> None:
    """What reviewed_config does: draft a new table's file, refresh one whose source changed."""
    proposed = propose_table_config(snapshot, stats)
    if not files.has_table(snapshot.name):
        files.save_table(proposed)
    else:
        existing = files.load_table(snapshot.name)
        if existing.source.fingerprint != fingerprint:
            files.save_table(refresh_table_config(existing, proposed))
    approval_problem(files.load_table(snapshot.name), fingerprint)


def _tables(engine, schema, tables: list[str] | None) -> list[str]:
    names = [t for t in (tables or sorted(list_tables(engine, schema))) if not unusable_name(t)]
    return order_parents_first(names)


def init(source_url: str, schema: str | None, files: ProjectFiles, work_dir: Path) -> int:
    """Draft every table's config; returns the number of tables."""
    if not files.exists():
        files.save_project(files.load_project())
    engine = open_source(source_url)
    try:
        tables = _tables(engine, schema, None)
        for table in tables:
            _review(files, *_statistics(engine, schema, table, files, work_dir))
    finally:
        engine.dispose()
    return len(tables)


def run(
    source_url: str,
    schema: str | None,
    files: ProjectFiles,
    destination_url: str,
    bundle: Path,
    work_dir: Path,
) -> int:
    """Generate every configured table of the source and publish the bundle; returns rows."""
    config = files.load_project()
    source = open_source(source_url)
    destination = open_writable_destination(destination_url, None)
    generation = Generation(config.seed, config.scale, config.chunk_rows)
    written_rows, reports = 0, {}
    try:
        for table in _tables(source, schema, None):
            if not files.has_table(table):
                continue
            snapshot, stats, fingerprint = _statistics(source, schema, table, files, work_dir)
            _review(files, snapshot, stats, fingerprint)
            cfg = current_approved_config(files, table, files.load_table(table), fingerprint)
            written = write_table(
                files,
                cfg,
                source=source,
                source_schema=schema,
                destination=destination,
                schema=None,
                generation=generation,
            )
            written_rows += written.rows
            measured = measure_written_table(files, cfg, written, destination, None)
            if measured.fidelity is not None:
                score_against_source(
                    source, schema, destination, None, cfg, measured.fidelity, config.disclosure.k
                )
            privacy = assess_table(
                source, schema, destination, None, cfg, config.disclosure, config.privacy
            )
            privacy.written_at = read_register(destination, None).get(table, {}).get("written_at")
            if cfg.kind == "synthetic":
                reports[table] = privacy
            if written.generated:
                outcomes = table_outcomes(written, measured, config.fidelity, privacy)
                record_checks(
                    destination, None, table, cfg.fingerprint(), register_outcomes(outcomes)
                )
        publish_bundle(
            files,
            destination,
            None,
            bundle,
            seed=config.seed,
            scale=config.scale,
            privacy_for=lambda tables: {t: reports.get(t) for t in tables},
        )
    finally:
        source.dispose()
        destination.dispose()
    return written_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["init", "run"])
    parser.add_argument("--source", required=True)
    parser.add_argument("--schema")
    parser.add_argument("--config-dir", required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--destination")
    parser.add_argument("--bundle")
    parser.add_argument("--work-dir", required=True)
    args = parser.parse_args(argv)
    files = ProjectFiles(Path(args.config_dir), args.project)
    work_dir = Path(args.work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    if args.command == "init":
        done = f"{init(args.source, args.schema, files, work_dir)} tables drafted"
    else:
        rows = run(args.source, args.schema, files, args.destination, Path(args.bundle), work_dir)
        done = f"{rows:,} rows written"
    print(f"{done} in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
