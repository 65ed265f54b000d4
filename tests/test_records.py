"""MLflow 3's own records of a run: its data as dataset inputs, its model as a logged model
linked to the run's final metrics, and (on request) the system's metrics."""

import json

import mlflow
import numpy as np
import pytest

from kerastrack.pipeline import train
from tests.helpers import history

CONTEXTS = ("training", "validation", "testing")


def inputs(run):
    """``{context: dataset}`` of the run's dataset inputs, each context once."""
    found = {}
    for item in run.inputs.dataset_inputs:
        (context,) = [t.value for t in item.tags if t.key == "mlflow.data.context"]
        assert context not in found, f"{context} logged twice"
        found[context] = item.dataset
    return found


def rows(dataset):
    return json.loads(dataset.profile)["features_shape"][0]


def test_a_run_logs_its_training_validation_and_test_data_as_dataset_inputs(make_cfg, runs):
    train(make_cfg())
    (run,) = runs()
    found = inputs(run)
    assert sorted(found) == sorted(CONTEXTS)
    assert {d.name for d in found.values()} == {"digits"}
    assert {d.source_type for d in found.values()} == {"code"}
    assert {json.loads(d.source)["tags"]["mlflow.source.name"] for d in found.values()} == {
        "sklearn.datasets.load_digits"
    }
    assert len({d.digest for d in found.values()}) == 3  # three different sets of samples
    assert run.data.params["dataset.sizes"] == "train={} val={} test={}".format(*(rows(found[c]) for c in CONTEXTS))
    assert json.loads(found["training"].profile)["features_shape"][1:] == [8, 8, 1]
    assert not [k for k in run.data.metrics if k.startswith("system/")]  # off by default


def test_with_validation_split_the_validation_input_is_the_last_share_of_the_training_data(make_cfg, runs):
    train(make_cfg("trainer.validation_split=0.25", "callbacks=none"))
    found = inputs(runs()[0])
    train_size = int(runs()[0].data.params["dataset.sizes"].split()[0].removeprefix("train="))
    assert rows(found["training"]) == int(train_size * 0.75)
    assert rows(found["validation"]) == train_size - int(train_size * 0.75)


def test_the_same_data_has_the_same_digest_and_other_data_another(make_cfg, runs):
    train(make_cfg("callbacks=none"))
    train(make_cfg("callbacks=none", "optimizer=sgd", "loss=sparse_categorical_crossentropy"))
    train(make_cfg("callbacks=none", "data.limit=100"))
    limited, other_loss, first = (inputs(r) for r in runs())
    for context in CONTEXTS:
        assert first[context].digest == other_loss[context].digest, context
        assert first[context].digest != limited[context].digest, context


@pytest.mark.parametrize("kind", ["csv", "mnist"])
def test_a_data_file_is_the_inputs_source_and_names_them(kind, make_cfg, runs, tmp_path):
    rng = np.random.default_rng(0)
    if kind == "csv":
        path = tmp_path / "houses.csv"
        path.write_text("a,b,y\n" + "".join(f"{rng.normal():.3f},{rng.normal():.3f},{i % 2}\n" for i in range(60)))
        overrides, name = ["data=csv", f"data.path={path}", "data.target=y"], "houses"
    else:
        path = tmp_path / "mnist.npz"
        x, y = rng.integers(0, 256, (160, 28, 28), np.uint8), np.arange(160) % 10
        np.savez(path, x_train=x[:120], y_train=y[:120], x_test=x[120:], y_test=y[120:])
        overrides, name = ["data=mnist", f"data.path={path}"], "mnist"
    train(make_cfg(*overrides, "callbacks=none"))
    found = inputs(runs()[0])
    assert {d.name for d in found.values()} == {name}
    assert {(d.source_type, json.loads(d.source)["uri"]) for d in found.values()} == {("local", str(path))}


def test_a_resumed_run_does_not_log_its_dataset_inputs_again(make_cfg, runs, tmp_path):
    stop = [
        "+callbacks.stop._target_=tests.support.SignalAtEpoch",
        "+callbacks.stop.epoch=0",
        f"+callbacks.stop.once={tmp_path / 'signalled'}",
        f"paths.output_dir={tmp_path / 'killed'}",
    ]
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg("trainer.epochs=2", *stop))
    (killed,) = runs()
    before = {c: d.digest for c, d in inputs(killed).items()}
    train(make_cfg(f"resume={killed.info.run_id}", "trainer.epochs=2"))
    resumed = runs.client.get_run(killed.info.run_id)
    assert resumed.info.status == "FINISHED" and resumed.data.tags["resume.count"] == "1"
    assert len(resumed.inputs.dataset_inputs) == 3
    assert {c: d.digest for c, d in inputs(resumed).items()} == before


def test_the_logged_model_loads_from_its_model_uri_and_carries_the_final_metrics(make_cfg, runs):
    train(make_cfg("tracking.log_model=true", "trainer.epochs=3", "callbacks=none"))
    (run,) = runs()
    mlflow.set_tracking_uri(runs.client.tracking_uri)
    (model,) = mlflow.search_logged_models(filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list")
    assert model.name == "model" and model.status == "READY"
    assert [(o.model_id, o.step) for o in run.outputs.model_outputs] == [(model.model_id, 2)]
    keras_model = mlflow.keras.load_model(f"models:/{model.model_id}")
    assert keras_model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0).shape == (2, 10)
    assert mlflow.models.get_model_info(f"models:/{model.model_id}").run_id == run.info.run_id
    # The run's one-value metrics, and only those, measure this model.
    linked = {m.key: (m.value, m.step) for m in model.metrics}
    final = {k: v for k, v in run.data.metrics.items() if k.startswith(("best_", "test_"))}
    assert {k: v for k, (v, _) in linked.items()} == final
    assert all(step == 0 for _, step in linked.values())  # one value a run, at step 0, as in the run
    assert model.params["optimizer._target_"] == "keras.optimizers.Adam"
    for key in final:  # linking logs nothing twice in the run's own history
        assert len(history(runs.client, run, key)) == 1, key


def test_system_metrics_true_logs_the_systems_metrics_with_the_run(make_cfg, runs):
    train(make_cfg("tracking.system_metrics=true", "tracking.system_metrics_interval=0.2", "trainer.epochs=3"))
    (run,) = runs()
    system = {k for k in run.data.metrics if k.startswith("system/")}
    assert {"system/cpu_utilization_percentage", "system/system_memory_usage_megabytes"} <= system
    assert history(runs.client, run, "system/cpu_utilization_percentage")[0][0] == 0


TELEMETRY_PROBE = """
import json
from kerastrack.tracking.server import MlflowServer  # what train.py and python -m kerastrack.ui import first
import mlflow
from mlflow.telemetry import get_telemetry_client
print(json.dumps({"client": get_telemetry_client() is not None,
                  "server": MlflowServer("sqlite://").environment().get("MLFLOW_DISABLE_TELEMETRY")}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting, expected", [(None, {"client": False, "server": "true"}), ("false", {"client": True, "server": "false"})]
)
def test_mlflows_telemetry_is_off_in_kerastrack_and_its_server_unless_the_user_turns_it_on(setting, expected, tmp_path):
    import os
    import subprocess
    import sys

    from kerastrack.tracking.server import free_port

    # A user's shell: none of the CI or test variables by which MLflow turns telemetry off on
    # its own, and every request through a proxy on a loopback port where nothing listens,
    # so that telemetry, where it is on, reaches nothing.
    dead = f"http://127.0.0.1:{free_port()}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "PYTHONPATH": os.environ.get("PYTHONPATH", ""),
        "HTTPS_PROXY": dead,
        "HTTP_PROXY": dead,
        **({"MLFLOW_DISABLE_TELEMETRY": setting} if setting else {}),
    }
    probe = subprocess.run(
        [sys.executable, "-c", TELEMETRY_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout.strip().splitlines()[-1]) == expected
