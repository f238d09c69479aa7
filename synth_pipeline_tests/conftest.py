"""Fixtures build real databases and files; nothing is mocked.

PostgreSQL: the server at SYNTH_TEST_POSTGRES_URL (default the local one); each test session
creates its own database there and drops it at the end.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
import yaml

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
    from synth_pipeline.core.config_files import ProjectFiles

    root = tmp_path_factory.mktemp("cfg") / "configuration-files"
    shutil.copytree(DEMO_CONFIGS, root)
    from synth_pipeline.runner import temporary_environment

    out = tmp_path_factory.mktemp("demo-out")
    home = out / "dagster_home"  # its own instance: other tests' runs do not mix with its history
    with temporary_environment({"DAGSTER_HOME": str(home)}):
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


@contextlib.contextmanager
def postgres_instance_database(
    server_url: str, home: Path, *, launch_directly: bool = False
) -> Iterator[dict[str, str]]:
    """A DAGSTER_HOME at ``home`` whose dagster.yaml is the project's PostgreSQL template, on a
    new database of the server (dropped afterwards); yields the variables (DAGSTER_HOME and
    DAGSTER_PG_*) a deployment would set for it. ``launch_directly``: the template with runs
    launched at once instead of queued for a daemon, as docs/deployment.md tells a command
    with ``--parallel`` to use."""
    server = normalise_url(server_url)
    name = f"synth_dagster_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    home.mkdir(parents=True)
    settings = yaml.safe_load((REPO / "configs" / "dagster-postgres.yaml").read_text())
    if launch_directly:
        settings["run_coordinator"] = {
            "module": "dagster.core.run_coordinator",
            "class": "DefaultRunCoordinator",
        }
    (home / "dagster.yaml").write_text(yaml.safe_dump(settings))
    try:
        yield {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": server.host or "127.0.0.1",
            "DAGSTER_PG_PORT": str(server.port or 5432),
            "DAGSTER_PG_USER": server.username or "postgres",
            "DAGSTER_PG_PASSWORD": server.password or "",
            "DAGSTER_PG_DB": name,
        }
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def pg_demo_run(postgres_server_url, postgres_database, tmp_path_factory):
    """The demo extract in PostgreSQL, as a deployment runs it: loaded into schema ``cdm`` of
    the session's database, `init` and `approve --all` through the CLI, then
    every table through the headless runner into schema ``synthetic`` with ``--parallel 2``
    (each reading step as two runs side by side, launched through the instance's run
    launcher), on an instance whose storage is PostgreSQL too (configs/dagster-postgres.yaml
    with runs launched directly, a database of its own). One run per session, shared by
    test_pipeline_postgres.py (the chain), test_postgres_instance.py (the instance and the
    parallel runs) and test_vocabulary_subset.py (the vocabulary copied)."""
    from synth_pipeline import cli
    from synth_pipeline.core.config_files import ProjectFiles
    from synth_pipeline.demo.loader import load_demo
    from synth_pipeline.instance import instance_for_cli
    from synth_pipeline.runner import execute, temporary_environment

    load_demo(postgres_database, schema="cdm")
    engine = sa.create_engine(normalise_url(postgres_database))
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA IF NOT EXISTS synthetic"))
    engine.dispose()
    root = tmp_path_factory.mktemp("pg-cfg")
    out = tmp_path_factory.mktemp("pg-out")
    bundle = out / "bundle"
    # project "demo" in a config root of its own
    common = ["--project", "demo", "--config-dir", str(root)]
    assert cli.main(["init", "--source", postgres_database, "--schema", "cdm", *common]) == 0
    files = ProjectFiles(root, "demo")
    assert files.tables(), "init wrote one file per table"
    assert all(files.load_table(t).review.status == "draft" for t in files.tables())
    assert cli.main(["approve", "--all", "--reviewer", "Test Reviewer", *common]) == 0
    home = out / "dagster_home"
    with postgres_instance_database(postgres_server_url, home, launch_directly=True) as env:
        with temporary_environment(env):
            instance = instance_for_cli()  # DAGSTER_HOME's dagster.yaml: PostgreSQL storage
            report = execute(
                source_url=postgres_database,
                source_schema="cdm",
                destination_url=postgres_database,
                destination_schema="synthetic",
                project="demo",
                config_root=root,
                bundle_dir=bundle,
                instance=instance,
                parallel=2,
            )
        yield {
            "report": report,
            "files": files,
            "bundle": bundle,
            "url": postgres_database,
            "source_schema": "cdm",
            "destination_schema": "synthetic",
            "instance": instance,
            "run_storage": type(instance.run_storage).__name__,
        }


# Fixtures that make a test `slow` (a whole pipeline per session or per test) and `postgres`
# (the PostgreSQL server), whatever module uses them; tests that run a pipeline themselves carry
# the mark explicitly.
SLOW_FIXTURES = {"demo_run", "pg_demo_run", "adversarial_runs"}
POSTGRES_FIXTURES = {"postgres_server_url", "postgres_database"}


# With pytest-xdist (the suite runs on every core, `-n auto --dist loadgroup` in pyproject.toml)
# a fixture is made once per worker that runs a test needing it. So each test goes to a worker
# with the rest of its group: the tests reading one shared whole-pipeline run form one group
# (that run is made once), and every other test stays with its module (its module fixtures are
# made once). The first of SLOW_FIXTURES a test uses names its group.
SHARED_RUN_ORDER = ("pg_demo_run", "demo_run", "adversarial_runs")


def xdist_group(item) -> str:
    """The group ``item`` runs in: the shared run it reads, else its module."""
    used = set(getattr(item, "fixturenames", ()))
    shared = [name for name in SHARED_RUN_ORDER if name in used]
    return shared[0] if shared else item.module.__name__.rsplit(".", 1)[-1]


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the groups
def pytest_collection_modifyitems(config, items):
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if used & SLOW_FIXTURES:
            item.add_marker(pytest.mark.slow)
        if used & POSTGRES_FIXTURES:
            item.add_marker(pytest.mark.postgres)
        item.add_marker(pytest.mark.xdist_group(xdist_group(item)))
