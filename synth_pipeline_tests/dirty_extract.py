"""A small, deliberately dirty OMOP extract, built in a real SQLite or PostgreSQL database.

Every kind of dirt the README promises to cope with is in it, on purpose and counted:

- ``person``: no declared key and duplicate ``person_id`` values; 64-bit and negative ids;
  ``location_id`` all NULL; ``provider_id`` and ``care_site_id`` 0 for NULL (and no
  ``provider`` table at all); ``birth_datetime`` as date-only text, some of it in the years
  1600 and 9999 (outside 1677..2262); ``person_source_value`` longer than its declared width;
  ``gender_source_value`` declared 3 characters wide but holding ``FEMALE`` and ``MALE``;
  ``ward`` (not an OMOP column) declared 4 wide, its common values ``cardiology`` and
  ``oncology``; ``big_counter`` with values at both ends of the 64-bit range.
- ``observation_period``: person ids missing from ``person`` (orphans), ends before starts.
- ``visit_occurrence``: orphan person ids, 0 for NULL, ``preceding_visit_occurrence_id``
  pointing nowhere, datetimes without a time; OMOP 5.3 or 5.4 columns.
- ``condition_occurrence``: visit ids pointing nowhere, dates outside 1677..2262.
- ``death``: an empty table.
- ``cdm_source``: metadata, one row.

``quoting=True`` (PostgreSQL) adds what only careful quoting survives: the extract sits in a
schema named ``Cdm Extract``, and a table ``Lab "Results"; DROP TABLE person; --`` with
columns ``Person_Id`` and ``select`` and ``Free Text``. Identifiers are quoted by the
database's own identifier preparer and values are bound as parameters, never pasted.
"""

from __future__ import annotations

import random

import sqlalchemy as sa

from synth_pipeline.core.database import normalise_url, transactional_sqlite

QUOTED_TABLE = 'Lab "Results"; DROP TABLE person; --'
QUOTED_SCHEMA = "Cdm Extract"
UPPER_TABLE = "VISIT_OCCURRENCE"
MIXED_TABLE = "Person"

BIG = 2**62  # person ids are 64-bit: above 2**53, where floats lose integers

PERSON_COLUMNS = [
    ("person_id", "BIGINT"),
    ("gender_concept_id", "INTEGER"),
    ("year_of_birth", "INTEGER"),
    ("month_of_birth", "INTEGER"),
    ("day_of_birth", "INTEGER"),
    ("birth_datetime", "TIMESTAMP"),
    ("race_concept_id", "INTEGER"),
    ("ethnicity_concept_id", "INTEGER"),
    ("location_id", "INTEGER"),
    ("provider_id", "INTEGER"),
    ("care_site_id", "INTEGER"),
    ("person_source_value", "VARCHAR(50)"),
    ("gender_source_value", "VARCHAR(3)"),
    ("ward", "VARCHAR(4)"),
    ("big_counter", "BIGINT"),
]

OBSERVATION_PERIOD_COLUMNS = [
    ("observation_period_id", "BIGINT"),
    ("person_id", "BIGINT"),
    ("observation_period_start_date", "DATE"),
    ("observation_period_end_date", "DATE"),
    ("period_type_concept_id", "INTEGER"),
]


def visit_columns(cdm_version: str) -> list[tuple[str, str]]:
    admitted, discharged = (
        ("admitted_from_concept_id", "discharged_to_concept_id")
        if cdm_version == "5.4"
        else ("admitting_source_concept_id", "discharge_to_concept_id")
    )
    return [
        ("visit_occurrence_id", "BIGINT"),
        ("person_id", "BIGINT"),
        ("visit_concept_id", "INTEGER"),
        ("visit_start_date", "DATE"),
        ("visit_start_datetime", "TIMESTAMP"),
        ("visit_end_date", "DATE"),
        ("visit_end_datetime", "TIMESTAMP"),
        ("visit_type_concept_id", "INTEGER"),
        ("provider_id", "INTEGER"),
        ("care_site_id", "INTEGER"),
        ("visit_source_value", "VARCHAR(50)"),
        (admitted, "INTEGER"),
        (discharged, "INTEGER"),
        ("preceding_visit_occurrence_id", "BIGINT"),
    ]


CONDITION_COLUMNS = [
    ("condition_occurrence_id", "BIGINT"),
    ("person_id", "BIGINT"),
    ("condition_concept_id", "INTEGER"),
    ("condition_start_date", "DATE"),
    ("condition_end_date", "DATE"),
    ("condition_type_concept_id", "INTEGER"),
    ("visit_occurrence_id", "BIGINT"),
    ("condition_source_value", "VARCHAR(50)"),
]

DEATH_COLUMNS = [
    ("person_id", "BIGINT"),
    ("death_date", "DATE"),
    ("death_datetime", "TIMESTAMP"),
    ("death_type_concept_id", "INTEGER"),
    ("cause_concept_id", "INTEGER"),
]

CDM_SOURCE_COLUMNS = [
    ("cdm_source_name", "VARCHAR(255)"),
    ("cdm_source_abbreviation", "VARCHAR(25)"),
    ("cdm_version", "VARCHAR(10)"),
    ("source_release_date", "DATE"),
]

QUOTED_COLUMNS = [
    ("Person_Id", "BIGINT"),
    ("select", "INTEGER"),
    ("Free Text", "VARCHAR(20)"),
]

# What the builder put in, for the tests to compare with what the pipeline reports.
N_PERSONS = 400  # distinct real persons; plus negative ids and duplicates below
N_NEGATIVE = 20
N_DUPLICATES = 15
N_OUT_OF_RANGE_BIRTHS = 24  # 12 in 1600, 12 in 9999
N_VISITS = 1200
N_CONDITIONS = 1500


def _date(rng: random.Random, lo: int = 1990, hi: int = 2020) -> str:
    return f"{rng.randint(lo, hi):04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _plus_days(day: str, days: int) -> str:
    import datetime as dt

    return (dt.date.fromisoformat(day) + dt.timedelta(days=days)).isoformat()


def tables(cdm_version: str = "5.3", quoting: bool = False) -> dict[str, tuple[list, list]]:
    """Table name -> (columns [(name, SQL type)], rows [tuple]); the same rows every time."""
    rng = random.Random(7)
    ids = [BIG + i * 7919 for i in range(N_PERSONS - N_NEGATIVE)] + [
        -(i + 1) for i in range(N_NEGATIVE)
    ]
    persons = []
    for n, pid in enumerate(ids):
        year = rng.randint(1930, 2010)
        if n < N_OUT_OF_RANGE_BIRTHS // 2:
            birth = f"1600-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
        elif n < N_OUT_OF_RANGE_BIRTHS:
            birth = f"9999-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}"
        else:
            birth = f"{year:04d}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"  # no time
        gender = rng.choice([8507, 8532])
        persons.append(
            (
                pid,
                gender,
                int(birth[:4]),
                int(birth[5:7]),
                int(birth[8:10]),
                birth,
                rng.choice([8527, 8516, 8515]),
                rng.choice([38003563, 38003564]),
                None,  # location_id: all NULL
                0,  # provider_id: 0 for NULL (and there is no provider table)
                0 if n % 3 else None,  # care_site_id
                "".join(rng.choice("ABCDEFGHJK0123456789") for _ in range(rng.randint(60, 80))),
                "FEMALE" if gender == 8532 else "MALE",  # wider than VARCHAR(3)
                rng.choice(["cardiology", "oncology", "ICU"]),  # common values wider than 4
                rng.choice([2**63 - 1 - rng.randint(0, 10**6), -(2**63) + rng.randint(0, 10**6)]),
            )
        )
    persons += [persons[i * 11] for i in range(N_DUPLICATES)]  # duplicate primary keys

    orphans = [BIG - 1 - i for i in range(40)]  # person ids missing from person
    periods = []
    for n, pid in enumerate(ids + orphans):
        start = _date(rng, 1995, 2010)
        end = _plus_days(start, -rng.randint(1, 30) if n % 25 == 0 else rng.randint(100, 4000))
        periods.append((n + 1, pid, start, end, 44814724))

    visits = []
    for n in range(N_VISITS):
        pid = rng.choice(ids) if n % 20 else rng.choice(orphans)
        start = _date(rng, 2000, 2018)
        end = _plus_days(start, rng.choice([0, 0, 0, 1, 2, 5]))
        visits.append(
            (
                10_000 + n,
                pid,
                rng.choice([9201, 9202, 9203]),
                start,
                start,  # a datetime with no time
                end,
                end + " 00:00:00",
                44818517,
                0,  # provider_id 0 for NULL
                0 if n % 2 else None,
                rng.choice(["inpatient", "outpatient", "emergency"]),
                rng.choice([0, 8536, 8870]),
                rng.choice([0, 8536]),
                (10_000 + n - 1) if n % 4 else 999_999_999,  # some point nowhere
            )
        )

    conditions = []
    for n in range(N_CONDITIONS):
        pid = rng.choice(ids)
        # a dozen start after 2262
        start = f"2300-0{rng.randint(1, 9)}-15" if n < 12 else _date(rng, 2000, 2018)
        conditions.append(
            (
                n + 1,
                pid,
                rng.choice([201826, 320128, 255573, 4329847, 40481087]),
                start,
                _plus_days(start, rng.randint(0, 60)) if n % 3 else None,
                32020,
                rng.choice([10_000 + v for v in range(N_VISITS)]) if n % 5 else 123456789,
                "".join(rng.choice("ABCDEFGH0123456789.") for _ in range(6)),
            )
        )

    out = {
        "person": (PERSON_COLUMNS, persons),
        "observation_period": (OBSERVATION_PERIOD_COLUMNS, periods),
        "visit_occurrence": (visit_columns(cdm_version), visits),
        "condition_occurrence": (CONDITION_COLUMNS, conditions),
        "death": (DEATH_COLUMNS, []),
        "cdm_source": (
            CDM_SOURCE_COLUMNS,
            [("Dirty Hospital", "DIRTY", cdm_version, "2024-01-31")],
        ),
    }
    if quoting:
        # as an extract exported from Oracle might spell them: upper-case table and columns
        columns, rows = out.pop("visit_occurrence")
        out[UPPER_TABLE] = ([(c.upper(), t) for c, t in columns], rows)
        out[MIXED_TABLE] = out.pop("person")
        labs = [
            (rng.choice(ids), rng.choice([1, 2, 3]), rng.choice(["normal", "high", "low"]))
            for _ in range(300)
        ]
        out[QUOTED_TABLE] = (QUOTED_COLUMNS, labs)
    return out


def _fits(sql_type: str, values: list) -> str:
    if sql_type.startswith("VARCHAR("):
        width = int(sql_type[len("VARCHAR(") : -1])
        if any(isinstance(v, str) and len(v) > width for v in values):
            return "TEXT"
    return sql_type


def build(
    url: str, schema: str | None = None, *, cdm_version: str = "5.3", quoting: bool = False
) -> dict[str, int]:
    """Create the dirty extract in the database at ``url``; returns rows per table."""
    engine = sa.create_engine(normalise_url(url))
    if engine.dialect.name == "sqlite":
        transactional_sqlite(engine)
    q = engine.dialect.identifier_preparer.quote_identifier
    counts = {}
    try:
        with engine.begin() as conn:
            if schema:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {q(schema)} CASCADE")
                conn.exec_driver_sql(f"CREATE SCHEMA {q(schema)}")
            for table, (columns, rows) in tables(cdm_version, quoting).items():
                name = f"{q(schema)}.{q(table)}" if schema else q(table)
                if engine.dialect.name != "sqlite":  # PostgreSQL enforces widths: TEXT holds more
                    columns = [
                        (c, _fits(t, [r[i] for r in rows])) for i, (c, t) in enumerate(columns)
                    ]
                ddl = ", ".join(f"{q(c)} {t}" for c, t in columns)
                conn.exec_driver_sql(f"CREATE TABLE {name} ({ddl})")
                if rows:
                    marks = ", ".join(
                        ["?" if engine.dialect.name == "sqlite" else "%s"] * len(columns)
                    )
                    conn.exec_driver_sql(f"INSERT INTO {name} VALUES ({marks})", rows)
                counts[table] = len(rows)
    finally:
        engine.dispose()
    return counts
