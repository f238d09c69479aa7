"""Fixtures that build omop_extracts specs into real databases; import them in a test module:

    from .extract_fixtures import postgres_extracts, postgres_schemas, sqlite_extracts  # noqa: F401

Each is module-scoped and returns a function, so a module builds each spec once:

- ``sqlite_extracts(spec)`` -> ExtractFacts of the spec in its own SQLite file;
- ``postgres_schemas(prefix)`` -> the name of a fresh schema in the session's PostgreSQL
  database (conftest's ``postgres_database``), dropped when the module ends;
- ``postgres_extracts(spec)`` -> ExtractFacts of the spec in a fresh schema there.
"""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from synth_pipeline.core.database import normalise_url

from .omop_extracts import ExtractFacts, ExtractSpec, build_extract


@pytest.fixture(scope="module")
def sqlite_extracts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("extracts")
    built: dict[ExtractSpec, ExtractFacts] = {}

    def build(spec: ExtractSpec) -> ExtractFacts:
        if spec not in built:
            path = folder / f"{spec.name}-{len(built)}.sqlite"
            built[spec] = build_extract(f"sqlite:///{path}", spec)
        return built[spec]

    return build


@pytest.fixture(scope="module")
def postgres_schemas(postgres_database):
    engine = sa.create_engine(normalise_url(postgres_database))
    made: list[str] = []

    def fresh(prefix: str = "s") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:8]}"
        with engine.begin() as conn:
            conn.execute(sa.schema.CreateSchema(name))
        made.append(name)
        return name

    yield fresh
    with engine.begin() as conn:
        for name in made:
            conn.execute(sa.schema.DropSchema(name, cascade=True, if_exists=True))
    engine.dispose()


@pytest.fixture(scope="module")
def postgres_extracts(postgres_database, postgres_schemas):
    built: dict[ExtractSpec, ExtractFacts] = {}

    def build(spec: ExtractSpec) -> ExtractFacts:
        if spec not in built:
            built[spec] = build_extract(postgres_database, spec, schema=postgres_schemas("src"))
        return built[spec]

    return build
