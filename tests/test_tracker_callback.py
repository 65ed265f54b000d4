"""``kerastrack.Tracker()`` in a plain Keras script: the record ``python train.py`` makes, with a
true final status, on a real SQLite store (and a real server for the outage)."""

import json
import os
import signal

import keras
import mlflow
import numpy as np
import pytest
import tensorflow as tf

import kerastrack
from kerastrack.callbacks import tracker as tracker_module
from kerastrack.pipeline import train
from tests.helpers import steps

EPOCH_KEYS = {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "epoch_time_s"}


def digits(n=240):
    """Scikit-learn's digits as a plain script has them: images scaled to [0, 1], one-hot labels."""
    from sklearn.datasets import load_digits

    data = load_digits()
    return (data.images[:n, ..., None] / 16).astype("float32"), keras.utils.to_categorical(data.target[:n], 10)


def mlp():
    """train.py's default model (model=mlp) written as a script writes it, compiled as a script does."""
    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    return model


class RaiseAtEpoch(keras.callbacks.Callback):
    """Raises ``error`` when epoch ``epoch`` begins (KeyboardInterrupt: sends this process SIGINT,
    as a terminal's Ctrl-C does; "SIGTERM": sends it SIGTERM, as a scheduler does)."""

    def __init__(self, epoch, error):
        super().__init__()
        self.epoch, self.error = epoch, error

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            if self.error in (KeyboardInterrupt, "SIGTERM"):
                os.kill(os.getpid(), signal.SIGINT if self.error is KeyboardInterrupt else signal.SIGTERM)
            raise RuntimeError("the signal did not stop fit") if self.error == "SIGTERM" else self.error


@pytest.fixture(autouse=True)
def plain_script():
    """A plain script's start: Python's own signal handlers and Keras' fresh names (its first
    model is ``sequential``), whatever an earlier test in this process left."""
    keras.backend.clear_session()
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for sig, handler in before.items():
        signal.signal(sig, handler)


@pytest.fixture
def tracker(store, request):
    """A Tracker's arguments for this test's experiment in the session's store."""
    return {"tracking_uri": store, "experiment_name": request.node.name[:200]}


def logged_models(client, run):
    return client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}'")


def test_a_plain_script_is_recorded_as_train_py_records_a_run(tracker, runs):
    x, y = digits()
    model = mlp()
    callback = kerastrack.Tracker(**tracker, tags={"team": "a", "api_token": "s3cret-value"}, data_name="digits")
    history = model.fit(x, y, epochs=3, batch_size=16, validation_split=0.25, callbacks=[callback], verbose=0)
    (run,) = runs()
    client = runs.client
    assert run.info.status == "FINISHED" and callback.status == "FINISHED" and callback.run_id == run.info.run_id
    assert run.info.run_name == "digits-sequential-categorical_crossentropy-adam"
    params = run.data.params
    assert {k: params[k] for k in ("optimizer._target_", "optimizer.learning_rate", "optimizer.beta_1")} == {
        "optimizer._target_": "keras.optimizers.Adam",
        "optimizer.learning_rate": "0.001",
        "optimizer.beta_1": "0.9",
    }
    assert params["loss.fn._target_"] == "keras.losses.CategoricalCrossentropy"
    assert params["trainer.metrics"] == "['accuracy']"
    assert (params["trainer.batch_size"], params["trainer.epochs"]) == ("16", "3")
    assert params["model.num_params"] == str(model.count_params())
    assert params["dataset.sizes"] == "train=180 val=60"
    for key in EPOCH_KEYS:
        assert steps(client, run.info.run_id, key) == [0, 1, 2], key
    assert [m.value for m in client.get_metric_history(run.info.run_id, "loss")] == pytest.approx(
        history.history["loss"]
    )
    best = int(np.argmin(history.history["val_loss"]))
    assert run.data.metrics["best_val_loss"] == pytest.approx(history.history["val_loss"][best])
    assert (run.data.metrics["best_epoch"], steps(client, run.info.run_id, "best_val_loss")) == (best, [0])
    tags = run.data.tags
    assert (tags["optimizer"], tags["loss"], tags["model"], tags["data"]) == (
        "adam",
        "categorical_crossentropy",
        "sequential",
        "digits",
    )
    assert tags["team"] == "a" and tags["api_token"] == "***"  # a credential is masked
    inputs = {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs}
    assert sorted(inputs) == ["training", "validation"] and {d.name for d in inputs.values()} == {"digits"}
    assert json.loads(inputs["validation"].profile)["features_shape"] == [
        60,
        8,
        8,
        1,
    ]  # the last share, as Keras splits
    assert inputs["training"].digest != inputs["validation"].digest
    (model_entity,) = logged_models(client, run)
    assert model_entity.status == "READY"
    assert {m.key for m in model_entity.metrics} == {"best_val_loss", "best_epoch"}
    assert run.outputs.model_outputs[0].step == 2
    loaded = mlflow.keras.load_model(f"models:/{model_entity.model_id}")
    np.testing.assert_allclose(loaded.predict(x[:4], verbose=0), model.predict(x[:4], verbose=0), rtol=1e-6)


def test_the_same_samples_give_the_same_digest_as_arrays_again_and_as_a_reshuffled_tf_data(tracker, runs):
    x, y = digits(96)
    for _ in range(2):
        kept = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(96, reshuffle_each_iteration=True).batch(32)
        mlp().fit(kept, epochs=1, callbacks=[kerastrack.Tracker(**tracker, log_model=False)], verbose=0)
    mlp().fit(x[:64], y[:64], epochs=1, callbacks=[kerastrack.Tracker(**tracker, log_model=False)], verbose=0)
    fewer, second, first = ({i.tags[0].value: i.dataset.digest for i in run.inputs.dataset_inputs} for run in runs())
    assert first == second and set(first) == {"training"}
    assert fewer["training"] != first["training"]
    assert runs()[1].data.params["trainer.batch_size"] == "32"  # the dataset's own batches


@pytest.mark.parametrize(
    "error, status",
    [(RuntimeError("a callback broke"), "FAILED"), (KeyboardInterrupt, "KILLED"), ("SIGTERM", "KILLED")],
)
def test_a_fit_that_raises_or_is_interrupted_ends_failed_or_killed_with_the_epochs_before(error, status, tracker, runs):
    x, y = digits(96)
    callback = kerastrack.Tracker(**tracker)
    with pytest.raises(RuntimeError if status == "FAILED" else KeyboardInterrupt):
        mlp().fit(x, y, epochs=5, validation_split=0.25, callbacks=[callback, RaiseAtEpoch(2, error)], verbose=0)
    (run,) = runs()
    assert run.info.status == status == callback.status
    assert steps(runs.client, run.info.run_id, "loss") == [0, 1]
    assert run.data.tags["error.type"] == ("RuntimeError" if status == "FAILED" else "KeyboardInterrupt")
    assert not logged_models(runs.client, run) and "best_val_loss" not in run.data.metrics
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the script's handlers are back
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_fit_refused_before_training_records_no_run_and_a_diverging_one_ends_failed(tracker, runs):
    x, y = digits(64)
    with pytest.raises(ValueError, match="cardinality"):  # Keras refuses the data before training
        mlp().fit(x, y[:50], epochs=1, callbacks=[kerastrack.Tracker(**tracker)], verbose=0)
    assert runs() == []
    model = mlp()
    model.compile(optimizer=keras.optimizers.SGD(1e30), loss="categorical_crossentropy")
    model.fit(x, y * 1e30, epochs=3, callbacks=[kerastrack.Tracker(**tracker)], verbose=0)
    (run,) = runs()
    assert run.info.status == "FAILED" and run.data.tags["diverged"] == "true"
    assert run.data.tags["error.type"] == "DivergedError" and not logged_models(runs.client, run)


def test_without_the_wrapped_fit_the_run_ends_at_train_end_or_when_the_process_exits(tracker, runs):
    x, y = digits(64)
    unwrapped = keras.Model.fit.__wrapped__  # e.g. a model class with a fit of its own that calls Keras'
    unwrapped(mlp(), x, y, epochs=2, callbacks=[kerastrack.Tracker(**tracker, log_model=False)], verbose=0)
    assert runs()[0].info.status == "FINISHED"
    with pytest.raises(RuntimeError):
        unwrapped(mlp(), x, y, epochs=3, callbacks=[kerastrack.Tracker(**tracker), RaiseAtEpoch(1, RuntimeError())])
    assert runs()[0].info.status == "RUNNING"
    tracker_module._close_open_runs()  # what the interpreter runs at exit
    assert runs()[0].info.status == "FAILED" and steps(runs.client, runs()[0].info.run_id, "loss") == [0]
    with pytest.raises(RuntimeError):  # the script catches it and fits again: the next run closes this one
        unwrapped(mlp(), x, y, epochs=3, callbacks=[kerastrack.Tracker(**tracker), RaiseAtEpoch(1, RuntimeError())])
    unwrapped(mlp(), x, y, epochs=1, callbacks=[kerastrack.Tracker(**tracker, log_model=False)], verbose=0)
    assert [r.info.status for r in runs()[:2]] == ["FINISHED", "FAILED"]


def test_its_names_are_those_of_a_train_py_run_of_the_same_model(make_cfg, tracker, runs):
    train(make_cfg("data.limit=200", "trainer.epochs=2", "callbacks=none"))
    x, y = digits(200)
    mlp().fit(
        x, y, epochs=2, validation_split=0.2, callbacks=[kerastrack.Tracker(**tracker, log_model=False)], verbose=0
    )
    ours, theirs = runs()
    assert set(ours.data.metrics) == {k for k in theirs.data.metrics if not k.startswith("test_")}
    for prefix in (
        "optimizer.",
        "loss.fn.",
        "model.num_params",
        "trainer.batch_size",
        "trainer.epochs",
        "dataset.input",
    ):
        shared = {k: v for k, v in theirs.data.params.items() if k.startswith(prefix)}
        assert shared and shared.items() <= ours.data.params.items(), prefix
    assert {"trainer.metrics", "trainer.monitor", "trainer.shuffle", "trainer.validation_split"} <= set(
        ours.data.params
    )
    for key in ("optimizer", "loss", "scheduler", "version.keras"):
        assert ours.data.tags[key] == theirs.data.tags[key], key


@pytest.mark.slow  # an mlflow server, started twice
def test_a_server_that_goes_away_mid_fit_loses_nothing_and_the_spool_uploads_the_run(tmp_path):
    from kerastrack.tracking.server import MlflowServer, sqlite_uri
    from kerastrack.tracking.spool import Spool
    from kerastrack.upload import upload_dir
    from tests.support import StopServerAtEpoch

    server = MlflowServer(sqlite_uri(tmp_path / "server.db"), artifacts_destination=tmp_path / "art", cwd=tmp_path)
    server.start()
    try:
        x, y = digits(96)
        callback = kerastrack.Tracker(tracking_uri=server.url, experiment_name="outage", output_dir=tmp_path / "out")
        outage = StopServerAtEpoch(server.process.pid, server.port, epoch=1)
        mlp().fit(x, y, epochs=4, validation_split=0.25, callbacks=[callback, outage], verbose=0)
        assert Spool(tmp_path / "out").pending()[-1]["status"] == "FINISHED"  # kept, to the final status
        server.stop()
        server.start()
        client = mlflow.MlflowClient(server.url)
        assert client.get_run(callback.run_id).info.status == "RUNNING"
        assert upload_dir(tmp_path / "out", log_progress=lambda line: None) == callback.run_id
        run = client.get_run(callback.run_id)
        assert run.info.status == "FINISHED" and "best_val_loss" in run.data.metrics
        for key in EPOCH_KEYS:
            assert steps(client, run.info.run_id, key) == [0, 1, 2, 3], key
        assert [m.status for m in logged_models(client, run)] == ["READY"]
    finally:
        server.stop()


@pytest.mark.slow  # a fresh interpreter
def test_import_kerastrack_stays_light_and_tracker_is_imported_when_first_used():
    import subprocess
    import sys

    code = (
        "import sys, kerastrack; heavy = [m for m in ('keras', 'mlflow', 'tensorflow') if m in sys.modules]; "
        "kerastrack.Tracker; print(heavy, 'keras' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split("\n")[0] == "[] True"


def test_a_scripts_first_fit_goes_through_the_watch_when_kerastrack_is_imported_after_keras(tracker, runs, monkeypatch):
    # `model.fit` is looked up before `kerastrack.Tracker()` runs: only a watch installed at
    # `import kerastrack` sees the first call (its data, its raise).
    import importlib

    monkeypatch.setattr(keras.Model, "fit", keras.Model.fit.__wrapped__)  # as before any Tracker existed
    importlib.reload(kerastrack)  # `import keras` came first, as in a plain script
    x, y = digits(64)
    with pytest.raises(RuntimeError):
        mlp().fit(x, y, epochs=3, callbacks=[kerastrack.Tracker(**tracker), RaiseAtEpoch(1, RuntimeError())], verbose=0)
    run = runs()[0]
    assert run.info.status == "FAILED"  # at once, not at the next fit or at exit
    assert [i.tags[0].value for i in runs.client.get_run(run.info.run_id).inputs.dataset_inputs] == ["training"]
