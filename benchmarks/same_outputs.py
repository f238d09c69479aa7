"""Whether two runs of ``benchmarks/direct_core.py`` (init then run, see library_speed.md) wrote
the same outputs: the bundle's CSV and Parquet files and every config file byte for byte, the
bundle's reports and the destination database (tables, register and its check outcomes with
every privacy and fidelity figure) equal once timestamps are set aside.

    python -m benchmarks.same_outputs RUN_A RUN_B

Each run folder holds ``bundle/``, ``initcfg/`` (init's drafts), ``configs/`` (run's project)
and ``synthetic.sqlite``. Exit status 0 when they agree; the differences are printed.
"""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path

STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?")
KEY_NAME = re.compile(r"_(pk|fk|uq)_[0-9a-f]{8}")  # constraint names drawn at random
EXACT = {".csv", ".parquet", ".yaml", ".yml"}
STAMPED = {"README.md", "fidelity.html", "privacy.md", "manifest.json"}  # carry a creation time


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*") if p.is_file()}


def _manifest(data: bytes) -> str:
    """The manifest without its creation time and the checksums of the stamped reports."""
    manifest = json.loads(data)
    manifest.pop("created_at", None)

    def strip(o):
        if isinstance(o, dict):
            if Path(str(o.get("file", ""))).name in STAMPED:
                o = {k: v for k, v in o.items() if k not in ("sha256", "bytes")}
            return {k: strip(v) for k, v in o.items()}
        return [strip(v) for v in o] if isinstance(o, list) else o

    return STAMP.sub("<time>", json.dumps(strip(manifest), sort_keys=True))


def _folder(a: Path, b: Path, name: str) -> list[str]:
    fa, fb = _files(a / name), _files(b / name)
    out = [f"{name}: only in one run: {sorted(map(str, fa ^ fb))}"] if fa != fb else []
    for rel in sorted(fa & fb):
        da, db = (a / name / rel).read_bytes(), (b / name / rel).read_bytes()
        if da == db:
            continue
        if rel.name == "manifest.json":
            same = _manifest(da) == _manifest(db)
        elif rel.suffix in EXACT or rel.name not in STAMPED:
            same = False
        else:
            same = STAMP.sub("", da.decode()) == STAMP.sub("", db.decode())
        if not same:
            out.append(f"{name}/{rel}: differs")
    return out


def _database(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        dump = "\n".join(conn.iterdump())
    return KEY_NAME.sub("_key", STAMP.sub("<time>", dump))


def compare(a: Path, b: Path) -> list[str]:
    out = [d for name in ("bundle", "initcfg", "configs") for d in _folder(a, b, name)]
    if _database(a / "synthetic.sqlite") != _database(b / "synthetic.sqlite"):
        out.append("synthetic.sqlite: differs")
    return out


def main(argv: list[str] | None = None) -> int:
    a, b = (Path(p) for p in (argv or sys.argv[1:]))
    problems = compare(a, b)
    print("\n".join(problems) or f"the same outputs: {a} and {b}")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
