"""The learning-curve figures: the learning curves and confusion matrix a run logs at its end,
and the sweep report's mean learning curves per group of runs (``comparison_figure``).

Figures are made as ``matplotlib.figure.Figure``, not with pyplot: they need no backend or
display (servers, sweeps), nothing has to close them, and importing this module (the report
does) leaves a notebook's pyplot backend alone.
"""

import fnmatch
import math
import re

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from kerastrack.errors import ConfigError

# Keys that are logged every epoch but are not a model metric.
NOT_METRICS = ("loss", "learning_rate", "epoch_time_s")
TIME_KEY = "epoch_time_s"
# The report's x axes: epochs numbered as Keras prints them ("Epoch 1/N"; MLflow's steps
# count from 0), or seconds of training (the epochs' summed epoch_time_s).
X_LABELS = {"epoch": "epoch", "time": "training time (s, cumulative epoch_time_s)"}
# The rule for a log y axis: every finite value of the panel's curves is positive (a log
# axis would drop a zero or a negative loss, e.g. cosine similarity's) and the largest is
# more than the panel's spread times the smallest. For a loss that is 30x, about 1.5
# decades: a loss falling from 3 to 0.05, or a diverging one, would otherwise flatten every
# other curve to a line at the bottom. Learning rates of different optimizers and schedules
# differ by decades: 10x is enough. Other metrics need 100x, so that an accuracy rising
# from near zero keeps its linear axis.
LOSS_LOG_SPREAD, LR_LOG_SPREAD, LOG_SPREAD = 30, 9.9, 100
LEGEND_ROWS = 24
# Each group differs in colour, line style and hollow marker, so that curves that coincide
# (two optimizers that are the same on this problem) both stay visible: a dashed line over
# a solid one shows both, and hollow markers of different shapes show through each other.
# 4 styles and 7 markers (coprime) make 28 pairs before one repeats.
LINESTYLES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")
# About this many markers per curve, each group's shifted by one epoch against the last.
MARKS_PER_CURVE = 8


def learning_curves(epochs, metric_names):
    """Loss, each metric (train and validation) and the learning rate per epoch.

    Args:
        epochs: One dict of logged values per epoch (EpochLogger.epochs).
        metric_names: Metric names besides the loss, e.g. ["accuracy"].

    Returns:
        A matplotlib Figure.
    """
    panels = ["loss", *metric_names, "learning_rate"]
    fig = Figure(figsize=(4.2 * len(panels), 3.4), layout="tight")
    x = list(range(1, len(epochs) + 1))  # as Keras prints them: "Epoch 1/N"
    for ax, name in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            if any(key in e for e in epochs):
                ax.plot(x, [e.get(key, float("nan")) for e in epochs], marker=".", label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        _epoch_ticks(ax, len(epochs))
        if name == "learning_rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        elif len(ax.lines) > 1:
            ax.legend()
        ax.grid(alpha=0.3)
    return fig


def confusion_matrix(y_true, y_pred, class_names):
    """A confusion matrix of test-set predictions (rows: true class, columns: predicted)."""
    from sklearn.metrics import ConfusionMatrixDisplay  # here, not on top: the report needs no sklearn (0.7 s)

    size = max(4.0, 0.45 * len(class_names) + 2)
    ax = Figure(figsize=(size, size), layout="tight").subplots()
    ConfusionMatrixDisplay.from_predictions(
        y_true,
        y_pred,
        labels=list(range(len(class_names))),
        display_labels=class_names,
        ax=ax,
        colorbar=False,
        xticks_rotation=45 if len(class_names) > 4 else "horizontal",
    )
    ax.set_title("test set")
    return ax.figure


def comparison_figure(records, labels, monitor, extra_keys, ddof, title=None, x="epoch"):
    """Mean learning curves of each group of runs, ± one standard deviation across the group.

    A panel for the train and validation loss, the runs' main metric, ``monitor``, the
    learning rate and each extra key, if a run logged it. Each epoch's mean is over the runs
    of the group that reached it (early stopping) with a finite value.

    Args:
        records: RunRecords with history; the legend lists their groups in this order.
        labels: Run id -> its group's label.
        monitor: The metric the runs are ranked by; always plotted.
        extra_keys: More per-epoch metrics to plot: names or glob patterns.
        ddof: The standard deviation's delta degrees of freedom (1: a group of one has no band).
        title: The figure's title (lines), e.g. the sweep and what it varied; None: none.
        x: "epoch" (numbered from 1) or "time": the group's mean epoch_time_s summed over
            the epochs, in seconds.

    Returns:
        A matplotlib Figure.

    Raises:
        ConfigError: An extra key that no run logged, an unknown ``x``, or ``x="time"``
            when no run logged epoch_time_s.
    """
    _check_x(records, x)
    panels = _panels(records, _main_metric(records), monitor, _extra_keys(records, extra_keys))
    columns = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / columns)
    order = list(dict.fromkeys(labels[r.run_id] for r in records))
    # Searches (Optuna) make one group per trial: wrap the legend rather than overflow,
    # and widen the figure by the legend so that the panels keep their size.
    legend_columns = math.ceil(len(order) / LEGEND_ROWS)
    legend_width = legend_columns * (0.07 * max(len(label) for label in order) + 0.8)
    fig = Figure(figsize=(5.2 * columns + legend_width, 3.6 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    cmap = matplotlib.colormaps["tab10" if len(order) <= 10 else "tab20"]
    for ax, (key, panel_title) in zip(axes, panels):
        for i, label in enumerate(order):
            group = [r for r in records if labels[r.run_id] == label]
            style = {
                "color": cmap(i % cmap.N),
                "linestyle": LINESTYLES[i % len(LINESTYLES)],
                "marker": MARKERS[i % len(MARKERS)],
                "label": f"{label} (n={len(group)})",
            }
            _plot_group(ax, group, key, style, i, ddof, x)
        _style(ax, key, panel_title, x)
    for ax in axes[len(panels) :]:
        ax.set_visible(False)
    if title:
        fig.suptitle(title, fontsize="large")
    handles, legend_labels = axes[0].get_legend_handles_labels()
    fig.legend(
        handles, legend_labels, loc="outside right center", title="group (runs)", ncols=legend_columns, handlelength=3
    )  # long enough to show a dash-dot
    return fig


def finite_series(record, key):
    """A run's values of ``key`` by epoch, with NaN where a value is NaN or infinite."""
    points = record.history.get(key, [])
    steps = pd.Index([s for s, _ in points], dtype="int64")
    values = pd.Series([v for _, v in points], index=steps, dtype=float)
    return values.where(np.isfinite(values)).groupby(level=0).last()


def _main_metric(records):
    """The validation key of the runs' first metric, e.g. "val_accuracy", or None."""
    logged = {k for r in records for k in r.history}
    for record in records:
        # Params are str(list) of the config, e.g. "['accuracy', 'auc']"; "None" means default.
        value = record.params.get("trainer.metrics") or ""
        for name in re.findall(r"[\w.-]+", value) if value.startswith("[") else []:
            if f"val_{name}" in logged:
                return f"val_{name}"
    candidates = sorted(k for k in logged if k.startswith("val_") and k[4:] not in NOT_METRICS)
    return candidates[0] if candidates else None


def _extra_keys(records, patterns):
    """The logged per-epoch keys that ``patterns`` (names or globs) match, in pattern order."""
    logged = sorted({k for r in records for k, points in r.history.items() if points})
    keys = {}
    for pattern in patterns:
        found = fnmatch.filter(logged, pattern)
        if not found:
            raise ConfigError(
                f"No run logged a per-epoch metric matching '{pattern}' to plot; the runs have: "
                f"{', '.join(logged) or 'nothing'}. Received: extra_keys={list(patterns)}"
            )
        keys.update(dict.fromkeys(found))
    return list(keys)


def _panels(records, main_metric, monitor, extra):
    panels = [("loss", "train loss"), ("val_loss", "validation loss")]
    for key in dict.fromkeys(k for k in (main_metric, monitor) if k not in (None, "loss", "val_loss")):
        panels.append((key, key.replace("val_", "validation ", 1)))  # the ranking is always plotted
    panels.append(("learning_rate", "learning rate"))
    panels += [(key, key) for key in extra if key not in {k for k, _ in panels}]
    return [(key, title) for key, title in panels if any(r.history.get(key) for r in records)]


def _check_x(records, x):
    if x not in X_LABELS:
        raise ConfigError(f"x must be one of {', '.join(X_LABELS)}. Received: x={x}")
    if x == "time" and not any(r.history.get(TIME_KEY) for r in records):
        raise ConfigError(
            f"No run logged {TIME_KEY} per epoch to plot against time; plot against epochs instead. Received: x={x}"
        )


def _x_values(group, steps, x):
    """The x of each of ``steps`` (MLflow's 0-based steps) for a group's curve."""
    if x == "epoch":
        return steps + 1.0  # as Keras prints them: "Epoch 1/N"
    seconds = pd.concat([finite_series(r, TIME_KEY) for r in group], axis=1).mean(axis=1)
    # The group's mean epoch time summed epoch by epoch always rises, where the mean of each
    # run's own summed time would step back when a slow run stops early. An epoch without
    # a time leaves the time of every later one unknown (NaN: not drawn).
    epochs = range(int(steps.max()) + 1 if len(steps) else 0)
    return seconds.reindex(epochs).cumsum(skipna=False).reindex(steps).to_numpy(dtype=float)


def _plot_group(ax, group, key, style, index, ddof, x):
    line = {"markersize": 5, "markerfacecolor": "none", "linewidth": 1.5, **style}
    curves = pd.concat([finite_series(r, key) for r in group], axis=1).sort_index()
    if curves.empty:
        # Keep the group in this panel's legend even when it logged nothing here.
        ax.plot([], [], **line)
        return
    xs = _x_values(group, curves.index.to_numpy(dtype=float), x)
    mean = curves.mean(axis=1).to_numpy(dtype=float)
    std = curves.std(axis=1, ddof=ddof).to_numpy(dtype=float)
    known = np.isfinite(xs)
    xs, mean, std = xs[known], mean[known], std[known]
    every = max(1, round(len(xs) / MARKS_PER_CURVE))
    ax.plot(xs, mean, markevery=(index % every, every), **line)
    band = np.isfinite(std) & np.isfinite(mean)
    if band.any():
        ax.fill_between(xs, mean - std, mean + std, where=band, color=style["color"], alpha=0.15, linewidth=0)


def _style(ax, key, title, x):
    ax.set_title(title)
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel(key)
    if x == "epoch":
        _epoch_ticks(ax, max((max(line.get_xdata(), default=0) for line in ax.lines), default=0))
    ax.grid(alpha=0.3)
    values = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in ax.lines] or [[]])
    values = values[np.isfinite(values)]
    positive = len(values) and values.min() > 0
    spread = LR_LOG_SPREAD if key == "learning_rate" else LOSS_LOG_SPREAD if "loss" in key else LOG_SPREAD
    if positive and values.max() / values.min() > spread:
        ax.set_yscale("log")


def _epoch_ticks(ax, last):
    """Ticks at epoch 1 (as Keras counts, the first) and at round epochs up to ``last``."""
    step = MaxNLocator(nbins=6, integer=True, steps=[1, 2, 5, 10]).tick_values(1, max(last, 1))
    step = int(step[1] - step[0]) if len(step) > 1 else 1
    ax.set_xticks([1, *range(step, int(last) + 1, step)] if step > 1 else range(1, int(last) + 1))
