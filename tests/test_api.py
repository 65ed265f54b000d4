"""The Python API (``kerastrack.train``, ``.sweep``, ``.compare``, ``.runs``), called in this
process as a notebook calls it: the real config, Hydra, MLflow store and Keras, shrunk."""

import logging
import math
import os
import signal
import sys

import pytest
from matplotlib.figure import Figure

import kerastrack
from kerastrack.api.launch import overrides
from tests.helpers import run_train, store_client

SMALL = ("trainer.epochs=2", "data.limit=200")


@pytest.fixture
def notebook(tmp_path, monkeypatch):
    """A notebook's process: its folder (``./mlflow.db`` is the store), no MLFLOW_* variables.

    Yields:
        The process state that each call must leave as it found it.
    """
    for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    state = _process_state()
    yield state
    assert _process_state() == state, "a call left the process changed"


def _process_state():
    return (
        list(sys.argv),
        {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)},
        list(logging.getLogger().handlers),
        {k: os.environ.get(k) for k in ("HYDRA_FULL_ERROR", "KERASTRACK_SWEEP_LAUNCHER_PID")},
    )


def test_keyword_values_are_written_in_hydras_grammar():
    assert overrides(("trainer.epochs=2",), {"optimizer": "adam", "seed": 3}, sweep=False) == [
        "trainer.epochs=2",
        "optimizer=adam",
        "seed=3",
    ]
    written = overrides((), {"seed": range(3), "optimizer.learning_rate": [0.1, 1e-3], "tags": ("a", "b")}, sweep=True)
    assert written == ["seed=0,1,2", "optimizer.learning_rate=0.1,0.001", "tags=a,b"]
    assert overrides((), {"trainer.metrics": ["accuracy", "mae"], "x": None, "y": True}, sweep=False) == [
        "trainer.metrics=[accuracy,mae]",
        "x=null",
        "y=true",
    ]
    assert overrides((), {"tracking.run_name": "it's a, b"}, sweep=False) == ["tracking.run_name='it\\'s a, b'"]


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (["model=nope"], {}, "model has no option 'nope'; its options: cnn, linear, mlp, point"),
        (["trainer.epoch=3"], {}, "trainer.epoch is not a key of the config"),
        (["trainer.epochs=[1"], {}, "Hydra cannot read the override"),
        (["optimizer=momentum"], {"optimizer.momentum": 1.5}, "optimizer.momentum must be a number in [0, 1]"),
        ([], {"config_dir": "no_such_conf"}, "config_dir is a folder of config groups"),
        ([3], {}, "overrides are strings such as 'optimizer=adam'"),
    ],
)
def test_a_bad_input_raises_one_line_and_records_nothing(notebook, tmp_path, args, kwargs, message):
    with pytest.raises(kerastrack.ConfigError) as raised:
        kerastrack.train(*args, **kwargs)
    text = str(raised.value)
    assert text.startswith(message) and "Received: " in text and "\n" not in text
    assert not (tmp_path / "mlflow.db").exists() or not store_client(tmp_path).search_runs(
        [e.experiment_id for e in store_client(tmp_path).search_experiments()]
    )


@pytest.mark.slow
def test_train_writes_the_record_the_command_writes(notebook, tmp_path):
    command = run_train(tmp_path, *SMALL, "hydra.run.dir=outputs/command")
    assert command.returncode == 0, command.stderr[-2000:]
    run = kerastrack.train(*SMALL, "hydra.run.dir=outputs/api")
    assert run.status == "FINISHED" and run.output_dir == tmp_path / "outputs" / "api"
    client = store_client(tmp_path)
    cli_run = next(
        r for r in client.search_runs([client.get_run(run.run_id).info.experiment_id]) if r.info.run_id != run.run_id
    )

    def comparable(params):
        return {k: v for k, v in params.items() if not k.startswith("paths.")}

    assert comparable(run.params) == comparable(cli_run.data.params)
    assert {k: v for k, v in run.tags.items() if not k.startswith("mlflow.")}.keys() == {
        k for k in cli_run.data.tags if not k.startswith("mlflow.")
    }
    history = run.history
    assert list(history.index) == [0, 1] and {"loss", "val_loss", "accuracy", "learning_rate"} <= set(history)
    for key in ("loss", "val_loss", "val_accuracy"):  # the same numbers, bit for bit
        assert list(history[key]) == [m.value for m in client.get_metric_history(cli_run.info.run_id, key)]
    assert run.best.name == run.metrics["best_epoch"] and run.best["val_loss"] == run.metrics["best_val_loss"]
    assert run.model.predict(_digits(2), verbose=0).shape == (2, 10)  # the logged model, loaded


def _digits(n):
    from sklearn.datasets import load_digits

    return load_digits().images[:n, :, :, None].astype("float32") / 16.0


def test_ctrl_c_in_a_call_ends_the_run_killed_and_the_process_goes_on(notebook, capsys):
    stop = (
        "+callbacks.stop._target_=tests.support.SignalAtEpoch",
        "+callbacks.stop.epoch=0",
        f"+callbacks.stop.signum={int(signal.SIGINT)}",
    )
    with pytest.raises(KeyboardInterrupt) as raised:
        kerastrack.train(*SMALL, "tracking.log_model=false", *stop)
    run = raised.value.run
    assert run.status == "KILLED" and list(run.history.index) == [0]
    assert f"Interrupted: run {run.run_id} is KILLED, with every finished epoch." in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="boom at epoch 0") as failed:  # a bug in the user's callback
        kerastrack.train(*SMALL, "tracking.log_model=false", "+callbacks.fail._target_=tests.support.FailAtEpoch")
    assert failed.value.run.status == "FAILED"
    assert kerastrack.train(*SMALL, "tracking.log_model=false").status == "FINISHED"


def test_sweep_compare_and_runs_read_back_what_the_sweep_recorded(notebook, tmp_path):
    sweep = kerastrack.sweep(*SMALL, "tracking.log_model=false", optimizer=["sgd", "adam"], seed=range(2))
    assert sweep.status == "FINISHED" and sweep.sweep_dir.parent.parent == tmp_path / "multirun"
    assert [r.status for r in sweep.runs] == ["FINISHED"] * 4
    assert sorted((r.params["optimizer._target_"].split(".")[-1], r.params["seed"]) for r in sweep.runs) == [
        ("Adam", "0"),
        ("Adam", "1"),
        ("SGD", "0"),
        ("SGD", "1"),
    ]
    report = kerastrack.compare(sweep)
    assert len(report.table) == 4 and set(report.table["run_id"]) == {r.run_id for r in sweep.runs}
    assert list(report.groups["n_finished"]) == [2, 2] and set(report.groups["optimizer"]) == {"sgd", "adam"}
    assert {"ci95_low", "ci95_high", "vs_best"} <= set(report.groups) and isinstance(report.figure, Figure)
    again = kerastrack.compare(sweep.parent_run_id, filter="params.seed = '0'")
    assert len(again.table) == 2 and list(again.groups["n_finished"]) == [1, 1]
    frame = kerastrack.runs()
    assert len(frame) == 5 and set(frame["status"]) == {"FINISHED"}
    assert sweep.parent_run_id in set(frame["run_id"])
    adam = kerastrack.runs("tags.optimizer = 'adam'")
    assert len(adam) == 2 and all(not math.isnan(v) for v in adam["metrics.best_val_loss"])
    assert set(adam["params.optimizer._target_"]) == {"keras.optimizers.Adam"}


def test_the_line_that_continues_a_sweep_names_the_command_that_started_it():
    from kerastrack.sweeps.sweep_dir import continue_command

    assert continue_command(["/venv/bin/kerastrack", "-m", "seed=0,1"], "multirun/x") == (
        "kerastrack -m seed=0,1 hydra.sweep.dir=multirun/x"
    )
    assert continue_command(["train.py", "-m", "seed=0,1"], "multirun/x") == (
        "python train.py -m seed=0,1 hydra.sweep.dir=multirun/x"
    )
