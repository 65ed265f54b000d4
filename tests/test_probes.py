"""Probes measure what they say, on a tiny model with known weights."""

import keras
import numpy as np
import pytest

from kerastrack.callbacks.probes import GradientNorms, UpdateSize, WeightStats


def tiny_model():
    inputs = keras.Input((2,))
    x = keras.layers.Dense(2, use_bias=False, name="hidden")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(1, use_bias=False, name="head")(x))
    model.get_layer("hidden").kernel.assign([[1.0, 0.0], [0.0, 0.0005]])
    model.get_layer("head").kernel.assign([[2.0], [-3.0]])
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="mse")
    return model


def test_weight_stats():
    values = WeightStats(threshold=1e-3).measure(tiny_model(), None, None)
    assert values["near_zero_share"] == pytest.approx(3 / 6)  # 0.0, 0.0 and 0.0005
    assert values["weight_l1"] == pytest.approx(6.0005)
    assert values["weight_l2"] == pytest.approx(np.sqrt(1 + 0.0005**2 + 4 + 9))


def test_gradient_norms_match_the_analytic_gradient():
    model = tiny_model()
    x, y = np.array([[1.0, 1.0]], "float32"), np.array([[0.0]], "float32")
    # h = xW1 = [1, 0.0005]; out = h.W2 = 2 - 0.0015 = 1.9985; dL/dout = 2 * out.
    d_out = 2 * 1.9985
    head = np.linalg.norm(d_out * np.array([1.0, 0.0005]))
    hidden = np.linalg.norm(np.outer([1.0, 1.0], d_out * np.array([2.0, -3.0])))
    values = GradientNorms().measure(model, x, y)
    assert values == pytest.approx({"grad_norm/hidden": hidden, "grad_norm/head": head}, rel=1e-5)


def test_update_size_is_the_distance_moved_per_step():
    model = tiny_model()
    probe = UpdateSize()
    probe.start(model)
    before = np.concatenate([model.get_layer(n).kernel.numpy().ravel() for n in ("hidden", "head")])
    x, y = np.ones((4, 2), "float32"), np.zeros((4, 1), "float32")
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)  # 2 steps
    after = np.concatenate([model.get_layer(n).kernel.numpy().ravel() for n in ("hidden", "head")])
    assert probe.measure(model, x, y)["update_per_step"] == pytest.approx(np.linalg.norm(after - before) / 2)
    assert probe.measure(model, x, y) == {}  # no step since the last measure
