"""Losses and metrics that Keras does not ship.

They are registered with Keras so that a saved model (a checkpoint, the logged model)
that uses them loads again once this module is imported.
"""

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerastrack")
class MulticlassSVM(keras.losses.Loss):
    """The cs231n multiclass SVM (Weston-Watkins) loss on raw class scores.

    ``L_i = sum_{j != y_i} max(0, s_j - s_{y_i} + margin)``, averaged over samples.
    Keras' ``CategoricalHinge`` is the Crammer-Singer form (a max over j instead of the
    sum), so this one is written here. With all scores equal the loss is
    ``(num_classes - 1) * margin``; once every margin is met it is 0 and learning stops.

    Args:
        margin: The margin Delta by which the correct class score must beat the others.
            Must be > 0.
        reduction: Keras loss reduction, e.g. ``"sum_over_batch_size"`` (the mean).
        name: Name of the loss.
        dtype: Dtype of the loss computation.

    Labels are integer class ids, shape ``(batch,)`` or ``(batch, 1)``.
    """

    def __init__(self, margin=1.0, reduction="sum_over_batch_size", name="multiclass_svm", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if not margin > 0:
            raise ValueError(f"`margin` must be > 0. Received: margin={margin}")
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        is_true = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        true_score = ops.sum(y_pred * is_true, axis=-1, keepdims=True)
        margins = ops.maximum(0.0, y_pred - true_score + self.margin) * (1.0 - is_true)
        return ops.sum(margins, axis=-1)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="kerastrack")
class OnlineLinear(keras.losses.Loss):
    """The linear loss of an online problem: ``f_t(x) = c_t * x``, with ``c_t`` the sample's
    target and ``x`` the model's output (Reddi et al. 2018's counterexample to Adam, where
    the gradient of each step is its ``c_t``). Keras has no loss linear in the output.

    Args:
        reduction: Keras loss reduction, e.g. ``"sum_over_batch_size"`` (the mean).
        name: Name of the loss.
        dtype: Dtype of the loss computation.
    """

    def __init__(self, reduction="sum_over_batch_size", name="online_linear", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return ops.sum(ops.cast(y_true, y_pred.dtype) * y_pred, axis=-1)


@keras.saving.register_keras_serializable(package="kerastrack")
def signed_accuracy(y_true, y_pred):
    """Accuracy for ±1 labels against raw scores: the signs agree.

    Keras has none (BinaryAccuracy compares the label with 0/1), so it is written here.
    """
    return ops.cast(ops.equal(y_true > 0, y_pred > 0), "float32")
