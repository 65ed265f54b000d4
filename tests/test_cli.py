"""`python train.py` as a user runs it: a real process, a real store in the working directory."""

import os
import subprocess
import sys

import mlflow
import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow


def run_train(cwd, *overrides):
    env = dict(os.environ)
    env.pop("MLFLOW_TRACKING_URI", None)
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *overrides], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True)


def test_train_records_into_the_launch_directory_store(tmp_path):
    # A dirty git checkout, and Hydra changing into the run dir: the store must still be
    # the launch directory's mlflow.db, with the commit, the dirt and the model on record.
    (tmp_path / "notes.txt").write_text("v1\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "notes.txt")
    git(tmp_path, "commit", "-qm", "init")
    (tmp_path / "notes.txt").write_text("v2\n")
    result = run_train(tmp_path, "trainer.epochs=2", "optimizer=nesterov", "hydra.job.chdir=true")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "mlflow.db").is_file()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("kerastrack").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["optimizer"] == "nesterov"
    assert run.data.tags["git.dirty"] == "true" and len(run.data.tags["git.commit"]) == 40
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1]
    names = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for a in client.list_artifacts(run.info.run_id, "git")}
    assert "git/diff.patch" in names
    mlflow.set_tracking_uri(client.tracking_uri)
    (model,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert model.source_run_id == run.info.run_id
    assert not list((tmp_path / "outputs").rglob("mlflow.db")), "the store followed hydra.job.chdir"
    assert not list((tmp_path / "outputs").rglob("mlruns")), "artifacts followed hydra.job.chdir"


def test_bad_value_is_one_line_and_a_non_zero_exit(tmp_path):
    result = run_train(tmp_path, "optimizer=momentum", "optimizer.momentum=1.5")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == "Error: optimizer.momentum must be a number in [0, 1]. Received: optimizer.momentum=1.5"
    assert "Traceback" not in result.stderr
    if (tmp_path / "mlflow.db").exists():
        client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
        assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_unknown_option_lists_the_options(tmp_path):
    result = run_train(tmp_path, "optimizer=adamm")
    assert result.returncode != 0
    assert "Could not find 'optimizer/adamm'" in result.stderr
    assert "amsgrad" in result.stderr and "nesterov" in result.stderr  # Hydra lists the options
