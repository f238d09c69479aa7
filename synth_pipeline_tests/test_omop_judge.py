"""The judge finds nothing on a clean extract, and each kind of violation planted in a copy
raises its own count: every count the issue asks for can fail.

Plants go on distinct rows of one copy per extract, so one judge run checks them all (a judge
run takes about a second). The clean extracts are the generator's (so these tests also show the generator is coherent by
a measure it does not share): every named spec in SQLite, one spec in PostgreSQL.
"""

# ruff: noqa: F811  (the fixtures imported from extract_fixtures are test arguments)
from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from synth_pipeline.core.database import normalise_url

from . import omop_extracts as ox
from .extract_fixtures import postgres_extracts, postgres_schemas, sqlite_extracts  # noqa: F401
from .omop_judge import judge, violations

JUDGE_54 = ox.ExtractSpec(
    name="judge_54", cdm_version="5.4", persons=40, seed=5, same_day_datetimes=True
)
# 5.3 with the dirt that changes how a value must be read: '' and 0 for NULL, 64-bit ids
JUDGE_53 = ox.ExtractSpec(
    name="judge_53",
    cdm_version="5.3",
    persons=40,
    seed=6,
    same_day_datetimes=True,
    big_ids=True,
    future_dates=True,
    empty_string_nulls=True,
    zero_for_null=True,
)


@dataclass
class Db:
    """Plain SQL on a copy of an extract, for planting violations."""

    engine: sa.Engine
    schema: str | None

    @property
    def sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    def sql(self, text: str) -> str:
        names = {
            t: (f'"{self.schema}"."{t}"' if self.schema else f'"{t}"')
            for t in sa.inspect(self.engine).get_table_names(schema=self.schema)
        }
        return text.format(**names)

    def ref(self, expr: str) -> str:
        return f"NULLIF(NULLIF({expr}, ''), 0)" if self.sqlite else f"NULLIF({expr}, 0)"

    def one(self, text: str, **params) -> tuple:
        with self.engine.connect() as conn:
            row = conn.execute(sa.text(self.sql(text)), params).first()
        assert row is not None, f"nothing to plant in: {text}"
        return tuple(row)

    def run(self, text: str, **params) -> None:
        with self.engine.begin() as conn:
            result = conn.execute(sa.text(self.sql(text)), params)
        assert result.rowcount, f"planted nothing: {text}"

    def day(self, value, days: int = 0):
        """A date ``days`` after ``value`` (a date, a datetime or ISO text), as a parameter."""
        if isinstance(value, str):
            value = dt.date.fromisoformat(value[:10])
        if isinstance(value, dt.datetime):
            value = value.date()
        value = value + dt.timedelta(days=days)
        return value.isoformat() if self.sqlite else value

    def moment(self, value, minutes: int):
        if isinstance(value, str):
            value = dt.datetime.fromisoformat(value)
        value = value + dt.timedelta(minutes=minutes)
        return value.strftime("%Y-%m-%d %H:%M:%S") if self.sqlite else value


# Each plant breaks one rule on row number k of its table (distinct k per plant, so plants can
# share one database); PLANTS names the count each must raise.


def end_before_start_date(db: Db, k: int):
    vid, start = db.one(
        "SELECT visit_occurrence_id, visit_start_date FROM {visit_occurrence} "
        "ORDER BY visit_occurrence_id LIMIT 1 OFFSET :k",
        k=k,
    )
    db.run(
        "UPDATE {visit_occurrence} SET visit_end_date = :d WHERE visit_occurrence_id = :id",
        d=db.day(start, -1),
        id=vid,
    )


def end_before_start_same_day(db: Db, k: int):
    vid, start, moment = db.one(
        "SELECT visit_occurrence_id, visit_start_date, visit_start_datetime "
        "FROM {visit_occurrence} ORDER BY visit_occurrence_id LIMIT 1 OFFSET :k",
        k=k,
    )
    db.run(
        "UPDATE {visit_occurrence} SET visit_end_date = visit_start_date, "
        "visit_end_datetime = :t WHERE visit_occurrence_id = :id",
        t=db.moment(moment, -3),
        id=vid,
    )


def procedure_end_before_start(db: Db, k: int):
    pid, day = db.one(
        "SELECT procedure_occurrence_id, procedure_date FROM {procedure_occurrence} "
        "ORDER BY procedure_occurrence_id LIMIT 1 OFFSET :k",
        k=k,
    )
    db.run(
        "UPDATE {procedure_occurrence} SET procedure_end_date = :d "
        "WHERE procedure_occurrence_id = :id",
        d=db.day(day, -2),
        id=pid,
    )


def verbatim_end_before_start(db: Db, k: int):
    did, day = db.one(
        "SELECT drug_exposure_id, drug_exposure_start_date FROM {drug_exposure} "
        "ORDER BY drug_exposure_id LIMIT 1 OFFSET :k",
        k=k,
    )
    db.run(
        "UPDATE {drug_exposure} SET verbatim_end_date = :d WHERE drug_exposure_id = :id",
        d=db.day(day, -1),
        id=did,
    )


def datetime_off_its_date(db: Db, k: int):
    mid, moment = db.one(
        "SELECT measurement_id, measurement_datetime FROM {measurement} "
        "ORDER BY measurement_id LIMIT 1 OFFSET :k",
        k=k,
    )
    db.run(
        "UPDATE {measurement} SET measurement_datetime = :t WHERE measurement_id = :id",
        t=db.moment(moment, 24 * 60),
        id=mid,
    )


def birth_year_off(db: Db, k: int):
    (pid,) = db.one("SELECT person_id FROM {person} ORDER BY person_id LIMIT 1 OFFSET :k", k=k)
    db.run("UPDATE {person} SET year_of_birth = year_of_birth + 1 WHERE person_id = :id", id=pid)


def condition_before_birth(db: Db, k: int):
    (cid,) = db.one(
        "SELECT condition_occurrence_id FROM {condition_occurrence} "
        "ORDER BY condition_occurrence_id LIMIT 1 OFFSET :k",
        k=k,
    )
    db.run(
        "UPDATE {condition_occurrence} SET condition_start_date = :d "
        "WHERE condition_occurrence_id = :id",
        d=db.day(dt.date(1900, 1, 1)),
        id=cid,
    )


def drug_after_death(db: Db, k: int):
    person, day = db.one(
        "SELECT person_id, drug_exposure_start_date FROM {drug_exposure} "
        "ORDER BY drug_exposure_id LIMIT 1 OFFSET :k",
        k=k,
    )
    (dead,) = db.one("SELECT COUNT(*) FROM {death} WHERE person_id = :p", p=person)
    if dead:
        db.run("DELETE FROM {death} WHERE person_id = :p", p=person)
    db.run(
        "INSERT INTO {death} (person_id, death_date, death_type_concept_id) VALUES (:p, :d, 0)",
        p=person,
        d=db.day(day, -1),
    )


def measurement_outside_periods(db: Db, k: int):
    mid, day = db.one(
        "SELECT measurement_id, measurement_date FROM {measurement} "
        "ORDER BY measurement_id LIMIT 1 OFFSET :k",
        k=k,
    )
    (first,) = db.one(
        "SELECT MIN(observation_period_start_date) FROM {observation_period} o "
        "JOIN {measurement} m ON m.person_id = o.person_id WHERE m.measurement_id = :id",
        id=mid,
    )
    db.run(
        "UPDATE {measurement} SET measurement_date = :d, measurement_datetime = NULL "
        "WHERE measurement_id = :id",
        d=db.day(first, -3),
        id=mid,
    )


def condition_in_other_persons_visit(db: Db, k: int):
    cid, person = db.one(
        "SELECT condition_occurrence_id, person_id FROM {condition_occurrence} "
        f"WHERE {db.ref('visit_occurrence_id')} IS NOT NULL "
        "ORDER BY condition_occurrence_id LIMIT 1 OFFSET :k",
        k=k,
    )
    (vid,) = db.one(
        "SELECT visit_occurrence_id FROM {visit_occurrence} WHERE person_id <> :p "
        "ORDER BY visit_occurrence_id LIMIT 1",
        p=person,
    )
    db.run(
        "UPDATE {condition_occurrence} SET visit_occurrence_id = :v "
        "WHERE condition_occurrence_id = :id",
        v=vid,
        id=cid,
    )


def drug_before_its_visit(db: Db, k: int):
    did, start = db.one(
        "SELECT d.drug_exposure_id, v.visit_start_date FROM {drug_exposure} d "
        "JOIN {visit_occurrence} v ON v.visit_occurrence_id = d.visit_occurrence_id "
        "ORDER BY d.drug_exposure_id LIMIT 1 OFFSET :k",
        k=k,
    )
    db.run(
        "UPDATE {drug_exposure} SET drug_exposure_start_date = :d WHERE drug_exposure_id = :id",
        d=db.day(start, -3),
        id=did,
    )


def measurement_in_other_visit_detail(db: Db, k: int):
    mid, visit = db.one(
        "SELECT measurement_id, visit_occurrence_id FROM {measurement} "
        f"WHERE {db.ref('visit_detail_id')} IS NOT NULL "
        "ORDER BY measurement_id LIMIT 1 OFFSET :k",
        k=k,
    )
    (detail,) = db.one(
        "SELECT visit_detail_id FROM {visit_detail} WHERE visit_occurrence_id <> :v "
        "ORDER BY visit_detail_id LIMIT 1",
        v=visit,
    )
    db.run(
        "UPDATE {measurement} SET visit_detail_id = :d WHERE measurement_id = :id",
        d=detail,
        id=mid,
    )


def visit_after_source_range(db: Db, k: int):
    vid, end = db.one(
        "SELECT visit_occurrence_id, (SELECT MAX(visit_end_date) FROM {visit_occurrence}) "
        "FROM {visit_occurrence} ORDER BY visit_occurrence_id LIMIT 1 OFFSET :k",
        k=k,
    )
    db.run(
        "UPDATE {visit_occurrence} SET visit_end_date = :d WHERE visit_occurrence_id = :id",
        d=db.day(end, 10),
        id=vid,
    )


def period_after_release(db: Db, k: int):
    (release,) = db.one("SELECT source_release_date FROM {cdm_source}")
    (oid,) = db.one(
        "SELECT observation_period_id FROM {observation_period} "
        "ORDER BY observation_period_id LIMIT 1 OFFSET :k",
        k=k,
    )
    db.run(
        "UPDATE {observation_period} SET observation_period_end_date = :d "
        "WHERE observation_period_id = :id",
        d=db.day(release, 1),
        id=oid,
    )


def visit_with_unknown_provider(db: Db, k: int):
    (vid,) = db.one(
        "SELECT visit_occurrence_id FROM {visit_occurrence} "
        "ORDER BY visit_occurrence_id LIMIT 1 OFFSET :k",
        k=k,
    )
    db.run(
        "UPDATE {visit_occurrence} SET provider_id = 987654321 WHERE visit_occurrence_id = :id",
        id=vid,
    )


def nlp_of_no_note(db: Db, k: int):
    (nid,) = db.one(
        "SELECT note_nlp_id FROM {note_nlp} ORDER BY note_nlp_id LIMIT 1 OFFSET :k", k=k
    )
    db.run("UPDATE {note_nlp} SET note_id = 987654321 WHERE note_nlp_id = :id", id=nid)


def detail_in_other_persons_visit(db: Db, k: int):
    did, person = db.one(
        "SELECT visit_detail_id, person_id FROM {visit_detail} "
        "ORDER BY visit_detail_id LIMIT 1 OFFSET :k",
        k=k,
    )
    (vid,) = db.one(
        "SELECT visit_occurrence_id FROM {visit_occurrence} WHERE person_id <> :p "
        "ORDER BY visit_occurrence_id LIMIT 1",
        p=person,
    )
    db.run(
        "UPDATE {visit_detail} SET visit_occurrence_id = :v WHERE visit_detail_id = :id",
        v=vid,
        id=did,
    )


def preceding_visit_of_other_person(db: Db, k: int):
    vid, person = db.one(
        "SELECT visit_occurrence_id, person_id FROM {visit_occurrence} "
        "ORDER BY visit_occurrence_id LIMIT 1 OFFSET :k",
        k=k,
    )
    (other,) = db.one(
        "SELECT visit_occurrence_id FROM {visit_occurrence} WHERE person_id <> :p "
        "ORDER BY visit_occurrence_id LIMIT 1",
        p=person,
    )
    db.run(
        "UPDATE {visit_occurrence} SET preceding_visit_occurrence_id = :o "
        "WHERE visit_occurrence_id = :id",
        o=other,
        id=vid,
    )


def preceding_visit_later(db: Db, k: int):
    later, earlier = db.one(
        "SELECT visit_occurrence_id, preceding_visit_occurrence_id FROM {visit_occurrence} "
        f"WHERE {db.ref('preceding_visit_occurrence_id')} IS NOT NULL "
        "ORDER BY visit_occurrence_id LIMIT 1 OFFSET :k",
        k=k,
    )
    db.run(
        "UPDATE {visit_occurrence} SET preceding_visit_occurrence_id = :l "
        "WHERE visit_occurrence_id = :e",
        l=later,
        e=earlier,
    )


def _parent_later(column: str):
    def plant(db: Db, k: int):
        child, parent = db.one(
            f"SELECT d.visit_detail_id, d.{column} FROM {{visit_detail}} d "
            f"JOIN {{visit_detail}} p ON p.visit_detail_id = d.{column} "
            "WHERE p.visit_detail_start_datetime < d.visit_detail_start_datetime "
            "ORDER BY d.visit_detail_id LIMIT 1 OFFSET :k",
            k=k % 3,
        )
        db.run(
            f"UPDATE {{visit_detail}} SET {column} = :c WHERE visit_detail_id = :p",
            c=child,
            p=parent,
        )

    plant.__name__ = f"{column}_later"
    return plant


def fact_of_no_row(db: Db, k: int):
    db.run(
        "UPDATE {fact_relationship} SET fact_id_1 = 123456789 WHERE fact_id_1 = "
        "(SELECT fact_id_1 FROM {fact_relationship} ORDER BY fact_id_1 LIMIT 1 OFFSET :k)",
        k=k,
    )


def fact_across_persons(db: Db, k: int):
    fid1, fid2, person = db.one(
        "SELECT f.fact_id_1, f.fact_id_2, m.person_id FROM {fact_relationship} f "
        "JOIN {measurement} m ON m.measurement_id = f.fact_id_2 "
        "WHERE f.domain_concept_id_2 = 21 ORDER BY f.fact_id_1 LIMIT 1",
    )
    (other,) = db.one(
        "SELECT measurement_id FROM {measurement} WHERE person_id <> :p "
        "ORDER BY measurement_id LIMIT 1",
        p=person,
    )
    db.run(
        "UPDATE {fact_relationship} SET fact_id_2 = :o WHERE fact_id_1 = :a AND fact_id_2 = :b",
        o=other,
        a=fid1,
        b=fid2,
    )


def fact_of_unknown_domain(db: Db, k: int):
    db.run(
        "UPDATE {fact_relationship} SET domain_concept_id_1 = 999999 WHERE fact_id_2 = "
        "(SELECT fact_id_2 FROM {fact_relationship} ORDER BY fact_id_2 LIMIT 1 OFFSET :k)",
        k=k,
    )


def measurement_event_of_no_row(db: Db, k: int):
    db.run(
        "UPDATE {measurement} SET measurement_event_id = 987654321 WHERE measurement_id = "
        "(SELECT measurement_id FROM {measurement} WHERE measurement_event_id IS NOT NULL "
        "ORDER BY measurement_id LIMIT 1 OFFSET :k)",
        k=k,
    )


def note_event_of_other_person(db: Db, k: int):
    nid, person = db.one(
        "SELECT note_id, person_id FROM {note} WHERE note_event_id IS NOT NULL "
        "ORDER BY note_id LIMIT 1",
    )
    (vid,) = db.one(
        "SELECT visit_occurrence_id FROM {visit_occurrence} WHERE person_id <> :p "
        "ORDER BY visit_occurrence_id LIMIT 1",
        p=person,
    )
    db.run(
        "UPDATE {note} SET note_event_id = :v, note_event_field_concept_id = :f "
        "WHERE note_id = :id",
        v=vid,
        f=ox.FIELD_CONCEPTS["visit_occurrence.visit_occurrence_id"],
        id=nid,
    )


def observation_event_of_unknown_field(db: Db, k: int):
    db.run(
        "UPDATE {observation} SET obs_event_field_concept_id = :c WHERE observation_id = "
        "(SELECT observation_id FROM {observation} WHERE observation_event_id IS NOT NULL "
        "ORDER BY observation_id LIMIT 1)",
        c=ox.LANGUAGE_ENGLISH,  # a concept, but not a '<table>.<field>'
    )


def episode_event_of_no_row(db: Db, k: int):
    db.run(
        "UPDATE {episode_event} SET event_id = 987654321 WHERE episode_id = "
        "(SELECT episode_id FROM {episode_event} ORDER BY episode_id LIMIT 1)",
    )


def cost_of_no_row(db: Db, k: int):
    db.run(
        "UPDATE {cost} SET cost_event_id = 42424242 WHERE cost_id = "
        "(SELECT cost_id FROM {cost} ORDER BY cost_id LIMIT 1 OFFSET :k)",
        k=k,
    )


def cost_of_unknown_domain(db: Db, k: int):
    db.run(
        "UPDATE {cost} SET cost_domain_id = 'Nonsense' WHERE cost_id = "
        "(SELECT cost_id FROM {cost} ORDER BY cost_id LIMIT 1 OFFSET :k)",
        k=k,
    )


def cost_paid_by_other_persons_plan(db: Db, k: int):
    cost, person = db.one(
        "SELECT c.cost_id, v.person_id FROM {cost} c JOIN {visit_occurrence} v "
        "ON v.visit_occurrence_id = c.cost_event_id WHERE c.cost_domain_id = 'Visit' "
        "ORDER BY c.cost_id LIMIT 1 OFFSET :k",
        k=k,
    )
    (plan,) = db.one(
        "SELECT payer_plan_period_id FROM {payer_plan_period} WHERE person_id <> :p "
        "ORDER BY payer_plan_period_id LIMIT 1",
        p=person,
    )
    db.run("UPDATE {cost} SET payer_plan_period_id = :pl WHERE cost_id = :c", pl=plan, c=cost)


def gender_source_value_b(db: Db, k: int):
    db.run(
        "UPDATE {person} SET gender_source_value = 'B' WHERE person_id = "
        "(SELECT person_id FROM {person} WHERE gender_concept_id = 8507 "
        "ORDER BY person_id LIMIT 1 OFFSET :k)",
        k=k % 5,
    )


def gender_source_concept_contradicts(db: Db, k: int):
    db.run(
        "UPDATE {person} SET gender_source_concept_id = 8532 WHERE person_id = "
        "(SELECT person_id FROM {person} WHERE gender_concept_id = 8507 "
        "ORDER BY person_id LIMIT 1 OFFSET :k)",
        k=k % 5,
    )


def condition_source_value_of_other_concept(db: Db, k: int):
    db.run(
        "UPDATE {condition_occurrence} SET condition_source_value = 'I10' "
        "WHERE condition_occurrence_id = (SELECT condition_occurrence_id FROM "
        "{condition_occurrence} WHERE condition_concept_id <> 320128 "
        "ORDER BY condition_occurrence_id LIMIT 1 OFFSET :k)",
        k=k,
    )


Plant = Callable[[Db, int], None]
# (plant, the count it must raise, CDM versions it applies to)
PLANTS: list[tuple[Plant, str, tuple[str, ...]]] = [
    (end_before_start_date, "end_before_start:visit_occurrence.visit_end_date", ("5.3", "5.4")),
    (
        end_before_start_same_day,
        "end_before_start:visit_occurrence.visit_end_datetime",
        ("5.3", "5.4"),
    ),
    (
        procedure_end_before_start,
        "end_before_start:procedure_occurrence.procedure_end_date",
        ("5.4",),
    ),
    (verbatim_end_before_start, "end_before_start:drug_exposure.verbatim_end_date", ("5.3", "5.4")),
    (
        datetime_off_its_date,
        "datetime_not_on_date:measurement.measurement_datetime",
        ("5.3", "5.4"),
    ),
    (birth_year_off, "birth_parts_mismatch:person", ("5.3", "5.4")),
    (condition_before_birth, "before_birth:condition_occurrence", ("5.3", "5.4")),
    (drug_after_death, "after_death:drug_exposure", ("5.3", "5.4")),
    (measurement_outside_periods, "outside_observation_period:measurement", ("5.3", "5.4")),
    (
        condition_in_other_persons_visit,
        "visit_occurrence_mismatch:condition_occurrence",
        ("5.3", "5.4"),
    ),
    (drug_before_its_visit, "visit_occurrence_mismatch:drug_exposure", ("5.3", "5.4")),
    (measurement_in_other_visit_detail, "visit_detail_mismatch:measurement", ("5.3", "5.4")),
    (
        visit_after_source_range,
        "outside_source_range:visit_occurrence.visit_end_date",
        ("5.3", "5.4"),
    ),
    (period_after_release, "after_release_date:observation_period", ("5.3", "5.4")),
    (visit_with_unknown_provider, "dangling:visit_occurrence.provider_id", ("5.3", "5.4")),
    (nlp_of_no_note, "dangling:note_nlp.note_id", ("5.3", "5.4")),
    (
        detail_in_other_persons_visit,
        "reference_other_person:visit_detail.visit_occurrence_id",
        ("5.3", "5.4"),
    ),
    (
        preceding_visit_of_other_person,
        "self_reference_other_person:visit_occurrence.preceding_visit_occurrence_id",
        ("5.3", "5.4"),
    ),
    (
        preceding_visit_later,
        "self_reference_later:visit_occurrence.preceding_visit_occurrence_id",
        ("5.3", "5.4"),
    ),
    (
        _parent_later("parent_visit_detail_id"),
        "self_reference_later:visit_detail.parent_visit_detail_id",
        ("5.4",),
    ),
    (
        _parent_later("visit_detail_parent_id"),
        "self_reference_later:visit_detail.visit_detail_parent_id",
        ("5.3",),
    ),
    (fact_of_no_row, "fact_relationship.unresolved", ("5.3", "5.4")),
    (fact_across_persons, "fact_relationship.other_person", ("5.3", "5.4")),
    (fact_of_unknown_domain, "fact_relationship.unknown_domain", ("5.3", "5.4")),
    (measurement_event_of_no_row, "event_unresolved:measurement.measurement_event_id", ("5.4",)),
    (note_event_of_other_person, "event_other_person:note.note_event_id", ("5.4",)),
    (
        observation_event_of_unknown_field,
        "event_field_unknown:observation.observation_event_id",
        ("5.4",),
    ),
    (episode_event_of_no_row, "event_unresolved:episode_event.event_id", ("5.4",)),
    (cost_of_no_row, "cost.unresolved", ("5.3", "5.4")),
    (cost_of_unknown_domain, "cost.unknown_domain", ("5.3", "5.4")),
    (cost_paid_by_other_persons_plan, "cost.payer_other_person", ("5.3", "5.4")),
    (gender_source_value_b, "twin:person.gender_concept_id~gender_source_value", ("5.3", "5.4")),
    (
        gender_source_concept_contradicts,
        "twin:person.gender_concept_id~gender_source_concept_id",
        ("5.3", "5.4"),
    ),
    (
        condition_source_value_of_other_concept,
        "twin:condition_occurrence.condition_concept_id~condition_source_value",
        ("5.3", "5.4"),
    ),
]


def plant_all(db: Db, cdm_version: str) -> list[str]:
    """Every plant of this CDM version, each on its own rows; the counts they must raise."""
    planted = []
    for k, (plant, key, versions) in enumerate(PLANTS):
        if cdm_version in versions:
            plant(db, k)
            planted.append(key)
    return planted


@pytest.mark.parametrize("spec", ox.NAMED_SPECS, ids=lambda s: s.name)
def test_a_clean_extract_judged_as_its_own_destination_has_no_violation(spec, sqlite_extracts):
    facts = sqlite_extracts(spec)
    counts = judge(facts.url, facts.url)
    assert violations(counts) == {}
    # the checks ran: every family of the issue is there
    families = {k.split(":")[0] for k in counts}
    expected = {
        "end_before_start",
        "datetime_not_on_date",
        "before_birth",
        "outside_observation_period",
        "outside_source_range",
        "after_release_date",
        "dangling",
        "self_reference_later",
        "twin",
    }
    expected |= {"fact_relationship.unresolved"} if "fact_relationship" in facts.tables else set()
    expected |= {"cost.unresolved"} if "cost" in facts.tables else set()
    assert expected <= families


def test_the_judges_extracts_are_clean(sqlite_extracts):
    for spec in (JUDGE_54, JUDGE_53):
        facts = sqlite_extracts(spec)
        assert violations(judge(facts.url, facts.url)) == {}, spec.name


@pytest.mark.parametrize("spec", [JUDGE_54, JUDGE_53], ids=lambda s: s.name)
def test_each_planted_violation_raises_its_count(spec, sqlite_extracts, tmp_path):
    facts = sqlite_extracts(spec)
    copy = tmp_path / "planted.sqlite"
    shutil.copy(Path(facts.url.removeprefix("sqlite:///")), copy)
    engine = sa.create_engine(f"sqlite:///{copy}")
    planted = plant_all(Db(engine, None), spec.cdm_version)
    engine.dispose()
    counts = judge(facts.url, f"sqlite:///{copy}")
    assert [k for k in planted if k not in counts] == [], "counts the judge does not have"
    assert [k for k in planted if not counts[k]] == [], violations(counts)


def test_on_postgresql_clean_is_zero_and_every_plant_is_counted(
    postgres_extracts, postgres_database, postgres_schemas
):
    facts = postgres_extracts(JUDGE_54)
    clean = judge(facts.url, facts.url, source_schema=facts.schema, destination_schema=facts.schema)
    assert violations(clean) == {}
    # a copy of the extract in another schema, every plant on its own rows
    copy = postgres_schemas("planted")
    engine = sa.create_engine(normalise_url(postgres_database))
    with engine.begin() as conn:
        for table in facts.tables:
            conn.execute(
                sa.text(
                    f'CREATE TABLE "{copy}"."{table}" AS SELECT * FROM "{facts.schema}"."{table}"'
                )
            )
    planted = plant_all(Db(engine, copy), "5.4")
    engine.dispose()
    counts = judge(
        facts.url, postgres_database, source_schema=facts.schema, destination_schema=copy
    )
    assert [k for k in planted if not counts.get(k)] == [], violations(counts)
