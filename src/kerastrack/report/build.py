"""The report's model: a set of runs ranked by their best monitored value, each group of them
summarized across seeds, built into a ``Report`` and written out.

Groups are the swept values other than ``seed``, so that ``-m optimizer=sgd,adam
seed=0,1,2`` compares two optimizers, each averaged over three seeds. Standard deviations
are sample standard deviations (ddof=1): a group of one run has none.

Epochs are numbered from 1 in the tables and the figure, as Keras prints them; MLflow's
steps count from 0 (epoch k is step k-1), and what MLflow stores is left as it is.

With ``best_over=`` (``--best-over KEY``) it adds each group at its best value of a swept
key, e.g. each optimizer at its best learning rate (``kerastrack.report.best_over``).

This module owns the Report, the per-run and per-group tables that build it
(``build_report``), and the files and text it is written as (``write_report``,
``format_table``). ``kerastrack.report.cli`` owns the command line, ``kerastrack.figures.curves``
draws the figure, ``kerastrack.report.page`` renders the text tables and the HTML page.
"""

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from kerastrack.config.checks import monitor_mode
from kerastrack.errors import ConfigError
from kerastrack.figures import curves as plots
from kerastrack.report import best_over as tuning
from kerastrack.report import grouping, stats
from kerastrack.report.page import best_over_text, html_page, marked, text

MODES = ("auto", "min", "max")
DDOF = 1
FINISHED = "FINISHED"


@dataclass
class Report:
    """A comparison of runs.

    Attributes:
        table: One row per run, best first (finished runs before the others).
        groups: One row per group of swept values other than seed: mean and std of the
            best monitored value over the group's finished runs, and run counts.
        best_run_id: The best finished run (the best run if none finished), or None when
            no run logged the monitor.
        best_value: Its best monitored value.
        monitor: The value runs are ranked by, e.g. "val_loss".
        mode: "min" or "max": the direction in which ``monitor`` improves.
        figure: Mean learning curves per group, a matplotlib Figure.
        title: What the report is on: the sweep's name and id, or the runs.
        x: The figure's x axis: "epoch" or "time" (seconds of training).
        best_over: With a tuned key: each group at its best value of it
            (``kerastrack.report.best_over.best_over``), best first; else None.
        best_over_key: That key, e.g. "optimizer.learning_rate", or None.
        best_over_figure: The monitor against that key per group, or None.
    """

    table: pd.DataFrame
    groups: pd.DataFrame
    best_run_id: str | None
    best_value: float
    monitor: str
    mode: str
    figure: Figure
    title: str = "kerastrack report"
    x: str = "epoch"
    best_over: pd.DataFrame | None = None
    best_over_key: str | None = None
    best_over_figure: Figure | None = None


def build_report(
    records, group_keys=None, monitor=None, mode=None, extra_keys=None, title=None, x="epoch", best_over=None
):
    """Ranks runs by their best monitored value and averages each group across seeds.

    Args:
        records: RunRecords with history (``kerastrack.tracking.query.fetch_runs``).
        group_keys: Swept keys (or params, or tags) that define a group. None: the
            ``sweep.values`` keys except "seed"; the run name for runs of no sweep.
        monitor: The metric to rank by. None: the runs' ``trainer.monitor``.
        mode: "min", "max" or "auto". None: the runs' ``trainer.monitor_mode`` when
            ``monitor`` is theirs, else "auto".
        extra_keys: More per-epoch metrics to plot, one panel each after the standard
            ones, e.g. ``["update_per_step", "grad_norm/*"]``: a key may be a glob pattern,
            matched against the metrics the runs logged per epoch.
        title: What the report is on, e.g. ``sweep_title(parent)``. None: the parent run id
            the runs share, else their number.
        x: The figure's x axis: "epoch" (numbered from 1) or "time" (seconds of training:
            the summed ``epoch_time_s``).
        best_over: A swept key to tune over, e.g. "optimizer.learning_rate": the report
            adds each group (its other keys but seed) at the value of it with the best
            mean monitored value over the seeds. None: no such view.

    Returns:
        A Report.

    Raises:
        ConfigError: No runs, a mode, group key or x that does not exist, a monitor or
            extra key that no run logged (or epoch_time_s, with ``x="time"``), or a
            best_over key the runs did not sweep.
    """
    if not records:
        raise ConfigError("There are no runs to report on (check the sweep or the filter). Received: records=[]")
    records = sorted(records, key=grouping.job_order)
    monitor, mode = _monitor_and_mode(records, monitor, mode)
    swept = grouping.swept_keys(records)
    group_keys = grouping.group_keys(records, swept, group_keys)
    if best_over is not None:
        tuning.check_key(best_over, swept)
    table = _run_table(records, swept, monitor, mode)
    labels = {r.run_id: grouping.group_label(r, group_keys) for r in records}
    best = table.iloc[0]
    found = not math.isnan(best[f"best_{monitor}"])
    title = title or grouping.default_title(records)
    heading = f"{title}\n{grouping.varied(records, swept, group_keys)}"
    return Report(
        table=table,
        groups=_group_table(records, table, group_keys, labels, monitor, mode),
        best_run_id=best["run_id"] if found else None,
        best_value=float(best[f"best_{monitor}"]),
        monitor=monitor,
        mode=mode,
        figure=plots.comparison_figure(records, labels, monitor, extra_keys or [], DDOF, heading, x),
        title=title,
        x=x,
        **(_best_over(records, table, group_keys, best_over, monitor, mode, title) if best_over else {}),
    )


def sweep_title(parent):
    """A sweep's title in reports: its parent run's name (swept keys, sweep dir) and id."""
    return f"{parent.name} ({parent.run_id})"


def write_report(report, out_dir, title=None):
    """Writes the figure, an HTML page and the tables as CSV.

    Args:
        report: A Report from ``build_report``.
        out_dir: The directory to write to; created if missing.
        title: The HTML page's title; None: the report's.

    Returns:
        File name -> path: report.png, report.html, runs.csv, groups.csv; with a best_over
        view also best_over.png and best_over.csv.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = ("report.png", "report.html", "runs.csv", "groups.csv")
    paths = {
        name: out / name for name in (*names, *(("best_over.png", "best_over.csv") if report.best_over_key else ()))
    }
    report.figure.savefig(paths["report.png"], dpi=110, bbox_inches="tight")
    if report.best_over_key:
        report.best_over_figure.savefig(paths["best_over.png"], dpi=110, bbox_inches="tight")
        report.best_over.to_csv(paths["best_over.csv"], index=False)
    pngs = [paths[name].read_bytes() for name in ("report.png", "best_over.png") if name in paths]
    page = html_page(report, title or report.title, pngs, DDOF)
    paths["report.html"].write_text(page, encoding="utf-8")
    report.table.to_csv(paths["runs.csv"], index=False)
    report.groups.to_csv(paths["groups.csv"], index=False)
    return paths


def format_table(report):
    """The per-run table as plain text, best first, the best run marked with '*'; then,
    when a group has several runs (seeds), each group against the best one; then, with a
    best_over key, each group at its best value of it."""
    parts = [text(marked(report).drop(columns="run_id"))]
    if report.groups["n_finished"].max() >= 2:
        columns = [
            "group",
            "n_finished",
            f"mean_best_{report.monitor}",
            f"std_best_{report.monitor}",
            "diff_to_best",
            "ci95_low",
            "ci95_high",
            "vs_best",
        ]
        parts.append(
            f"Groups: best_{report.monitor}, mean and std over their runs; the difference to the best "
            f"group with its 95% interval (paired by seed where the seeds match):\n{text(report.groups[columns])}"
        )
    if report.best_over_key:
        parts.append(best_over_text(report))
    return "\n\n".join(parts)


# -- the per-run table ------------------------------------------------------------------


def _monitor_and_mode(records, monitor, mode):
    logged = {r.params.get("trainer.monitor") for r in records} - {None}
    if monitor is None:
        if len(logged) > 1:
            raise ConfigError(
                f"The runs follow different monitors ({', '.join(sorted(logged))}); pass one to "
                f"rank them by (--monitor). Received: monitor=None"
            )
        monitor = logged.pop() if logged else "val_loss"
    if mode is None:
        modes = {r.params.get("trainer.monitor_mode", "auto") for r in records}
        # A logged mode belongs to the logged monitor; for another monitor infer it.
        mode = modes.pop() if logged == {monitor} and len(modes) == 1 else "auto"
    if mode not in MODES:
        raise ConfigError(f"mode must be one of {', '.join(MODES)}. Received: mode={mode}")
    available = sorted({k for r in records for k in r.history})
    if monitor not in available:
        raise ConfigError(
            f"No run logged '{monitor}' per epoch; the runs have: {', '.join(available) or 'nothing'}. "
            f"Received: monitor={monitor}"
        )
    return monitor, monitor_mode(monitor, mode)


def _best(record, monitor, mode):
    values = plots.finite_series(record, monitor).dropna()
    if values.empty:
        return math.nan, pd.NA
    epoch = values.idxmax() if mode == "max" else values.idxmin()  # the first of ties
    return float(values[epoch]), int(epoch)


def _run_row(record, swept, monitor, mode):
    history = record.history.get(monitor, [])
    best, best_epoch = _best(record, monitor, mode)
    epochs = {s for key in ("loss", monitor) for s, _ in record.history.get(key, [])}
    return {
        "name": record.name,
        **{k: grouping.swept_values(record).get(k, "") for k in swept},
        "status": record.status,
        f"best_{monitor}": best,
        "best_epoch": best_epoch if best_epoch is pd.NA else best_epoch + 1,  # as Keras numbers it
        f"last_{monitor}": history[-1][1] if history else math.nan,
        "epochs": len(epochs),
        # Seconds spent training, summed over the epochs on record: MLflow's start-to-end time
        # would count, for a resumed run, the time it was stopped.
        "train_time_s": _train_time(record),
        **{k: v for k, v in sorted(record.metrics.items()) if k.startswith("test_")},
        "run_id": record.run_id,
    }


def _train_time(record):
    times = [v for _, v in record.history.get(plots.TIME_KEY, [])]
    return float(sum(times)) if times else math.nan


def _run_table(records, swept, monitor, mode):
    table = pd.DataFrame([_run_row(r, swept, monitor, mode) for r in records])
    table["best_epoch"] = table["best_epoch"].astype("Int64")
    # Finished runs first: a run that failed after a good epoch is no candidate for "best".
    unfinished = table["status"] != FINISHED
    order = np.lexsort((_rank_key(table[f"best_{monitor}"], mode), unfinished.to_numpy()))
    test_columns = sorted(c for c in table.columns if c.startswith("test_"))
    columns = [c for c in table.columns if c not in (*test_columns, "run_id")] + test_columns + ["run_id"]
    return table.iloc[order][columns].reset_index(drop=True)


def _rank_key(values, mode):
    # Ascending sort key: best first, NaN (never logged a finite value) last.
    key = -values.to_numpy(dtype=float) if mode == "max" else values.to_numpy(dtype=float)
    return np.where(np.isnan(key), np.inf, key)


# -- groups -----------------------------------------------------------------------------


def _best_over(records, table, group_keys, key, monitor, mode, title):
    by_id = {r.run_id: r for r in records}
    keys = [k for k in group_keys if k not in (key, "seed", "name")]
    missing = [k for k in (*keys, "seed") if k not in table]  # group keys that are params or tags
    runs = table.assign(**{k: [grouping.value_of(by_id[i], k) for i in table["run_id"]] for k in missing})
    picks = tuning.best_over(runs, key, keys, monitor, mode, DDOF)
    grid = tuning.value_grid(runs, key, keys, monitor, DDOF)
    return {
        "best_over": picks,
        "best_over_key": key,
        "best_over_figure": tuning.figure(grid, picks, key, monitor, title),
    }


def _group_table(records, table, group_keys, labels, monitor, mode):
    best = table.set_index("run_id")[f"best_{monitor}"]
    rows = {}
    for record in records:
        row = rows.setdefault(
            labels[record.run_id],
            {
                "group": labels[record.run_id],
                **({} if group_keys == ["name"] else {k: grouping.value_of(record, k) for k in group_keys}),
                "n_runs": 0,
                "n_finished": 0,
                "n_failed": 0,
                "bests": {},
            },
        )
        row["n_runs"] += 1
        row["n_failed"] += record.status == "FAILED"
        if record.status == FINISHED:
            row["n_finished"] += 1
            if not math.isnan(best[record.run_id]):  # by seed, for pairing (a repeated seed: by run)
                seed = grouping.value_of(record, "seed")
                row["bests"][seed if seed not in row["bests"] else (seed, record.run_id)] = best[record.run_id]
    for row in rows.values():
        bests = np.array(list(row["bests"].values()))
        row[f"mean_best_{monitor}"] = bests.mean() if len(bests) else math.nan
        row[f"std_best_{monitor}"] = bests.std(ddof=DDOF) if len(bests) > DDOF else math.nan
    groups = pd.DataFrame(list(rows.values()))
    groups = groups.iloc[np.argsort(_rank_key(groups[f"mean_best_{monitor}"], mode), kind="stable")]
    # Each group against the first (the best): the difference and its 95% interval.
    first = groups["bests"].iloc[0]
    diff, low, high, paired = zip(*(stats.difference_to_best(b, first) for b in groups.pop("bests")))
    groups["diff_to_best"], groups["ci95_low"], groups["ci95_high"], groups["paired"] = diff, low, high, paired
    groups["vs_best"] = [stats.verdict(lo, hi, i == 0) for i, (lo, hi) in enumerate(zip(low, high))]
    return groups.reset_index(drop=True)
