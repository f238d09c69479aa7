"""The privacy report: the generated rows measured against the source, inside the trusted
environment where the source is readable. Only rates and aggregates leave it.

Every figure is judged against chance. Beside the synthetic table's figure stand three more:
what a real row left out of the source scores (each source row in turn is measured against the
others exactly as a synthetic row is measured against the source), what the synthetic table's
own columns score when recombined at random (each drawn on its own from the synthetic rows),
and what a copy of the source would score. Chance is the larger of the first two: neither
involves copying anyone. The verdict reads the excess ``(figure - chance) / (copy - chance)``:
0 is chance, 1 a copy, whatever the table's entropy. A low-entropy table where most rows have
an identical twin has a high chance, so an honest generator passes; a copy of it still scores
1. A generator that writes the centre of a tiny table (its median year, its common gender)
matches real rows far more often than a real row left out does, without copying anyone: its
columns recombined score as much. Where a copy would score no more than chance (one informative
column whose every value many rows share), nothing can be told apart and the check passes "at
chance". A table fails when the excess is above its threshold with 99% confidence (the
figure's lower Wilson bound over the synthetic rows measured), so a small table's noise does
not fail an honest generator.

A real row left out is taken among the source rows an honest generator could write: rows whose
values in columns with a finite list of possible values (listed categories, stand-ins,
constants) are among that list. A value seen fewer than k times is never released, so a real
row holding one is not what a generator is compared with; such rows still count for a copy.
Leaving one row out (rather than splitting the source in halves) keeps the reference the size
of the source the synthetic rows are measured against: in sparse data, matches by chance grow
with the reference, and a half-size reference would understate chance.

Per synthetic table:

exact matches        share of synthetic rows equal to some source row on every informative
                     column (those generated from released statistics: not keys, constants,
                     NULLs or random strings), by a hash join in Polars. A real row left out:
                     the share of source rows with an identical twin among the others. Columns
                     recombined: the sum over the source's distinct rows of the product of their
                     values' shares in the synthetic columns. Copy: 1.
unique matches       share of synthetic rows that match a source row which is unique on its
                     quasi-identifiers (person: year of birth, gender, race, ethnicity; an event
                     table: its concept and its date), i.e. rows an attacker could single out.
                     A real row left out: the share of source rows matching a row unique among
                     the others (their combination occurs exactly twice). Columns recombined: as
                     above, over the unique rows. Copy: the share of source rows unique on the
                     quasi-identifiers.
DCR share            distance to closest record: for a sample of synthetic rows and a sample of
                     source rows, the distance (Gower: numbers and dates by range, categories by
                     equality, averaged over the columns) to the nearest row of a reference
                     sample of the source, a source row's own entry left out; a row with an
                     identical row anywhere in the source (itself left out) is at distance 0.
                     The share is the chance that a synthetic row lies closer than the left-out
                     real row does (ties count half). A real row left out: 0.5. Columns
                     recombined: the same share for the synthetic sample with its columns
                     shuffled apart (fixed seed). Copy: 1 - t/2, where t is the share of
                     left-out rows at distance 0.
rare categories      values seen fewer than k times in the source that appear in a column whose
                     values come from the config (common values, stand-ins, constants). Must be 0.
attacks              singling-out, linkability and attribute-inference risk, and a membership-
                     inference AUC, against a held-out control half of the source (attacks.py).

Every figure shown (UI metadata, check descriptions, privacy.md) is rounded like a released
count: its count is rounded with the disclosure rule and divided by the released size, and it is
printed no finer than rounding / size, so no figure times a row count gives back a source count.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from pydantic import BaseModel, Field
from sqlalchemy.engine import Engine

from . import DISCLAIMER
from .bundle import table_row_count
from .config import PrivacyThresholds, TableConfig, atomic_write_text
from .database import qualified, quote, redact
from .disclosure import DisclosurePolicy, release_count
from .generators import CATALOGUE
from .schema import list_tables
from .write import ColumnDef, stream_select

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
    return f"{what} {_against(m, r.policy)}, threshold {t}"


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
        f"{_about(s['targets'], policy)} targets per side, {_about(s['reference'], policy)} "
        f"rows per attacker, predicates from {_about(s['predicates_from'], policy)} / "
        f"{_about(s['control_predicates_from'], policy)} rows"
    )


def _against(m: Measure, policy: DisclosurePolicy) -> str:
    s = shown(m, policy)
    return (
        f"{s['figure']}; chance {s['chance']} (a real row left out of the source "
        f"{s['fresh_row']}, the synthetic columns recombined at random {s['recombined']}); "
        f"a copy {s['copy']}; excess over chance {s['excess']}"
    )


# ---------------------------------------------------------------------------------------------
# Computing


def informative_columns(cfg: TableConfig) -> list[str]:
    return [n for n, c in cfg.columns.items() if c.generator in INFORMATIVE]


def quasi_identifiers(cfg: TableConfig, thresholds: PrivacyThresholds) -> list[str]:
    """The columns an attacker would link on: configured, or the OMOP defaults."""
    names = list(cfg.columns)
    if cfg.table in thresholds.quasi_identifiers:
        return [c for c in thresholds.quasi_identifiers[cfg.table] if c in names]
    if cfg.table == "person":
        return [c for c in PERSON_QUASI_IDENTIFIERS if c in names]
    prefix = cfg.table.split("_")[0]
    concept = f"{prefix}_concept_id" if f"{prefix}_concept_id" in names else None
    if concept is None:
        concept = next(
            (
                n
                for n in names
                if n.endswith("_concept_id")
                and not n.endswith(("_type_concept_id", "_source_concept_id"))
            ),
            None,
        )
    date = next(
        (c for c in (f"{prefix}_start_date", f"{prefix}_date") if c in names),
        None,
    ) or next((n for n in names if n.endswith("_date") and "end" not in n), None)
    return [c for c in (concept, date) if c] if concept and date else []


def writable(frame: pl.DataFrame, cfg: TableConfig, columns: list[str]) -> pl.Series:
    """Which rows an honest generator could write on these columns: in every column whose
    generator writes a finite list of values (listed categories, stand-ins, constants), the row
    holds one of them, or NULL where the column is generated with NULLs."""
    mask = pl.Series(np.ones(frame.height, dtype=bool))
    for c in columns:
        col = cfg.columns[c]
        gen = CATALOGUE.get(col.generator or "")
        if gen is None:
            continue
        values = gen.possible_values(col.stats, gen.Params.model_validate(col.params))
        if values is None:
            continue
        s = frame[c]
        allowed = s.is_in(
            pl.Series([v for v in values if v is not None], dtype=s.dtype, strict=False).implode()
        )
        nulls = (
            col.generator == "always_null"
            or (col.stats is not None and col.stats.null_fraction > 0)
            or col.params.get("other") == "null"
            or None in values
        )
        mask = mask & (allowed.fill_null(False) | (s.is_null() if nulls else False))
    return mask


def _read(
    engine: Engine, schema: str | None, table: str, cfg: TableConfig, columns: list[str]
) -> pl.DataFrame:
    """The columns of a table, in an order that depends on the values only (so samples drawn
    from it are the same whatever order the database returns the rows in)."""
    defs = [ColumnDef(c, cfg.columns[c].type) for c in columns]
    sql = f"SELECT {', '.join(quote(engine, c) for c in columns)} FROM {qualified(engine, schema, table)}"
    frames = list(stream_select(engine, sql, defs, 200_000))
    if not frames:
        return pl.DataFrame({d.name: pl.Series([], dtype=_dtype(d.logical_type)) for d in defs})
    return pl.concat(frames).sort(columns, nulls_last=True, maintain_order=True)


def _dtype(logical: str) -> pl.DataType:
    from .generators import POLARS_TYPES

    return POLARS_TYPES[logical]


def _is_categorical(cfg: TableConfig, column: str) -> bool:
    col = cfg.columns[column]
    return (
        col.type in ("string", "boolean")
        or column.endswith("_concept_id")
        or col.generator == "conditional_choice"
    )


def _features(
    frame: pl.DataFrame, cfg: TableConfig, columns: list[str], codes: dict[str, dict]
) -> tuple[np.ndarray, np.ndarray]:
    """(numeric matrix with NaN for NULL, categorical matrix with -1 for NULL)."""
    nums, cats = [], []
    for c in columns:
        s = frame[c]
        if _is_categorical(cfg, c):
            mapping = codes.setdefault(c, {})
            for v in s.drop_nulls().unique(maintain_order=True).to_list():  # first seen first
                mapping.setdefault(v, len(mapping))
            coded = s.replace_strict(
                list(mapping), list(mapping.values()), default=-1, return_dtype=pl.Int64
            )
            cats.append(coded.fill_null(-1).to_numpy())
        else:
            if s.dtype == pl.Date:
                s = s.cast(pl.Int32)
            elif isinstance(s.dtype, pl.Datetime):
                s = s.cast(pl.Int64) / 86_400_000_000
            nums.append(s.cast(pl.Float64).fill_null(float("nan")).to_numpy())
    n = frame.height
    num = np.column_stack(nums) if nums else np.zeros((n, 0))
    cat = np.column_stack(cats) if cats else np.zeros((n, 0), dtype=np.int64)
    return num, cat


def _nearest(
    q_num: np.ndarray,
    q_cat: np.ndarray,
    r_num: np.ndarray,
    r_cat: np.ndarray,
    scale: np.ndarray,
    left_out: np.ndarray | None = None,
) -> np.ndarray:
    """Gower distance from each query row to its nearest reference row; ``left_out[i]`` is the
    position of query row i's own entry in the reference (-1: none), which is skipped."""
    width = q_num.shape[1] + q_cat.shape[1]
    out = np.empty(len(q_num))
    step = max(1, 2_000_000 // max(1, len(r_num)))
    for i in range(0, len(q_num), step):
        a_num, a_cat = q_num[i : i + step], q_cat[i : i + step]
        total = np.zeros((len(a_num), len(r_num)))
        for j in range(q_num.shape[1]):
            x, y = a_num[:, j][:, None], r_num[:, j][None, :]
            d = np.minimum(1.0, np.abs(x - y) / scale[j])
            both = np.isnan(x) & np.isnan(y)
            d = np.where(both, 0.0, np.where(np.isnan(d), 1.0, d))
            total += d
        for j in range(q_cat.shape[1]):
            total += a_cat[:, j][:, None] != r_cat[:, j][None, :]
        if left_out is not None:
            own = left_out[i : i + step]
            rows = np.nonzero(own >= 0)[0]
            total[rows, own[rows]] = np.inf
        out[i : i + step] = total.min(axis=1) / max(1, width)
    return out


def _dcr(
    source: pl.DataFrame,
    synthetic: pl.DataFrame,
    cfg: TableConfig,
    columns: list[str],
    thresholds: PrivacyThresholds,
    k: int,
    source_twin: np.ndarray,
    source_writable: np.ndarray,
    synthetic_match: np.ndarray,
) -> tuple[Measure, dict[str, int]]:
    """The DCR share against a real row left out of the source, with chance (0.5, or the share
    of the synthetic sample with its columns shuffled apart) and what a copy scores. A row with
    an identical row in the source is at distance 0; other rows are measured against a
    reference sample of the source."""
    n = source.height
    candidates = np.nonzero(source_writable)[0]
    if not columns or n < 4 * k or synthetic.height < k or len(candidates) < k:
        return Measure(note="too few rows for a distance-to-closest-record comparison"), {}
    rng = np.random.default_rng(SPLIT_SEED)
    reference_idx = np.sort(rng.permutation(n)[: thresholds.dcr_reference_rows])
    left_out_idx = np.sort(rng.permutation(candidates)[: thresholds.dcr_sample_rows])
    synth_idx = np.sort(rng.permutation(synthetic.height)[: thresholds.dcr_sample_rows])
    position = np.full(n, -1)
    position[reference_idx] = np.arange(len(reference_idx))
    reference, left_out = source[reference_idx], source[left_out_idx]
    sample = synthetic[synth_idx]
    shuffled = sample.select(columns).with_columns(
        [sample[c].gather(rng.permutation(sample.height)) for c in columns]
    )
    codes: dict[str, dict] = {}
    r_num, r_cat = _features(reference, cfg, columns, codes)
    if r_num.shape[1]:
        lo = np.nanpercentile(r_num, 1, axis=0)
        hi = np.nanpercentile(r_num, 99, axis=0)
        scale = np.where(np.isfinite(hi - lo) & (hi - lo > 0), hi - lo, 1.0)
    else:
        scale = np.ones(0)

    def nearest(frame: pl.DataFrame, left_out_at: np.ndarray | None = None) -> np.ndarray:
        num, cat = _features(frame, cfg, columns, codes)
        return _nearest(num, cat, r_num, r_cat, scale, left_out_at)

    d_real = nearest(left_out, position[left_out_idx])
    d_real[source_twin[left_out_idx]] = 0.0
    held = np.sort(d_real)

    def closer(d: np.ndarray) -> Rate:
        """Per row, the share of left-out real rows it is closer than, ties counting half."""
        above = np.searchsorted(held, d, side="right")
        ties = above - np.searchsorted(held, d, side="left")
        return Rate(count=float(((len(held) - above + 0.5 * ties) / len(held)).sum()), of=len(d))

    d_synth = nearest(sample)
    d_synth[synthetic_match[synth_idx]] = 0.0
    d_shuffled = nearest(shuffled)
    d_shuffled[_matches(shuffled, source, columns).to_numpy()] = 0.0
    measure = against_chance(
        closer(d_synth),
        Rate(count=1, of=2, fixed=True),
        closer(d_shuffled),
        Rate(count=len(held) - 0.5 * int((d_real == 0).sum()), of=len(held)),
    )
    samples = {"synthetic": len(sample), "held_out": len(held), "reference": len(reference)}
    return measure, samples


def _rare_leaks(
    source: pl.DataFrame, synthetic: pl.DataFrame, cfg: TableConfig, columns: list[str], k: int
) -> dict[str, int]:
    out = {}
    for c in columns:
        col = cfg.columns[c]
        counts = source[c].drop_nulls().value_counts()
        rare = counts.filter(pl.col("count") < k)[c]
        if c.endswith("_concept_id"):
            rare = rare.filter(rare != PLACEHOLDER_CONCEPT)
        if rare.len() == 0:
            continue
        produced = synthetic[c].drop_nulls().unique()
        leaked = produced.filter(produced.is_in(rare.implode()))
        if col.generator == "weighted_choice" and col.params.get("other") == "quantiles":
            # numbers drawn through the quantiles may land anywhere in the coded range; only the
            # listed values (and a stand-in) travel through the config
            channel = [v.value for v in (col.stats.values or [])] if col.stats else []
            if col.params.get("other_value") is not None:
                channel.append(col.params["other_value"])
            leaked = leaked.filter(leaked.is_in(pl.Series(channel, dtype=leaked.dtype).implode()))
        if leaked.len():
            out[c] = leaked.len()
    return out


def _group_sizes(source: pl.DataFrame, columns: list[str]) -> pl.Series:
    """Per source row, how many source rows (itself included) hold its values on the columns."""
    return source.select(columns).join(
        source.group_by(columns).len(name="_rows"),
        on=columns,
        how="left",
        nulls_equal=True,
        maintain_order="left",
    )["_rows"]


def _matches(synthetic: pl.DataFrame, rows: pl.DataFrame, columns: list[str]) -> pl.Series:
    """Per synthetic row, whether it equals one of ``rows`` on the columns (NULL equals NULL)."""
    return (
        synthetic.select(columns)
        .join(
            rows.select(columns).unique().with_columns(pl.lit(True).alias("_hit")),
            on=columns,
            how="left",
            nulls_equal=True,
            maintain_order="left",
        )["_hit"]
        .is_not_null()
    )


def _recombined(synthetic: pl.DataFrame, rows: pl.DataFrame, columns: list[str]) -> Rate:
    """How often the synthetic columns, each drawn on its own from the synthetic rows, would
    form one of ``rows`` (NULL a value like any other): the sum over the distinct rows of the
    product of their values' shares in the synthetic columns. As a rate over the synthetic rows."""
    frame = rows.select(columns).unique(maintain_order=True)  # an order the data fix
    shares = []
    for c in columns:
        share = f"_share_{len(shares)}"
        counts = synthetic.group_by(c).len(name=share)
        frame = frame.join(counts, on=c, how="left", nulls_equal=True, maintain_order="left")
        shares.append(share)
    counts = frame.select(shares).fill_null(0).to_numpy().astype(float)
    chance = float((counts / synthetic.height).prod(axis=1).sum()) if len(counts) else 0.0
    return Rate(count=chance * synthetic.height, of=synthetic.height)


def assess_table(
    source: Engine,
    source_schema: str | None,
    destination: Engine,
    destination_schema: str | None,
    cfg: TableConfig,
    policy: DisclosurePolicy,
    thresholds: PrivacyThresholds,
) -> PrivacyReport:
    """The privacy report of one generated table against its source table (``thresholds`` are
    the project's; the table's own in ``privacy.tables`` apply on top)."""
    thresholds = thresholds.for_table(cfg.table)
    k = policy.k
    report = PrivacyReport(
        table=cfg.table,
        kind=cfg.kind,
        assessed=False,
        attacks=Attacks(note="not assessed"),
        thresholds=thresholds,
        config_notes=thresholds.deprecated,
        k=k,
        rounding=policy.rounding,
        config_fingerprint=cfg.fingerprint(),
    )
    if cfg.kind != "synthetic":
        report.note = (
            "vocabulary: rows for the concepts the synthetic tables can contain (vocabulary_rows): not assessed"
            if cfg.kind == "vocabulary"
            else "not generated"
        )
        return report
    names = list_tables(source, source_schema)
    if cfg.table not in names:
        report.note = "no such table in the source: nothing to compare with"
        return report
    source_columns = {
        c.lower(): c for c in _source_columns(source, source_schema, names[cfg.table])
    }
    informative = [c for c in informative_columns(cfg) if c.lower() in source_columns]
    qi = [c for c in quasi_identifiers(cfg, thresholds) if c.lower() in source_columns]
    channels = [
        c
        for c, col in cfg.columns.items()
        if col.generator in VALUE_CHANNELS and c.lower() in source_columns
    ]
    wanted = list(dict.fromkeys(informative + qi + channels))
    report.assessed = True
    report.columns, report.quasi_identifiers = informative, qi
    report.synthetic_rows = table_row_count(destination, destination_schema, cfg.table)
    if report.synthetic_rows == 0:
        report.note = "the synthetic table is empty"
        return report
    if not wanted:
        report.note = "no column generated from released statistics"
        return report
    src = _read(source, source_schema, names[cfg.table], cfg, wanted)
    syn = _read(destination, destination_schema, cfg.table, cfg, wanted)
    report.source_rows, report.synthetic_rows = src.height, syn.height
    if informative and src.height:
        match = _matches(syn, src, informative)
        twin = _group_sizes(src, informative) >= 2
        ok = writable(src, cfg, informative)
        report.exact_matches = against_chance(
            Rate(count=int(match.sum()), of=syn.height),
            Rate(count=int((twin & ok).sum()), of=int(ok.sum())),
            _recombined(syn, src, informative),
            Rate(count=1, of=1, fixed=True),
        )
        report.dcr, report.dcr_samples = _dcr(
            src,
            syn,
            cfg,
            informative,
            thresholds,
            k,
            twin.to_numpy(),
            ok.to_numpy(),
            match.to_numpy(),
        )
        from .attacks import run_attacks  # attacks.py builds on this module's figures

        report.attacks = run_attacks(src, syn, cfg, informative, qi, ok.to_numpy(), thresholds, k)
    else:
        report.exact_matches = Measure(note="no informative columns to compare")
        report.dcr = Measure(note="no informative columns to compare")
        report.attacks = Attacks(note="no informative columns to compare")
    if qi and src.height:
        sizes = _group_sizes(src, qi)
        unique = sizes == 1
        ok = writable(src, cfg, qi)
        report.unique_matches = against_chance(
            Rate(count=int(_matches(syn, src.filter(unique), qi).sum()), of=syn.height),
            Rate(count=int(((sizes == 2) & ok).sum()), of=int(ok.sum())),
            _recombined(syn, src.filter(unique), qi),
            Rate(count=int(unique.sum()), of=src.height),
        )
    else:
        report.unique_matches = Measure(note="no quasi-identifiers to compare")
    leaks = _rare_leaks(src, syn, cfg, channels, k)
    report.rare_category_leaks = sum(leaks.values())
    report.rare_leak_columns = sorted(leaks)
    _judge(report)
    return report


def _source_columns(engine: Engine, schema: str | None, table: str) -> list[str]:
    import sqlalchemy as sa

    return [c["name"] for c in sa.inspect(engine).get_columns(table, schema=schema)]


def _judge(r: PrivacyReport) -> None:
    for check, setting in EXCESS_SETTINGS.items():
        m, limit = r.measure(check), r.threshold(check)
        if m.excess_low is not None and m.excess_low > limit:
            on = ", ".join(r.quasi_identifiers if check == "privacy_unique_matches" else r.columns)
            r.failures[check] = (
                f"{CHECKS[check]} on {on} {_against(m, r.policy)}: above privacy.{setting} "
                f"{limit} with 99% confidence"
            )
    for check, setting in ATTACK_SETTINGS.items():
        a, limit = r.attacks.worst(check), r.threshold(check)
        if a is not None and a.risk_low is not None and a.risk_low > limit:
            what = "AUC" if check == "privacy_membership" else "risk"
            r.failures[check] = (
                f"{CHECKS[check]} {describe_attack(check, a, r.policy)}: the {what} is above "
                f"privacy.{setting} {limit} with 99% confidence"
            )
    if r.rare_category_leaks > r.thresholds.max_rare_category_leaks:
        r.failures["privacy_rare_categories"] = (
            f"{r.rare_category_leaks} values seen fewer than k times in the source appear in "
            f"{', '.join(r.rare_leak_columns)}: remove them from the config"
        )


# ---------------------------------------------------------------------------------------------
# Keeping reports between synthetic_table and csv_bundle (inside the trusted environment)


def destination_key(url: str, schema: str | None) -> str:
    """A short name for a destination (its URL without password, and schema)."""
    return hashlib.sha256(f"{redact(url)}|{schema or ''}".encode()).hexdigest()[:12]


def report_path(work_dir: Path, project: str, destination: str, table: str) -> Path:
    return Path(work_dir) / "privacy" / project / destination / f"{table}.json"


def save_report(path: Path, report: PrivacyReport) -> None:
    atomic_write_text(path, report.model_dump_json(indent=1) + "\n")


def load_report(path: Path) -> PrivacyReport | None:
    """A kept report; one written by an older version (other fields) counts as missing, so the
    table is measured again."""
    if not path.exists():
        return None
    try:
        return PrivacyReport.model_validate(json.loads(path.read_text(encoding="utf-8")))
    except ValueError:
        return None


def bundle_problems(
    reports: dict[str, PrivacyReport | None], register: dict[str, dict[str, Any]]
) -> list[str]:
    """Why tables may not go into a bundle: a failed, missing or out-of-date privacy report."""
    problems = []
    for table, report in sorted(reports.items()):
        entry = register.get(table, {})
        if report is None:
            problems.append(
                f"{table}: no privacy report; materialise synthetic_table[{table}] again"
            )
        elif (
            report.config_fingerprint != entry.get("config_fingerprint")
            or report.written_at != entry.get("written_at")
            or (report.assessed and report.synthetic_rows != int(entry.get("rows") or 0))
        ):
            problems.append(
                f"{table}: the privacy report is for another version of the table; "
                f"materialise synthetic_table[{table}] again"
            )
        elif not report.passed:
            problems.append(
                f"{table}: privacy checks failed: "
                + "; ".join(f"{c}: {why}" for c, why in report.failures.items())
            )
    return problems


# ---------------------------------------------------------------------------------------------
# The bundle's section

_SECTIONS = {
    "privacy_exact_matches": (
        "Exact matches",
        "Share of synthetic rows equal to some source row on every column generated from "
        "released statistics. A real row left out: the share of source rows with an identical "
        "twin among the others. A copy scores 1.",
    ),
    "privacy_unique_matches": (
        "Unique matches",
        "Share of synthetic rows matching a source row that is unique on its quasi-identifiers "
        "(person: year of birth, gender, race, ethnicity; events: concept and date). A real row "
        "left out: the share of source rows matching a row unique among the others. A copy "
        "scores the share of source rows that are unique.",
    ),
    "privacy_dcr": (
        "Distance to closest record",
        "Chance that a synthetic row is closer to the source (Gower distance to the nearest "
        "source row) than a real row left out of the source is, ties counting half. A real row "
        "left out scores 0.5; a copy 1 minus half the share of real rows with an identical twin.",
    ),
}


def _about(n: int, policy: DisclosurePolicy) -> str:
    r = release_count(n, policy)
    return f"about {r}" if r else f"fewer than {policy.k}"


def _verdict(r: PrivacyReport, check: str) -> str:
    if check in r.failures:
        return "FAIL"
    if check == "privacy_rare_categories":
        return "pass"
    m = r.measure(check)
    if m.note == AT_CHANCE:
        return "pass (at chance)"
    return "pass" if m.measured else "n/a"


def privacy_markdown(
    project: str, reports: list[PrivacyReport], created: str, policy: DisclosurePolicy
) -> str:
    """The bundle's privacy report: rates and aggregates only, every one rounded like a
    released count."""
    k = policy.k
    assessed = sorted(
        (r for r in reports if r.assessed and r.synthetic_rows), key=lambda x: x.table
    )
    lines = [
        DISCLAIMER,
        "",
        f"# Privacy report: project {project}",
        "",
        f"Computed {created} inside the trusted environment by comparing each synthetic",
        "table with its source table. Only rates appear here; no source value or count does:",
        f"every rate is a count rounded like every released count (k={k}, multiples of",
        f"{policy.rounding}) over the released size, printed no finer than that rounding allows.",
        "",
        "Each figure is set against chance and against what a copy of the source would score.",
        "Chance is the larger of two figures that involve no copying: a real row left out of the",
        "source (each source row a generator could write from the released statistics, measured",
        "against the others) and the synthetic table's own columns recombined at random. The",
        "excess over chance is (figure - chance) / (copy - chance): 0 is chance, 1 a copy. A",
        "table fails a check when its excess is above the threshold with 99% confidence; where",
        "a copy would score no more than chance, the check passes at chance.",
    ]
    notes = sorted({n for r in reports for n in r.config_notes})
    if notes:
        lines += ["", "Settings of an older project.yaml that no longer apply:", ""]
        lines += [f"- {n}" for n in notes]
    for check, (title, what) in _SECTIONS.items():
        lines += [
            "",
            f"## {title}",
            "",
            what,
            "",
            "| table | rows | figure | chance | a real row left out | synthetic columns "
            "recombined | copy | excess over chance | threshold | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in assessed:
            m = r.measure(check)
            if not m.measured:
                lines.append(f"| {r.table} | {r.synthetic_rows} | n/a | | | | | {m.note} | | n/a |")
                continue
            s = shown(m, r.policy)
            lines.append(
                f"| {r.table} | {r.synthetic_rows} | {s['figure']} | {s['chance']} "
                f"| {s['fresh_row']} | {s['recombined']} | {s['copy']} | {s['excess']} "
                f"| {r.threshold(check)} | {_verdict(r, check)} |"
            )
        if check == "privacy_dcr":
            lines += [
                "",
                "Samples (synthetic / real rows left out / reference): "
                + "; ".join(
                    f"{r.table} "
                    + " / ".join(
                        _about(r.dcr_samples[s], policy)
                        for s in ("synthetic", "held_out", "reference")
                    )
                    for r in assessed
                    if r.dcr_samples
                )
                + ".",
            ]
    lines += [
        "",
        "## Rare categories",
        "",
        f"Values seen fewer than k={k} times in the source that appear in the output.",
        "",
        "| table | values | threshold | verdict |",
        "|---|---|---|---|",
    ]
    for r in assessed:
        lines.append(
            f"| {r.table} | {r.rare_category_leaks} | {r.thresholds.max_rare_category_leaks} "
            f"| {_verdict(r, 'privacy_rare_categories')} |"
        )
    lines += [
        "",
        "## Attacks",
        "",
        "Singling-out, linkability and attribute-inference risk after Giomi et al. 2022",
        "(anonymeter), and a membership-inference test. The source is split by a fixed seed:",
        "targets from the source attacked with synthetic rows, against targets from a held-out",
        "control half attacked with as many real rows of the source (none of them a control",
        "target) in the synthetic rows' place. Risk = (training rate - control rate) / (1 -",
        "control rate): 0 when the synthetic rows tell no more about the people in the source than",
        "real rows of others tell about someone outside it, 1 when every attack succeeds.",
        "Membership: the AUC of telling source targets from control targets by the distance to",
        "their attacker's nearest row (0.5 is chance). A table fails when a risk or the AUC is",
        "above its threshold with 99% confidence. Inference shows its worst column.",
        "",
        "| table | attack | on | training targets | control targets | risk | threshold | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in assessed:
        if r.attacks.note:
            lines.append(f"| {r.table} | all | | | | {r.attacks.note} | | n/a |")
            continue
        for row in attack_rows(r):
            lines.append(f"| {r.table} | " + " | ".join(row) + " |")
    sampled = [r for r in assessed if r.attacks.samples]
    if sampled:
        lines += [
            "",
            "Samples: "
            + "; ".join(f"{r.table} {attack_samples(r, policy)}" for r in sampled)
            + ".",
        ]
    others = sorted(r.table for r in reports if r not in assessed)
    if others:
        lines += ["", f"Not assessed (empty, or nothing to compare): {', '.join(others)}."]
    lines += [
        "",
        "Vocabulary tables are public reference data, limited to the concepts the synthetic tables can "
        "contain unless a reviewer chose to copy a table whole, and not assessed.",
        "",
        DISCLAIMER,
        "",
    ]
    return "\n".join(lines)
