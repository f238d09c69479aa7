"""What the fault tests compare before and after: the exact content of a destination and a bundle."""

from __future__ import annotations

import hashlib
from pathlib import Path

import sqlalchemy as sa

from synth_pipeline.core.database import normalise_url, qualified, quote


def destination_state(url: str, schema: str | None = None) -> dict[str, str]:
    """Every table of a destination (temporary ones included) -> a digest of all its rows."""
    engine = sa.create_engine(normalise_url(url))
    try:
        out = {}
        insp = sa.inspect(engine)
        with engine.connect() as conn:
            for table in sorted(insp.get_table_names(schema=schema)):
                cols = [quote(engine, c["name"]) for c in insp.get_columns(table, schema=schema)]
                rows = conn.execute(
                    sa.text(f"SELECT {', '.join(cols)} FROM {qualified(engine, schema, table)}")
                ).all()
                # written_at changes with every write, so it is part of the register's digest
                text = "\n".join(sorted(repr(tuple(r)) for r in rows))
                out[table] = f"{len(rows)} rows " + hashlib.sha256(text.encode()).hexdigest()[:16]
        return out
    finally:
        engine.dispose()


def folder_state(folder: Path) -> dict[str, str]:
    """Every file under a folder -> its sha256; and every hidden sibling the bundle writer uses."""
    folder = Path(folder)
    out = {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    out["__siblings__"] = ",".join(sorted(p.name for p in folder.parent.glob(f".{folder.name}.*")))
    return out


def all_text_under(folder: Path) -> dict[Path, bytes]:
    """Every file under a folder, as bytes (for searching secrets anywhere on disk)."""
    return {p: p.read_bytes() for p in Path(folder).rglob("*") if p.is_file()}
