"""The model's output head and label encoding, derived from the data set and the loss.

A loss option declares which data tasks it fits, how class labels must be encoded for it
and whether the head emits probabilities or raw scores (see conf/loss/*.yaml). From that
and the data set's task this module derives the head's units and activation, encodes the
labels and picks the accuracy metric that matches, so the user never sets them by hand.
"""

import dataclasses

import numpy as np

from kerastrack.errors import ConfigError

TASKS = ("multiclass", "binary", "regression")
TARGETS = ("one_hot", "integer", "binary", "signed")
OUTPUTS = ("probabilities", "scores")


@dataclasses.dataclass(frozen=True)
class Head:
    """What the last layer emits and how labels are encoded for the loss.

    Args:
        task: The data set's task: multiclass, binary or regression.
        units: Units of the output layer.
        activation: Its activation: "softmax", "sigmoid" or None (linear).
        targets: Label encoding: one_hot, integer, binary, signed or value (regression).
    """

    task: str
    units: int
    activation: str | None
    targets: str

    def encode(self, y):
        """Turns integer class ids (or regression values) into the loss's targets."""
        y = np.asarray(y)
        if self.targets == "value":
            return y.astype("float32").reshape(len(y), -1)
        if self.targets == "integer":
            return y.astype("int64")
        if self.units == 1:  # binary or signed, one unit
            y01 = y.astype("float32").reshape(-1, 1)
            return 2.0 * y01 - 1.0 if self.targets == "signed" else y01
        one_hot = np.eye(self.units, dtype="float32")[y.astype("int64")]
        return 2.0 * one_hot - 1.0 if self.targets == "signed" else one_hot

    @property
    def threshold(self):
        """Decision threshold of a one-unit head: 0.5 on a sigmoid, 0 on scores/logits."""
        return 0.5 if self.activation == "sigmoid" else 0.0

    def predict_classes(self, outputs):
        """Class ids from the head's outputs."""
        outputs = np.asarray(outputs)
        if self.units == 1:
            return (outputs.reshape(-1) > self.threshold).astype("int64")
        return outputs.argmax(axis=-1)

    def accuracy(self):
        """The Keras accuracy metric that fits this head, named ``accuracy``."""
        import keras

        if self.task == "regression":
            raise ConfigError(
                "trainer.metrics: accuracy needs a classification data set. "
                "Received: trainer.metrics=[accuracy] on a regression task; try [mae] or [mse]"
            )
        if self.targets == "integer":
            return keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        if self.units > 1:  # argmax also fits ±1 "one-hot" targets
            return keras.metrics.CategoricalAccuracy(name="accuracy")
        if self.targets == "signed":
            from kerastrack.losses.custom import signed_accuracy  # imports keras: deferred as above

            return keras.metrics.MeanMetricWrapper(signed_accuracy, name="accuracy")
        return keras.metrics.BinaryAccuracy(name="accuracy", threshold=self.threshold)


def resolve_head(loss_cfg, task, num_classes, loss_name="?", data_name="?"):
    """Derives the head for a loss option on a data set.

    Args:
        loss_cfg: The loss option's config (keys tasks, targets, output, fn).
        task: The data set's task.
        num_classes: Number of classes (None for regression).
        loss_name: The loss option's name, for messages.
        data_name: The data set's name, for messages.

    Returns:
        A Head.

    Raises:
        ConfigError: If the loss does not fit the task.
    """
    tasks = list(loss_cfg.get("tasks", TASKS))
    if task not in tasks:
        raise ConfigError(
            f"loss={loss_name} does not fit data={data_name}, a {task} task; "
            f"{loss_name} fits {', '.join(tasks)}. Received: loss={loss_name}, data={data_name}"
        )
    if task == "regression":
        return Head(task, 1, None, "value")
    targets = loss_cfg.get("targets", "one_hot")
    output = loss_cfg.get("output", "probabilities")
    if targets not in TARGETS:
        raise ConfigError(f"loss.targets must be one of {', '.join(TARGETS)}. Received: loss.targets={targets}")
    if output not in OUTPUTS:
        raise ConfigError(f"loss.output must be one of {', '.join(OUTPUTS)}. Received: loss.output={output}")
    units = 1 if targets == "binary" or (targets == "signed" and num_classes == 2) else num_classes
    if targets == "binary" and num_classes != 2:
        raise ConfigError(
            f"loss={loss_name} needs exactly 2 classes; data={data_name} has {num_classes}. "
            f"Received: loss={loss_name}, data={data_name}"
        )
    from_logits = bool(loss_cfg.get("fn", {}).get("from_logits", False))
    activation = None
    if output == "probabilities" and not from_logits:
        activation = "sigmoid" if units == 1 else "softmax"
    return Head(task, units, activation, targets)


def resolve_metrics(names, head):
    """Builds Keras metric objects, each logged under the name the user wrote.

    Args:
        names: Metric names (``accuracy`` is matched to the head), or None for the task's
            usual metric: accuracy for classification, mae for regression.
        head: The model's output head.

    Returns:
        A list of ``keras.metrics.Metric``.
    """
    import keras

    if names is None:
        names = ["mae"] if head.task == "regression" else ["accuracy"]
    metrics = []
    for name in names:
        if name in ("accuracy", "acc"):
            metrics.append(head.accuracy())
            continue
        try:
            metric = keras.metrics.get(name)
        except ValueError:
            raise ConfigError(
                f"trainer.metrics: unknown metric '{name}'. Use accuracy or a keras.metrics name "
                f"such as mae, mse, auc, precision, recall, top_k_categorical_accuracy "
                f"(https://keras.io/api/metrics/). Received: trainer.metrics={list(names)}"
            ) from None
        if head.task == "regression" and any(word in name for word in CLASSIFICATION_WORDS):
            raise ConfigError(
                f"trainer.metrics: {name} needs a classification data set. "
                f"Received: trainer.metrics={list(names)} on a regression task; try [mae] or [mse]"
            )
        if isinstance(metric, keras.metrics.Metric):
            metric = metric.__class__.from_config({**metric.get_config(), "name": name})
        else:
            metric = keras.metrics.MeanMetricWrapper(metric, name=name)
        _try_metric(metric, head, names)
        metrics.append(metric)
    return metrics


# Metric names that only mean something for classes (the same words tell monitor_mode
# that higher is better).
CLASSIFICATION_WORDS = ("acc", "auc", "precision", "recall", "f1")


def _try_metric(metric, head, names):
    """Runs a metric once on two samples of the head's targets and outputs.

    A metric that cannot read them (top_k_categorical_accuracy on integer labels) would
    otherwise fail at the first training step, with the run already recorded.
    """
    import keras
    import tensorflow as tf

    if tf.distribute.has_strategy():  # a metric's variables cannot be updated across replicas here
        return
    y_true = head.encode(np.array([0.5, 1.5]) if head.task == "regression" else np.array([0, 1]))
    y_pred = np.full((2, head.units), 0.5, dtype="float32")
    probe = metric.__class__.from_config(metric.get_config())
    try:
        probe.update_state(keras.ops.convert_to_tensor(y_true), keras.ops.convert_to_tensor(y_pred))
    except (ValueError, TypeError, tf.errors.InvalidArgumentError) as exc:
        reason = " ".join(str(exc).split())[:200]
        raise ConfigError(
            f"trainer.metrics: {metric.name} does not fit this loss's targets ({head.targets}, "
            f"{head.units} outputs): {reason}. Received: trainer.metrics={list(names)}"
        ) from None
