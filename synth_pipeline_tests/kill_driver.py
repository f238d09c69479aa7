"""A process for test_atomicity.py to kill with SIGKILL in the middle of a write.

    python -m synth_pipeline_tests.kill_driver table DEST_URL ROWS FINGERPRINT
        replace the demo's measurement table with ROWS generated rows; prints "rows N" after
        every chunk written
    python -m synth_pipeline_tests.kill_driver bundle DEST_URL OUT_DIR
        export the destination's `care` and `measurement` tables as a bundle at OUT_DIR;
        prints "table T" after each table

Both use the same core functions as the pipeline; nothing is stubbed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from synth_pipeline.core.bundle import BundleSpec, write_bundle
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_destination
from synth_pipeline.core.schema import ColumnDef
from synth_pipeline.core.synthesise import TableRun
from synth_pipeline.core.write import RegisterEntry, replace_table

CONFIGS = Path(__file__).resolve().parent.parent / "resources" / "configuration-files"
CHUNK = 65_536


def measurement_run(rows: int) -> TableRun:
    cfg = ProjectFiles(CONFIGS, "demo").load_table("measurement")
    return TableRun(
        cfg,
        seed=5,
        scale=rows / cfg.rows,
        parent_rows=lambda p: {"person": 5_000, "visit_occurrence": 9_000}.get(p, 0),
        parent_source_rows=lambda p: None,
    )


def columns(run: TableRun) -> list[ColumnDef]:
    return [ColumnDef(n, c.type, c.max_length) for n, c in run.config.columns.items()]


def write_measurement(url: str, rows: int, fingerprint: str, report=None) -> int:
    engine = open_destination(url)
    run = measurement_run(rows)
    try:
        return replace_table(
            engine,
            None,
            "measurement",
            columns(run),
            run.chunks(CHUNK),
            primary_key="measurement_id",
            entry=RegisterEntry("synthetic", fingerprint, 5, run.scale, {}, "test"),
            on_chunk=report,
        )
    finally:
        engine.dispose()


def bundle_tables(rows: int) -> list[dict]:
    run = measurement_run(rows)
    return [
        {
            "table": "care",
            "kind": "synthetic",
            "columns": [ColumnDef("care_id", "integer"), ColumnDef("name", "string")],
            "order_by": ["care_id"],
            "config_fingerprint": "sha256:care",
        },
        {
            "table": "measurement",
            "kind": "synthetic",
            "columns": columns(run),
            "order_by": ["measurement_id"],
            "config_fingerprint": "sha256:measurement",
        },
    ]


def export(url: str, out: Path, report=None) -> dict:
    engine = open_destination(url)
    try:
        return write_bundle(
            engine,
            None,
            out,
            BundleSpec(project="atomic", tables=bundle_tables(1), seed=5, scale=1.0),
            on_table=report,
        )
    finally:
        engine.dispose()


def _say(text: str) -> None:
    print(text, flush=True)


def main(argv: list[str]) -> None:
    if argv[0] == "table":
        url, rows, fingerprint = argv[1], int(argv[2]), argv[3]
        write_measurement(url, rows, fingerprint, report=lambda n: _say(f"rows {n}"))
    elif argv[0] == "bundle":
        export(argv[1], Path(argv[2]), report=lambda t, n: _say(f"table {t}"))
    else:
        raise SystemExit(f"unknown mode {argv[0]!r}")
    _say("done")


if __name__ == "__main__":
    main(sys.argv[1:])
