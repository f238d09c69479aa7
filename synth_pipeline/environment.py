"""Where things are, read from the environment: one place for every variable docs/configuration.md lists.

Our own names come first; the names datafaker and sqlsynthgen users already set (SRC_DSN,
SRC_SCHEMA, DST_DSN, DST_SCHEMA) are accepted beside them.
"""

from __future__ import annotations

import os
from pathlib import Path

from .core.errors import ConfigError

SOURCE_URL_VARS = ("SYNTH_SOURCE_URL", "SRC_DSN")
SOURCE_SCHEMA_VARS = ("SYNTH_SOURCE_SCHEMA", "SRC_SCHEMA")
DESTINATION_URL_VARS = ("SYNTH_DESTINATION_URL", "DST_DSN")
DESTINATION_SCHEMA_VARS = ("SYNTH_DESTINATION_SCHEMA", "DST_SCHEMA")


def first_env(names: tuple[str, ...]) -> tuple[str, str] | None:
    """(variable name, value) of the first of ``names`` that is set and not empty."""
    for n in names:
        v = os.environ.get(n)
        if v:
            return n, v
    return None


def repo_root() -> Path:
    """The project checkout (where resources/configuration-files lives), else the working dir."""
    here = Path(__file__).resolve().parent.parent
    if (here / "resources" / "configuration-files").is_dir():
        return here
    return Path.cwd()


def work_dir() -> Path:
    """Local state of runs: demo databases, the default bundle, stored asset values."""
    return Path(os.environ.get("SYNTH_WORK_DIR") or repo_root() / ".work").resolve()


def config_root() -> Path:
    return Path(
        os.environ.get("SYNTH_CONFIG_DIR") or repo_root() / "resources" / "configuration-files"
    ).resolve()


def project_name() -> str:
    return os.environ.get("SYNTH_PROJECT") or "demo"


def bundle_dir(project: str) -> Path:
    return Path(os.environ.get("SYNTH_BUNDLE_DIR") or default_bundle_dir(project)).resolve()


def default_bundle_dir(project: str) -> Path:
    return (work_dir() / project / "bundle").resolve()


def demo_source_path() -> Path:
    return work_dir() / "demo" / "source.sqlite"


def default_destination_url(project: str) -> str:
    return f"sqlite:///{work_dir() / project / 'synthetic.sqlite'}"


def dagster_home() -> Path:
    return Path(os.environ.get("DAGSTER_HOME") or work_dir() / "dagster_home").resolve()


def achilles_switched_off() -> bool:
    """SYNTH_ACHILLES=off skips the Achilles comparison whatever project.yaml says (the tests
    set it, as each comparison takes 15 to 70 seconds; their own Achilles tests switch it on)."""
    return (os.environ.get("SYNTH_ACHILLES") or "").lower() in ("off", "0", "false", "no")


def parent_wait_seconds() -> int:
    """How long a table in a backfill waits for its parents to be written (default 600 s)."""
    raw = os.environ.get("SYNTH_PARENT_WAIT_SECONDS") or "600"
    try:
        seconds = int(raw)
    except ValueError:
        seconds = -1
    if seconds < 0:
        raise ConfigError(
            f"must be whole seconds, 0 or more; got {raw!r}", setting="SYNTH_PARENT_WAIT_SECONDS"
        )
    return seconds
