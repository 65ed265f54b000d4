"""Every figure kerastrack draws: the learning curves and confusion matrix a run logs at its
end, and the sweep report's mean learning curves per group of runs (``comparison_figure``).

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
# Panels switch to a log y axis when max / min of their curves exceeds this: rates of
# different optimizers and schedules differ by decades, and a loss on its way to diverging
# would otherwise flatten every other curve to a line at the bottom.
LOG_SPREAD, LR_LOG_SPREAD = 100, 9.9
LEGEND_ROWS = 24


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
    x = list(range(len(epochs)))
    for ax, name in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for key, label in ((name, "train"), (f"val_{name}", "validation")):
            if any(key in e for e in epochs):
                ax.plot(x, [e.get(key, float("nan")) for e in epochs], marker=".", label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
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
        y_true, y_pred, labels=list(range(len(class_names))), display_labels=class_names,
        ax=ax, colorbar=False, xticks_rotation=45 if len(class_names) > 4 else "horizontal",
    )
    ax.set_title("test set")
    return ax.figure


def comparison_figure(records, labels, monitor, extra_keys, ddof):
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

    Returns:
        A matplotlib Figure.

    Raises:
        ConfigError: An extra key that no run logged.
    """
    panels = _panels(records, _main_metric(records), monitor, _extra_keys(records, extra_keys))
    columns = 2 if len(panels) > 1 else 1
    rows = math.ceil(len(panels) / columns)
    order = list(dict.fromkeys(labels[r.run_id] for r in records))
    # Searches (Optuna) make one group per trial: wrap the legend rather than overflow,
    # and widen the figure by the legend so that the panels keep their size.
    legend_columns = math.ceil(len(order) / LEGEND_ROWS)
    legend_width = legend_columns * (0.07 * max(len(label) for label in order) + 0.8)
    fig = Figure(figsize=(5.2 * columns + legend_width, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    cmap = matplotlib.colormaps["tab10" if len(order) <= 10 else "tab20"]
    for ax, (key, title) in zip(axes, panels):
        for i, label in enumerate(order):
            group = [r for r in records if labels[r.run_id] == label]
            _plot_group(ax, group, key, cmap(i % cmap.N), f"{label} (n={len(group)})", ddof)
        _style(ax, key, title)
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    handles, legend_labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, legend_labels, loc="outside right center", title="group (runs)", ncols=legend_columns)
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


def _plot_group(ax, group, key, colour, label, ddof):
    curves = pd.concat([finite_series(r, key) for r in group], axis=1).sort_index()
    if curves.empty:
        # Keep the group in this panel's legend even when it logged nothing here.
        ax.plot([], [], color=colour, marker=".", label=label)
        return
    epochs = curves.index.to_numpy(dtype=float)
    mean = curves.mean(axis=1).to_numpy(dtype=float)
    std = curves.std(axis=1, ddof=ddof).to_numpy(dtype=float)
    ax.plot(epochs, mean, color=colour, marker=".", markersize=4, label=label)
    band = np.isfinite(std)
    if band.any():
        ax.fill_between(epochs, mean - std, mean + std, where=band, color=colour, alpha=0.18, linewidth=0)


def _style(ax, key, title):
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(key)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    values = np.concatenate([line.get_ydata() for line in ax.lines] or [[]]).astype(float)
    values = values[np.isfinite(values)]
    spread = values.max() / values.min() if len(values) and values.min() > 0 else 0.0  # 0: not all positive
    if spread > (LR_LOG_SPREAD if key == "learning_rate" else LOG_SPREAD):
        ax.set_yscale("log")
