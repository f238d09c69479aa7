"""Side-by-side throughput and memory measurements; see BENCHMARKS.md for the results.

Run from the repository root, e.g.::

    python -m benchmarks.run machine
    python -m benchmarks.run postgres --rows 1000000 10000000
    python -m benchmarks.run sqlite-csv --rows 1000000
    python -m benchmarks.run statistics --rows 10000000
    python -m benchmarks.run memory --rows 1000000 10000000 50000000
    python -m benchmarks.run demo

Each command prints one JSON object per figure (and appends it to benchmarks/results.jsonl).
PostgreSQL figures use a fresh database on SYNTH_BENCH_POSTGRES_URL (default the local server,
postgresql://postgres@127.0.0.1:5432/postgres), dropped afterwards.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics as stats_
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from synth_pipeline.core.database import normalise_url, open_destination, open_source
from synth_pipeline.core.pg_copy import COPY_BINARY_HEADER, COPY_BINARY_TRAILER, binary_copy_rows
from synth_pipeline.core.schema import ColumnDef
from synth_pipeline.core.synthesise import FIRST_CHUNK_ROWS
from synth_pipeline.core.write import RegisterEntry, _sqlite_rows, _table, replace_table

from .tables import measurement_run

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.jsonl"
PG = os.environ.get("SYNTH_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
CHUNK = 262_144  # the project default chunk_rows
ENTRY = RegisterEntry("synthetic", "sha256:benchmark", 0, 1.0, {}, "benchmark")


def emit(**figure) -> None:
    figure["command"] = "python -m benchmarks.run " + " ".join(sys.argv[1:])
    figure["at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    line = json.dumps(figure)
    print(line, flush=True)
    with RESULTS.open("a") as f:
        f.write(line + "\n")


def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in cpuinfo if ln.startswith("model name")), "?")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem = next(ln.split()[1] for ln in meminfo if ln.startswith("MemTotal"))
    import dagster
    import numpy
    import psycopg
    import pyarrow

    eng = sa.create_engine(normalise_url(PG))
    with eng.connect() as conn:
        pg = conn.execute(sa.text("SHOW server_version")).scalar_one()
    eng.dispose()
    import sqlite3

    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(int(mem) / 2**20, 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "polars": pl.__version__,
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
        "sqlalchemy": sa.__version__,
        "psycopg": psycopg.__version__,
        "dagster": dagster.__version__,
        "postgresql": pg,
        "sqlite": sqlite3.sqlite_version,
        "load_average_1min": os.getloadavg()[0],
    }


@contextlib.contextmanager
def fresh_postgres():
    name = f"synth_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(normalise_url(PG), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = normalise_url(PG).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def columns_of(run) -> list[ColumnDef]:
    return [ColumnDef(n, c.type, c.max_length) for n, c in run.config.columns.items()]


def pipeline_write(engine, run, table: str, chunk_rows: int = CHUNK) -> float:
    start = time.perf_counter()
    rows = replace_table(
        engine,
        None,
        table,
        columns_of(run),
        run.chunks(chunk_rows, first_rows=FIRST_CHUNK_ROWS),
        primary_key="measurement_id",
        entry=ENTRY,
    )
    assert rows == run.rows
    return time.perf_counter() - start


def raw_copy(engine, cols, table: str, payload: list, fmt: str) -> float:
    """COPY prepared bytes from memory into a new table in one transaction: the limit."""
    names = ", ".join(f'"{c.name}"' for c in cols)
    with engine.begin() as conn:
        _table(table, None, cols, None, None).drop(conn, checkfirst=True)
        _table(table, None, cols, None, None).create(conn)
    start = time.perf_counter()
    with engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()
        with cur.copy(f'COPY "{table}" ({names}) FROM STDIN (FORMAT {fmt})') as copy:
            for part in payload:
                copy.write(part)
    return time.perf_counter() - start


def drop(engine, table: str) -> None:
    with engine.begin() as conn:
        _table(table, None, [ColumnDef("x", "integer")], None, None).drop(conn, checkfirst=True)


def cmd_postgres(args) -> None:
    for rows in args.rows:
        run = measurement_run(rows)
        cols = columns_of(run)
        binary, csv = [COPY_BINARY_HEADER], []
        for df in run.chunks(CHUNK):
            binary += [memoryview(p) for p in binary_copy_rows(df, cols)]
            csv.append(
                df.write_csv(
                    include_header=False,
                    datetime_format="%Y-%m-%d %H:%M:%S%.6f",
                    date_format="%Y-%m-%d",
                ).encode()
            )
        binary.append(COPY_BINARY_TRAILER)
        size = {"binary_mb": sum(len(p) for p in binary) / 1e6, "csv_mb": sum(map(len, csv)) / 1e6}
        t = {"raw_binary": [], "raw_csv": [], "pipeline": []}
        with fresh_postgres() as url:
            engine = open_destination(url)
            for _rep in range(args.repeat):
                t["raw_binary"].append(raw_copy(engine, cols, "raw", binary, "BINARY"))
                drop(engine, "raw")
                t["pipeline"].append(pipeline_write(engine, run, "measurement"))
                t["raw_csv"].append(raw_copy(engine, cols, "raw", csv, "CSV"))
                drop(engine, "raw")
            engine.dispose()
        del binary, csv
        med = {k: stats_.median(v) for k, v in t.items()}
        emit(
            figure="postgres_write",
            rows=rows,
            columns=len(cols),
            repeat=args.repeat,
            seconds=t,
            rows_per_second={k: round(rows / v) for k, v in med.items()},
            pipeline_vs_raw_binary=round(med["raw_binary"] / med["pipeline"], 3),
            pipeline_vs_raw_csv=round(med["raw_csv"] / med["pipeline"], 3),
            **size,
        )


def cmd_sqlite_csv(args) -> None:
    for rows in args.rows:
        run = measurement_run(rows)
        cols = columns_of(run)
        frame = pl.concat(list(run.chunks(CHUNK)))
        tuples = [t for df in frame.iter_slices(CHUNK) for t in _sqlite_rows(df)]
        with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
            tmp = Path(tmp)
            t = {"sqlite_pipeline": [], "sqlite_raw_executemany": []}
            t |= {"csv_bundle_export": [], "polars_write_csv": [], "polars_write_parquet": []}
            t |= {"csv_bundle_export_postgres": []}
            for rep in range(args.repeat):
                db = tmp / f"p{rep}.sqlite"
                engine = open_destination(f"sqlite:///{db}")
                t["sqlite_pipeline"].append(pipeline_write(engine, run, "measurement"))
                raw = open_destination(f"sqlite:///{tmp / f'r{rep}.sqlite'}")
                with raw.begin() as conn:
                    _table("raw", None, cols, "measurement_id", None).create(conn)
                marks = ", ".join("?" for _ in cols)
                start = time.perf_counter()
                with raw.begin() as conn:
                    conn.exec_driver_sql(f'INSERT INTO "raw" VALUES ({marks})', tuples)
                t["sqlite_raw_executemany"].append(time.perf_counter() - start)
                raw.dispose()
                from synth_pipeline.core.bundle import export_table_csv

                start = time.perf_counter()
                export_table_csv(
                    engine, None, "measurement", cols, ["measurement_id"], tmp / "b.csv"
                )
                t["csv_bundle_export"].append(time.perf_counter() - start)
                engine.dispose()
                start = time.perf_counter()
                frame.write_csv(
                    tmp / "p.csv", datetime_format="%Y-%m-%d %H:%M:%S", date_format="%Y-%m-%d"
                )
                t["polars_write_csv"].append(time.perf_counter() - start)
                start = time.perf_counter()
                frame.write_parquet(tmp / "p.parquet")
                t["polars_write_parquet"].append(time.perf_counter() - start)
                for f in tmp.glob("*.sqlite"):
                    f.unlink()
            with fresh_postgres() as url:
                engine = open_destination(url)
                pipeline_write(engine, run, "measurement")
                from synth_pipeline.core.bundle import export_table_csv

                for _rep in range(args.repeat):
                    start = time.perf_counter()
                    export_table_csv(
                        engine, None, "measurement", cols, ["measurement_id"], tmp / "pg.csv"
                    )
                    t["csv_bundle_export_postgres"].append(time.perf_counter() - start)
                engine.dispose()
            same = (tmp / "pg.csv").read_bytes() == (tmp / "b.csv").read_bytes()
        med = {k: stats_.median(v) for k, v in t.items()}
        emit(
            figure="sqlite_and_csv",
            rows=rows,
            columns=len(cols),
            repeat=args.repeat,
            seconds=t,
            rows_per_second={k: round(rows / v) for k, v in med.items()},
            sqlite_pipeline_vs_raw_executemany=round(
                med["sqlite_raw_executemany"] / med["sqlite_pipeline"], 3
            ),
            bundle_vs_polars_write_csv=round(med["polars_write_csv"] / med["csv_bundle_export"], 3),
            bundle_from_postgres_and_sqlite_identical=same,
        )


def cmd_statistics(args) -> None:
    """``summarise_table`` against one count(*) scan, in both of its modes: the default (above
    1M rows, high-cardinality columns from a sample) and exact (no sampling at any size)."""
    from sqlalchemy import event

    from synth_pipeline.core.disclosure import DisclosurePolicy
    from synth_pipeline.core.schema import read_table_schema
    from synth_pipeline.core.summarise import SAMPLE_ROWS, summarise_table

    modes = {"summarise_table": SAMPLE_ROWS, "summarise_table_exact": 10**12}
    for rows in args.rows:
        run = measurement_run(rows)
        with fresh_postgres() as url:
            engine = open_destination(url)
            pipeline_write(engine, run, "measurement")
            engine.dispose()
            src = open_source(url)
            table = read_table_schema(src, None, "measurement")
            statements: list[str] = []

            @event.listens_for(src, "before_cursor_execute")
            def record(conn, cursor, statement, params, context, executemany, seen=statements):
                if '"measurement"' in statement and " LIMIT " not in statement:
                    seen.append(statement)

            t: dict[str, list[float]] = {"count_star": [], **{m: [] for m in modes}}
            reads: dict[str, int] = {}
            findings: dict[str, list[str]] = {}
            for _rep in range(args.repeat):
                start = time.perf_counter()
                with src.connect() as conn:
                    n = conn.execute(sa.text('SELECT count(*) FROM "measurement"')).scalar_one()
                t["count_star"].append(time.perf_counter() - start)
                assert n == rows
                for mode, sample_rows in modes.items():
                    statements.clear()
                    start = time.perf_counter()
                    stats = summarise_table(
                        src, None, table, DisclosurePolicy(), sample_rows=sample_rows
                    )
                    t[mode].append(time.perf_counter() - start)
                    reads[mode] = len(statements)
                    findings[mode] = [f for f in stats.findings if "sample" in f]
            src.dispose()
        med = {k: stats_.median(v) for k, v in t.items()}
        emit(
            figure="statistics_postgres",
            rows=rows,
            columns=len(table.columns),
            repeat=args.repeat,
            seconds=t,
            statements_reading_the_table=reads,
            sample_findings=findings,
            summarise_in_count_star_scans=round(med["summarise_table"] / med["count_star"], 1),
            exact_in_count_star_scans=round(med["summarise_table_exact"] / med["count_star"], 1),
        )


def child_memory(rows: int, sink: str) -> None:
    """Generate ``rows`` (and encode for COPY), into nothing or into PostgreSQL."""
    run = measurement_run(rows)
    start = time.perf_counter()
    if sink == "postgres":
        with fresh_postgres() as url:
            engine = open_destination(url)
            pipeline_write(engine, run, "measurement")
            engine.dispose()
    else:
        cols = columns_of(run)
        n = 0
        for df in run.chunks(CHUNK):
            for piece in df.iter_slices(65_536):
                binary_copy_rows(piece, cols)
            n += df.height
        assert n == rows
    print(json.dumps({"seconds": time.perf_counter() - start}))


def cmd_memory(args) -> None:
    for sink in args.sinks:
        for rows in args.rows:
            if sink == "postgres" and rows > 10_000_000:
                continue
            proc = subprocess.Popen(
                [sys.executable, "-m", "benchmarks.run", "memory-child", str(rows), sink],
                stdout=subprocess.PIPE,
                cwd=HERE.parent,
            )
            out = proc.stdout.read()  # type: ignore[union-attr]
            _, status, usage = os.wait4(proc.pid, 0)
            assert status == 0, out
            seconds = json.loads(out.decode().strip().splitlines()[-1])["seconds"]
            emit(
                figure="peak_memory",
                rows=rows,
                sink=sink,
                peak_rss_mib=round(usage.ru_maxrss / 1024, 1),
                seconds=round(seconds, 2),
                rows_per_second=round(rows / seconds),
            )


def cmd_demo(args) -> None:
    """`synth-pipeline demo` end to end (all tables, through Dagster), in a child process."""
    for label, code in [("this branch", str(HERE.parent))] + [("other", c) for c in args.compare]:
        for _rep in range(args.repeat):
            out = Path(tempfile.mkdtemp(prefix="synth-demo-", dir=args.scratch))
            env = dict(os.environ, PYTHONPATH=code, SYNTH_WORK_DIR=str(out / "work"))
            env["DAGSTER_HOME"] = str(out / "work" / "dagster_home")
            # the demo source is built once into the work dir; build it before timing
            subprocess.run(
                [
                    sys.executable,
                    "-c",
                    "from synth_pipeline import environment; "
                    "from synth_pipeline.demo.loader import ensure_demo_sqlite; "
                    "ensure_demo_sqlite(environment.demo_source_path())",
                ],
                env=env,
                check=True,
                cwd=code,
            )
            start = time.perf_counter()
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "import sys; from synth_pipeline.cli import main; sys.exit(main(sys.argv[1:]))",
                    "demo",
                    "--out",
                    str(out / "demo"),
                ],
                env=env,
                cwd=code,
                stdout=subprocess.PIPE,
            )
            text = proc.stdout.read().decode()  # type: ignore[union-attr]
            _, status, usage = os.wait4(proc.pid, 0)
            seconds = time.perf_counter() - start
            manifest = json.loads((out / "demo" / "bundle" / "manifest.json").read_text())
            rows = sum(t["rows"] for t in manifest["tables"])
            emit(
                figure="demo_end_to_end",
                code=label if label == "this branch" else code,
                exit_status=status >> 8,
                seconds=round(seconds, 1),
                tables=len(manifest["tables"]),
                bundle_rows=rows,
                peak_rss_mib=round(usage.ru_maxrss / 1024, 1),
                failed=[ln.strip() for ln in text.splitlines() if "FAILED" in ln],
            )
            shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("machine")
    for name in ("postgres", "sqlite-csv", "statistics"):
        s = sub.add_parser(name)
        s.add_argument("--rows", type=int, nargs="+", default=[1_000_000])
        s.add_argument("--repeat", type=int, default=3)
        s.add_argument("--scratch", default=None, help="folder for scratch files")
    m = sub.add_parser("memory")
    m.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000, 50_000_000])
    m.add_argument("--sinks", nargs="+", default=["none", "postgres"])
    c = sub.add_parser("memory-child")
    c.add_argument("n", type=int)
    c.add_argument("sink")
    d = sub.add_parser("demo")
    d.add_argument("--repeat", type=int, default=1)
    d.add_argument("--scratch", default=None)
    d.add_argument("--compare", nargs="*", default=[], help="other checkouts to time the same way")
    args = p.parse_args()
    if args.cmd == "machine":
        emit(figure="machine", **machine())
    elif args.cmd == "postgres":
        cmd_postgres(args)
    elif args.cmd == "sqlite-csv":
        cmd_sqlite_csv(args)
    elif args.cmd == "statistics":
        cmd_statistics(args)
    elif args.cmd == "memory":
        cmd_memory(args)
    elif args.cmd == "memory-child":
        child_memory(args.n, args.sink)
    elif args.cmd == "demo":
        cmd_demo(args)


if __name__ == "__main__":
    main()
