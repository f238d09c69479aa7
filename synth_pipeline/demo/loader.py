"""Loading the bundled GiBleed demo extract into a database, as a hospital's extract would sit.

Tables are created with the OMOP CDM 5.3 types of their fields (names the specification does
not know, such as cost's misspelled ``reveue_code_source_value``, become text) and without key
constraints, because the extract is dirty: duplicate keys, 0 for NULL, dangling references.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from ..core import omop
from ..core.database import normalise_url, qualified, redact, transactional_sqlite
from ..core.errors import DatabaseError
from ..core.files import atomic_path
from ..core.schema import ColumnDef
from ..core.write import load_chunks

DATA_PACKAGE = "synth_pipeline.demo"
CDM_VERSION = "5.3"
_MARKER = "synth_pipeline_demo_v2"


def demo_files() -> dict[str, Path]:
    folder = resources.files(DATA_PACKAGE).joinpath("data")
    return {
        Path(str(p)).name[: -len(".csv.gz")]: Path(str(p))
        for p in folder.iterdir()
        if str(p).endswith(".csv.gz")
    }


def _column_defs(table: str, header: list[str]) -> list[ColumnDef]:
    out = []
    for name in header:
        # the extract is CDM 5.3; a table only the 5.4 specification knows (cohort) takes its types
        spec = omop.cdm_tables(CDM_VERSION).get(table)
        f = spec.fields.get(name) if spec else omop.field_spec(table, name)
        out.append(ColumnDef(name, f.logical_type if f else "string", f.max_length if f else None))
    return out


def _read_csv(path: Path, columns: list[ColumnDef]) -> pl.DataFrame:
    df = pl.read_csv(path, infer_schema=False)
    exprs = []
    for c in columns:
        col = pl.col(c.name)
        if c.logical_type == "integer":
            exprs.append(col.cast(pl.Int64))
        elif c.logical_type == "float":
            exprs.append(col.cast(pl.Float64))
        elif c.logical_type == "date":
            exprs.append(col.str.slice(0, 10).str.to_date("%Y-%m-%d"))
        elif c.logical_type == "datetime":
            exprs.append(
                col.str.to_datetime("%Y-%m-%d %H:%M:%S", strict=False, time_unit="us").fill_null(
                    col.str.slice(0, 10)
                    .str.to_date("%Y-%m-%d", strict=False)
                    .cast(pl.Datetime("us"))
                )
            )
        else:
            exprs.append(col)
    return df.select(exprs)


def load_demo(url: str, schema: str | None = None) -> dict[str, int]:
    """Create every demo table in the database at ``url`` (replacing same-named tables)."""
    u = normalise_url(url)
    engine = sa.create_engine(u)
    if u.get_backend_name() == "sqlite":
        transactional_sqlite(engine)
    counts: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            if schema:
                conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
            for table, path in sorted(demo_files().items()):
                header = pl.read_csv(path, n_rows=0).columns
                columns = _column_defs(table, header)
                md = sa.MetaData(schema=schema)
                from ..core.schema import sa_type

                t = sa.Table(
                    table,
                    md,
                    *[sa.Column(c.name, sa_type(c.logical_type, c.max_length)) for c in columns],
                )
                t.drop(conn, checkfirst=True)
                t.create(conn)
                df = _read_csv(path, columns)
                counts[table] = load_chunks(conn, qualified(engine, schema, table), columns, [df])
    except sa.exc.OperationalError as exc:
        raise DatabaseError(f"cannot load the demo extract into {redact(u)}: {exc.orig}") from None
    finally:
        engine.dispose()
    return counts


def ensure_demo_sqlite(path: Path) -> str:
    """The demo extract as an SQLite file at ``path``, built once (atomically) and then reused."""
    path = Path(path).resolve()
    marker = path.with_suffix(path.suffix + ".ok")
    if path.exists() and marker.exists() and marker.read_text() == _MARKER:
        return f"sqlite:///{path}"
    with atomic_path(path) as tmp:
        load_demo(f"sqlite:///{tmp}")
    marker.write_text(_MARKER)
    return f"sqlite:///{path}"
