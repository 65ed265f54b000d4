"""Prints a study's group table (Markdown) from MLflow: the numbers in experiments/*/README.md.

    python experiments/summarize.py optimizers --tracking-uri sqlite:///studies/mlflow.db

Finds the latest sweep of ``experiment=<study>`` (or takes ``--parent``), groups its runs as
``python -m kerastrack.report`` does (the swept values other than seed) and prints, per group,
mean ± sample std (ddof=1) over the group's finished runs of the best monitored value and of
the columns that answer the study's question.

For ``optimizers_tuned`` it prints each optimizer at its default rate and at its best rate
of the grid (``kerastrack.report.best_over``), both from the same sweep (every default is on the
grid), each against the best with its 95% interval on best val_loss and on test_loss.
"""

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from kerastrack.errors import ConfigError
from kerastrack.report.build import build_report
from kerastrack.report.stats import difference_to_best, verdict
from kerastrack.tracking.query import fetch_runs


def series(record, key):
    """The run's finite values of ``key``, by epoch."""
    return [v for _, v in record.history.get(key, []) if math.isfinite(v)]


def at(key, epoch):
    def value(record):
        values = series(record, key)
        return values[epoch] if -len(values) <= epoch < len(values) else math.nan

    return value


def last(key):
    return at(key, -1)


def metric(key):
    return lambda record: record.metrics.get(key, math.nan)


def first_epoch_reaching(key, threshold):
    """1-based count of epochs until ``key`` first reaches ``threshold`` (NaN: never)."""

    def value(record):
        hits = [i for i, v in enumerate(series(record, key)) if v >= threshold]
        return hits[0] + 1 if hits else math.nan

    return value


def drops(key):
    """How many epochs ``key`` got worse (lower) than the epoch before."""
    return lambda record: float(np.sum(np.diff(series(record, key)) < 0))


def rises(key):
    """How many epochs ``key`` got higher than the epoch before."""
    return lambda record: float(np.sum(np.diff(series(record, key)) > 0))


def ratio(numerator, denominator):
    return lambda record: numerator(record) / denominator(record)


def total(key):
    return lambda record: float(np.sum(series(record, key)))


def mean_of(key):
    return lambda record: float(np.mean(series(record, key))) if series(record, key) else math.nan


def gap(record):
    """Final train accuracy minus final validation accuracy (overfitting)."""
    return last("accuracy")(record) - last("val_accuracy")(record)


def diverged_epoch(record):
    return float(record.tags["diverged_epoch"]) if record.tags.get("diverged") == "true" else math.nan


def within_seconds(seconds):
    """val_accuracy at the last epoch whose cumulative epoch time is <= seconds."""

    def value(record):
        times = np.cumsum(series(record, "epoch_time_s"))
        reached = [i for i, t in enumerate(times) if t <= seconds]
        return series(record, "val_accuracy")[reached[-1]] if reached else math.nan

    return value


COMMON = [("final val_accuracy", last("val_accuracy"), 4), ("test_accuracy", metric("test_accuracy"), 4)]
STUDIES = {
    "optimizers": [
        ("val_accuracy after epoch 1", at("val_accuracy", 0), 4),
        *COMMON,
        ("epoch time (s)", mean_of("epoch_time_s"), 2),
        ("val_accuracy within 6 s", within_seconds(6.0), 4),
    ],
    "losses": [
        ("val_accuracy after epoch 1", at("val_accuracy", 0), 4),
        ("epochs to 80% val_accuracy", first_epoch_reaching("val_accuracy", 0.80), 1),
        ("epochs val_accuracy fell", drops("val_accuracy"), 1),
        ("epochs val_loss rose", rises("val_loss"), 1),
        *COMMON,
    ],
    "learning_rates": [
        ("train loss epoch 1", at("loss", 0), 4),
        ("train loss last epoch", last("loss"), 4),
        ("diverged at epoch", diverged_epoch, 0),
        *COMMON,
    ],
    "batch_size": [
        ("epoch time (s)", mean_of("epoch_time_s"), 3),
        ("train time (s)", total("epoch_time_s"), 1),
        ("val_accuracy after epoch 1", at("val_accuracy", 0), 4),
        ("val_accuracy within 5 s", within_seconds(5.0), 4),
        ("val_accuracy within 10 s", within_seconds(10.0), 4),
        *COMMON,
    ],
    "adagrad_vs_rmsprop": [
        ("update/step epoch 1", at("update_per_step", 0), 5),
        ("update/step epoch 10", at("update_per_step", 9), 5),
        ("update/step epoch 20", at("update_per_step", 19), 5),
        ("update/step last", last("update_per_step"), 5),
        ("last / epoch 1", ratio(last("update_per_step"), at("update_per_step", 0)), 3),
        ("last / epoch 20", ratio(last("update_per_step"), at("update_per_step", 19)), 3),
        *COMMON,
    ],
    "regularization": [
        ("near-zero share (last)", last("near_zero_share"), 4),
        ("weight L1 (last)", last("weight_l1"), 0),
        ("weight L2 (last)", last("weight_l2"), 2),
        ("L1 / L2 norm (spread)", ratio(last("weight_l1"), last("weight_l2")), 0),
        ("train−val accuracy gap", gap, 4),
        *COMMON,
    ],
    "adaptive_generalization": [
        ("train accuracy (last)", last("accuracy"), 4),
        ("train loss (last)", last("loss"), ".1e"),
        ("val_accuracy epoch 1", at("val_accuracy", 0), 4),
        ("val_accuracy epoch 50", at("val_accuracy", 49), 4),
        *COMMON,
    ],
    "schedules": [("final learning_rate", last("learning_rate"), 5), ("final val_loss", last("val_loss"), 4), *COMMON],
    "vanishing_gradients": [
        ("grad_norm dense_0 / head, epoch 1", ratio(at("grad_norm/dense_0", 0), at("grad_norm/head", 0)), ".2e"),
        ("grad_norm dense_0 / head, last epoch", ratio(last("grad_norm/dense_0"), last("grad_norm/head")), ".2e"),
        *COMMON,
    ],
}


def parent_of(uri, study):
    import mlflow

    client = mlflow.MlflowClient(uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    for run in client.search_runs(ids, "tags.`sweep.role` = 'parent'", order_by=["attributes.start_time DESC"]):
        if f"experiment={study}" in run.data.tags.get("sweep.overrides", "").split():
            return run.info.run_id
    sys.exit(f"Error: no sweep of experiment={study} in {uri}")


def cell(values, digits):
    values = np.array([v for v in values if not math.isnan(v)], dtype=float)
    if not len(values):
        return "–"
    spec = f".{digits}f" if isinstance(digits, int) else digits  # decimals, or a format such as ".2e"
    text = format(values.mean(), spec)
    return f"{text} ± {format(values.std(ddof=1), spec)}" if len(values) > 1 else text


def group_table(records, study, monitor=None):
    report = build_report(records, monitor=monitor)
    best = report.table.set_index("run_id")[f"best_{report.monitor}"]
    keys = [
        c
        for c in report.groups.columns
        if c not in ("group", "n_runs", "n_finished", "n_failed", *COMPARISON)
        and not c.startswith(("mean_best_", "std_best_"))
    ]
    columns = [
        (f"best {report.monitor}", lambda r: best[r.run_id], 4),
        ("best epoch (0-based)", None, 1),
        *STUDIES.get(study, COMMON),
    ]
    best_epoch = report.table.set_index("run_id")["best_epoch"]
    lines = [
        "| " + " | ".join([*keys, "runs (finished)", *(c[0] for c in columns), "vs best: difference [95% CI]"]) + " |",
        "|" + "---|" * (len(keys) + 2 + len(columns)),
    ]
    for _, group in report.groups.iterrows():
        members = [r for r in records if all(_value(r, k) == str(group[k]) for k in keys)]
        done = [r for r in members if r.status == "FINISHED"]
        row = [str(group[k]) for k in keys] + [f"{len(members)} ({len(done)})"]
        for title, fn, digits in columns:
            # Finished runs only, except the divergence column, which is about the others.
            pool = members if title == "diverged at epoch" else done
            if fn is None:
                # The report numbers epochs from 1, as Keras prints them; the write-ups' tables are 0-based.
                row.append(cell([float(best_epoch[r.run_id]) - 1 for r in pool], digits))
            else:
                row.append(cell([fn(r) for r in pool], digits))
        lines.append("| " + " | ".join([*row, versus_best(group)]) + " |")
    return report, "\n".join(lines)


COMPARISON = ("diff_to_best", "ci95_low", "ci95_high", "paired", "vs_best")


def versus_best(group):
    """The report's comparison of a group with the best one, as a table cell."""
    if group["vs_best"] in ("best", "n < 2"):
        return group["vs_best"]
    return (
        f"{group['diff_to_best']:+.4f} [{group['ci95_low']:+.4f}, {group['ci95_high']:+.4f}] "
        f"{group['vs_best']}{'' if group['paired'] else ' (unpaired)'}"
    )


def _value(record, key):
    return str(json.loads(record.tags.get("sweep.values", "{}")).get(key, record.params.get(key, "")))


def layer_table(records, epoch):
    """Mean gradient norm per layer (finished runs), one row per activation, at ``epoch``."""
    layers = sorted(
        {k for r in records for k in r.history if k.startswith("grad_norm/")}, key=lambda k: (k == "grad_norm/head", k)
    )
    groups = sorted({_value(r, "model.activation") for r in records})
    lines = [
        "| model.activation | " + " | ".join(k.split("/")[1] for k in layers) + " |",
        "|---|" + "---|" * len(layers),
    ]
    for g in groups:
        runs = [r for r in records if _value(r, "model.activation") == g and r.status == "FINISHED"]
        lines.append(f"| {g} | " + " | ".join(f"{np.mean([at(k, epoch)(r) for r in runs]):.2e}" for k in layers) + " |")
    return "\n".join(lines)


def interval_table(records, report, study, column, against=None):
    """Each group's difference to one group on one of the study's columns, with its 95%
    interval (kerastrack.report.stats, paired by seed): the intervals a verdict cites for a
    value other than the monitored one. The reference is the best group by the monitor,
    or the group whose label is ``against``."""
    columns = {title: fn for title, fn, _ in STUDIES.get(study, COMMON)}
    if column not in columns:
        raise ConfigError(
            f"--column must be one of the study's columns: {', '.join(map(repr, columns))}. "
            f"Received: --column={column!r}"
        )
    keys = [
        k
        for k in report.groups.columns
        if k not in ("group", "n_runs", "n_finished", "n_failed", *COMPARISON)
        and not k.startswith(("mean_best_", "std_best_"))
    ]
    by_group = {}
    for r in records:
        if r.status == "FINISHED":
            label = ",".join(_value(r, k) for k in keys)
            by_group.setdefault(label, {})[_value(r, "seed")] = columns[column](r)
    reference = against or ",".join(str(report.groups.iloc[0][k]) for k in keys)  # groups are ranked best first
    if reference not in by_group:
        raise ConfigError(
            f"--against must be a group: {', '.join(map(repr, by_group))}. Received: --against={against!r}"
        )
    lines = [f"| {','.join(keys)} | {column}: difference to {reference} [95% CI] |", "|---|---|"]
    for label, values in by_group.items():
        if label == reference:
            lines.append(f"| {label} | reference |")
            continue
        diff, low, high, paired = difference_to_best(values, by_group[reference])
        lines.append(
            f"| {label} | {diff:+.4f} [{low:+.4f}, {high:+.4f}] {verdict(low, high, False)}"
            f"{'' if paired else ' (unpaired)'} |"
        )
    return "\n".join(lines)


TUNED = "optimizer.learning_rate"
CONF = Path(__file__).resolve().parents[1] / "src" / "kerastrack" / "conf"


def default_rate(optimizer):
    """The option's own learning rate, as conf/optimizer/<name>.yaml sets it."""
    option = OmegaConf.load(CONF / "optimizer" / f"{optimizer}.yaml")
    return float(OmegaConf.select(option, "optimizer.learning_rate") or option.learning_rate)


def at_best_table(view, monitor):
    """A best_over view (``Report.best_over``) as Markdown: the rate, its edge flag, the
    monitor and the test values, and each row against the best on validation and test."""
    test = f"test_{monitor.removeprefix('val_')}"
    lines = [
        f"| rank | optimizer | rate | edge | n | best {monitor} | test_accuracy | {test} | "
        f"vs best on {monitor} [95% CI] | vs best on {test} [95% CI] |",
        "|" + "---|" * 10,
    ]
    for rank, (_, get) in enumerate(view.iterrows(), 1):

        def interval(prefix):
            if get[f"{prefix}vs_best"] in ("best", "n < 2"):
                return get[f"{prefix}vs_best"]
            return (
                f"{get[f'{prefix}diff_to_best']:+.4f} [{get[f'{prefix}ci95_low']:+.4f}, "
                f"{get[f'{prefix}ci95_high']:+.4f}] {get[f'{prefix}vs_best']}"
            )

        cells = [
            str(rank),
            get["optimizer"],
            get[TUNED],
            get["edge"] or "–",
            str(get["n"]),
            f"{get[f'mean_best_{monitor}']:.4f} ± {get[f'std_best_{monitor}']:.4f}",
            f"{get['mean_test_accuracy']:.4f} ± {get['std_test_accuracy']:.4f}",
            f"{get[f'mean_{test}']:.4f} ± {get[f'std_{test}']:.4f}",
            interval(""),
            interval("test_"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tuned_tables(records):
    """Each optimizer at its default rate, then at its best rate of the grid (same sweep)."""
    defaults = [r for r in records if float(_value(r, TUNED)) == default_rate(_value(r, "optimizer"))]
    at_defaults = build_report(defaults, best_over=TUNED)
    tuned = build_report(records, best_over=TUNED)
    return (
        f"At each default rate ({len(defaults)} runs):\n\n{at_best_table(at_defaults.best_over, tuned.monitor)}"
        f"\n\nAt each one's best rate of the grid ({len(records)} runs):\n\n"
        f"{at_best_table(tuned.best_over, tuned.monitor)}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study")
    parser.add_argument(
        "--tracking-uri", default="sqlite:///mlflow.db", help="the studies' store; default: ./mlflow.db"
    )
    parser.add_argument("--parent", help="the sweep's parent run id; default: the latest sweep of the study")
    parser.add_argument("--monitor", help="rank by this metric instead of the runs' trainer.monitor")
    parser.add_argument("--column", help="also: each group's difference on this column of the table, with its 95%% CI")
    parser.add_argument(
        "--against",
        help="with --column: the reference group (its label, e.g. 'constant'); default: the best group by the monitor",
    )
    args = parser.parse_args(argv)
    parent = args.parent or parent_of(args.tracking_uri, args.study)
    records = fetch_runs(args.tracking_uri, parent=parent)
    if args.study == "optimizers_tuned":
        print(f"parent run {parent}: {len(records)} runs\n")
        print(tuned_tables(records))
        return 0
    try:
        report, table = group_table(records, args.study, args.monitor)
        print(f"parent run {parent}: {len(records)} runs, ranked by {report.monitor} ({report.mode})\n")
        print(table)
        if args.column:
            print(f"\n{interval_table(records, report, args.study, args.column, args.against)}")
    except ConfigError as exc:
        sys.exit(f"Error: {exc}")
    if args.study == "vanishing_gradients":
        for epoch in (0, -1):
            print(f"\nGradient norm per layer (input → output), epoch {'1' if epoch == 0 else 'last'}:\n")
            print(layer_table(records, epoch))
    return 0


if __name__ == "__main__":
    sys.exit(main())
