"""An extract built to make disclosure control leak, and the checks that it does not.

The nasty cases, each small enough to stay below k even at k = 5:

- a concept seen once (race 8657 in person; condition 45999991; a cause of death 4306655)
- a patient aged 109 (born 1907-03-14, the only person born before 1950)
- a single death date (2016-05-17)
- free-text notes with names in them, a provider table with names and NPIs
- a column whose every value is unique (measurement.value_as_number, to three decimals, so
  rounding alone would not hide them; person.mrn)
- a group of 3 inside a per-concept statistic (concept 3004249: three measurements, extreme values)
- a null pattern seen twice (two visits with neither an end date nor a provider)
- a table with 4 rows (provider)
- a vocabulary subset, as many extracts carry: concept, concept_ancestor and a site-local
  source_to_concept_map hold exactly the concepts the records use, the rare ones included
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import sqlalchemy as sa

from synth_pipeline.core.database import normalise_url

RARE_RACE = 8657
RARE_CONDITION = 45999991
RARE_CAUSE = 4306655
OLD_BIRTH = dt.datetime(1907, 3, 14)
DEATH_DATE = dt.date(2016, 5, 17)
NAMES = ["Featherstonehaugh", "Okonkwo-Smythe", "Quillfeather", "Zebedee", "Marjoribanks"]
MRN_PREFIX = "MRN7741-"
GROUP_OF_3_CONCEPT = 3004249
GROUP_OF_3_VALUES = [987.65, 876.54, 765.43]
GROUP_OF_3_UNIT = 8876
PROVIDERS = 4
PERSONS = 200
RARE_CONCEPT_NAMES = {
    RARE_RACE: "Pitcairn Islander of the adversarial fixture",
    RARE_CONDITION: "Quillfeather tropical fever",
    RARE_CAUSE: "Marjoribanks cardiac event",
    GROUP_OF_3_CONCEPT: "Featherstonehaugh serum assay",
}
LOCAL_CODE = "LOCAL-OKONKWO-77"  # a site's own code in source_to_concept_map


@dataclass
class Extract:
    """What was planted, so tests can look for it."""

    unique_values: list[float] = field(default_factory=list)  # measurement.value_as_number
    mrns: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)  # raw strings that must never reappear


def build_extract(url: str, schema: str | None = None) -> Extract:
    """Create the adversarial extract in the (existing) database at ``url``."""
    rng = np.random.default_rng(7)
    engine = sa.create_engine(normalise_url(url))
    md = sa.MetaData(schema=schema)
    big, integer, text = sa.BigInteger, sa.Integer, sa.String

    person = sa.Table(
        "person",
        md,
        sa.Column("person_id", big),
        sa.Column("gender_concept_id", big),
        sa.Column("year_of_birth", integer),
        sa.Column("month_of_birth", integer),
        sa.Column("day_of_birth", integer),
        sa.Column("birth_datetime", sa.DateTime),
        sa.Column("race_concept_id", big),
        sa.Column("ethnicity_concept_id", big),
        sa.Column("person_source_value", text(50)),
        sa.Column("mrn", text(20)),  # a hospital's own column: every value unique
    )
    observation_period = sa.Table(
        "observation_period",
        md,
        sa.Column("observation_period_id", big),
        sa.Column("person_id", big),
        sa.Column("observation_period_start_date", sa.Date),
        sa.Column("observation_period_end_date", sa.Date),
        sa.Column("period_type_concept_id", big),
    )
    death = sa.Table(
        "death",
        md,
        sa.Column("person_id", big),
        sa.Column("death_date", sa.Date),
        sa.Column("death_datetime", sa.DateTime),
        sa.Column("death_type_concept_id", big),
        sa.Column("cause_concept_id", big),
    )
    provider = sa.Table(
        "provider",
        md,
        sa.Column("provider_id", big),
        sa.Column("provider_name", text(255)),
        sa.Column("npi", text(20)),
        sa.Column("specialty_concept_id", big),
        sa.Column("year_of_birth", integer),
    )
    visit = sa.Table(
        "visit_occurrence",
        md,
        sa.Column("visit_occurrence_id", big),
        sa.Column("person_id", big),
        sa.Column("visit_concept_id", big),
        sa.Column("visit_start_date", sa.Date),
        sa.Column("visit_end_date", sa.Date),
        sa.Column("visit_type_concept_id", big),
        sa.Column("provider_id", big),
    )
    condition = sa.Table(
        "condition_occurrence",
        md,
        sa.Column("condition_occurrence_id", big),
        sa.Column("person_id", big),
        sa.Column("condition_concept_id", big),
        sa.Column("condition_start_date", sa.Date),
        sa.Column("condition_end_date", sa.Date),
        sa.Column("condition_type_concept_id", big),
        sa.Column("visit_occurrence_id", big),
    )
    measurement = sa.Table(
        "measurement",
        md,
        sa.Column("measurement_id", big),
        sa.Column("person_id", big),
        sa.Column("measurement_concept_id", big),
        sa.Column("measurement_date", sa.Date),
        sa.Column("measurement_type_concept_id", big),
        sa.Column("value_as_number", sa.Float),
        sa.Column("unit_concept_id", big),
    )
    note = sa.Table(
        "note",
        md,
        sa.Column("note_id", big),
        sa.Column("person_id", big),
        sa.Column("note_date", sa.Date),
        sa.Column("note_type_concept_id", big),
        sa.Column("note_title", text(250)),
        sa.Column("note_text", sa.Text),
        sa.Column("encoding_concept_id", big),
        sa.Column("language_concept_id", big),
    )
    concept_table = sa.Table(
        "concept",
        md,
        sa.Column("concept_id", big),
        sa.Column("concept_name", text(255)),
        sa.Column("domain_id", text(20)),
        sa.Column("vocabulary_id", text(20)),
        sa.Column("concept_class_id", text(20)),
        sa.Column("standard_concept", text(1)),
        sa.Column("concept_code", text(50)),
        sa.Column("valid_start_date", sa.Date),
        sa.Column("valid_end_date", sa.Date),
        sa.Column("invalid_reason", text(1)),
    )
    concept_ancestor = sa.Table(
        "concept_ancestor",
        md,
        sa.Column("ancestor_concept_id", big),
        sa.Column("descendant_concept_id", big),
        sa.Column("min_levels_of_separation", integer),
        sa.Column("max_levels_of_separation", integer),
    )
    source_to_concept_map = sa.Table(
        "source_to_concept_map",
        md,
        sa.Column("source_code", text(50)),
        sa.Column("source_concept_id", big),
        sa.Column("source_vocabulary_id", text(20)),
        sa.Column("source_code_description", text(255)),
        sa.Column("target_concept_id", big),
        sa.Column("target_vocabulary_id", text(20)),
        sa.Column("valid_start_date", sa.Date),
        sa.Column("valid_end_date", sa.Date),
        sa.Column("invalid_reason", text(1)),
    )
    out = Extract()
    day0 = dt.date(2010, 1, 1)

    def day(i: int) -> dt.date:
        return day0 + dt.timedelta(days=int(i))

    persons = []
    for pid in range(1, PERSONS + 1):
        # person 1 is aged 109 at the 2016 extract
        born = OLD_BIRTH if pid == 1 else dt.datetime(1950 + pid % 20, 1 + pid % 12, 1 + pid % 28)
        mrn = f"{MRN_PREFIX}{pid * 7919 % 100000:05d}"
        out.mrns.append(mrn)
        persons.append(
            {
                "person_id": pid,
                "gender_concept_id": 8507 if pid % 2 else 8532,
                "year_of_birth": born.year,
                "month_of_birth": born.month,
                "day_of_birth": born.day,
                "birth_datetime": born,
                "race_concept_id": RARE_RACE if pid == 2 else (8516 if pid % 5 == 0 else 8527),
                "ethnicity_concept_id": 38003563 if pid % 4 == 0 else 0,
                "person_source_value": f"person-{pid}",
                "mrn": mrn,
            }
        )
    periods = [
        {
            "observation_period_id": pid,
            "person_id": pid,
            "observation_period_start_date": dt.date(2005, 1, 1),
            "observation_period_end_date": dt.date(2019, 12, 31),
            "period_type_concept_id": 44814724,
        }
        for pid in range(1, PERSONS + 1)
    ]
    deaths = [
        {
            "person_id": 3,
            "death_date": DEATH_DATE,
            "death_datetime": dt.datetime.combine(DEATH_DATE, dt.time(4, 37)),
            "death_type_concept_id": 38003569,
            "cause_concept_id": RARE_CAUSE,
        }
    ]
    providers = [
        {
            "provider_id": i,
            "provider_name": f"Dr {NAMES[i]} ({'GP' if i % 2 else 'Cardiology'})",
            "npi": f"{1093817465 + i * 1111}",
            "specialty_concept_id": 38004446,
            "year_of_birth": 1960 + i,
        }
        for i in range(1, PROVIDERS + 1)
    ]
    visits = []
    for vid in range(1, 301):
        start = day(rng.integers(0, 3650))
        pattern = vid in (17, 211)  # the null pattern seen twice
        visits.append(
            {
                "visit_occurrence_id": vid,
                "person_id": 1 + vid % PERSONS,
                "visit_concept_id": 9201 if vid % 3 else 9202,
                "visit_start_date": start,
                "visit_end_date": None if pattern else start + dt.timedelta(days=int(vid % 4)),
                "visit_type_concept_id": 44818517,
                "provider_id": None if pattern else 1 + vid % PROVIDERS,
            }
        )
    conditions = []
    common = [201826, 320128, 255573, 4329847, 312437]
    for cid in range(1, 2001):
        start = day(rng.integers(0, 3650))
        concept = RARE_CONDITION if cid == 999 else common[cid % len(common)]
        conditions.append(
            {
                "condition_occurrence_id": cid,
                "person_id": 1 + cid % PERSONS,
                "condition_concept_id": concept,
                "condition_start_date": start,
                "condition_end_date": start + dt.timedelta(days=int(rng.integers(0, 30))),
                "condition_type_concept_id": 32020,
                "visit_occurrence_id": 1 + cid % 300,
            }
        )
    measurements = []
    mid = 0
    # haemoglobin 9.000..18.000 g/dL and potassium 3.000..5.500 mmol/L, three decimals, no repeats
    for concept, unit, low, high, n in (
        (3000963, 8713, 9000, 18000, 1000),
        (3023103, 8753, 3000, 5500, 497),
    ):
        for milli in rng.choice(np.arange(low, high), size=n, replace=False):
            mid += 1
            measurements.append((mid, concept, unit, int(milli) / 1000))
    for value in GROUP_OF_3_VALUES:
        mid += 1
        measurements.append((mid, GROUP_OF_3_CONCEPT, GROUP_OF_3_UNIT, value))
    values = [m[3] for m in measurements]
    assert len(set(values)) == len(values), "every value_as_number is unique"
    out.unique_values = values
    measurement_rows = [
        {
            "measurement_id": m_id,
            "person_id": 1 + m_id % PERSONS,
            "measurement_concept_id": concept,
            "measurement_date": day(rng.integers(0, 3650)),
            "measurement_type_concept_id": 44818702,
            "value_as_number": value,
            "unit_concept_id": unit,
        }
        for m_id, concept, unit, value in measurements
    ]
    notes = []
    for nid in range(1, 61):
        name, doctor = NAMES[nid % len(NAMES)], NAMES[(nid + 2) % len(NAMES)]
        text_ = (
            f"Patient {name} (MRN {out.mrns[nid]}) seen by Dr {doctor} on visit {nid}; "
            f"complains of chest pain since {nid} days."
        )
        out.texts.append(text_)
        notes.append(
            {
                "note_id": nid,
                "person_id": 1 + nid % PERSONS,
                "note_date": day(rng.integers(0, 3650)),
                "note_type_concept_id": 44814637,
                "note_title": f"Letter about {name}",
                "note_text": text_,
                "encoding_concept_id": 0,
                "language_concept_id": 4180186,
            }
        )
    # the vocabulary subset: every concept the records use, and nothing else
    used = sorted(
        {
            v
            for rows in (persons, periods, deaths, providers, visits, conditions, measurement_rows)
            for row in rows
            for key, v in row.items()
            if key.endswith("_concept_id") and v is not None
        }
        | {n["note_type_concept_id"] for n in notes}
        | {n["language_concept_id"] for n in notes}
        | {n["encoding_concept_id"] for n in notes}
    )
    concepts = [
        {
            "concept_id": c,
            "concept_name": RARE_CONCEPT_NAMES.get(c, f"Concept {c}"),
            "domain_id": "Observation",
            "vocabulary_id": "SNOMED",
            "concept_class_id": "Clinical Finding",
            "standard_concept": "S",
            "concept_code": f"C{c}",
            "valid_start_date": dt.date(1970, 1, 1),
            "valid_end_date": dt.date(2099, 12, 31),
            "invalid_reason": None,
        }
        for c in used
    ]
    # each concept is its own ancestor; the rare condition descends from a common one
    ancestors = [
        {
            "ancestor_concept_id": c,
            "descendant_concept_id": c,
            "min_levels_of_separation": 0,
            "max_levels_of_separation": 0,
        }
        for c in used
    ] + [
        {
            "ancestor_concept_id": common[0],
            "descendant_concept_id": RARE_CONDITION,
            "min_levels_of_separation": 1,
            "max_levels_of_separation": 1,
        }
    ]
    local_map = [
        {
            "source_code": LOCAL_CODE,
            "source_concept_id": 0,
            "source_vocabulary_id": "LOCAL",
            "source_code_description": "ward code",
            "target_concept_id": common[1],
            "target_vocabulary_id": "SNOMED",
            "valid_start_date": dt.date(2000, 1, 1),
            "valid_end_date": dt.date(2099, 12, 31),
            "invalid_reason": None,
        }
    ]
    with engine.begin() as conn:
        if schema:
            conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        md.drop_all(conn)
        md.create_all(conn)
        for table, rows in (
            (person, persons),
            (observation_period, periods),
            (death, deaths),
            (provider, providers),
            (visit, visits),
            (condition, conditions),
            (measurement, measurement_rows),
            (note, notes),
            (concept_table, concepts),
            (concept_ancestor, ancestors),
            (source_to_concept_map, local_map),
        ):
            conn.execute(table.insert(), rows)
    engine.dispose()
    return out


@dataclass
class PipelineRun:
    """What the whole CLI (init, approve --all, run) left from an adversarial extract."""

    code: int
    files: object  # ProjectFiles of the project "adv"
    destination_url: str
    bundle: Path


def run_pipeline(tmp: Path, source: str, k: int = 10, schema: str | None = None) -> PipelineRun:
    """init, approve --all and run the extract at ``source`` through the CLI, with policy k."""
    from synth_pipeline import cli
    from synth_pipeline.core.config import ProjectConfig
    from synth_pipeline.core.config_files import ProjectFiles
    from synth_pipeline.core.disclosure import DisclosurePolicy

    schema_args = ["--schema", schema] if schema else []
    root = tmp / "configuration-files"
    files = ProjectFiles(root, "adv")
    files.save_project(ProjectConfig(project="adv", disclosure=DisclosurePolicy(min_cell_count=k)))
    common = ["--project", "adv", "--config-dir", str(root)]
    assert cli.main(["init", "--source", source, *schema_args, *common]) == 0
    assert cli.main(["approve", "--all", "--reviewer", "Adversarial Tester", *common]) == 0
    destination = f"sqlite:///{tmp / 'synthetic.sqlite'}"
    code = cli.main(
        ["run", "--source", source, *schema_args, "--destination", destination]
        + ["--bundle", str(tmp / "bundle"), *common]
    )
    return PipelineRun(code, files, destination, tmp / "bundle")


def bundle_text(bundle: Path) -> str:
    """Everything the bundle publishes as text: its text files, and its Parquet files' rows."""
    return "\n".join(
        pl.read_parquet(p).write_csv() if p.suffix == ".parquet" else p.read_text(encoding="utf-8")
        for p in sorted(bundle.rglob("*"))
        if p.is_file()
    )
