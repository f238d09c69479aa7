"""Dagster's share of a command's wall time (issue 15), in one run on one machine.

For the bundled demo and for a generated extract of at least 300,000 rows, three ways to do the
same work, one after another, each in a fresh process with fresh state:

- the CLI of this checkout (``synth-pipeline demo``; ``init`` then ``run``),
- the CLI of another checkout given with ``--before`` (main before the change),
- the library alone (benchmarks/direct_core.py) on this checkout's code.

Dagster's share is (CLI - library) / CLI. The bundles of this checkout's CLI and of the library
must hold the same CSV files byte for byte, or the comparison is void (the script says so).
Achilles is switched off (SYNTH_ACHILLES=off) in every process; so is nothing else.

    PYTHONPATH=$PWD .venv/bin/python -m benchmarks.dagster_share --before ../main-before \\
        --persons 4000 --repeat 1 --out benchmarks/dagster_share.jsonl
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def _timed(command: list[str], *, checkout: Path, home: Path, env: dict | None = None) -> float:
    """Wall seconds of one command in a fresh process using ``checkout``'s code."""
    environ = {
        **os.environ,
        "PYTHONPATH": str(checkout),
        "SYNTH_ACHILLES": "off",
        "DAGSTER_HOME": str(home / "dagster_home"),
        "SYNTH_WORK_DIR": str(home / "work"),
        **(env or {}),
    }
    started = time.perf_counter()
    done = subprocess.run(
        command, cwd=checkout, env=environ, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"failed ({done.returncode}): {' '.join(command)}\n{tail}")
    return seconds


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "synth_pipeline.cli", *args]


def _direct(*args: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.direct_core", *args]


def _same_csv(a: Path, b: Path) -> list[str]:
    """The CSV files that differ between two bundles (or are missing from one)."""
    names = sorted({p.name for p in a.glob("*.csv")} | {p.name for p in b.glob("*.csv")})
    return [
        n
        for n in names
        if not ((a / n).exists() and (b / n).exists() and filecmp.cmp(a / n, b / n, False))
    ]


def demo(before: Path, scratch: Path) -> dict:
    """``synth-pipeline demo`` here and in ``before``, and the library on the same tables."""
    out: dict = {"extract": "demo (GiBleed)"}
    for name, checkout in (("this", HERE), ("before", before)):
        home = scratch / f"demo-{name}"
        out[f"cli_{name}"] = _timed(
            _cli("demo", "--out", str(home / "out")), checkout=checkout, home=home
        )
    home = scratch / "demo-direct"
    configs = home / "configs"
    shutil.copytree(HERE / "resources" / "configuration-files", configs)
    source = f"sqlite:///{scratch / 'demo-this' / 'work' / 'demo' / 'source.sqlite'}"
    out["direct"] = _timed(
        _direct(
            "run",
            "--source",
            source,
            "--config-dir",
            str(configs),
            "--project",
            "demo",
            "--destination",
            f"sqlite:///{home / 'synthetic.sqlite'}",
            "--bundle",
            str(home / "bundle"),
            "--work-dir",
            str(home / "work"),
        ),
        checkout=HERE,
        home=home,
    )
    out["bundles_differ"] = _same_csv(scratch / "demo-this" / "out" / "bundle", home / "bundle")
    return out


def _build_extract(path: Path, persons: int) -> tuple[str, int]:
    sys.path.insert(0, str(HERE))
    import sqlalchemy as sa

    from synth_pipeline_tests.omop_extracts import ExtractSpec, build_extract

    url = f"sqlite:///{path}"
    build_extract(url, ExtractSpec(name="bench", cdm_version="5.4", persons=persons, seed=7))
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        rows = sum(conn.execute(sa.text(f'SELECT COUNT(*) FROM "{t}"')).scalar_one() for t in names)
    engine.dispose()
    return url, rows


def extract(before: Path, scratch: Path, persons: int) -> dict:
    """``init`` + ``run`` of a generated extract here and in ``before``, and the library."""
    source, rows = _build_extract(scratch / "extract.sqlite", persons)
    out: dict = {"extract": f"generated, {persons:,} persons, {rows:,} source rows"}
    for name, checkout in (("this", HERE), ("before", before)):
        home = scratch / f"extract-{name}"
        project = ["--project", "bench", "--config-dir", str(home / "configs")]
        init = _timed(_cli("init", "--source", source, *project), checkout=checkout, home=home)
        _timed(_cli("approve", "--all", "--reviewer", "bench", *project), checkout=HERE, home=home)
        run = _timed(
            _cli(
                "run",
                "--source",
                source,
                "--destination",
                f"sqlite:///{home / 'synthetic.sqlite'}",
                "--bundle",
                str(home / "bundle"),
                *project,
            ),
            checkout=checkout,
            home=home,
        )
        out[f"cli_{name}"], out[f"cli_{name}_init"], out[f"cli_{name}_run"] = init + run, init, run
    home = scratch / "extract-direct"
    configs = ["--config-dir", str(home / "configs"), "--project", "bench"]
    common = ["--source", source, *configs, "--work-dir", str(home / "work")]
    init = _timed(_direct("init", *common), checkout=HERE, home=home)
    _timed(_cli("approve", "--all", "--reviewer", "bench", *configs), checkout=HERE, home=home)
    destination = f"sqlite:///{home / 'synthetic.sqlite'}"
    bundle = str(home / "bundle")
    run = _timed(
        _direct("run", *common, "--destination", destination, "--bundle", bundle),
        checkout=HERE,
        home=home,
    )
    out["direct"], out["direct_init"], out["direct_run"] = init + run, init, run
    out["bundles_differ"] = _same_csv(scratch / "extract-this" / "bundle", home / "bundle")
    return out


def _summary(result: dict) -> dict:
    this, before, direct = result["cli_this"], result["cli_before"], result["direct"]
    return {
        **result,
        "this_over_before": round(this / before, 3),
        "dagster_share": round((this - direct) / this, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", required=True, help="a checkout of main before the change")
    parser.add_argument("--persons", type=int, default=4000)
    parser.add_argument("--skip-extract", action="store_true")
    parser.add_argument("--out", default=str(HERE / "benchmarks" / "dagster_share.jsonl"))
    args = parser.parse_args(argv)
    before = Path(args.before).resolve()
    with tempfile.TemporaryDirectory(prefix="dagster-share-") as tmp:
        scratch = Path(tmp)
        results = [demo(before, scratch)]
        if not args.skip_extract:
            results.append(extract(before, scratch, args.persons))
    load = os.getloadavg()[0]
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True
    ).stdout.strip()
    with open(args.out, "a", encoding="utf-8") as fh:
        for r in results:
            row = {
                **_summary(r),
                "commit": commit,
                "load_after": load,
                "cpus": os.cpu_count(),
                "when": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
            fh.write(json.dumps(row) + "\n")
            print(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
