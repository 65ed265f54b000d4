"""``python -m kerastrack.clean``: which runs it deletes (filters combined, a parent's runs with it,
never a RUNNING run), that it asks first, and that a deleted run leaves nothing behind: not its
rows, its artifacts, its logged model or its output dir.

Each test has a SQLite store of its own in tmp_path. The sweep structures and statuses are
made with MLflow's client (a RUNNING run is one that no process closes); the test of what a
deletion leaves has a run trained in this process."""

import io
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.exceptions import MlflowException

from kerastrack.clean import main
from tests.helpers import train_in_process

DAY = 86400


class Terminal(io.StringIO):
    """A stdin that is a terminal, its answer typed in."""

    def isatty(self):
        return True


@pytest.fixture
def store(tmp_path):
    """A new store: ``(uri, client, make)``; ``make(status, ...)`` records a run and its output dir."""
    from kerastrack.tracking import open_store

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    open_store(uri)
    client = mlflow.MlflowClient(uri)
    experiment = client.create_experiment("clean")

    def make(status, name, age_days=0, parent=None, sweep=False, out=None):
        tags = {"mlflow.parentRunId": parent} if parent else {}
        if sweep:
            tags.update({"sweep.role": "parent", "sweep.dir": str(tmp_path / name)})
        started = int((time.time() - age_days * DAY) * 1000)
        run = client.create_run(experiment, start_time=started, tags=tags, run_name=name)
        directory = tmp_path / (out or name)
        directory.mkdir(exist_ok=True)
        (directory / "learning_curves.png").write_text("png")
        if not sweep:
            client.log_param(run.info.run_id, "paths.output_dir", str(directory))
        if status != "RUNNING":
            client.set_terminated(run.info.run_id, status)
        return run.info.run_id

    return uri, client, make, tmp_path


def gone(client, run_id):
    try:
        client.get_run(run_id)
    except MlflowException:
        return True
    return False


def test_a_sweep_goes_with_its_runs_and_a_running_run_and_its_parent_stay(store, capsys):
    uri, client, make, tmp = store
    done = make("FINISHED", "done", sweep=True)
    done_jobs = [make(s, f"done-{i}", parent=done, out=f"done/{i}") for i, s in enumerate(("FINISHED", "FAILED"))]
    busy = make("FINISHED", "busy", sweep=True)
    busy_finished = make("FINISHED", "busy-0", parent=busy, out="busy/0")
    busy_running = make("RUNNING", "busy-1", parent=busy, out="busy/1")

    assert main(["--sweep", done, "--yes", "--tracking-uri", uri]) == 0
    assert all(gone(client, r) for r in (done, *done_jobs)) and not (tmp / "done").exists()
    assert "Deleted 3 runs and 1 output dirs." in capsys.readouterr().out  # the jobs' dirs went with the sweep's

    assert main(["--sweep", busy, "--yes", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert f"keep   {busy}  FINISHED" in out and f"(its run {busy_running} is RUNNING)" in out
    assert f"keep   {busy_running}  RUNNING" in out and "RUNNING: another process is writing it" in out
    assert gone(client, busy_finished) and not (tmp / "busy" / "0").exists()
    assert client.get_run(busy_running).info.status == "RUNNING" and (tmp / "busy" / "1").is_dir()
    assert client.get_run(busy).info.lifecycle_stage == "active" and (tmp / "busy").is_dir()


def test_the_filters_combine_and_a_parent_takes_its_runs_with_it(store, capsys):
    uri, client, make, tmp = store
    old_failed = make("FAILED", "old-failed", age_days=10)
    new_failed = make("FAILED", "new-failed", age_days=1)
    old_finished = make("FINISHED", "old-finished", age_days=10)
    old_sweep = make("FAILED", "old-sweep", age_days=10, sweep=True)
    its_job = make("FINISHED", "old-sweep-0", age_days=1, parent=old_sweep, out="old-sweep/0")
    # A run that resumed into the old failed run's dir: the dir stays while that run does.
    resumed = make("FINISHED", "resumed", out="old-failed")

    assert main(["--older-than", "7d", "--status", "failed", "--yes", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "3 runs to delete, 0 kept" in out
    assert all(gone(client, r) for r in (old_failed, old_sweep, its_job))
    assert not any(gone(client, r) for r in (new_failed, old_finished, resumed))
    assert (tmp / "old-failed").is_dir() and not (tmp / "old-sweep").exists() and (tmp / "new-failed").is_dir()

    assert main(["--older-than", "7d", "--status", "FAILED", "--yes", "--tracking-uri", uri]) == 0
    assert "0 runs to delete" in capsys.readouterr().out


def test_it_deletes_only_once_asked_and_refuses_without_a_terminal(store, capsys):
    uri, client, make, tmp = store
    failed = make("FAILED", "failed")
    argv = ["--status", "FAILED", "--tracking-uri", uri]

    assert main(argv, stdin=io.StringIO("y\n")) == 2  # not a terminal: no one to ask
    captured = capsys.readouterr()
    assert f"delete {failed}  FAILED" in captured.out
    assert captured.err.strip() == (
        "Error: nothing deleted: there is no terminal to confirm on (stdin is not a tty); pass --yes to "
        "delete without asking. Received: yes=False"
    )
    assert main(argv, stdin=Terminal("n\n")) == 0
    assert "Nothing deleted." in capsys.readouterr().out
    assert not gone(client, failed) and (tmp / "failed").is_dir()

    assert main(argv, stdin=Terminal("y\n")) == 0
    assert "Delete these 1 runs? [y/N]" in capsys.readouterr().out
    assert gone(client, failed) and not (tmp / "failed").exists()


def test_a_deleted_trained_run_leaves_no_rows_artifacts_model_or_output_dir(store, capsys):
    uri, client, make, tmp = store
    run_id = train_in_process(uri, tmp / "trained", "tracking.log_model=true")
    run = client.get_run(run_id)
    (model,) = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    # .../<run id>/artifacts and .../models/<model id>/artifacts: the folders named by the ids go too.
    artifacts = Path(run.info.artifact_uri.removeprefix("file://")).parent
    models = Path(model.artifact_location.removeprefix("file://")).parent
    assert artifacts.name == run_id and models.name == model.model_id
    assert client.list_artifacts(run_id, "plots") and (tmp / "trained" / "learning_curves.png").is_file()

    assert main(["--status", "FINISHED", "--yes", "--tracking-uri", uri]) == 0
    assert "Deleted 1 runs and 1 output dirs." in capsys.readouterr().out
    assert gone(client, run_id) and not (tmp / "trained").exists()
    assert not client.search_logged_models([run.info.experiment_id])
    with pytest.raises(MlflowException):
        client.get_logged_model(model.model_id)
    assert not artifacts.exists() and not models.exists() and artifacts.parent.is_dir()


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["--older-than", "7x"], "Error: argument --older-than: must be a number and a unit (s, m, h, d or w)"),
        (["--status", "NOPE"], "Error: --status must be one of FINISHED, FAILED, KILLED, RUNNING, SCHEDULED."),
        (["--sweep", "abc"], "Error: there is no sweep abc (a sweep's parent run id) in the store"),
        ([], "Error: say which runs to delete: --sweep ID, --older-than AGE and/or --status STATUS."),
    ],
)
def test_a_bad_filter_is_one_error_line_and_deletes_nothing(store, argv, line, capsys):
    uri, client, make, tmp = store
    failed = make("FAILED", "failed", age_days=10)
    assert main([*argv, "--yes", "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(line) and "Received: " in err and len(err.splitlines()) == 1, err
    assert not gone(client, failed) and (tmp / "failed").is_dir()
