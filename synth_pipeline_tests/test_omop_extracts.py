"""The extract generator builds what it says: the spec's tables and columns, each dirty case
it is asked for, a vocabulary of exactly what the data use, and data the judge finds clean
(for every drawn spec too)."""

# ruff: noqa: F811  (the fixtures imported from extract_fixtures are test arguments)
from __future__ import annotations

import dataclasses

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings

from synth_pipeline.core.database import normalise_url

from . import omop_extracts as ox
from .extract_fixtures import postgres_extracts, postgres_schemas, sqlite_extracts  # noqa: F401
from .omop_judge import judge, violations
from .omop_spec import VOCABULARY_TABLES, clinical_tables, spec_fields


def query(facts: ox.ExtractFacts, sql: str, **params) -> list[tuple]:
    engine = sa.create_engine(normalise_url(facts.url))
    sql = sql.replace("{s}", f'"{facts.schema}".' if facts.schema else "")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]
    finally:
        engine.dispose()


def one(facts, sql, **params):
    return query(facts, sql, **params)[0][0]


@pytest.mark.parametrize("spec", [ox.DEMO_LIKE_53, ox.SYNTHEA_LIKE_54], ids=lambda s: s.name)
def test_every_table_of_the_version_has_the_spec_columns(spec, sqlite_extracts):
    facts = sqlite_extracts(spec)
    engine = sa.create_engine(facts.url)
    inspector = sa.inspect(engine)
    expected = {*clinical_tables(spec.cdm_version), "cdm_source", *VOCABULARY_TABLES}
    assert set(inspector.get_table_names()) == expected
    fields = spec_fields(spec.cdm_version)
    for table in expected:
        columns = [c["name"] for c in inspector.get_columns(table)]
        assert columns == [f.name for f in fields[table]], table
    engine.dispose()
    empty = [t for t in clinical_tables(spec.cdm_version) if facts.row_counts[t] == 0]
    assert empty == ([] if spec.cdm_version == "5.3" else ["death"])  # twins: nobody dies


def test_cdm_54_and_53_columns_side_by_side(sqlite_extracts):
    v53, v54 = sqlite_extracts(ox.DEMO_LIKE_53), sqlite_extracts(ox.SYNTHEA_LIKE_54)
    assert one(v54, "SELECT COUNT(procedure_end_date) FROM procedure_occurrence") > 0
    assert one(v54, "SELECT COUNT(admitted_from_concept_id) FROM visit_occurrence") > 0
    assert one(v53, "SELECT COUNT(admitting_source_concept_id) FROM visit_occurrence") > 0
    assert "procedure_end_date" not in v53.column_types["procedure_occurrence"]
    assert one(v54, "SELECT cdm_version FROM cdm_source") == "v5.4"
    assert one(v53, "SELECT cdm_version FROM cdm_source") == "v5.3.1"


@pytest.mark.parametrize("spec", ox.NAMED_SPECS, ids=lambda s: s.name)
def test_the_extract_window_ends_on_the_release_date(spec, sqlite_extracts):
    facts = sqlite_extracts(spec)
    release = one(facts, "SELECT source_release_date FROM cdm_source")
    assert release == facts.window_end.isoformat()
    assert facts.window_start <= facts.first_date <= facts.last_date <= facts.window_end


def test_icu_ids_are_64_bit_and_negative_and_its_dates_after_2100(sqlite_extracts):
    facts = sqlite_extracts(ox.ICU_53)
    low, high = query(facts, "SELECT MIN(person_id), MAX(person_id) FROM person")[0]
    assert low < -(2**53) and high > 2**53
    assert one(facts, "SELECT MIN(visit_start_date) FROM visit_occurrence") >= "2110-01-01"
    assert {"big_ids", "future_dates", "same_day_datetimes"} <= facts.cases


def test_long_site_vocabulary_strings_and_local_concepts(sqlite_extracts):
    facts = sqlite_extracts(ox.TINY_54)
    assert one(facts, "SELECT MAX(LENGTH(vocabulary_id)) FROM vocabulary") > 20
    assert one(facts, "SELECT MAX(LENGTH(vocabulary_id)) FROM concept") > 20
    assert one(facts, "SELECT MAX(LENGTH(concept_code)) FROM concept") > 50
    assert facts.column_types["concept"]["vocabulary_id"] == "TEXT"
    local = query(
        facts,
        "SELECT concept_id, vocabulary_id, standard_concept FROM concept "
        "WHERE concept_id > 2000000000",
    )
    assert local and all(v == ox.LONG_LOCAL_VOCABULARY and s is None for _, v, s in local)
    used = one(
        facts,
        "SELECT COUNT(*) FROM measurement WHERE measurement_source_concept_id > 2000000000",
    )
    assert used == facts.row_counts["measurement"]
    # each local concept maps to a standard one
    assert one(
        facts,
        "SELECT COUNT(*) FROM concept_relationship WHERE concept_id_1 > 2000000000 "
        "AND relationship_id = 'Maps to'",
    ) == len(local)
    assert facts.row_counts["location"] == 1 and facts.row_counts["dose_era"] == 0
    assert {"empty_tables", "one_row_tables", "local_concepts"} <= facts.cases


def test_claims_from_csv_hold_empty_strings_and_zeros_for_null(sqlite_extracts):
    facts = sqlite_extracts(ox.CLAIMS_CSV)
    assert facts.column_types["cost"]["revenue_code_concept_id"] == "INTEGER"
    assert (
        one(facts, "SELECT COUNT(*) FROM cost WHERE revenue_code_concept_id = ''")
        == (facts.row_counts["cost"])
    )
    assert one(facts, "SELECT typeof(revenue_code_concept_id) FROM cost LIMIT 1") == "text"
    assert one(facts, "SELECT COUNT(*) FROM cost WHERE typeof(paid_by_primary) = 'text'") > 0
    first_visits = one(
        facts, "SELECT COUNT(*) FROM visit_occurrence WHERE preceding_visit_occurrence_id = 0"
    )
    assert first_visits > 0
    assert (
        one(
            facts,
            "SELECT COUNT(*) FROM visit_occurrence WHERE preceding_visit_occurrence_id IS NULL",
        )
        == 0
    )
    # care_site: only its id varies
    for column in spec_fields("5.4")["care_site"]:
        distinct = one(facts, f'SELECT COUNT(DISTINCT "{column.name}") FROM care_site')
        assert distinct == (facts.row_counts["care_site"] if column.primary_key else 1), column
    assert facts.spec.persons == 10


def test_twins_most_visits_have_an_identical_twin(sqlite_extracts):
    for spec in (ox.TWINS, ox.SYNTHEA_LIKE_54):
        facts = sqlite_extracts(spec)
        columns = [
            f.name
            for f in spec_fields(spec.cdm_version)["visit_occurrence"]
            if f.name not in ("visit_occurrence_id", "person_id", "preceding_visit_occurrence_id")
        ]
        quoted = ", ".join(f'"{c}"' for c in columns)
        twinned = one(
            facts,
            f"SELECT SUM(n) FROM (SELECT COUNT(*) AS n FROM visit_occurrence GROUP BY {quoted} "
            "HAVING COUNT(*) > 1) AS g",
        )
        assert twinned / facts.row_counts["visit_occurrence"] > 0.75, spec.name
        assert one(facts, "SELECT COUNT(DISTINCT specialty_concept_id) FROM provider") == 1


def test_same_day_datetimes_end_later_the_same_day(sqlite_extracts):
    facts = sqlite_extracts(ox.ICU_53)
    same_day = one(
        facts,
        "SELECT COUNT(*) FROM visit_detail WHERE visit_detail_end_date = visit_detail_start_date "
        "AND visit_detail_end_datetime > visit_detail_start_datetime",
    )
    assert same_day > 0


def test_fewer_persons_than_k(sqlite_extracts):
    facts = sqlite_extracts(dataclasses.replace(ox.TINY_54, name="three", persons=3))
    assert facts.row_counts["person"] == 3 and "fewer_persons_than_k" in facts.cases
    assert violations(judge(facts.url, facts.url)) == {}


def test_the_vocabulary_holds_what_the_data_use_and_the_cdm_metadata(sqlite_extracts):
    facts = sqlite_extracts(ox.SYNTHEA_LIKE_54)
    concepts = {r[0] for r in query(facts, "SELECT concept_id FROM concept")}
    used = set()
    for table in facts.clinical_tables:
        for column in facts.column_types[table]:
            if "_concept_id" in column:
                used |= {
                    r[0]
                    for r in query(facts, f'SELECT DISTINCT "{column}" FROM "{table}"')
                    if r[0] is not None
                }
    assert used <= concepts
    assert len(concepts) < 3 * len(used)  # small: what the data use and their metadata
    # field concepts of *_event_id: vocabulary CDM, class Field, named '<table>.<field>'
    fields = query(
        facts,
        "SELECT DISTINCT c.concept_id, c.concept_name, c.vocabulary_id, c.concept_class_id, "
        "c.domain_id FROM measurement m JOIN concept c "
        "ON c.concept_id = m.meas_event_field_concept_id",
    )
    assert fields
    for cid, name, vocabulary, cls, domain in fields:
        assert ox.FIELD_CONCEPTS[name] == cid and (vocabulary, cls, domain) == (
            "CDM",
            "Field",
            "Metadata",
        )
    domains = dict(query(facts, "SELECT domain_id, domain_concept_id FROM domain"))
    for name, cid in {
        "Visit": 8,
        "Condition": 19,
        "Drug": 13,
        "Procedure": 10,
        "Device": 17,
        "Measurement": 21,
        "Observation": 27,
        "Specimen": 36,
    }.items():
        assert domains[name] == cid
    fact_domains = {
        r[0]
        for r in query(
            facts,
            "SELECT domain_concept_id_1 FROM fact_relationship "
            "UNION SELECT domain_concept_id_2 FROM fact_relationship",
        )
    }
    assert fact_domains == {8, 19, 13, 10, 17, 21, 27, 36}


@pytest.mark.parametrize("spec", [ox.ICU_53, ox.TINY_54], ids=lambda s: s.name)
def test_postgresql_extracts_declare_wide_types_and_are_clean(spec, postgres_extracts):
    facts = postgres_extracts(spec)
    assert (
        violations(
            judge(facts.url, facts.url, source_schema=facts.schema, destination_schema=facts.schema)
        )
        == {}
    )
    if spec.big_ids:
        assert facts.column_types["person"]["person_id"] == "BIGINT"
        low = one(facts, "SELECT MIN(person_id) FROM {s}person")
        assert low < -(2**53)
    if spec.long_vocabulary_strings:
        assert facts.column_types["concept"]["vocabulary_id"] == "TEXT"
        assert one(facts, "SELECT MAX(LENGTH(concept_code)) FROM {s}concept") > 50


def test_empty_strings_for_null_need_sqlite(postgres_database, postgres_schemas):
    with pytest.raises(ValueError, match="SQLite"):
        ox.build_extract(postgres_database, ox.CLAIMS_CSV, schema=postgres_schemas("csv"))


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(spec=ox.extract_specs())
def test_every_drawn_extract_builds_and_the_judge_finds_it_clean(spec, tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('drawn') / 'source.sqlite'}"
    facts = ox.build_extract(url, spec)
    assert violations(judge(url, url)) == {}
    assert set(spec.included) <= set(facts.tables)
    for table in spec.empty_tables:
        if table in spec.included:
            assert facts.row_counts[table] == 0
    for table in spec.one_row_tables:
        if table in spec.included:
            assert facts.row_counts[table] <= 1
