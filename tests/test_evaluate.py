"""``python -m kerastrack.evaluate``: a trained run's logged model evaluated on a test split, the
result recorded in the run or in a new linked run, and every refusal before anything is recorded.

The runs are real: trained in this process on 200 digits, one epoch, into a SQLite store of
the module's own."""

import os
import subprocess
import sys

import mlflow
import numpy as np
import pytest

from kerastrack.errors import ConfigError
from kerastrack.evaluate.cli import main
from kerastrack.tracking.query import fetch_runs
from tests.helpers import history, train_in_process


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A store with a run that logged its model and one that did not (tracking.log_model=false)."""
    from kerastrack.tracking import open_store

    tmp = tmp_path_factory.mktemp("evaluate")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    open_store(uri)
    return {
        "uri": uri,
        "run": train_in_process(uri, tmp / "with_model", "tracking.log_model=true"),
        "no_model": train_in_process(uri, tmp / "no_model", "tracking.log_model=false"),
    }


def all_runs(uri):
    client = mlflow.MlflowClient(uri)
    return client.search_runs([e.experiment_id for e in client.search_experiments()])


def test_an_evaluation_goes_into_the_run_once_and_another_into_a_new_linked_run(trained, capsys):
    uri, run_id = trained["uri"], trained["run"]
    client = mlflow.MlflowClient(uri)
    before = client.get_run(run_id)
    losses = history(client, before, "loss")

    assert main([run_id, "--tracking-uri", uri]) == 0
    assert f"recorded in run {run_id}" in capsys.readouterr().out
    run = client.get_run(run_id)
    # The logged model on the run's own test split: training's own numbers, under their own names.
    assert run.data.metrics["eval/digits/test_loss"] == pytest.approx(run.data.metrics["test_loss"], rel=1e-4)
    assert run.data.metrics["eval/digits/test_accuracy"] == pytest.approx(run.data.metrics["test_accuracy"])
    assert history(client, run, "eval/digits/test_loss") == [(0, run.data.metrics["eval/digits/test_loss"])]
    assert run.data.tags["evaluated"] == "true" and run.data.tags["eval/digits.model"].startswith("models:/m-")
    assert history(client, run, "loss") == losses and history(client, run, "test_loss")[0][0] == 0
    assert len(history(client, run, "test_loss")) == 1 and run.info.status == "FINISHED"

    # Again on the same data: refused, the run's one value stays one.
    assert main([run_id, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"Error: run {run_id} holds an evaluation on data=digits already") and "--new-run" in err
    assert len(history(client, client.get_run(run_id), "eval/digits/test_loss")) == 1

    # From the model's URI, on another slice of the data, into a run of its own.
    model_uri = run.data.tags["eval/digits.model"]
    assert main([model_uri, "data.limit=50", "--new-run", "--tracking-uri", uri]) == 0
    assert "recorded in a new run" in capsys.readouterr().out
    (new,) = [r for r in all_runs(uri) if r.data.tags.get("evaluate.source_run") == run_id]
    assert new.info.status == "FINISHED" and new.data.tags["evaluate.model"] == model_uri
    assert set(new.data.metrics) == {"test_loss", "test_accuracy"} and new.data.params == {}
    assert history(client, new, "test_loss") == [(0, new.data.metrics["test_loss"])]
    assert client.get_run(run_id).data.metrics == run.data.metrics  # the source run as it was

    # A registered version of it, likewise; and the report's per-epoch curves leave evaluations out.
    client.create_registered_model("digits-net")
    client.create_model_version("digits-net", model_uri, run_id=run_id, model_id=model_uri.removeprefix("models:/"))
    assert main(["models:/digits-net/1", "--new-run", "--tracking-uri", uri]) == 0
    linked = [r for r in all_runs(uri) if r.data.tags.get("evaluate.source_run") == run_id]
    assert len(linked) == 2 and {r.data.tags["evaluate.model"] for r in linked} == {model_uri}
    (record,) = [r for r in fetch_runs(uri, experiment="kerastrack") if r.run_id == run_id]
    assert "loss" in record.history and not [k for k in record.history if k.startswith("eval/")]


@pytest.mark.parametrize(
    ("argv", "line"),
    [
        (["0123456789abcdef"], "Error: there is no run 0123456789abcdef in the store"),
        (["models:/m-nope"], "Error: there is no model models:/m-nope in the store"),
        (["models:/nope/1"], "Error: there is no model models:/nope/1 in the store"),
        (["{no_model}"], "Error: run {no_model} ('digits-mlp-categorical_crossentropy-adam') has no logged model"),
        (["{run}", "data=iris"], "Error: data=iris does not fit the model of run {run}: its samples have shape (4,)"),
        (["{run}", "data=nope"], "Error: there is no data option 'nope'; choose one of breast_cancer,"),
        (["{run}", "data.nope=1"], "Error: Key 'nope' is not in struct"),
        (["{run}", "model=mlp"], "Error: evaluate takes data=<option>"),
    ],
)
def test_a_bad_source_or_data_set_is_one_error_line_and_records_nothing(trained, argv, line, capsys):
    uri = trained["uri"]
    before = {r.info.run_id: (r.data.metrics, r.data.tags) for r in all_runs(uri)}
    argv = [a.format(**trained) for a in argv]
    assert main([*argv, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(line.format(**trained)) and len(err.splitlines()) == 1, err
    assert "Received: " in err
    assert {r.info.run_id: (r.data.metrics, r.data.tags) for r in all_runs(uri)} == before


def test_a_data_set_with_other_classes_does_not_fit_the_model():
    import keras

    from kerastrack.data.sets import Dataset
    from kerastrack.evaluate.data import check_fits

    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    x, y = np.zeros((4, 8, 8, 1), "float32"), np.zeros(4, "int64")
    three = Dataset("three", "multiclass", x, y, x, y, x, y, class_names=["a", "b", "c"])
    with pytest.raises(ConfigError, match=r"it has 3 classes, the model predicts 10.*Received: data=three"):
        check_fits(model, three, {"targets": "one_hot"}, "three", "r1")


@pytest.mark.slow
def test_the_commands_refuse_bad_input_in_one_line_from_a_shell(tmp_path):
    # Both scripts' modules as a user starts them, in a folder without a store: one line, exit 2.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}  # what earlier tests set
    for argv, line in (
        (["kerastrack.evaluate", "abc"], "Error: There is no MLflow store at"),
        (["kerastrack.clean", "--older-than", "7x"], "Error: argument --older-than: must be a number and a unit"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", *argv], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(line) and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "mlflow.db").exists()
