"""Compares the runs of a sweep (or of an experiment) without the MLflow UI.

``python -m kerastrack.report`` reads the children of the latest sweep, ranks them by the
monitored value, summarizes each configuration across seeds, and writes a table, CSVs and
a figure of the mean learning curves (± std across seeds) to ``report/<parent id>/``.

Groups are the swept values other than ``seed``, so that ``-m optimizer=sgd,adam
seed=0,1,2`` compares two optimizers, each averaged over three seeds. Standard deviations
are sample standard deviations (ddof=1): a group of one run has none.

Epochs are numbered from 1 in the tables and the figure, as Keras prints them; MLflow's
steps count from 0 (epoch k is step k-1), and what MLflow stores is left as it is.

This module builds the report and owns the command line; ``kerastrack.plots`` draws the
figure, ``kerastrack.report_page`` writes the text tables and the HTML page.
"""

import argparse
import json
import math
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from kerastrack import plots, stats
from kerastrack.config import monitor_mode
from kerastrack.errors import ConfigError
from kerastrack.report_page import html_page, marked, text
from kerastrack.secrets import mask_text
from kerastrack.tracking.query import fetch_parent, fetch_runs
from kerastrack.tracking.store import resolve_tracking_uri

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


def build_report(records, group_keys=None, monitor=None, mode=None, extra_keys=None, title=None, x="epoch"):
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

    Returns:
        A Report.

    Raises:
        ConfigError: No runs, a mode, group key or x that does not exist, or a monitor or
            extra key that no run logged (or epoch_time_s, with ``x="time"``).
    """
    if not records:
        raise ConfigError("There are no runs to report on (check the sweep or the filter). Received: records=[]")
    records = sorted(records, key=_job_order)
    monitor, mode = _monitor_and_mode(records, monitor, mode)
    swept = _swept_keys(records)
    group_keys = _group_keys(records, swept, group_keys)
    table = _run_table(records, swept, monitor, mode)
    labels = {r.run_id: _group_label(r, group_keys) for r in records}
    best = table.iloc[0]
    found = not math.isnan(best[f"best_{monitor}"])
    title = title or _default_title(records)
    heading = f"{title}\n{_varied(records, swept, group_keys)}"
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
        File name -> path: report.png, report.html, runs.csv, groups.csv.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("report.png", "report.html", "runs.csv", "groups.csv")}
    report.figure.savefig(paths["report.png"], dpi=110, bbox_inches="tight")
    page = html_page(report, title or report.title, paths["report.png"].read_bytes(), DDOF)
    paths["report.html"].write_text(page, encoding="utf-8")
    report.table.to_csv(paths["runs.csv"], index=False)
    report.groups.to_csv(paths["groups.csv"], index=False)
    return paths


def format_table(report):
    """The per-run table as plain text, best first, the best run marked with '*'; then,
    when a group has several runs (seeds), each group against the best one."""
    runs = text(marked(report).drop(columns="run_id"))
    if report.groups["n_finished"].max() < 2:
        return runs
    columns = ["group", "n_finished", f"mean_best_{report.monitor}", f"std_best_{report.monitor}", "diff_to_best",
               "ci95_low", "ci95_high", "vs_best"]
    return (f"{runs}\n\nGroups: best_{report.monitor}, mean and std over their runs; the difference to the best "
            f"group with its 95% interval (paired by seed where the seeds match):\n{text(report.groups[columns])}")


def main(argv=None):
    """``python -m kerastrack.report``: writes a report and prints the ranking.

    Args:
        argv: Command-line arguments; None: ``sys.argv[1:]``.

    Returns:
        The exit code: 0, or 2 for bad input (one ``Error:`` line on stderr).
    """
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as exc:
        print(f"Error: {mask_text(str(exc))}", file=sys.stderr)  # e.g. a --tracking-uri with a password
        return 2


# -- the per-run table ------------------------------------------------------------------


def _job_order(record):
    job = record.tags.get("sweep.job", "")
    return (int(job) if job.isdigit() else math.inf, record.start_time or 0)


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


def _swept_keys(records):
    return list(dict.fromkeys(k for r in records for k in _swept_values(r)))  # in the sweep's order


def _swept_values(record):
    try:
        values = json.loads(record.tags.get("sweep.values", "{}"))
    except json.JSONDecodeError:
        return {}
    return {str(k): str(v) for k, v in values.items()} if isinstance(values, dict) else {}


def _group_keys(records, swept, group_keys):
    if group_keys is None:
        return [k for k in swept if k != "seed"] if swept else ["name"]
    known = set(swept) | {"name"} | {k for r in records for k in (*r.params, *r.tags)}
    for key in group_keys:
        if key not in known:
            raise ConfigError(
                f"group key '{key}' is neither a swept key, a param nor a tag of these runs; "
                f"swept keys: {', '.join(swept) or 'none'}. Received: group_keys={list(group_keys)}"
            )
    return list(group_keys)


def _value_of(record, key):
    if key == "name":
        return record.name
    return next((s[key] for s in (_swept_values(record), record.params, record.tags) if key in s), "")


def _default_title(records):
    parents = {r.tags.get("mlflow.parentRunId") for r in records}
    return f"sweep {parents.pop()}" if len(parents) == 1 and None not in parents else f"{len(records)} runs"


def _varied(records, swept, group_keys):
    """What differs between the figure's curves, e.g. "varied: optimizer; seed (3 seeds averaged)"."""
    if group_keys == ["name"]:
        return "one curve per run"
    parts = list(group_keys)
    for key in (k for k in swept if k not in group_keys):
        values = {_swept_values(r)[key] for r in records if key in _swept_values(r)}
        noun = "seeds" if key == "seed" else "values"
        parts.append(f"{key} ({len(values)} {noun} averaged)" if len(values) > 1 else f"{key}={min(values)}")
    # Searches sweep many keys: wrap rather than widen the figure.
    return textwrap.fill(f"varied: {'; '.join(parts) or 'nothing'}", width=110)


def _group_label(record, group_keys):
    if group_keys == ["name"]:
        return record.name
    return ",".join(f"{k}={_value_of(record, k)}" for k in group_keys) or "all runs"


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
        **{k: _swept_values(record).get(k, "") for k in swept},
        "status": record.status,
        f"best_{monitor}": best,
        "best_epoch": best_epoch if best_epoch is pd.NA else best_epoch + 1,  # as Keras numbers it
        f"last_{monitor}": history[-1][1] if history else math.nan,
        "epochs": len(epochs),
        "wall_time_s": math.nan if record.wall_time_s is None else record.wall_time_s,
        **{k: v for k, v in sorted(record.metrics.items()) if k.startswith("test_")},
        "run_id": record.run_id,
    }


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


def _group_table(records, table, group_keys, labels, monitor, mode):
    best = table.set_index("run_id")[f"best_{monitor}"]
    rows = {}
    for record in records:
        row = rows.setdefault(labels[record.run_id], {
            "group": labels[record.run_id],
            **({} if group_keys == ["name"] else {k: _value_of(record, k) for k in group_keys}),
            "n_runs": 0, "n_finished": 0, "n_failed": 0, "bests": {},
        })
        row["n_runs"] += 1
        row["n_failed"] += record.status == "FAILED"
        if record.status == FINISHED:
            row["n_finished"] += 1
            if not math.isnan(best[record.run_id]):  # by seed, for pairing (a repeated seed: by run)
                seed = _value_of(record, "seed")
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




# -- the command line -------------------------------------------------------------------


def _parser():
    parser = argparse.ArgumentParser(
        prog="python -m kerastrack.report",
        description="Compare the runs of a sweep (or an experiment): a ranked table, a summary per "
                    "configuration across seeds, and mean learning curves, written as PNG, HTML and CSV.",
    )
    parser.add_argument("parent", nargs="?", help="the sweep's parent run id, or 'latest' (the default "
                        "unless --experiment is given)")
    parser.add_argument("--experiment", metavar="NAME", help="without parent: report on this experiment's "
                        "runs; with 'latest': the latest sweep in it")
    parser.add_argument("--filter", default="", metavar="EXPR",
                        help="MLflow search filter, e.g. \"metrics.val_accuracy > 0.9\"")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this directory")
    parser.add_argument("--out", metavar="DIR", help="default: report/<parent run id or experiment>")
    parser.add_argument("--monitor", help="the metric to rank by; default: the runs' trainer.monitor")
    parser.add_argument("--mode", metavar="{auto,min,max}", help="default: the runs' trainer.monitor_mode")
    parser.add_argument("--plot", action="append", default=[], metavar="KEY",
                        help="one more panel for this per-epoch metric (repeatable); a glob pattern "
                             "such as 'grad_norm/*' adds a panel for each metric it matches")
    parser.add_argument("--x", default="epoch", metavar="{epoch,time}",
                        help="the figure's x axis: epochs (from 1, as Keras prints them), or seconds "
                             "of training (the summed epoch_time_s); default: epoch")
    return parser


def _run(args):

    uri = resolve_tracking_uri(args.tracking_uri, Path.cwd())
    if args.parent is None and args.experiment is not None:
        source, title = args.experiment, f"Experiment {args.experiment}"
        records = fetch_runs(uri, experiment=args.experiment, filter_string=args.filter)
    else:
        parent = fetch_parent(uri, args.parent or "latest", experiment=args.experiment)
        source, title = parent.run_id, sweep_title(parent)
        records = fetch_runs(uri, parent=parent.run_id, filter_string=args.filter)
    if not records and args.filter:
        raise ConfigError(f"No run of {title} matches the filter. Received: filter={args.filter}")
    if not records:
        raise ConfigError(f"{title} has no runs yet. Received: parent={args.parent}, experiment={args.experiment}")
    report = build_report(records, monitor=args.monitor, mode=args.mode, extra_keys=args.plot, title=title, x=args.x)
    out = Path(args.out) if args.out else Path("report") / re.sub(r"[^\w.-]+", "_", source)
    paths = write_report(report, out)
    print(f"{title}: {len(records)} runs, ranked by {report.monitor} ({report.mode}); * = best; "
          f"epochs from 1, as Keras prints them\n")
    print(format_table(report))
    print("\nGroups (mean ± std over finished runs):\n")
    print(text(report.groups))
    print("\nWrote:", *(f"  {path}" for path in paths.values()), sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
