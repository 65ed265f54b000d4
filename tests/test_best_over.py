"""Each group at its best value of a swept key (kerastrack.report.best_over), on per-run tables
made by hand, and the report's view of it on records made by hand (no store, no training)."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from hydra.utils import instantiate

from kerastrack.errors import ConfigError
from kerastrack.report.best_over import best_over, check_key, value_grid
from kerastrack.report.build import build_report, format_table, write_report
from kerastrack.report.stats import difference_to_best
from kerastrack.tracking.query import RunRecord

KEY = "optimizer.learning_rate"
RATES = ["0.0001", "0.001", "0.01", "0.1", "1.0"]


def table(rows):
    """A per-run table as the report makes it: rows of (optimizer, rate, seed, val_loss,
    test_accuracy[, status])."""
    frame = pd.DataFrame(
        [
            {
                "optimizer": o,
                KEY: r,
                "seed": s,
                "status": rest[0] if rest else "FINISHED",
                "best_val_loss": v,
                "test_accuracy": a,
                "test_loss": 1 - a,
                "run_id": f"{o}-{r}-{s}",
            }
            for o, r, s, v, a, *rest in rows
        ]
    )
    return frame


def grid_rows(optimizer, val_loss_by_rate, accuracy=0.8, seeds=("0", "1", "2")):
    """Every rate × seed of one optimizer; val_loss_by_rate: rate -> one value per seed."""
    return [
        (optimizer, rate, seed, value, accuracy)
        for rate, values in val_loss_by_rate.items()
        for seed, value in zip(seeds, values)
    ]


def pick(picks, optimizer):
    return picks.set_index("optimizer").loc[optimizer]


def test_the_pick_is_the_rate_with_the_best_mean_validation_value_not_the_best_test_value():
    rows = grid_rows("adam", {"0.001": [0.30, 0.31, 0.32], "0.01": [0.40, 0.41, 0.42]})
    # The worse rate by validation has the better test accuracy: it must not be picked.
    rows = [(*r[:4], 0.95 if r[1] == "0.01" else 0.80) for r in rows]
    picks = best_over(table(rows), KEY, ["optimizer"], "val_loss", "min")
    row = pick(picks, "adam")
    assert row[KEY] == "0.001" and row["mean_best_val_loss"] == pytest.approx(0.31)
    assert row["mean_test_accuracy"] == pytest.approx(0.80) and row["n"] == 3


def test_the_pick_is_by_the_mean_over_seeds_not_by_one_lucky_seed():
    # 0.1 has the single best run (0.10) but the worse mean (0.40 vs 0.30).
    rows = grid_rows("sgd", {"0.01": [0.29, 0.30, 0.31], "0.1": [0.10, 0.55, 0.55]})
    picks = best_over(table(rows), KEY, ["optimizer"], "val_loss", "min")
    assert pick(picks, "sgd")[KEY] == "0.01"
    # With a monitor that is maximized, the largest mean wins.
    maxed = best_over(
        table(rows).assign(best_val_loss=lambda t: -t["best_val_loss"]), KEY, ["optimizer"], "val_loss", "max"
    )
    assert pick(maxed, "sgd")[KEY] == "0.01"


def test_a_pick_at_the_smallest_or_largest_rate_of_its_grid_is_flagged_as_an_edge():
    low = grid_rows("adam", dict(zip(RATES, ([0.3] * 3, [0.4] * 3, [0.5] * 3, [0.6] * 3, [0.7] * 3))))
    high = grid_rows("gd", dict(zip(["0.5", "2.0", "10.0", "1e-05"], ([0.8] * 3, [0.7] * 3, [0.5] * 3, [0.9] * 3))))
    inside = grid_rows("sgd", dict(zip(RATES, ([0.9] * 3, [0.5] * 3, [0.3] * 3, [0.6] * 3, [0.9] * 3))))
    picks = best_over(table(low + high + inside), KEY, ["optimizer"], "val_loss", "min")
    assert (pick(picks, "adam")[KEY], pick(picks, "adam")["edge"]) == ("0.0001", "low")
    assert (pick(picks, "gd")[KEY], pick(picks, "gd")["edge"]) == ("10.0", "high")  # in order as numbers, not as text
    assert pick(picks, "gd")["grid"] == "1e-05, 0.5, 2.0, 10.0"
    assert (pick(picks, "sgd")[KEY], pick(picks, "sgd")["edge"]) == ("0.01", "")
    assert pick(picks, "sgd")["grid"] == ", ".join(RATES)
    # Values that are no numbers have no edges.
    named = table([("x", "cosine", "0", 0.3, 0.8), ("x", "step", "0", 0.4, 0.8)])
    assert best_over(named, KEY, ["optimizer"], "val_loss", "min").loc[0, "edge"] == "-"


def test_tied_means_go_to_the_first_rate_of_the_grid_and_are_listed():
    # The same three values in another order: means equal up to float rounding.
    rows = grid_rows("adam", {"0.01": [0.1, 0.2, 0.3], "0.001": [0.3, 0.2, 0.1], "0.1": [0.5, 0.5, 0.5]})
    picks = best_over(table(rows), KEY, ["optimizer"], "val_loss", "min")
    assert pick(picks, "adam")[KEY] == "0.001" and pick(picks, "adam")["ties"] == "0.01"
    # Two groups with the same best mean: both kept, in a stable order, the second indistinguishable.
    twins = grid_rows("a", {"0.01": [0.3, 0.4, 0.5]}) + grid_rows("b", {"0.01": [0.3, 0.4, 0.5]})
    picks = best_over(table(twins), KEY, ["optimizer"], "val_loss", "min")
    assert list(picks["optimizer"]) == ["a", "b"] and list(picks["vs_best"]) == ["best", "indistinguishable"]
    assert picks.loc[1, "diff_to_best"] == 0


def test_a_rate_at_which_one_seed_did_not_finish_is_no_candidate():
    rows = grid_rows("rmsprop", {"0.001": [0.40, 0.41, 0.42], "0.01": [0.20, 0.21, 0.22]})
    rows[-1] = (*rows[-1][:3], math.nan, math.nan, "FAILED")  # 0.01, seed 2 diverged
    picks = best_over(table(rows), KEY, ["optimizer"], "val_loss", "min")
    row = pick(picks, "rmsprop")
    assert row[KEY] == "0.001" and row["left_out"] == "0.01" and row["edge"] == "low"
    grid = value_grid(table(rows), KEY, ["optimizer"], "val_loss").set_index(KEY)
    assert grid.loc["0.01", "n"] == 2 and not grid.loc["0.01", "complete"]


def test_each_group_is_compared_with_the_best_paired_by_seed_on_validation_and_on_test():
    rows = grid_rows("adam", {"0.001": [0.30, 0.32, 0.31], "0.01": [0.5] * 3}) + grid_rows(
        "sgd", {"0.01": [0.36, 0.35, 0.39], "0.1": [0.33, 0.38, 0.37]}
    )
    accuracy = {
        ("adam", "0"): 0.86,
        ("adam", "1"): 0.85,
        ("adam", "2"): 0.87,
        ("sgd", "0"): 0.84,
        ("sgd", "1"): 0.86,
        ("sgd", "2"): 0.83,
    }
    rows = [(o, r, s, v, accuracy[o, s]) for o, r, s, v, _ in rows]
    picks = best_over(table(rows), KEY, ["optimizer"], "val_loss", "min")
    assert list(picks["optimizer"]) == ["adam", "sgd"] and pick(picks, "sgd")[KEY] == "0.1"
    sgd = pick(picks, "sgd")
    diff, low, high, paired = difference_to_best({"0": 0.33, "1": 0.38, "2": 0.37}, {"0": 0.30, "1": 0.32, "2": 0.31})
    assert paired and (sgd["diff_to_best"], sgd["ci95_low"], sgd["ci95_high"]) == pytest.approx((diff, low, high))
    # On test_loss (1 - accuracy), the counterpart of val_loss: the pick never saw it.
    diff, low, high, _ = difference_to_best({"0": 0.16, "1": 0.14, "2": 0.17}, {"0": 0.14, "1": 0.15, "2": 0.13})
    assert (sgd["test_diff_to_best"], sgd["test_ci95_low"], sgd["test_ci95_high"]) == pytest.approx((diff, low, high))
    assert sgd["std_test_accuracy"] == pytest.approx(np.std([0.84, 0.86, 0.83], ddof=1))


def test_best_over_must_be_a_key_the_sweep_varied_other_than_seed():
    check_key(KEY, ["optimizer", KEY, "seed"])
    for key in ("seed", "optimizer.momentum"):
        with pytest.raises(ConfigError, match=rf"varied: optimizer, {KEY}\. Received: best_over={key}$"):
            check_key(key, ["optimizer", KEY, "seed"])


def record(optimizer, rate, seed, val_loss, job, status="FINISHED"):
    values = {"optimizer": optimizer, KEY: rate, "seed": seed}
    history = {"val_loss": [(e, val_loss + 0.1 * (2 - e)) for e in range(3)], "loss": [(e, 1.0) for e in range(3)]}
    return RunRecord(
        run_id=f"r{job}",
        name=",".join(f"{k}={v}" for k, v in values.items()),
        status=status,
        params={"trainer.monitor": "val_loss", "trainer.monitor_mode": "min", "seed": seed},
        tags={"sweep.values": json.dumps(values), "sweep.job": str(job), "mlflow.parentRunId": "p"},
        metrics={"test_loss": val_loss + 0.05, "test_accuracy": 1 - val_loss},
        history=history,
        start_time=job,
        end_time=job + 1000,
    )


@pytest.fixture(scope="module")
def tuned_records():
    values = {("adam", "0.001"): 0.30, ("adam", "0.01"): 0.35, ("sgd", "0.01"): 0.45, ("sgd", "0.1"): 0.40}
    grid = [(o, r, s) for (o, r) in values for s in ("0", "1", "2")]
    return [record(o, r, s, values[o, r] + 0.01 * int(s), job) for job, (o, r, s) in enumerate(grid)]


def test_the_report_shows_each_group_at_its_best_rate_in_the_terminal_csv_and_page(tuned_records, tmp_path):
    report = build_report(tuned_records, best_over=KEY)
    assert list(report.groups["group"])[:2] == [f"optimizer=adam,{KEY}=0.001", f"optimizer=adam,{KEY}=0.01"]
    view = report.best_over.set_index("optimizer")
    assert view.loc["adam", KEY] == "0.001" and view.loc["adam", "edge"] == "low"
    assert view.loc["sgd", KEY] == "0.1" and view.loc["sgd", "edge"] == "high"
    assert view.loc["sgd", "mean_best_val_loss"] == pytest.approx(0.41)
    terminal = format_table(report).split(f"Best of each group over {KEY}")[1]
    assert "At an edge of its grid (widen the grid): optimizer=adam, optimizer=sgd." in terminal
    assert terminal.splitlines()[1].split()[:3] == ["group", KEY, "edge"]
    assert terminal.splitlines()[2].split()[:3] == ["optimizer=adam", "0.001", "low"]
    paths = write_report(report, tmp_path)
    assert pd.read_csv(paths["best_over.csv"], dtype={KEY: str})[KEY].tolist() == ["0.001", "0.1"]
    assert paths["best_over.png"].read_bytes()[:4] == b"\x89PNG"
    page = paths["report.html"].read_text()
    assert f"<h2>Best of each group over <code>{KEY}</code></h2>" in page and page.count("data:image/png") == 2
    # Without best_over the report is as before: no view, no extra files.
    plain = build_report(tuned_records)
    assert plain.best_over is None and "best_over.csv" not in write_report(plain, tmp_path / "plain")
    with pytest.raises(ConfigError, match="Received: best_over=seed"):
        build_report(tuned_records, best_over="seed")


def test_a_sweep_refuses_a_best_over_key_it_does_not_vary_before_it_starts(make_cfg, tmp_path):
    for key in ("optimizer.momentum", "seed"):
        cfg = make_cfg(
            "experiment=optimizers_tuned",
            f"hydra.callbacks.mlflow_sweep.best_over={key}",
            f"hydra.sweep.dir={tmp_path / 'sweep'}",
        )
        with pytest.raises(
            SystemExit,
            match=rf"^Error: .*varies: optimizer, {KEY}\. "
            rf"Received: hydra.callbacks.mlflow_sweep.best_over={key}$",
        ):
            instantiate(cfg.hydra.callbacks.mlflow_sweep).on_multirun_start(cfg)
        assert not (tmp_path / "sweep").exists()  # nothing started
