"""The publishable bundle: per table a CSV and/or a Parquet file (``parquet/<table>/``, the
folder-per-table layout DuckDB and OHDSI tools read), a manifest with checksums, a README.

The bundle is written to a temporary folder beside its destination and renamed into place, so
a reader finds the previous bundle or the new one, never a mixture.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import textwrap
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import DISCLAIMER, GENERATOR_VERSION
from .bundle_parts import export_preferring_parts
from .database import is_postgres, qualified, quote
from .files import sha256_of
from .schema import ColumnDef
from .transfer import stream_select
from .vocabulary_bundle import BundleVocabulary

MANIFEST = "manifest.json"
README = "README.md"
BUNDLE_FORMATS = ("csv", "parquet")
EXPORT_BATCH_ROWS = 200_000  # a Parquet row group each: the files' bytes depend on it

# Parquet column types by logical type: the same whichever destination the rows came from.
_ARROW_TYPES = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "string": pa.string(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "datetime": pa.timestamp("us"),
}


def parquet_file(table: str) -> str:
    """The bundle-relative path of a table's Parquet file: one folder per table."""
    return f"parquet/{table}/{table}.parquet"


def export_table_csv(
    engine: Engine,
    schema: str | None,
    table: str,
    columns: list[ColumnDef],
    order_by: list[str],
    path: Path | None,
    batch_rows: int = EXPORT_BATCH_ROWS,
    on_rows: Callable[[int], None] | None = None,
    parquet_path: Path | None = None,
    frames: Iterable[pl.DataFrame] | None = None,
) -> int:
    """Write one destination table to CSV (``path``) and/or Parquet (``parquet_path``) in a
    stable row order, both from the same batches read out of the destination (or ``frames``,
    the same rows in the same batches: core/bundle_parts.py); returns rows.

    The same bytes whichever the destination: values go through Polars' CSV writer, with dates
    as YYYY-MM-DD and datetimes as 'YYYY-MM-DD HH:MM:SS'. PostgreSQL streams the ordered rows
    out with ``COPY (SELECT ...) TO STDOUT`` into a scratch file that Polars reads in batches;
    SQLite's rows are fetched in batches. Memory stays flat either way.
    """
    order = ", ".join(quote(engine, c) for c in order_by)
    rows = 0
    scratch_at = path or parquet_path
    arrow_schema = pa.schema([(c.name, _ARROW_TYPES[c.logical_type]) for c in columns])
    with contextlib.ExitStack() as stack:
        f = stack.enter_context(path.open("wb")) if path else None
        if f:
            f.write((",".join(_csv_header(c.name) for c in columns) + "\n").encode())
        writer = None
        if parquet_path:
            parquet_path.parent.mkdir(parents=True, exist_ok=True)
            writer = stack.enter_context(
                pq.ParquetWriter(parquet_path, arrow_schema, compression="zstd")
            )
        if frames is None and is_postgres(engine):
            frames = _postgres_frames(engine, schema, table, columns, order, scratch_at, batch_rows)
        elif frames is None:
            cols = ", ".join(quote(engine, c.name) for c in columns)
            sql = f"SELECT {cols} FROM {qualified(engine, schema, table)}" + (
                f" ORDER BY {order}" if order else ""
            )
            frames = stream_select(engine, sql, columns, batch_rows)
        for df in frames:
            if f:
                df.write_csv(
                    f,
                    include_header=False,
                    datetime_format="%Y-%m-%d %H:%M:%S",
                    date_format="%Y-%m-%d",
                )
            if writer:
                writer.write_table(_arrow_batch(df, columns, arrow_schema))
            rows += df.height
            if on_rows:
                on_rows(rows)
        if writer and rows == 0:
            writer.write_table(arrow_schema.empty_table())
    return rows


def _arrow_batch(df: pl.DataFrame, columns: list[ColumnDef], schema: pa.Schema) -> pa.Table:
    """One batch as an Arrow table of the bundle's Parquet types (PostgreSQL's batches carry
    dates, datetimes and booleans as their bundle text, SQLite's as typed values)."""
    typed = []
    for c in columns:
        col = pl.col(c.name)
        if df.schema[c.name] == pl.Utf8 and c.logical_type == "date":
            col = col.str.to_date("%Y-%m-%d")
        elif df.schema[c.name] == pl.Utf8 and c.logical_type == "datetime":
            col = col.str.to_datetime("%Y-%m-%d %H:%M:%S", time_unit="us")
        elif c.logical_type == "datetime":
            col = col.dt.truncate("1s")  # whole seconds, as the CSV prints them
        elif df.schema[c.name] == pl.Utf8 and c.logical_type == "boolean":
            col = pl.when(col == "true").then(True).when(col == "false").then(False)
        typed.append(col.alias(c.name))
    # one chunk a column: Parquet pages depend on how the rows are chunked, not only on them
    return df.select(typed).to_arrow().cast(schema).combine_chunks()


def _postgres_frames(
    engine: Engine,
    schema: str | None,
    table: str,
    columns: list[ColumnDef],
    order: str,
    path: Path,
    batch_rows: int,
) -> Iterator[pl.DataFrame]:
    """The table's rows as typed DataFrames, streamed out of PostgreSQL by COPY.

    Dates, datetimes and booleans are turned into their bundle text in SQL; numbers are read
    back by Polars from PostgreSQL's shortest exact text, so they print as on SQLite.
    """
    exprs = []
    for c in columns:
        q = quote(engine, c.name)
        if c.logical_type == "date":
            exprs.append(f"to_char({q}, 'YYYY-MM-DD')")
        elif c.logical_type == "datetime":
            exprs.append(f"to_char({q}, 'YYYY-MM-DD HH24:MI:SS')")
        elif c.logical_type == "boolean":
            exprs.append(f"CASE WHEN {q} THEN 'true' WHEN NOT {q} THEN 'false' END")
        else:
            exprs.append(q)
    sql = f"SELECT {', '.join(exprs)} FROM {qualified(engine, schema, table)}" + (
        f" ORDER BY {order}" if order else ""
    )
    scratch = path.with_name(f".{path.name}.copy")
    try:
        with engine.connect() as conn, scratch.open("wb") as out:
            driver = conn.connection.driver_connection
            with driver.cursor() as cur, cur.copy(f"COPY ({sql}) TO STDOUT (FORMAT CSV)") as copy:
                for block in copy:
                    out.write(block)
        text = {c.name: pl.Utf8() for c in columns}
        typed = []
        for c in columns:
            col = pl.col(c.name)
            if c.logical_type == "integer":
                typed.append(col.cast(pl.Int64))
            elif c.logical_type == "float":
                named = col.replace({"Infinity": "inf", "-Infinity": "-inf"})
                typed.append(named.cast(pl.Float64).alias(c.name))
            else:
                typed.append(col)
        frames = pl.scan_csv(scratch, has_header=False, schema=text)
        yield from frames.select(typed).collect_batches(chunk_size=batch_rows)
    finally:
        scratch.unlink(missing_ok=True)


def _csv_header(name: str) -> str:
    return f'"{name}"' if any(ch in name for ch in ',"\n') else name


def _columns(found: dict[str, list[int]]) -> str:
    return ", ".join(f"{column} ({len(ids)})" for column, ids in found.items())


def vocabulary_section(vocabulary: BundleVocabulary | None) -> list[str]:
    """The README's paragraphs on what the vocabulary tables hold, public or site-local."""
    paragraphs = []
    if vocabulary is None or not vocabulary.tables:
        paragraphs.append(
            "No vocabulary tables are included: concept ids refer to the public OMOP vocabulary "
            "(athena.ohdsi.org)."
        )
        if vocabulary is not None and vocabulary.site_local_without_rows:
            paragraphs.append(
                "These columns carry site-local concept ids (above 2,000,000,000: the site's own "
                "codes, in no public vocabulary), with the number of such ids: "
                + _columns(vocabulary.site_local_without_rows)
                + "."
            )
    else:
        whole = [t for t, (rows, _) in vocabulary.tables.items() if rows == "all"]
        included = [t for t, (_, local) in vocabulary.tables.items() if local == "include"]
        left_out = [t for t in vocabulary.tables if t not in included]
        paragraphs.append(
            f"The vocabulary tables ({', '.join(vocabulary.tables)}) hold a subset of the public "
            "OMOP vocabulary: the rows for the concepts these tables can contain"
            + (f" ({', '.join(whole)} copied whole: vocabulary_rows: all)" if whole else "")
            + (", and the site's own concepts where said below" if included else "")
            + ". Site-local mappings such as source_to_concept_map are left out."
        )
        if left_out:
            paragraphs.append(
                "Site-local concepts (concept_id above 2,000,000,000) and the site's local "
                f"vocabularies are not included in {', '.join(left_out)} (site_local: exclude)."
            )
        if included:
            held = f"{vocabulary.site_local_concepts} site-local concepts in concept"
            if vocabulary.local_vocabularies:
                held += ", the local vocabularies " + ", ".join(vocabulary.local_vocabularies)
            paragraphs.append(
                f"{', '.join(included)} include the site's own concepts and local vocabularies, "
                f"as a reviewer chose (site_local: include): {held}. They are the site's codes, "
                "not public OMOP vocabulary."
            )
        if vocabulary.site_local_without_rows:
            paragraphs.append(
                "These columns carry site-local concept ids that have no row in concept.csv, "
                "with the number of such ids: " + _columns(vocabulary.site_local_without_rows) + "."
            )
        if vocabulary.others_without_rows and "concept" in vocabulary.tables:
            paragraphs.append(
                "These columns carry concept ids that have no row in concept.csv (not in the "
                "source's vocabulary, or of a local vocabulary): "
                + _columns(vocabulary.others_without_rows)
                + "."
            )
    lines: list[str] = []
    for p in paragraphs:
        lines += [*textwrap.wrap(p, 92, break_on_hyphens=False), ""]
    return lines[:-1]


def bundle_readme(
    project: str, tables: list[dict], created_at: str, vocabulary: BundleVocabulary | None = None
) -> str:
    lines = [
        DISCLAIMER,
        "",
        f"# Synthetic OMOP CDM data: project {project}",
        "",
        "Low-fidelity synthetic data made by synth_pipeline from a reviewed configuration that holds",
        "only statistics which passed disclosure control. Each column was generated independently",
        "unless its configuration says otherwise; keys are synthetic (1..n) and every reference",
        "resolves.",
        "",
        "## Vocabulary",
        "",
        *vocabulary_section(vocabulary),
        "",
        f"Created {created_at} by synth_pipeline {GENERATOR_VERSION}. `manifest.json` lists every",
        "file with its sha256 checksum, row count, columns and the fingerprint of the approved",
        "configuration it was generated from.",
        "",
    ]
    if any("parquet" in (t.get("files") or {}) for t in tables):
        lines += [
            "The Parquet files hold the same rows as the CSVs, with typed columns, one folder per",
            "table as DuckDB and the OHDSI tools on DuckDB read them, for example",
            "`SELECT * FROM read_parquet('parquet/person/*.parquet')`.",
            "",
        ]
    lines += [
        "| table | rows | kind | files |",
        "|---|---|---|---|",
    ]
    for t in tables:
        files = ", ".join(f["file"] for f in (t.get("files") or {"": t}).values())
        lines.append(f"| {t['table']} | {t['rows']} | {t['kind']} | {files} |")
    lines += ["", DISCLAIMER, ""]
    return "\n".join(lines)


@dataclass(frozen=True)
class BundleSpec:
    """What a bundle holds: the project's ``tables`` (each: table, kind, columns [ColumnDef],
    order_by, config_fingerprint), the seed and scale they were generated with, in ``formats``
    (csv, parquet).

    ``reports`` maps a file name to a function of the creation time that returns the file's
    text (the fidelity report); each is written inside the same atomic swap and checksummed.
    ``vocabulary`` is what the README says the vocabulary tables hold (core/vocabulary.py).
    """

    project: str
    tables: list[dict]
    seed: int | None
    scale: float | None
    reports: dict[str, Callable[[str], str]] | None = None
    vocabulary: BundleVocabulary | None = None
    formats: tuple[str, ...] | list[str] = BUNDLE_FORMATS


def write_bundle(
    engine: Engine,
    schema: str | None,
    out_dir: Path,
    spec: BundleSpec,
    *,
    created_at: str | None = None,
    on_table: Callable[[str, int], None] | None = None,
    on_rows: Callable[[str, int], None] | None = None,
) -> dict:
    """Export ``spec``'s tables into a new bundle at ``out_dir``; returns the manifest.

    Each manifest table lists its files by format (``files``); ``file`` and ``sha256`` name
    the first of them (the CSV when there is one). ``on_table`` hears (table, rows) after each
    table; ``on_rows`` hears (table, rows so far) after each batch, for progress in the logs.
    """
    out_dir = Path(out_dir).resolve()
    recover_bundle(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(4)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{token}"
    tmp.mkdir()
    created = _creation_time(created_at)
    try:
        _check_formats(spec.formats)
        entries = []
        for t in sorted(spec.tables, key=lambda x: x["table"]):
            entries.append(_export_entry(engine, schema, tmp, t, spec.formats, on_rows))
            if on_table:
                on_table(t["table"], entries[-1]["rows"])
        extra = _write_reports(tmp, spec.reports or {}, created)
        manifest = _manifest(spec, created, entries, extra)
        (tmp / README).write_text(
            bundle_readme(spec.project, entries, created, spec.vocabulary), encoding="utf-8"
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _swap_in(tmp, out_dir, token)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _creation_time(created_at: str | None) -> str:
    """The bundle's creation time: given, or SYNTH_BUNDLE_CREATED_AT, or now (UTC, seconds)."""
    return (
        created_at
        or os.environ.get("SYNTH_BUNDLE_CREATED_AT")
        or dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    )


def _check_formats(formats: tuple[str, ...] | list[str]) -> None:
    unknown = sorted(set(formats) - set(BUNDLE_FORMATS))
    if unknown or not formats:
        raise ValueError(
            f"bundle_formats: {unknown or 'none'} given; choose from {', '.join(BUNDLE_FORMATS)}"
        )


def _export_entry(
    engine: Engine,
    schema: str | None,
    tmp: Path,
    t: dict,
    formats: tuple[str, ...] | list[str],
    on_rows: Callable[[str, int], None] | None,
) -> dict:
    """Export one table into the bundle folder ``tmp`` in ``formats``; its manifest entry."""
    names = {
        "csv": f"{t['table']}.csv" if "csv" in formats else None,
        "parquet": parquet_file(t["table"]) if "parquet" in formats else None,
    }
    export = partial(
        export_table_csv,
        engine,
        schema,
        t["table"],
        t["columns"],
        t["order_by"],
        tmp / names["csv"] if names["csv"] else None,
        on_rows=(lambda n, table=t["table"]: on_rows(table, n)) if on_rows else None,
        parquet_path=tmp / names["parquet"] if names["parquet"] else None,
    )
    # a table generated on a Dask cluster: from the parts it was loaded from, when they are
    # exactly its rows; ``read_from`` says where the rows came from (never in the manifest)
    rows, t["read_from"] = export_preferring_parts(
        export, t.get("parts"), t["columns"], EXPORT_BATCH_ROWS
    )
    files = {
        fmt: {"file": name, "sha256": sha256_of(tmp / name)} for fmt, name in names.items() if name
    }
    first = next(iter(files.values()))
    return {
        "table": t["table"],
        "file": first["file"],
        "kind": t["kind"],
        "rows": rows,
        "columns": [{"name": c.name, "type": c.logical_type} for c in t["columns"]],
        "sha256": first["sha256"],
        "files": files,
        "config_fingerprint": t["config_fingerprint"],
    }


def _write_reports(tmp: Path, reports: dict[str, Callable[[str], str]], created: str) -> list:
    """Write each report into the bundle folder ``tmp``; their manifest entries."""
    extra = []
    for name, render in sorted(reports.items()):
        (tmp / name).write_text(render(created), encoding="utf-8")
        extra.append({"file": name, "sha256": sha256_of(tmp / name)})
    return extra


def _manifest(spec: BundleSpec, created: str, entries: list[dict], extra: list[dict]) -> dict:
    return {
        "disclaimer": DISCLAIMER,
        "project": spec.project,
        "created_at": created,
        "generator": "synth_pipeline",
        "generator_version": GENERATOR_VERSION,
        "seed": spec.seed,
        "scale": spec.scale,
        "formats": [f for f in BUNDLE_FORMATS if f in spec.formats],
        "tables": entries,
        "reports": extra,
    }


def _swap_in(tmp: Path, out_dir: Path, token: str) -> None:
    old = out_dir.parent / f".{out_dir.name}.old-{token}"
    if out_dir.exists():
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    shutil.rmtree(old, ignore_errors=True)


def recover_bundle(out_dir: Path) -> None:
    """Finish or undo a swap that a killed process left half done, and clear its leftovers."""
    parent = out_dir.parent
    if not parent.exists():
        return
    olds = sorted(parent.glob(f".{out_dir.name}.old-*"))
    if not out_dir.exists() and olds:
        os.replace(olds[-1], out_dir)
        olds = olds[:-1]
    for leftover in olds + sorted(parent.glob(f".{out_dir.name}.tmp-*")):
        shutil.rmtree(leftover, ignore_errors=True)


def verify_bundle(out_dir: Path) -> list[str]:
    """Problems found in a bundle on disk (empty when it verifies)."""
    problems = []
    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST
    if not manifest_path.exists():
        return [f"{manifest_path} is missing"]
    manifest = json.loads(manifest_path.read_text())
    readme = out_dir / README
    if not readme.exists() or not readme.read_text(encoding="utf-8").startswith(DISCLAIMER):
        problems.append(f"{readme} does not start with the disclaimer")
    if manifest.get("disclaimer") != DISCLAIMER:
        problems.append("manifest.json does not carry the disclaimer")
    listed = [f for t in manifest["tables"] for f in (t.get("files") or {"": t}).values()]
    for t in listed + manifest.get("reports", []):
        f = out_dir / t["file"]
        if not f.exists():
            problems.append(f"{t['file']} is missing")
        elif sha256_of(f) != t["sha256"]:
            problems.append(f"{t['file']}: sha256 does not match the manifest")
    return problems


def table_row_count(engine: Engine, schema: str | None, table: str) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                sa.text(f"SELECT COUNT(*) FROM {qualified(engine, schema, table)}")
            ).scalar_one()
        )
