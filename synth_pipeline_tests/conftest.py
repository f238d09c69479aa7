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
    saved = {k: os.environ.get(k) for k in [*_OUR_VARS, "SYNTH_WORK_DIR", "DAGSTER_HOME"]}
    for k in _OUR_VARS:
        os.environ.pop(k, None)
    os.environ["SYNTH_WORK_DIR"] = str(work)
    os.environ["DAGSTER_HOME"] = str(work / "dagster_home")
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


@pytest.fixture(scope="session")
def adversarial_runs(tmp_path_factory):
    """The adversarial extract (adversarial.py) through the whole CLI (init, approve --all, run)
    at policy k, in SQLite or in a schema of the session's PostgreSQL database; each variant
    built and run once per session, shared by the tests that read what it left. A function of
    (backend, k)."""
    from . import adversarial as adv

    done: dict[tuple[str, int], dict] = {}

    def run(backend: str, k: int, postgres_url: str | None = None) -> dict:
        if (backend, k) not in done:
            tmp = tmp_path_factory.mktemp(f"adversarial-{backend}-k{k}")
            schema = None
            if backend == "sqlite":
                source = f"sqlite:///{tmp / 'source.sqlite'}"
                extract = adv.build_extract(source)
            else:
                assert postgres_url, "a PostgreSQL variant needs the session's database"
                source, schema = postgres_url, f"adversarial_k{k}"
                extract = adv.build_extract(source, schema=schema)
            pipeline = adv.run_pipeline(tmp, source, k, schema)
            done[backend, k] = {
                "source": source,
                "schema": schema,
                "extract": extract,
                "pipeline": pipeline,
            }
        return done[backend, k]

    return run


@pytest.fixture(scope="session")
def pg_demo_run(postgres_database, tmp_path_factory):
    """The demo extract loaded into schema ``cdm`` of the session's PostgreSQL database, then
    `init` (project hospital) and `approve --all` through the CLI and every table run through
    the headless runner into schema ``synthetic``; shared by the tests that read it."""
    import dagster as dg

    from synth_pipeline import cli
    from synth_pipeline.core.config import ProjectFiles
    from synth_pipeline.demo.loader import load_demo
    from synth_pipeline.runner import execute

    load_demo(postgres_database, schema="cdm")
    engine = sa.create_engine(normalise_url(postgres_database))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS synthetic"))
    engine.dispose()
    root = tmp_path_factory.mktemp("pg-cfg")
    bundle = tmp_path_factory.mktemp("pg-out") / "bundle"
    common = ["--project", "hospital", "--config-dir", str(root)]
    assert cli.main(["init", "--source", postgres_database, "--schema", "cdm", *common]) == 0
    files = ProjectFiles(root, "hospital")
    assert files.tables(), "init wrote one file per table"
    assert all(files.load_table(t).review.status == "draft" for t in files.tables())
    assert cli.main(["approve", "--all", "--reviewer", "Test Reviewer", *common]) == 0
    report = execute(
        source_url=postgres_database,
        source_schema="cdm",
        destination_url=postgres_database,
        destination_schema="synthetic",
        project="hospital",
        config_root=root,
        bundle_dir=bundle,
        instance=dg.DagsterInstance.ephemeral(),
    )
    return {
        "report": report,
        "files": files,
        "bundle": bundle,
        "url": postgres_database,
        "source_schema": "cdm",
        "destination_schema": "synthetic",
    }


# Fixtures that make a test `slow` (a whole pipeline per session or per test) and `postgres`
# (the PostgreSQL server), whatever module uses them; tests that run a pipeline themselves carry
# the mark explicitly.
SLOW_FIXTURES = {"demo_run", "pg_demo_run", "adversarial_runs"}
POSTGRES_FIXTURES = {"postgres_server_url", "postgres_database"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if used & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
