"""Fixtures build real databases and files; nothing is mocked.

PostgreSQL: the server at SYNTH_TEST_POSTGRES_URL (default the local one); each test session
creates its own database there and drops it at the end.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from synth_pipeline.core.database import normalise_url, redact
from synth_pipeline.demo.loader import ensure_demo_sqlite

REPO = Path(__file__).resolve().parent.parent
DEMO_CONFIGS = REPO / "resources" / "configuration-files"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"

_OUR_VARS = [
    "SYNTH_SOURCE_URL",
    "SYNTH_SOURCE_SCHEMA",
    "SYNTH_DESTINATION_URL",
    "SYNTH_DESTINATION_SCHEMA",
    "SRC_DSN",
    "SRC_SCHEMA",
    "DST_DSN",
    "DST_SCHEMA",
    "SYNTH_PROJECT",
    "SYNTH_CONFIG_DIR",
    "SYNTH_BUNDLE_DIR",
    "SYNTH_BUNDLE_CREATED_AT",
]


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory):
    """Tests never touch the checkout's .work or configuration files, nor a user's instance."""
    work = tmp_path_factory.mktemp("work")
    saved = {
        k: os.environ.get(k)
        for k in [*_OUR_VARS, "SYNTH_WORK_DIR", "DAGSTER_HOME", "SYNTH_ACHILLES"]
    }
    for k in _OUR_VARS:
        os.environ.pop(k, None)
    os.environ["SYNTH_WORK_DIR"] = str(work)
    os.environ["DAGSTER_HOME"] = str(work / "dagster_home")
    os.environ["SYNTH_ACHILLES"] = "off"  # 15-70 s a bundle; test_achilles/test_duckdb run it
    yield work
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def demo_sqlite_url(tmp_path_factory) -> str:
    return ensure_demo_sqlite(tmp_path_factory.mktemp("demo") / "source.sqlite")


@pytest.fixture
def config_root(tmp_path) -> Path:
    """A copy of the committed configuration root, so tests can edit and approve freely."""
    root = tmp_path / "configuration-files"
    shutil.copytree(DEMO_CONFIGS, root)
    return root


@pytest.fixture(scope="session")
def postgres_server_url() -> str:
    url = os.environ.get("SYNTH_TEST_POSTGRES_URL") or DEFAULT_PG
    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        pytest.fail(
            f"PostgreSQL is not reachable at {redact(url)} ({exc.__class__.__name__}); "
            "start it or set SYNTH_TEST_POSTGRES_URL"
        )
    finally:
        engine.dispose()
    return url


@pytest.fixture(scope="session")
def postgres_database(postgres_server_url) -> str:
    """A fresh database for this test session; its URL. Dropped afterwards."""
    name = f"synth_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(normalise_url(postgres_server_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = normalise_url(postgres_server_url).set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory, isolated_environment):
    """`synth-pipeline demo --out DIR` (the README's main command) with a private copy of the
    configuration root; shared by the tests that inspect its outputs."""
    from synth_pipeline import cli
    from synth_pipeline.core.config import ProjectFiles

    root = tmp_path_factory.mktemp("cfg") / "configuration-files"
    shutil.copytree(DEMO_CONFIGS, root)
    from synth_pipeline.runner import environment

    out = tmp_path_factory.mktemp("demo-out")
    home = out / "dagster_home"  # its own instance: other tests' runs do not mix with its history
    with environment({"DAGSTER_HOME": str(home)}):
        code = cli.main(["demo", "--out", str(out), "--config-dir", str(root)])
    return {
        "code": code,
        "out": out,
        "files": ProjectFiles(root, "demo"),
        "url": f"sqlite:///{out / 'synthetic.sqlite'}",
        "dagster_home": home,
    }
