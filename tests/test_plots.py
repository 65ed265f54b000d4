"""The report's figure, read back from the matplotlib Figure it builds: runs made in memory
(RunRecords, no MLflow store, no training)."""

import json
import math

import numpy as np
import pytest

from kerastrack.errors import ConfigError
from kerastrack.figures import curves as plots
from kerastrack.report.build import build_report, write_report
from kerastrack.tracking.query import RunRecord

LOSS = [1.2, 0.8, 0.6, 0.5, 0.45, 0.42, 0.40, 0.39, 0.385, 0.38]


def record(job, values, history, parent="0f1e2d"):
    """A finished child run of sweep ``parent`` with the swept ``values`` and per-epoch ``history``."""
    return RunRecord(
        run_id=f"run{job}",
        name=",".join(f"{k}={v}" for k, v in values.items()),
        status="FINISHED",
        params={"trainer.monitor": "val_loss", "trainer.monitor_mode": "auto"},
        tags={
            "mlflow.parentRunId": parent,
            "sweep.role": "child",
            "sweep.job": str(job),
            "sweep.values": json.dumps(values),
        },
        history={key: list(enumerate(series)) for key, series in history.items()},
    )


def curves(loss=LOSS, seconds=0.5):
    return {
        "loss": loss,
        "val_loss": [v + 0.05 for v in loss],
        "learning_rate": [0.01] * len(loss),
        "epoch_time_s": [seconds] * len(loss),
    }


def sweep(optimizers=("adam", "amsgrad"), seeds=("0",), **history):
    grid = [{"optimizer": o, "seed": s} for o in optimizers for s in seeds]
    return [record(job, values, curves(**history)) for job, values in enumerate(grid)]


def panel(report, title):
    (ax,) = [ax for ax in report.figure.axes if ax.get_title() == title]
    return ax


def test_two_groups_with_identical_curves_are_both_visible_in_different_styles():
    report = build_report(sweep(optimizers=("sgd", "momentum", "nesterov", "rmsprop", "adam", "amsgrad")))
    for title in ("train loss", "validation loss"):
        lines = panel(report, title).lines
        assert len(lines) == 6 and all(np.array_equal(line.get_ydata(), lines[0].get_ydata()) for line in lines)
        # Same data: only the style tells them apart, so each group's must differ, and the
        # markers are hollow so that one under another shows through.
        styles = {(line.get_linestyle(), line.get_marker(), line.get_color()) for line in lines}
        assert len(styles) == 6 and len({(s[0], s[1]) for s in styles}) == 6
        assert all(line.get_visible() and line.get_marker() not in ("", "None", ".") for line in lines)
        assert all(line.get_markerfacecolor() == "none" for line in lines)
    adam, amsgrad = report.figure.legends[0].get_lines()[-2:]
    assert (adam.get_linestyle(), adam.get_marker()) != (amsgrad.get_linestyle(), amsgrad.get_marker())


def test_the_title_names_the_sweep_and_what_varied():
    records = sweep(seeds=("0", "1", "2"))
    title = build_report(records).figure.get_suptitle()
    assert "sweep 0f1e2d" in title and "varied: optimizer; seed (3 seeds averaged)" in title
    named = build_report(records, title="sweep optimizer, seed (2026-01-02 10-11-12) (0f1e2d)")
    assert named.figure.get_suptitle().startswith("sweep optimizer, seed (2026-01-02 10-11-12) (0f1e2d)\n")
    assert (
        "varied: seed; optimizer (2 values averaged)"
        in build_report(records, group_keys=["seed"]).figure.get_suptitle()
    )


def test_epochs_are_numbered_from_1_as_keras_prints_them(tmp_path):
    report = build_report(sweep())
    ax = panel(report, "validation loss")
    assert ax.get_xlabel() == "epoch"
    assert list(ax.lines[0].get_xdata()) == list(range(1, len(LOSS) + 1))
    # The table's best epoch: the last of ten here, epoch 10 (MLflow's step 9).
    assert list(report.table["best_epoch"]) == [len(LOSS)] * 2
    page = tmp_path / "r" / "report.html"
    write_report(report, tmp_path / "r")
    assert "numbered from 1" in page.read_text()
    per_run = plots.learning_curves([{"loss": v} for v in LOSS], [])
    assert list(per_run.axes[0].lines[0].get_xdata()) == list(range(1, len(LOSS) + 1))


def test_time_on_the_x_axis_is_the_cumulative_seconds_of_training():
    fast = record(0, {"optimizer": "sgd", "seed": "0"}, {**curves(), "epoch_time_s": [3.0, 1.0, 1.0, 2.0]})
    slow = [
        record(1 + i, {"optimizer": "adam", "seed": str(i)}, {**curves(), "epoch_time_s": t})
        for i, t in enumerate(([4.0, 2.0, 2.0], [6.0, 4.0, 2.0, 2.0, 2.0]))
    ]
    report = build_report([fast, *slow], x="time")
    ax = panel(report, "train loss")
    assert "s" in ax.get_xlabel() and "epoch_time_s" in ax.get_xlabel()
    sgd, adam = ax.lines
    assert list(sgd.get_xdata()[:4]) == [3.0, 4.0, 5.0, 7.0]
    # A group's x: its mean epoch time summed over the epochs (epoch 4 has only the slow run).
    assert list(adam.get_xdata()[:5]) == [5.0, 8.0, 10.0, 12.0, 14.0]
    assert report.x == "time"


def test_time_without_epoch_times_and_an_unknown_axis_are_errors_that_name_x():
    records = sweep()
    for r in records:
        del r.history["epoch_time_s"]
    with pytest.raises(ConfigError, match="epoch_time_s.*Received: x=time"):
        build_report(records, x="time")
    with pytest.raises(ConfigError, match="Received: x=hours"):
        build_report(sweep(), x="hours")


@pytest.mark.parametrize(
    "loss, log",
    [
        (list(np.geomspace(1e3, 1e-2, 10)), True),  # a diverging start: five decades
        ([3.0, 1.0, 0.5, 0.2, 0.1, 0.05], True),  # a loss falling 60x: more than 30x
        ([0.5, 0.45, 0.4, 0.35, 0.3], False),  # one curve's worth of change
        ([2.0, math.nan, math.inf, 0.5, 0.01], True),  # NaN and inf are left out, not fatal
        ([2.0, 1.0, 0.0, 0.01], False),  # a zero would vanish on a log axis
        ([-0.2, -0.5, -0.9, -0.99], False),  # cosine similarity: negative
    ],
)
def test_a_loss_panel_is_log_scaled_when_its_values_span_decades(loss, log):
    ax = panel(build_report(sweep(loss=loss)), "train loss")
    assert ax.get_yscale() == ("log" if log else "linear")
