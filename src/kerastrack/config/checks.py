"""Checks on the composed config that must pass before any run is recorded.

Keras validates few constructor arguments (a negative learning rate trains happily into
NaN), and a bad value found an hour into a sweep wastes the hour. So values are checked
here by argument name, in every group: an option added later with the same Keras
argument names gets the same checks without code. The groups kerastrack reads itself (the
top level, trainer, tracking) have a schema instead (``config.schema``).
"""

import inspect
import math
from numbers import Integral, Real

from omegaconf import DictConfig, ListConfig, OmegaConf

from kerastrack.config.dir_check import DirCheck  # noqa: F401  (its old path, for configs that name it)
from kerastrack.config.links import check_model_fits_data, explain_derived
from kerastrack.config.monitors import MONITOR_MODES, check_monitors, monitor_mode  # noqa: F401  (old paths)
from kerastrack.config.overrides import check_overrides
from kerastrack.config.schema import SEED_MAX, check_schema
from kerastrack.errors import ConfigError, shown
from kerastrack.tracking.labels import note_limit, tag_refusal
from kerastrack.utils.hydra_job import group_choices


def _between(lo, hi, lo_open=False, hi_open=False):
    text = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"

    def check(v):
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return check, f"in {text}"


_POSITIVE = (lambda v: v > 0, "> 0")
_NON_NEGATIVE = (lambda v: v >= 0, ">= 0")

# Allowed range of each numeric argument, by name, wherever it appears.
RANGES = {
    "learning_rate": _POSITIVE,
    "momentum": _between(0, 1),
    "beta_1": _between(0, 1, hi_open=True),
    "beta_2": _between(0, 1, hi_open=True),
    "rho": _between(0, 1, hi_open=True),
    "epsilon": _POSITIVE,
    "weight_decay": _NON_NEGATIVE,
    "initial_accumulator_value": _NON_NEGATIVE,
    "clipnorm": _POSITIVE,
    "clipvalue": _POSITIVE,
    "global_clipnorm": _POSITIVE,
    "initial_learning_rate": _NON_NEGATIVE,
    "warmup_target": _POSITIVE,
    "end_learning_rate": _NON_NEGATIVE,
    "decay_epochs": _POSITIVE,
    "first_decay_epochs": _POSITIVE,
    "warmup_epochs": _NON_NEGATIVE,
    "decay_rate": _POSITIVE,
    "alpha": _between(0, 1),
    "power": _POSITIVE,
    "label_smoothing": _between(0, 1),
    "delta": _POSITIVE,
    "margin": _POSITIVE,
    "dropout": _between(0, 1, hi_open=True),
    "l1": _NON_NEGATIVE,
    "l2": _NON_NEGATIVE,
    "max_norm": _POSITIVE,
    "patience": _NON_NEGATIVE,
    "min_delta": _NON_NEGATIVE,
    "factor": _between(0, 1, lo_open=True, hi_open=True),
    "min_lr": _NON_NEGATIVE,
    "cooldown": _NON_NEGATIVE,
    "threshold": _POSITIVE,
    "values": _POSITIVE,  # a piecewise schedule's rates
    "kernel_size": _POSITIVE,
    "dense_units": _POSITIVE,
    "units": _POSITIVE,
    "hidden_units": _POSITIVE,
    "filters": _POSITIVE,
    "start_from_epoch": _NON_NEGATIVE,
}
# Arguments Keras wants as integers (a layer's units, a number of epochs to wait).
INTEGERS = {"kernel_size", "dense_units", "units", "patience", "cooldown", "start_from_epoch"}
# Arguments that are lists of integers, one per layer; [] is no such layer.
INTEGER_LISTS = {"hidden_units", "filters"}
# Arguments Keras wants as floats: some refuse an integer (Adam's learning_rate=1, SGD's
# momentum=0), so an integer the user typed is taken as the float it means.
FLOATS = (
    set(RANGES)
    - INTEGERS
    - INTEGER_LISTS
    - {
        "decay_epochs",
        "first_decay_epochs",
        "warmup_epochs",  # epochs, turned into steps
    }
)
BOOLEANS = {
    "nesterov",
    "amsgrad",
    "centered",
    "staircase",
    "cycle",
    "from_logits",
    "restore_best_weights",
    "save_best_only",
    "save_weights_only",
    "use_bias",
}
CHECKED_GROUPS = ("optimizer", "scheduler", "loss.fn", "model", "callbacks", "data")


def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool)


def _fail(key, value, allowed):
    raise ConfigError(f"{key} must be {allowed}. Received: {key}={shown(value)}")


def _is_integer(value):
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_value(key, name, value):
    if name in BOOLEANS and not isinstance(value, bool):
        _fail(key, value, "true or false")
    if name == "activation":
        _check_keras_name(
            key,
            value,
            "activations",
            "a Keras activation such as relu, sigmoid, tanh, elu, gelu, "
            "softmax, linear (https://keras.io/api/layers/activations/)",
        )
    if name == "kernel_initializer":
        _check_keras_name(
            key,
            value,
            "initializers",
            "a Keras initializer such as glorot_uniform, he_normal, zeros (https://keras.io/api/layers/initializers/)",
        )
    if name == "mode" and key.startswith("callbacks.") and value not in MONITOR_MODES:
        # Keras only warns and falls back to auto, which may watch the wrong direction.
        _fail(key, value, f"one of {', '.join(MONITOR_MODES)}")
    if name == "seed" and not (_is_integer(value) and 0 <= value <= SEED_MAX):
        _fail(key, value, f"an integer in [0, {SEED_MAX}]")
    if name == "boundary_epochs":
        _check_boundaries(key, value)
    if key == "model.start" and not (
        isinstance(value, (list, ListConfig))
        and len(value) == 2
        and all(_is_number(v) and math.isfinite(v) for v in value)
    ):
        _fail(key, value, "a list of two numbers [x, y] (the surface's loss.start by default), e.g. [-2, 2]")
    if name not in RANGES or (value is None and name not in INTEGER_LISTS):
        return
    check, allowed = RANGES[name]
    if name in INTEGER_LISTS:
        if not isinstance(value, (list, ListConfig)) or not all(_is_integer(v) and check(v) for v in value):
            _fail(key, value, "a list of integers >= 1, one per layer, e.g. [128] or [256, 128]")
        return
    kind = "an integer" if name in INTEGERS else "a number"
    is_kind = _is_integer if name in INTEGERS else _is_number
    values = list(value) if isinstance(value, (list, ListConfig)) else [value]
    for v in values:
        if not is_kind(v) or not math.isfinite(v) or not check(v):
            _fail(key, value, f"{kind} {allowed}")


def _check_boundaries(key, value):
    """A piecewise schedule's epochs: a non-empty increasing list of numbers > 0."""
    ok = (
        isinstance(value, (list, ListConfig))
        and len(value) > 0
        and all(_is_number(v) and math.isfinite(v) and v > 0 for v in value)
    )
    if not ok or any(a >= b for a, b in zip(value, list(value)[1:])):
        _fail(key, value, "a non-empty list of increasing epochs > 0, e.g. [10, 15]")


def _as_floats(node):
    """Turns integers typed for float arguments into floats, in place (see FLOATS)."""
    for name in list(node.keys()):
        if OmegaConf.is_interpolation(node, name):
            continue  # it takes its type from what it points at, converted where that is
        value = node[name]
        if isinstance(value, DictConfig):
            _as_floats(value)
        elif str(name) in FLOATS and _is_integer(value):
            node[name] = float(value)
        elif str(name) in FLOATS and isinstance(value, ListConfig):
            for i in range(len(value)):
                if not OmegaConf.is_interpolation(value, i) and _is_integer(value[i]):
                    value[i] = float(value[i])


def _check_keras_name(key, value, module, allowed):
    """A name Keras looks up (an activation, an initializer) exists there."""
    import keras

    try:
        getattr(keras, module).get(value)
    except (ValueError, TypeError):
        _fail(key, value, allowed)


def _walk(node, prefix):
    for name, value in node.items():
        key = f"{prefix}.{name}"
        if isinstance(value, DictConfig):
            yield from _walk(value, key)
        else:
            yield key, str(name), value


def _select(cfg, path):
    node = OmegaConf.select(cfg, path)
    return node if isinstance(node, DictConfig) else OmegaConf.create({})


def _check_combinations(cfg):
    """trainer values that each pass the schema but do not go together."""
    t = cfg.trainer
    if "_target_" in (cfg.get("distribute") or {}) and t.steps_per_execution not in ("auto", 1):
        # Keras 3.15's multi-step loop fails under tf.distribute ("You must feed a value for placeholder tensor").
        _fail(
            "trainer.steps_per_execution",
            t.steps_per_execution,
            "auto or 1 under distribute (Keras cannot run more steps per call under tf.distribute)",
        )
    if t.jit_compile is True and cfg.deterministic and _xla_unproven(cfg):
        # Keras turns XLA off under op determinism; only XLA on one CPU device was found to
        # repeat its numbers without it (runtime.jit_compile), so elsewhere XLA is refused.
        raise ConfigError(
            "trainer.jit_compile=true needs deterministic=false on GPU or under distribute: Keras turns XLA "
            "off under TensorFlow's op determinism (on one CPU device, XLA runs are reproducible without it). "
            "Received: trainer.jit_compile=true, deterministic=true"
        )


def _xla_unproven(cfg):
    """Whether the run would use XLA where it is not known to be reproducible: on a GPU, or
    under a tf.distribute strategy."""
    if "_target_" in (cfg.get("distribute") or {}):
        return True
    import tensorflow as tf  # only here: the other checks need no TensorFlow

    return bool(tf.config.list_physical_devices("GPU"))


def check_config(cfg):
    """Checks every value that can be checked without data. Raises ConfigError.

    Integers given for float arguments (``optimizer.learning_rate=1``) are turned into
    floats in ``cfg``, so that the run records what Keras is given.
    """
    check_overrides(cfg)
    _check_missing(cfg)
    check_schema(cfg)  # the top level, trainer and tracking: types and keys by OmegaConf
    check_labels(cfg)
    _check_combinations(cfg)
    for group in CHECKED_GROUPS:
        for key, name, value in _walk(_select(cfg, group), group):
            try:
                _check_value(key, name, value)
            except ConfigError as exc:
                raise explain_derived(cfg, key, value, exc) from None
        _check_arguments(cfg, group)
        _as_floats(_select(cfg, group))
    check_model_fits_data(cfg)
    plateau = [
        name
        for name, cb in _select(cfg, "callbacks").items()
        if isinstance(cb, DictConfig) and str(cb.get("_target_", "")).endswith("ReduceLROnPlateau")
    ]
    if plateau and "_target_" in _select(cfg, "scheduler"):
        raise ConfigError(
            f"callbacks.{plateau[0]} (ReduceLROnPlateau) cannot change the learning rate of a schedule: "
            f"the scheduler owns it. Use scheduler=constant with it, or drop {plateau[0]} from "
            f"callbacks. Received: scheduler={_choice(cfg, 'scheduler')}"
        )


def check_labels(cfg, write_back=True):
    """Checks ``tags`` (names MLflow takes as tags, none of kerastrack's own) and ``notes``
    (a text). A number given as a name or a note is the text it reads as, as the schema
    keeps a number for a name (``tags=[2024]``).

    Args:
        cfg: The composed config (a multirun's too: its parent run gets them).
        write_back: Write the numbers back into ``cfg`` as strings, so that the run records them.

    Raises:
        ConfigError: The first value refused, with the key, the value and what works.
    """
    tags, notes = cfg.get("tags"), cfg.get("notes")
    example = "tags=[baseline,lr-study] (none: tags=[])"
    if tags is not None and not isinstance(tags, (list, ListConfig)):
        raise ConfigError(
            f"tags must be a list of tag names, e.g. {example}. "
            f"Received: tags={shown(tags) if isinstance(tags, str) else _listed(tags)}"
        )
    groups = {*group_choices(cfg), *(k for k in cfg if isinstance(cfg.get(k), DictConfig))}
    for i, name in enumerate(tags or ()):
        if isinstance(name, (str, Real)) and not isinstance(name, bool):
            reason = tag_refusal(str(name), groups)
            reason = reason and f"{name}: {reason}"
        else:  # Hydra read true, null, [a] or {a: 1}: quoted, a word is a name
            reason = f"{_listed(name)} is not a name" + (
                f" (quoted, it is one: 'tags=[\"{_listed(name)}\"]')" if name is None or isinstance(name, bool) else ""
            )
        if reason:
            raise ConfigError(
                f"tags must be a list of tag names, e.g. {example}; {reason}. Received: tags={_listed(tags)}"
            )
        if write_back and not isinstance(name, str):
            tags[i] = str(name)
    if notes is not None and (not isinstance(notes, (str, Real)) or isinstance(notes, bool)):
        raise ConfigError(
            f'notes must be a text (the run\'s description), e.g. notes="first try"; null: none. '
            f"Received: notes={_listed(notes)}"
        )
    if notes is not None and len(str(notes)) > note_limit():
        raise ConfigError(
            f"notes must be at most {note_limit()} characters (MLflow cuts a longer description). "
            f"Received: notes={str(notes)[:60]}... ({len(str(notes))} characters)"
        )
    if write_back and notes is not None and not isinstance(notes, str):
        cfg.notes = str(notes)


def _listed(value):
    """A value as typed on the command line: [a, b], true, null."""
    if isinstance(value, (ListConfig, DictConfig)):
        value = OmegaConf.to_container(value, resolve=True)
    if isinstance(value, list):
        return "[" + ", ".join(str(_listed(v)) for v in value) + "]"
    if value is None or isinstance(value, bool):
        return str(value).lower() if value is not None else "null"
    return value


def _check_missing(cfg):
    """Mandatory values (``???`` in an option, e.g. data=csv's path) that were not given."""
    missing = [k for k in _missing(cfg, "") if not k.startswith("hydra")]
    if missing:
        key = missing[0]
        group = key.split(".")[0]
        raise ConfigError(
            f"{key} must be given: {group}={_choice(cfg, group)} has no default for it "
            f"(see conf/{group}/{_choice(cfg, group)}.yaml). Received: {key}=???"
        )


def _missing(node, prefix):
    # OmegaConf.missing_keys resolves interpolations, which fail on the hydra node outside a job.
    for name in node.keys():
        key = f"{prefix}{name}"
        if OmegaConf.is_missing(node, name):
            yield key
        elif not OmegaConf.is_interpolation(node, name) and isinstance(node[name], DictConfig):
            yield from _missing(node[name], f"{key}.")


def _check_arguments(cfg, group):
    """Keys a ``_partial_`` option (a model) does not take, found now rather than when the
    run calls it. Other targets are called before any run is recorded."""
    node = _select(cfg, group)
    if not node.get("_partial_") or "_target_" not in node:
        return
    from hydra.utils import get_object

    try:
        params = inspect.signature(get_object(node._target_)).parameters
    except (ImportError, ValueError, TypeError):
        return  # a target that cannot be inspected is reported when it is built
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    for name in node:
        if not str(name).startswith("_") and name not in params:
            known = ", ".join(n for n in params if n not in ("input_shape", "head"))
            raise ConfigError(
                f"{group}.{name} is not an argument of {group}={_choice(cfg, group)}; it takes {known}. "
                f"Received: {group}.{name}={node[name]}"
            )


def _choice(cfg, group):
    return group_choices(cfg).get(group, "?")
