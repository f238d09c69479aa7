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

import numpy as np
import polars as pl
from sqlalchemy.engine import Engine

from .attacks import run_attacks
from .bundle import table_row_count
from .config import TableConfig
from .disclosure import DisclosurePolicy
from .generators import CATALOGUE
from .privacy import (
    ATTACK_SETTINGS,
    CHECKS,
    EXCESS_SETTINGS,
    INFORMATIVE,
    PERSON_QUASI_IDENTIFIERS,
    PLACEHOLDER_CONCEPT,
    VALUE_CHANNELS,
    Attacks,
    Measure,
    PrivacyReport,
    Rate,
    against_chance,
    against_text,
    describe_attack,
)
from .privacy_distance import TablePair, dcr_share, matching_rows, read_columns
from .schema import list_tables
from .thresholds import PrivacyThresholds

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
    report = _unassessed(cfg, policy, thresholds)
    if cfg.kind != "synthetic":
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
    src = read_columns(source, source_schema, names[cfg.table], cfg, wanted)
    syn = read_columns(destination, destination_schema, cfg.table, cfg, wanted)
    report.source_rows, report.synthetic_rows = src.height, syn.height
    _measure_matches(report, TablePair(src, syn, cfg, informative, thresholds, policy.k), qi)
    _measure_unique_matches(report, src, syn, cfg, qi)
    leaks = _rare_leaks(src, syn, cfg, channels, policy.k)
    report.rare_category_leaks = sum(leaks.values())
    report.rare_leak_columns = sorted(leaks)
    _judge(report)
    return report


def _unassessed(
    cfg: TableConfig, policy: DisclosurePolicy, thresholds: PrivacyThresholds
) -> PrivacyReport:
    """The table's report before anything is measured; a table not generated stays so."""
    report = PrivacyReport(
        table=cfg.table,
        kind=cfg.kind,
        assessed=False,
        attacks=Attacks(note="not assessed"),
        thresholds=thresholds,
        config_notes=thresholds.deprecated,
        k=policy.k,
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


def _measure_matches(report: PrivacyReport, pair: TablePair, qi: list[str]) -> None:
    """The exact matches, the DCR share and the attacks on the informative columns."""
    src, syn, informative = pair.source, pair.synthetic, pair.columns
    if not (informative and src.height):
        report.exact_matches = Measure(note="no informative columns to compare")
        report.dcr = Measure(note="no informative columns to compare")
        report.attacks = Attacks(note="no informative columns to compare")
        return
    match = matching_rows(syn, src, informative)
    twin = _group_sizes(src, informative) >= 2
    ok = writable(src, pair.cfg, informative)
    report.exact_matches = against_chance(
        Rate(count=int(match.sum()), of=syn.height),
        Rate(count=int((twin & ok).sum()), of=int(ok.sum())),
        _recombined(syn, src, informative),
        Rate(count=1, of=1, fixed=True),
    )
    report.dcr, report.dcr_samples = dcr_share(
        pair, twin.to_numpy(), ok.to_numpy(), match.to_numpy()
    )
    report.attacks = run_attacks(pair, qi, ok.to_numpy())


def _measure_unique_matches(
    report: PrivacyReport, src: pl.DataFrame, syn: pl.DataFrame, cfg: TableConfig, qi: list[str]
) -> None:
    """The matches of source rows unique on the quasi-identifiers."""
    if not (qi and src.height):
        report.unique_matches = Measure(note="no quasi-identifiers to compare")
        return
    sizes = _group_sizes(src, qi)
    unique = sizes == 1
    ok = writable(src, cfg, qi)
    report.unique_matches = against_chance(
        Rate(count=int(matching_rows(syn, src.filter(unique), qi).sum()), of=syn.height),
        Rate(count=int(((sizes == 2) & ok).sum()), of=int(ok.sum())),
        _recombined(syn, src.filter(unique), qi),
        Rate(count=int(unique.sum()), of=src.height),
    )


def _source_columns(engine: Engine, schema: str | None, table: str) -> list[str]:
    import sqlalchemy as sa

    return [c["name"] for c in sa.inspect(engine).get_columns(table, schema=schema)]


def _judge(r: PrivacyReport) -> None:
    for check, setting in EXCESS_SETTINGS.items():
        m, limit = r.measure(check), r.threshold(check)
        if m.excess_low is not None and m.excess_low > limit:
            on = ", ".join(r.quasi_identifiers if check == "privacy_unique_matches" else r.columns)
            r.failures[check] = (
                f"{CHECKS[check]} on {on} {against_text(m, r.policy)}: above privacy.{setting} "
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
