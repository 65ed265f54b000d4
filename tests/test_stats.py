"""Differences to the best group over seeds, with 95% confidence intervals (scipy's t tests)."""

import math

import pytest
from scipy import stats as scipy_stats

from kerastrack.report.stats import difference_to_best, verdict


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
    # Unequal sizes and spreads, so that Welch's interval differs from Student's pooled one.
    best = {"0": 0.5, "1": 0.1, "2": 0.4, "3": 0.2, "4": 0.3}  # mean 0.3, s^2 = 0.10 / 4 = 0.025
    other = {"5": 0.6, "6": 0.9, "7": 0.9}  # mean 0.8, s^2 = 0.06 / 2 = 0.03
    diff, low, high, paired = difference_to_best(other, best)
    # By hand: s^2/n = 0.03/3 = 0.010 and 0.025/5 = 0.005; se = sqrt(0.015) = 0.122474.
    # Welch-Satterthwaite: df = 0.015^2 / (0.010^2/2 + 0.005^2/4) = 2.25e-4 / 5.625e-5 = 4.
    # t table, 97.5%, 4 df: 2.776. Half width 2.776 * 0.122474 = 0.33999: 0.5 -+ 0.34.
    # (Student's pooled interval: 6 df, t 2.447, se 0.119257, half width 0.2918.)
    assert not paired and diff == pytest.approx(0.5)
    assert (low, high) == pytest.approx((0.16001, 0.83999), abs=1e-4)
    assert verdict(low, high, False) == "different"
    diff, low, high, _ = difference_to_best({"0": 0.45}, best)
    assert diff == pytest.approx(0.15) and math.isnan(low) and verdict(low, high, False) == "n < 2"
    assert verdict(0.0, 0.0, True) == "best"
