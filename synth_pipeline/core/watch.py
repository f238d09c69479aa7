"""What the sensors watch: the source extract and the reviewed configuration files.

Two fingerprints, each a short text per table that changes when the thing it stands for does:

- ``extract_fingerprints``: per source table, its row count and largest primary key, plus the
  ``cdm_source`` release date (a new release marks every table). A few aggregate queries; no
  row leaves the database. The fingerprints stay inside the trusted environment (the Dagster
  instance's sensor cursor); they are not released anywhere.
- ``config_file_versions``: per table, a hash of its YAML file's bytes, the data version of
  the ``config_file`` source asset, so an edited file makes its ``reviewed_config`` stale.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from . import omop
from .config_files import ProjectFiles
from .database import qualified, quote
from .files import sha256_of
from .schema import list_tables, unusable_name

MISSING_FILE = "no-file"


def config_file_versions(files: ProjectFiles, tables: list[str] | None = None) -> dict[str, str]:
    """Per table, the hash of its YAML file (``no-file`` when there is none yet)."""
    names = sorted(set(tables if tables is not None else files.tables()))
    out: dict[str, str] = {}
    for t in names:
        if unusable_name(t):
            continue
        path = files.table_file(t)
        out[t] = sha256_of(path)[:16] if path.exists() else MISSING_FILE
    return out


def _primary_key_column(table: str, columns: list[str]) -> str | None:
    """The column whose maximum tells new rows apart: the OMOP key, else ``<table>_id``."""
    spec = omop.table_spec(table)
    lowered = {c.lower(): c for c in columns}
    if spec is not None:
        for name, field in spec.fields.items():
            if field.primary_key and name in lowered:
                return lowered[name]
    return lowered.get(f"{table}_id")


def _release_marker(engine: Engine, schema: str | None, names: Mapping[str, str]) -> str:
    """The cdm_source release (date and version) when the extract has one, else ''."""
    actual = names.get("cdm_source")
    if actual is None:
        return ""
    columns = {
        c["name"].lower(): c["name"] for c in sa.inspect(engine).get_columns(actual, schema=schema)
    }
    wanted = [c for c in ("source_release_date", "cdm_release_date", "cdm_version") if c in columns]
    if not wanted:
        return ""
    select = ", ".join(f"MAX({quote(engine, columns[c])})" for c in wanted)
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(f"SELECT {select} FROM {qualified(engine, schema, actual)}")
        ).one()
    return "release " + "/".join("" if v is None else str(v) for v in row)


def extract_fingerprints(engine: Engine, schema: str | None) -> dict[str, str]:
    """Per source table (lower-case name), ``rows=<n> max_id=<m> <release>``."""
    names = list_tables(engine, schema)
    release = _release_marker(engine, schema, names)
    insp = sa.inspect(engine)
    out: dict[str, str] = {}
    with engine.connect() as conn:
        for table, actual in sorted(names.items()):
            if unusable_name(table):
                continue
            columns = [c["name"] for c in insp.get_columns(actual, schema=schema)]
            key = _primary_key_column(table, columns)
            select = "COUNT(*)" + (f", MAX({quote(engine, key)})" if key else "")
            row = conn.execute(
                sa.text(f"SELECT {select} FROM {qualified(engine, schema, actual)}")
            ).one()
            text = f"rows={row[0]}"
            if key:
                text += f" max_id={row[1]}"
            out[table] = f"{text} {release}".strip()
    return out


def changed_tables(before: Mapping[str, str], now: Mapping[str, str]) -> list[str]:
    """Tables that are new or whose fingerprint moved (tables that went away are not listed)."""
    return sorted(t for t, v in now.items() if before.get(t) != v)
