"""A sweep on Ray (`launcher=ray`): a local Ray instance, jobs logging to a real MLflow server."""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import mlflow
import pytest

from kerastrack.tracking.server import MlflowServer, sqlite_uri
from tests.helpers import ROOT, store_client

pytestmark = [pytest.mark.slow, pytest.mark.extra("ray")]


def processes_mentioning(text):
    """Pids of live processes whose command line contains ``text``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit() and int(proc.name) != os.getpid():
            try:
                if text in (proc / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:  # gone meanwhile
                continue
    return pids


@pytest.fixture
def ray_tmp():
    """Ray's session directory, short (it holds Unix sockets) and named, so that Ray's own
    processes (raylet, GCS, workers: their command lines name it) can be found."""
    path = tempfile.mkdtemp(prefix="kt-ray-", dir="/tmp")
    yield path
    for pid in processes_mentioning(path):  # only if the test failed: Ray left these behind
        os.kill(pid, 9)
    shutil.rmtree(path, ignore_errors=True)


def test_a_sweep_on_ray_logs_every_job_to_the_tracking_server(tmp_path, ray_tmp):
    store = tmp_path / "server"
    store.mkdir()
    with MlflowServer(sqlite_uri(store / "mlflow.db"), artifacts_destination=store / "art") as server:
        env = {**os.environ, "MLFLOW_TRACKING_URI": server.url, "RAY_TMPDIR": ray_tmp}
        result = subprocess.run(
            [
                sys.executable,
                str(ROOT / "train.py"),
                "-m",
                "launcher=ray",
                "optimizer=sgd,adam",
                "trainer.epochs=2",
                "tracking.log_model=false",
                "trainer.verbose=0",
            ],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=400,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        client = mlflow.MlflowClient(server.url)
        runs = client.search_runs([client.get_experiment_by_name("kerastrack").experiment_id])
        histories = {
            r.info.run_id: [m.step for m in client.get_metric_history(r.info.run_id, "val_loss")] for r in runs
        }
    (parent,) = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in runs if r is not parent]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["sweep.n_jobs"] == "2" and parent.data.tags["sweep.n_failed"] == "0"
    assert sorted(r.info.run_name for r in children) == ["optimizer=adam", "optimizer=sgd"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert histories[child.info.run_id] == [0, 1]
        assert child.data.params["threads"] == "1"  # launcher=ray's one TensorFlow thread per job
    # No store in the launch dir: the jobs, in Ray's worker processes, used the server too.
    assert not (tmp_path / "mlflow.db").exists()
    # The local Ray instance went down with the sweep.
    assert processes_mentioning(ray_tmp) == []


def test_sigterm_to_a_sweep_on_ray_kills_its_runs_in_order_and_the_relaunch_completes_them(tmp_path, ray_tmp):
    # ray.init installs a SIGTERM handler of its own (exit at once): the sweep's must win,
    # so that the jobs close their runs KILLED and the same command continues them.
    import signal
    import time

    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}, "RAY_TMPDIR": ray_tmp}
    # No early stopping: every job has all 150 epochs to complete after the relaunch.
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "launcher=ray",
        "optimizer=sgd,adam",
        "trainer.epochs=150",
        "callbacks=terminate_on_nan",
        "tracking.log_model=false",
        "trainer.verbose=0",
        "hydra.sweep.dir=sweep",
        "hydra.callbacks.mlflow_sweep.report=false",
    ]
    sweep = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = store_client(tmp_path)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:  # both jobs training: each has an epoch on record
        time.sleep(1)
        if (tmp_path / "mlflow.db").exists() and client.get_experiment_by_name("kerastrack"):
            children = [r for r in client.search_runs(["1"]) if r.data.tags.get("sweep.role") == "child"]
            if len(children) == 2 and all(client.get_metric_history(r.info.run_id, "loss") for r in children):
                break
    sweep.send_signal(signal.SIGTERM)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert f"Continue it with: python {ROOT / 'train.py'} " in err and "hydra.sweep.dir=" in err
    stopped = {r.info.run_id: r.info.status for r in client.search_runs(["1"])}
    assert sorted(stopped.values()) == ["KILLED", "KILLED", "KILLED"]  # the parent and both children

    again = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400)
    assert again.returncode == 0, again.stderr[-3000:]
    runs = client.search_runs(["1"])
    assert {r.info.run_id for r in runs} == set(stopped)  # the same runs, completed in place
    for run in runs:
        assert run.info.status == "FINISHED"
        if run.data.tags.get("sweep.role") == "child":
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "loss")]
            assert sorted(steps) == list(range(150))
    assert processes_mentioning(ray_tmp) == []
