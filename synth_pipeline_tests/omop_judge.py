"""A sceptical reviewer's queries: OMOP rule violations counted in a destination database.

Plain SQL through SQLAlchemy ``text``, written from the OMOP CDM field specification (read by
``omop_spec.py``) and the CDM's conventions, independent of the pipeline and of the extract
generator: nothing from ``synth_pipeline.core`` but URL normalisation. The source is read only
for what the destination is measured against (date ranges, the release date, twin-column
combinations, and concept names of field concepts when the destination has no concept table).

``judge(source_url, destination_url)`` returns named counts, one per check and table (and
column where it matters); each is the number of destination rows that break the rule, so a
clean destination gives 0 everywhere. SQLite and PostgreSQL; '' and 0 count as "no reference"
as they do in dirty extracts.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa

from synth_pipeline.core.database import normalise_url

from .omop_spec import VOCABULARY_TABLES, all_versions_fields

# Tables that hold no patient data and carry no window (vocabularies, metadata).
NOT_CLINICAL = {*VOCABULARY_TABLES, "cdm_source", "metadata", "source_to_concept_map"}

# Extra start/end pairs the spec does not spell as *_start_* / *_end_*.
EXTRA_PAIRS = [
    ("procedure_occurrence", "procedure_date", "procedure_end_date"),
    ("procedure_occurrence", "procedure_datetime", "procedure_end_datetime"),
    ("drug_exposure", "drug_exposure_start_date", "verbatim_end_date"),
]
# The date that places a row in time, and (for spans) the date that ends it: what must lie in
# an observation period, the visit, the visit detail.
EVENT_DATES = {
    "visit_occurrence": ("visit_start_date", "visit_end_date"),
    "visit_detail": ("visit_detail_start_date", "visit_detail_end_date"),
    "condition_occurrence": ("condition_start_date", None),
    "drug_exposure": ("drug_exposure_start_date", None),
    "procedure_occurrence": ("procedure_date", None),
    "device_exposure": ("device_exposure_start_date", None),
    "measurement": ("measurement_date", None),
    "observation": ("observation_date", None),
    "note": ("note_date", None),
    "specimen": ("specimen_date", None),
    "episode": ("episode_start_date", None),
    "condition_era": ("condition_era_start_date", "condition_era_end_date"),
    "drug_era": ("drug_era_start_date", "drug_era_end_date"),
    "dose_era": ("dose_era_start_date", "dose_era_end_date"),
}
START_DATETIME = {
    "visit_occurrence": "visit_start_datetime",
    "visit_detail": "visit_detail_start_datetime",
    "episode": "episode_start_datetime",
}
# References the CDM states in prose (userGuidance), beside the spec's foreign keys.
PROSE_REFERENCES = [
    ("note_nlp", "note_id", "note", "note_id"),
    ("cost", "payer_plan_period_id", "payer_plan_period", "payer_plan_period_id"),
    ("episode", "episode_parent_id", "episode", "episode_id"),
]
# Self-references: the referenced row must be the same person's and start no later.
SELF_REFERENCES = [
    ("visit_occurrence", "preceding_visit_occurrence_id"),
    ("visit_detail", "preceding_visit_detail_id"),
    ("visit_detail", "visit_detail_parent_id"),
    ("visit_detail", "parent_visit_detail_id"),
    ("episode", "episode_parent_id"),
]
PRIMARY_KEYS = {
    "person": "person_id",
    "observation_period": "observation_period_id",
    "visit_occurrence": "visit_occurrence_id",
    "visit_detail": "visit_detail_id",
    "condition_occurrence": "condition_occurrence_id",
    "drug_exposure": "drug_exposure_id",
    "procedure_occurrence": "procedure_occurrence_id",
    "device_exposure": "device_exposure_id",
    "measurement": "measurement_id",
    "observation": "observation_id",
    "note": "note_id",
    "note_nlp": "note_nlp_id",
    "specimen": "specimen_id",
    "episode": "episode_id",
    "payer_plan_period": "payer_plan_period_id",
    "provider": "provider_id",
    "care_site": "care_site_id",
    "location": "location_id",
}
# OMOP domains -> the table whose rows they name (fact_relationship, cost_domain_id).
DOMAIN_TABLES = {
    "Visit": "visit_occurrence",
    "Condition": "condition_occurrence",
    "Drug": "drug_exposure",
    "Procedure": "procedure_occurrence",
    "Device": "device_exposure",
    "Measurement": "measurement",
    "Observation": "observation",
    "Specimen": "specimen",
    "Note": "note",
    "Episode": "episode",
    "Person": "person",
}
# The domain concept ids of the standardized vocabularies (vocabulary 'Domain').
DOMAIN_CONCEPT_TABLES = {
    8: "visit_occurrence",
    19: "condition_occurrence",
    13: "drug_exposure",
    10: "procedure_occurrence",
    17: "device_exposure",
    21: "measurement",
    27: "observation",
    36: "specimen",
}
# *_event_id and the field concept that names its table (CDM 5.4).
EVENT_REFERENCES = [
    ("measurement", "measurement_event_id", "meas_event_field_concept_id"),
    ("observation", "observation_event_id", "obs_event_field_concept_id"),
    ("note", "note_event_id", "note_event_field_concept_id"),
    ("episode_event", "event_id", "episode_event_field_concept_id"),
]


@dataclass
class _Db:
    """One database as the judge reads it: its tables, their columns, its SQL dialect."""

    engine: sa.Engine
    schema: str | None

    def __post_init__(self):
        self.sqlite = self.engine.dialect.name == "sqlite"
        inspector = sa.inspect(self.engine)
        self.tables: dict[str, str] = {}
        self.columns: dict[str, dict[str, str]] = {}
        for name in inspector.get_table_names(schema=self.schema):
            self.tables[name.lower()] = name
            self.columns[name.lower()] = {
                c["name"].lower(): c["name"]
                for c in inspector.get_columns(name, schema=self.schema)
            }
        self.preparer = self.engine.dialect.identifier_preparer

    def has(self, table: str, *columns: str | None) -> bool:
        return table in self.tables and all(c is None or c in self.columns[table] for c in columns)

    def t(self, table: str) -> str:
        name = self.preparer.quote(self.tables[table])
        if self.schema:
            return f"{self.preparer.quote_schema(self.schema)}.{name}"
        return name

    def c(self, table: str, column: str, alias: str | None = None) -> str:
        quoted = self.preparer.quote(self.columns[table][column])
        return f"{alias}.{quoted}" if alias else quoted

    # values as the rules read them: '' is NULL; 0 is no reference
    def date(self, expr: str) -> str:
        return f"date(NULLIF({expr}, ''))" if self.sqlite else f"CAST({expr} AS DATE)"

    def ts(self, expr: str) -> str:
        return f"datetime(NULLIF({expr}, ''))" if self.sqlite else f"CAST({expr} AS TIMESTAMP)"

    def num(self, expr: str) -> str:
        return f"NULLIF({expr}, '')" if self.sqlite else expr

    def ref(self, expr: str) -> str:
        return f"NULLIF(NULLIF({expr}, ''), 0)" if self.sqlite else f"NULLIF({expr}, 0)"

    def year(self, expr: str) -> str:
        if self.sqlite:
            return f"CAST(strftime('%Y', NULLIF({expr}, '')) AS INTEGER)"
        return f"CAST(EXTRACT(YEAR FROM {expr}) AS INTEGER)"

    def part(self, expr: str, part: str) -> str:
        if self.sqlite:
            fmt = {"year": "%Y", "month": "%m", "day": "%d"}[part]
            return f"CAST(strftime('{fmt}', NULLIF({expr}, '')) AS INTEGER)"
        return f"CAST(EXTRACT({part.upper()} FROM {expr}) AS INTEGER)"

    def param(self, value: dt.date):
        return value.isoformat() if self.sqlite else value

    def scalar(self, sql: str, **params):
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()

    def rows(self, sql: str, **params) -> list[tuple]:
        with self.engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(sql), params)]


# A column needs this many dates for its own range to be kept: one more than twice the default
# k of 10, the fewest values a released range (two k-value windows, apart) can come from.
RANGE_ROWS = 21


def _as_date(value) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _norm(value) -> str | None:
    """A value as twin columns are compared across databases: '' is NULL, 8507.0 is 8507."""
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _Judge:
    def __init__(self, source: _Db, destination: _Db):
        self.src, self.dst = source, destination
        self.spec = all_versions_fields()
        self.counts: dict[str, int] = {}

    def count(self, name: str, sql: str, **params) -> None:
        try:
            value = int(self.dst.scalar(sql, **params) or 0)
        except sa.exc.DBAPIError as exc:
            raise RuntimeError(f"judge check {name} failed: {exc.orig}\n{sql}") from exc
        self.counts[name] = self.counts.get(name, 0) + value

    def clinical(self) -> list[str]:
        return sorted(t for t in self.dst.tables if t in self.spec and t not in NOT_CLINICAL)

    def fields(self, table: str, datatypes: tuple[str, ...]) -> list[str]:
        return [
            f.name
            for f in self.spec[table].values()
            if f.datatype in datatypes and self.dst.has(table, f.name)
        ]

    # -- dates within a row -----------------------------------------------------------------

    def start_end_pairs(self) -> None:
        d = self.dst
        for table in self.clinical():
            pairs = [(table, s, e) for (t, s, e) in EXTRA_PAIRS if t == table]
            for name in self.spec[table]:
                for marker in ("_start_date", "_start_datetime"):
                    if name.endswith(marker):
                        pairs.append((table, name, name.replace("_start_", "_end_")))
            for _, start, end in pairs:
                if not d.has(table, start, end):
                    continue
                kind = d.ts if start.endswith("datetime") else d.date
                self.count(
                    f"end_before_start:{table}.{end}",
                    f"SELECT COUNT(*) FROM {d.t(table)} WHERE "
                    f"{kind(d.c(table, end))} < {kind(d.c(table, start))}",
                )

    def datetimes_on_dates(self) -> None:
        d = self.dst
        for table in self.clinical():
            for name in self.fields(table, ("datetime",)):
                date_name = name[: -len("datetime")] + "date"
                if not d.has(table, date_name):
                    continue
                self.count(
                    f"datetime_not_on_date:{table}.{name}",
                    f"SELECT COUNT(*) FROM {d.t(table)} WHERE "
                    f"{d.date(d.c(table, name))} <> {d.date(d.c(table, date_name))}",
                )

    def birth_parts(self) -> None:
        d = self.dst
        if not d.has("person", "birth_datetime", "year_of_birth"):
            return
        born = d.c("person", "birth_datetime")
        wrong = [f"{d.num(d.c('person', 'year_of_birth'))} <> {d.part(born, 'year')}"]
        for column, part in (("month_of_birth", "month"), ("day_of_birth", "day")):
            if d.has("person", column):
                wrong.append(f"{d.num(d.c('person', column))} <> {d.part(born, part)}")
        self.count(
            "birth_parts_mismatch:person",
            f"SELECT COUNT(*) FROM {d.t('person')} WHERE {d.date(born)} IS NOT NULL "
            f"AND ({' OR '.join(wrong)})",
        )

    # -- dates within a life, a period, a visit ---------------------------------------------

    def within_life(self) -> None:
        d = self.dst
        if not d.has("person", "person_id"):
            return
        p = d.c("person", "person_id", "p")
        year = (
            d.num(d.c("person", "year_of_birth", "p"))
            if d.has("person", "year_of_birth")
            else "NULL"
        )
        born = (
            d.date(d.c("person", "birth_datetime", "p"))
            if d.has("person", "birth_datetime")
            else "NULL"
        )
        has_death = d.has("death", "person_id", "death_date")
        for table in self.clinical():
            if table == "person" or not d.has(table, "person_id"):
                continue
            dates = self.fields(table, ("date", "datetime"))
            if not dates:
                continue
            cols = [d.date(d.c(table, c, "x")) for c in dates]
            before = " OR ".join(
                f"{c} < {born} OR ({born} IS NULL AND {d.year(c)} < {year})" for c in cols
            )
            self.count(
                f"before_birth:{table}",
                f"SELECT COUNT(*) FROM {d.t(table)} x JOIN {d.t('person')} p "
                f"ON {p} = {d.c(table, 'person_id', 'x')} WHERE {before}",
            )
            if has_death and table != "death":
                after = " OR ".join(f"{c} > dd.died" for c in cols)
                self.count(
                    f"after_death:{table}",
                    f"SELECT COUNT(*) FROM {d.t(table)} x JOIN ("
                    f"SELECT {d.c('death', 'person_id')} AS pid, "
                    f"MIN({d.date(d.c('death', 'death_date'))}) AS died "
                    f"FROM {d.t('death')} GROUP BY {d.c('death', 'person_id')}) dd "
                    f"ON dd.pid = {d.c(table, 'person_id', 'x')} WHERE {after}",
                )

    def within_observation_period(self) -> None:
        d = self.dst
        op = "observation_period"
        if not d.has(
            op, "person_id", "observation_period_start_date", "observation_period_end_date"
        ):
            return
        start = d.date(d.c(op, "observation_period_start_date", "op"))
        end = d.date(d.c(op, "observation_period_end_date", "op"))
        for table, (first, last) in EVENT_DATES.items():
            if not d.has(table, "person_id", first, last):
                continue
            f = d.date(d.c(table, first, "x"))
            inside = f"{start} <= {f} AND {f} <= {end}"
            if last:
                la = d.date(d.c(table, last, "x"))
                inside += f" AND ({la} IS NULL OR ({start} <= {la} AND {la} <= {end}))"
            self.count(
                f"outside_observation_period:{table}",
                f"SELECT COUNT(*) FROM {d.t(table)} x WHERE {f} IS NOT NULL AND NOT EXISTS ("
                f"SELECT 1 FROM {d.t(op)} op WHERE {d.c(op, 'person_id', 'op')} = "
                f"{d.c(table, 'person_id', 'x')} AND {inside})",
            )

    def within_visit(self) -> None:
        d = self.dst
        for parent, column, table_dates in (
            ("visit_occurrence", "visit_occurrence_id", EVENT_DATES["visit_occurrence"]),
            ("visit_detail", "visit_detail_id", EVENT_DATES["visit_detail"]),
        ):
            if not d.has(parent, column, "person_id", *table_dates):
                continue
            vs = d.date(d.c(parent, table_dates[0], "v"))
            ve = d.date(d.c(parent, table_dates[1], "v"))
            for table, (first, last) in EVENT_DATES.items():
                if table == parent or not d.has(table, column, "person_id", first, last):
                    continue
                if table.endswith("_era"):
                    continue
                dates = [d.date(d.c(table, first, "x"))]
                if last:
                    dates.append(d.date(d.c(table, last, "x")))
                outside = " OR ".join(f"{x} < {vs} OR {x} > {ve}" for x in dates)
                wrong = [
                    f"{d.c(parent, 'person_id', 'v')} <> {d.c(table, 'person_id', 'x')}",
                    outside,
                ]
                if (
                    parent == "visit_detail"
                    and d.has(table, "visit_occurrence_id")
                    and d.has("visit_detail", "visit_occurrence_id")
                ):
                    wrong.append(
                        f"({d.ref(d.c(table, 'visit_occurrence_id', 'x'))} IS NOT NULL AND "
                        f"{d.c('visit_detail', 'visit_occurrence_id', 'v')} <> "
                        f"{d.c(table, 'visit_occurrence_id', 'x')})"
                    )
                self.count(
                    f"{parent}_mismatch:{table}",
                    f"SELECT COUNT(*) FROM {d.t(table)} x JOIN {d.t(parent)} v ON "
                    f"{d.c(parent, column, 'v')} = {d.ref(d.c(table, column, 'x'))} "
                    f"WHERE {' OR '.join(wrong)}",
                )

    # -- dates against the source -------------------------------------------------------------

    def source_ranges(self) -> None:
        """Every date inside the source's: a column with at least ``RANGE_ROWS`` dates in the
        source inside that column's [min, max]; a sparser one (a handful of deaths, which no
        release rule lets out) inside the extract's own window, from the earliest date of any
        clinical column to cdm_source's release date (else the latest date); and nothing after
        the release date."""
        s, d = self.src, self.dst
        release = None
        if s.has("cdm_source", "source_release_date"):
            release = _as_date(
                s.scalar(
                    f"SELECT MAX({s.date(s.c('cdm_source', 'source_release_date'))}) "
                    f"FROM {s.t('cdm_source')}"
                )
            )
        spans: dict[tuple[str, str], tuple[dt.date | None, dt.date | None, int]] = {}
        for table in self.clinical():
            for column in self.fields(table, ("date", "datetime")):
                if s.has(table, column):
                    lo, hi, n = s.rows(
                        f"SELECT MIN({s.date(s.c(table, column))}), "
                        f"MAX({s.date(s.c(table, column))}), COUNT({s.c(table, column)}) "
                        f"FROM {s.t(table)}"
                    )[0]
                    spans[(table, column)] = (_as_date(lo), _as_date(hi), int(n or 0))
        known = [v for v in spans.values() if v[0] is not None]
        first = min((v[0] for v in known), default=None)
        # the extract ends at its release date where cdm_source gives one (its last date is
        # one person's date in a small extract), else at its last date
        last = release or max((v[1] for v in known), default=None)
        for table in self.clinical():
            dates = self.fields(table, ("date", "datetime"))
            for column in dates:
                col = d.date(d.c(table, column))
                lo, hi, n = spans.get((table, column), (None, None, 0))
                if n < RANGE_ROWS:
                    lo, hi = first, last
                if lo is None:  # the source has no dates at all: every one is out of range
                    self.count(
                        f"outside_source_range:{table}.{column}",
                        f"SELECT COUNT(*) FROM {d.t(table)} WHERE {col} IS NOT NULL",
                    )
                else:
                    self.count(
                        f"outside_source_range:{table}.{column}",
                        f"SELECT COUNT(*) FROM {d.t(table)} WHERE {col} < :lo OR {col} > :hi",
                        lo=d.param(lo),
                        hi=d.param(hi),
                    )
            if release is not None and dates:
                after = " OR ".join(f"{d.date(d.c(table, c))} > :release" for c in dates)
                self.count(
                    f"after_release_date:{table}",
                    f"SELECT COUNT(*) FROM {d.t(table)} WHERE {after}",
                    release=d.param(release),
                )

    # -- references ---------------------------------------------------------------------------

    def plain_references(self) -> None:
        d, s = self.dst, self.src
        refs = []
        for table in self.clinical():
            for f in self.spec[table].values():
                if f.fk_table and f.fk_table not in VOCABULARY_TABLES and f.fk_field:
                    refs.append((table, f.name, f.fk_table, f.fk_field))
        refs += [r for r in PROSE_REFERENCES if r[0] in d.tables]
        for table, column, target, key in refs:
            if not d.has(table, column):
                continue
            ref = d.ref(d.c(table, column, "x"))
            if not d.has(target, key):
                if s.has(target, key):  # the source has the rows, the destination lost them
                    self.count(
                        f"dangling:{table}.{column}",
                        f"SELECT COUNT(*) FROM {d.t(table)} x WHERE {ref} IS NOT NULL",
                    )
                continue
            self.count(
                f"dangling:{table}.{column}",
                f"SELECT COUNT(*) FROM {d.t(table)} x WHERE {ref} IS NOT NULL AND NOT EXISTS ("
                f"SELECT 1 FROM {d.t(target)} y WHERE {d.c(target, key, 'y')} = {ref})",
            )
            if (
                target != table
                and target != "person"
                and d.has(table, "person_id")
                and d.has(target, "person_id")
            ):
                self.count(
                    f"reference_other_person:{table}.{column}",
                    f"SELECT COUNT(*) FROM {d.t(table)} x JOIN {d.t(target)} y ON "
                    f"{d.c(target, key, 'y')} = {ref} WHERE "
                    f"{d.c(target, 'person_id', 'y')} <> {d.c(table, 'person_id', 'x')}",
                )

    def self_references(self) -> None:
        d = self.dst
        for table, column in SELF_REFERENCES:
            key = PRIMARY_KEYS[table]
            first = EVENT_DATES[table][0]
            if not d.has(table, column, key, "person_id", first):
                continue
            ref = d.ref(d.c(table, column, "x"))
            join = f"FROM {d.t(table)} x JOIN {d.t(table)} y ON {d.c(table, key, 'y')} = {ref}"
            self.count(
                f"self_reference_other_person:{table}.{column}",
                f"SELECT COUNT(*) {join} WHERE "
                f"{d.c(table, 'person_id', 'y')} <> {d.c(table, 'person_id', 'x')}",
            )
            ys, xs = d.date(d.c(table, first, "y")), d.date(d.c(table, first, "x"))
            later = f"{ys} > {xs}"
            moment = START_DATETIME.get(table)
            if moment and d.has(table, moment):
                yt, xt = d.ts(d.c(table, moment, "y")), d.ts(d.c(table, moment, "x"))
                later += f" OR ({ys} = {xs} AND {yt} > {xt})"
            self.count(
                f"self_reference_later:{table}.{column}", f"SELECT COUNT(*) {join} WHERE {later}"
            )

    def _domain_tables(self) -> dict[int, str]:
        """Domain concept id -> table, from the standard ids and the extract's domain table."""
        out = dict(DOMAIN_CONCEPT_TABLES)
        for db in (self.src, self.dst):
            if db.has("domain", "domain_id", "domain_concept_id"):
                for domain_id, concept in db.rows(
                    f"SELECT {db.c('domain', 'domain_id')}, {db.c('domain', 'domain_concept_id')} "
                    f"FROM {db.t('domain')}"
                ):
                    table = DOMAIN_TABLES.get(str(domain_id))
                    if table and _norm(concept):
                        out.setdefault(int(_norm(concept)), table)
        return out

    def fact_relationships(self) -> None:
        d = self.dst
        fr = "fact_relationship"
        cols = ("domain_concept_id_1", "fact_id_1", "domain_concept_id_2", "fact_id_2")
        if not d.has(fr, *cols):
            return
        domains = self._domain_tables()
        names = (
            "fact_relationship.unknown_domain",
            "fact_relationship.unresolved",
            "fact_relationship.other_person",
        )
        for n in names:
            self.counts.setdefault(n, 0)
        pairs = d.rows(
            f"SELECT {d.c(fr, cols[0])}, {d.c(fr, cols[2])}, COUNT(*) FROM {d.t(fr)} "
            f"GROUP BY {d.c(fr, cols[0])}, {d.c(fr, cols[2])}"
        )
        for c1, c2, n in pairs:
            t1 = domains.get(int(_norm(c1))) if _norm(c1) else None
            t2 = domains.get(int(_norm(c2))) if _norm(c2) else None
            if t1 is None or t2 is None:
                self.counts[names[0]] += int(n)
                continue
            where = f"{d.c(fr, cols[0], 'f')} = :c1 AND {d.c(fr, cols[2], 'f')} = :c2"
            resolved = []
            for side, table in ((1, t1), (2, t2)):
                key = PRIMARY_KEYS[table]
                if not d.has(table, key):
                    self.count(
                        names[1], f"SELECT COUNT(*) FROM {d.t(fr)} f WHERE {where}", c1=c1, c2=c2
                    )
                    continue
                fid = d.c(fr, f"fact_id_{side}", "f")
                self.count(
                    names[1],
                    f"SELECT COUNT(*) FROM {d.t(fr)} f WHERE {where} AND NOT EXISTS ("
                    f"SELECT 1 FROM {d.t(table)} y WHERE {d.c(table, key, 'y')} = {fid})",
                    c1=c1,
                    c2=c2,
                )
                resolved.append(table)
            if len(resolved) == 2 and d.has(t1, "person_id") and d.has(t2, "person_id"):
                self.count(
                    names[2],
                    f"SELECT COUNT(*) FROM {d.t(fr)} f "
                    f"JOIN {d.t(t1)} a ON {d.c(t1, PRIMARY_KEYS[t1], 'a')} = {d.c(fr, 'fact_id_1', 'f')} "
                    f"JOIN {d.t(t2)} b ON {d.c(t2, PRIMARY_KEYS[t2], 'b')} = {d.c(fr, 'fact_id_2', 'f')} "
                    f"WHERE {where} AND {d.c(t1, 'person_id', 'a')} <> {d.c(t2, 'person_id', 'b')}",
                    c1=c1,
                    c2=c2,
                )

    def _field_names(self, concept_ids: set[int]) -> dict[int, tuple[str, str]]:
        """Field concept id -> (table, field), from concept_name '<table>.<field>' in the
        destination's concept table, else the source's."""
        out: dict[int, tuple[str, str]] = {}
        for db in (self.dst, self.src):
            if not concept_ids - set(out) or not db.has("concept", "concept_id", "concept_name"):
                continue
            for cid, name in db.rows(
                f"SELECT {db.c('concept', 'concept_id')}, {db.c('concept', 'concept_name')} "
                f"FROM {db.t('concept')} WHERE {db.c('concept', 'concept_id')} IN "
                f"({', '.join(str(c) for c in sorted(concept_ids))})"
            ):
                table, _, column = str(name).strip().lower().partition(".")
                if column and int(_norm(cid)) not in out:
                    out[int(_norm(cid))] = (table, column)
        return out

    def event_references(self) -> None:
        d = self.dst
        for table, column, field_column in EVENT_REFERENCES:
            if not d.has(table, column, field_column):
                continue
            unknown = f"event_field_unknown:{table}.{column}"
            unresolved = f"event_unresolved:{table}.{column}"
            other = f"event_other_person:{table}.{column}"
            for n in (unknown, unresolved, other):
                self.counts.setdefault(n, 0)
            ref = d.ref(d.c(table, column, "x"))
            used = d.rows(
                f"SELECT {d.c(table, field_column, 'x')}, COUNT(*) FROM {d.t(table)} x "
                f"WHERE {ref} IS NOT NULL GROUP BY {d.c(table, field_column, 'x')}"
            )
            ids = {int(_norm(c)) for c, _ in used if _norm(c)}
            fields = self._field_names(ids)
            # the person of the referring row: its own, or its episode's
            if table == "episode_event":
                person_join = (
                    f"JOIN {d.t('episode')} e ON {d.c('episode', 'episode_id', 'e')} = "
                    f"{d.c(table, 'episode_id', 'x')} "
                    if d.has("episode", "episode_id", "person_id")
                    else None
                )
                person = d.c("episode", "person_id", "e") if person_join is not None else None
            else:
                person_join = "" if d.has(table, "person_id") else None
                person = d.c(table, "person_id", "x") if person_join is not None else None
            for concept, n in used:
                target = fields.get(int(_norm(concept))) if _norm(concept) else None
                if target is None or not d.has(*target):
                    if target is not None and target[0] in self.spec and not d.has(*target):
                        self.counts[unresolved] += int(n)  # the named table is missing
                    else:
                        self.counts[unknown] += int(n)
                    continue
                t, key = target
                self.count(
                    unresolved,
                    f"SELECT COUNT(*) FROM {d.t(table)} x WHERE {ref} IS NOT NULL AND "
                    f"{d.c(table, field_column, 'x')} = :c AND NOT EXISTS (SELECT 1 FROM "
                    f"{d.t(t)} y WHERE {d.c(t, key, 'y')} = {ref})",
                    c=concept,
                )
                if person_join is not None and d.has(t, "person_id"):
                    self.count(
                        other,
                        f"SELECT COUNT(*) FROM {d.t(table)} x {person_join}JOIN {d.t(t)} y ON "
                        f"{d.c(t, key, 'y')} = {ref} WHERE {d.c(table, field_column, 'x')} = :c "
                        f"AND {d.c(t, 'person_id', 'y')} <> {person}",
                        c=concept,
                    )

    def costs(self) -> None:
        d = self.dst
        if not d.has("cost", "cost_event_id", "cost_domain_id"):
            return
        names = ("cost.unknown_domain", "cost.unresolved", "cost.payer_other_person")
        for n in names:
            self.counts.setdefault(n, 0)
        ref = d.ref(d.c("cost", "cost_event_id", "x"))
        for domain, n in d.rows(
            f"SELECT {d.c('cost', 'cost_domain_id')}, COUNT(*) FROM {d.t('cost')} "
            f"GROUP BY {d.c('cost', 'cost_domain_id')}"
        ):
            table = DOMAIN_TABLES.get(str(domain))
            if table is None:
                self.counts[names[0]] += int(n)
                continue
            key = PRIMARY_KEYS[table]
            if not d.has(table, key):
                self.counts[names[1]] += int(n)
                continue
            self.count(
                names[1],
                f"SELECT COUNT(*) FROM {d.t('cost')} x WHERE {d.c('cost', 'cost_domain_id', 'x')}"
                f" = :dom AND NOT EXISTS (SELECT 1 FROM {d.t(table)} y WHERE "
                f"{d.c(table, key, 'y')} = {ref})",
                dom=domain,
            )
            if (
                d.has("cost", "payer_plan_period_id")
                and d.has("payer_plan_period", "payer_plan_period_id", "person_id")
                and d.has(table, "person_id")
            ):
                self.count(
                    names[2],
                    f"SELECT COUNT(*) FROM {d.t('cost')} x JOIN {d.t(table)} y ON "
                    f"{d.c(table, key, 'y')} = {ref} JOIN {d.t('payer_plan_period')} pp ON "
                    f"{d.c('payer_plan_period', 'payer_plan_period_id', 'pp')} = "
                    f"{d.ref(d.c('cost', 'payer_plan_period_id', 'x'))} WHERE "
                    f"{d.c('cost', 'cost_domain_id', 'x')} = :dom AND "
                    f"{d.c('payer_plan_period', 'person_id', 'pp')} <> {d.c(table, 'person_id', 'y')}",
                    dom=domain,
                )

    # -- twin columns -------------------------------------------------------------------------

    def twins(self) -> None:
        s, d = self.src, self.dst
        for table in self.clinical():
            if table not in s.tables:
                continue
            for name in self.spec[table]:
                if not name.endswith("_concept_id") or not d.has(table, name):
                    continue
                stem = name[: -len("_concept_id")]
                siblings = [f"{stem}_source_concept_id", f"{stem}_source_value"]
                if stem.endswith("_source"):
                    siblings.append(f"{stem}_value")
                for sibling in siblings:
                    if not (d.has(table, sibling) and s.has(table, name, sibling)):
                        continue
                    key = f"twin:{table}.{name}~{sibling}"
                    seen = {
                        (_norm(a), _norm(b))
                        for a, b in s.rows(
                            f"SELECT DISTINCT {s.c(table, name)}, {s.c(table, sibling)} "
                            f"FROM {s.t(table)}"
                        )
                    }
                    bad = 0
                    for a, b, n in d.rows(
                        f"SELECT {d.c(table, name)}, {d.c(table, sibling)}, COUNT(*) "
                        f"FROM {d.t(table)} GROUP BY {d.c(table, name)}, {d.c(table, sibling)}"
                    ):
                        a, b = _norm(a), _norm(b)
                        if a is not None and b is not None and (a, b) not in seen:
                            bad += int(n)
                    self.counts[key] = self.counts.get(key, 0) + bad

    def run(self) -> dict[str, int]:
        self.start_end_pairs()
        self.datetimes_on_dates()
        self.birth_parts()
        self.within_life()
        self.within_observation_period()
        self.within_visit()
        self.source_ranges()
        self.plain_references()
        self.self_references()
        self.fact_relationships()
        self.event_references()
        self.costs()
        self.twins()
        return dict(sorted(self.counts.items()))


def judge(
    source_url: str,
    destination_url: str,
    *,
    source_schema: str | None = None,
    destination_schema: str | None = None,
) -> dict[str, int]:
    """Named counts of OMOP rule violations in the destination (0 everywhere when clean)."""
    src_engine = sa.create_engine(normalise_url(source_url))
    dst_engine = sa.create_engine(normalise_url(destination_url))
    try:
        return _Judge(_Db(src_engine, source_schema), _Db(dst_engine, destination_schema)).run()
    finally:
        src_engine.dispose()
        dst_engine.dispose()


def violations(counts: dict[str, int]) -> dict[str, int]:
    """Only the counts above 0."""
    return {k: v for k, v in counts.items() if v}
