"""The source is opened read-only: a write through the pipeline's own source connection fails,
on SQLite (``mode=ro``) and on PostgreSQL (``default_transaction_read_only``), and the
extract is unchanged afterwards.

This guards against the pipeline's own mistakes. It is not an access control: a hospital
should still give the pipeline a database role that can only read.
"""

from __future__ import annotations

import hashlib
import shutil

import pytest
import sqlalchemy as sa

from synth_pipeline.core.database import normalise_url, open_source
from synth_pipeline.resources import SourceDatabase

WRITES = [
    "CREATE TABLE intruder (x INTEGER)",
    "INSERT INTO person (person_id, gender_concept_id, year_of_birth, race_concept_id, "
    "ethnicity_concept_id) VALUES (-1, 0, 1900, 0, 0)",
    "UPDATE person SET year_of_birth = 1800",
    "DELETE FROM person",
    "DROP TABLE person",
]


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def sqlite_source(demo_sqlite_url, tmp_path):
    path = tmp_path / "source.sqlite"
    shutil.copy(demo_sqlite_url.removeprefix("sqlite:///"), path)
    return path


@pytest.mark.parametrize("statement", WRITES)
@pytest.mark.parametrize("how", ["open_source", "resource", "url asks for rw"])
def test_sqlite_source_refuses_writes(sqlite_source, statement, how):
    before = sha256(sqlite_source)
    url = f"sqlite:///{sqlite_source}"
    if how == "resource":
        engine = SourceDatabase(url=url).engine()
    elif how == "url asks for rw":
        engine = open_source(f"sqlite:///file:{sqlite_source}?mode=rwc&uri=true")
    else:
        engine = open_source(url)
    try:
        with (
            pytest.raises(sa.exc.OperationalError, match="readonly database"),
            engine.begin() as conn,
        ):
            conn.exec_driver_sql(statement)
        with engine.connect() as conn:  # still readable
            assert conn.exec_driver_sql("SELECT COUNT(*) FROM person").scalar_one() > 0
    finally:
        engine.dispose()
    assert sha256(sqlite_source) == before


@pytest.fixture(scope="module")
def pg_source(postgres_database):
    admin = sa.create_engine(normalise_url(postgres_database))
    with admin.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA IF EXISTS ro_src CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA ro_src")
        conn.exec_driver_sql(
            "CREATE TABLE ro_src.person (person_id BIGINT, gender_concept_id INTEGER, "
            "year_of_birth INTEGER, race_concept_id INTEGER, ethnicity_concept_id INTEGER)"
        )
        conn.exec_driver_sql("INSERT INTO ro_src.person VALUES (1, 8507, 1970, 0, 0)")
    yield postgres_database
    with admin.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA ro_src CASCADE")
    admin.dispose()


def _pg_content(url) -> list:
    admin = sa.create_engine(normalise_url(url))
    with admin.connect() as conn:
        rows = conn.exec_driver_sql("SELECT * FROM ro_src.person ORDER BY 1").all()
        tables = conn.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'ro_src' ORDER BY 1"
        ).all()
    admin.dispose()
    return [tuple(r) for r in rows + tables]


@pytest.mark.parametrize("statement", WRITES)
@pytest.mark.parametrize("how", ["open_source", "resource"])
def test_postgres_source_refuses_writes(pg_source, statement, how):
    before = _pg_content(pg_source)
    engine = (
        SourceDatabase(url=pg_source, db_schema="ro_src").engine()
        if how == "resource"
        else open_source(pg_source)
    )
    try:
        for _ in range(2):  # a fresh pooled connection is read-only too
            with (
                pytest.raises(sa.exc.DBAPIError, match="read-only transaction"),
                engine.begin() as conn,
            ):
                conn.exec_driver_sql("SET search_path TO ro_src")
                conn.exec_driver_sql(statement)
            engine.dispose()
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW default_transaction_read_only").scalar_one() == "on"
    finally:
        engine.dispose()
    assert _pg_content(pg_source) == before
