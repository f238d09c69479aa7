"""A small OMOP extract whose vocabulary carries a site's own concepts, built in SQLite or
PostgreSQL.

The clinical part is a person, observation_period and condition_occurrence table; the
conditions name public concepts and site-local ones (ids above 2,000,000,000) often enough that
their configs list them. The vocabulary holds the public concepts those columns use, the site's
concepts with a 40-character ``vocabulary_id`` and 120-character ``concept_code`` (longer than
the CDM's 20 and 50), declared as ``TEXT`` or ``VARCHAR(255)``, and three local vocabularies:
one with ``vocabulary_concept_id`` 0, one above 2,000,000,000, and one whose row looks public
but whose concepts are all site-local. Synonyms, ancestors and relationships tie site-local
concepts to public ones.
"""

from __future__ import annotations

import datetime as dt
import random

import sqlalchemy as sa

from synth_pipeline.core.database import normalise_url, transactional_sqlite

SITE_LOCAL_FLOOR = 2_000_000_000

# local vocabularies: 40 characters, twice the CDM's varchar(20)
LOCAL_ZERO = "SITE_DIAGNOSES_OF_THE_GENERAL_HOSPITAL_0"  # vocabulary_concept_id 0
LOCAL_HIGH = "SITE_PROCEDURES_OF_THE_GENERAL_HOSPITAL1"  # vocabulary_concept_id above 2e9
LOCAL_ONLY = "SITE_LAB_CODES_OF_THE_GENERAL_HOSPITAL_2"  # a public-looking id, local concepts
assert len(LOCAL_ZERO) == len(LOCAL_HIGH) == len(LOCAL_ONLY) == 40

# public concepts the clinical tables use
MALE, FEMALE, WHITE, NOT_HISPANIC = 8507, 8532, 8527, 38003564
EHR = 32817
GI_BLEED, HEART_ATTACK = 192671, 4329847
PUBLIC_CONDITIONS = [GI_BLEED, HEART_ATTACK]
# site-local concepts: one per local vocabulary, all in the clinical tables' columns
LOCAL_CONDITION = 2_000_000_001  # condition_concept_id, vocabulary LOCAL_ZERO
LOCAL_SOURCE_A = 2_000_000_002  # condition_source_concept_id, vocabulary LOCAL_HIGH
LOCAL_SOURCE_B = 2_000_000_003  # condition_source_concept_id, vocabulary LOCAL_ONLY
SITE_LOCAL_CONCEPTS = [LOCAL_CONDITION, LOCAL_SOURCE_A, LOCAL_SOURCE_B]
LOCAL_ONLY_VOCABULARY_CONCEPT = 44_800_001  # names LOCAL_ONLY in vocabulary; itself public-looking

PUBLIC_CONCEPTS = {
    MALE: ("MALE", "Gender", "Gender", "Gender", "M"),
    FEMALE: ("FEMALE", "Gender", "Gender", "Gender", "F"),
    WHITE: ("White", "Race", "Race", "Race", "5"),
    NOT_HISPANIC: ("Not Hispanic or Latino", "Ethnicity", "Ethnicity", "Ethnicity", "Not Hispanic"),
    EHR: ("EHR", "Type Concept", "Type Concept", "Type Concept", "OMOP4976890"),
    GI_BLEED: (
        "Gastrointestinal hemorrhage",
        "Condition",
        "SNOMED",
        "Clinical Finding",
        "74474003",
    ),
    HEART_ATTACK: (
        "Acute myocardial infarction",
        "Condition",
        "SNOMED",
        "Clinical Finding",
        "57054005",
    ),
    44819097: ("SNOMED", "Metadata", "Vocabulary", "Vocabulary", "OMOP generated"),
    44819108: ("Gender", "Metadata", "Vocabulary", "Vocabulary", "OMOP generated"),
}
LOCAL_CODE_LENGTH = 120  # more than the CDM's varchar(50)


def local_code(concept_id: int) -> str:
    stem = f"SITE-{concept_id}-"
    return stem + "X" * (LOCAL_CODE_LENGTH - len(stem))


LOCAL_CONCEPTS = {
    LOCAL_CONDITION: ("Ward-coded bleed", "Condition", LOCAL_ZERO),
    LOCAL_SOURCE_A: ("Theatre list entry", "Condition", LOCAL_HIGH),
    LOCAL_SOURCE_B: ("Lab panel code", "Condition", LOCAL_ONLY),
}
VOCABULARIES = [
    ("SNOMED", "Systematized Nomenclature of Medicine", 44819097),
    ("Gender", "OMOP Gender", 44819108),
    (LOCAL_ZERO, "The hospital's diagnosis list", 0),
    (LOCAL_HIGH, "The hospital's procedure list", 2_000_000_100),
    (LOCAL_ONLY, "The hospital's lab codes", LOCAL_ONLY_VOCABULARY_CONCEPT),
]
# ancestry and relationships: (a, b) pairs, those touching a site-local concept marked
ANCESTORS = [
    (GI_BLEED, GI_BLEED),
    (HEART_ATTACK, HEART_ATTACK),
    (GI_BLEED, LOCAL_CONDITION),
    (LOCAL_CONDITION, LOCAL_CONDITION),
]
RELATIONSHIPS = [
    (GI_BLEED, HEART_ATTACK, "Is a"),
    (LOCAL_SOURCE_A, GI_BLEED, "Maps to"),
    (LOCAL_SOURCE_B, HEART_ATTACK, "Maps to"),
]
SYNONYMS = [
    (GI_BLEED, "GI bleed"),
    (LOCAL_CONDITION, "bleed (ward code)"),
    (LOCAL_SOURCE_A, "theatre entry"),
]

PERSONS = 150
CONDITIONS = 600


def _clinical(rng: random.Random) -> dict[str, tuple[list[tuple[str, str]], list[tuple]]]:
    persons, periods, conditions = [], [], []
    for pid in range(1, PERSONS + 1):
        born = dt.datetime(rng.randint(1930, 2005), rng.randint(1, 12), rng.randint(1, 28))
        persons.append(
            (
                pid,
                rng.choice([MALE, FEMALE]),
                born.year,
                born.month,
                born.day,
                born,
                WHITE,
                NOT_HISPANIC,
            )
        )
        start = dt.date(rng.randint(2005, 2012), rng.randint(1, 12), rng.randint(1, 28))
        periods.append((pid, pid, start, start + dt.timedelta(days=rng.randint(2000, 4000)), EHR))
    for cid in range(1, CONDITIONS + 1):
        pid = rng.randint(1, PERSONS)
        start = periods[pid - 1][2] + dt.timedelta(days=rng.randint(0, 1500))
        concept = rng.choice([*PUBLIC_CONDITIONS, LOCAL_CONDITION])
        source_concept = rng.choice([LOCAL_SOURCE_A, LOCAL_SOURCE_B, 0])
        conditions.append((cid, pid, concept, start, EHR, source_concept))
    return {
        "person": (
            [
                ("person_id", "BIGINT"),
                ("gender_concept_id", "INTEGER"),
                ("year_of_birth", "INTEGER"),
                ("month_of_birth", "INTEGER"),
                ("day_of_birth", "INTEGER"),
                ("birth_datetime", "TIMESTAMP"),
                ("race_concept_id", "INTEGER"),
                ("ethnicity_concept_id", "INTEGER"),
            ],
            persons,
        ),
        "observation_period": (
            [
                ("observation_period_id", "BIGINT"),
                ("person_id", "BIGINT"),
                ("observation_period_start_date", "DATE"),
                ("observation_period_end_date", "DATE"),
                ("period_type_concept_id", "INTEGER"),
            ],
            periods,
        ),
        "condition_occurrence": (
            [
                ("condition_occurrence_id", "BIGINT"),
                ("person_id", "BIGINT"),
                ("condition_concept_id", "INTEGER"),
                ("condition_start_date", "DATE"),
                ("condition_type_concept_id", "INTEGER"),
                ("condition_source_concept_id", "INTEGER"),
            ],
            conditions,
        ),
    }


def _vocabulary(text: str) -> dict[str, tuple[list[tuple[str, str]], list[tuple]]]:
    """The vocabulary tables, their string columns declared ``text`` (TEXT or VARCHAR(255))."""
    valid = (dt.date(1970, 1, 1), dt.date(2099, 12, 31))
    concepts = [
        (cid, name, domain, vocab, cls, "S", code, *valid, None)
        for cid, (name, domain, vocab, cls, code) in PUBLIC_CONCEPTS.items()
    ] + [
        (cid, name, domain, vocab, "Site code", None, local_code(cid), *valid, None)
        for cid, (name, domain, vocab) in LOCAL_CONCEPTS.items()
    ]
    return {
        "concept": (
            [
                ("concept_id", "INTEGER"),
                ("concept_name", text),
                ("domain_id", text),
                ("vocabulary_id", text),
                ("concept_class_id", text),
                ("standard_concept", "VARCHAR(1)"),
                ("concept_code", text),
                ("valid_start_date", "DATE"),
                ("valid_end_date", "DATE"),
                ("invalid_reason", "VARCHAR(1)"),
            ],
            concepts,
        ),
        "vocabulary": (
            [
                ("vocabulary_id", text),
                ("vocabulary_name", text),
                ("vocabulary_reference", text),
                ("vocabulary_version", text),
                ("vocabulary_concept_id", "INTEGER"),
            ],
            [(v, name, "site", "v1", c) for v, name, c in VOCABULARIES],
        ),
        "concept_synonym": (
            [
                ("concept_id", "INTEGER"),
                ("concept_synonym_name", text),
                ("language_concept_id", "INTEGER"),
            ],
            [(c, name, 4180186) for c, name in SYNONYMS],
        ),
        "concept_ancestor": (
            [
                ("ancestor_concept_id", "INTEGER"),
                ("descendant_concept_id", "INTEGER"),
                ("min_levels_of_separation", "INTEGER"),
                ("max_levels_of_separation", "INTEGER"),
            ],
            [(a, d, int(a != d), int(a != d)) for a, d in ANCESTORS],
        ),
        "concept_relationship": (
            [
                ("concept_id_1", "INTEGER"),
                ("concept_id_2", "INTEGER"),
                ("relationship_id", text),
                ("valid_start_date", "DATE"),
                ("valid_end_date", "DATE"),
                ("invalid_reason", "VARCHAR(1)"),
            ],
            [(a, b, r, *valid, None) for a, b, r in RELATIONSHIPS],
        ),
    }


def build(url: str, schema: str | None = None, *, text: str = "TEXT", seed: int = 5) -> None:
    """Create the extract in the database at ``url`` (in ``schema``, made afresh, if given)."""
    engine = sa.create_engine(normalise_url(url))
    if engine.dialect.name == "sqlite":
        transactional_sqlite(engine)
    q = engine.dialect.identifier_preparer.quote_identifier
    mark = "?" if engine.dialect.name == "sqlite" else "%s"
    try:
        with engine.begin() as conn:
            if schema:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {q(schema)} CASCADE")
                conn.exec_driver_sql(f"CREATE SCHEMA {q(schema)}")
            tables = {**_clinical(random.Random(seed)), **_vocabulary(text)}
            for table, (columns, rows) in tables.items():
                name = f"{q(schema)}.{q(table)}" if schema else q(table)
                ddl = ", ".join(f"{q(c)} {t}" for c, t in columns)
                conn.exec_driver_sql(f"CREATE TABLE {name} ({ddl})")
                marks = ", ".join([mark] * len(columns))
                conn.exec_driver_sql(f"INSERT INTO {name} VALUES ({marks})", rows)
    finally:
        engine.dispose()
