"""The sweep report, on a real MLflow store filled with synthetic runs (no training)."""

import dataclasses
import json
import math
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag
from scipy import stats as scipy_stats

from kerastrack.errors import ConfigError
from kerastrack.report.build import build_report, format_table, write_report
from kerastrack.report.cli import main
from kerastrack.report.page import html_page
from kerastrack.tracking.query import fetch_parent, fetch_runs

DDOF = 1  # sample std across seeds, as the report documents
T0 = int(time.time() * 1000) - 3_600_000
NAN = math.nan

# (optimizer, seed) -> val_accuracy per epoch. Different lengths, as early stopping leaves
# them; adam seed=2 diverges at epoch 3 (NaN) after a better epoch than any finished run.
VAL_ACCURACY = {
    ("sgd", "0"): [0.50, 0.62, 0.70, 0.74, 0.73, 0.71],
    ("sgd", "1"): [0.48, 0.60, 0.72, 0.71],
    ("sgd", "2"): [0.52, 0.66, 0.69, 0.75, 0.75],
    ("adam", "0"): [0.80, 0.88, 0.91, 0.90],
    ("adam", "1"): [0.78, 0.90, 0.93, 0.92, 0.91, 0.90],
    ("adam", "2"): [0.85, 0.97, 0.95, NAN],
}
FAILED = ("adam", "2")
LEARNING_RATE = {"sgd": 0.01, "adam": 0.001}


def expected_best(key):
    values = VAL_ACCURACY[key]
    finite = [v for v in values if not math.isnan(v)]
    return max(finite), values.index(max(finite))


def child_metrics(key):
    metrics = []
    for epoch, acc in enumerate(VAL_ACCURACY[key]):
        loss = NAN if math.isnan(acc) else 2.0 * (1 - acc) + 0.05
        values = {
            "loss": loss,
            "val_loss": loss + 0.1,
            "accuracy": acc,
            "val_accuracy": acc,
            "learning_rate": LEARNING_RATE[key[0]],
            "epoch_time_s": 0.5,
        }
        metrics += [Metric(k, v, T0 + epoch, epoch) for k, v in values.items()]
    if key != FAILED:
        best, epoch = expected_best(key)
        summary = {"best_val_accuracy": best, "best_epoch": epoch, "test_accuracy": best - 0.01, "test_loss": 0.3}
        metrics += [Metric(k, v, T0, epoch) for k, v in summary.items()]
    return metrics


def add_sweep(client, experiment_id, start, grid):
    parent = client.create_run(
        experiment_id,
        start_time=start,
        run_name="sweep",
        tags={"sweep.role": "parent", "sweep.keys": json.dumps(["optimizer", "seed"]), "sweep.dir": "multirun/x"},
    )
    children = {}
    for job, key in enumerate(grid):
        values = {"optimizer": key[0], "seed": key[1]}
        run = client.create_run(
            experiment_id,
            start_time=start + 1000 * (job + 1),
            run_name=f"optimizer={key[0]},seed={key[1]}",
            tags={
                "mlflow.parentRunId": parent.info.run_id,
                "sweep.role": "child",
                "sweep.job": str(job),
                "sweep.values": json.dumps(values),
                "optimizer": key[0],
            },
        )
        params = {
            "trainer.monitor": "val_accuracy",
            "trainer.monitor_mode": "auto",
            "trainer.metrics": "None",
            "seed": key[1],
        }
        tags = [RunTag("diverged", "true")] if key == FAILED else []
        client.log_batch(
            run.info.run_id, metrics=child_metrics(key), tags=tags, params=[Param(k, v) for k, v in params.items()]
        )
        client.set_terminated(
            run.info.run_id,
            "FAILED" if key == FAILED else "FINISHED",
            end_time=start + 1000 * (job + 1) + 10_000 * (job + 1),
        )
        children[key] = run.info.run_id
    client.set_terminated(parent.info.run_id, "FINISHED", end_time=start + 100_000)
    return parent.info.run_id, children


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """A store with an old sweep, the sweep under test, and a single run in another experiment."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('report') / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    experiment_id = client.create_experiment("sweeps")
    old_parent, _ = add_sweep(client, experiment_id, T0, [("sgd", "0")])
    parent, children = add_sweep(client, experiment_id, T0 + 200_000, list(VAL_ACCURACY))
    other = client.create_experiment("other")
    single = client.create_run(other, start_time=T0 + 900_000, run_name="single")
    client.log_metric(single.info.run_id, "val_accuracy", 0.99, step=0)
    client.set_terminated(single.info.run_id, "FINISHED")
    return {"uri": uri, "parent": parent, "children": children, "old_parent": old_parent, "single": single.info.run_id}


@pytest.fixture(scope="module")
def report(sweep):
    return build_report(fetch_runs(sweep["uri"], parent=sweep["parent"]))


def test_fetch_runs_by_parent_and_latest_returns_exactly_the_children(sweep):
    by_id = fetch_runs(sweep["uri"], parent=sweep["parent"])
    latest = fetch_runs(sweep["uri"], parent="latest")
    assert [r.run_id for r in by_id] == [r.run_id for r in latest] == list(sweep["children"].values())
    record = by_id[0]
    assert record.status == "FINISHED" and record.params["trainer.monitor"] == "val_accuracy"
    assert record.history["val_accuracy"] == list(enumerate(VAL_ACCURACY[("sgd", "0")]))
    assert set(record.history) == {"loss", "val_loss", "accuracy", "val_accuracy", "learning_rate", "epoch_time_s"}
    assert record.wall_time_s == 10.0
    assert fetch_parent(sweep["uri"], "latest").run_id == sweep["parent"]
    assert fetch_parent(sweep["uri"], "latest", experiment="sweeps").tags["sweep.role"] == "parent"


def test_fetch_runs_by_experiment_and_filter_excludes_parents(sweep):
    everything = fetch_runs(sweep["uri"], experiment="sweeps", history_keys=())
    assert len(everything) == 1 + len(VAL_ACCURACY)
    assert all(r.tags["sweep.role"] == "child" and r.history == {} for r in everything)
    good = fetch_runs(sweep["uri"], experiment="sweeps", filter_string="metrics.best_val_accuracy > 0.9")
    expected = {run_id for key, run_id in sweep["children"].items() if key != FAILED and expected_best(key)[0] > 0.9}
    assert {r.run_id for r in good} == expected and len(expected) == 2
    (single,) = fetch_runs(sweep["uri"], experiment="other")
    assert single.run_id == sweep["single"]


@pytest.mark.parametrize(
    "kwargs, received",
    [
        ({"parent": "0123abc"}, "parent=0123abc"),
        ({"experiment": "nope"}, "experiment=nope"),
        ({"parent": "latest", "experiment": "other"}, "parent=latest"),
        ({"experiment": "sweeps", "filter_string": "metrics.x >> 1"}, "filter=metrics.x >> 1"),
    ],
)
def test_bad_queries_name_what_was_received(sweep, kwargs, received):
    with pytest.raises(ConfigError, match="Received: " + received.replace(".", r"\.")) as error:
        fetch_runs(sweep["uri"], **kwargs)
    if "experiment" in kwargs and "parent" not in kwargs and "filter_string" not in kwargs:
        assert "other" in str(error.value) and "sweeps" in str(error.value)  # the names that exist
    if kwargs.get("parent") == "0123abc":
        assert sweep["parent"] in str(error.value)  # the latest sweeps are listed


def test_a_missing_store_is_an_error_not_a_new_empty_one(tmp_path):
    with pytest.raises(ConfigError, match="Received: tracking_uri="):
        fetch_runs(f"sqlite:///{tmp_path / 'mlflow.db'}", parent="latest")
    assert not (tmp_path / "mlflow.db").exists()


def test_table_ranks_runs_by_their_best_epoch_finished_first(sweep, report):
    assert report.monitor == "val_accuracy" and report.mode == "max"
    table = report.table.set_index("run_id")
    for key, run_id in sweep["children"].items():
        best, epoch = expected_best(key)
        row = table.loc[run_id]
        assert row["best_val_accuracy"] == pytest.approx(best) and row["best_epoch"] == epoch + 1, key  # from 1
        assert row["epochs"] == len(VAL_ACCURACY[key]) and (row["optimizer"], row["seed"]) == key
        assert row["status"] == ("FAILED" if key == FAILED else "FINISHED")
        # The time spent training (0.5 s an epoch), not MLflow's start to end (10 s and more:
        # what a resumed run's would be, the time it was stopped included).
        assert row["train_time_s"] == pytest.approx(0.5 * len(VAL_ACCURACY[key])), key
    finished = sorted((k for k in VAL_ACCURACY if k != FAILED), key=lambda k: -expected_best(k)[0])
    assert list(report.table["run_id"]) == [sweep["children"][k] for k in [*finished, FAILED]]
    assert math.isnan(table.loc[sweep["children"][FAILED], "last_val_accuracy"])
    assert math.isnan(table.loc[sweep["children"][FAILED], "test_accuracy"])
    assert report.best_run_id == sweep["children"][finished[0]] == sweep["children"][("adam", "1")]
    assert report.best_value == pytest.approx(0.93)


def test_groups_average_the_best_over_finished_seeds(report):
    groups = report.groups.set_index("optimizer")
    for optimizer in ("sgd", "adam"):
        bests = [expected_best(k)[0] for k in VAL_ACCURACY if k[0] == optimizer and k != FAILED]
        row = groups.loc[optimizer]
        assert row["mean_best_val_accuracy"] == pytest.approx(np.mean(bests))
        assert row["std_best_val_accuracy"] == pytest.approx(np.std(bests, ddof=DDOF))
        assert row["n_runs"] == 3 and row["n_failed"] == (optimizer == "adam")
        assert row["group"] == f"optimizer={optimizer}"
    assert list(report.groups["optimizer"]) == ["adam", "sgd"]
    # Each group against the best: adam finished seeds 0 and 1, sgd 0, 1 and 2: not paired.
    sgd, adam = groups.loc["sgd"], groups.loc["adam"]
    assert adam["vs_best"] == "best" and adam["diff_to_best"] == 0
    expected = scipy_stats.ttest_ind([0.74, 0.72, 0.75], [0.91, 0.93], equal_var=False).confidence_interval()
    assert not sgd["paired"] and sgd["diff_to_best"] == pytest.approx(np.mean([0.74, 0.72, 0.75]) - 0.92)
    assert (sgd["ci95_low"], sgd["ci95_high"]) == pytest.approx(tuple(expected))
    assert sgd["vs_best"] == ("indistinguishable" if expected.low <= 0 <= expected.high else "different")


def test_monitor_and_mode_can_be_overridden(sweep):
    records = fetch_runs(sweep["uri"], parent=sweep["parent"])
    by_loss = build_report(records, monitor="val_loss")
    assert by_loss.mode == "min" and by_loss.best_run_id == sweep["children"][("adam", "1")]
    by_name = build_report(records, group_keys=["seed"])
    assert set(by_name.groups["group"]) == {"seed=0", "seed=1", "seed=2"}
    with pytest.raises(ConfigError, match="Received: monitor=val_f1"):
        build_report(records, monitor="val_f1")
    with pytest.raises(ConfigError, match="Received: mode=maximum"):
        build_report(records, mode="maximum")
    with pytest.raises(ConfigError, match=r"Received: records=\[\]"):
        build_report([])


def test_write_report_writes_a_self_contained_page(report, tmp_path):
    paths = write_report(report, tmp_path / "out")
    assert set(paths) == {"report.png", "report.html", "runs.csv", "groups.csv"}
    assert all(Path(p).stat().st_size > 0 for p in paths.values())
    assert Path(paths["report.png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = Path(paths["report.html"]).read_text()
    assert "data:image/png;base64," in page and "<h1>" in page
    assert all(name in page for name in report.table["name"])
    assert len(Path(paths["runs.csv"]).read_text().splitlines()) == 1 + len(VAL_ACCURACY)


def test_the_page_shows_a_run_name_or_title_with_markup_as_text(report):
    # A run name is the user's text (MLflow takes any); on the page it must not become markup.
    script = "<script>alert(1)</script>"
    best = report.table["run_id"] == report.best_run_id
    named = dataclasses.replace(report, table=report.table.assign(name=report.table["name"].mask(best, script)))
    page = html_page(named, f"{script} & co", [b"\x89PNG"], DDOF)
    assert "<script>" not in page
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</title>" in page
    assert "Best run: <b>&lt;script&gt;alert(1)&lt;/script&gt;</b>" in page
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td>" in page  # the runs table


def test_format_table_marks_the_best_run_first(report):
    runs, groups = format_table(report).split("\n\nGroups: ")
    lines = runs.splitlines()
    assert lines[1].lstrip().startswith("*") and "optimizer=adam,seed=1" in lines[1]
    assert sum("*" in line for line in runs.splitlines()) == 1
    # Then the groups over their seeds, each against the best, with the interval's verdict.
    rows = groups.splitlines()
    assert "95% interval" in rows[0] and "ci95_low" in rows[1] and "vs_best" in rows[1]
    assert rows[2].split()[0] == "optimizer=adam" and rows[2].split()[-1] == "best"
    assert rows[3].split()[0] == "optimizer=sgd" and rows[3].split()[-1] in ("indistinguishable", "different")


def test_cli_prints_the_table_and_writes_the_report(sweep, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["latest", "--tracking-uri", sweep["uri"]]) == 0
    out = capsys.readouterr().out
    assert all(f"optimizer={o},seed={s}" in out for o, s in VAL_ACCURACY)
    assert (tmp_path / "report" / sweep["parent"] / "report.html").is_file()
    assert (
        main(
            [
                "--experiment",
                "sweeps",
                "--tracking-uri",
                sweep["uri"],
                "--out",
                "x",
                "--filter",
                "metrics.best_val_accuracy > 0.9",
            ]
        )
        == 0
    )
    assert (tmp_path / "x" / "runs.csv").is_file()


@pytest.mark.parametrize(
    "argv, received",
    [
        (["0123abc"], "parent=0123abc"),
        (["--experiment", "nope"], "experiment=nope"),
    ],
)
def test_cli_bad_input_is_one_error_line_and_exit_code_2(sweep, argv, received, capsys):
    assert main([*argv, "--tracking-uri", sweep["uri"]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and received in err and len(err.splitlines()) == 1


@pytest.mark.parametrize(
    "argv, line",
    [
        (["--mode", "up"], "Error: argument --mode: invalid choice: 'up' (choose from "),
        (["--x", "hours"], "Error: argument --x: invalid choice: 'hours' (choose from "),
        (["--nope"], "Error: unrecognized arguments: --nope"),
    ],
)
def test_cli_refuses_an_option_argparse_refuses_in_one_line_before_it_reads_a_store(argv, line, tmp_path, capsys):
    # argparse's line names the option, the value and what works; no usage text, no SystemExit.
    # The store does not exist: the refusal comes before any run is read.
    assert main([*argv, "--tracking-uri", f"sqlite:///{tmp_path}/none/mlflow.db"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(line) and len(err.splitlines()) == 1
    choices = {"--mode": ("auto", "min", "max"), "--x": ("epoch", "time")}.get(argv[0], ())
    assert all(f"'{choice}'" in err for choice in choices)
    assert not (tmp_path / "none").exists()


@pytest.mark.slow
def test_python_dash_m_kerastrack_report_runs_the_command_line(tmp_path):
    # The package's __main__, as a user starts it: the refusal is the same one line, no traceback.
    done = subprocess.run(
        [sys.executable, "-m", "kerastrack.report", "--mode", "up"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("Error: argument --mode: invalid choice: 'up'")
    assert len(done.stderr.strip().splitlines()) == 1


def test_cli_given_a_job_or_a_single_run_says_it_is_not_a_sweeps_parent(sweep, capsys):
    child = sweep["children"][("sgd", "1")]
    assert main([child, "--tracking-uri", sweep["uri"]]) == 2
    assert capsys.readouterr().err.strip() == (
        f"Error: Run {child} ('optimizer=sgd,seed=1') is not a sweep's parent run; it is a job of the sweep "
        f"{sweep['parent']}: report that sweep with python -m kerastrack.report {sweep['parent']}. Received: parent={child}"
    )
    assert main([sweep["single"], "--tracking-uri", sweep["uri"]]) == 2
    assert (
        "it is a single run: compare single runs with python -m kerastrack.report --experiment 'other'"
        in capsys.readouterr().err
    )


# Probe metrics (gradient norms per layer, update size), logged per epoch by some runs.
PROBE_SCALE = {"grad_norm/dense_0": 0.01, "grad_norm/head": 1.0, "update_per_step": 0.1}


def probe_value(key, run, epoch):
    return PROBE_SCALE[key] * (epoch + 1) * (2 if run[0] == "adam" else 1) + 0.001 * int(run[1])


@pytest.fixture(scope="module")
def probe_sweep(tmp_path_factory):
    """A sweep whose runs also logged probe metrics each epoch."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('probes') / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    parent, children = add_sweep(client, client.create_experiment("probes"), T0, list(VAL_ACCURACY))
    for key, run_id in children.items():
        epochs = range(len(VAL_ACCURACY[key]))
        client.log_batch(
            run_id, metrics=[Metric(k, probe_value(k, key, e), T0 + e, e) for k in PROBE_SCALE for e in epochs]
        )
    return {"uri": uri, "parent": parent, "children": children}


def test_extra_panels_plot_probe_metrics_by_name_or_pattern(probe_sweep):
    records = fetch_runs(probe_sweep["uri"], parent=probe_sweep["parent"], history_keys=["val_accuracy", "grad_norm/*"])
    assert list(records[0].history) == ["val_accuracy", "grad_norm/dense_0", "grad_norm/head"]
    report = build_report(
        fetch_runs(probe_sweep["uri"], parent=probe_sweep["parent"]),
        extra_keys=["update_per_step", "grad_norm/*", "grad_norm/head"],
    )
    panels = {ax.get_title(): ax for ax in report.figure.axes if ax.get_visible()}
    assert list(panels) == [
        "train loss",
        "validation loss",
        "validation accuracy",
        "learning rate",
        "update_per_step",
        "grad_norm/dense_0",
        "grad_norm/head",
    ]
    # One mean curve per group, over the group's runs that reached each epoch (± std band).
    for key in PROBE_SCALE:
        lines = {line.get_label(): line for line in panels[key].lines}
        assert set(lines) == {"optimizer=sgd (n=3)", "optimizer=adam (n=3)"}
        for optimizer in ("sgd", "adam"):
            runs = [k for k in VAL_ACCURACY if k[0] == optimizer]
            expected = [
                np.mean([probe_value(key, r, 0) for r in runs]),
                np.mean([probe_value(key, r, 1) for r in runs]),
            ]
            assert lines[f"optimizer={optimizer} (n=3)"].get_ydata()[:2] == pytest.approx(expected)
        assert len(panels[key].collections) == 2
    assert panels["grad_norm/head"].get_ylabel() == "grad_norm/head"
    with pytest.raises(ConfigError, match=r"'grad_norm/dense_9'.*Received: extra_keys=\['grad_norm/dense_9'\]"):
        build_report(records, extra_keys=["grad_norm/dense_9"])


def test_cli_plot_adds_panels_and_refuses_an_unknown_key(probe_sweep, tmp_path, capsys):
    argv = [probe_sweep["parent"], "--tracking-uri", probe_sweep["uri"], "--out", str(tmp_path / "r")]
    assert main([*argv, "--plot", "grad_norm/*", "--plot", "update_per_step"]) == 0
    assert (tmp_path / "r" / "report.png").is_file()
    capsys.readouterr()
    assert main([*argv, "--plot", "weight_l1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and "weight_l1" in err and "update_per_step" in err and len(err.splitlines()) == 1


def test_cli_x_time_plots_against_seconds_and_refuses_another_axis(sweep, tmp_path, capsys):
    argv = [sweep["parent"], "--tracking-uri", sweep["uri"], "--out", str(tmp_path / "r")]
    assert main([*argv, "--x", "time"]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "x: seconds of training" in page and f"<h1>sweep ({sweep['parent']})</h1>" in page
    capsys.readouterr()
    assert main([*argv, "--x", "hours"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: argument --x: invalid choice: 'hours'") and len(err.splitlines()) == 1


def test_cli_best_over_writes_each_group_at_its_best_value_and_refuses_a_key_not_swept(sweep, tmp_path, capsys):
    argv = [sweep["parent"], "--tracking-uri", sweep["uri"], "--out", str(tmp_path / "r")]
    assert main([*argv, "--best-over", "optimizer"]) == 0
    out = capsys.readouterr().out
    assert "Best of each group over optimizer" in out
    # adam has the better mean, but its seed 2 failed: only values whose every run finished count.
    (row,) = pd.read_csv(tmp_path / "r" / "best_over.csv").to_dict("records")
    assert (row["group"], row["optimizer"], row["left_out"], row["n"]) == ("all runs", "sgd", "adam", 3)
    assert (tmp_path / "r" / "best_over.png").is_file()
    assert main([*argv, "--best-over", "seed"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("Error: ") and "best_over=seed" in err and len(err.splitlines()) == 1
