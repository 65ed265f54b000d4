"""Each group at its best value of one swept key: "compare at each one's best, not at defaults".

Choi et al. 2019 ("On Empirical Comparisons of Optimizers for Deep Learning") show that the
ranking of optimizers follows the tuning protocol; Wilson et al. 2017 tune each one's
learning rate on the same kind of grid and widen it when the best rate sits at an edge. A
sweep over ``optimizer × optimizer.learning_rate × seed`` gives both: for each group (the
swept keys but seed and the tuned key) this picks the value with the best *mean validation
value over the seeds*, never a test value or a single seed, and reports the test values
at that value, the difference to the best group (``kerastrack.report.stats``, paired by seed) and
whether the pick sits at an edge of the values the group ran.

The functions work on the report's per-run table (one row per run: the group keys, the
tuned key, seed, status, ``best_<monitor>`` and the ``test_*`` metrics). This module owns the
key's check (``check_key``), the grid of mean values (``value_grid``), the picks
(``best_over``) and their figure (``figure``); ``kerastrack.report.build`` adds them to a Report.
"""

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

from kerastrack.errors import ConfigError
from kerastrack.report import stats

FINISHED = "FINISHED"
# Means that differ by float rounding only (the same values summed in another order) tie.
TIE_TOLERANCE = 1e-12
# The figure's y axis is logarithmic when every value is positive and the largest is more
# than this times the smallest: a loss at a bad rate (2.3, chance) would flatten the picks.
LOG_Y_SPREAD = 3


def check_key(key, swept):
    """Refuses a key that the sweep did not vary (or seed, which is averaged over).

    Raises:
        ConfigError: ``key`` is not a swept key other than seed.
    """
    if key not in swept or key == "seed":
        choices = ", ".join(k for k in swept if k != "seed") or "none"
        raise ConfigError(
            f"best_over must be a key the sweep varied, other than seed; these runs varied: "
            f"{choices}. Received: best_over={key}"
        )


def test_counterpart(monitor, columns):
    """The test metric of a validation monitor, e.g. val_loss -> test_loss, when logged."""
    name = f"test_{monitor.removeprefix('val_')}"
    return name if monitor.startswith("val_") and name in columns else None


def value_grid(runs, key, group_keys, monitor, ddof=1):
    """One row per group and value of ``key``: the monitor's mean and std over the seeds.

    Args:
        runs: The per-run table (``kerastrack.report.build.Report.table``) with a column per key.
        key: The tuned key, e.g. "optimizer.learning_rate".
        group_keys: The keys that define a group (not ``key``, not seed).
        monitor: The monitored metric; the table has ``best_<monitor>``.
        ddof: Delta degrees of freedom of the standard deviations.

    Returns:
        A DataFrame: group, the group keys, ``key``, n_runs, n (finished runs with a finite
        monitor), complete (every run of the value finished with a finite monitor), the
        mean and std of ``best_<monitor>`` and of its test counterpart, and ``bests``
        (seed -> monitor) and ``tests`` (seed -> test value) for the intervals.
    """
    best, test = f"best_{monitor}", test_counterpart(monitor, runs.columns)
    rows = []
    for (label, value), part in runs.groupby([_labels(runs, group_keys), runs[key]], sort=False):
        usable = part[(part["status"] == FINISHED) & part[best].notna()]
        seeds = _seed_keys(usable)
        values = dict(zip(seeds, usable[best]))
        tests = dict(zip(seeds, usable[test])) if test else {}
        rows.append(
            {
                "group": label,
                **part.iloc[0][group_keys].to_dict(),
                key: value,
                "n_runs": len(part),
                "n": len(usable),
                "complete": len(usable) == len(part),
                f"mean_best_{monitor}": _mean(values),
                f"std_best_{monitor}": _std(values, ddof),
                **({f"mean_{test}": _mean(tests), f"std_{test}": _std(tests, ddof)} if test else {}),
                "bests": values,
                "tests": tests,
            }
        )
    return pd.DataFrame(rows)


def best_over(runs, key, group_keys, monitor, mode, ddof=1):
    """Each group at the value of ``key`` with the best mean monitored value over its seeds.

    Only a value whose every run finished with a finite monitor can be picked: a rate at
    which one seed diverged is no candidate, however good the others were. Ties (means
    equal up to float rounding) go to the value first in the grid's order (the smallest,
    for numbers) and are listed in ``ties``.

    Args:
        runs: The per-run table (``kerastrack.report.build.Report.table``) with a column per key.
        key: The tuned key, e.g. "optimizer.learning_rate".
        group_keys: The keys that define a group (not ``key``, not seed).
        monitor: The monitored metric, a validation value such as "val_loss".
        mode: "min" or "max": the direction in which ``monitor`` improves.
        ddof: Delta degrees of freedom of the standard deviations.

    Returns:
        A DataFrame, best group first: group, the group keys, ``key`` (the pick), grid
        (the values the group ran, in order), edge ("low" or "high" when the pick is the
        smallest or largest numeric value, "" inside, "-" for values that are no
        numbers), ties, left_out (values with a run that did not finish), n, the mean and
        std of ``best_<monitor>`` and of the test metrics at the pick, and each group
        against the best on the monitor (diff_to_best, ci95_low, ci95_high, paired,
        vs_best) and on its test counterpart (test_diff_to_best, ..., test_vs_best).
    """
    grid = value_grid(runs, key, group_keys, monitor, ddof)
    tests = sorted(c for c in runs.columns if c.startswith("test_"))
    rows = [
        _pick(part, runs, key, group_keys, monitor, mode, tests, ddof) for _, part in grid.groupby("group", sort=False)
    ]
    picks = pd.DataFrame(rows)
    score = picks[f"mean_best_{monitor}"].to_numpy(dtype=float) * (-1 if mode == "max" else 1)
    picks = picks.iloc[np.argsort(np.where(np.isnan(score), np.inf, score), kind="stable")].reset_index(drop=True)
    for prefix, column in (("", "bests"), ("test_", "tests")):
        first = picks[column].iloc[0]
        diff, low, high, paired = zip(*(stats.difference_to_best(v, first) for v in picks.pop(column)))
        picks[f"{prefix}diff_to_best"], picks[f"{prefix}ci95_low"], picks[f"{prefix}ci95_high"] = diff, low, high
        if not prefix:
            picks["paired"] = paired
        picks[f"{prefix}vs_best"] = [stats.verdict(lo, hi, i == 0) for i, (lo, hi) in enumerate(zip(low, high))]
    if test_counterpart(monitor, runs.columns) is None:  # nothing to compare on the test set
        picks = picks.drop(columns=["test_diff_to_best", "test_ci95_low", "test_ci95_high", "test_vs_best"])
    return picks


def figure(grid, picks, key, monitor, title=None):
    """The monitor (and its test counterpart) against ``key``, one line per group (mean ±
    std over the seeds), each group's pick ringed; a log x axis for positive numbers."""
    test = next((c.removeprefix("mean_") for c in grid.columns if c.startswith("mean_test_")), None)
    panels = [(f"best_{monitor}", f"validation: best {monitor} (picked by)")]
    panels += [(test, f"test: {test} (the same runs, weights at their end)")] if test else []
    fig = Figure(figsize=(5.2 * len(panels) + 2.4, 4.0), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    order = _grid_order(grid[key])
    numeric = _numeric(grid[key]) and all(float(v) > 0 for v in grid[key])
    for index, label in enumerate(picks["group"]):  # best first, as in the table
        part = grid[grid["group"] == label].set_index(key)
        part = part.loc[[v for v in order if v in part.index]]
        x = part.index.astype(float) if numeric else [order.index(v) for v in part.index]
        pick = picks.loc[picks["group"] == label, key].iloc[0]
        for ax, (column, _) in zip(axes, panels):
            line = ax.errorbar(
                x,
                part[f"mean_{column}"],
                yerr=part[f"std_{column}"].fillna(0),
                capsize=3,
                marker="os^Dv"[index % 5],
                linestyle="-" if index < 5 else "--",
                label=label,
                ms=4,
            )
            if isinstance(pick, str) and pick in part.index:
                at = float(pick) if numeric else order.index(pick)
                ax.plot([at], [part.loc[pick, f"mean_{column}"]], "o", ms=11, mfc="none", color=line[0].get_color())
    for ax, (_, heading) in zip(axes, panels):
        ax.set_title(heading, fontsize=10)
        ax.set_xlabel(key)
        if numeric:
            ax.set_xscale("log")
        else:
            ax.set_xticks(range(len(order)), order)
        low, high = ax.dataLim.y0, ax.dataLim.y1
        if low > 0 and high > LOG_Y_SPREAD * low:  # the picks sit at the bottom, where groups differ by little
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 4.0, 6.0)))
            ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
            ax.yaxis.set_minor_formatter(NullFormatter())
        ax.grid(alpha=0.3, which="both")
    axes[-1].legend(fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle(
        f"{title + chr(10) if title else ''}best of each group over {key}: ring = pick "
        f"(best mean validation value over seeds); mean ± std over seeds",
        fontsize=9,
    )
    return fig


def _pick(part, runs, key, group_keys, monitor, mode, tests, ddof):
    order = _grid_order(part[key])
    part = part.set_index(key).loc[order]
    candidates = part[part["complete"] & part["n"].gt(0)][f"mean_best_{monitor}"]
    row = {"group": part["group"].iloc[0], **part.iloc[0][group_keys].to_dict()}
    left_out = ", ".join(v for v in order if not part.loc[v, "complete"])
    if candidates.empty:
        return {
            **row,
            key: "",
            "grid": ", ".join(order),
            "edge": "",
            "ties": "",
            "left_out": left_out,
            "n": 0,
            f"mean_best_{monitor}": math.nan,
            "bests": {},
            "tests": {},
        }
    top = candidates.max() if mode == "max" else candidates.min()
    tied = [v for v, m in candidates.items() if math.isclose(m, top, rel_tol=TIE_TOLERANCE, abs_tol=0)]
    pick = tied[0]  # the first of the grid's order: the smallest number
    at = runs[(_labels(runs, group_keys) == row["group"]) & (runs[key] == pick)]
    return {
        **row,
        key: pick,
        "grid": ", ".join(order),
        "edge": _edge(pick, order),
        "ties": ", ".join(tied[1:]),
        "left_out": left_out,
        "n": int(part.loc[pick, "n"]),
        f"mean_best_{monitor}": part.loc[pick, f"mean_best_{monitor}"],
        f"std_best_{monitor}": part.loc[pick, f"std_best_{monitor}"],
        **{
            name: value
            for t in tests
            for name, value in ((f"mean_{t}", at[t].mean()), (f"std_{t}", at[t].std(ddof=ddof)))
        },
        "bests": part.loc[pick, "bests"],
        "tests": part.loc[pick, "tests"],
    }


def _labels(runs, group_keys):
    if not group_keys:
        return pd.Series("all runs", index=runs.index)
    return runs[group_keys].astype(str).apply(lambda r: ",".join(f"{k}={v}" for k, v in r.items()), axis=1)


def _seed_keys(usable):
    # By seed, for pairing; a repeated seed by run.
    keys = []
    for seed, run_id in zip(usable["seed"], usable["run_id"]):
        keys.append(seed if seed not in keys else (seed, run_id))
    return keys


def _mean(values):
    return float(np.mean(list(values.values()))) if values else math.nan


def _std(values, ddof):
    return float(np.std(list(values.values()), ddof=ddof)) if len(values) > ddof else math.nan


def _numeric(values):
    try:
        [float(v) for v in values]
    except (TypeError, ValueError):
        return False
    return True


def _grid_order(values):
    """The values, distinct: sorted as numbers when they all are, else in the sweep's order."""
    distinct = list(dict.fromkeys(values))
    return sorted(distinct, key=float) if _numeric(distinct) else distinct


def _edge(pick, order):
    if not _numeric(order):
        return "-"
    if len(order) == 1:
        return "only value"
    return "low" if pick == order[0] else "high" if pick == order[-1] else ""
