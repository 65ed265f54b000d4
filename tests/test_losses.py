"""Losses against worked values, and the multiclass SVM loss."""

import keras
import numpy as np
import pytest
from hydra.utils import instantiate
from omegaconf import OmegaConf

from kerastrack.errors import ConfigError
from kerastrack.losses.custom import MulticlassSVM
from kerastrack.models.heads import resolve_head
from tests.helpers import CONF, options

Y = np.array([1, 2, 3, 4, 5, 6], "float32")
Y_HAT = np.array([1, 3, 4, 4, 5, 9], "float32")


def _loss(name, task, classes):
    """The loss option as a run gets it: conf/loss/<name>.yaml's fn through Hydra, and the
    head that encodes the labels for it."""
    cfg = _loss_cfg(name)
    return instantiate(cfg.fn), resolve_head(cfg, task, classes)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("mae", 5 / 6),  # |errors| 0, 1, 1, 0, 0, 3: sum 5 over 6 samples
        ("mse", 11 / 6),  # squared errors 0, 1, 1, 0, 0, 9: sum 11 over 6 samples
    ],
)
def test_the_regression_loss_options_match_the_worked_example(name, expected):
    loss, head = _loss(name, "regression", None)
    assert float(loss(head.encode(Y), Y_HAT.reshape(-1, 1))) == pytest.approx(expected)


@pytest.mark.parametrize("name", ["categorical_crossentropy", "sparse_categorical_crossentropy"])
def test_the_cross_entropy_options_match_the_worked_example(name):
    # Label 3 of 4 classes, p = 0.098 for it: -ln(0.098) = 2.32279.
    loss, head = _loss(name, "multiclass", 4)
    y_pred = np.array([[0.001, 0.9, 0.001, 0.098]], "float32")
    assert float(loss(head.encode(np.array([3])), y_pred)) == pytest.approx(2.32279, abs=1e-4)


def test_multiclass_svm_matches_cs231n_example():
    # cs231n's three-example worked case: losses 2.9, 0 and 12.9, mean 5.27.
    scores = np.array([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]], "float32")
    labels = np.array([0, 1, 2])
    loss = MulticlassSVM(reduction=None)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss(labels, scores)), [2.9, 0.0, 12.9], atol=1e-5)
    assert float(MulticlassSVM()(labels, scores)) == pytest.approx(5.2667, abs=1e-4)
    assert float(MulticlassSVM()(labels.reshape(-1, 1), scores)) == pytest.approx(5.2667, abs=1e-4)


def test_multiclass_svm_properties():
    labels = np.array([0, 3, 9])
    # Near-zero weights give equal scores: every wrong class costs the margin.
    assert float(MulticlassSVM()(labels, np.zeros((3, 10), "float32"))) == pytest.approx(9.0)
    assert float(MulticlassSVM(margin=2.0)(labels, np.zeros((3, 10), "float32"))) == pytest.approx(18.0)
    # Once every margin is met the loss is 0 (and gradients vanish).
    confident = np.eye(10, dtype="float32")[labels] * 5
    assert float(MulticlassSVM()(labels, confident)) == 0.0
    with pytest.raises(ValueError, match="margin"):
        MulticlassSVM(margin=0)


def test_multiclass_svm_survives_keras_serialization():
    loss = MulticlassSVM(margin=0.5)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert isinstance(restored, MulticlassSVM) and restored.margin == 0.5


def _loss_cfg(name):
    return OmegaConf.load(CONF / "loss" / f"{name}.yaml")


@pytest.mark.parametrize("name", options("loss"))
def test_every_loss_option_declares_its_head(name):
    cfg = _loss_cfg(name)
    assert set(cfg.tasks) <= {"multiclass", "binary", "regression"} and cfg.tasks
    assert cfg.fn._target_


@pytest.mark.parametrize(
    "name, task, classes, units, activation, encoded",
    [
        ("categorical_crossentropy", "multiclass", 3, 3, "softmax", [[0, 0, 1], [1, 0, 0]]),
        ("sparse_categorical_crossentropy", "multiclass", 3, 3, "softmax", [2, 0]),
        ("binary_crossentropy", "binary", 2, 1, "sigmoid", [[1], [0]]),
        ("hinge", "binary", 2, 1, None, [[1], [-1]]),
        ("hinge", "multiclass", 3, 3, None, [[-1, -1, 1], [1, -1, -1]]),
        ("mse", "multiclass", 3, 3, "softmax", [[0, 0, 1], [1, 0, 0]]),
        ("multiclass_svm", "multiclass", 3, 3, None, [2, 0]),
        ("categorical_hinge", "binary", 2, 2, None, [[0, 1], [1, 0]]),
    ],
)
def test_labels_are_encoded_for_the_loss(name, task, classes, units, activation, encoded):
    labels = np.array([1, 0]) if classes == 2 else np.array([2, 0])
    head = resolve_head(_loss_cfg(name), task, classes)
    assert (head.units, head.activation) == (units, activation)
    np.testing.assert_array_equal(head.encode(labels), encoded)


def test_regression_gets_raw_values_and_a_linear_head():
    head = resolve_head(_loss_cfg("mse"), "regression", None)
    assert (head.units, head.activation) == (1, None)
    np.testing.assert_array_equal(head.encode([1.5, 2.0]), [[1.5], [2.0]])


def test_from_logits_drops_the_activation():
    cfg = _loss_cfg("categorical_crossentropy")
    cfg.fn.from_logits = True
    assert resolve_head(cfg, "multiclass", 10).activation is None


@pytest.mark.parametrize(
    "name, task",
    [("binary_crossentropy", "multiclass"), ("categorical_crossentropy", "regression"), ("hinge", "regression")],
)
def test_loss_that_does_not_fit_the_task_is_refused(name, task):
    with pytest.raises(ConfigError, match=f"loss={name} does not fit data=d, a {task} task"):
        resolve_head(_loss_cfg(name), task, None if task == "regression" else 3, name, "d")


@pytest.mark.parametrize(
    "name, task, y, outputs, expected",
    [
        ("hinge", "binary", [0, 1, 1], [[-0.3], [0.2], [-0.1]], 2 / 3),
        ("binary_crossentropy", "binary", [0, 1, 1], [[0.3], [0.6], [0.4]], 2 / 3),
        ("categorical_hinge", "multiclass", [0, 2], [[2.0, 1.0, 0.0], [0.0, 3.0, 1.0]], 0.5),
        ("sparse_categorical_crossentropy", "multiclass", [0, 2], [[0.7, 0.2, 0.1], [0.1, 0.2, 0.7]], 1.0),
        ("hinge", "multiclass", [1, 2], [[-1.0, 0.5, -0.2], [0.3, -1.0, 0.1]], 0.5),
    ],
)
def test_accuracy_matches_the_head(name, task, y, outputs, expected):
    head = resolve_head(_loss_cfg(name), task, 2 if task == "binary" else 3)
    metric = head.accuracy()
    metric.update_state(head.encode(np.array(y)), np.array(outputs, "float32"))
    assert float(metric.result()) == pytest.approx(expected)
    # The confusion matrix's class predictions agree with the metric.
    assert np.mean(head.predict_classes(np.array(outputs)) == np.array(y)) == pytest.approx(expected)
