"""Optional differential privacy: off by default, noise on every released count and histogram
when on, the budget recorded, and the same noisy statistics for the same data."""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest
import yaml

from synth_pipeline import cli, environment
from synth_pipeline.core import dp, dp_key
from synth_pipeline.core.config import ProjectConfig
from synth_pipeline.core.config_files import ProjectFiles
from synth_pipeline.core.database import open_source
from synth_pipeline.core.disclosure import DisclosurePolicy
from synth_pipeline.core.review import review_text
from synth_pipeline.core.schema import list_tables, read_table_schema
from synth_pipeline.core.summarise import summarise_table

from . import adversarial as adv
from .conftest import DEMO_CONFIGS


@pytest.fixture(scope="module")
def extract(tmp_path_factory):
    path = tmp_path_factory.mktemp("dp") / "source.sqlite"
    adv.build_extract(f"sqlite:///{path}")
    return open_source(f"sqlite:///{path}")


def summarise(engine, table: str, policy: DisclosurePolicy, work_dir):
    schema = read_table_schema(engine, None, table)
    noise = dp.noise_for(schema, policy, list_tables(engine, None), work_dir)
    return summarise_table(engine, None, schema, policy, None, noise)


def counts_of(stats) -> list[int]:
    """Every released count of a table's statistics, in a fixed order."""
    out = [stats.row_count or 0]
    for cs in stats.columns.values():
        out += [cs.non_null or 0]
        out += [v.count for v in cs.values or []] + [cs.other_count or 0]
        out += [b.count for b in cs.years or []] + list(cs.months or [])
        out += [b.count for b in cs.fanout or []]
        if cs.time_of_day and cs.time_of_day.hours:
            out += cs.time_of_day.hours
    return out


def test_off_by_default():
    assert DisclosurePolicy().epsilon is None
    assert ProjectConfig(project="x").disclosure.epsilon is None
    demo = ProjectFiles(DEMO_CONFIGS, "demo")
    assert demo.load_project().disclosure.epsilon is None
    for table in demo.tables():
        data = yaml.safe_load(demo.table_file(table).read_text())
        assert "dp" not in data["source"], table


def test_noise_changes_the_counts_and_keeps_the_rules(extract, tmp_path):
    k = 10
    plain = summarise(extract, "condition_occurrence", DisclosurePolicy(), tmp_path)
    noisy = summarise(extract, "condition_occurrence", DisclosurePolicy(epsilon=1.0), tmp_path)
    assert plain.dp is None and noisy.dp is not None
    before, after = counts_of(plain), counts_of(noisy)
    assert len(before) > 10
    assert before != after
    # the k and rounding rules still apply, after the noise
    assert all(c == 0 or (c >= k and c % 5 == 0) for c in after)
    # findings carry no counts under differential privacy
    assert not any("about" in f for f in noisy.findings)


def test_the_budget_is_split_and_recorded(extract, tmp_path):
    policy = DisclosurePolicy(epsilon=2.0)
    stats = summarise(extract, "visit_occurrence", policy, tmp_path)
    budget = stats.dp
    tables = dp.patient_tables(list_tables(extract, None))
    assert budget.tables_sharing == len(tables) == 8
    assert budget.table_epsilon == pytest.approx(2.0 / 8)
    assert sum(budget.spent.values()) == pytest.approx(budget.table_epsilon, rel=1e-6)
    assert budget.spent["visit_start_date"] == pytest.approx(2 * budget.statistic_epsilon)
    assert "visit_occurrence_id" not in budget.spent  # the primary key releases nothing
    assert budget.mechanism == "geometric" and "exponential mechanism" in budget.quantiles
    # delta is split like epsilon, and sets the listing threshold
    assert budget.table_delta == pytest.approx(policy.delta / 8, rel=1e-3)
    assert budget.statistic_delta == pytest.approx(budget.table_delta / budget.statistics, rel=1e-3)
    assert budget.listing_threshold == dp.listing_threshold(
        budget.statistic_epsilon, policy.delta / 8 / budget.statistics
    )
    assert sum(len(v) for v in budget.plan.values()) == budget.statistics
    # over every table the project's budget is not exceeded
    total = sum(summarise(extract, t, policy, tmp_path).dp.table_epsilon for t in tables)
    assert total == pytest.approx(2.0)


def test_same_data_same_noise_other_key_other_noise(extract, tmp_path):
    policy = DisclosurePolicy(epsilon=1.0)
    first = summarise(extract, "measurement", policy, tmp_path / "a")
    again = summarise(extract, "measurement", policy, tmp_path / "a")
    other = summarise(extract, "measurement", policy, tmp_path / "b")
    assert first.model_dump() == again.model_dump()
    assert counts_of(first) != counts_of(other)


def test_quantiles_can_be_withheld(extract, tmp_path):
    stats = summarise(
        extract, "measurement", DisclosurePolicy(epsilon=1.0, dp_quantiles="withheld"), tmp_path
    )
    assert stats.columns["value_as_number"].quantiles in (None, [])
    assert "withheld" in stats.dp.quantiles and "quantiles" not in stats.dp.outside_guarantee


def test_geometric_and_laplace_noise_have_the_right_spread():
    budget = dp.PrivacyBudget(
        mechanism="geometric",
        project_epsilon=1.0,
        tables_sharing=1,
        table_epsilon=1.0,
        statistics=1,
        statistic_epsilon=1.0,
        spent={"rows": 1.0},
        quantiles="",
    )
    noise = dp.Noise(b"k" * 32, "t", budget)
    draws = np.array(noise.counts("x", [1000] * 4000)) - 1000
    # two-sided geometric, alpha = e^-1: mean 0, variance 2 alpha / (1 - alpha)^2 = 1.84
    assert abs(draws.mean()) < 0.15 and 1.4 < draws.var() < 2.3
    assert noise.counts("x", [1000] * 4000) == list(draws + 1000)  # stable
    laplace = dp.Noise(b"k" * 32, "t", budget.model_copy(update={"mechanism": "laplace"}))
    lap = np.array(laplace.counts("x", [1000] * 4000)) - 1000
    assert abs(lap.mean()) < 0.15 and 1.5 < lap.var() < 2.6  # Laplace b=1, rounded: about 2
    assert noise.counts("x", [0, 0, 0]) == [max(0, c) for c in noise.counts("x", [0, 0, 0])]


def test_the_key_stays_in_the_work_folder(tmp_path):
    key = dp_key.load_or_create_key(tmp_path)
    path = dp_key.key_path(tmp_path)
    assert path.is_relative_to(tmp_path) and len(key) == 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert dp_key.load_or_create_key(tmp_path) == key
    path.write_text("not hex\n")
    with pytest.raises(Exception, match="dp-noise.key"):
        dp_key.load_or_create_key(tmp_path)


@pytest.mark.slow
def test_pipeline_with_epsilon_records_the_budget_and_keeps_approvals(tmp_path):
    source = f"sqlite:///{tmp_path / 'source.sqlite'}"
    adv.build_extract(source)
    root = tmp_path / "cfg"
    files = ProjectFiles(root, "dp")
    files.save_project(ProjectConfig(project="dp", disclosure=DisclosurePolicy(epsilon=4.0)))
    common = ["--project", "dp", "--config-dir", str(root)]
    assert cli.main(["init", "--source", source, *common, "--tables", "person", "measurement"]) == 0
    data = yaml.safe_load(files.table_file("measurement").read_text())
    assert data["source"]["dp"]["project_epsilon"] == 4.0
    assert data["source"]["dp"]["table_epsilon"] == pytest.approx(4.0 / 8)
    assert set(data["source"]["dp"]["spent"]) >= {"rows", "measurement_concept_id"}
    listing = review_text(files, "measurement")
    assert "noise" in listing
    # the listing says what the guarantee is, statistic by statistic, and no k rule of exact counts
    assert "values seen at least k" not in listing and "outside the guarantee" in listing
    plan = data["source"]["dp"]["plan"]
    budgets = re.findall(r"\(budget: (\w+)\.(\w+)\)", " ".join(listing.split()))
    assert {c for c, _ in budgets} >= {"rows", "measurement_concept_id", "value_as_number"}
    assert all(s in plan[c] for c, s in budgets), budgets
    assert "listed only at a noisy count of at least" in listing
    assert "exponential mechanism" in listing
    assert cli.main(["approve", "--all", "--reviewer", "DP Reviewer", *common]) == 0
    before = {t: files.table_file(t).read_text() for t in files.tables()}
    # a second look at the same data draws the same noise: nothing changes, approvals hold
    assert cli.main(["init", "--source", source, *common, "--tables", "person", "measurement"]) == 0
    assert {t: files.table_file(t).read_text() for t in files.tables()} == before
    assert files.load_table("person").review.status == "approved"
    key = dp_key.key_path(environment.work_dir()).read_text().strip()
    assert all(key not in text for text in before.values())


def test_quantile_scores_are_opendps_and_whole_candidates_are_halves():
    import opendp.prelude as odp

    odp.enable_features("contrib")
    data = [1.0, 2.0, 2.0, 3.0, 7.0, 7.0, 7.0, 12.0]
    candidates = [0.5, 1.5, 2.5, 6.5, 7.5, 20.5]
    # the bucket of a value: how many candidates are at or below it (what bucket_sql counts)
    buckets = {}
    for x in data:
        b = sum(c <= x for c in candidates)
        buckets[b] = buckets.get(b, 0) + 1
    space = odp.vector_domain(odp.atom_domain(T=float, nan=False)), odp.symmetric_distance()
    for alpha in dp.DP_PROBABILITIES:
        ours = dp.quantile_scores(sorted(buckets.items()), candidates, alpha)
        score = odp.t.make_quantile_score_candidates(*space, candidates=candidates, alpha=alpha)
        theirs = np.array(score(data), dtype=float)
        # the same scores up to OpenDP's integer denominator, and so the same sensitivity
        ratio = theirs[ours > 0] / ours[ours > 0]
        assert np.allclose(ratio, ratio[0]) and np.all((ours == 0) == (theirs == 0)), alpha
        assert score.map(1) / ratio[0] == pytest.approx(max(alpha, 1 - alpha))
    for declared in (None, (1850, 2100), (0, 1e6)):
        for c in dp.quantile_candidates(True, declared):
            assert c - np.floor(c) == 0.5  # no whole number, so no row holds a released quantile


def test_the_listing_threshold_keeps_a_lone_value_below_delta():
    import opendp.prelude as odp

    odp.enable_features("contrib")
    domain = odp.map_domain(odp.atom_domain(T=str), odp.atom_domain(T=int))
    metric = odp.l01inf_distance(odp.absolute_distance(T=int))
    for epsilon, delta in ((0.01, 1e-9), (1.0, 1e-7), (5.0, 1e-6)):
        t = dp.listing_threshold(epsilon, delta)

        def spent(threshold, epsilon=epsilon):
            m = odp.m.make_laplace_threshold(domain, metric, scale=1 / epsilon, threshold=threshold)
            return m.map((1, 1, 1))

        assert spent(t)[1] <= delta < spent(t - 1)[1]  # the least threshold that keeps delta
        assert spent(t)[0] == pytest.approx(epsilon)
    # the noise drawn here has the tail OpenDP accounts for: one row reaches t rarely
    budget = dp.PrivacyBudget(
        mechanism="geometric",
        project_epsilon=1.0,
        tables_sharing=1,
        table_epsilon=1.0,
        statistics=1,
        statistic_epsilon=1.0,
        listing_threshold=dp.listing_threshold(1.0, 1e-3),
        spent={"rows": 1.0},
        quantiles="",
    )
    noise = dp.Noise(b"k" * 32, "t", budget)
    draws = noise.counts("x", [1] * 20_000)
    assert sum(d >= noise.threshold for d in draws) <= 20_000 * 1e-3 * 3


def test_a_declared_range_counts_every_value_present_or_not(tmp_path):
    policy = DisclosurePolicy(epsilon=1.0)
    domain = dp.value_domain("year_of_birth", "integer", policy)
    assert domain[0] == 1850 and domain[-1] == 2100
    assert dp.value_domain("quantity", "integer", policy) is None  # only the data know it
    assert dp.value_domain("flag", "boolean", policy) == [False, True]
    counts = dp.in_domain([(1960, 4), (1961.0, 2), ("x", 9), (1700, 3)], domain)
    assert sum(counts) == 6 and counts[1960 - 1850] == 4  # outside the range: left out
    too_wide = DisclosurePolicy(epsilon=1.0, dp_ranges={"n": (0, 10**7)})
    with pytest.raises(Exception, match="dp_ranges"):
        dp.value_domain("n", "integer", too_wide)
    with pytest.raises(ValueError, match="not_noised"):
        DisclosurePolicy(epsilon=1.0, dp_quantiles="not_noised")
    assert DisclosurePolicy(dp_quantiles="not_noised").dp_quantiles == "dp"  # old files load
