"""The privacy report's figures and verdicts: what a table's report holds, and how each figure is
shown (rounded like every released count). How the figures are measured is in privacy_measure.py.
"""

from __future__ import annotations

import math

from pydantic import BaseModel, Field

from .disclosure import DisclosurePolicy, about_count, release_count
from .thresholds import PrivacyThresholds

CHECKS = {
    "privacy_exact_matches": "exact-match rate",
    "privacy_unique_matches": "unique quasi-identifier match rate",
    "privacy_dcr": "distance-to-closest-record share",
    "privacy_rare_categories": "rare-category leakage",
    "privacy_singling_out": "singling-out risk",
    "privacy_linkability": "linkability risk",
    "privacy_inference": "attribute-inference risk",
    "privacy_membership": "membership-inference AUC",
}
# the check -> its threshold on the excess over chance in project.yaml's privacy block
EXCESS_SETTINGS = {
    "privacy_exact_matches": "max_exact_match_excess",
    "privacy_unique_matches": "max_unique_match_excess",
    "privacy_dcr": "max_dcr_excess",
}
# the attacks (attacks.py) -> their threshold on the risk (membership: on the AUC)
ATTACK_SETTINGS = {
    "privacy_singling_out": "max_singling_out_risk",
    "privacy_linkability": "max_linkability_risk",
    "privacy_inference": "max_inference_risk",
    "privacy_membership": "max_membership_auc",
}

# generators whose values come from released statistics: rows can be compared on them
INFORMATIVE = {
    "weighted_choice",
    "numeric_quantiles",
    "date_bins",
    "datetime_bins",
    "datetime_from_date",
    "date_offset",
    "date_part",
    "conditional_quantiles",
    "conditional_choice",
}
# generators whose values travel through the config: where a rare source value could reappear
VALUE_CHANNELS = {"weighted_choice", "conditional_choice", "constant"}
# OMOP's "No matching concept": a placeholder, not a category of the source
PLACEHOLDER_CONCEPT = 0
PERSON_QUASI_IDENTIFIERS = [
    "year_of_birth",
    "gender_concept_id",
    "race_concept_id",
    "ethnicity_concept_id",
]
SPLIT_SEED = 20_261_128  # fixed, so the report is the same for the same data
# one-sided 99%: a table fails only when its excess is above the threshold with this confidence
CONFIDENCE_Z = 2.326
AT_CHANCE = "at chance: a copy of the source would score no more than chance"


class Rate(BaseModel):
    """A share, count of ``of``; exact inside the trusted environment, rounded when shown."""

    count: float
    of: int
    fixed: bool = Field(False, description="A constant of the method, not measured on data.")

    @property
    def value(self) -> float:
        return self.count / self.of if self.of else 0.0


class Measure(BaseModel):
    """One privacy figure of a table, set against chance and against a copy of the source.

    Chance is the larger of two figures that involve no copying: a fresh real row's (each
    source row left out of the source in turn) and the synthetic table's own columns
    recombined at random (each column drawn on its own from the synthetic rows)."""

    figure: Rate | None = Field(None, description="The synthetic rows' figure.")
    fresh_row: Rate | None = Field(None, description="A real row left out of the source.")
    recombined: Rate | None = Field(
        None, description="The synthetic columns, each drawn on its own from the synthetic rows."
    )
    copied: Rate | None = Field(None, description="What a copy of the source would score.")
    excess: float | None = Field(None, description="(figure - chance) / (copy - chance).")
    excess_low: float | None = Field(
        None, description="The excess at the figure's lower 99% bound: what the verdict reads."
    )
    note: str = ""

    @property
    def measured(self) -> bool:
        return self.figure is not None

    @property
    def chance(self) -> Rate | None:
        parts = [r for r in (self.fresh_row, self.recombined) if r is not None]
        return max(parts, key=lambda r: r.value) if parts else None


def wilson_low(share: float, n: int, z: float = CONFIDENCE_Z) -> float:
    """Lower Wilson score bound of a share observed over n rows."""
    if n <= 0:
        return 0.0
    centre = share + z * z / (2 * n)
    spread = z * math.sqrt(max(0.0, share * (1 - share)) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def against_chance(figure: Rate, fresh_row: Rate, recombined: Rate, copied: Rate) -> Measure:
    """The figure's excess over chance as a share of a copy's, and its lower bound."""
    m = Measure(figure=figure, fresh_row=fresh_row, recombined=recombined, copied=copied)
    chance = m.chance.value  # type: ignore[union-attr]
    room = copied.value - chance
    if room <= 1e-9:
        m.note = AT_CHANCE
        return m
    m.excess = (figure.value - chance) / room
    m.excess_low = (wilson_low(figure.value, figure.of) - chance) / room
    return m


class AttackResult(BaseModel):
    """One attack (attacks.py): its success on targets from the source's training half and on
    targets from the held-out control half, and the risk. Membership: ``main`` is the AUC."""

    on: str = Field("", description="What was attacked: columns or predicates (names only).")
    main: Rate | None = Field(None, description="Success on training targets; membership: AUC.")
    control: Rate | None = Field(None, description="Success on control targets.")
    risk: float | None = Field(
        None, description="(main - control) / (1 - control); membership: the AUC."
    )
    risk_low: float | None = Field(
        None, description="Its lower bound at 99% confidence: what the verdict reads."
    )
    note: str = ""

    @property
    def measured(self) -> bool:
        return self.risk is not None


class Attacks(BaseModel):
    """The attacks on one table; a check reads its worst result."""

    singling_out: list[AttackResult] = Field(
        default_factory=list, description="Univariate and multivariate predicates."
    )
    linkability: AttackResult = Field(default_factory=AttackResult)
    inference: list[AttackResult] = Field(default_factory=list, description="One per column.")
    membership: AttackResult = Field(default_factory=AttackResult)
    samples: dict[str, int] = Field(
        default_factory=dict,
        description="targets per side, attacker's rows per side, rows of each half (exact).",
    )
    note: str = ""

    def results(self, check: str) -> list[AttackResult]:
        return {
            "privacy_singling_out": self.singling_out,
            "privacy_linkability": [self.linkability],
            "privacy_inference": self.inference,
            "privacy_membership": [self.membership],
        }[check]

    def worst(self, check: str) -> AttackResult | None:
        """The result the check reads: the highest lower bound, else the first unmeasured."""
        results = self.results(check)
        measured = [a for a in results if a.measured and a.risk_low is not None]
        if measured:
            return max(measured, key=lambda a: (a.risk_low, a.risk))
        return results[0] if results else None


class PrivacyReport(BaseModel):
    """One table's privacy figures (rates and aggregates only) and the checks' verdicts."""

    table: str
    kind: str
    assessed: bool
    note: str = ""
    synthetic_rows: int = 0
    source_rows: int = Field(0, description="Exact; stays in the trusted environment.")
    columns: list[str] = Field(default_factory=list, description="Informative columns compared.")
    quasi_identifiers: list[str] = Field(default_factory=list)
    exact_matches: Measure = Field(default_factory=Measure)
    unique_matches: Measure = Field(default_factory=Measure)
    dcr: Measure = Field(default_factory=Measure)
    dcr_samples: dict[str, int] = Field(default_factory=dict)
    rare_category_leaks: int = 0
    rare_leak_columns: list[str] = Field(default_factory=list, description="Names only.")
    attacks: Attacks = Field(
        description="Required: a report kept before the attacks existed is measured again."
    )
    thresholds: PrivacyThresholds = Field(default_factory=PrivacyThresholds)
    config_notes: list[str] = Field(
        default_factory=list, description="Settings of an older project.yaml that no longer apply."
    )
    k: int = Field(10, description="The disclosure rule figures are shown under: k ...")
    rounding: int = Field(5, description="... and the rounding of released counts.")
    failures: dict[str, str] = Field(default_factory=dict, description="check -> why it failed")
    config_fingerprint: str | None = None
    written_at: str | None = Field(None, description="The destination table's register stamp.")

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def policy(self) -> DisclosurePolicy:
        return DisclosurePolicy(min_cell_count=self.k, rounding=self.rounding)

    def measure(self, check: str) -> Measure:
        return {
            "privacy_exact_matches": self.exact_matches,
            "privacy_unique_matches": self.unique_matches,
            "privacy_dcr": self.dcr,
        }[check]

    def threshold(self, check: str) -> float:
        if check == "privacy_rare_categories":
            return self.thresholds.max_rare_category_leaks
        if check in ATTACK_SETTINGS:
            return getattr(self.thresholds, ATTACK_SETTINGS[check])
        return getattr(self.thresholds, EXCESS_SETTINGS[check])

    def verdict(self, check: str) -> tuple[bool, str]:
        if check in self.failures:
            return False, self.failures[check]
        if not self.assessed:
            return True, self.note
        return True, describe(check, self)


# ---------------------------------------------------------------------------------------------
# Showing figures: rounded like every released count


def rate_step(n: int, rounding: int) -> float:
    """The step a share over n released rows is shown at: the finest of 1 and 2 times a power
    of ten (never finer than 0.0001) that is no finer than rounding / n. Each such step is a
    whole multiple of every finer one, so shares over fewer rows sit on the grid of more."""
    floor = rounding / n
    for exponent in range(-4, 1):
        for mantissa in (1, 2):
            step = mantissa * 10.0**exponent
            if step >= floor * (1 - 1e-9):
                return step
    return 1.0


def released_rate(rate: Rate | None, policy: DisclosurePolicy) -> tuple[float | None, str]:
    """A share as it may be shown: its count rounded by the disclosure rule over the released
    size, on a grid no finer than rounding / size. (value, or None when withheld; text)."""
    if rate is None:
        return None, "n/a"
    if rate.fixed:
        return rate.value, f"{rate.value:g}"
    count = int(round(rate.count))
    if count == 0:
        return 0.0, "0"
    n = release_count(rate.of, policy)
    if not n:
        return None, f"n/a (fewer than k={policy.k} rows)"
    step = rate_step(n, policy.rounding)
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    released = release_count(count, policy)
    if released is None:  # fewer than k: say only that
        return None, f"<{math.ceil(policy.k / n / step - 1e-9) * step:.{decimals}f}"
    value = round(round(min(1.0, released / n) / step) * step, decimals)
    return value, f"{value:.{decimals}f}"


def shown_excess(m: Measure, policy: DisclosurePolicy) -> str:
    """The excess as shown: from the rounded figures, at two decimals; 'none' at or below chance."""
    if m.note == AT_CHANCE:
        return "at chance"
    if m.excess is None:
        return "n/a"
    if m.excess <= 0:
        return "none (below chance)"
    f, _ = released_rate(m.figure, policy)
    b, _ = released_rate(m.chance, policy)
    c, _ = released_rate(m.copied, policy)
    if f is None or b is None or c is None or c <= b:
        return f"n/a (counts below k={policy.k})"
    return f"{max(0.0, (f - b) / (c - b)):.2f}"


def shown(m: Measure, policy: DisclosurePolicy) -> dict[str, str]:
    """figure, chance, copy and excess of a measure as they may be shown."""
    return {
        "figure": released_rate(m.figure, policy)[1],
        "chance": released_rate(m.chance, policy)[1],
        "fresh_row": released_rate(m.fresh_row, policy)[1],
        "recombined": released_rate(m.recombined, policy)[1],
        "copy": released_rate(m.copied, policy)[1],
        "excess": shown_excess(m, policy),
    }


def describe(check: str, r: PrivacyReport) -> str:
    """One line for a check: figure, chance, excess, threshold (all rounded)."""
    t = r.threshold(check)
    if check == "privacy_rare_categories":
        return f"{r.rare_category_leaks} rare source values in the output (at most {t})"
    if check in ATTACK_SETTINGS:
        a = r.attacks.worst(check)
        if a is None or not a.measured:
            return f"{CHECKS[check]}: " + ((a.note if a else "") or r.attacks.note or "not run")
        return f"{CHECKS[check]} {describe_attack(check, a, r.policy)}, threshold {t}"
    m = r.measure(check)
    what = CHECKS[check]
    if not m.measured:
        return m.note or f"{what}: nothing to compare"
    return f"{what} {against_text(m, r.policy)}, threshold {t}"


def shown_attack(check: str, a: AttackResult, policy: DisclosurePolicy) -> dict[str, str]:
    """An attack's rates and risk as they may be shown: the rates rounded like released counts,
    the risk computed from the rounded rates, at two decimals."""
    main = released_rate(a.main, policy)
    control = released_rate(a.control, policy)
    if check == "privacy_membership":
        return {"main": main[1], "control": control[1], "risk": f"AUC {main[1]}"}
    return {
        "main": main[1],
        "control": control[1],
        "risk": _shown_risk(a, main[0], control[0], policy),
    }


def _shown_risk(a: AttackResult, f: float | None, c: float | None, policy: DisclosurePolicy) -> str:
    if a.risk is None or a.main is None:
        return "n/a"
    if a.risk <= 0:
        return "none (the control does as well)"
    if f is None:  # the training rate is below k / n: the risk is below what that rate gives
        n = release_count(a.main.of, policy) or a.main.of
        top = (policy.k / n - (c or 0.0)) / (1 - (c or 0.0))
        return f"<{top:.2f}" if top > 0 else "none (the control does as well)"
    if c is None:  # the control rate is below k / n: the risk is at most the training rate
        return f"at most {f:.2f}"
    if c >= 1:
        return "n/a"
    return f"{max(0.0, (f - c) / (1 - c)):.2f}"


def describe_attack(check: str, a: AttackResult, policy: DisclosurePolicy) -> str:
    s = shown_attack(check, a, policy)
    if check == "privacy_membership":
        return f"{s['main']} (0.5 is chance)"
    return (
        f"on {a.on}: training targets {s['main']}, control targets {s['control']}; risk {s['risk']}"
    )


ATTACK_NAMES = {
    "privacy_singling_out": "singling out",
    "privacy_linkability": "linkability",
    "privacy_inference": "attribute inference",
    "privacy_membership": "membership inference",
}


# the columns of attack_rows' rows
ATTACK_COLUMNS = [
    "attack",
    "on",
    "training targets",
    "control targets",
    "risk",
    "threshold",
    "verdict",
]


def attack_rows(r: PrivacyReport) -> list[list[str]]:
    """One row per attack shown (inference: its worst column): attack, on, training targets,
    control targets, risk (membership: AUC), threshold, verdict; every figure rounded."""
    rows = []
    for check in ATTACK_SETTINGS:
        shown_results = r.attacks.results(check)
        if check == "privacy_inference":
            worst = r.attacks.worst(check)
            shown_results = [worst] if worst else []
        for a in shown_results:
            name = ATTACK_NAMES[check]
            if check == "privacy_inference" and len(r.attacks.inference) > 1:
                name += f" (worst of {len(r.attacks.inference)} columns)"
            if not a.measured:
                rows.append([name, a.on, "n/a", "", a.note or "n/a", "", "n/a"])
                continue
            s = shown_attack(check, a, r.policy)
            failed = a.risk_low is not None and a.risk_low > r.threshold(check)
            rows.append(
                [
                    name,
                    a.on,
                    s["main"],
                    s["control"],
                    s["risk"],
                    str(r.threshold(check)),
                    "FAIL" if failed else "pass",
                ]
            )
    return rows


def attack_samples(r: PrivacyReport, policy: DisclosurePolicy) -> str:
    """The attacks' sample sizes as rounded counts."""
    s = r.attacks.samples
    return (
        f"{about_count(s['targets'], policy)} targets per side, {about_count(s['reference'], policy)} "
        f"rows per attacker, predicates from {about_count(s['predicates_from'], policy)} / "
        f"{about_count(s['control_predicates_from'], policy)} rows"
    )


def against_text(m: Measure, policy: DisclosurePolicy) -> str:
    s = shown(m, policy)
    return (
        f"{s['figure']}; chance {s['chance']} (a real row left out of the source "
        f"{s['fresh_row']}, the synthetic columns recombined at random {s['recombined']}); "
        f"a copy {s['copy']}; excess over chance {s['excess']}"
    )
