"""TensorFlow's process-wide set-up for a run: threads, logical CPUs, the seed and op
determinism (``configure_tensorflow``), the dtype policy and tf.distribute scope a model is
built under (``devices``), and the Keras options that depend on the strategy."""

import contextlib
import logging

import keras
import tensorflow as tf
from tensorflow.python.framework import config as tf_config  # disable_op_determinism: no public API

from kerastrack.errors import ConfigError

log = logging.getLogger(__name__)
AUTO_STEPS_PER_EXECUTION = 32  # see benchmarks/speed.py
# trainer.jit_compile=auto on CPU: XLA for these model builders from this many parameters,
# where it was measured faster per epoch (docs/performance.md: the studies' MLP, 101,770
# parameters, ~1.4x; the default digits MLP, 9,610, slower). Not the CNN: XLA's CPU
# convolutions do not use oneDNN (docs/devices.md).
XLA_MODELS = ("kerastrack.models.builders.mlp",)
XLA_MIN_PARAMS = 50_000


def configure_tensorflow(seed, deterministic, threads=None, logical_cpus=None):
    """Sets TensorFlow up for a run: its logical CPUs and thread pools (where TensorFlow has
    not started yet), the seed, and op determinism on or off."""
    if logical_cpus:
        _split_cpu(logical_cpus)
    if threads and tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already started in this process: keep its pools
            log.warning("threads=%s ignored: TensorFlow is already initialized in this process", threads)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        # TensorFlow has no public way back (tf.config.experimental only enables it), and it
        # is process-wide: a run after a deterministic one in the same process would stay so.
        tf_config.disable_op_determinism()


def jit_compile(value, model, target, deterministic):
    """trainer.jit_compile as Keras' compile takes it, with TensorFlow's op determinism set
    to match (call it after ``configure_tensorflow``, before ``compile``).

    ``auto`` on CPU is XLA for the model kinds it speeds up (XLA_MODELS, XLA_MIN_PARAMS),
    else none; on GPU or under tf.distribute it stays Keras' own ``auto``. An XLA run trains
    without op determinism: Keras turns XLA off under it, and XLA on CPU gives the same
    numbers run to run and process to process without it (tests/test_devices.py), so
    ``deterministic=true`` keeps its promise there; the seed is set as for any run.

    Args:
        value: trainer.jit_compile: ``auto``, True or False.
        model: The built, not yet compiled, Keras model.
        target: The model config's ``_target_`` (its builder), or None.
        deterministic: The run's ``deterministic``.
    """
    if value == "auto" and not tf.config.list_physical_devices("GPU") and not tf.distribute.has_strategy():
        value = target in XLA_MODELS and model.count_params() >= XLA_MIN_PARAMS and _xla_compiles(model)
    if value is True:
        tf_config.disable_op_determinism()
    elif deterministic:
        tf.config.experimental.enable_op_determinism()
    return value


def _xla_compiles(model):
    """Whether XLA compiles the model's forward pass (lowered, not run: no state changes);
    if not, one info line says the run trains without it."""
    try:
        if not all(layer.supports_jit for layer in model._flatten_layers()):  # Keras' own test, model_supports_jit
            raise ValueError("a layer does not support XLA (supports_jit=False)")
        sample = [tf.TensorSpec((1, *x.shape[1:]), x.dtype) for x in model.inputs]
        tf.function(model, jit_compile=True).experimental_get_compiler_ir(*sample)(stage="hlo")
    except Exception as exc:  # noqa: BLE001  whatever XLA or the layer raises: train without it
        log.info("trainer.jit_compile=auto: training without XLA, which cannot compile this model (%s)", exc)
        return False
    return True


def _split_cpu(n):
    """Splits the CPU into ``n`` logical devices (logical_cpus), for MirroredStrategy on CPU."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:  # TensorFlow already started in this process: its devices are fixed
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n:  # refused, not warned: the run would silently train on other devices
            raise ConfigError(
                f"logical_cpus={n} cannot be applied: TensorFlow already started in this process with "
                f"{have} logical CPU(s); set it in a fresh process (python train.py logical_cpus={n}). "
                f"Received: logical_cpus={n}"
            ) from None


def default_devices(spec):
    """The devices a ``distribute`` strategy given ``devices: null`` mirrors over, when that
    is not its own default: MirroredStrategy's own without GPUs is one CPU device; the
    logical CPUs (logical_cpus) are the only devices a CPU machine has. As keyword arguments."""
    if "devices" in spec and spec.devices is None and not tf.config.list_logical_devices("GPU"):
        return {"devices": [d.name for d in tf.config.list_logical_devices("CPU")]}
    return {}


@contextlib.contextmanager
def devices(precision, strategy=None):
    """The run's dtype policy (trainer.precision) and tf.distribute strategy (distribute).

    The model, optimizer and metrics must be created under both: Keras reads the global
    policy when a layer is built and an optimizer binds to the strategy it was created
    under. The global policy is restored afterwards (it is process-wide state).

    Args:
        precision: The Keras dtype policy, e.g. ``mixed_float16``.
        strategy: The tf.distribute strategy; None: the default (one device, its scope
            changes nothing).
    """
    strategy = strategy or tf.distribute.get_strategy()
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(precision)
    try:
        with strategy.scope():
            yield strategy
    finally:
        keras.mixed_precision.set_global_policy(previous)


def steps_per_execution(value):
    """trainer.steps_per_execution as Keras takes it: ``auto`` is 32 steps a call on one
    device (small models spend most of a step in dispatch), 1 under tf.distribute (Keras'
    multi-step loop fails there; an explicit N > 1 is refused by check_config)."""
    if value != "auto":
        return value
    return 1 if tf.distribute.has_strategy() else AUTO_STEPS_PER_EXECUTION


def num_replicas():
    """Model copies training in step under the current strategy (1 without distribute)."""
    return tf.distribute.get_strategy().num_replicas_in_sync
