"""`python train.py` as a user runs it: a real process, a real store in the working directory."""

import os
import subprocess
import sys

import mlflow
import pytest

from tests.helpers import CONF, ROOT, as_in_a_terminal, run_train, store_client

pytestmark = pytest.mark.slow


def git(cwd, *args):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True, capture_output=True
    )


def test_train_records_into_the_launch_directory_store(tmp_path):
    # A user's project (its conf/, given with --config-dir) in a dirty git checkout, started
    # from another directory, with Hydra changing into the run dir: the store must be the
    # launch directory's mlflow.db, and the project's commit, dirt and the model on record.
    project, launch = tmp_path / "project", tmp_path / "launch"
    (project / "conf" / "optimizer").mkdir(parents=True)
    (project / "conf" / "optimizer" / "my_nesterov.yaml").write_text((CONF / "optimizer" / "nesterov.yaml").read_text())
    git(project, "init", "-q")
    git(project, "add", ".")
    git(project, "commit", "-qm", "init")
    (project / "conf" / "optimizer" / "my_nesterov.yaml").write_text(
        (project / "conf" / "optimizer" / "my_nesterov.yaml").read_text() + "\n# edited\n"
    )
    launch.mkdir()
    result = run_train(
        launch,
        "--config-dir",
        str(project / "conf"),
        "trainer.epochs=2",
        "optimizer=my_nesterov",
        "hydra.job.chdir=true",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (launch / "mlflow.db").is_file()
    client = store_client(launch)
    (run,) = client.search_runs([client.get_experiment_by_name("kerastrack").experiment_id])
    assert run.info.status == "FINISHED" and run.data.tags["optimizer"] == "my_nesterov"
    assert run.data.tags["git.dirty"] == "true" and len(run.data.tags["git.commit"]) == 40
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1]
    names = {a.path for a in client.list_artifacts(run.info.run_id)} | {
        a.path for a in client.list_artifacts(run.info.run_id, "git")
    }
    assert "git/diff.patch" in names
    mlflow.set_tracking_uri(client.tracking_uri)
    (model,) = mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list")
    assert model.source_run_id == run.info.run_id
    assert not list((launch / "outputs").rglob("mlflow.db")), "the store followed hydra.job.chdir"
    assert not list((launch / "outputs").rglob("mlruns")), "artifacts followed hydra.job.chdir"


def test_bad_value_is_one_line_and_a_non_zero_exit(tmp_path):
    result = run_train(tmp_path, "optimizer=momentum", "optimizer.momentum=1.5")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1] == "Error: optimizer.momentum must be a number in [0, 1]. Received: optimizer.momentum=1.5"
    assert "Traceback" not in result.stderr
    if (tmp_path / "mlflow.db").exists():
        client = store_client(tmp_path)
        assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_unknown_option_is_one_line_that_lists_the_options(tmp_path):
    result = run_train(tmp_path, "optimizer=adamm")
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(
            "Error: optimizer has no option 'adamm'; its options: adagrad, adagrad_from_zero, adam, adamw, amsgrad,"
        )
    )
    assert result.stderr.strip().endswith("Received: optimizer=adamm")
    assert "Traceback" not in result.stderr and "Config search path" not in result.stderr


def test_two_runs_started_at_once_on_a_fresh_store_both_succeed(tmp_path):
    # Both processes find no mlflow.db and create its tables at about the same moment.
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(ROOT / "train.py"),
                f"optimizer={name}",
                "trainer.epochs=2",
                "tracking.log_model=false",
                f"hydra.run.dir=out/{name}",
            ],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("sgd", "adam")
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    client = store_client(tmp_path)
    found = client.search_runs([client.get_experiment_by_name("kerastrack").experiment_id])
    assert sorted(r.data.tags["optimizer"] for r in found) == ["adam", "sgd"]
    assert all(r.info.status == "FINISHED" for r in found)
    for run in found:
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1]


def test_unknown_key_is_one_line_before_anything_runs(tmp_path):
    result = run_train(tmp_path, "trainer.epoch=3")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: trainer.epoch is not a key of the config (kerastrack --cfg job shows them; +trainer.epoch=3 "
        "adds a new one). Received: trainer.epoch=3"
    ]
    assert not (tmp_path / "mlflow.db").exists()
    # Asked for, Hydra's own full error stays: its traceback.
    full = run_train(tmp_path, "trainer.epoch=3", env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode == 1 and "Traceback" in full.stderr and "Key 'epoch' is not in struct" in full.stderr


def test_a_run_dir_that_cannot_be_written_is_one_error_line(tmp_path):
    result = run_train(tmp_path, "hydra.run.dir=/dev/null/out")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: hydra.run.dir cannot be written (Not a directory): the run's outputs, logs and training state go "
        "there. Choose another, e.g. hydra.run.dir=outputs/mine. Received: hydra.run.dir=/dev/null/out"
    )
    assert "Traceback" not in result.stderr and not (tmp_path / "mlflow.db").exists()


def test_ctrl_c_while_the_libraries_load_says_no_run_was_recorded(tmp_path):
    import signal
    import time

    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "train.py")],
        cwd=tmp_path,
        preexec_fn=as_in_a_terminal,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)  # Python is up; the imports of Hydra, TensorFlow and MLflow take seconds
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "Interrupted before the run opened: no run was recorded."
    assert "Traceback" not in err


def test_a_sweep_whose_data_cannot_be_had_says_so_once_and_stops(tmp_path):
    # mnist is not on this machine and cannot be downloaded (no network here, and an empty
    # Keras cache): every job would fail the same way.
    result = run_train(
        tmp_path,
        "-m",
        "data=mnist",
        "optimizer=sgd,adam,rmsprop",
        "hydra.sweep.dir=sweep",
        env={"KERAS_HOME": str(tmp_path / "keras")},
    )
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"Sweep dir: {tmp_path / 'sweep'}" in result.stdout + result.stderr  # said at the start
    errors = [line for line in result.stderr.splitlines() if "data=mnist is not on this machine" in line]
    assert len(errors) == 1 and errors[0].startswith("Error: ")  # once, not once per job
    assert "Traceback" not in result.stderr
    client = store_client(tmp_path)
    (parent,) = client.search_runs(["1"])  # no child: no job opened a run
    assert parent.info.status == "FAILED" and parent.data.tags["sweep.role"] == "parent"


# TensorFlow's C++ lines that a healthy CPU run prints unless told otherwise (see
# docs/performance.md): none of them says anything a user of kerastrack can act on.
TENSORFLOW_NOISE = (
    "absl::InitializeLog",
    "oneDNN custom operations",
    "Could not find cuda drivers",
    "cuInit",
    "use_unbounded_threadpool",
    "cpu_feature_guard",
    "This TensorFlow binary is optimized",
    "tf.function retracing",
)


def test_a_run_and_the_help_print_none_of_tensorflows_own_log_lines(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)  # the default, whatever this shell says
    # A sweep: its second job's new model made TensorFlow warn of retracing Keras' functions.
    result = run_train(tmp_path, "-m", "optimizer=sgd,adam", "trainer.epochs=1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "34/34 - " in result.stdout  # Keras' own progress line stays
    shown = run_train(tmp_path, "--help")
    assert shown.returncode == 0 and "optimizer: " in shown.stdout
    for output in (result.stdout + result.stderr, shown.stdout + shown.stderr):
        noise = [line for line in output.splitlines() if any(text in line for text in TENSORFLOW_NOISE)]
        assert not noise, "\n".join(noise)
