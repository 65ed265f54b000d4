"""Differences to the best group over seeds, with 95% confidence intervals (scipy's t tests)."""

import math

import pytest
from scipy import stats as scipy_stats

from kerastrack.stats import difference_to_best, verdict


def test_groups_with_the_same_seeds_are_compared_pair_by_pair():
    best = {"0": 0.40, "1": 0.50, "2": 0.45}
    worse = {"0": 0.42, "1": 0.53, "2": 0.46}  # worse by 0.01-0.03 on every seed
    diff, low, high, paired = difference_to_best(worse, best)
    assert paired and diff == pytest.approx(0.02)
    t = scipy_stats.t.ppf(0.975, 2)
    half = t * scipy_stats.tstd([0.02, 0.03, 0.01]) / math.sqrt(3)
    assert (low, high) == pytest.approx((0.02 - half, 0.02 + half))
    assert verdict(low, high, False) == "indistinguishable"  # 3 seeds: the interval is wide
    diff, low, high, _ = difference_to_best({"0": 0.42, "1": 0.52, "2": 0.47}, best)  # +0.02 on every seed
    assert (diff, low, high) == pytest.approx((0.02, 0.02, 0.02)) and verdict(low, high, False) == "different"


def test_unpaired_groups_use_welchs_interval_and_single_runs_get_none():
    best, other = {"0": 0.1, "1": 0.2, "2": 0.15}, {"3": 0.5, "4": 0.6, "5": 0.55}
    diff, low, high, paired = difference_to_best(other, best)
    expected = scipy_stats.ttest_ind([0.5, 0.6, 0.55], [0.1, 0.2, 0.15], equal_var=False).confidence_interval()
    assert not paired and diff == pytest.approx(0.4) and (low, high) == pytest.approx(tuple(expected))
    assert verdict(low, high, False) == "different"
    diff, low, high, _ = difference_to_best({"0": 0.3}, best)
    assert diff == pytest.approx(0.15) and math.isnan(low) and verdict(low, high, False) == "n < 2"
    assert verdict(0.0, 0.0, True) == "best"
