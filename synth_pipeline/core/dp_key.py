"""The secret key the differential privacy noise is drawn with: a random file created on first use
under the work folder (``SYNTH_WORK_DIR``), mode 0600, inside the trusted environment; never in a
configuration or a bundle. Deleting it changes every noisy statistic."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from .errors import ConfigError

KEY_FILE = Path("secrets") / "dp-noise.key"


def key_path(work_dir: Path) -> Path:
    return Path(work_dir) / KEY_FILE


def load_or_create_key(work_dir: Path) -> bytes:
    """The secret noise key of this trusted environment, created (mode 0600) on first use."""
    path = key_path(work_dir)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        try:
            os.link(tmp, path)  # atomic, and fails if another process created it first
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    text = path.read_text().strip()
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != 32:
        raise ConfigError(
            "the differential privacy key is not 64 hexadecimal characters; delete it to make "
            "a new one (every noisy statistic then changes and needs a new review)",
            file=str(path),
        )
    return key
