"""The attacks of the privacy report (singling out, linkability, attribute inference,
membership inference): a generator that copies source rows fails every one, independent draws
from the released marginals pass, the same data give the same report, thresholds and sample
caps come from project.yaml, and every figure shown is rounded. Real SQLite sources of
person-like rows, configs drafted by init's own code, rows written by the project's generator
or copied from the source."""

from __future__ import annotations

import json
import re

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

from synth_pipeline.assets.privacy import privacy_metadata
from synth_pipeline.core.attacks import column_groups
from synth_pipeline.core.database import open_destination, open_source
from synth_pipeline.core.disclosure import release_count
from synth_pipeline.core.privacy import ATTACK_SETTINGS, INFORMATIVE, rate_step
from synth_pipeline.core.privacy_bundle import load_report, privacy_markdown, save_report
from synth_pipeline.core.thresholds import PrivacyThresholds

from .test_privacy import privacy_sections
from .test_privacy_chance import POLICY, assess, copy, drafted, honest, write

PERSONS = 400


def build_persons(path, persons: int = PERSONS, seed: int = 11, reverse: bool = False) -> str:
    """Person-like rows: birth year, month and day, gender, race, ethnicity; most rows unique."""
    rng = np.random.default_rng(seed)
    rows = [
        {
            "person_id": i + 1,
            "year_of_birth": int(np.clip(rng.normal(1965, 15), 1920, 2010)),
            "month_of_birth": int(rng.integers(1, 13)),
            "day_of_birth": int(rng.integers(1, 29)),
            "gender_concept_id": int(rng.choice([8507, 8532])),
            "race_concept_id": int(rng.choice([8527, 8516, 8515, 8657], p=[0.6, 0.2, 0.1, 0.1])),
            "ethnicity_concept_id": int(rng.choice([38003563, 38003564], p=[0.7, 0.3])),
        }
        for i in range(persons)
    ]
    if reverse:
        rows = rows[::-1]
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE person (person_id INTEGER PRIMARY KEY, year_of_birth INTEGER NOT NULL, "
            "month_of_birth INTEGER, day_of_birth INTEGER, gender_concept_id INTEGER NOT NULL, "
            "race_concept_id INTEGER NOT NULL, ethnicity_concept_id INTEGER NOT NULL)"
        )
        conn.execute(
            sa.text(
                "INSERT INTO person VALUES (:person_id, :year_of_birth, :month_of_birth, "
                ":day_of_birth, :gender_concept_id, :race_concept_id, :ethnicity_concept_id)"
            ),
            rows,
        )
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def persons(tmp_path_factory):
    """(source engine, drafted person config, a destination holding a copy of the source)."""
    root = tmp_path_factory.mktemp("attacks")
    source = open_source(build_persons(root / "source.sqlite"))
    cfg = drafted(source, "person")
    destination = open_destination(f"sqlite:///{root / 'copy.sqlite'}")
    copy(source, destination, cfg)
    return source, cfg, destination


@pytest.fixture(scope="module")
def copied(persons):
    source, cfg, destination = persons
    return assess(source, destination, cfg)


def test_a_copy_of_the_source_fails_every_attack(copied):
    report = copied
    assert report.attacks.note == ""
    assert set(ATTACK_SETTINGS) <= set(report.failures)
    for check, setting in ATTACK_SETTINGS.items():
        worst = report.attacks.worst(check)
        assert worst.risk_low > getattr(report.thresholds, setting), check
    # the synthetic rows tell a copied row's secrets far better than real rows of others tell
    # a held-out row's
    for a in report.attacks.inference:
        assert a.main.value > a.control.value, a.on
    assert max(a.risk for a in report.attacks.inference) > 0.6
    assert report.attacks.membership.risk > 0.8
    assert report.attacks.linkability.on == (
        "year_of_birth, gender_concept_id, race_concept_id, ethnicity_concept_id "
        "vs month_of_birth, day_of_birth"
    )
    # singling out: a predicate true of one copied row is true of exactly that source row
    multivariate = next(a for a in report.attacks.singling_out if a.on.startswith("multi"))
    assert multivariate.main.value == 1.0 and multivariate.control.value < 0.5
    why = report.failures["privacy_inference"]
    assert "above privacy.max_inference_risk 0.09 with 99% confidence" in why
    assert "training targets" in why and "control targets" in why


def test_slipping_source_rows_among_honest_ones(persons, tmp_path):
    """A generator that draws honestly but slips in source rows. 70% copied fails every
    attack. A third copied shows in every risk, but 100 targets a side are too few to be 99%
    sure of it on 400 rows; the exact-match and DCR checks refuse it."""
    source, cfg, _ = persons
    real = pl.read_database("SELECT * FROM person ORDER BY person_id", source.connect())
    drawn = honest(cfg, 4)
    destination = open_destination(f"sqlite:///{tmp_path / 'mixed.sqlite'}")
    reports = {}
    for copied_rows in (280, 140):
        mixed = pl.concat(
            [real.head(copied_rows), drawn.slice(copied_rows)], how="vertical_relaxed"
        )
        write(destination, cfg, mixed.select(list(cfg.columns)))
        reports[copied_rows] = assess(source, destination, cfg)
    assert set(ATTACK_SETTINGS) <= set(reports[280].failures)
    third = reports[140]
    assert {"privacy_exact_matches", "privacy_dcr"} <= set(third.failures)
    for check in ATTACK_SETTINGS:
        worst = third.attacks.worst(check)
        assert worst.risk > (0.55 if check == "privacy_membership" else 0.1), check


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_independent_draws_from_the_released_marginals_pass(persons, tmp_path, seed):
    source, cfg, _ = persons
    destination = open_destination(f"sqlite:///{tmp_path / 'honest.sqlite'}")
    write(destination, cfg, honest(cfg, seed))
    report = assess(source, destination, cfg)
    assert not set(ATTACK_SETTINGS) & set(report.failures), report.failures
    assert report.passed, report.failures
    # no more than the control learns about someone outside the data
    for check in ATTACK_SETTINGS:
        worst = report.attacks.worst(check)
        assert worst.risk < (0.6 if check == "privacy_membership" else 0.3), (check, worst)
    assert abs(report.attacks.membership.risk - 0.5) < 0.1


def test_the_attacks_are_the_same_for_the_same_data(persons, tmp_path):
    """Fixed seeds and an order the values fix: the same rows stored in another order give the
    same attacks."""
    source, cfg, _ = persons
    other = open_source(build_persons(tmp_path / "reversed.sqlite", reverse=True))
    destination = open_destination(f"sqlite:///{tmp_path / 'honest.sqlite'}")
    write(destination, cfg, honest(cfg, 1))
    reports = [assess(s, destination, cfg) for s in (source, source, other)]
    dumps = [r.attacks.model_dump() for r in reports]
    assert dumps[0] == dumps[1] == dumps[2]
    assert dumps[0]["samples"] == {
        "targets": 100,
        "reference": 300,
        "predicates_from": 400,
        "control_predicates_from": 200,
    }


def test_thresholds_per_table_and_sample_caps_come_from_project_yaml(persons):
    source, cfg, destination = persons
    lenient = PrivacyThresholds.model_validate(
        {
            "tables": {
                "person": {
                    "max_singling_out_risk": 1,
                    "max_linkability_risk": 1,
                    "max_inference_risk": 1,
                    "max_membership_auc": 1,
                }
            }
        }
    )
    report = assess(source, destination, cfg, lenient)
    assert not set(ATTACK_SETTINGS) & set(report.failures)
    assert "privacy_exact_matches" in report.failures  # the other checks still hold the copy
    capped = PrivacyThresholds(attack_rows=40, attack_reference_rows=120)
    report = assess(source, destination, cfg, capped)
    assert report.attacks.samples == {
        "targets": 40,
        "reference": 120,
        "predicates_from": 120,
        "control_predicates_from": 120,
    }
    assert report.attacks.linkability.main.of == 40
    assert all(a.main.of <= 40 for a in report.attacks.singling_out if a.main)
    with pytest.raises(ValueError):
        PrivacyThresholds(max_membership_auc=0.4)


def test_an_older_project_yaml_loads_and_an_older_report_is_measured_again(copied, tmp_path):
    """The attack settings have defaults; a report kept before the attacks existed counts as
    missing, so the table is assessed again rather than bundled without its attacks."""
    t = PrivacyThresholds.model_validate({"max_exact_match_excess": 0.2, "tables": {}})
    assert (t.max_singling_out_risk, t.max_linkability_risk, t.max_inference_risk) == (
        0.09,
        0.09,
        0.09,
    )
    assert t.max_membership_auc == 0.6
    path = tmp_path / "person.json"
    save_report(path, copied)
    assert load_report(path) == copied
    older = json.loads(path.read_text())
    del older["attacks"]
    path.write_text(json.dumps(older))
    assert load_report(path) is None


def _on_grid(cell: str, of: int) -> bool:
    """A printed share is a multiple of the step a share over the released size is shown at."""
    n = release_count(of, POLICY)
    step = rate_step(n, POLICY.rounding)
    value = float(cell.lstrip("<"))
    return abs(value / step - round(value / step)) < 1e-6


def test_the_attack_figures_shown_are_rounded(copied):
    """privacy.md and the UI metadata show the rates rounded like released counts, and the
    risk computed from the rounded rates."""
    report = copied
    text = privacy_markdown("attacks", [report], "today", POLICY)
    rows = privacy_sections(text)["Attacks"]
    assert [r["attack"] for r in rows] == [
        "singling out",
        "singling out",
        "linkability",
        "attribute inference (worst of 6 columns)",
        "membership inference",
    ]
    results = [
        *report.attacks.singling_out,
        report.attacks.linkability,
        report.attacks.worst("privacy_inference"),
        report.attacks.membership,
    ]
    checked = risked = 0
    for row, a in zip(rows, results, strict=True):
        assert row["verdict"] == "FAIL" and row["on"] == a.on
        for cell, rate in ((row["training targets"], a.main), (row["control targets"], a.control)):
            if rate.fixed:
                assert cell == "0.5"
                continue
            assert _on_grid(cell, rate.of), (row, cell)
            exact = rate.count / rate.of
            if cell.startswith("<"):  # fewer than k successes: only that is said
                assert rate.count < POLICY.k
            elif abs(exact - float(cell)) > 1e-9:
                assert f"{exact:.4f}" not in text
            checked += 1
        numbers = [row["training targets"], row["control targets"], row["risk"]]
        if row["attack"] != "membership inference" and not any("<" in c for c in numbers):
            main, control = float(numbers[0]), float(numbers[1])
            assert float(row["risk"]) == pytest.approx((main - control) / (1 - control), abs=0.006)
            risked += 1
    assert checked >= 9 and risked >= 1
    assert re.search(r"person about \d+ targets per side, about \d+ rows per attacker", text)
    shown = privacy_metadata(report)["privacy_attacks"].value
    for row in rows:
        assert f"| {row['training targets']} | {row['control targets']} | {row['risk']} |" in shown


def test_too_small_a_table_is_not_attacked(tmp_path):
    source = open_source(build_persons(tmp_path / "tiny.sqlite", persons=30))
    cfg = drafted(source, "person")
    destination = open_destination(f"sqlite:///{tmp_path / 'copy.sqlite'}")
    copy(source, destination, cfg)
    report = assess(source, destination, cfg)
    assert report.attacks.note == "too few rows for the attacks"
    assert not set(ATTACK_SETTINGS) & set(report.failures)
    assert "privacy_exact_matches" in report.failures
    text = privacy_markdown("attacks", [report], "today", POLICY)
    assert privacy_sections(text)["Attacks"] == [
        {
            "table": "person",
            "attack": "all",
            "on": "",
            "training targets": "",
            "control targets": "",
            "risk": "too few rows for the attacks",
            "threshold": "",
            "verdict": "n/a",
        }
    ]


def test_columns_derived_from_one_another_are_attacked_as_one(tmp_path):
    """A birth year, month and day taken from the birth datetime carry one piece of
    information: guessing the year from the datetime, or linking the one to the other, would
    succeed for anyone, copied or not. They form one group: the year is guessed from gender,
    race and ethnicity, and linkability splits whole groups. Here gender, race and ethnicity
    are nearly constant, so neither attack can tell a copy from real rows of others; singling
    out and membership inference do."""
    from . import adversarial as adv

    url = f"sqlite:///{tmp_path / 'extract.sqlite'}"
    adv.build_extract(url)
    source = open_source(url)
    cfg = drafted(source, "person")
    columns = [c for c, col in cfg.columns.items() if col.generator in INFORMATIVE]
    groups = dict(zip(columns, column_groups(cfg, columns), strict=True))
    date = {groups[c] for c in ("year_of_birth", "month_of_birth", "day_of_birth")}
    assert date == {groups["birth_datetime"]}
    assert len(set(groups.values())) == 4  # the date, gender, race, ethnicity
    destination = open_destination(f"sqlite:///{tmp_path / 'copy.sqlite'}")
    copy(source, destination, cfg)
    report = assess(source, destination, cfg)
    year = next(a for a in report.attacks.inference if a.on == "year_of_birth")
    assert year.control.value < 0.5  # not read off the birth datetime
    assert "birth_datetime" not in report.attacks.linkability.on.split(" vs ")[0]
    assert {"privacy_singling_out", "privacy_membership"} <= set(report.failures)
