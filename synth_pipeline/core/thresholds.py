"""What a project holds its synthetic tables to: the fidelity and privacy thresholds of
``project.yaml``, per project and per table.
"""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    model_serializer,
    model_validator,
)


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
