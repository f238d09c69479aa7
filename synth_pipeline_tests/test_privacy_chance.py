"""Privacy verdicts against chance: a copy fails whatever the table's entropy, an honest
generator passes even where most source rows have an identical twin, and a table whose every
row has twins passes at chance. Real SQLite sources, configs drafted by init's own code, rows
written by the project's generator or copied from the source."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import sqlalchemy as sa

from synth_pipeline.core.config import TableConfig
from synth_pipeline.core.database import open_destination, open_source
from synth_pipeline.core.disclosure import DisclosurePolicy
from synth_pipeline.core.privacy import AT_CHANCE
from synth_pipeline.core.privacy_measure import assess_table
from synth_pipeline.core.propose import propose_table_config
from synth_pipeline.core.schema import ColumnDef, read_table_schema
from synth_pipeline.core.summarise import summarise_table
from synth_pipeline.core.synthesise import TableRun
from synth_pipeline.core.thresholds import PrivacyThresholds
from synth_pipeline.core.transfer import copy_table
from synth_pipeline.core.write import RegisterEntry, replace_table

POLICY = DisclosurePolicy()
# person: 300 rows over 12 x 2 x 4 x 2 combinations, most of them common: about 80% of rows
# have an identical twin on every informative column
YEARS, YEAR_P = list(range(1950, 1962)), [1 / 12] * 12
GENDERS, GENDER_P = [8507, 8532], [0.5, 0.5]
RACES, RACE_P = [8527, 8516, 8515, 8657], [0.5, 0.2, 0.15, 0.15]
ETHNICITIES, ETHNICITY_P = [38003563, 38003564], [0.6, 0.4]
PLACES = [8717, 8756, 8940]  # care_site.place_of_service_concept_id


def _person_rows(n: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    cols = {
        "year_of_birth": rng.choice(YEARS, n, p=YEAR_P),
        "gender_concept_id": rng.choice(GENDERS, n, p=GENDER_P),
        "race_concept_id": rng.choice(RACES, n, p=RACE_P),
        "ethnicity_concept_id": rng.choice(ETHNICITIES, n, p=ETHNICITY_P),
    }
    return [{"person_id": i + 1, **{c: int(v[i]) for c, v in cols.items()}} for i in range(n)]


def build_source(path, persons: int = 300, seed: int = 5, reverse: bool = False) -> str:
    """A source with a low-entropy person table and a care_site table whose only informative
    column has three values, each held by many rows (plus one held by a single row)."""
    url = f"sqlite:///{path}"
    engine = sa.create_engine(url)
    people = _person_rows(persons, seed)
    places = [PLACES[i % 3] for i in range(45)] + [8761]  # 8761 once: never released
    sites = [
        {"care_site_id": i + 1, "care_site_name": f"site {i}", "place_of_service_concept_id": p}
        for i, p in enumerate(places)
    ]
    if reverse:  # the same rows, stored in another order
        people, sites = people[::-1], sites[::-1]
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE person (person_id INTEGER PRIMARY KEY, year_of_birth INTEGER NOT NULL, "
            "gender_concept_id INTEGER NOT NULL, race_concept_id INTEGER NOT NULL, "
            "ethnicity_concept_id INTEGER NOT NULL)"
        )
        conn.exec_driver_sql(
            "CREATE TABLE care_site (care_site_id INTEGER PRIMARY KEY, care_site_name "
            "VARCHAR(255), place_of_service_concept_id INTEGER)"
        )
        conn.execute(
            sa.text(
                "INSERT INTO person VALUES (:person_id, :year_of_birth, "
                ":gender_concept_id, :race_concept_id, :ethnicity_concept_id)"
            ),
            people,
        )
        conn.execute(
            sa.text(
                "INSERT INTO care_site VALUES (:care_site_id, :care_site_name, "
                ":place_of_service_concept_id)"
            ),
            sites,
        )
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def source_url(tmp_path_factory):
    return build_source(tmp_path_factory.mktemp("chance") / "source.sqlite")


def drafted(source, table: str) -> TableConfig:
    schema = read_table_schema(source, None, table)
    return propose_table_config(schema, summarise_table(source, None, schema, POLICY))


def _columns(cfg: TableConfig) -> list[ColumnDef]:
    return [ColumnDef(n, c.type, c.max_length) for n, c in cfg.columns.items()]


def _entry(cfg: TableConfig) -> RegisterEntry:
    return RegisterEntry("synthetic", cfg.fingerprint(), 1, 1.0, {}, "test")


def honest(cfg: TableConfig, seed: int = 3) -> pl.DataFrame:
    """The project's generator: every column drawn on its own from the released statistics."""
    run = TableRun(cfg, seed, 1.0, parent_rows=lambda p: 0, parent_source_rows=lambda p: None)
    return pl.concat(list(run.chunks(65_536)))


def write(destination, cfg: TableConfig, frame: pl.DataFrame) -> None:
    replace_table(
        destination,
        None,
        cfg.table,
        _columns(cfg),
        [frame],
        primary_key=cfg.primary_key,
        entry=_entry(cfg),
    )


def copy(source, destination, cfg: TableConfig) -> None:
    copy_table(
        source, None, cfg.table, destination, None, cfg.table, _columns(cfg), entry=_entry(cfg)
    )


def assess(source, destination, cfg, thresholds=None):
    return assess_table(
        source, None, destination, None, cfg, POLICY, thresholds or PrivacyThresholds()
    )


def test_the_low_entropy_table_is_what_the_issue_saw(source_url):
    """Most rows have an identical twin: a fixed rate threshold would refuse any generator."""
    source = open_source(source_url)
    with source.connect() as conn:
        twins = conn.exec_driver_sql(
            "SELECT SUM(n) FROM (SELECT COUNT(*) AS n FROM person GROUP BY year_of_birth, "
            "gender_concept_id, race_concept_id, ethnicity_concept_id HAVING COUNT(*) > 1)"
        ).scalar_one()
    assert 0.75 <= twins / 300 <= 0.9


def test_a_copy_of_a_low_entropy_table_fails(source_url, tmp_path):
    source = open_source(source_url)
    cfg = drafted(source, "person")
    destination = open_destination(f"sqlite:///{tmp_path / 'copy.sqlite'}")
    copy(source, destination, cfg)
    report = assess(source, destination, cfg)
    m = report.exact_matches
    assert m.figure.value == 1.0 and 0.75 <= m.fresh_row.value <= 0.9
    assert abs(m.recombined.value - m.fresh_row.value) < 0.05  # the columns are independent
    assert m.excess == pytest.approx(1.0) and m.excess_low > 0.5
    assert "privacy_exact_matches" in report.failures
    assert "privacy_dcr" in report.failures  # closer than real rows left out, beyond chance
    why = report.failures["privacy_exact_matches"]
    assert "chance 0.80 (" in why and "max_exact_match_excess 0.2" in why


def test_mostly_copying_a_low_entropy_table_fails(source_url, tmp_path):
    """80% copied rows, 20% drawn honestly: still far beyond chance."""
    source = open_source(source_url)
    cfg = drafted(source, "person")
    real = pl.read_database("SELECT * FROM person ORDER BY person_id", source.connect())
    drawn = honest(cfg)
    mixed = pl.concat(
        [real.head(240), drawn.slice(240, drawn.height - 240)], how="vertical_relaxed"
    )
    mixed = mixed.with_columns(pl.int_range(1, mixed.height + 1).alias("person_id"))
    destination = open_destination(f"sqlite:///{tmp_path / 'mostly.sqlite'}")
    write(destination, cfg, mixed.select(list(cfg.columns)))
    report = assess(source, destination, cfg)
    assert 0.6 < report.exact_matches.excess < 0.95
    assert "privacy_exact_matches" in report.failures


def test_an_honest_generator_on_the_low_entropy_table_passes(source_url, tmp_path):
    """Independent draws from the released marginals match source rows about as often as a
    fresh real row does: far above any fixed threshold, but at chance."""
    source = open_source(source_url)
    cfg = drafted(source, "person")
    assert {cfg.columns[c].generator for c in ("year_of_birth", "race_concept_id")} == {
        "weighted_choice"
    }
    destination = open_destination(f"sqlite:///{tmp_path / 'honest.sqlite'}")
    for seed in (1, 2, 3):
        write(destination, cfg, honest(cfg, seed))
        report = assess(source, destination, cfg)
        m = report.exact_matches
        assert m.figure.value > 0.6  # the old fixed threshold (0.1) refused this
        assert abs(m.figure.value - m.fresh_row.value) < 0.1
        assert report.passed, report.failures


def test_leaving_one_row_out_is_the_chance_an_honest_generator_meets(source_url, tmp_path):
    """Why the baseline leaves one row out instead of splitting the source in halves: chance
    grows with the reference, and the synthetic rows are measured against the whole source."""
    source = open_source(source_url)
    cfg = drafted(source, "person")
    destination = open_destination(f"sqlite:///{tmp_path / 'honest.sqlite'}")
    write(destination, cfg, honest(cfg, 1))
    report = assess(source, destination, cfg)
    real = pl.read_database("SELECT * FROM person", source.connect())
    cols = report.columns
    rng = np.random.default_rng(0)
    order = rng.permutation(real.height)
    a, b = real[order[:150]], real[order[150:]]
    halves = a.join(b.select(cols).unique(), on=cols, how="semi").height / a.height
    assert halves < report.exact_matches.fresh_row.value - 0.05
    assert report.exact_matches.figure.value > halves + 0.05


def test_a_one_column_table_passes_at_chance(source_url, tmp_path):
    """care_site: one informative column with three common values (and one value held by one
    row, which is never released). Every row a generator can write has twins: an honest
    generator, like any other, scores 1, and that is chance."""
    source = open_source(source_url)
    cfg = drafted(source, "care_site")
    assert cfg.columns["place_of_service_concept_id"].generator == "weighted_choice"
    destination = open_destination(f"sqlite:///{tmp_path / 'sites.sqlite'}")
    write(destination, cfg, honest(cfg))
    report = assess(source, destination, cfg)
    m = report.exact_matches
    assert report.columns == ["place_of_service_concept_id"]
    assert m.fresh_row.value == 1.0 and m.figure.value > 0.9
    assert m.note == AT_CHANCE and m.excess is None
    assert report.passed, report.failures
    assert "at chance" in report.verdict("privacy_exact_matches")[1]

    # a copy cannot be told from chance on this column either, but it carries the value held
    # by one row, which the rare-category check catches
    copy(source, destination, cfg)
    copied = assess(source, destination, cfg)
    assert copied.exact_matches.note == AT_CHANCE
    assert set(copied.failures) == {"privacy_rare_categories"}


def test_a_tiny_table_never_fails_an_honest_generator(tmp_path):
    """20 persons: the noise of 20 rows is within the verdict's 99% bound."""
    source = open_source(build_source(tmp_path / "tiny.sqlite", persons=20, seed=8))
    policy = DisclosurePolicy(min_cell_count=3)
    schema = read_table_schema(source, None, "person")
    cfg = propose_table_config(schema, summarise_table(source, None, schema, policy))
    destination = open_destination(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    for seed in range(1, 11):
        write(destination, cfg, honest(cfg, seed))
        report = assess_table(source, None, destination, None, cfg, policy, PrivacyThresholds())
        assert report.passed, (seed, report.failures)
    copy(source, destination, cfg)
    report = assess_table(source, None, destination, None, cfg, policy, PrivacyThresholds())
    assert {"privacy_exact_matches", "privacy_unique_matches"} <= set(report.failures)


def test_a_generator_that_writes_the_centre_of_a_tiny_table_is_at_chance(tmp_path):
    """A tiny table releases little: a generator may write little more than its centre (one
    quantile for the year, the common categories). Here every row is the source's most common
    combination. Such rows match source rows far more often than a real row left out does, yet
    they copy nobody: the synthetic columns recombined at random score as much, and that is
    chance too. A copy of the same table still fails."""
    source = open_source(build_source(tmp_path / "tiny.sqlite", persons=20, seed=100))
    cfg = drafted(source, "person")
    real = pl.read_database("SELECT * FROM person", source.connect()).drop("person_id")
    centre = real.group_by(real.columns).len().sort("len", descending=True).row(0, named=True)
    rows = pl.DataFrame({"person_id": range(1, 21)}).with_columns(
        [pl.lit(centre[c]).alias(c) for c in real.columns]
    )
    destination = open_destination(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    write(destination, cfg, rows.select(list(cfg.columns)))
    report = assess(source, destination, cfg)
    m = report.exact_matches
    assert m.figure.value == 1.0 and m.fresh_row.value < 0.7  # a real row left out would refuse it
    assert m.recombined.value == 1.0 and m.note == AT_CHANCE
    assert report.verdict("privacy_exact_matches")[0]
    copy(source, destination, cfg)
    assert "privacy_exact_matches" in assess(source, destination, cfg).failures


def test_the_figures_are_the_same_for_the_same_data(tmp_path):
    """No randomness but fixed seeds, and no dependence on the order the database returns the
    rows in: the same rows stored in another order give the same report."""
    first = open_source(build_source(tmp_path / "a.sqlite"))
    second = open_source(build_source(tmp_path / "b.sqlite", reverse=True))
    cfg = drafted(first, "person")
    destination = open_destination(f"sqlite:///{tmp_path / 'dest.sqlite'}")
    write(destination, cfg, honest(cfg))
    reports = [assess(s, destination, cfg) for s in (first, first, second)]
    dumps = [r.model_dump(exclude={"config_fingerprint"}) for r in reports]
    assert dumps[0] == dumps[1] == dumps[2]
    assert reports[0].dcr.figure is not None and reports[0].dcr_samples["reference"] == 300


def test_thresholds_per_table_and_older_settings(source_url, tmp_path):
    """privacy.tables overrides a table's thresholds; an older project.yaml's absolute
    thresholds still load, set aside with a note in the report."""
    source = open_source(source_url)
    cfg = drafted(source, "person")
    destination = open_destination(f"sqlite:///{tmp_path / 'copy.sqlite'}")
    copy(source, destination, cfg)
    lenient = PrivacyThresholds.model_validate(
        {"tables": {"person": {"max_exact_match_excess": 1, "max_dcr_excess": 1}}}
    )
    report = assess(source, destination, cfg, lenient)
    assert report.thresholds.max_exact_match_excess == 1
    assert "privacy_exact_matches" not in report.failures
    old = PrivacyThresholds.model_validate(
        {"max_exact_match_rate": 0.1, "max_unique_match_excess": 0.05, "max_dcr_closer_share": 0.6}
    )
    report = assess(source, destination, cfg, old)
    assert report.thresholds.max_exact_match_excess == 0.2  # the default applies
    assert "privacy_exact_matches" in report.failures
    assert any(
        "privacy.max_exact_match_rate (0.1) is no longer used" in n for n in report.config_notes
    )
    assert any("max_unique_match_excess (0.05)" in n for n in report.config_notes)


def test_the_default_path_publishes_a_low_entropy_extract(tmp_path):
    """init, approve --all, run: the low-entropy person table and the one-column care_site
    table go out, where the fixed 0.1 exact-match threshold refused both."""
    from . import adversarial as adv
    from .test_privacy import privacy_sections

    run = adv.run_pipeline(tmp_path, build_source(tmp_path / "source.sqlite"))
    assert run.code == 0
    sections = privacy_sections((run.bundle / "privacy.md").read_text())
    exact = {r["table"]: r for r in sections["Exact matches"]}
    assert float(exact["person"]["figure"]) > 0.5 and exact["person"]["verdict"] == "pass"
    assert exact["care_site"]["verdict"] == "pass (at chance)"
