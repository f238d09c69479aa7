"""The disclosure rules on their own: every released number obeys k, rounding and coding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from synth_pipeline.core import disclosure as dc

POLICY = dc.DisclosurePolicy()


@pytest.mark.parametrize(
    ("n", "released"),
    [(0, 0), (1, None), (9, None), (10, 10), (12, 10), (13, 15), (2694, 2695), (1037, 1035)],
)
def test_release_count_withholds_below_k_and_rounds(n, released):
    assert dc.release_count(n, POLICY) == released


def test_release_count_never_rounds_below_k():
    policy = dc.DisclosurePolicy(min_cell_count=12, rounding=5)
    assert dc.release_count(12, policy) == 12


def test_fold_frequencies_drops_rare_values_and_withholds_a_small_other():
    pairs = [("a", 500), ("b", 40), ("rare", 3), ("rarer", 1)]
    out = dc.fold_frequencies(pairs, 544, POLICY)
    assert [v for v, _ in out.values] == ["a", "b"]
    assert out.other_count == 0  # 4 rows folded: below k, withheld
    assert any("fewer than k" in n for n in out.notes)
    assert any("withheld" in n for n in out.notes)


def test_fold_frequencies_releases_a_large_other_rounded():
    pairs = [("a", 500)] + [(f"r{i}", 2) for i in range(30)]
    out = dc.fold_frequencies(pairs, 560, POLICY)
    assert out.values == [("a", 500)]
    assert out.other_count == 60


def test_fold_frequencies_caps_the_number_listed():
    policy = dc.DisclosurePolicy(max_listed_values=3)
    out = dc.fold_frequencies([(i, 100 - i) for i in range(10)], 955, policy)
    assert len(out.values) == 3
    assert any("most common" in n for n in out.notes)


def test_quantile_grid_keeps_k_values_beyond_each_end():
    for n in (20, 50, 101, 999, 100_000):
        grid = dc.quantile_grid(n, POLICY)
        assert grid, n
        assert dc.rank_for(grid[0], n) >= POLICY.k
        assert n - dc.rank_for(grid[-1], n) + 1 >= POLICY.k
        ranks = [dc.rank_for(p, n) for p in grid]
        assert all(b - a >= POLICY.k - 1 for a, b in zip(ranks, ranks[1:], strict=False)), (
            n,
            ranks,
        )


def test_quantile_grid_releases_nothing_for_tiny_columns():
    assert dc.quantile_grid(19, POLICY) == []


def test_merge_bins_codes_the_extremes_and_merges_small_bins():
    # one person born in 1907 (aged 109), a few in the 1920s, many later
    counts = (
        [(1907, 1), (1921, 3), (1922, 4), (1925, 6)]
        + [(y, 40) for y in range(1950, 1990)]
        + [(2015, 2)]
    )
    out = dc.merge_bins(counts, POLICY)
    starts = [a for a, _, _ in out.bins]
    ends = [b for _, b, _ in out.bins]
    assert min(starts) > 1907  # the raw minimum never leaves
    assert max(ends) < 2015  # nor the raw maximum
    assert all(c >= POLICY.k for _, _, c in out.bins)
    assert any("coded" in n for n in out.notes)


def _one_sided_support(counts, bins, k):
    """Every inner edge is on the grid or has at least k rows on the key either side of it."""
    held = dict(counts)
    for (_, end, _), (start, _, _) in zip(bins, bins[1:], strict=False):
        assert start == end + 1  # contiguous: no gap shows empty keys
        assert start % dc.YEAR_GRID == 0 or (held.get(end, 0) >= k and held.get(start, 0) >= k)


def test_bin_edges_are_never_years_few_people_hold():
    # sparse early years, one person in 1937 and one in 1993, dense 1950s-1980s
    counts = (
        [(y, 3) for y in range(1920, 1950) if y != 1937]
        + [(1937, 1)]
        + [(y, 40) for y in range(1950, 1990)]
        + [(1993, 1), (2015, 2)]
    )
    out = dc.merge_bins(counts, POLICY)
    _one_sided_support(counts, out.bins, POLICY.k)
    edges = {a for a, _, _ in out.bins} | {b for _, b, _ in out.bins}
    assert not edges & {1937, 1993, 2015}
    assert all(c >= POLICY.k for _, _, c in out.bins)
    # the sparse years are cut on the 5-year grid, the dense ones year by year
    assert (1940, 1944, 15) in out.bins and (1960, 1960, 40) in out.bins


def test_a_bin_never_starts_at_a_lone_year_at_the_bottom_code():
    # the k-th smallest birth year is 1931, held by one person: the first bin starts on the grid
    counts = [(1925, 9), (1931, 1)] + [(y, 20) for y in range(1932, 1960)]
    out = dc.merge_bins(counts, POLICY)
    assert out.bins[0][0] == 1930 and out.bins[0][2] >= POLICY.k


def test_children_per_parent_bins_cut_on_powers_of_two():
    counts = [(1, 500), (2, 100), (3, 40), (4, 12), (5, 3), (6, 9), (7, 2), (30, 1)]
    out = dc.merge_bins(counts, POLICY, dc.POWERS_OF_TWO)
    assert out.bins == [(1, 1, 500), (2, 2, 100), (3, 3, 40), (4, 7, 25)]


def test_merge_bins_withholds_a_tiny_distribution():
    out = dc.merge_bins([(2001, 3), (2002, 4)], POLICY)
    assert out.bins == []


def test_release_shares_withholds_small_categories():
    counts, notes = dc.release_shares([100, 3, 0, 57], POLICY)
    assert counts == [100, 0, 0, 55]
    assert notes


def test_policy_rejects_k_below_one_and_crossed_percentiles():
    with pytest.raises(ValueError):
        dc.DisclosurePolicy(min_cell_count=0)
    with pytest.raises(ValueError):
        dc.DisclosurePolicy(low_percentile=40, high_percentile=30)


def test_never_list_patterns_match_source_values_and_free_text():
    assert POLICY.never_listed("person_source_value")
    assert POLICY.never_listed("NOTE_TEXT")
    assert not POLICY.never_listed("gender_concept_id")


def test_quantile_windows_stay_clear_of_the_extremes():
    for k in (5, 10, 25):
        policy = dc.DisclosurePolicy(min_cell_count=k)
        for n in (2 * k, 3 * k + 1, 101, 5_000):
            for p in dc.quantile_grid(n, policy):
                first, last = dc.quantile_window(dc.rank_for(p, n), n, k)
                assert last - first + 1 == k
                # the k/2 smallest and largest values never enter a released quantile
                assert first > k // 2 and last <= n - k // 2, (k, n, p, first, last)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 50_000), min_size=10, max_size=10, unique=True),
    st.integers(0, 3),
)
def test_a_window_mean_is_never_one_of_its_distinct_values(millis, decimals):
    values = sorted(m / 10**decimals for m in millis)
    released = dc.window_mean(values, integer=False)
    assert released not in values
    assert values[0] <= released <= values[-1]


def test_a_window_of_ties_releases_the_tied_value():
    assert dc.window_mean([7.5] * 10, integer=False) == 7.5
    assert dc.window_mean([1912] * 10, integer=True) == 1912  # k rows hold it


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(1900, 1930), min_size=10, max_size=10))
def test_an_integer_window_mean_is_a_value_of_the_window_only_when_k_rows_hold_it(values):
    released = dc.window_mean(values, integer=True)
    assert min(values) <= released <= max(values)
    if released in values:
        assert values.count(released) == len(values)  # every one of the k values


def test_an_integer_mean_on_a_single_row_moves_to_a_midpoint():
    # the rounded mean 1911 is the one row holding 1911: the half between it and 1912 leaves
    assert dc.window_mean([1909, 1910, 1910, 1911] + [1912] * 6, integer=True) == 1911.5
    # neighbours further apart: a whole midpoint, which no row holds either
    assert dc.window_mean([5] * 5 + [9] * 5, integer=True) == 7
