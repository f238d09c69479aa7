"""The reviewed configuration: ``project.yaml`` and one YAML file per table.

Files live in ``resources/configuration-files/<project>/``. Loading validates them with
pydantic models (their JSON Schema is published beside them) and turns every mistake into a
:class:`ConfigError` naming the file, line, table, column and setting.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from .disclosure import DisclosurePolicy
from .errors import ConfigError, ReviewGateError
from .generators import CATALOGUE
from .schema import LogicalType, unusable_name
from .statistics import ColumnStats, PrivacyBudget, fingerprint_of

FORMAT_VERSION = 1
PROJECT_FILE = "project.yaml"


class FidelityThresholds(BaseModel):
    """What the fidelity checks hold the synthetic tables to."""

    model_config = ConfigDict(extra="forbid")
    min_median_column_score: float = Field(
        0.9, ge=0, le=1, description="Median KSComplement/TVComplement over a table's columns."
    )
    min_cardinality_shape_similarity: float = Field(
        0.7, ge=0, le=1, description="Children per parent against the released fan-out."
    )
    achilles: bool = Field(
        True,
        description="Run OHDSI Achilles on the source and the synthetic tables for the trusted "
        "report (achilles.html beside it; needs the ohdsi extra, else the page says so).",
    )


_EXCESS = (
    "Measured as the excess over chance, (figure - chance) / (copy - chance), where chance is "
    "the larger of what a real row left out of the source and the synthetic columns recombined "
    "at random score, and copy what a copy of the source scores: 0 is chance, 1 a copy. A "
    "table fails when its excess is above this with 99% confidence."
)
_RISK = (
    "Measured as (success on source rows - success on held-out control rows) / (1 - success "
    "on control rows), after Giomi et al. 2022 (anonymeter): 0 is no more than the control, 1 "
    "every attack succeeds. A table fails when the risk is above this with 99% confidence."
)
# project.yaml privacy settings of before the verdicts against chance, and what replaced them
_OLD_PRIVACY_SETTINGS = {
    "max_exact_match_rate": "max_exact_match_excess",
    "max_dcr_closer_share": "max_dcr_excess",
}


class PrivacyTableThresholds(BaseModel):
    """One table's own privacy thresholds (``privacy.tables.<table>``); unset ones are the
    project's."""

    model_config = ConfigDict(extra="forbid")
    max_exact_match_excess: float | None = Field(None, ge=0, le=1)
    max_unique_match_excess: float | None = Field(None, ge=0, le=1)
    max_dcr_excess: float | None = Field(None, ge=0, le=1)
    max_rare_category_leaks: int | None = Field(None, ge=0)
    max_singling_out_risk: float | None = Field(None, ge=0, le=1)
    max_linkability_risk: float | None = Field(None, ge=0, le=1)
    max_inference_risk: float | None = Field(None, ge=0, le=1)
    max_membership_auc: float | None = Field(None, ge=0.5, le=1)

    @model_serializer(mode="wrap")
    def _set_only(self, handler):
        return {k: v for k, v in handler(self).items() if v is not None}


class PrivacyThresholds(BaseModel):
    """What the privacy checks hold each synthetic table to (see core/privacy.py); a table that
    exceeds one is refused by csv_bundle."""

    model_config = ConfigDict(extra="forbid")
    max_exact_match_excess: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Synthetic rows equal to some source row on every informative column. "
        + _EXCESS,
    )
    max_unique_match_excess: float = Field(
        0.2,
        ge=0,
        le=1,
        description="Synthetic rows matching a source row that is unique on its quasi-identifiers "
        "(person: year of birth, gender, race, ethnicity; events: concept, date). " + _EXCESS,
    )
    max_dcr_excess: float = Field(
        0.2,
        ge=0,
        le=1,
        description="How often a synthetic row is closer to the source than a real row left out "
        "of it is (distance to closest record). " + _EXCESS,
    )
    max_rare_category_leaks: int = Field(
        0,
        ge=0,
        description="Values seen fewer than k times in the source that appear in the output.",
    )
    dcr_sample_rows: int = Field(
        1000, ge=10, description="Synthetic rows and left-out source rows sampled for DCR."
    )
    dcr_reference_rows: int = Field(
        5000, ge=10, description="Source rows they are compared with (a sample of the source)."
    )
    max_singling_out_risk: float = Field(
        0.09,
        ge=0,
        le=1,
        description="Singling-out risk: predicates built from synthetic rows that isolate exactly "
        "one source row. " + _RISK,
    )
    max_linkability_risk: float = Field(
        0.09,
        ge=0,
        le=1,
        description="Linkability risk: a source row's two halves of columns lead to the same "
        "nearest synthetic row. " + _RISK,
    )
    max_inference_risk: float = Field(
        0.09,
        ge=0,
        le=1,
        description="Attribute-inference risk, for the worst column: a source row's value guessed "
        "from the nearest synthetic row on its other columns. " + _RISK,
    )
    max_membership_auc: float = Field(
        0.6,
        ge=0.5,
        le=1,
        description="Membership inference: the AUC of telling source rows from held-out rows by "
        "their distance to the nearest synthetic row (0.5 is chance). A table fails when the "
        "AUC is above this with 99% confidence.",
    )
    attack_rows: int = Field(
        500,
        ge=10,
        description="Targets attacked on each side (and predicates built on each side for "
        "singling out).",
    )
    attack_reference_rows: int = Field(
        10_000,
        ge=10,
        description="Rows of each half of the source, and synthetic rows the attacker searches.",
    )
    quasi_identifiers: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per table, the quasi-identifier columns to use instead of the defaults.",
    )
    tables: dict[str, PrivacyTableThresholds] = Field(
        default_factory=dict,
        description="Per table, thresholds that replace the ones above for that table.",
    )
    _deprecated: list[str] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def _accept_old_settings(cls, data: Any, handler):
        """A project.yaml written before the verdicts against chance still loads: its absolute
        thresholds are set aside (the new defaults apply) and the privacy report says so."""
        notes = []
        if isinstance(data, dict) and any(k in data for k in _OLD_PRIVACY_SETTINGS):
            data = dict(data)
            for old, new in _OLD_PRIVACY_SETTINGS.items():
                if old in data:
                    notes.append(
                        f"privacy.{old} ({data.pop(old)}) is no longer used: the check is judged "
                        f"on the excess over chance, privacy.{new}; remove {old} from project.yaml"
                    )
            new_keys = {"max_exact_match_excess", "max_dcr_excess", "tables"}
            if "max_unique_match_excess" in data and not new_keys & set(data):
                notes.append(
                    f"privacy.max_unique_match_excess ({data.pop('max_unique_match_excess')}) "
                    "in this older project.yaml was a difference of rates; it is now a share of "
                    "the way from chance to a copy and its default applies; set it again to keep "
                    "another value"
                )
        model = handler(data)
        if notes:
            model._deprecated = notes
        return model

    @property
    def deprecated(self) -> list[str]:
        """What an older project.yaml set that no longer applies (shown in the privacy report)."""
        return list(self._deprecated)

    def for_table(self, table: str) -> PrivacyThresholds:
        """The thresholds that apply to one table: the project's with the table's own on top."""
        out = self.model_copy(deep=True)
        own = self.tables.get(table)
        if own is not None:
            for name, value in own.model_dump().items():
                setattr(out, name, value)
        return out


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
# Reading and writing


# libyaml's C loader and dumper when PyYAML has them: ten times faster on these files
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    pass


def _represent_dict(dumper, data: dict) -> yaml.Node:
    small = len(data) <= 3 and all(not isinstance(v, dict | list) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data, flow_style=small)


def _represent_list(dumper, data: list) -> yaml.Node:
    flat = len(data) <= 24 and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in data
    )
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flat)


_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(list, _represent_list)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: Path, text: str) -> None:
    """Write a file so readers see the old or the new content, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        # mkstemp makes the file private; a config is read by reviewers logged in as others
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"YAML syntax error: {_yaml_problem(exc)}", file=str(path), line=_yaml_line(exc)
        ) from None


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or str(exc)
    context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and opened is not None:
        problem += f" ({context.removeprefix('while ')} that starts on line {opened.line + 1})"
    return problem


def _yaml_line(exc: yaml.YAMLError) -> int | None:
    """The line of the break. PyYAML marks where it noticed it: for a bracket or a quote left
    open that is a later line, so the line where the unclosed part starts is given instead."""
    mark = getattr(exc, "problem_mark", None)
    context, opened = getattr(exc, "context", None) or "", getattr(exc, "context_mark", None)
    if opened is not None and ("flow" in context or "quoted" in context):
        return opened.line + 1
    return mark.line + 1 if mark is not None else None


def _raise_validation(exc: ValidationError, path: Path, table: str | None) -> None:
    first = exc.errors()[0]
    loc = [str(x) for x in first["loc"]]
    column = None
    setting = ".".join(loc) if loc else None
    if len(loc) >= 2 and loc[0] == "columns":
        column = loc[1]
        setting = ".".join(loc[2:]) or None
    more = len(exc.errors()) - 1
    msg = first["msg"] + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
    raise ConfigError(msg, file=str(path), table=table, column=column, setting=setting) from None


def load_project(path: Path) -> ProjectConfig:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping of settings", file=str(path))
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, path, None)
        raise  # unreachable


_LOADED: dict[str, tuple[tuple[int, int], TableConfig]] = {}


def load_table_config(path: Path) -> TableConfig:
    """Load and fully validate one table file, generators and their parameters included.

    Parsed files are remembered by path, size and modification time, so the many reads of one
    run (a child reads its parents' files) parse each file once; a copy is handed out.
    """
    try:
        st = path.stat()
        stamp = (st.st_mtime_ns, st.st_size)
    except OSError:
        stamp = None
    cached = _LOADED.get(str(path))
    if stamp is not None and cached is not None and cached[0] == stamp:
        return cached[1].model_copy(deep=True)
    cfg = _load_table_config(path)
    if stamp is not None:
        _LOADED[str(path)] = (stamp, cfg.model_copy(deep=True))
    return cfg


def _load_table_config(path: Path) -> TableConfig:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping with table, kind, rows, columns", file=str(path))
    table = data.get("table") if isinstance(data.get("table"), str) else path.stem
    try:
        cfg = TableConfig.model_validate(data)
    except ValidationError as exc:
        _raise_validation(exc, path, table)
        raise
    validate_generators(cfg, path)
    return cfg


def validate_generators(cfg: TableConfig, path: Path | str | None = None) -> None:
    file = str(path) if path else None
    if cfg.kind == "synthetic" and cfg.vocabulary_rows is not None:
        raise ConfigError(
            "vocabulary_rows applies to vocabulary tables only (kind: vocabulary); remove it",
            file=file,
            table=cfg.table,
            setting="vocabulary_rows",
        )
    if cfg.kind != "synthetic":
        return
    for name, col in cfg.columns.items():
        if col.generator is None:
            raise ConfigError(
                "a synthetic table needs a generator for every column",
                file=file,
                table=cfg.table,
                column=name,
                setting="generator",
            )
        gen = CATALOGUE[col.generator]
        if col.type not in gen.types:
            raise ConfigError(
                f"generator {col.generator} makes {'/'.join(sorted(gen.types))} values, "
                f"but the column is {col.type}",
                file=file,
                table=cfg.table,
                column=name,
                setting="generator",
            )
        try:
            params = gen.Params.model_validate(col.params)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise ConfigError(
                f"{err['msg']} (generator {col.generator})",
                file=file,
                table=cfg.table,
                column=name,
                setting=f"params.{where}" if where else "params",
            ) from None
        problem = gen.check(col.stats, params, col.type)
        if problem:
            raise ConfigError(
                f"generator {col.generator} {problem}",
                file=file,
                table=cfg.table,
                column=name,
                setting="generator",
            )
        for dep in gen.depends_on(params):
            if dep not in cfg.columns:
                raise ConfigError(
                    f"generator {col.generator} derives from column {dep!r}, which this table does not have",
                    file=file,
                    table=cfg.table,
                    column=name,
                    setting="params",
                )
    cfg.generation_order()


def table_config_to_yaml(cfg: TableConfig, project: str) -> str:
    header = (
        f"# synth_pipeline configuration of table {cfg.table!r}, project {project!r}.\n"
        "# Every statistic below passed disclosure control; `disclosure` says which rule changed what.\n"
        "# Review the generators, then: synth-pipeline approve --project "
        f"{project} --table {cfg.table} --reviewer NAME\n"
    )
    data = cfg.model_dump(mode="json", by_alias=True, exclude_none=True)
    return header + dump_yaml(data)


class ProjectFiles:
    """The configuration folder of one project."""

    def __init__(self, root: Path | str, project: str):
        self.root = Path(root)
        self.project = project
        self.folder = self.root / project

    @property
    def project_file(self) -> Path:
        return self.folder / PROJECT_FILE

    def table_file(self, table: str) -> Path:
        problem = unusable_name(table)
        if problem:
            raise ConfigError(f"not a usable table: {problem}", table=table, setting="table")
        return self.folder / f"{table}.yaml"

    def exists(self) -> bool:
        return self.project_file.exists()

    def require_exists(self) -> None:
        """Refuse a project that has no folder with a project.yaml: a typo in a project's name
        must not quietly start a new project (only ``init`` creates one)."""
        if self.exists():
            return
        known = sorted(p.parent.name for p in self.root.glob(f"*/{PROJECT_FILE}"))
        raise ConfigError(
            f"no project {self.project!r} in {self.root} (projects: "
            f"{', '.join(known) or 'none'}); create one with synth-pipeline init --project "
            f"{self.project}",
            file=str(self.project_file),
            setting="--project",
        )

    def load_project(self) -> ProjectConfig:
        if not self.project_file.exists():
            return ProjectConfig(project=self.project)
        cfg = load_project(self.project_file)
        if cfg.project != self.project:
            raise ConfigError(
                f"project is {cfg.project!r} but the folder is {self.project!r}",
                file=str(self.project_file),
                setting="project",
            )
        return cfg

    def save_project(self, cfg: ProjectConfig) -> None:
        header = (
            f"# synth_pipeline project {cfg.project!r}: settings shared by every table.\n"
            "# `disclosure` holds the rules every released statistic passed; changing them\n"
            "# changes the statistics, which then need a new review.\n"
        )
        atomic_write_text(self.project_file, header + dump_yaml(cfg.model_dump(mode="json")))

    def tables(self) -> list[str]:
        if not self.folder.exists():
            return []
        return sorted(p.stem for p in self.folder.glob("*.yaml") if p.name != PROJECT_FILE)

    def has_table(self, table: str) -> bool:
        return self.table_file(table).exists()

    def load_table(self, table: str) -> TableConfig:
        path = self.table_file(table)
        cfg = load_table_config(path)
        if cfg.table != table:
            raise ConfigError(
                f"the file is for table {table!r} but says table: {cfg.table!r}",
                file=str(path),
                table=table,
                setting="table",
            )
        return cfg

    def save_table(self, cfg: TableConfig) -> None:
        validate_generators(cfg, self.table_file(cfg.table))
        atomic_write_text(self.table_file(cfg.table), table_config_to_yaml(cfg, self.project))

    def write_json_schema(self) -> Path:
        path = self.root / "table-config.schema.json"
        atomic_write_text(path, json.dumps(table_config_json_schema(), indent=2) + "\n")
        return path


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
