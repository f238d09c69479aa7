"""The privacy report: the generated rows measured against the source, inside the trusted
environment where the source is readable. Only rates and aggregates leave it.

Per synthetic table:

exact matches        share of synthetic rows equal to some source row on every informative
                     column (those generated from released statistics: not keys, constants,
                     NULLs or random strings), by a hash join in Polars.
unique matches       share of synthetic rows that match a source row which is unique on its
                     quasi-identifiers (person: year of birth, gender, race, ethnicity; an event
                     table: its concept and its date), i.e. rows an attacker could single out.
                     In sparse data many such matches happen by chance, so it is compared with
                     the share a fresh real row shows: leaving one source row out, how often does
                     it match a row unique among the others (its combination occurs exactly
                     twice)? The check allows a small excess over that baseline.
DCR share            distance to closest record: the source is split at random into a reference
                     half and a held-out half; for a sample of synthetic rows and a sample of
                     held-out rows, the distance (Gower: numbers and dates by range, categories by
                     equality, averaged over the columns) to the nearest reference row. The share
                     is the chance that a synthetic row lies closer to the source than a held-out
                     patient does (ties count half). About 0.5 means the synthetic rows are no
                     closer to real records than a fresh sample of patients would be; copies of
                     source rows push it towards 1.
rare categories      values seen fewer than k times in the source that appear in a column whose
                     values come from the config (common values, stand-ins, constants). Must be 0.
"""

from __future__ import annotations

import hashlib
import json
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
from .schema import list_tables
from .write import ColumnDef, stream_select

CHECKS = {
    "privacy_exact_matches": "exact-match rate",
    "privacy_unique_matches": "unique quasi-identifier match rate",
    "privacy_dcr": "distance-to-closest-record share",
    "privacy_rare_categories": "rare-category leakage",
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


class PrivacyReport(BaseModel):
    """One table's privacy figures (rates and aggregates only) and the checks' verdicts."""

    table: str
    kind: str
    assessed: bool
    note: str = ""
    synthetic_rows: int = 0
    source_rows: int = Field(0, description="Exact; stays in the trusted environment.")
    columns: list[str] = Field(default_factory=list, description="Informative columns compared.")
    exact_match_rate: float | None = None
    exact_match_baseline: float | None = Field(
        None, description="Share of source rows with an identical twin among the others."
    )
    quasi_identifiers: list[str] = Field(default_factory=list)
    unique_match_rate: float | None = None
    unique_match_baseline: float | None = Field(
        None,
        description="Share of source rows matching a row unique among the others (leave one out).",
    )
    source_unique_share: float | None = Field(
        None, description="Share of source rows unique on the quasi-identifiers."
    )
    dcr_closer_share: float | None = None
    dcr_samples: dict[str, int] = Field(default_factory=dict)
    dcr_median: dict[str, float] = Field(default_factory=dict)
    rare_category_leaks: int = 0
    rare_leak_columns: list[str] = Field(default_factory=list, description="Names only.")
    thresholds: PrivacyThresholds = Field(default_factory=PrivacyThresholds)
    failures: dict[str, str] = Field(default_factory=dict, description="check -> why it failed")
    config_fingerprint: str | None = None
    written_at: str | None = Field(None, description="The destination table's register stamp.")

    @property
    def passed(self) -> bool:
        return not self.failures

    def verdict(self, check: str) -> tuple[bool, str]:
        if check in self.failures:
            return False, self.failures[check]
        if not self.assessed:
            return True, self.note
        return True, _describe(check, self)


def _describe(check: str, r: PrivacyReport) -> str:
    t = r.thresholds
    if check == "privacy_exact_matches":
        if r.exact_match_rate is None:
            return "no informative columns to compare"
        return f"exact-match rate {r.exact_match_rate:.4f} (at most {t.max_exact_match_rate})"
    if check == "privacy_unique_matches":
        if r.unique_match_rate is None:
            return "no quasi-identifiers to compare"
        return (
            f"unique quasi-identifier match rate {r.unique_match_rate:.4f} (a fresh real row: "
            f"{r.unique_match_baseline:.4f}; at most {t.max_unique_match_excess} above it)"
        )
    if check == "privacy_dcr":
        if r.dcr_closer_share is None:
            return "too few rows for a distance-to-closest-record comparison"
        return f"DCR share {r.dcr_closer_share:.3f} (at most {t.max_dcr_closer_share}; 0.5 is a fresh sample)"
    return f"{r.rare_category_leaks} rare source values in the output (at most {t.max_rare_category_leaks})"


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


def _read(
    engine: Engine, schema: str | None, table: str, cfg: TableConfig, columns: list[str]
) -> pl.DataFrame:
    defs = [ColumnDef(c, cfg.columns[c].type) for c in columns]
    sql = f"SELECT {', '.join(quote(engine, c) for c in columns)} FROM {qualified(engine, schema, table)}"
    frames = list(stream_select(engine, sql, defs, 200_000))
    if not frames:
        return pl.DataFrame({d.name: pl.Series([], dtype=_dtype(d.logical_type)) for d in defs})
    return pl.concat(frames)


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
            values = s.to_list()
            cats.append(
                np.array(
                    [-1 if v is None else mapping.setdefault(v, len(mapping)) for v in values],
                    dtype=np.int64,
                )
            )
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
) -> np.ndarray:
    """Gower distance from each query row to its nearest reference row."""
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
        out[i : i + step] = total.min(axis=1) / max(1, width)
    return out


def _dcr(
    source: pl.DataFrame,
    synthetic: pl.DataFrame,
    cfg: TableConfig,
    columns: list[str],
    thresholds: PrivacyThresholds,
    k: int,
) -> tuple[float | None, dict[str, int], dict[str, float]]:
    n = source.height
    if not columns or n < 4 * k or synthetic.height < k:
        return None, {}, {}
    rng = np.random.default_rng(SPLIT_SEED)
    order = rng.permutation(n)
    half = n // 2
    reference_idx = order[:half][: thresholds.dcr_reference_rows]
    holdout_idx = order[half:][: thresholds.dcr_sample_rows]
    synth_idx = rng.permutation(synthetic.height)[: thresholds.dcr_sample_rows]
    reference = source[np.sort(reference_idx)]
    holdout = source[np.sort(holdout_idx)]
    sample = synthetic[np.sort(synth_idx)]
    codes: dict[str, dict] = {}
    r_num, r_cat = _features(reference, cfg, columns, codes)
    h_num, h_cat = _features(holdout, cfg, columns, codes)
    s_num, s_cat = _features(sample, cfg, columns, codes)
    if r_num.shape[1]:
        lo = np.nanpercentile(r_num, 1, axis=0) if len(r_num) else np.zeros(r_num.shape[1])
        hi = np.nanpercentile(r_num, 99, axis=0) if len(r_num) else np.ones(r_num.shape[1])
        scale = np.where(np.isfinite(hi - lo) & (hi - lo > 0), hi - lo, 1.0)
    else:
        scale = np.ones(0)
    d_synth = _nearest(s_num, s_cat, r_num, r_cat, scale)
    d_hold = _nearest(h_num, h_cat, r_num, r_cat, scale)
    held = np.sort(d_hold)
    # P(synthetic closer than held-out) + half the ties, over every (synthetic, held-out) pair
    below = len(held) - np.searchsorted(held, d_synth, side="right")
    ties = np.searchsorted(held, d_synth, side="right") - np.searchsorted(
        held, d_synth, side="left"
    )
    share = float((below + 0.5 * ties).sum() / (len(d_synth) * len(held)))
    samples = {"synthetic": len(sample), "held_out": len(holdout), "reference": len(reference)}
    medians = {
        "synthetic": round(float(np.median(d_synth)), 4),
        "held_out": round(float(np.median(d_hold)), 4),
    }
    return round(share, 4), samples, medians


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


def assess_table(
    source: Engine,
    source_schema: str | None,
    destination: Engine,
    destination_schema: str | None,
    cfg: TableConfig,
    k: int,
    thresholds: PrivacyThresholds,
) -> PrivacyReport:
    """The privacy report of one generated table against its source table."""
    report = PrivacyReport(
        table=cfg.table,
        kind=cfg.kind,
        assessed=False,
        thresholds=thresholds,
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
    if informative:
        matched = syn.join(
            src.select(informative).unique(), on=informative, how="semi", nulls_equal=True
        ).height
        report.exact_match_rate = round(matched / syn.height, 4)
        twins = src.group_by(informative).len().filter(pl.col("len") >= 2)["len"].sum()
        report.exact_match_baseline = round(twins / max(1, src.height), 4)
    if qi and src.height:
        sizes = src.group_by(qi).len()
        uniques = sizes.filter(pl.col("len") == 1).select(qi)
        report.source_unique_share = round(uniques.height / src.height, 4)
        hits = syn.join(uniques, on=qi, how="semi", nulls_equal=True).height
        report.unique_match_rate = round(hits / syn.height, 4)
        pairs = sizes.filter(pl.col("len") == 2).height * 2
        report.unique_match_baseline = round(pairs / src.height, 4)
    report.dcr_closer_share, report.dcr_samples, report.dcr_median = _dcr(
        src, syn, cfg, informative, thresholds, k
    )
    leaks = _rare_leaks(src, syn, cfg, channels, k)
    report.rare_category_leaks = sum(leaks.values())
    report.rare_leak_columns = sorted(leaks)
    _judge(report)
    return report


def _source_columns(engine: Engine, schema: str | None, table: str) -> list[str]:
    import sqlalchemy as sa

    return [c["name"] for c in sa.inspect(engine).get_columns(table, schema=schema)]


def _judge(r: PrivacyReport) -> None:
    t = r.thresholds
    if r.exact_match_rate is not None and r.exact_match_rate > t.max_exact_match_rate:
        r.failures["privacy_exact_matches"] = (
            f"{r.exact_match_rate:.4f} of synthetic rows equal a source row on "
            f"{', '.join(r.columns)} (threshold {t.max_exact_match_rate})"
        )
    if (
        r.unique_match_rate is not None
        and r.unique_match_rate > (r.unique_match_baseline or 0) + t.max_unique_match_excess
    ):
        r.failures["privacy_unique_matches"] = (
            f"{r.unique_match_rate:.4f} of synthetic rows match a source row unique on "
            f"{', '.join(r.quasi_identifiers)}, against {r.unique_match_baseline:.4f} for a fresh "
            f"real row (allowed excess {t.max_unique_match_excess})"
        )
    if r.dcr_closer_share is not None and r.dcr_closer_share > t.max_dcr_closer_share:
        r.failures["privacy_dcr"] = (
            f"synthetic rows are closer to the source than held-out rows are in "
            f"{r.dcr_closer_share:.3f} of comparisons (threshold {t.max_dcr_closer_share})"
        )
    if r.rare_category_leaks > t.max_rare_category_leaks:
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
    if not path.exists():
        return None
    return PrivacyReport.model_validate(json.loads(path.read_text(encoding="utf-8")))


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


def _rate(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.4f}"


def _about(n: int, policy: DisclosurePolicy) -> str:
    r = release_count(n, policy)
    return f"about {r}" if r else f"fewer than {policy.k}"


def privacy_markdown(
    project: str, reports: list[PrivacyReport], created: str, policy: DisclosurePolicy
) -> str:
    """The bundle's privacy report: rates and aggregates only, sample sizes rounded."""
    k = policy.k
    assessed = [r for r in reports if r.assessed and r.synthetic_rows]
    t = reports[0].thresholds if reports else PrivacyThresholds()
    lines = [
        DISCLAIMER,
        "",
        f"# Privacy report: project {project}",
        "",
        f"Computed {created} inside the trusted environment by comparing each synthetic table",
        "with its source table. Only rates appear here; no source value or count does (sample",
        "sizes are rounded like every released count).",
        "",
        "| check | what it measures | threshold |",
        "|---|---|---|",
        f"| exact matches | share of synthetic rows equal to some source row on every column "
        f"generated from released statistics | at most {t.max_exact_match_rate} |",
        f"| unique matches | share of synthetic rows matching a source row that is unique on its "
        f"quasi-identifiers (person: year of birth, gender, race, ethnicity; events: concept and "
        f"date), against the share a fresh real row shows by chance | at most "
        f"{t.max_unique_match_excess} above that |",
        f"| DCR share | chance that a synthetic row is closer (distance to closest record) to a "
        f"reference half of the source than a held-out source row is; 0.5 is a fresh sample "
        f"of patients | at most {t.max_dcr_closer_share} |",
        f"| rare categories | values seen fewer than k={k} times in the source that appear in "
        f"the output | at most {t.max_rare_category_leaks} |",
        "",
        "| table | rows | exact matches | unique matches (fresh real row) | DCR share | DCR samples "
        "(synthetic / held-out / reference) | rare categories | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(assessed, key=lambda x: x.table):
        samples = (
            " / ".join(
                _about(r.dcr_samples[s], policy) for s in ("synthetic", "held_out", "reference")
            )
            if r.dcr_samples
            else "n/a"
        )
        dcr = _rate(r.dcr_closer_share) if r.dcr_closer_share is not None else "n/a"
        lines.append(
            f"| {r.table} | {r.synthetic_rows} | {_rate(r.exact_match_rate)} | "
            f"{_rate(r.unique_match_rate)} ({_rate(r.unique_match_baseline)}) | {dcr} | "
            f"{samples} | {r.rare_category_leaks} | "
            f"{'pass' if r.passed else 'FAIL'} |"
        )
    others = sorted(r.table for r in reports if r not in assessed)
    if others:
        lines += ["", f"Not assessed (empty, or nothing to compare): {', '.join(others)}."]
    lines += [
        "",
        "Vocabulary tables are public reference data, limited to the concepts the synthetic tables can "
        "contain unless a reviewer chose to copy a table whole, and not assessed.",
    ]
    overall = [r.exact_match_rate for r in assessed if r.exact_match_rate is not None]
    if overall:
        lines += [
            "",
            f"Highest exact-match rate {max(overall):.4f}; highest DCR share "
            + _rate(max((r.dcr_closer_share or 0) for r in assessed))
            + f"; rare categories leaked: {sum(r.rare_category_leaks for r in assessed)}.",
        ]
    lines += ["", DISCLAIMER, ""]
    return "\n".join(lines)
