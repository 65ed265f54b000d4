"""Devices and numerics: mixed precision, XLA, and MirroredStrategy on logical CPUs."""

import logging

import keras
import pytest
from tensorflow.python.framework.config import is_op_determinism_enabled

from kerastrack.errors import ConfigError
from kerastrack.pipeline import train
from kerastrack.utils import runtime
from tests.helpers import history, run_train, store_client


@pytest.fixture
def built_models(monkeypatch):
    """The models the pipeline compiles, as compiled (its local reference is gone after)."""
    models = []
    compile_ = keras.Model.compile

    def compile(self, *args, **kwargs):
        models.append(self)
        return compile_(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "compile", compile)
    return models


@pytest.mark.parametrize("precision, compute", [("mixed_float16", "float16"), ("mixed_bfloat16", "bfloat16")])
def test_mixed_precision_computes_in_half_and_restores_the_policy(precision, compute, make_cfg, runs, built_models):
    train(make_cfg(f"trainer.precision={precision}"))
    (run,) = runs()
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.precision"] == precision
    (model,) = built_models
    hidden, head = model.get_layer("dense_0"), model.get_layer("head")
    assert (hidden.compute_dtype, hidden.variable_dtype) == (compute, "float32")
    assert head.compute_dtype == "float32"  # the output layer stays float32 for stability
    # Keras scales the loss for float16 itself (compile's auto_scale_loss); bfloat16 needs none.
    is_scaled = isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    assert is_scaled == (precision == "mixed_float16")
    assert keras.mixed_precision.global_policy().name == "float32"  # process-wide state restored
    assert len(runs.client.get_metric_history(run.info.run_id, "learning_rate")) == 1


@pytest.mark.parametrize("jit_compile", [True, False])
def test_jit_compile_reaches_the_model(jit_compile, make_cfg, runs, built_models):
    train(make_cfg(f"trainer.jit_compile={str(jit_compile).lower()}", "deterministic=false"))
    (run,) = runs()
    assert run.info.status == "FINISHED"
    assert run.data.params["trainer.jit_compile"] == str(jit_compile)
    assert built_models[0].jit_compile is jit_compile


def test_one_device_without_distribute(make_cfg, runs):
    train(make_cfg())
    (run,) = runs()
    assert run.data.params["distribute.num_replicas"] == "1" and run.data.tags["distribute"] == "none"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            ["trainer.precision=float16"],
            "trainer.precision must be one of float32, mixed_float16, mixed_bfloat16. Received: trainer.precision=float16",
        ),
        (
            ["trainer.jit_compile=yes"],
            "trainer.jit_compile must be auto, true or false. Received: trainer.jit_compile=yes",
        ),
        (
            ["trainer.jit_compile=true", "distribute=mirrored"],
            "trainer.jit_compile=true needs deterministic=false on GPU or under distribute",
        ),
        (["logical_cpus=0"], "logical_cpus must be null (one CPU device) or an integer >= 1. Received: logical_cpus=0"),
        (
            ["logical_cpus=3"],
            "logical_cpus=3 cannot be applied: TensorFlow already started in this process with 1 logical CPU(s)",
        ),
    ],
)
def test_bad_device_settings_are_refused_before_any_run(overrides, message, make_cfg, runs):
    import tensorflow as tf

    tf.config.list_logical_devices("CPU")  # TensorFlow has started in this process, as in a reused worker
    with pytest.raises(ConfigError) as error:
        train(make_cfg(*overrides))
    assert message in str(error.value)
    assert runs() == []


@pytest.mark.slow
def test_mirrored_strategy_trains_on_two_logical_cpus(tmp_path):
    result = run_train(
        tmp_path,
        "distribute=mirrored",
        "logical_cpus=2",
        "trainer.epochs=2",
        "tracking.log_model=false",
        "trainer.verbose=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = store_client(tmp_path)
    (run,) = client.search_runs([client.get_experiment_by_name("kerastrack").experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["distribute.num_replicas"] == "2" and run.data.tags["distribute"] == "mirrored"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1]


@pytest.mark.parametrize("steps_per_execution", [1, 3, "auto"])
def test_many_steps_per_call_give_the_same_numbers_epoch_for_epoch(steps_per_execution, make_cfg, runs):
    # Dropout, a schedule and 34 steps an epoch (not a multiple of 3): every per-epoch value,
    # the learning rate and the test metrics are bit-identical to one step per call.
    common = ["trainer.epochs=3", "model.dropout=0.3", "scheduler=cosine", "callbacks=none"]
    train(make_cfg(*common, "trainer.steps_per_execution=1", "tracking.run_name=one"))
    train(make_cfg(*common, f"trainer.steps_per_execution={steps_per_execution}", "tracking.run_name=many"))
    many, one = runs()
    assert many.data.params["trainer.steps_per_execution.used"] == {1: "1", 3: "3", "auto": "32"}[steps_per_execution]
    assert set(many.data.metrics) == set(one.data.metrics)
    for key in set(one.data.metrics) - {"epoch_time_s"}:
        assert [v for _, v in history(runs.client, many, key)] == [v for _, v in history(runs.client, one, key)], key


# An MLP of >= runtime.XLA_MIN_PARAMS parameters on digits (64 -> 1024 -> 10: 77,834): auto
# trains it with XLA on CPU; dropout and a schedule, as in the test above.
BIG_MLP = ("model.hidden_units=[1024]", "model.dropout=0.3", "scheduler=cosine")


@pytest.mark.parametrize(
    "overrides, xla",
    [
        ((), False),  # the default digits MLP (9,610 parameters): slower under XLA
        (BIG_MLP, True),
        (("model=cnn",), False),  # XLA's CPU convolutions are slow
        ((*BIG_MLP, "trainer.jit_compile=false"), False),
        (("trainer.jit_compile=true",), True),  # once refused with deterministic=true
    ],
    ids=["default", "big-mlp", "cnn", "big-mlp-off", "true"],
)
def test_auto_compiles_with_xla_on_cpu_the_models_it_speeds_up_without_op_determinism(
    overrides, xla, make_cfg, runs, built_models
):
    train(make_cfg(*overrides))
    (run,) = runs()
    assert run.info.status == "FINISHED"
    assert built_models[0].jit_compile is xla and run.data.params["trainer.jit_compile.used"] == str(xla)
    # deterministic=true: op determinism, which Keras turns XLA off under, only without XLA.
    assert is_op_determinism_enabled() is not xla


def test_a_model_xla_cannot_compile_trains_without_it_after_one_info_line(caplog):
    import tensorflow as tf

    class Eager(keras.layers.Layer):  # what XLA has no kernel for: a Python function in the graph
        def call(self, x):
            return tf.ensure_shape(tf.numpy_function(lambda a: a, [x], x.dtype, stateful=False), x.shape)

        def compute_output_shape(self, input_shape):
            return input_shape

    inputs = keras.Input((512,))
    model = keras.Model(inputs, keras.layers.Dense(128)(Eager()(inputs)))
    with caplog.at_level(logging.INFO, logger="kerastrack"):
        assert runtime.jit_compile("auto", model, runtime.XLA_MODELS[0], deterministic=True) is False
    assert is_op_determinism_enabled()
    (line,) = [r for r in caplog.records if r.name.startswith("kerastrack")]
    assert line.levelname == "INFO" and "training without XLA" in line.getMessage()


@pytest.mark.slow
def test_two_processes_training_with_xla_give_bit_identical_epochs(tmp_path):
    # XLA runs train without op determinism: each process must still repeat the numbers.
    overrides = (*BIG_MLP, "data.limit=200", "trainer.epochs=2", "tracking.log_model=false", "trainer.verbose=0")
    for name in ("first", "second"):
        result = run_train(tmp_path, *overrides, f"tracking.run_name={name}")
        assert result.returncode == 0, result.stderr[-3000:]
    client = store_client(tmp_path)
    second, first = client.search_runs(
        [client.get_experiment_by_name("kerastrack").experiment_id], order_by=["attributes.start_time DESC"]
    )
    assert first.data.params["trainer.jit_compile.used"] == second.data.params["trainer.jit_compile.used"] == "True"
    assert set(first.data.metrics) == set(second.data.metrics)
    for key in set(first.data.metrics) - {"epoch_time_s"}:
        assert history(client, first, key) == history(client, second, key), key
