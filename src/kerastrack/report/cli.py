"""The report's command line, ``python -m kerastrack.report``.

It reads the children of the latest sweep (or of a given one, or an experiment's runs),
ranks them by the monitored value, summarizes each configuration across seeds, prints the
tables and writes them as CSVs, with a figure of the mean learning curves (± std across
seeds) and an HTML page, to ``report/<parent id>/``.

This module owns the command line only: its arguments (argparse, its refusals as one
``Error:`` line), which runs they select, and what it prints; ``kerastrack.report.build``
builds the report from the runs (``build_report``) and writes it (``write_report``).
"""

import argparse
import re
import sys
from pathlib import Path

from kerastrack.errors import ConfigError
from kerastrack.figures.curves import X_LABELS
from kerastrack.report.build import MODES, build_report, format_table, sweep_title, write_report
from kerastrack.report.page import text
from kerastrack.tracking.query import fetch_parent, fetch_runs
from kerastrack.tracking.store import resolve_tracking_uri
from kerastrack.utils.secrets import mask_text


class _Parser(argparse.ArgumentParser):
    """argparse, its refusals (a value not among an option's ``choices``, an unknown option) as the
    house's one ``Error:`` line and exit code 2, instead of its usage text and ``SystemExit``."""

    def error(self, message):
        # argparse's message names the option, the value and what works, e.g. "argument --mode:
        # invalid choice: 'up' (choose from 'auto', 'min', 'max')".
        raise ConfigError(message)


def main(argv=None):
    """``python -m kerastrack.report``: writes a report and prints the ranking.

    Args:
        argv: Command-line arguments; None: ``sys.argv[1:]``.

    Returns:
        The exit code: 0, or 2 for bad input (one ``Error:`` line on stderr).
    """
    try:
        return _run(_parser().parse_args(argv))
    except ConfigError as exc:
        print(f"Error: {mask_text(str(exc))}", file=sys.stderr)  # e.g. a --tracking-uri with a password
        return 2


def _parser():
    parser = _Parser(
        prog="python -m kerastrack.report",
        description="Compare the runs of a sweep (or an experiment): a ranked table, a summary per "
        "configuration across seeds, and mean learning curves, written as PNG, HTML and CSV.",
    )
    parser.add_argument(
        "parent", nargs="?", help="the sweep's parent run id, or 'latest' (the default unless --experiment is given)"
    )
    parser.add_argument(
        "--experiment",
        metavar="NAME",
        help="without parent: report on this experiment's runs; with 'latest': the latest sweep in it",
    )
    parser.add_argument(
        "--filter", default="", metavar="EXPR", help='MLflow search filter, e.g. "metrics.val_accuracy > 0.9"'
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this directory",
    )
    parser.add_argument("--out", metavar="DIR", help="default: report/<parent run id or experiment>")
    parser.add_argument("--monitor", help="the metric to rank by; default: the runs' trainer.monitor")
    parser.add_argument("--mode", choices=MODES, help="default: the runs' trainer.monitor_mode")
    parser.add_argument(
        "--plot",
        action="append",
        default=[],
        metavar="KEY",
        help="one more panel for this per-epoch metric (repeatable); a glob pattern "
        "such as 'grad_norm/*' adds a panel for each metric it matches",
    )
    parser.add_argument(
        "--best-over",
        metavar="KEY",
        help="a swept key to tune over, e.g. optimizer.learning_rate: each group (its other "
        "swept keys but seed) at the value with the best mean monitored value over the "
        "seeds, its test values there, and whether it sits at the grid's edge",
    )
    parser.add_argument(
        "--x",
        default="epoch",
        choices=list(X_LABELS),
        help="the figure's x axis: epochs (from 1, as Keras prints them), or seconds "
        "of training (the summed epoch_time_s); default: epoch",
    )
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
    report = build_report(
        records,
        monitor=args.monitor,
        mode=args.mode,
        extra_keys=args.plot,
        title=title,
        x=args.x,
        best_over=args.best_over,
    )
    out = Path(args.out) if args.out else Path("report") / re.sub(r"[^\w.-]+", "_", source)
    paths = write_report(report, out)
    print(
        f"{title}: {len(records)} runs, ranked by {report.monitor} ({report.mode}); * = best; "
        f"epochs from 1, as Keras prints them\n"
    )
    print(format_table(report))
    print("\nGroups (mean ± std over finished runs):\n")
    print(text(report.groups))
    print("\nWrote:", *(f"  {path}" for path in paths.values()), sep="\n")
    return 0
