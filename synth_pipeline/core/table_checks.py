"""The checks of a written table and their verdicts, whoever runs them: the synthetic_table
asset turns each into a Dagster check result, the register keeps them for the bundle's gate."""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import FidelityThresholds
from .fidelity import TableFidelity
from .generation import WrittenTable, WrittenTableChecks
from .privacy import CHECKS as PRIVACY_CHECKS
from .privacy import PrivacyReport

REFERENCES_CHECK = "references_resolve"
ROW_COUNT_CHECK = "row_count_matches_config"
RULES_CHECK = "rules_hold"
FIDELITY_CHECK = "fidelity_meets_threshold"

# the checks whose failure stops a release (the privacy checks all do)
BLOCKING_CHECKS = {REFERENCES_CHECK, ROW_COUNT_CHECK, RULES_CHECK, *PRIVACY_CHECKS}


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    description: str | None = None
    metadata: dict = field(default_factory=dict)
    warning_only: bool = False  # a failure is shown as a warning, never a gate

    @property
    def blocking(self) -> bool:
        return self.name in BLOCKING_CHECKS


def _computed(name: str, error: str | None, **fields) -> CheckOutcome:
    """The check's outcome, or a failure carrying the error raised while computing it."""
    if error is None:
        return CheckOutcome(name, **fields)
    return CheckOutcome(
        name,
        passed=False,
        metadata={"error": error},
        description=f"the check could not be computed: {error}",
    )


def written_table_outcomes(
    written: WrittenTable, measured: WrittenTableChecks
) -> list[CheckOutcome]:
    """The references, row count and rules checks of the written table."""
    table = written.table
    dangling = measured.dangling or {}
    violations = measured.fidelity.rule_violations if measured.fidelity else {}
    broken = {k: v for k, v in violations.items() if v}
    return [
        _computed(
            REFERENCES_CHECK,
            measured.references_error,
            passed=not any(dangling.values()),
            metadata={"dangling_by_column": dangling, "parents": written.parent_rows},
            description="every reference resolves to a row of its parent in the destination"
            if not any(dangling.values())
            else f"{table}: dangling references (no parent row in the destination): {dangling}",
        ),
        CheckOutcome(
            ROW_COUNT_CHECK,
            passed=written.rows == written.expected,
            metadata={"rows": written.rows, "expected": written.expected},
        ),
        _computed(
            RULES_CHECK,
            measured.rules_error,
            passed=not broken,
            metadata={"violations": violations},
            description="every enabled rule holds"
            if not broken
            else f"{table}: rule violations: {broken}",
        ),
    ]


def fidelity_outcome(
    fidelity: TableFidelity | None, thresholds: FidelityThresholds
) -> CheckOutcome:
    """The median column score and children-per-parent shape against project.yaml's
    thresholds (a warning, not a gate)."""
    low_shape = [
        r.column
        for r in (fidelity.references if fidelity else [])
        if r.cardinality_shape_similarity is not None
        and r.cardinality_shape_similarity < thresholds.min_cardinality_shape_similarity
    ]
    median = fidelity.median_score if fidelity else None
    ok = (median is None or median >= thresholds.min_median_column_score) and not low_shape
    scored = f"median column score {median}" if median is not None else None
    return CheckOutcome(
        FIDELITY_CHECK,
        passed=ok,
        warning_only=True,
        metadata={
            "median_column_score": median if median is not None else "n/a",
            "low_cardinality_shape": low_shape or ["none"],
        },
        description=(scored or "no column with values to score")
        + f" (threshold {thresholds.min_median_column_score})"
        + (f"; children per parent off in {low_shape}" if low_shape else ""),
    )


def privacy_outcomes(report: PrivacyReport) -> list[CheckOutcome]:
    out = []
    for name in PRIVACY_CHECKS:
        passed, why = report.verdict(name)
        out.append(
            CheckOutcome(
                name,
                passed=passed,
                description=f"{report.table}: {why}",
                metadata={"table": report.table, "reason": why},
            )
        )
    return out


def table_outcomes(
    written: WrittenTable,
    measured: WrittenTableChecks,
    thresholds: FidelityThresholds,
    privacy: PrivacyReport,
) -> list[CheckOutcome]:
    """Every check of a written table, in the order the UI lists them."""
    return [
        *written_table_outcomes(written, measured),
        fidelity_outcome(measured.fidelity, thresholds),
        *privacy_outcomes(privacy),
    ]


def register_outcomes(outcomes: list[CheckOutcome]) -> dict[str, dict]:
    """What the register keeps of each check, for the bundle's gate."""
    return {
        o.name: {
            "passed": bool(o.passed),
            "blocking": o.blocking,
            "reason": (o.description or "")[:500],
        }
        for o in outcomes
    }
