"""The OMOP CDM field specification as the tests read it: tables, fields, types, keys.

Read with ``csv`` from the OHDSI field-level CSVs in ``shared/data/omop-cdm-spec/`` (found in
any folder above this file, as in CI where ``../shared`` sits beside the clone, or here where
the worktree sits under the main checkout), else from the reduced copy the package ships
(``synth_pipeline/core/omop_cdm_fields.csv``). The file is read, not the package's code: the
extract generator and the judge both stand on the spec, not on what the pipeline made of it.
"""

from __future__ import annotations

import csv
import functools
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve()
SPEC_FOLDER = Path("shared") / "data" / "omop-cdm-spec"
PACKAGED_FIELDS = HERE.parents[1] / "synth_pipeline" / "core" / "omop_cdm_fields.csv"
VERSIONS = ("5.3", "5.4")

# The standardized vocabularies: concept ids point into them, they hold no patients.
VOCABULARY_TABLES = (
    "concept",
    "vocabulary",
    "domain",
    "concept_class",
    "relationship",
    "concept_relationship",
    "concept_ancestor",
    "concept_synonym",
    "drug_strength",
)
# Tables every generated extract can hold, per CDM version (the spec's clinical, health-system,
# derived and metadata tables less metadata, cohort tables and source_to_concept_map).
CLINICAL_TABLES_53 = (
    "location",
    "care_site",
    "provider",
    "person",
    "observation_period",
    "death",
    "visit_occurrence",
    "visit_detail",
    "condition_occurrence",
    "drug_exposure",
    "procedure_occurrence",
    "device_exposure",
    "measurement",
    "observation",
    "note",
    "note_nlp",
    "specimen",
    "fact_relationship",
    "payer_plan_period",
    "cost",
    "drug_era",
    "dose_era",
    "condition_era",
)
CLINICAL_TABLES_54 = (*CLINICAL_TABLES_53, "episode", "episode_event")


def clinical_tables(cdm_version: str) -> tuple[str, ...]:
    return CLINICAL_TABLES_54 if cdm_version == "5.4" else CLINICAL_TABLES_53


@dataclass(frozen=True)
class Field:
    table: str
    name: str
    datatype: str  # lower case: integer, float, date, datetime, varchar(n), varchar(max)
    required: bool
    primary_key: bool
    fk_table: str | None  # lower case
    fk_field: str | None

    @property
    def width(self) -> int | None:
        """The declared width of a varchar, None for varchar(max) and other types."""
        if self.datatype.startswith("varchar(") and self.datatype != "varchar(max)":
            return int(self.datatype[len("varchar(") : -1])
        return None


def _spec_folder() -> Path | None:
    for parent in HERE.parents:
        folder = parent / SPEC_FOLDER
        if (folder / "OMOP_CDMv5.4_Field_Level.csv").exists():
            return folder
    return None


def _clean(name: str) -> str:
    return name.strip().strip('"').lower()


def _none(value: str) -> str | None:
    value = (value or "").strip()
    return None if value in ("", "NA") else value.lower()


@functools.cache
def spec_fields(cdm_version: str) -> dict[str, tuple[Field, ...]]:
    """Table name -> its fields in spec order, for CDM ``cdm_version`` ("5.3" or "5.4")."""
    if cdm_version not in VERSIONS:
        raise ValueError(f"cdm_version must be one of {VERSIONS}, not {cdm_version!r}")
    tables: dict[str, list[Field]] = {}
    folder = _spec_folder()
    if folder is not None:
        path = folder / f"OMOP_CDMv{cdm_version}_Field_Level.csv"
        with path.open(encoding="utf-8-sig", newline="") as f:
            for row in csv.DictReader(f):
                fk = row["isForeignKey"] == "Yes"
                field = Field(
                    table=_clean(row["cdmTableName"]),
                    name=_clean(row["cdmFieldName"]),
                    datatype=row["cdmDatatype"].strip().lower(),
                    required=row["isRequired"] == "Yes",
                    primary_key=row["isPrimaryKey"] == "Yes",
                    fk_table=_none(row["fkTableName"]) if fk else None,
                    fk_field=_none(row["fkFieldName"]) if fk else None,
                )
                tables.setdefault(field.table, []).append(field)
    else:
        with PACKAGED_FIELDS.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f):
                if row["cdm_version"] != cdm_version:
                    continue
                field = Field(
                    table=_clean(row["table"]),
                    name=_clean(row["field"]),
                    datatype=row["datatype"].strip().lower(),
                    required=row["required"] == "1",
                    primary_key=row["primary_key"] == "1",
                    fk_table=_none(row["fk_table"]),
                    fk_field=_none(row["fk_field"]),
                )
                tables.setdefault(field.table, []).append(field)
    return {t: tuple(fs) for t, fs in tables.items()}


@functools.cache
def all_versions_fields() -> dict[str, dict[str, Field]]:
    """Table -> field name -> Field over both versions (5.4 wins where both define a field;
    a foreign key either version declares is kept), for reading an extract of either version."""
    merged: dict[str, dict[str, Field]] = {}
    for version in VERSIONS:
        for table, fields in spec_fields(version).items():
            for f in fields:
                old = merged.setdefault(table, {}).get(f.name)
                if old is not None and f.fk_table is None and old.fk_table is not None:
                    f = Field(**{**f.__dict__, "fk_table": old.fk_table, "fk_field": old.fk_field})
                merged[table][f.name] = f
    return merged
