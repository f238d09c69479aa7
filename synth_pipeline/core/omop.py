"""What the OMOP CDM specification says about tables and fields.

The facts come from the OHDSI CommonDataModel field-level specifications for CDM 5.3 and 5.4
(Apache-2.0), reduced to the columns we use and shipped as ``omop_cdm_fields.csv``.
They fill in what an extract leaves out: primary and foreign keys (extracts rarely declare
them), which tables are public vocabulary, and the intended type of each field.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources

SPEC_FILE = "omop_cdm_fields.csv"

# Keys the specification leaves implicit but every OMOP user relies on.
_EXTRA_FOREIGN_KEYS: dict[tuple[str, str], tuple[str, str]] = {
    ("note_nlp", "note_id"): ("note", "note_id"),
    ("cohort", "subject_id"): ("person", "person_id"),
    ("cohort_attribute", "subject_id"): ("person", "person_id"),
}

# Tables that describe the extract rather than patients; never generated from statistics.
METADATA_TABLES = frozenset({"cdm_source", "metadata"})


@dataclass(frozen=True)
class FieldSpec:
    table: str
    name: str
    datatype: str  # as the specification writes it: integer, float, date, datetime, varchar(50)
    required: bool
    primary_key: bool
    fk_table: str | None
    fk_field: str | None

    @property
    def logical_type(self) -> str:
        return logical_type_of_spec(self.datatype)

    @property
    def max_length(self) -> int | None:
        if self.datatype.startswith("varchar(") and self.datatype != "varchar(max)":
            return int(self.datatype[len("varchar(") : -1])
        return None


@dataclass
class TableSpec:
    name: str
    schema: str  # CDM or VOCAB
    fields: dict[str, FieldSpec] = field(default_factory=dict)

    @property
    def is_vocabulary(self) -> bool:
        return self.schema == "VOCAB"

    @property
    def primary_key(self) -> list[str]:
        return [f.name for f in self.fields.values() if f.primary_key]


def logical_type_of_spec(datatype: str) -> str:
    d = datatype.lower()
    if d in ("integer", "bigint"):
        return "integer"
    if d in ("float", "numeric"):
        return "float"
    if d == "date":
        return "date"
    if d == "datetime":
        return "datetime"
    return "string"


@lru_cache(maxsize=1)
def _spec_rows() -> list[dict[str, str]]:
    with resources.files("synth_pipeline.core").joinpath(SPEC_FILE).open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


@lru_cache(maxsize=4)
def cdm_tables(version: str = "5.4") -> dict[str, TableSpec]:
    """Tables of one CDM version, lower-case names, each with its fields."""
    tables: dict[str, TableSpec] = {}
    for row in _spec_rows():
        if row["cdm_version"] != version:
            continue
        t = tables.setdefault(row["table"], TableSpec(row["table"], row["table_schema"]))
        fk = _EXTRA_FOREIGN_KEYS.get((row["table"], row["field"]))
        t.fields[row["field"]] = FieldSpec(
            table=row["table"],
            name=row["field"],
            datatype=row["datatype"],
            required=row["required"] == "1",
            primary_key=row["primary_key"] == "1",
            fk_table=fk[0] if fk else (row["fk_table"] or None),
            fk_field=fk[1] if fk else (row["fk_field"] or None),
        )
    return tables


def field_spec(table: str, column: str) -> FieldSpec | None:
    """The specification of a field, from CDM 5.4 or else 5.3 (extracts of both exist)."""
    t, c = table.lower(), column.lower()
    for version in ("5.4", "5.3"):
        spec = cdm_tables(version).get(t)
        if spec and c in spec.fields:
            return spec.fields[c]
    extra = _EXTRA_FOREIGN_KEYS.get((t, c))
    if extra:
        return FieldSpec(t, c, "integer", False, False, extra[0], extra[1])
    return None


def table_spec(table: str) -> TableSpec | None:
    t = table.lower()
    return cdm_tables("5.4").get(t) or cdm_tables("5.3").get(t)


def is_vocabulary_table(table: str) -> bool:
    spec = table_spec(table)
    return bool(spec and spec.is_vocabulary)


@dataclass(frozen=True)
class CdmVersionGuess:
    """The CDM version an extract's tables and columns show, and what shows it."""

    version: str | None  # "5.3", "5.4", or None when nothing (or as much of each) tells them apart
    evidence: dict[str, list[str]]  # version -> its own tables and table.columns in the extract

    def describe(self, version: str) -> str:
        found = self.evidence.get(version, [])
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        return f"CDM {version} ({shown})"


def guess_cdm_version(tables_and_columns: dict[str, list[str]]) -> CdmVersionGuess:
    """The CDM version whose own tables and fields the extract has.

    Only what one version defines and the other does not counts: 5.4's
    procedure_occurrence.procedure_end_date, visit_occurrence.admitted_from_concept_id,
    measurement.measurement_event_id, the episode tables ...; 5.3's
    visit_occurrence.admitting_source_concept_id, visit_detail.visit_detail_parent_id,
    attribute_definition. ``cohort`` counts for neither: 5.3 defines it too, in its results
    schema, which its field specification leaves out. The version with more such evidence
    wins; none, or a tie, gives None.
    """
    v53, v54 = cdm_tables("5.3"), cdm_tables("5.4")
    evidence: dict[str, list[str]] = {"5.3": [], "5.4": []}
    for table, columns in sorted(tables_and_columns.items()):
        t = table.lower()
        old, new = v53.get(t), v54.get(t)
        if t == "cohort" or (old is None and new is None):
            continue
        if old is None or new is None:
            evidence["5.4" if old is None else "5.3"].append(t)
            continue
        for c in sorted({c.lower() for c in columns}):
            if c in new.fields and c not in old.fields:
                evidence["5.4"].append(f"{t}.{c}")
            elif c in old.fields and c not in new.fields:
                evidence["5.3"].append(f"{t}.{c}")
    n53, n54 = len(evidence["5.3"]), len(evidence["5.4"])
    version = None if n53 == n54 else ("5.4" if n54 > n53 else "5.3")
    return CdmVersionGuess(version, evidence)


@dataclass(frozen=True)
class EventShape:
    """Where a clinical table keeps its person, visit and dates (by OMOP convention)."""

    table: str
    start: str  # the date column every rule places in time
    end: str | None = None
    kind: str = "event"  # lifetime (observation_period), death, visit, event, era


# OMOP CDM 5.3/5.4 tables whose rows happen to a person at a time.
EVENT_SHAPES: dict[str, EventShape] = {
    s.table: s
    for s in (
        EventShape(
            "observation_period",
            "observation_period_start_date",
            "observation_period_end_date",
            "lifetime",
        ),
        EventShape("death", "death_date", None, "death"),
        EventShape("visit_occurrence", "visit_start_date", "visit_end_date", "visit"),
        EventShape("visit_detail", "visit_detail_start_date", "visit_detail_end_date", "event"),
        EventShape("condition_occurrence", "condition_start_date", "condition_end_date"),
        EventShape("drug_exposure", "drug_exposure_start_date", "drug_exposure_end_date"),
        EventShape("procedure_occurrence", "procedure_date", "procedure_end_date"),
        EventShape("device_exposure", "device_exposure_start_date", "device_exposure_end_date"),
        EventShape("measurement", "measurement_date"),
        EventShape("observation", "observation_date"),
        EventShape("note", "note_date"),
        EventShape("specimen", "specimen_date"),
        EventShape("condition_era", "condition_era_start_date", "condition_era_end_date", "era"),
        EventShape("drug_era", "drug_era_start_date", "drug_era_end_date", "era"),
        EventShape("dose_era", "dose_era_start_date", "dose_era_end_date", "era"),
        EventShape(
            "payer_plan_period", "payer_plan_period_start_date", "payer_plan_period_end_date", "era"
        ),
        EventShape("episode", "episode_start_date", "episode_end_date", "era"),
    )
}


# Tables whose rows are parts of a visit (the spec: VISIT_DETAIL holds "details of each record
# in the parent VISIT_OCCURRENCE table"): they start and end within their visit.
PARTS_OF_VISITS = frozenset({"visit_detail"})


# --- start/end pairs ---------------------------------------------------------------------------
# The specification names an end date after its start: *_start_date / *_end_date, or, where the
# start has no "start" in its name, *_date / *_end_date (CDM 5.4 procedure_date and
# procedure_end_date); drug_exposure.verbatim_end_date is the end "as it appears in the source"
# of drug_exposure_start_date (the spec's guidance).
_VERBATIM_ENDS = {"verbatim_end_date": "drug_exposure_start_date"}


def start_of(columns: list[str] | set[str], name: str) -> str | None:
    """The start column an end column of the same table is measured from, or None.

    ``visit_end_date`` -> ``visit_start_date``, ``procedure_end_datetime`` ->
    ``procedure_datetime``, ``verbatim_end_date`` -> ``drug_exposure_start_date``; every end
    field of the CDM 5.3 and 5.4 specifications has its start this way (a test checks it).
    """
    names = set(columns)
    if name in _VERBATIM_ENDS:
        start = _VERBATIM_ENDS[name]
        return start if start in names else None
    if "_end" not in name:
        return None
    for candidate in (name.replace("_end_", "_start_", 1), name.replace("_end", "", 1)):
        if candidate != name and candidate in names:
            return candidate
    return None


def date_pairs(table: str, columns: list[str]) -> list[tuple[str, str]]:
    """(start, end) column pairs of a table's dates and datetimes, in column order."""
    out = []
    for name in columns:
        start = start_of(columns, name)
        if start is not None:
            out.append((start, name))
    return out


# --- references the specification defines in prose ---------------------------------------------


def self_references(table: str, columns: list[str]) -> list[str]:
    """Columns that point to another row of the same table (preceding_visit_occurrence_id,
    preceding_visit_detail_id, visit_detail_parent_id / parent_visit_detail_id): the spec's
    foreign keys whose target is the table itself."""
    out = []
    for c in columns:
        spec = field_spec(table, c)
        if spec is not None and spec.fk_table == table.lower() and not spec.primary_key:
            out.append(c)
    return out


@dataclass(frozen=True)
class Polymorphic:
    """An id column whose table is named by another column of the same row."""

    column: str  # the id: fact_id_1, measurement_event_id, cost_event_id ...
    by: str  # what names its table: a domain concept, a field concept or a domain id
    kind: str  # domain_concept | field_concept | domain_id


# From the specification's guidance (fact_relationship by domain concept; *_event_id with its
# *_event_field_concept_id, "the CONCEPT_ID that identifies which table the primary key of the
# linked record came from"; cost_event_id with cost_domain_id).
POLYMORPHIC: dict[str, tuple[Polymorphic, ...]] = {
    "fact_relationship": (
        Polymorphic("fact_id_1", "domain_concept_id_1", "domain_concept"),
        Polymorphic("fact_id_2", "domain_concept_id_2", "domain_concept"),
    ),
    "measurement": (
        Polymorphic("measurement_event_id", "meas_event_field_concept_id", "field_concept"),
    ),
    "observation": (
        Polymorphic("observation_event_id", "obs_event_field_concept_id", "field_concept"),
    ),
    "note": (Polymorphic("note_event_id", "note_event_field_concept_id", "field_concept"),),
    "episode_event": (Polymorphic("event_id", "episode_event_field_concept_id", "field_concept"),),
    "cost": (Polymorphic("cost_event_id", "cost_domain_id", "domain_id"),),
}


def polymorphic(table: str, columns: list[str]) -> list[Polymorphic]:
    names = set(columns)
    return [p for p in POLYMORPHIC.get(table.lower(), ()) if p.column in names and p.by in names]


# OMOP domains whose records live in one CDM table (the domain_id of the DOMAIN table), and the
# standard domain concept ids (as the vocabulary's DOMAIN table gives them) used when an extract
# carries no DOMAIN table.
DOMAIN_TABLES: dict[str, str] = {
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
    "Provider": "provider",
    "Care site": "care_site",
    "Location": "location",
    "Cost": "cost",
    "Payer": "payer_plan_period",
}
STANDARD_DOMAIN_CONCEPTS: dict[int, str] = {
    8: "Visit",
    19: "Condition",
    13: "Drug",
    10: "Procedure",
    17: "Device",
    21: "Measurement",
    27: "Observation",
    36: "Specimen",
    32527: "Episode",
    581456: "Cost",
}


def field_concept_table(name: str | None) -> str | None:
    """The table a CDM field concept names ('visit_occurrence.visit_occurrence_id', the
    concept_name or concept_code of a concept of vocabulary CDM, class Field), or None."""
    if not name or "." not in name:
        return None
    table, _, field_name = name.strip().lower().partition(".")
    spec = table_spec(table)
    if spec is None or field_name not in spec.fields:
        return None
    return table


# --- twin columns ------------------------------------------------------------------------------


def twin_of(table: str, columns: list[str], name: str) -> list[str]:
    """The columns a *_source_concept_id or *_source_value column agrees with, in order.

    ``gender_source_concept_id`` -> [gender_concept_id]; ``gender_source_value`` ->
    [gender_concept_id, gender_source_concept_id] (the value a source code had, for the
    concept it was mapped to); CDM 5.3's ``admitting_source_value`` -> [admitting_source_concept_id].
    Empty for a column that is not a twin (person_source_value, an identifier).
    """
    names = set(columns)
    if table_spec(table) is None or field_spec(table, name) is None:
        return []
    if name.endswith("_source_concept_id"):
        primary = name[: -len("_source_concept_id")] + "_concept_id"
        return [primary] if primary in names else []
    if name.endswith("_source_value"):
        stem = name[: -len("_source_value")]
        out = [c for c in (stem + "_concept_id", stem + "_source_concept_id") if c in names]
        return out
    return []
