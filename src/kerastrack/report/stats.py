"""Differences between groups of runs over seeds: each group against the best one, with the
95% confidence interval of the difference (paired by seed when both groups ran the same
seeds), so that a report says when two groups cannot be told apart."""

import math
import warnings

import numpy as np
from scipy import stats

LEVEL = 0.95


def difference_to_best(values, best):
    """A group's mean difference to the best group and the difference's 95% interval.

    Paired (Student's t on the per-seed differences) when both groups ran exactly the same
    seeds, else Welch's t; scipy's tests give the intervals.

    Args:
        values: {seed: value} of the group's finished runs.
        best: {seed: value} of the best group's finished runs.

    Returns:
        (difference, low, high, paired); the bounds are NaN when a group has fewer than 2
        runs.
    """
    if not values or not best:
        return math.nan, math.nan, math.nan, False
    seeds = list(values)
    paired = set(seeds) == set(best) and len(seeds) >= 2
    a = np.array([values[s] for s in seeds])
    b = np.array([best[s] for s in seeds] if paired else list(best.values()))
    difference = float(a.mean() - b.mean())
    if not paired and (len(a) < 2 or len(b) < 2):
        return difference, math.nan, math.nan, False
    with warnings.catch_warnings():  # values (nearly) alike: scipy warns, and gives NaN if all alike
        warnings.simplefilter("ignore", RuntimeWarning)
        test = stats.ttest_rel(a, b) if paired else stats.ttest_ind(a, b, equal_var=False)
        interval = test.confidence_interval(LEVEL)
    if math.isnan(interval.low):  # no spread at all: the interval is the difference itself
        return difference, difference, difference, paired
    return difference, float(interval.low), float(interval.high), paired


def verdict(low, high, is_best):
    """What the interval says of a group against the best: ``best``, ``indistinguishable``
    (it covers 0), ``different``, or ``n < 2`` (no interval)."""
    if is_best:
        return "best"
    if math.isnan(low):
        return "n < 2"
    return "indistinguishable" if low <= 0 <= high else "different"
