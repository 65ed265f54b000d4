"""The optimizer lab's problems, trained as any run: Reddi et al.'s counterexample to Adam."""

import numpy as np
import pytest

from kerastrack.data.lab import reddi_online, wilson_separable
from kerastrack.errors import ConfigError
from kerastrack.pipeline import train
from tests.helpers import history


def test_the_online_problem_has_one_large_gradient_a_period_and_its_optimum_at_minus_one():
    data = reddi_online(steps_per_epoch=202)
    assert data.y_train[0] == 1010 and data.y_train[101] == 1010 and (data.y_train[1:101] == -10).all()
    assert (data.x_train == 1).all() and len(data.x_val) == 101
    assert data.y_val.mean() > 0  # each period's gradients sum to +10: the loss falls as x -> -1


@pytest.mark.parametrize("steps", [100, 0, 150.0])
def test_an_epoch_that_is_not_whole_periods_is_refused(steps):
    with pytest.raises(
        ConfigError,
        match=rf"data.steps_per_epoch must be a multiple of data.period \(101\).*"
        rf"Received: data.steps_per_epoch={steps}",
    ):
        reddi_online(steps_per_epoch=steps)


def test_adam_drifts_to_plus_one_and_amsgrad_heads_for_the_optimum(make_cfg, runs):
    # A shortened run (12 epochs = 12,120 steps, ~3 s each) that already shows the signs:
    # the full preset runs 50 epochs.
    for optimizer in ("adam", "amsgrad"):
        train(make_cfg("experiment=amsgrad_counterexample", f"optimizer={optimizer}", "trainer.epochs=12"))
    amsgrad, adam = runs()  # newest first
    assert adam.data.params["optimizer.beta_2"] == amsgrad.data.params["optimizer.beta_2"] == "0.99"
    xs = {name: [v for _, v in history(runs.client, run, "x")] for name, run in (("adam", adam), ("amsgrad", amsgrad))}
    assert len(xs["adam"]) == len(xs["amsgrad"]) == 12
    assert xs["adam"][-1] > 0.9  # pinned near +1 by the projection
    assert xs["amsgrad"][-1] < -0.2 and xs["amsgrad"][-1] < xs["amsgrad"][5] < xs["amsgrad"][0]
    assert all(-1.0 - 1e-6 <= x <= 1.0 + 1e-6 for x in xs["adam"] + xs["amsgrad"])  # the projection holds
    # The validation loss is the average regret's slope times x: lower for AMSGrad.
    assert amsgrad.data.metrics["best_val_loss"] < 0 < adam.data.metrics["val_loss"]


def test_a_parameters_probe_must_name_every_weight(make_cfg, runs):
    with pytest.raises(
        ConfigError,
        match=r"callbacks.parameters.names must name each of the model's 12 trainable "
        r"weights. Received: callbacks.parameters.names=\['x'\]",
    ):
        train(
            make_cfg(
                "experiment=amsgrad_counterexample",
                "data=iris",
                "loss=categorical_crossentropy",
                "model.kernel_initializer=zeros",
                "model.use_bias=false",
                "model.max_norm=null",
                "trainer.metrics=null",
            )
        )


def test_wilsons_construction_is_separable_with_unique_features_per_point():
    data = wilson_separable(n=10, n_val=4, n_test=6, seed=1)
    assert data.x_train.shape == (10, 3 + 5 * 20) and data.task == "binary"
    signed = 2 * data.y_train - 1
    assert (data.x_train[:, 0] == signed).all() and (data.x_train[:, 1:3] == 1).all()
    # one unique feature for a +1, five for a -1, and no point shares one with another
    assert (data.x_train[:, 3:].sum(axis=1) == np.where(signed > 0, 1, 5)).all()
    every = np.concatenate([data.x_train, data.x_val, data.x_test])[:, 3:]
    assert every.sum(axis=0).max() == 1
    with pytest.raises(ConfigError, match=r"data.p must be a number in \(0.5, 1\).*Received: data.p=0.5"):
        wilson_separable(p=0.5)


def test_sgd_generalizes_on_wilsons_construction_and_adam_calls_every_new_point_positive(make_cfg, runs):
    # Shortened (60 full-batch steps): the signs of the effect already show.
    for optimizer in ("sgd", "adam"):
        train(make_cfg("experiment=adaptive_generalization", f"optimizer={optimizer}", "trainer.epochs=60"))
    adam, sgd = runs()  # newest first
    positives = wilson_separable(seed=make_cfg().seed).y_test.mean()  # the share of +1 among the test points
    assert sgd.data.metrics["test_accuracy"] == 1.0
    assert adam.data.metrics["test_accuracy"] == pytest.approx(positives)
    assert adam.data.metrics["accuracy"] == 1.0  # both fit the training set
