"""Varied OMOP CDM extracts for tests, built in a real SQLite or PostgreSQL database.

``build_extract(url, spec)`` creates every table an :class:`ExtractSpec` asks for, with the
columns of the OMOP CDM field specification of its version (see ``omop_spec.py``), and fills
them as a careful ETL would:

- every person has observation periods inside the extract window, which ends on
  ``cdm_source.source_release_date``; nothing clinical lies outside the window;
- visits lie inside an observation period of their person; events with a visit id lie inside
  that visit (and inside the visit detail they name), events without one inside a period;
- end dates and datetimes are on or after their starts (same-day datetimes end later in the
  day), every ``*_datetime`` is on its ``*_date``, birth parts match ``birth_datetime``;
- the dead have no dates after their death (their last period ends on it);
- ``preceding_visit_occurrence_id`` is the person's previous visit, visit details point to
  earlier details of the same visit, episodes to earlier episodes of the same person;
- ``fact_relationship`` links rows of one person through OMOP domain concepts,
  ``*_event_id`` columns (CDM 5.4) name their table through a field concept of vocabulary
  ``CDM`` (:data:`FIELD_CONCEPTS`), ``cost_event_id`` through ``cost_domain_id``;
- twin columns come from code tables: a ``*_source_value`` always travels with the same
  ``*_concept_id`` and ``*_source_concept_id``;
- the vocabulary tables hold exactly the concepts the data use (and the domains, vocabularies,
  classes and relationships those concepts name), as real extracts carry.

Each kind of dirt a real extract brings is a switch of :class:`ExtractSpec` (see its fields);
:func:`extract_specs` draws specs for hypothesis, and the named specs (``DEMO_LIKE_53``,
``SYNTHEA_LIKE_54``, ``TINY_54``, ``ICU_53``, ``CLAIMS_CSV``, ``TWINS``) mirror the extracts
of issue 12.
"""

from __future__ import annotations

import datetime as dt
import random
from collections import defaultdict
from dataclasses import dataclass, field

import sqlalchemy as sa
from hypothesis import strategies as st

from .omop_spec import VOCABULARY_TABLES, Field, clinical_tables, spec_fields

BIG = 2**62  # 64-bit ids sit near +-2**62: above 2**53, where a float loses integers
LOCAL_CONCEPT_BASE = 2_000_000_000  # site-local concepts live above this id (OMOP convention)

# ---------------------------------------------------------------------------------------------
# The spec of an extract and what was planted


@dataclass(frozen=True)
class ExtractSpec:
    """What extract to build. Every switch is one kind of dirt seen on a real extract."""

    name: str = "drawn"
    cdm_version: str = "5.4"  # "5.3" or "5.4"
    persons: int = 40
    seed: int = 0
    # clinical tables to create (person and observation_period always are); None: all of the
    # version. cdm_source and the vocabulary tables are always created.
    tables: tuple[str, ...] | None = None
    visits_per_person: float = 2.5  # mean; events per person and table follow it
    big_ids: bool = False  # ids of every clinical table near +-2**62, half of them negative
    future_dates: bool = False  # the extract window is moved to 2110..2190 (a shifted ICU demo)
    same_day_datetimes: bool = False  # datetimes carry times; many end the day they start
    twins: bool = False  # low entropy: visits on 3 dates, one specialty, most rows twinned
    long_vocabulary_strings: bool = False  # vocabulary_id > 20 and concept_code > 50 chars
    local_concepts: bool = False  # source concepts above 2,000,000,000 in a local vocabulary
    empty_tables: tuple[str, ...] = ()  # created, no rows
    one_row_tables: tuple[str, ...] = ()  # created, one row
    one_varying_column: bool = False  # care_site: only care_site_id varies
    empty_string_nulls: bool = False  # '' for NULL in integer, float, text columns (SQLite)
    zero_for_null: bool = False  # 0 for NULL in references to other rows

    def __post_init__(self):
        if self.cdm_version not in ("5.3", "5.4"):
            raise ValueError(f"cdm_version must be 5.3 or 5.4, not {self.cdm_version!r}")
        if self.persons < 1:
            raise ValueError("an extract needs at least one person")
        known = set(clinical_tables(self.cdm_version))
        for name, tables in (
            ("tables", self.tables or ()),
            ("empty_tables", self.empty_tables),
            ("one_row_tables", self.one_row_tables),
        ):
            unknown = set(tables) - known
            if unknown:
                raise ValueError(
                    f"{name}: not clinical tables of CDM {self.cdm_version}: {unknown}"
                )
        if "person" in self.empty_tables:
            raise ValueError("person cannot be empty (persons >= 1)")

    @property
    def included(self) -> tuple[str, ...]:
        wanted = set(self.tables) if self.tables is not None else None
        return tuple(
            t
            for t in clinical_tables(self.cdm_version)
            if wanted is None or t in wanted or t in ("person", "observation_period")
        )


@dataclass
class ExtractFacts:
    """What build_extract planted, for tests to look for."""

    spec: ExtractSpec
    url: str
    schema: str | None
    tables: list[str]  # every table created: clinical, cdm_source, vocabulary
    row_counts: dict[str, int]
    window_start: dt.date  # the extract's first date
    window_end: dt.date  # its last date = cdm_source.source_release_date
    first_date: dt.date | None  # the earliest clinical date (births excluded)
    last_date: dt.date | None  # the latest clinical date
    cases: set[str]  # the dirty cases present in the data (see ExtractSpec's switches)
    field_concepts: dict[str, int]  # '<table>.<field>' -> concept id (vocabulary CDM)
    column_types: dict[str, dict[str, str]]  # declared SQL type per table and column
    local_concept_ids: list[int] = field(default_factory=list)

    @property
    def clinical_tables(self) -> list[str]:
        return [t for t in self.tables if t not in VOCABULARY_TABLES and t != "cdm_source"]


# ---------------------------------------------------------------------------------------------
# Concepts: every concept an extract can use, with what its concept row says


@dataclass(frozen=True)
class Concept:
    concept_id: int
    name: str
    domain: str
    vocabulary: str
    concept_class: str
    standard: str | None
    code: str


# concept_id | concept_name | domain_id | vocabulary_id | concept_class_id | standard | code
CONCEPT_ROWS = """
0|No matching concept|Metadata|None|Undefined||No matching concept
8507|MALE|Gender|Gender|Gender|S|M
8532|FEMALE|Gender|Gender|Gender|S|F
8527|White|Race|Race|Race|S|5
8516|Black or African American|Race|Race|Race|S|3
8515|Asian|Race|Race|Race|S|2
38003563|Hispanic or Latino|Ethnicity|Ethnicity|Ethnicity|S|Hispanic
38003564|Not Hispanic or Latino|Ethnicity|Ethnicity|Ethnicity|S|Not Hispanic
9202|Outpatient Visit|Visit|Visit|Visit|S|OP
9201|Inpatient Visit|Visit|Visit|Visit|S|IP
9203|Emergency Room Visit|Visit|Visit|Visit|S|ER
32037|Intensive Care|Visit|Visit|Visit|S|OMOP4822460
581383|Inpatient Ward|Visit|Visit|Visit|S|OMOP4822461
8536|Home|Place of Service|CMS Place of Service|Place of Service|S|12
8863|Skilled Nursing Facility|Place of Service|CMS Place of Service|Place of Service|S|31
8870|Emergency Room - Hospital|Place of Service|CMS Place of Service|Place of Service|S|23
8717|Inpatient Hospital|Place of Service|CMS Place of Service|Place of Service|S|21
8756|Outpatient Hospital|Place of Service|CMS Place of Service|Place of Service|S|22
8940|Office|Place of Service|CMS Place of Service|Place of Service|S|11
38004446|General Practice|Provider Specialty|Specialty|Specialty|S|01
38004458|Neurology|Provider Specialty|Specialty|Specialty|S|13
38004451|Cardiology|Provider Specialty|Specialty|Specialty|S|06
280|Medicare|Payer|SOPT|Payer|S|1
289|Private Health Insurance|Payer|SOPT|Payer|S|5
32902|Primary diagnosis|Condition Status|Condition Status|Condition Status|S|OMOP4976972
32908|Secondary diagnosis|Condition Status|Condition Status|Condition Status|S|OMOP4976978
4132161|Oral|Route|SNOMED|Qualifier Value|S|26643006
8876|millimeter mercury column|Unit|UCUM|Unit|S|mm[Hg]
8713|gram per deciliter|Unit|UCUM|Unit|S|g/dL
8753|millimole per liter|Unit|UCUM|Unit|S|mmol/L
8576|milligram|Unit|UCUM|Unit|S|mg
8587|milliliter|Unit|UCUM|Unit|S|mL
8510|unit|Unit|UCUM|Unit|S|U
4172703|=|Meas Value Operator|SNOMED|Qualifier Value|S|276136004
44818668|United States dollar|Currency|Currency|Currency|S|USD
44814639|Inpatient note|Note|Note Type|Note Type|S|OMOP4822104
44814640|Outpatient note|Note|Note Type|Note Type|S|OMOP4822105
32678|UTF-8|Metadata|Note|Encoding|S|OMOP4822142
4180186|English language|Observation|SNOMED|Qualifier Value|S|297496008
4330442|United States of America|Observation|SNOMED|Location|S|223688001
32533|Disease Episode|Episode|Episode|Episode|S|OMOP4822792
756265|OMOP CDM Version 5.4.0|Metadata|CDM|CDM|S|CDM v5.4.0
44814724|Period covering healthcare encounters|Type Concept|Obs Period Type|Obs Period Type|S|OMOP4822078
44818517|Visit derived from encounter on claim|Type Concept|Visit Type|Visit Type|S|OMOP4822465
44818518|Visit derived from EHR record|Type Concept|Visit Type|Visit Type|S|OMOP4822466
32020|EHR encounter diagnosis|Type Concept|Condition Type|Condition Type|S|OMOP4822025
38000177|Prescription written|Type Concept|Drug Type|Drug Type|S|OMOP4822085
38000275|EHR order list entry|Type Concept|Procedure Type|Procedure Type|S|OMOP4822155
44818707|EHR Detail|Type Concept|Device Type|Device Type|S|OMOP4822110
44818702|Lab result|Type Concept|Meas Type|Meas Type|S|OMOP4822045
38000280|Observation recorded from EHR|Type Concept|Observation Type|Observation Type|S|OMOP4822058
38003569|EHR record patient status Deceased|Type Concept|Death Type|Death Type|S|OMOP4822073
44814645|Note|Type Concept|Note Type|Note Type|S|OMOP4822100
581378|EHR Detail|Type Concept|Specimen Type|Specimen Type|S|OMOP4822162
5032|Charge|Type Concept|Cost Type|Cost Type|S|OMOP4822166
32817|EHR|Type Concept|Type Concept|Type Concept|S|OMOP4976890
32810|Claim|Type Concept|Type Concept|Type Concept|S|OMOP4976883
201826|Type 2 diabetes mellitus|Condition|SNOMED|Clinical Finding|S|44054006
320128|Essential hypertension|Condition|SNOMED|Clinical Finding|S|59621000
255573|Chronic obstructive lung disease|Condition|SNOMED|Clinical Finding|S|13645005
4329847|Myocardial infarction|Condition|SNOMED|Clinical Finding|S|22298006
40481087|Viral sinusitis|Condition|SNOMED|Clinical Finding|S|444814009
312437|Dyspnea|Condition|SNOMED|Clinical Finding|S|267036007
45500001|Type 2 diabetes mellitus without complications|Condition|ICD10CM|ICD10 code||E11.9
45500002|Essential (primary) hypertension|Condition|ICD10CM|ICD10 code||I10
45500003|Chronic obstructive pulmonary disease, unspecified|Condition|ICD10CM|ICD10 code||J44.9
45500004|Acute myocardial infarction, unspecified|Condition|ICD10CM|ICD10 code||I21.9
45500005|Acute sinusitis, unspecified|Condition|ICD10CM|ICD10 code||J01.90
45500006|Dyspnea, unspecified|Condition|ICD10CM|ICD10 code||R06.00
4163872|Plain chest X-ray|Procedure|SNOMED|Procedure|S|399208008
4230911|Electrocardiographic procedure|Procedure|SNOMED|Procedure|S|29303009
4058899|Venipuncture|Procedure|SNOMED|Procedure|S|28520004
45500101|Radiologic examination, chest; single view|Procedure|CPT4|CPT4||71045
45500102|Electrocardiogram, routine ECG|Procedure|CPT4|CPT4||93000
45500103|Collection of venous blood by venipuncture|Procedure|CPT4|CPT4||36415
4206863|Blood glucose meter|Device|SNOMED|Physical Object|S|337414009
45768171|Peripheral venous catheter|Device|SNOMED|Physical Object|S|705643001
1125315|Acetaminophen|Drug|RxNorm|Ingredient|S|161
1177480|Ibuprofen|Drug|RxNorm|Ingredient|S|5640
1503297|Metformin|Drug|RxNorm|Ingredient|S|6809
1127433|Acetaminophen 325 MG Oral Tablet|Drug|RxNorm|Clinical Drug|S|313782
19019073|Ibuprofen 200 MG Oral Tablet|Drug|RxNorm|Clinical Drug|S|310965
40163924|Metformin 500 MG Oral Tablet|Drug|RxNorm|Clinical Drug|S|861007
45500201|Acetaminophen 325mg tablet (NDC)|Drug|NDC|11-digit NDC||00904198261
45500202|Ibuprofen 200mg tablet (NDC)|Drug|NDC|11-digit NDC||00904585061
45500203|Metformin 500mg tablet (NDC)|Drug|NDC|11-digit NDC||00093104801
3004249|Systolic blood pressure|Measurement|LOINC|Clinical Observation|S|8480-6
3012888|Diastolic blood pressure|Measurement|LOINC|Clinical Observation|S|8462-4
3000963|Hemoglobin [Mass/volume] in Blood|Measurement|LOINC|Lab Test|S|718-7
3023103|Potassium [Moles/volume] in Serum or Plasma|Measurement|LOINC|Lab Test|S|2823-3
40766362|Tobacco smoking status|Observation|LOINC|Clinical Observation|S|72166-2
45883458|Never smoker|Meas Value|LOINC|Answer|S|LA18978-9
45884037|Current every day smoker|Meas Value|LOINC|Answer|S|LA18976-3
4214956|History of clinical finding in subject|Observation|SNOMED|Context-dependent|S|417662000
4001225|Urine specimen|Specimen|SNOMED|Specimen|S|122575003
4000626|Blood specimen|Specimen|SNOMED|Specimen|S|119297000
4302584|Structure of upper arm|Spec Anatomic Site|SNOMED|Body Structure|S|40983000
"""
CONCEPTS: dict[int, Concept] = {}
for _line in CONCEPT_ROWS.strip().splitlines():
    _cid, _name, _domain, _vocabulary, _cls, _standard, _code = _line.split("|")
    CONCEPTS[int(_cid)] = Concept(
        int(_cid), _name, _domain, _vocabulary, _cls, _standard or None, _code
    )

# Twin code tables: (concept_id, source_value, source_concept_id); a source value always
# travels with the same concept and source concept.
GENDER = [(8507, "M", 8507), (8532, "F", 8532)]
RACE = [(8527, "white", 0), (8516, "black", 0), (8515, "asian", 0)]
ETHNICITY = [(38003563, "hispanic", 0), (38003564, "nonhispanic", 0)]
VISITS = [  # ... and the length of stay in days: low, high
    (9202, "outpatient", 0, 0, 0),
    (9201, "inpatient", 0, 1, 6),
    (9203, "emergency", 0, 0, 1),
]
VISIT_DETAILS = [(32037, "ICU", 0), (581383, "WARD", 0)]
PLACES = [(8536, "HOME", 0), (8863, "SNF", 0), (8870, "ER", 0)]
CARE_SITE_PLACES = [(8717, "IH", 0), (8756, "OH", 0), (8940, "OFF", 0)]
SPECIALTIES = [
    (38004446, "GP", 38004446),
    (38004458, "NEURO", 38004458),
    (38004451, "CARD", 38004451),
]
PAYERS = [(280, "MEDICARE", 0), (289, "PRIVATE", 0)]
CONDITION_STATUS = [(32902, "primary", 0), (32908, "secondary", 0)]
CONDITIONS = [
    (201826, "E11.9", 45500001),
    (320128, "I10", 45500002),
    (255573, "J44.9", 45500003),
    (4329847, "I21.9", 45500004),
    (40481087, "J01.90", 45500005),
    (312437, "R06.00", 45500006),
]
PROCEDURES = [
    (4163872, "71045", 45500101),
    (4230911, "93000", 45500102),
    (4058899, "36415", 45500103),
]
DEVICES = [(4206863, "337414009", 4206863), (45768171, "705643001", 45768171)]
DRUGS = [  # ... and the ingredient, its amount in mg
    (1127433, "00904198261", 45500201, 1125315, 325.0),
    (19019073, "00904585061", 45500202, 1177480, 200.0),
    (40163924, "00093104801", 45500203, 1503297, 500.0),
]
MEASUREMENTS = [  # (concept, LOINC, unit, low, high, normal low, normal high, site's local code)
    (3004249, "8480-6", "mmHg", 95, 180, 90, 140, "BP-SYS"),
    (3012888, "8462-4", "mmHg", 55, 110, 60, 90, "BP-DIA"),
    (3000963, "718-7", "g/dL", 8, 18, 12, 17, "LAB-HB"),
    (3023103, "2823-3", "mmol/L", 3, 6, 3.5, 5.1, "LAB-K"),
]
SPECIMENS = [(4001225, "URINE", 0), (4000626, "BLOOD", 0)]
UNITS = {"mmHg": 8876, "g/dL": 8713, "mmol/L": 8753, "mg": 8576, "mL": 8587, "unit": 8510}
ROUTE_ORAL = 4132161
OPERATOR_EQUALS = 4172703
CURRENCY_USD = 44818668
NOTE_CLASSES = [44814639, 44814640]
ENCODING_UTF8 = 32678
LANGUAGE_ENGLISH = 4180186
COUNTRY_USA = 4330442
EPISODE_DISEASE = 32533
CDM_V54 = 756265
SMOKING = 40766362
SMOKING_ANSWERS = [45883458, 45884037]
HISTORY = 4214956
HISTORY_TEXTS = ["asthma in childhood", "appendectomy 1998", "no known allergies"]
ANATOMIC_ARM = 4302584
# Type concepts: CDM 5.3 names one per table, CDM 5.4 uses the Type Concept vocabulary.
TYPES_53 = {
    "observation_period": 44814724,
    "visit_occurrence": 44818517,
    "visit_detail": 44818518,
    "condition_occurrence": 32020,
    "drug_exposure": 38000177,
    "procedure_occurrence": 38000275,
    "device_exposure": 44818707,
    "measurement": 44818702,
    "observation": 38000280,
    "death": 38003569,
    "note": 44814645,
    "specimen": 581378,
    "cost": 5032,
}
TYPE_EHR = 32817
TYPE_CLAIM = 32810

# OMOP domain concepts (vocabulary Domain): fact_relationship names tables through them.
DOMAINS = {
    "Visit": 8,
    "Condition": 19,
    "Drug": 13,
    "Procedure": 10,
    "Device": 17,
    "Measurement": 21,
    "Observation": 27,
    "Specimen": 36,
    "Gender": 2,
    "Race": 3,
    "Ethnicity": 4,
    "Metadata": 7,
    "Route": 15,
    "Unit": 16,
    "Meas Value Operator": 23,
    "Meas Value": 24,
    "Relationship": 31,
    "Place of Service": 32,
    "Provider Specialty": 33,
    "Currency": 34,
    "Spec Anatomic Site": 38,
    "Type Concept": 58,
    "Note": 5085,
    "Condition Status": 5100,
    "Payer": 32477,
    "Episode": 32527,
}
DOMAIN_OF_TABLE = {
    "visit_occurrence": "Visit",
    "condition_occurrence": "Condition",
    "drug_exposure": "Drug",
    "procedure_occurrence": "Procedure",
    "device_exposure": "Device",
    "measurement": "Measurement",
    "observation": "Observation",
    "specimen": "Specimen",
}
PRIMARY_KEY = {
    "location": "location_id",
    "care_site": "care_site_id",
    "provider": "provider_id",
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
    "payer_plan_period": "payer_plan_period_id",
    "cost": "cost_id",
    "drug_era": "drug_era_id",
    "dose_era": "dose_era_id",
    "condition_era": "condition_era_id",
    "episode": "episode_id",
}
# The tables an *_event_id can name, each by a field concept '<table>.<primary key>'.
EVENT_TABLES = (
    "visit_occurrence",
    "visit_detail",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "device_exposure",
    "measurement",
    "observation",
    "note",
    "specimen",
    "episode",
)
FIELD_CONCEPTS: dict[str, int] = {
    f"{t}.{PRIMARY_KEY[t]}": 1147000 + i for i, t in enumerate(EVENT_TABLES, start=1)
}
for _name, _cid in FIELD_CONCEPTS.items():
    CONCEPTS[_cid] = Concept(_cid, _name, "Metadata", "CDM", "Field", "S", f"CDM{_cid}")
# cost_domain_id -> table
COST_DOMAINS = {
    "Visit": "visit_occurrence",
    "Drug": "drug_exposure",
    "Procedure": "procedure_occurrence",
    "Device": "device_exposure",
}
# relationship_id, name, is_hierarchical, defines_ancestry, reverse, concept id
RELATIONSHIPS = [
    ("Maps to", "Non-standard to Standard map (OMOP)", "0", "0", "Mapped from", 44818977),
    ("Mapped from", "Standard to Non-standard map (OMOP)", "0", "0", "Maps to", 44818978),
    ("Is a", "Is a", "1", "1", "Subsumes", 44818821),
    ("Subsumes", "Subsumes", "1", "1", "Is a", 44818723),
    ("RxNorm has ing", "Has ingredient (RxNorm)", "1", "1", "RxNorm ing of", 44818771),
    ("RxNorm ing of", "Ingredient of (RxNorm)", "1", "0", "RxNorm has ing", 44818772),
    ("Has asso finding", "Has associated finding", "0", "0", "Asso finding of", 44818790),
    ("Asso finding of", "Associated finding of", "0", "0", "Has asso finding", 44818791),
]
for _rid, _rname, *_rest, _rcid in RELATIONSHIPS:
    CONCEPTS[_rcid] = Concept(
        _rcid, _rname, "Metadata", "Relationship", "Relationship", None, "OMOP generated"
    )
FACT_RELATIONSHIP = (44818790, 44818791)  # a finding and its reverse

LONG_SUFFIX = "_SITE_EXTENDED_EDITION_2024"  # makes a vocabulary_id longer than varchar(20)
LOCAL_VOCABULARY = "ACME_LAB"
LONG_LOCAL_VOCABULARY = "ACME_GENERAL_HOSPITAL_LAB_CODES"

PERSON_NAMES = ["Abbott", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Novak", "Silva", "Brennan"]
CITIES = ["Springfield", "Riverton", "Lakeside", "Hillcrest"]

# Self-references per table (visit_detail: both the 5.3 and the 5.4 name of its parent)
SELF_REFERENCES = {
    "visit_occurrence": ("preceding_visit_occurrence_id",),
    "visit_detail": (
        "preceding_visit_detail_id",
        "visit_detail_parent_id",
        "parent_visit_detail_id",
    ),
    "episode": ("episode_parent_id",),
}


# ---------------------------------------------------------------------------------------------
# Building


class _Builder:
    def __init__(self, spec: ExtractSpec):
        self.spec = spec
        self.v54 = spec.cdm_version == "5.4"
        self.rng = random.Random(spec.seed)
        self.fields = spec_fields(spec.cdm_version)
        self.included = set(spec.included)
        self.rows: dict[str, list[dict]] = {}  # what the extract holds (kept rows)
        self.generated: dict[str, list[dict]] = {}  # before cutting to empty / one row
        self.id_counter: dict[str, int] = defaultdict(int)
        self.local_codes: dict[str, int] = {}  # site code -> local concept id
        if spec.future_dates:
            start = dt.date(2110, 1, 1) + dt.timedelta(days=spec.seed % 300)
            self.window = (start, dt.date(2189, 12, 31) - dt.timedelta(days=spec.seed % 200))
        else:
            start = dt.date(2008 + spec.seed % 5, 1 + spec.seed % 12, 1)
            self.window = (start, start + dt.timedelta(days=2900 + spec.seed % 400))
        # twins: everyone's visits fall on these dates
        span = (self.window[1] - self.window[0]).days
        self.twin_dates = sorted(
            self.window[0] + dt.timedelta(days=span * k // 4) for k in (1, 2, 3)
        )

    # -- helpers ---------------------------------------------------------------------------

    def new_id(self, table: str) -> int:
        self.id_counter[table] += 1
        n = self.id_counter[table]
        if not self.spec.big_ids:
            return n
        base = BIG + sorted(PRIMARY_KEY).index(table) * 10**12 + n * 7919
        return -base if n % 2 else base

    def date_between(self, a: dt.date, b: dt.date) -> dt.date:
        if b <= a:
            return a
        return a + dt.timedelta(days=self.rng.randint(0, (b - a).days))

    def times(self, start: dt.date, end: dt.date | None) -> tuple[dt.datetime, dt.datetime | None]:
        """Start and end datetimes on their dates; the end never before the start."""
        if not self.spec.same_day_datetimes:
            return (
                dt.datetime.combine(start, dt.time()),
                dt.datetime.combine(end, dt.time()) if end else None,
            )
        s = 9 * 60 if self.spec.twins else self.rng.randint(6 * 60, 20 * 60)
        sdt = dt.datetime.combine(start, dt.time()) + dt.timedelta(minutes=s)
        if end is None:
            return sdt, None
        if end == start:
            e = s + (60 if self.spec.twins else self.rng.randint(5, min(240, 1439 - s)))
        else:
            e = 10 * 60 if self.spec.twins else self.rng.randint(0, 1439)
        return sdt, dt.datetime.combine(end, dt.time()) + dt.timedelta(minutes=e)

    def at_time(self, day: dt.date) -> dt.datetime:
        if not self.spec.same_day_datetimes:
            return dt.datetime.combine(day, dt.time())
        minutes = 9 * 60 if self.spec.twins else self.rng.randint(0, 1439)
        return dt.datetime.combine(day, dt.time()) + dt.timedelta(minutes=minutes)

    def pick(self, seq):
        return seq[0] if self.spec.twins else self.rng.choice(seq)

    def keep(self, table: str, rows: list[dict]) -> list[dict]:
        """Store a table's rows as the extract will hold them: none when the table is left out
        or empty, the first when it has one row; self-references to dropped rows go NULL."""
        self.generated[table] = rows
        if table not in self.included or table in self.spec.empty_tables:
            kept = []
        elif table in self.spec.one_row_tables:
            kept = rows[:1]
        else:
            kept = rows
        if table in SELF_REFERENCES and kept is not rows:
            ids = {r[PRIMARY_KEY[table]] for r in kept}
            for r in kept:
                for col in SELF_REFERENCES[table]:
                    if r.get(col) is not None and r[col] not in ids:
                        r[col] = None
        self.rows[table] = kept
        return kept

    def ids_of(self, table: str) -> list[int]:
        return [r[PRIMARY_KEY[table]] for r in self.rows.get(table, [])]

    def maybe(self, table: str, p: float = 0.7):
        """A random id of ``table`` or None (also None when the extract has no such rows)."""
        ids = self.ids_of(table)
        if not ids or self.rng.random() > p:
            return None
        return ids[0] if self.spec.twins else self.rng.choice(ids)

    def type_concept(self, table: str) -> int:
        if self.v54:
            return TYPE_CLAIM if table == "cost" else TYPE_EHR
        return TYPES_53[table]

    # -- health system ----------------------------------------------------------------------

    def build(self) -> None:
        spec, rng = self.spec, self.rng
        n_loc = max(2, spec.persons // 8)
        self.keep(
            "location",
            [
                {
                    "location_id": self.new_id("location"),
                    "address_1": f"{rng.randint(1, 300)} {rng.choice(PERSON_NAMES)} Street",
                    "address_2": None,
                    "city": rng.choice(CITIES),
                    "state": "MA",
                    "zip": f"02{rng.randint(100, 999)}",
                    "county": "Middlesex",
                    "location_source_value": f"LOC{i:04d}",
                    "country_concept_id": COUNTRY_USA,
                    "country_source_value": "USA",
                    "latitude": round(42 + rng.random(), 4),
                    "longitude": round(-71 - rng.random(), 4),
                }
                for i in range(n_loc)
            ],
        )
        care_sites = []
        for i in range(max(2, spec.persons // 15)):
            if spec.one_varying_column:
                row = {"care_site_id": self.new_id("care_site")}
            else:
                place, place_value, _ = self.pick(CARE_SITE_PLACES)
                row = {
                    "care_site_id": self.new_id("care_site"),
                    "care_site_name": f"{rng.choice(CITIES)} {['Hospital', 'Clinic'][i % 2]}",
                    "place_of_service_concept_id": place,
                    "location_id": self.maybe("location", 0.9),
                    "care_site_source_value": f"CS{i:03d}",
                    "place_of_service_source_value": place_value,
                }
            care_sites.append(row)
        self.keep("care_site", care_sites)
        providers = []
        for i in range(max(2, spec.persons // 10)):
            specialty, specialty_value, specialty_source = self.pick(SPECIALTIES)
            if spec.twins:
                providers.append(
                    {
                        "provider_id": self.new_id("provider"),
                        "specialty_concept_id": specialty,
                        "specialty_source_value": specialty_value,
                        "specialty_source_concept_id": specialty_source,
                        "care_site_id": self.ids_of("care_site")[0]
                        if self.rows["care_site"]
                        else None,
                    }
                )
                continue
            gender, gender_value, gender_source = rng.choice(GENDER)
            providers.append(
                {
                    "provider_id": self.new_id("provider"),
                    "provider_name": f"Dr {rng.choice(PERSON_NAMES)} {chr(65 + i % 26)}",
                    "npi": f"{1000000000 + rng.randint(0, 899999999)}",
                    "dea": None,
                    "specialty_concept_id": specialty,
                    "care_site_id": self.maybe("care_site", 0.9),
                    "year_of_birth": rng.randint(1950, 1990),
                    "gender_concept_id": gender,
                    "provider_source_value": f"PRV{i:05d}",
                    "specialty_source_value": specialty_value,
                    "specialty_source_concept_id": specialty_source,
                    "gender_source_value": gender_value,
                    "gender_source_concept_id": gender_source,
                }
            )
        self.keep("provider", providers)
        self.build_persons()
        self.build_visits()
        self.build_events()
        self.build_derived()

    # -- persons, periods, death ------------------------------------------------------------

    def build_persons(self) -> None:
        spec, rng = self.spec, self.rng
        first, last = self.window
        persons, self.birth = [], {}
        for _ in range(spec.persons):
            pid = self.new_id("person")
            birth = first - dt.timedelta(days=rng.randint(365, 90 * 365))
            born = self.at_time(birth)
            gender, gender_value, gender_source = rng.choice(GENDER)
            race, race_value, race_source = rng.choice(RACE)
            ethnicity, ethnicity_value, ethnicity_source = rng.choice(ETHNICITY)
            self.birth[pid] = birth
            persons.append(
                {
                    "person_id": pid,
                    "gender_concept_id": gender,
                    "year_of_birth": birth.year,
                    "month_of_birth": birth.month,
                    "day_of_birth": birth.day,
                    "birth_datetime": born,
                    "race_concept_id": race,
                    "ethnicity_concept_id": ethnicity,
                    "location_id": self.maybe("location", 0.8),
                    "provider_id": self.maybe("provider", 0.5),
                    "care_site_id": self.maybe("care_site", 0.5),
                    "person_source_value": f"{rng.getrandbits(64):016x}",
                    "gender_source_value": gender_value,
                    "gender_source_concept_id": gender_source,
                    "race_source_value": race_value,
                    "race_source_concept_id": race_source,
                    "ethnicity_source_value": ethnicity_value,
                    "ethnicity_source_concept_id": ethnicity_source,
                }
            )
        persons = self.keep("person", persons)
        periods = []
        self.periods: dict[int, list[dict]] = defaultdict(list)
        dying = set()
        for p in persons:
            pid = p["person_id"]
            if spec.twins:
                spans = [(first, last)]
            else:
                start = self.date_between(first, last - dt.timedelta(days=60))
                end = self.date_between(start + dt.timedelta(days=30), last)
                spans = [(start, end)]
                if (end - start).days > 400 and rng.random() < 0.3:  # a gap: two periods
                    cut = start + dt.timedelta(days=(end - start).days // 2)
                    spans = [(start, cut - dt.timedelta(days=60)), (cut, end)]
            if rng.random() < 0.12 and not spec.twins:
                dying.add(pid)
            for s, e in spans:
                periods.append(
                    {
                        "observation_period_id": self.new_id("observation_period"),
                        "person_id": pid,
                        "observation_period_start_date": s,
                        "observation_period_end_date": e,
                        "period_type_concept_id": self.type_concept("observation_period"),
                    }
                )
        for op in self.keep("observation_period", periods):
            self.periods[op["person_id"]].append(op)
        deaths = []
        self.death: dict[int, dt.date] = {}
        for pid in sorted(dying, key=str):
            if not self.periods.get(pid):
                continue
            day = max(op["observation_period_end_date"] for op in self.periods[pid])
            cause, cause_value, cause_source = rng.choice(CONDITIONS)
            deaths.append(
                {
                    "person_id": pid,
                    "death_date": day,
                    "death_datetime": self.at_time(day),
                    "death_type_concept_id": self.type_concept("death"),
                    "cause_concept_id": cause,
                    "cause_source_value": cause_value,
                    "cause_source_concept_id": cause_source,
                }
            )
        for d in self.keep("death", deaths):
            self.death[d["person_id"]] = d["death_date"]

    # -- visits -----------------------------------------------------------------------------

    def visit_count(self) -> int:
        mean = self.spec.visits_per_person
        return self.rng.randint(0, max(1, round(2 * mean)))

    def build_visits(self) -> None:
        spec, rng = self.spec, self.rng
        visits = []
        for pid, periods in self.periods.items():
            mine = []
            for op in periods:
                s, e = op["observation_period_start_date"], op["observation_period_end_date"]
                for _ in range(self.visit_count()):
                    if spec.twins:
                        concept, value, source, _, _ = VISITS[0]
                        start = rng.choice([d for d in self.twin_dates if s <= d <= e] or [s])
                        end = start
                    else:
                        concept, value, source, low, high = rng.choice(VISITS)
                        start = self.date_between(s, e)
                        end = min(start + dt.timedelta(days=rng.randint(low, high)), e)
                    sdt, edt = self.times(start, end)
                    place, place_value, _ = self.pick(PLACES)
                    dis, dis_value, _ = self.pick(PLACES)
                    mine.append(
                        {
                            "visit_occurrence_id": self.new_id("visit_occurrence"),
                            "person_id": pid,
                            "visit_concept_id": concept,
                            "visit_start_date": start,
                            "visit_start_datetime": sdt,
                            "visit_end_date": end,
                            "visit_end_datetime": edt,
                            "visit_type_concept_id": self.type_concept("visit_occurrence"),
                            "provider_id": None if spec.twins else self.maybe("provider"),
                            "care_site_id": self.ids_of("care_site")[0]
                            if spec.twins and self.rows["care_site"]
                            else self.maybe("care_site"),
                            "visit_source_value": value,
                            "visit_source_concept_id": source,
                            "admitting_source_concept_id": place,
                            "admitting_source_value": place_value,
                            "discharge_to_concept_id": dis,
                            "discharge_to_source_value": dis_value,
                            "admitted_from_concept_id": place,
                            "admitted_from_source_value": place_value,
                            "discharged_to_concept_id": dis,
                            "discharged_to_source_value": dis_value,
                            "_period": op,
                        }
                    )
            mine.sort(key=lambda r: (r["visit_start_datetime"], r["visit_end_datetime"]))
            for before, after in zip(mine, mine[1:], strict=False):
                after["preceding_visit_occurrence_id"] = before["visit_occurrence_id"]
            visits.extend(mine)
        self.visits_of: dict[int, list[dict]] = defaultdict(list)
        for v in self.keep("visit_occurrence", visits):
            self.visits_of[v["person_id"]].append(v)
        # visit details: consecutive stays inside the visit, the first the parent of the rest
        details = []
        for v in self.rows["visit_occurrence"]:
            if v["visit_concept_id"] == 9202 and rng.random() < 0.7:
                continue
            n = rng.randint(1, 3)
            s, e = v["visit_start_date"], v["visit_end_date"]
            t0, tn = v["visit_start_datetime"], v["visit_end_datetime"]
            # n consecutive stays: boundaries on dates inside the visit, in time order
            inner = sorted(
                min(max(self.at_time(self.date_between(s, e)), t0), tn) for _ in range(n - 1)
            )
            bounds = [t0, *inner, tn]
            previous = None
            for j in range(n):
                sdt, edt = bounds[j], bounds[j + 1]
                start, end = sdt.date(), edt.date()
                concept, value, source = self.pick(VISIT_DETAILS)
                place, place_value, _ = self.pick(PLACES)
                row = {
                    "visit_detail_id": self.new_id("visit_detail"),
                    "person_id": v["person_id"],
                    "visit_detail_concept_id": concept,
                    "visit_detail_start_date": start,
                    "visit_detail_start_datetime": sdt,
                    "visit_detail_end_date": end,
                    "visit_detail_end_datetime": edt,
                    "visit_detail_type_concept_id": self.type_concept("visit_detail"),
                    "provider_id": self.maybe("provider"),
                    "care_site_id": self.maybe("care_site"),
                    "visit_detail_source_value": value,
                    "visit_detail_source_concept_id": source,
                    "admitting_source_value": place_value,
                    "admitting_source_concept_id": place,
                    "discharge_to_source_value": None,
                    "discharge_to_concept_id": None,
                    "admitted_from_concept_id": place,
                    "admitted_from_source_value": place_value,
                    "preceding_visit_detail_id": previous["visit_detail_id"] if previous else None,
                    "visit_occurrence_id": v["visit_occurrence_id"],
                    "_visit": v,
                }
                if previous is not None:
                    row["visit_detail_parent_id"] = row["parent_visit_detail_id"] = details[-j][
                        "visit_detail_id"
                    ]
                details.append(row)
                previous = row
        self.details_of: dict[object, list[dict]] = defaultdict(list)
        for d in self.keep("visit_detail", details):
            self.details_of[d["visit_occurrence_id"]].append(d)

    # -- events -----------------------------------------------------------------------------

    def slots(self, pid: int, n: int):
        """n (date, visit or None, visit detail or None, period) for events of a person."""
        visits = self.visits_of.get(pid, [])
        periods = self.periods.get(pid, [])
        for _ in range(n):
            if visits and self.rng.random() < 0.8:
                v = self.rng.choice(visits)
                details = self.details_of.get(v["visit_occurrence_id"], [])
                if details and self.rng.random() < 0.7:
                    d = self.rng.choice(details)
                    day = self.date_between(
                        d["visit_detail_start_date"], d["visit_detail_end_date"]
                    )
                else:
                    d = None
                    day = self.date_between(v["visit_start_date"], v["visit_end_date"])
                yield day, v, d, v["_period"]
            elif periods:
                op = self.rng.choice(periods)
                day = self.date_between(
                    op["observation_period_start_date"], op["observation_period_end_date"]
                )
                yield day, None, None, op

    def event_rows(self, table: str, make) -> list[dict]:
        rows = []
        for pid in self.periods:
            for day, v, d, op in self.slots(pid, self.visit_count()):
                row = make(day, op["observation_period_end_date"])
                if row is None:
                    continue
                row.update(
                    {
                        PRIMARY_KEY[table]: self.new_id(table),
                        "person_id": pid,
                        "visit_occurrence_id": v["visit_occurrence_id"] if v else None,
                        "visit_detail_id": d["visit_detail_id"] if d else None,
                        "provider_id": self.maybe("provider", 0.6),
                    }
                )
                rows.append(row)
        return self.keep(table, rows)

    def end_within(self, start: dt.date, days: int, limit: dt.date) -> dt.date:
        return min(start + dt.timedelta(days=days), limit)

    def build_events(self) -> None:
        spec, rng = self.spec, self.rng

        def condition(day, limit):
            concept, value, source = self.pick(CONDITIONS)
            status, status_value, _ = self.pick(CONDITION_STATUS)
            end = None if rng.random() < 0.3 else self.end_within(day, rng.randint(0, 30), limit)
            if spec.twins:
                end = day
            sdt, edt = self.times(day, end)
            return {
                "condition_concept_id": concept,
                "condition_start_date": day,
                "condition_start_datetime": sdt,
                "condition_end_date": end,
                "condition_end_datetime": edt,
                "condition_type_concept_id": self.type_concept("condition_occurrence"),
                "condition_status_concept_id": status,
                "stop_reason": None,
                "condition_source_value": value,
                "condition_source_concept_id": source,
                "condition_status_source_value": status_value,
            }

        self.event_rows("condition_occurrence", condition)

        def drug(day, limit):
            concept, value, source, _ingredient, _amount = self.pick(DRUGS)
            end = self.end_within(day, rng.randint(0, 29), limit)
            sdt, edt = self.times(day, end)
            return {
                "drug_concept_id": concept,
                "drug_exposure_start_date": day,
                "drug_exposure_start_datetime": sdt,
                "drug_exposure_end_date": end,
                "drug_exposure_end_datetime": edt,
                "verbatim_end_date": end if rng.random() < 0.5 else None,
                "drug_type_concept_id": self.type_concept("drug_exposure"),
                "stop_reason": None,
                "refills": rng.randint(0, 3),
                "quantity": float(rng.choice([10, 20, 30, 60])),
                "days_supply": (end - day).days + 1,
                "sig": "take one tablet by mouth" if rng.random() < 0.5 else None,
                "route_concept_id": ROUTE_ORAL,
                "lot_number": None,
                "drug_source_value": value,
                "drug_source_concept_id": source,
                "route_source_value": "PO",
                "dose_unit_source_value": "mg",
            }

        self.event_rows("drug_exposure", drug)

        def procedure(day, limit):
            concept, value, source = self.pick(PROCEDURES)
            end = None if rng.random() < 0.4 else self.end_within(day, rng.randint(0, 1), limit)
            sdt, edt = self.times(day, end)
            return {
                "procedure_concept_id": concept,
                "procedure_date": day,
                "procedure_datetime": sdt,
                "procedure_end_date": end,
                "procedure_end_datetime": edt,
                "procedure_type_concept_id": self.type_concept("procedure_occurrence"),
                "modifier_concept_id": 0,
                "quantity": 1,
                "procedure_source_value": value,
                "procedure_source_concept_id": source,
                "modifier_source_value": None,
            }

        self.event_rows("procedure_occurrence", procedure)

        def device(day, limit):
            concept, value, source = self.pick(DEVICES)
            end = None if rng.random() < 0.3 else self.end_within(day, rng.randint(0, 14), limit)
            sdt, edt = self.times(day, end)
            return {
                "device_concept_id": concept,
                "device_exposure_start_date": day,
                "device_exposure_start_datetime": sdt,
                "device_exposure_end_date": end,
                "device_exposure_end_datetime": edt,
                "device_type_concept_id": self.type_concept("device_exposure"),
                "unique_device_id": f"UDI-{rng.getrandbits(40):010x}",
                "production_id": None,
                "quantity": 1,
                "device_source_value": value,
                "device_source_concept_id": source,
                "unit_concept_id": UNITS["unit"],
                "unit_source_value": "unit",
                "unit_source_concept_id": UNITS["unit"],
            }

        self.event_rows("device_exposure", device)

        def measurement(day, limit):
            m = self.pick(MEASUREMENTS)
            concept, loinc, unit, low, high, normal_low, normal_high, local = m
            value = round(rng.uniform(low, high), 1)
            when = self.at_time(day)
            source_value, source_concept = loinc, concept
            if spec.local_concepts:
                source_value, source_concept = local, self.local_concept(local)
            return {
                "measurement_concept_id": concept,
                "measurement_date": day,
                "measurement_datetime": when,
                "measurement_time": when.strftime("%H:%M"),
                "measurement_type_concept_id": self.type_concept("measurement"),
                "operator_concept_id": OPERATOR_EQUALS,
                "value_as_number": value,
                "value_as_concept_id": None,
                "unit_concept_id": UNITS[unit],
                "range_low": float(normal_low),
                "range_high": float(normal_high),
                "measurement_source_value": source_value,
                "measurement_source_concept_id": source_concept,
                "unit_source_value": unit,
                "unit_source_concept_id": UNITS[unit],
                "value_source_value": str(value),
            }

        self.event_rows("measurement", measurement)

        def observation(day, limit):
            when = self.at_time(day)
            if rng.random() < 0.6:
                answer = self.pick(SMOKING_ANSWERS)
                source_value, source_concept = "72166-2", SMOKING
                if spec.local_concepts:
                    source_value = "SMOKING"
                    source_concept = self.local_concept(source_value)
                return {
                    "observation_concept_id": SMOKING,
                    "observation_date": day,
                    "observation_datetime": when,
                    "observation_type_concept_id": self.type_concept("observation"),
                    "value_as_concept_id": answer,
                    "observation_source_value": source_value,
                    "observation_source_concept_id": source_concept,
                    "value_source_value": CONCEPTS[answer].code,
                }
            return {
                "observation_concept_id": HISTORY,
                "observation_date": day,
                "observation_datetime": when,
                "observation_type_concept_id": self.type_concept("observation"),
                "value_as_string": self.pick(HISTORY_TEXTS),
                "observation_source_value": "417662000",
                "observation_source_concept_id": HISTORY,
            }

        self.event_rows("observation", observation)

        def note(day, limit):
            cls = self.pick(NOTE_CLASSES)
            name = rng.choice(PERSON_NAMES)
            return {
                "note_date": day,
                "note_datetime": self.at_time(day),
                "note_type_concept_id": self.type_concept("note"),
                "note_class_concept_id": cls,
                "note_title": "Discharge summary" if cls == NOTE_CLASSES[0] else "Clinic letter",
                "note_text": f"Seen by Dr {name}. Patient reports {rng.choice(HISTORY_TEXTS)}; "
                f"plan reviewed on day {rng.randint(1, 9)}.",
                "encoding_concept_id": ENCODING_UTF8,
                "language_concept_id": LANGUAGE_ENGLISH,
                "note_source_value": "discharge" if cls == NOTE_CLASSES[0] else "letter",
            }

        self.event_rows("note", note)

        def specimen(day, limit):
            concept, value, _ = self.pick(SPECIMENS)
            return {
                "specimen_concept_id": concept,
                "specimen_type_concept_id": self.type_concept("specimen"),
                "specimen_date": day,
                "specimen_datetime": self.at_time(day),
                "quantity": float(rng.choice([1, 2, 5])),
                "unit_concept_id": UNITS["mL"],
                "anatomic_site_concept_id": ANATOMIC_ARM if value == "BLOOD" else None,
                "disease_status_concept_id": None,
                "specimen_source_id": f"SP{rng.getrandbits(32):08x}",
                "specimen_source_value": value,
                "unit_source_value": "mL",
                "anatomic_site_source_value": "arm" if value == "BLOOD" else None,
                "disease_status_source_value": None,
            }

        self.event_rows("specimen", specimen)
        # note_nlp: terms found in notes, processed on the note's day
        nlp = []
        for n in self.rows["note"]:
            for _ in range(rng.randint(0, 2)):
                concept, value, _ = self.pick(CONDITIONS)
                term = CONCEPTS[concept].name.lower()
                nlp.append(
                    {
                        "note_nlp_id": self.new_id("note_nlp"),
                        "note_id": n["note_id"],
                        "section_concept_id": 0,
                        "snippet": f"history of {term}",
                        "offset": str(rng.randint(0, 200)),
                        "lexical_variant": term,
                        "note_nlp_concept_id": concept,
                        "note_nlp_source_concept_id": 0,
                        "nlp_system": "cTAKES 4.0",
                        "nlp_date": n["note_date"],
                        "nlp_datetime": n["note_datetime"],
                        "term_exists": "Y",
                        "term_temporal": None,
                        "term_modifiers": "certainty=positive",
                    }
                )
        self.keep("note_nlp", nlp)

    def local_concept(self, code: str) -> int:
        """The site-local concept (above 2,000,000,000) of a site's own code."""
        if code not in self.local_codes:
            self.local_codes[code] = LOCAL_CONCEPT_BASE + 1 + len(self.local_codes)
        return self.local_codes[code]

    # -- derived and polymorphic ------------------------------------------------------------

    def person_rows(self, table: str) -> dict[object, list[dict]]:
        out = defaultdict(list)
        for r in self.rows.get(table, []):
            out[r["person_id"]].append(r)
        return out

    def build_derived(self) -> None:
        rng = self.rng
        # episodes (5.4): a disease episode around a person's conditions, later ones children
        episodes, episode_events = [], []
        conditions = self.person_rows("condition_occurrence")
        if self.v54:
            for pid, rows in conditions.items():
                rows = sorted(rows, key=lambda r: r["condition_start_datetime"])
                parent = None
                for number, c in enumerate(rows[:2], start=1):
                    start, end = c["condition_start_date"], c["condition_end_date"]
                    sdt, edt = c["condition_start_datetime"], c["condition_end_datetime"]
                    e = {
                        "episode_id": self.new_id("episode"),
                        "person_id": pid,
                        "episode_concept_id": EPISODE_DISEASE,
                        "episode_start_date": start,
                        "episode_start_datetime": sdt,
                        "episode_end_date": end,
                        "episode_end_datetime": edt,
                        "episode_parent_id": parent["episode_id"] if parent else None,
                        "episode_number": number,
                        "episode_object_concept_id": c["condition_concept_id"],
                        "episode_type_concept_id": self.type_concept("episode"),
                        "episode_source_value": "disease episode",
                        "episode_source_concept_id": None,
                        "_condition": c,
                    }
                    episodes.append(e)
                    parent = parent or e
        episodes = self.keep("episode", episodes)
        field_condition = FIELD_CONCEPTS["condition_occurrence.condition_occurrence_id"]
        kept_conditions = {id(r) for r in self.rows["condition_occurrence"]}
        for e in episodes:
            if id(e["_condition"]) in kept_conditions:
                episode_events.append(
                    {
                        "episode_id": e["episode_id"],
                        "event_id": e["_condition"]["condition_occurrence_id"],
                        "episode_event_field_concept_id": field_condition,
                    }
                )
            drugs = [
                r
                for r in self.person_rows("drug_exposure").get(e["person_id"], [])
                if r["drug_exposure_start_date"] >= e["episode_start_date"]
            ]
            if drugs:
                episode_events.append(
                    {
                        "episode_id": e["episode_id"],
                        "event_id": drugs[0]["drug_exposure_id"],
                        "episode_event_field_concept_id": FIELD_CONCEPTS[
                            "drug_exposure.drug_exposure_id"
                        ],
                    }
                )
        self.keep("episode_event", episode_events)

        # *_event_id (5.4): a measurement after a procedure, an observation at a visit, ...
        if self.v54:
            for table, column, field_column, targets in (
                (
                    "measurement",
                    "measurement_event_id",
                    "meas_event_field_concept_id",
                    ("procedure_occurrence", "condition_occurrence"),
                ),
                (
                    "observation",
                    "observation_event_id",
                    "obs_event_field_concept_id",
                    ("visit_occurrence", "condition_occurrence"),
                ),
                ("note", "note_event_id", "note_event_field_concept_id", ("visit_occurrence",)),
            ):
                by_person = {t: self.person_rows(t) for t in targets}
                for r in self.rows.get(table, []):
                    if rng.random() < 0.5:
                        continue
                    for t in targets:
                        candidates = by_person[t].get(r["person_id"])
                        if candidates:
                            target = rng.choice(candidates)
                            r[column] = target[PRIMARY_KEY[t]]
                            r[field_column] = FIELD_CONCEPTS[f"{t}.{PRIMARY_KEY[t]}"]
                            break

        # fact_relationship: pairs of one person's rows, each in both directions
        facts = []
        pairs = [
            ("condition_occurrence", "drug_exposure"),
            ("procedure_occurrence", "device_exposure"),
            ("measurement", "specimen"),
            ("visit_occurrence", "observation"),
            ("measurement", "measurement"),
        ]
        by_person = {t: self.person_rows(t) for t in DOMAIN_OF_TABLE}
        for pid in self.periods:
            for a, b in pairs:
                rows_a, rows_b = by_person[a].get(pid), by_person[b].get(pid)
                if not rows_a or not rows_b or rng.random() < 0.4:
                    continue
                ra, rb = rng.choice(rows_a), rng.choice(rows_b)
                if ra is rb:
                    continue
                da, db = DOMAINS[DOMAIN_OF_TABLE[a]], DOMAINS[DOMAIN_OF_TABLE[b]]
                ia, ib = ra[PRIMARY_KEY[a]], rb[PRIMARY_KEY[b]]
                facts.append(
                    {
                        "domain_concept_id_1": da,
                        "fact_id_1": ia,
                        "domain_concept_id_2": db,
                        "fact_id_2": ib,
                        "relationship_concept_id": FACT_RELATIONSHIP[0],
                    }
                )
                facts.append(
                    {
                        "domain_concept_id_1": db,
                        "fact_id_1": ib,
                        "domain_concept_id_2": da,
                        "fact_id_2": ia,
                        "relationship_concept_id": FACT_RELATIONSHIP[1],
                    }
                )
        self.keep("fact_relationship", facts)

        # payer plan periods cover each observation period; cost rows name events by domain
        plans = []
        for pid, periods in self.periods.items():
            for op in periods:
                payer, payer_value, payer_source = self.pick(PAYERS)
                plans.append(
                    {
                        "payer_plan_period_id": self.new_id("payer_plan_period"),
                        "person_id": pid,
                        "payer_plan_period_start_date": op["observation_period_start_date"],
                        "payer_plan_period_end_date": op["observation_period_end_date"],
                        "payer_concept_id": payer,
                        "payer_source_value": payer_value,
                        "payer_source_concept_id": payer_source,
                        "plan_source_value": "PLAN-A" if payer == 280 else "PLAN-B",
                        "family_source_value": None,
                    }
                )
        plans_of = defaultdict(list)
        for p in self.keep("payer_plan_period", plans):
            plans_of[p["person_id"]].append(p)
        costs = []
        date_of = {
            "visit_occurrence": "visit_start_date",
            "drug_exposure": "drug_exposure_start_date",
            "procedure_occurrence": "procedure_date",
            "device_exposure": "device_exposure_start_date",
        }
        for domain, table in COST_DOMAINS.items():
            for r in self.rows.get(table, []):
                if rng.random() < 0.4:
                    continue
                day = r[date_of[table]]
                plan = next(
                    (
                        p
                        for p in plans_of.get(r["person_id"], [])
                        if p["payer_plan_period_start_date"]
                        <= day
                        <= p["payer_plan_period_end_date"]
                    ),
                    None,
                )
                charge = round(rng.uniform(20, 2000), 2)
                paid_payer = round(charge * 0.6, 2)
                paid_patient = round(charge * 0.1, 2)
                costs.append(
                    {
                        "cost_id": self.new_id("cost"),
                        "cost_event_id": r[PRIMARY_KEY[table]],
                        "cost_domain_id": domain,
                        "cost_type_concept_id": self.type_concept("cost"),
                        "currency_concept_id": CURRENCY_USD,
                        "total_charge": charge,
                        "total_cost": round(charge * 0.8, 2),
                        "total_paid": round(paid_payer + paid_patient, 2),
                        "paid_by_payer": paid_payer,
                        "paid_by_patient": paid_patient,
                        "paid_patient_copay": paid_patient,
                        "payer_plan_period_id": plan["payer_plan_period_id"] if plan else None,
                    }
                )
        self.keep("cost", costs)

        # eras: per person, concept and observation period, from the events generated
        def eras(table, concept_of, date_column):
            groups = defaultdict(list)
            for r in self.generated.get(table, []):
                pid, day = r["person_id"], r[date_column]
                period = next(
                    op["observation_period_id"]
                    for op in self.periods[pid]
                    if op["observation_period_start_date"]
                    <= day
                    <= op["observation_period_end_date"]
                )
                groups[(pid, concept_of(r), period)].append(r)
            return groups

        rows = []
        for (pid, concept, _), group in eras(
            "condition_occurrence", lambda r: r["condition_concept_id"], "condition_start_date"
        ).items():
            start = min(r["condition_start_date"] for r in group)
            end = max(r["condition_end_date"] or r["condition_start_date"] for r in group)
            rows.append(
                {
                    "condition_era_id": self.new_id("condition_era"),
                    "person_id": pid,
                    "condition_concept_id": concept,
                    "condition_era_start_date": start,
                    "condition_era_end_date": end,
                    "condition_occurrence_count": len(group),
                }
            )
        self.keep("condition_era", rows)
        ingredient = {d[0]: (d[3], d[4]) for d in DRUGS}
        drug_rows, dose_rows = [], []
        for (pid, ing, _), group in eras(
            "drug_exposure",
            lambda r: ingredient[r["drug_concept_id"]][0],
            "drug_exposure_start_date",
        ).items():
            start = min(r["drug_exposure_start_date"] for r in group)
            end = max(r["drug_exposure_end_date"] for r in group)
            drug_rows.append(
                {
                    "drug_era_id": self.new_id("drug_era"),
                    "person_id": pid,
                    "drug_concept_id": ing,
                    "drug_era_start_date": start,
                    "drug_era_end_date": end,
                    "drug_exposure_count": len(group),
                    "gap_days": 0,
                }
            )
            amount = next(a for i, a in ingredient.values() if i == ing)
            dose_rows.append(
                {
                    "dose_era_id": self.new_id("dose_era"),
                    "person_id": pid,
                    "drug_concept_id": ing,
                    "unit_concept_id": UNITS["mg"],
                    "dose_value": amount,
                    "dose_era_start_date": start,
                    "dose_era_end_date": end,
                }
            )
        self.keep("drug_era", drug_rows)
        self.keep("dose_era", dose_rows)


# ---------------------------------------------------------------------------------------------
# Vocabulary


def _vocabulary_rows(b: _Builder) -> dict[str, list[dict]]:
    spec = b.spec
    long = spec.long_vocabulary_strings
    local_vocabulary = LONG_LOCAL_VOCABULARY if long else LOCAL_VOCABULARY
    concepts: dict[int, Concept] = {}
    # local concepts: site codes above 2e9 that map to a standard concept
    local_maps = {}
    standard_for_local = {m[7]: m[0] for m in MEASUREMENTS} | {"SMOKING": SMOKING}
    for code, cid in b.local_codes.items():
        domain = CONCEPTS[standard_for_local[code]].domain
        concepts[cid] = Concept(
            cid,
            f"Site code {code}",
            domain,
            local_vocabulary,
            "Lab Test" if domain == "Measurement" else "Observation",
            None,
            f"{code}-{'X' * 48}" if long else code,
        )
        local_maps[cid] = standard_for_local[code]

    # the concepts the data use, and the domains fact_relationship and cost name
    domain_of_concept = {cid: name for name, cid in DOMAINS.items()}
    used: set[int] = {0, LANGUAGE_ENGLISH}  # concept_synonym names the language
    used_domains = {"Metadata"}
    for table in spec.included:
        names = [f.name for f in b.fields[table] if "_concept_id" in f.name]
        for r in b.rows[table]:
            for name in names:
                v = r.get(name)
                if v is None:
                    continue
                if name.startswith("domain_concept_id"):
                    used_domains.add(domain_of_concept[v])
                else:
                    used.add(v)
            if table == "cost":
                used_domains.add(r["cost_domain_id"])
    if b.v54:
        used.add(CDM_V54)
    # drugs bring their ingredients and source concepts bring their standard concepts
    maps_to = {}
    for group in (CONDITIONS, PROCEDURES):
        for concept, _, source in group:
            maps_to[source] = concept
    for d in DRUGS:
        maps_to[d[2]] = d[0]
    ingredient_of = {d[0]: d[3] for d in DRUGS}
    for cid in list(used):
        if cid in ingredient_of:
            used.add(ingredient_of[cid])
        if cid in maps_to:
            used.add(maps_to[cid])
    for cid in used:
        if cid in concepts:
            continue
        c = CONCEPTS[cid]
        if long and c.vocabulary in ("ICD10CM", "NDC", "CPT4"):
            c = Concept(
                c.concept_id,
                c.name,
                c.domain,
                c.vocabulary + LONG_SUFFIX,
                c.concept_class,
                c.standard,
                f"{c.code}|{c.name.upper().replace(' ', '-')}".ljust(56, "~"),
            )
        concepts[cid] = c
    # the metadata concepts of domains, vocabularies, classes, relationships
    domains = sorted({c.domain for c in concepts.values()} | used_domains)
    for d in domains:
        concepts[DOMAINS[d]] = Concept(
            DOMAINS[d], d, "Metadata", "Domain", "Domain", None, "OMOP generated"
        )
    for *_rest, rcid in RELATIONSHIPS:
        concepts[rcid] = CONCEPTS[rcid]
    vocabularies = sorted(
        {c.vocabulary for c in concepts.values()} | {"Vocabulary", "Concept Class"}
    )
    vocabulary_concept = {v: 44819000 + i for i, v in enumerate(vocabularies, start=1)}
    for v, cid in vocabulary_concept.items():
        concepts[cid] = Concept(
            cid, f"{v} vocabulary", "Metadata", "Vocabulary", "Vocabulary", None, "OMOP generated"
        )
    classes = sorted({c.concept_class for c in concepts.values()} | {"Concept Class"})
    class_concept = {c: 44820000 + i for i, c in enumerate(classes, start=1)}
    for cls, cid in class_concept.items():
        concepts[cid] = Concept(
            cid,
            f"{cls} class",
            "Metadata",
            "Concept Class",
            "Concept Class",
            None,
            "OMOP generated",
        )
    assert {c.domain for c in concepts.values()} <= set(domains)
    valid = (dt.date(1970, 1, 1), dt.date(2099, 12, 31))
    out: dict[str, list[dict]] = {}
    out["concept"] = [
        {
            "concept_id": c.concept_id,
            "concept_name": c.name,
            "domain_id": c.domain,
            "vocabulary_id": c.vocabulary,
            "concept_class_id": c.concept_class,
            "standard_concept": c.standard,
            "concept_code": c.code,
            "valid_start_date": valid[0],
            "valid_end_date": valid[1],
            "invalid_reason": None,
        }
        for c in sorted(concepts.values(), key=lambda c: c.concept_id)
    ]
    out["vocabulary"] = [
        {
            "vocabulary_id": v,
            "vocabulary_name": f"{v} (as the site received it)",
            "vocabulary_reference": "https://athena.ohdsi.org" if v != local_vocabulary else "site",
            "vocabulary_version": "v5.0 31-AUG-23" if v != local_vocabulary else "local 2024",
            "vocabulary_concept_id": vocabulary_concept[v],
        }
        for v in vocabularies
    ]
    out["domain"] = [
        {"domain_id": d, "domain_name": d, "domain_concept_id": DOMAINS[d]} for d in domains
    ]
    out["concept_class"] = [
        {"concept_class_id": c, "concept_class_name": c, "concept_class_concept_id": cid}
        for c, cid in class_concept.items()
    ]
    out["relationship"] = [
        {
            "relationship_id": rid,
            "relationship_name": rname,
            "is_hierarchical": hier,
            "defines_ancestry": anc,
            "reverse_relationship_id": rev,
            "relationship_concept_id": rcid,
        }
        for rid, rname, hier, anc, rev, rcid in RELATIONSHIPS
    ]
    rel = []

    def pair(a, b, forward, backward):
        for x, y, r in ((a, b, forward), (b, a, backward)):
            rel.append(
                {
                    "concept_id_1": x,
                    "concept_id_2": y,
                    "relationship_id": r,
                    "valid_start_date": valid[0],
                    "valid_end_date": valid[1],
                    "invalid_reason": None,
                }
            )

    for source, standard in sorted({**maps_to, **local_maps}.items()):
        if source in concepts and standard in concepts:
            pair(source, standard, "Maps to", "Mapped from")
    for drug, ing in sorted(ingredient_of.items()):
        if drug in concepts:
            pair(drug, ing, "RxNorm has ing", "RxNorm ing of")
    out["concept_relationship"] = rel
    ancestors = [
        {
            "ancestor_concept_id": c.concept_id,
            "descendant_concept_id": c.concept_id,
            "min_levels_of_separation": 0,
            "max_levels_of_separation": 0,
        }
        for c in concepts.values()
        if c.standard == "S" and c.concept_id != 0
    ]
    for drug, ing in sorted(ingredient_of.items()):
        if drug in concepts:
            ancestors.append(
                {
                    "ancestor_concept_id": ing,
                    "descendant_concept_id": drug,
                    "min_levels_of_separation": 1,
                    "max_levels_of_separation": 1,
                }
            )
    out["concept_ancestor"] = ancestors
    out["concept_synonym"] = [
        {
            "concept_id": c.concept_id,
            "concept_synonym_name": f"{c.name} (synonym)",
            "language_concept_id": LANGUAGE_ENGLISH,
        }
        for c in concepts.values()
        if c.standard == "S" and c.domain in ("Condition", "Drug", "Procedure", "Measurement")
    ]
    out["drug_strength"] = [
        {
            "drug_concept_id": d[0],
            "ingredient_concept_id": d[3],
            "amount_value": d[4],
            "amount_unit_concept_id": UNITS["mg"],
            "numerator_value": None,
            "numerator_unit_concept_id": None,
            "denominator_value": None,
            "denominator_unit_concept_id": None,
            "box_size": None,
            "valid_start_date": valid[0],
            "valid_end_date": valid[1],
            "invalid_reason": None,
        }
        for d in DRUGS
        if d[0] in concepts
    ]
    return out


# ---------------------------------------------------------------------------------------------
# Writing


def _is_reference(f: Field) -> bool:
    """Integer fields that hold a row id (of this or another clinical table), not a concept."""
    if f.datatype not in ("integer",):
        return False
    name = f.name
    if name.endswith("_concept_id"):
        return False
    return name.endswith("_id") or name in ("fact_id_1", "fact_id_2")


def _sql_type(f: Field, spec: ExtractSpec):
    if f.datatype == "integer":
        return sa.BigInteger() if spec.big_ids and _is_reference(f) else sa.Integer()
    if f.datatype == "float":
        return sa.Float()
    if f.datatype == "date":
        return sa.Date()
    if f.datatype == "datetime":
        return sa.DateTime()
    if spec.long_vocabulary_strings and f.table in ("concept", "vocabulary"):
        if f.name == "vocabulary_id":
            return sa.Text()
        if f.name == "concept_code":
            return sa.String(255)
    if f.width is None:
        return sa.Text()
    return sa.String(f.width)


def _value(v, f: Field, spec: ExtractSpec, sqlite: bool):
    if v is None:
        if spec.zero_for_null and _is_reference(f) and not f.primary_key:
            return 0
        if spec.empty_string_nulls and not f.required and f.datatype not in ("date", "datetime"):
            return ""
        return None
    if sqlite and isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    if sqlite and isinstance(v, dt.date):
        return v.isoformat()
    return v


def build_extract(url: str, spec: ExtractSpec, schema: str | None = None) -> ExtractFacts:
    """Create the extract ``spec`` describes in the existing database at ``url`` (in
    ``schema`` when given: created if missing; tables of the same names are replaced)."""
    from synth_pipeline.core.database import normalise_url

    engine = sa.create_engine(normalise_url(url))
    sqlite = engine.dialect.name == "sqlite"
    if spec.empty_string_nulls and not sqlite:
        raise ValueError("empty_string_nulls needs SQLite: PostgreSQL refuses '' in a number")
    b = _Builder(spec)
    b.build()
    vocabulary = _vocabulary_rows(b)
    first, last = b.window
    cdm_source = [
        {
            "cdm_source_name": f"Test extract {spec.name}",
            "cdm_source_abbreviation": spec.name[:25],
            "cdm_holder": "synth_pipeline tests",
            "source_description": "Built by synth_pipeline_tests/omop_extracts.py",
            "source_documentation_reference": None,
            "cdm_etl_reference": None,
            "source_release_date": last,
            "cdm_release_date": last,
            "cdm_version": "v5.4" if b.v54 else "v5.3.1",
            "cdm_version_concept_id": CDM_V54,
            "vocabulary_version": "v5.0 31-AUG-23",
        }
    ]
    contents: dict[str, list[dict]] = (
        {t: b.rows[t] for t in spec.included} | {"cdm_source": cdm_source} | vocabulary
    )
    fields = b.fields
    md = sa.MetaData(schema=schema)
    tables: dict[str, sa.Table] = {}
    column_types: dict[str, dict[str, str]] = {}
    for name in contents:
        cols = []
        for f in fields[name]:
            cols.append(sa.Column(f.name, _sql_type(f, spec), nullable=True))
        pk = [f.name for f in fields[name] if f.primary_key]
        args = list(cols)
        if pk and not spec.empty_string_nulls:
            args.append(sa.PrimaryKeyConstraint(*pk))
        tables[name] = sa.Table(name, md, *args)
        column_types[name] = {
            c.name: c.type.compile(dialect=engine.dialect) for c in tables[name].columns
        }
    with engine.begin() as conn:
        if schema:
            conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        md.drop_all(conn, checkfirst=True)
        md.create_all(conn)
        for name, rows in contents.items():
            if not rows:
                continue
            fs = fields[name]
            target = sa.table(name, *[sa.column(f.name) for f in fs], schema=schema)
            values = [{f.name: _value(r.get(f.name), f, spec, sqlite) for f in fs} for r in rows]
            conn.execute(target.insert(), values)
    engine.dispose()
    return _facts(b, spec, url, schema, contents, column_types)


DATE_TYPES = ("date", "datetime")


def _facts(b: _Builder, spec, url, schema, contents, column_types) -> ExtractFacts:
    dates = []
    same_day = 0
    for name, rows in contents.items():
        if name in VOCABULARY_TABLES or name == "cdm_source":
            continue
        for f in b.fields[name]:
            if f.datatype not in DATE_TYPES or f.name == "birth_datetime":
                continue
            for r in rows:
                v = r.get(f.name)
                if v is not None:
                    dates.append(v.date() if isinstance(v, dt.datetime) else v)
        for r in rows:
            for k, v in r.items():
                if k.endswith("_start_datetime") and v is not None:
                    end = r.get(k.replace("_start_", "_end_"))
                    if end is not None and end.date() == v.date() and end > v:
                        same_day += 1
    counts = {t: len(rows) for t, rows in contents.items()}
    cases = {f"cdm_{spec.cdm_version}"}
    if spec.persons < 10:
        cases.add("fewer_persons_than_k")
    if spec.big_ids:
        cases.add("big_ids")
    if spec.future_dates:
        cases.add("future_dates")
    if same_day:
        cases.add("same_day_datetimes")
    if spec.twins:
        cases.add("twins")
    if spec.long_vocabulary_strings:
        cases.add("long_vocabulary_strings")
    local = sorted(b.local_codes.values())
    if local and any(r["concept_id"] in local for r in contents["concept"]):
        cases.add("local_concepts")
    if any(counts[t] == 0 for t in spec.included):
        cases.add("empty_tables")
    if any(counts[t] == 1 for t in spec.included):
        cases.add("one_row_tables")
    if spec.one_varying_column and counts.get("care_site", 0) > 1:
        cases.add("one_varying_column")
    if spec.empty_string_nulls:
        cases.add("empty_string_nulls")
    if spec.zero_for_null:
        cases.add("zero_for_null")
    return ExtractFacts(
        spec=spec,
        url=url,
        schema=schema,
        tables=list(contents),
        row_counts=counts,
        window_start=b.window[0],
        window_end=b.window[1],
        first_date=min(dates) if dates else None,
        last_date=max(dates) if dates else None,
        cases=cases,
        field_concepts=dict(FIELD_CONCEPTS),
        column_types=column_types,
        local_concept_ids=local,
    )


# ---------------------------------------------------------------------------------------------
# Named specs (the extracts of issue 12, small) and the hypothesis strategy

DEMO_LIKE_53 = ExtractSpec(name="demo_like_53", cdm_version="5.3", persons=120, seed=11)
SYNTHEA_LIKE_54 = ExtractSpec(
    name="synthea_like_54",
    cdm_version="5.4",
    persons=110,
    seed=12,
    same_day_datetimes=True,
    twins=True,
)
TINY_54 = ExtractSpec(
    name="tiny_54",
    cdm_version="5.4",
    persons=28,
    seed=13,
    long_vocabulary_strings=True,
    local_concepts=True,
    one_row_tables=("location",),
    empty_tables=("dose_era",),
)
ICU_53 = ExtractSpec(
    name="icu_53",
    cdm_version="5.3",
    persons=100,
    seed=14,
    big_ids=True,
    future_dates=True,
    same_day_datetimes=True,
    visits_per_person=1.5,
)
CLAIMS_CSV = ExtractSpec(
    name="claims_csv",
    cdm_version="5.4",
    persons=10,
    seed=15,
    empty_string_nulls=True,
    zero_for_null=True,
    one_varying_column=True,
    tables=(
        "location",
        "care_site",
        "provider",
        "person",
        "observation_period",
        "visit_occurrence",
        "condition_occurrence",
        "drug_exposure",
        "procedure_occurrence",
        "measurement",
        "observation",
        "death",
        "payer_plan_period",
        "cost",
        "condition_era",
        "drug_era",
    ),
)
TWINS = ExtractSpec(name="twins", cdm_version="5.3", persons=60, seed=16, twins=True)
NAMED_SPECS = (DEMO_LIKE_53, SYNTHEA_LIKE_54, TINY_54, ICU_53, CLAIMS_CSV, TWINS)


def _subsets(items: list[str], max_size: int):
    return st.sets(st.sampled_from(items), max_size=max_size) if items else st.just(set())


@st.composite
def extract_specs(draw, *, postgres: bool = False, max_tables: int | None = None) -> ExtractSpec:
    """Small extracts (at most 200 persons, a few thousand rows): any CDM version, any
    subset of clinical tables (at most ``max_tables`` of them, person and observation_period
    included, when given), any mix of dirty cases (no '' for NULL when ``postgres``)."""
    version = draw(st.sampled_from(["5.3", "5.4"]))
    optional = [t for t in clinical_tables(version) if t not in ("person", "observation_period")]
    if max_tables is None:
        dropped = draw(st.sets(st.sampled_from(optional), max_size=6))
        kept = [t for t in optional if t not in dropped]
    else:
        kept = draw(_subsets(optional, max(0, max_tables - 2)))
    tables = tuple(
        t for t in clinical_tables(version) if t in kept or t in ("person", "observation_period")
    )
    present = [t for t in tables if t != "person"]
    empty = draw(_subsets(present, 2))
    one_row = draw(_subsets([t for t in present if t not in empty], 2))
    persons = draw(st.one_of(st.integers(1, 9), st.integers(10, 60), st.integers(61, 200)))
    return ExtractSpec(
        name="drawn",
        cdm_version=version,
        persons=persons,
        seed=draw(st.integers(0, 2**16)),
        tables=tables,
        visits_per_person=draw(st.sampled_from([1.0, 2.0, 3.0])) if persons <= 60 else 1.0,
        big_ids=draw(st.booleans()),
        future_dates=draw(st.booleans()),
        same_day_datetimes=draw(st.booleans()),
        twins=draw(st.booleans()),
        long_vocabulary_strings=draw(st.booleans()),
        local_concepts=draw(st.booleans()),
        empty_tables=tuple(sorted(empty)),
        one_row_tables=tuple(sorted(one_row)),
        one_varying_column=draw(st.booleans()),
        empty_string_nulls=False if postgres else draw(st.booleans()),
        zero_for_null=draw(st.booleans()),
    )
