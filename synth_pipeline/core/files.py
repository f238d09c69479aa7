"""Files written so readers see the old content or the new, never half of it; a file's checksum;
the version stamp of a folder of files, for caches keyed on what the files hold now."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A hidden temporary file beside ``path`` to write; renamed onto ``path`` when the block
    ends, removed when it fails."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write a text file atomically, readable as the umask allows (mkstemp makes it private; a
    config is read by reviewers logged in as others)."""
    with atomic_path(path) as tmp:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o666 & ~_umask())


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_stamp(folder: Path, pattern: str = "*.yaml") -> tuple[tuple[str, int], ...]:
    """Names and modification times of a folder's files: changes whenever one is written."""
    return tuple((p.name, p.stat().st_mtime_ns) for p in sorted(folder.glob(pattern)))
