"""Bad connections fail at once with a clear error, and a URL's password never shows: not in
messages, the console, the Dagster event log, run config, metadata, stored state, configs,
the manifest or anything else written to disk.

The test server trusts every local connection, so a wrong password cannot be refused by
password; authentication failures are shown with a role that may not log in and a role that
does not exist, which the server refuses the same way (at connection start, by name).
"""

from __future__ import annotations

import json
import os
import uuid
from urllib.parse import quote as url_quote

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from synth_pipeline import cli
from synth_pipeline.assets import project_assets
from synth_pipeline.core.database import normalise_url
from synth_pipeline.core.write import read_register
from synth_pipeline.definitions import build_resources

from . import dirty_extract as dirty
from .fault_helpers import all_text_under

PASSWORD = "S3cr3t-p@ss/w0rd;Zq"
# how the password can appear: as typed, and percent-encoded inside a URL
SECRETS = [PASSWORD, url_quote(PASSWORD, safe=""), "S3cr3t-p", "w0rd;Zq", "w0rd%3BZq"]


def with_password(url: str, user: str | None = None, password: str = PASSWORD, **parts) -> str:
    u = make_url(url).set(password=password, **parts)
    if user:
        u = u.set(username=user)
    return u.render_as_string(hide_password=False)


def leaks(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [s for s in SECRETS if s in text]


@pytest.fixture(scope="module")
def roles(postgres_database):
    """Two roles for this test module: one that may not log in, one that may log in but create
    nothing in schema `locked`. Dropped afterwards."""
    tag = uuid.uuid4().hex[:8]
    names = {"nologin": f"synth_nologin_{tag}", "reader": f"synth_reader_{tag}"}
    admin = sa.create_engine(normalise_url(postgres_database), isolation_level="AUTOCOMMIT")
    db = make_url(postgres_database).database
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{names["nologin"]}" NOLOGIN')
        conn.exec_driver_sql(f'CREATE ROLE "{names["reader"]}" LOGIN')
        conn.exec_driver_sql(f'GRANT CONNECT ON DATABASE "{db}" TO "{names["reader"]}"')
        conn.exec_driver_sql("CREATE SCHEMA IF NOT EXISTS locked")
        conn.exec_driver_sql(f'GRANT USAGE ON SCHEMA locked TO "{names["reader"]}"')
    yield names
    with admin.connect() as conn:
        for n in names.values():
            conn.exec_driver_sql(f'DROP OWNED BY "{n}"')
            conn.exec_driver_sql(f'DROP ROLE "{n}"')
    admin.dispose()


def run_cli(capsys, config_root, tmp_path, *, source, destination, extra=()):
    code = cli.main(
        [
            "run",
            "--source",
            source,
            "--destination",
            destination,
            "--project",
            "demo",
            "--bundle",
            str(tmp_path / "bundle"),
            "--tables",
            "person",
            "--config-dir",
            str(config_root),
            *extra,
        ]
    )
    out = capsys.readouterr()
    return code, out.out + out.err


def assert_clear_and_redacted(code, out, *expected):
    assert code == 2, out
    for part in expected:
        assert part in out, (part, out)
    assert "***" in out, "the URL is shown, with its password hidden"
    assert leaks(out) == []


def test_unreachable_source(capsys, config_root, tmp_path, postgres_database):
    source = with_password(postgres_database, port=1)
    code, out = run_cli(
        capsys, config_root, tmp_path, source=source, destination=f"sqlite:///{tmp_path}/d.db"
    )
    assert_clear_and_redacted(code, out, "cannot connect to the source database", ":1/")
    assert not (tmp_path / "d.db").exists() and not (tmp_path / "bundle").exists()


def test_unreachable_destination(capsys, config_root, tmp_path, demo_sqlite_url, postgres_database):
    destination = with_password(postgres_database, host="127.0.0.1", port=1)
    code, out = run_cli(
        capsys, config_root, tmp_path, source=demo_sqlite_url, destination=destination
    )
    assert_clear_and_redacted(code, out, "cannot connect to the destination database")
    assert not (tmp_path / "bundle").exists()


def test_a_password_given_as_a_url_parameter_is_hidden_too(
    capsys, config_root, tmp_path, demo_sqlite_url, postgres_database
):
    """libpq also reads ?password=...; the URL is shown with that parameter hidden as well."""
    u = make_url(postgres_database).set(port=1).update_query_dict({"password": PASSWORD})
    destination = u.render_as_string(hide_password=False)
    assert leaks(destination), "the URL really carries the password"
    code, out = run_cli(
        capsys, config_root, tmp_path, source=demo_sqlite_url, destination=destination
    )
    assert_clear_and_redacted(code, out, "cannot connect to the destination database")
    assert "password=***" in out


@pytest.mark.parametrize("which", ["nologin", "unknown"])
def test_a_role_the_server_refuses_at_login(
    which, capsys, config_root, tmp_path, demo_sqlite_url, postgres_database, roles
):
    user = roles["nologin"] if which == "nologin" else f"nobody_{uuid.uuid4().hex[:6]}"
    destination = with_password(postgres_database, user=user)
    code, out = run_cli(
        capsys, config_root, tmp_path, source=demo_sqlite_url, destination=destination
    )
    reason = "is not permitted to log in" if which == "nologin" else "does not exist"
    assert_clear_and_redacted(code, out, "cannot connect to the destination database", reason)
    assert f"{user}:***@" in out


def test_missing_source_schema(capsys, config_root, tmp_path, postgres_database):
    code, out = run_cli(
        capsys,
        config_root,
        tmp_path,
        source=with_password(postgres_database),
        destination=f"sqlite:///{tmp_path}/d.db",
        extra=["--schema", "no_such_schema"],
    )
    assert_clear_and_redacted(code, out, "has no schema 'no_such_schema'", "source")


def test_missing_destination_schema(
    capsys, config_root, tmp_path, demo_sqlite_url, postgres_database
):
    code, out = run_cli(
        capsys,
        config_root,
        tmp_path,
        source=demo_sqlite_url,
        destination=with_password(postgres_database),
        extra=["--destination-schema", "no_such_schema"],
    )
    assert_clear_and_redacted(code, out, "has no schema 'no_such_schema'", "destination")


def test_destination_without_write_permission(
    capsys, config_root, tmp_path, demo_sqlite_url, postgres_database, roles
):
    destination = with_password(postgres_database, user=roles["reader"])
    code, out = run_cli(
        capsys,
        config_root,
        tmp_path,
        source=demo_sqlite_url,
        destination=destination,
        extra=["--destination-schema", "locked"],
    )
    assert_clear_and_redacted(
        code, out, "does not let us create tables in schema 'locked'", "permission denied"
    )
    assert not (tmp_path / "bundle").exists()


def test_read_only_sqlite_destination(capsys, config_root, tmp_path, demo_sqlite_url):
    """File permissions do not stop root, so the SQLite file is opened read-only by its URL."""
    path = tmp_path / "d.sqlite"
    sa.create_engine(f"sqlite:///{path}").connect().close()
    destination = f"sqlite:///file:{path}?mode=ro&uri=true"
    code, out = run_cli(
        capsys, config_root, tmp_path, source=demo_sqlite_url, destination=destination
    )
    assert code == 2
    assert "does not let us create tables" in out and "readonly database" in out


@pytest.mark.slow
def test_no_password_anywhere_after_good_and_bad_runs(
    tmp_path, postgres_database, roles, monkeypatch, capfd
):
    """A whole init, approve and run on PostgreSQL with passwords in both URLs, then failing
    runs (CLI and Dagster), on an instance kept on disk; then every byte written is searched."""
    home = tmp_path / "dagster_home"
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("SYNTH_WORK_DIR", str(tmp_path / "work"))
    admin = sa.create_engine(normalise_url(postgres_database))
    dirty.build(postgres_database, schema="pw_src")
    with admin.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS pw_dst CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA pw_dst")
    url = with_password(postgres_database)
    root = tmp_path / "configuration-files"
    common = ["--project", "pw", "--config-dir", str(root)]
    assert cli.main(["init", "--source", url, "--schema", "pw_src", *common]) == 0
    assert cli.main(["approve", "--all", "--reviewer", "R", *common]) == 0
    run = ["run", "--source", url, "--schema", "pw_src", "--bundle", str(tmp_path / "bundle")]
    ok = cli.main([*run, "--destination", url, "--destination-schema", "pw_dst", *common])
    assert ok == 0, capfd.readouterr()
    assert (tmp_path / "bundle" / "manifest.json").exists()
    # failing runs: unreachable destination, then a refused login inside a Dagster run
    bad = with_password(postgres_database, port=1)
    assert cli.main([*run, "--destination", bad, *common]) == 2
    refused = with_password(postgres_database, user=roles["nologin"])
    monkeypatch.setenv("SYNTH_SOURCE_URL", url)
    monkeypatch.setenv("SYNTH_SOURCE_SCHEMA", "pw_src")
    monkeypatch.setenv("SYNTH_DESTINATION_URL", refused)
    monkeypatch.setenv("SYNTH_PROJECT", "pw")
    monkeypatch.setenv("SYNTH_CONFIG_DIR", str(root))
    instance = dg.DagsterInstance.get()
    pw = project_assets("pw")
    assert "person" in instance.get_dynamic_partitions(pw.partitions_name)
    result = dg.materialize(
        pw.all,
        selection=pw.table_steps,
        partition_key="person",
        instance=instance,
        resources=build_resources(),
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "is not permitted to log in" in failure.step_failure_data.error.to_string()

    console = capfd.readouterr()
    assert leaks(console.out + console.err) == []
    # everything on disk: instance storage (event log, runs), stored asset values, configs,
    # the bundle with its manifest, logs
    files = all_text_under(tmp_path)
    assert any(p.name == "manifest.json" for p in files) and any(".db" in p.name for p in files)
    assert {str(p): leaks(b) for p, b in files.items() if leaks(b)} == {}
    # and through the instance's own API: every run's config, tags, events and metadata
    runs = instance.get_runs()
    # init: a run per config step; run: a run per table step and the bundle's; the refused login
    assert len(runs) == 3 + 4 + 1 + 1
    shown_redacted = False
    for r in runs:
        assert leaks(json.dumps(r.run_config, default=str)) == []
        assert leaks(json.dumps(r.tags, default=str)) == []
        for entry in instance.all_logs(r.run_id):
            text = dg.serialize_value(entry)  # message, error, metadata: the whole stored record
            assert leaks(text) == [], (r.run_id, text[:300])
            shown_redacted |= ":***@127.0.0.1" in text
    assert shown_redacted, "the URLs appear in the run history, redacted"
    # the destination's register holds no URL either
    register = read_register(admin, "pw_dst")
    assert register and leaks(json.dumps(register, default=str)) == []
    admin.dispose()
    assert os.environ["SYNTH_DESTINATION_URL"] == refused  # monkeypatch restores it afterwards
