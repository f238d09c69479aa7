"""Assertions over a finished pipeline run, shared by the SQLite and PostgreSQL tests.

Each queries the real destination (and, for leak checks, the real source) by SQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
import yaml

from synth_pipeline.core import DISCLAIMER
from synth_pipeline.core.bundle import verify_bundle
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import qualified, quote
from synth_pipeline.core.schema import list_tables
from synth_pipeline.core.synthesise import referenced_tables, scaled_rows


def count(engine, sql: str, **params) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


def dangling_by_join(engine, schema, files: ProjectFiles) -> dict[str, int]:
    """Per child.column, rows whose reference matches no row of the parent table (a real anti-join)."""
    out = {}
    present = set(list_tables(engine, schema))
    for table in files.tables():
        cfg = files.load_table(table)
        if cfg.kind != "synthetic" or table not in present:
            continue
        for column, parent in referenced_tables(cfg).items():
            pcfg = files.load_table(parent)
            child = qualified(engine, schema, table)
            par = qualified(engine, schema, parent)
            c, p = quote(engine, column), quote(engine, pcfg.primary_key)
            out[f"{table}.{column}"] = count(
                engine,
                f"SELECT COUNT(*) FROM {child} c WHERE c.{c} IS NOT NULL AND NOT EXISTS "
                f"(SELECT 1 FROM {par} p WHERE p.{p} = c.{c})",
            )
    return out


def row_count_mismatches(
    engine, schema, files: ProjectFiles, scale: float
) -> dict[str, tuple[int, int]]:
    out = {}
    for table in files.tables():
        cfg = files.load_table(table)
        if cfg.kind != "synthetic":
            continue
        got = count(engine, f"SELECT COUNT(*) FROM {qualified(engine, schema, table)}")
        want = scaled_rows(cfg.rows, scale)
        if got != want:
            out[table] = (got, want)
    return out


def rare_values(engine, schema, table: str, column: str, k: int) -> set:
    """Values the source holds fewer than k times (the ones that must never leave)."""
    t, c = qualified(engine, schema, table), quote(engine, column)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(f"SELECT {c} FROM {t} WHERE {c} IS NOT NULL GROUP BY {c} HAVING COUNT(*) < :k"),
            {"k": k},
        ).all()
    return {r[0] for r in rows}


def leaked_rare_values(
    source, source_schema, destination, destination_schema, files: ProjectFiles
) -> list[str]:
    """Categories seen fewer than k times in the source that appear in a config or in a
    synthetic column generated from listed values."""
    k = files.load_project().disclosure.min_cell_count
    names = list_tables(source, source_schema)
    leaks = []
    for table in files.tables():
        cfg = files.load_table(table)
        if cfg.kind != "synthetic" or table not in names:
            continue
        for column, col in cfg.columns.items():
            if col.type in ("date", "datetime") or col.generator in ("primary_key", "foreign_key"):
                continue
            rare = rare_values(source, source_schema, names[table], column, k)
            if not rare:
                continue
            listed = {v.value for v in (col.stats.values or [])} if col.stats else set()
            for v in rare & listed:
                leaks.append(f"config {table}.{column} lists {v!r}")
            # listed values are categories; an `other: quantiles` share is numbers drawn through
            # coded quantiles, where any number in range may come up (checked by range elsewhere)
            if col.generator == "weighted_choice" and col.params.get("other") != "quantiles":
                t, c = qualified(destination, destination_schema, table), quote(destination, column)
                with destination.connect() as conn:
                    produced = {
                        r[0] for r in conn.execute(sa.text(f"SELECT DISTINCT {c} FROM {t}")).all()
                    }
                for v in rare & produced:
                    leaks.append(f"synthetic {table}.{column} holds {v!r}")
    return leaks


def bundle_problems(bundle: Path, files: ProjectFiles) -> list[str]:
    problems = verify_bundle(bundle)
    readme = (bundle / "README.md").read_text(encoding="utf-8")
    if readme.splitlines()[0] != DISCLAIMER:
        problems.append("README's first line is not the disclaimer")
    manifest = json.loads((bundle / "manifest.json").read_text())
    expected = {t for t in files.tables() if files.load_table(t).kind != "skip"}
    if {t["table"] for t in manifest["tables"]} != expected:
        problems.append(
            f"bundle tables {sorted(t['table'] for t in manifest['tables'])} != {sorted(expected)}"
        )
    for t in manifest["tables"]:
        lines = sum(1 for _ in (bundle / t["file"]).open(encoding="utf-8")) - 1
        if lines != t["rows"] and files.load_table(t["table"]).kind == "synthetic":
            problems.append(f"{t['file']}: {lines} data lines, manifest says {t['rows']}")
    return problems


def config_texts(files: ProjectFiles) -> dict[str, dict]:
    return {t: yaml.safe_load(files.table_file(t).read_text()) for t in files.tables()}


def outside_coded_ranges(destination, schema, files: ProjectFiles) -> list[str]:
    """Numbers drawn through quantiles must stay inside the released (top- and bottom-coded) range."""
    problems = []
    for table in files.tables():
        cfg = files.load_table(table)
        if cfg.kind != "synthetic":
            continue
        for column, col in cfg.columns.items():
            drawn = col.generator == "numeric_quantiles" or (
                col.generator == "weighted_choice" and col.params.get("other") == "quantiles"
            )
            if not drawn or not col.stats or not col.stats.quantiles:
                continue
            lo, hi = col.stats.quantiles[0].value, col.stats.quantiles[-1].value
            listed = [v.value for v in col.stats.values or []]
            t, c = qualified(destination, schema, table), quote(destination, column)
            with destination.connect() as conn:
                got_lo, got_hi = conn.execute(sa.text(f"SELECT MIN({c}), MAX({c}) FROM {t}")).one()
            allowed_lo, allowed_hi = min([lo, *listed]), max([hi, *listed])
            if got_lo is not None and (got_lo < allowed_lo or got_hi > allowed_hi):
                problems.append(
                    f"{table}.{column}: {got_lo}..{got_hi} outside {allowed_lo}..{allowed_hi}"
                )
    return problems
