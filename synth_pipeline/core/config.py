"""The reviewed configuration: ``project.yaml`` and one YAML file per table.

Files live in ``resources/configuration-files/<project>/``. Loading validates them with
pydantic models (their JSON Schema is published beside them) and turns every mistake into a
:class:`ConfigError` naming the file, line, table, column and setting.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
)

from .disclosure import DisclosurePolicy
from .errors import ConfigError, ReviewGateError
from .generators import CATALOGUE
from .schema import LogicalType
from .statistics import ColumnStats, PrivacyBudget, fingerprint_of
from .thresholds import (
    FidelityThresholds,
    PrivacyThresholds,
)

FORMAT_VERSION = 1
PROJECT_FILE = "project.yaml"


class ProjectConfig(BaseModel):
    """Settings shared by every table of a project."""

    model_config = ConfigDict(extra="forbid")

    project: str
    description: str = ""
    cdm_version: str = "5.3"
    seed: int = Field(42, description="Default seed; the same seed gives the same output.")
    scale: float = Field(1.0, gt=0, description="Multiplies every table's row count.")
    chunk_rows: int = Field(
        262_144, ge=1, description="Rows generated and written per chunk (rounded to 65,536)."
    )
    distributed_min_rows: int = Field(
        10_000_000,
        ge=1,
        description="A synthetic table of at least this many rows (after scale) is generated as "
        "block-range tasks on a Dask cluster when one is configured (docs/distributed.md); a "
        "smaller table, or any table without a cluster, is generated in-process.",
    )
    statistics_sample_rows: int = Field(
        1_000_000,
        ge=1000,
        description="A source table with more rows than this takes the quantiles and distinct "
        "counts of its high-cardinality columns from a sample of about this many rows (stated "
        "in its findings); every count, listed value and histogram stays exact.",
    )
    bundle_formats: list[Literal["csv", "parquet"]] = Field(
        default_factory=lambda: ["csv", "parquet"],
        min_length=1,
        description="The bundle's file formats: csv (one file per table), parquet (one folder "
        "per table, parquet/<table>/<table>.parquet), or both.",
    )
    refresh_schedule: str = Field(
        "0 3 * * 1", description="Cron for the scheduled refresh (default Mondays 03:00)."
    )
    disclosure: DisclosurePolicy = Field(default_factory=DisclosurePolicy)
    fidelity: FidelityThresholds = Field(default_factory=FidelityThresholds)
    privacy: PrivacyThresholds = Field(default_factory=PrivacyThresholds)
    conditional: dict[str, dict[str, str]] = Field(
        default_factory=lambda: {
            "measurement": {
                "value_as_number": "measurement_concept_id",
                "unit_concept_id": "measurement_concept_id",
                "range_low": "measurement_concept_id",
                "range_high": "measurement_concept_id",
            },
            "observation": {
                "value_as_number": "observation_concept_id",
                "unit_concept_id": "observation_concept_id",
            },
        },
        description="Per-group statistics to release: table -> column -> the column it is "
        "summarised by. They let a reviewer choose conditional generators (opt-in); groups "
        "below k are pooled.",
    )


class ReviewBlock(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Literal["draft", "approved"] = "draft"
    reviewer: str | None = None
    approved_at: str | None = None
    source_fingerprint: str | None = Field(
        None, description="Fingerprint of the schema and statistics the approval was given for."
    )
    config_fingerprint: str | None = Field(
        None, description="Fingerprint of this file (less this block) when it was approved."
    )
    comment: str | None = None


class ColumnConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: LogicalType
    sql_type: str
    nullable: bool = True
    max_length: int | None = None
    generator: str | None = Field(
        None, description="How the column is generated; None in vocabulary and skipped tables."
    )
    params: dict[str, Any] = Field(default_factory=dict)
    why: str = ""
    stats: ColumnStats | None = None
    disclosure: list[str] = Field(default_factory=list)

    @field_validator("generator")
    @classmethod
    def _known_generator(cls, v: str | None) -> str | None:
        if v is not None and v not in CATALOGUE:
            raise ValueError(f"unknown generator {v!r}; known: {', '.join(sorted(CATALOGUE))}")
        return v


class Rules(BaseModel):
    """Consistency rules the generated rows satisfy by construction (OMOP defaults: all on)."""

    model_config = ConfigDict(extra="forbid")

    end_after_start: bool = Field(True, description="An end date is on or after its start date.")
    within_lifetime: bool = Field(
        True, description="Events fall between the person's birth and death."
    )
    within_observation_period: bool = Field(
        True,
        description="Events, visits and eras fall inside one of the person's observation periods.",
    )
    visit_same_person: bool = Field(
        True,
        description="An event's visit_occurrence_id is a visit of the same person whose dates contain the event.",
    )
    datetime_matches_date: bool = Field(True, description="A *_datetime falls on its *_date.")
    birth_parts_match: bool = Field(
        True, description="year/month/day_of_birth agree with birth_datetime."
    )


class SourceSummary(BaseModel):
    model_config = ConfigDict(extra="forbid")

    row_count: int | None = Field(None, description="Released row count (None: below k).")
    fingerprint: str | None = None
    findings: list[str] = Field(default_factory=list)
    dp: PrivacyBudget | None = Field(
        None, description="The differential privacy budget the statistics spent (when it is on)."
    )


class TableConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: Literal[1] = FORMAT_VERSION
    table: str
    kind: Literal["synthetic", "vocabulary", "skip"]
    vocabulary_rows: Literal["referenced", "all"] | None = Field(
        None,
        description="Vocabulary tables only: which source rows are copied. referenced (the "
        "default): only rows for the concepts the approved synthetic tables can contain; all: "
        "every row, for an extract known to carry the full public vocabulary.",
    )
    site_local: Literal["exclude", "include"] | None = Field(
        None,
        description="Vocabulary tables only: the site's own concepts (concept_id above "
        "2,000,000,000) and local vocabularies (vocabulary_concept_id 0 or above 2,000,000,000, "
        "or only site-local concepts in them), which are not public OMOP vocabulary. exclude "
        "(the default) leaves their rows out of the copy; include copies them.",
    )
    rows: int = Field(ge=0, description="Rows to generate before the run's scale factor.")
    primary_key: str | None = None
    source: SourceSummary = Field(default_factory=SourceSummary)
    columns: dict[str, ColumnConfig] = Field(default_factory=dict)
    rules: Rules = Field(default_factory=Rules)
    review: ReviewBlock = Field(default_factory=ReviewBlock)

    def fingerprint(self) -> str:
        """Fingerprint of the content a reviewer approves (everything but the review block).

        ``vocabulary_rows`` and ``site_local`` count when they are set, so an approval covers
        the choice; unset, they are left out, so files approved before the settings existed
        keep their fingerprints.
        """
        data = self.model_dump(mode="json", by_alias=True, exclude={"review"})
        for optional in ("vocabulary_rows", "site_local"):
            if data.get(optional) is None:
                data.pop(optional, None)
        return fingerprint_of(data)

    @property
    def vocabulary_rule(self) -> Literal["referenced", "all"]:
        """Which rows of a vocabulary table are copied; referenced unless the file says all."""
        return self.vocabulary_rows or "referenced"

    def generation_order(self) -> list[str]:
        """Columns in an order where each comes after the columns it is derived from."""
        order: list[str] = []
        state: dict[str, int] = {}

        def visit(name: str, path: list[str]) -> None:
            if state.get(name) == 2:
                return
            if state.get(name) == 1:
                raise ConfigError(
                    f"columns derive from each other in a cycle: {' -> '.join(path + [name])}",
                    table=self.table,
                    column=name,
                )
            state[name] = 1
            col = self.columns[name]
            if col.generator is None:
                state[name] = 2
                order.append(name)
                return
            params = CATALOGUE[col.generator].Params.model_validate(col.params)
            for dep in CATALOGUE[col.generator].depends_on(params):
                visit(dep, path + [name])
            state[name] = 2
            order.append(name)

        for name in self.columns:
            visit(name, [])
        return order


def table_config_json_schema() -> dict[str, Any]:
    """JSON Schema of a table file, with each generator's parameters spelled out."""
    schema = TableConfig.model_json_schema(by_alias=True)
    column = schema["$defs"]["ColumnConfig"]
    column["properties"]["generator"]["enum"] = sorted(CATALOGUE)
    column["allOf"] = [
        {
            "if": {"properties": {"generator": {"const": name}}},
            "then": {"properties": {"params": gen.Params.model_json_schema()}},
        }
        for name, gen in sorted(CATALOGUE.items())
    ]
    schema["title"] = "synth_pipeline table configuration"
    return schema


# ---------------------------------------------------------------------------------------------
# Review


def approve(
    cfg: TableConfig, reviewer: str, source_fingerprint: str | None, comment: str | None = None
) -> TableConfig:
    if not reviewer.strip():
        raise ConfigError("a reviewer name is required", table=cfg.table, setting="reviewer")
    out = cfg.model_copy(deep=True)
    out.review = ReviewBlock(
        status="approved",
        reviewer=reviewer.strip(),
        approved_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        source_fingerprint=source_fingerprint or cfg.source.fingerprint,
        config_fingerprint=cfg.fingerprint(),
        comment=comment,
    )
    return out


def approval_problem(cfg: TableConfig, current_source_fingerprint: str | None) -> str | None:
    """Why this config may not be generated from, or None when its approval holds."""
    r = cfg.review
    if r.status != "approved":
        why = f" ({r.comment})" if r.comment else ""
        return f"the configuration is a draft, not approved by a reviewer{why}; review it, then synth-pipeline approve"
    if not r.config_fingerprint or r.config_fingerprint != cfg.fingerprint():
        return (
            f"the configuration was edited after {r.reviewer} approved it on {r.approved_at}; "
            "it needs a new review"
        )
    if current_source_fingerprint and r.source_fingerprint != current_source_fingerprint:
        return (
            "the source schema or statistics changed since the approval "
            f"(approved {r.source_fingerprint}, now {current_source_fingerprint}); it needs a new review"
        )
    return None


def require_approved(cfg: TableConfig, current_source_fingerprint: str | None) -> None:
    problem = approval_problem(cfg, current_source_fingerprint)
    if problem:
        raise ReviewGateError(cfg.table, problem)
