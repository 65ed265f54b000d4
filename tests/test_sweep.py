"""Sweeps as a user runs them: `python train.py -m ...`, parent and child runs in MLflow."""

import json

import pytest

from tests.helpers import run_train, store_client

pytestmark = pytest.mark.slow
QUICK = ["trainer.epochs=2", "tracking.log_model=false", "trainer.verbose=0"]


def sweep_runs(tmp_path):
    client = store_client(tmp_path)
    exp = client.get_experiment_by_name("kerastrack")
    found = client.search_runs([exp.experiment_id])
    (parent,) = [r for r in found if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in found if r is not parent]
    return client, parent, children


def test_a_sweep_is_a_parent_run_with_a_child_per_job(tmp_path):
    result = run_train(tmp_path, "-m", "optimizer=sgd,adam", "seed=0,1", *QUICK)
    assert result.returncode == 0, result.stderr[-3000:]
    client, parent, children = sweep_runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert json.loads(parent.data.tags["sweep.keys"]) == ["optimizer", "seed"]
    # Counts and the best value are tags: as metrics they became charts of their own in the UI.
    assert parent.data.tags["sweep.n_jobs"] == "4" and parent.data.tags["sweep.n_failed"] == "0"
    assert parent.data.tags["sweep.n_skipped"] == "0"  # no job held by another process
    assert not parent.data.metrics
    assert len({r.data.tags["mlflow.runColor"] for r in children}) == 4  # told apart in the UI's charts
    assert sorted(r.info.run_name for r in children) == [
        "optimizer=adam,seed=0",
        "optimizer=adam,seed=1",
        "optimizer=sgd,seed=0",
        "optimizer=sgd,seed=1",
    ]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert json.loads(child.data.tags["sweep.values"])["optimizer"] == child.data.tags["optimizer"]
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")] == [0, 1]
    # The comparison report sits on the parent, and the best child is named.
    report = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert {"report/report.png", "report/report.html", "report/runs.csv", "report/groups.csv"} <= report
    best = min(children, key=lambda r: r.data.metrics["best_val_loss"])
    assert parent.data.tags["best_run_id"] == best.info.run_id
    assert float(parent.data.tags["best_val_loss"]) == pytest.approx(best.data.metrics["best_val_loss"])
    assert parent.data.tags["sweep.monitor"] == "val_loss" and parent.data.tags["sweep.monitor_mode"] == "min"
    # The terminal: the table, then where everything went and how to see it in the UI.
    assert "optimizer=adam,seed=" in result.stdout
    sweep_dir = parent.data.tags["sweep.dir"]
    assert f"Sweep of 4 job(s) done; each job's output dir is in {sweep_dir}" in result.stdout
    assert f"Report: {sweep_dir}/report/report.png (beside it: report.html, runs.csv, groups.csv)" in result.stdout
    assert f"Side by side in the MLflow UI: python -m kerastrack.ui --sweep {parent.info.run_id}" in result.stdout
    # Its page and figure are titled with the sweep's parent run (swept keys, sweep dir, id).
    (page,) = tmp_path.glob("multirun/*/*/report/report.html")
    assert f"<h1>{parent.info.run_name} ({parent.info.run_id})</h1>" in page.read_text()


def test_failed_jobs_do_not_stop_a_parallel_sweep(tmp_path):
    # Four parallel writers on a fresh SQLite store; one job diverges, one has a bad value.
    result = run_train(
        tmp_path,
        "-m",
        "launcher=parallel",
        "hydra.launcher.n_jobs=4",
        "optimizer=sgd",
        "optimizer.learning_rate=0.01,0.05,1e30,-1",
        "hydra.callbacks.mlflow_sweep.report=false",
        *QUICK,
    )
    assert result.returncode == 1
    assert "Error: 2 of 4 jobs failed (1 of them diverged)" in result.stderr
    _, parent, children = sweep_runs(tmp_path)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep.n_jobs"] == "4" and parent.data.tags["sweep.n_failed"] == "2"
    status = {r.info.run_name: r.info.status for r in children}
    assert status == {
        "optimizer.learning_rate=0.01": "FINISHED",
        "optimizer.learning_rate=0.05": "FINISHED",
        "optimizer.learning_rate=1e+30": "FAILED",
    }  # the bad value never opened a run
    (diverged,) = [r for r in children if r.info.status == "FAILED"]
    assert diverged.data.tags["diverged"] == "true"
    assert "optimizer.learning_rate must be a number > 0" in result.stdout + result.stderr


def test_in_a_grid_that_allows_it_a_diverged_job_is_a_result_and_the_sweep_exits_0(tmp_path):
    result = run_train(
        tmp_path,
        "-m",
        "optimizer=sgd",
        "optimizer.learning_rate=0.01,1e30",
        "hydra.callbacks.mlflow_sweep.diverged_ok=true",
        "hydra.callbacks.mlflow_sweep.report=false",
        *QUICK,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 of 2 jobs diverged (FAILED in MLflow with diverged=true)" in result.stdout
    assert "job diverged (a result of this sweep, diverged_ok)" in result.stdout + result.stderr
    assert "job failed" not in result.stdout + result.stderr
    _, parent, children = sweep_runs(tmp_path)
    assert parent.data.tags["sweep.n_failed"] == "1"  # the record still says what happened
    assert sorted(r.info.status for r in children) == ["FAILED", "FINISHED"]


def test_four_parallel_writers_on_an_existing_store(tmp_path):
    from kerastrack.tracking import open_store

    client = open_store(f"sqlite:///{tmp_path / 'mlflow.db'}")
    earlier = client.create_run(client.create_experiment("kerastrack"), run_name="earlier")
    client.log_metric(earlier.info.run_id, "loss", 1.0)
    client.set_terminated(earlier.info.run_id)
    result = run_train(
        tmp_path,
        "-m",
        "launcher=parallel",
        "hydra.launcher.n_jobs=4",
        "seed=0,1,2,3",
        "hydra.callbacks.mlflow_sweep.report=false",
        *QUICK,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = {r.info.run_name: r for r in client.search_runs([earlier.info.experiment_id])}
    assert found["earlier"].info.status == "FINISHED" and found["earlier"].data.metrics["loss"] == 1.0
    children = [r for r in found.values() if r.data.tags.get("sweep.role") == "child"]
    assert sorted(r.info.run_name for r in children) == [f"seed={i}" for i in range(4)]
    for child in children:
        assert child.info.status == "FINISHED"
        assert [m.step for m in client.get_metric_history(child.info.run_id, "val_loss")] == [0, 1]
