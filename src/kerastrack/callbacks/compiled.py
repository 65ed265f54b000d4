"""What a compiled Keras model says about its training, under the names ``python train.py``
records (``optimizer._target_``, ``optimizer.learning_rate``, ``loss.fn._target_``,
``trainer.metrics``, ``model.num_params``, the tags ``optimizer``, ``loss``, ``model``), so that
``kerastrack.Tracker`` runs and the command line's compare side by side in the MLflow UI."""

import importlib
import re

import keras
import numpy as np

# The public modules a Keras class is named by (keras.optimizers.Adam, not keras.src...).
PUBLIC_MODULES = ("keras.optimizers", "keras.optimizers.schedules", "keras.losses", "keras.metrics", "keras")


def class_path(obj):
    """The import path of ``obj``'s class (or of ``obj``, a class or function), by Keras'
    public module where it is exported there: what ``_target_`` holds in train.py's configs."""
    target = obj if isinstance(obj, type) or callable(obj) and not hasattr(obj, "get_config") else type(obj)
    name = getattr(target, "__name__", type(obj).__name__)
    for module in PUBLIC_MODULES:
        if getattr(importlib.import_module(module), name, None) is target:
            return f"{module}.{name}"
    return f"{target.__module__}.{getattr(target, '__qualname__', name)}"


def snake_case(name):
    """``CosineDecay`` -> ``cosine_decay`` (Keras' own names for its objects are snake case)."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def _plain(value):
    """A config value as train.py's YAML gives it: a float32 variable's value (a learning
    rate, ``0.0010000000474974513``) is written as float32 prints it (``0.001``)."""
    if isinstance(value, float) and float(np.float32(value)) == value:
        return float(str(np.float32(value)))
    return value


def _config(obj, drop=("name",)):
    return {k: _plain(v) for k, v in obj.get_config().items() if k not in drop}


def optimizer_params(optimizer):
    """``optimizer._target_`` and one ``optimizer.<key>`` per value of its config; a
    learning-rate schedule as ``scheduler._target_`` and ``scheduler.<key>``, with
    ``optimizer.learning_rate`` its rate at step 0."""
    config = _config(optimizer)
    params = {"optimizer._target_": class_path(optimizer)}
    if isinstance(config.get("learning_rate"), dict):  # a schedule, serialized: made again from it
        schedule = keras.optimizers.schedules.deserialize(config["learning_rate"])
        config["learning_rate"] = _plain(float(keras.ops.convert_to_numpy(schedule(0))))
        params["scheduler._target_"] = class_path(schedule)
        params.update({f"scheduler.{k}": v for k, v in _config(schedule).items()})
    params.update({f"optimizer.{k}": v for k, v in config.items()})
    return params


def optimizer_tag(optimizer):
    """The optimizer as train.py's option names it: ``adam``, ``sgd``, ``momentum`` (SGD with
    momentum), ``nesterov``, ``amsgrad`` (Adam that keeps the maximum), ``rmsprop``, ..."""
    config = optimizer.get_config()
    if config.get("nesterov"):
        return "nesterov"
    if config.get("momentum") and type(optimizer) is keras.optimizers.SGD:
        return "momentum"
    if config.get("amsgrad"):
        return "amsgrad"
    return type(optimizer).__name__.lower()


def schedule_tag(optimizer):
    """``constant``, or the schedule's class in snake case (``cosine_decay``)."""
    rate = optimizer.get_config().get("learning_rate")
    return snake_case(rate["class_name"]) if isinstance(rate, dict) else "constant"


def _loss_class(loss):
    """A loss given by name (``"categorical_crossentropy"``, ``"mse"``) as the Loss class that
    computes the same (Keras resolves the name to a function; its class is the function's
    name in camel case). None when there is no such class."""
    function = keras.losses.get(loss)
    camel = "".join(part.capitalize() for part in getattr(function, "__name__", "").split("_"))
    cls = getattr(keras.losses, camel, None)
    return cls if isinstance(cls, type) and issubclass(cls, keras.losses.Loss) else None


def loss_params(loss):
    """``loss.fn._target_`` and one ``loss.fn.<key>`` per value of its config (a name stands
    for its class with the defaults, which is what Keras computes for it); any other loss
    (a function, one per output) as ``loss.fn``."""
    if isinstance(loss, str) and (cls := _loss_class(loss)) is not None:
        loss = cls()
    if isinstance(loss, keras.losses.Loss):
        return {"loss.fn._target_": class_path(loss), **{f"loss.fn.{k}": v for k, v in _config(loss).items()}}
    if callable(loss):
        return {"loss.fn._target_": class_path(loss)}
    return {"loss.fn": str(loss)}


def loss_tag(loss):
    """The loss as train.py's option names it: its name (``categorical_crossentropy``)."""
    if isinstance(loss, str):
        return loss
    if isinstance(loss, keras.losses.Loss):
        return loss.name
    return getattr(loss, "__name__", None) or type(loss).__name__.lower()


def metric_names(model):
    """The names of the metrics ``compile`` was given (``["accuracy"]``)."""
    metrics = model.get_compile_config().get("metrics") or []
    metrics = metrics if isinstance(metrics, (list, tuple)) else [metrics]
    return [m if isinstance(m, str) else m.get("config", {}).get("name", m.get("class_name")) for m in metrics]


def model_params(model):
    """The compiled model's part of the record (params), as train.py names it."""
    return {
        **optimizer_params(model.optimizer),
        **loss_params(model.loss),
        "model._target_": class_path(model),
        "model.name": model.name,
        "model.num_params": model.count_params(),
        "trainer.metrics": metric_names(model),
        "trainer.steps_per_execution.used": model.steps_per_execution,
        "trainer.jit_compile": model.jit_compile,
        "trainer.precision": model.dtype_policy.name,
        "distribute.num_replicas": getattr(model, "distribute_strategy", None)
        and model.distribute_strategy.num_replicas_in_sync,
    }


def model_tags(model):
    """The tags train.py sets from its config-group choices, read from the model."""
    return {
        "model": model.name,
        "loss": loss_tag(model.loss),
        "optimizer": optimizer_tag(model.optimizer),
        "scheduler": schedule_tag(model.optimizer),
    }


def run_name(tags, data_name=None):
    """As train.py names runs: ``data-model-loss-optimizer`` (``-scheduler`` unless constant);
    without a data set's name, ``model-loss-optimizer``."""
    name = "-".join([*([data_name] if data_name else []), tags["model"], tags["loss"], tags["optimizer"]])
    return name if tags["scheduler"] == "constant" else f"{name}-{tags['scheduler']}"
