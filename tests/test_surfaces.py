"""The optimizer lab's 2-D surfaces: the surfaces themselves, the claims they show when the
real Keras optimizers walk them (short runs), and the figures a run and a sweep log."""

import math

import numpy as np
import pytest
import tensorflow as tf
from hydra.utils import instantiate

from kerastrack.errors import ConfigError
from kerastrack.figures.trajectories import best_paths, sweep_overlay
from kerastrack.losses.surfaces import Polynomial
from kerastrack.pipeline import train
from kerastrack.tracking.query import RunRecord
from tests.helpers import artifacts, history, run_train, store_client


def surface(make_cfg, name):
    return instantiate(make_cfg(f"loss={name}").loss.fn, _convert_="all")


def value_and_gradient(f, x, y):
    point = tf.Variable([x, y], dtype=tf.float32)
    with tf.GradientTape() as tape:
        value = f.value(point[0], point[1])
    return float(value), tape.gradient(value, point).numpy()


def test_rosenbrock_is_409_at_its_start_and_0_with_a_flat_gradient_at_its_minimum_1_1(make_cfg):
    f = surface(make_cfg, "rosenbrock")
    assert make_cfg("loss=rosenbrock").loss.start == [-2.0, 2.0]
    assert value_and_gradient(f, -2.0, 2.0)[0] == pytest.approx(409.0)
    value, gradient = value_and_gradient(f, 1.0, 1.0)
    assert value == 0.0 and np.allclose(gradient, 0.0) and f.minimum == (1.0, 1.0)


def test_rastrigin_is_0_at_the_origin_and_has_a_local_minimum_near_every_integer_point(make_cfg):
    f = surface(make_cfg, "rastrigin")
    value, gradient = value_and_gradient(f, 0.0, 0.0)
    assert value == pytest.approx(0.0, abs=1e-5) and np.allclose(gradient, 0.0, atol=1e-4)
    # 20 + x^2 + y^2 - 10 (cos 2 pi x + cos 2 pi y) at (1, 1): 2; lower than its neighbours
    assert value_and_gradient(f, 1.0, 1.0)[0] == pytest.approx(2.0, abs=1e-4)
    assert value_and_gradient(f, 1.0, 1.0)[0] < min(
        value_and_gradient(f, 1.1, 1.0)[0], value_and_gradient(f, 1.0, 0.9)[0]
    )


def test_the_saddle_has_a_zero_gradient_at_the_origin_rising_along_x_and_falling_along_y(make_cfg):
    f = surface(make_cfg, "saddle")
    value, gradient = value_and_gradient(f, 0.0, 0.0)
    assert value == 0.0 and np.allclose(gradient, 0.0)
    assert value_and_gradient(f, 0.1, 0.0)[0] > 0 > value_and_gradient(f, 0.0, 0.1)[0]
    # bounded below: its minima are -1/2 at (0, +-1)
    assert value_and_gradient(f, 0.0, 1.0)[0] == pytest.approx(-0.5) and np.allclose(
        value_and_gradient(f, 0.0, -1.0)[1], 0
    )


def test_two_minima_has_a_shallow_one_beside_a_deeper_one(make_cfg):
    f = surface(make_cfg, "two_minima")
    shallow, deep = (0.8375, 0.0), (-1.1072, 0.0)  # the roots of 4x^3 - 4x + 1 = 0 around 0.84 and -1.11
    for point in (shallow, deep):
        assert np.allclose(value_and_gradient(f, *point)[1], 0.0, atol=1e-3)
    assert value_and_gradient(f, *deep)[0] == pytest.approx(-2.06, abs=0.01)
    assert value_and_gradient(f, *shallow)[0] == pytest.approx(-0.073, abs=0.01)


def test_a_polynomial_surface_refuses_terms_that_are_not_coefficient_and_two_powers():
    assert Polynomial([[1, 0, 0]]).value(np.float32(2.0), np.float32(3.0)) == 1.0  # a constant: no NaN gradient
    with pytest.raises(
        ConfigError,
        match=r"loss.fn.terms must be a non-empty list of \[coefficient, power of x, "
        r"power of y\].*Received: loss.fn.terms=\[\[1, 2\]\]",
    ):
        Polynomial([[1, 2]])
    with pytest.raises(ConfigError, match=r"Received: loss.fn.terms=\[\[1, -1, 0\]\]"):
        Polynomial([[1, -1, 0]])


def walk(make_cfg, runs, surface_name, optimizer, rate, epochs, *overrides):
    """Trains one walk of the preset on a surface; returns (xs, ys, final value) of the newest run."""
    train(
        make_cfg(
            "experiment=surfaces",
            f"loss={surface_name}",
            f"optimizer={optimizer}",
            f"optimizer.learning_rate={rate}",
            f"trainer.epochs={epochs}",
            *overrides,
        )
    )
    run = runs()[0]
    xs, ys = ([v for _, v in history(runs.client, run, key)] for key in ("x", "y"))
    return xs, ys, history(runs.client, run, "val_loss")[-1][1]


def test_gd_stalls_at_the_saddle_where_adam_leaves_it(make_cfg, runs):
    # 200 steps at rate 0.01 from (-1, 0.001), beside the ridge y = 0 that leads into the saddle.
    gd_x, gd_y, gd_final = walk(make_cfg, runs, "saddle", "gd", 0.01, 10)
    _, adam_y, adam_final = walk(make_cfg, runs, "saddle", "adam", 0.01, 10)
    assert abs(gd_x[-1]) < 0.05 and abs(gd_y[-1]) < 0.1 and abs(gd_final) < 0.01  # sitting at the saddle
    assert abs(adam_y[-1]) > 0.9 and adam_final < -0.45  # down in one of the minima


def test_momentum_carries_past_the_shallow_minimum_where_gd_stays_in_it(make_cfg, runs):
    gd_x, _, gd_final = walk(make_cfg, runs, "two_minima", "gd", 0.01, 10)
    momentum_x, _, momentum_final = walk(make_cfg, runs, "two_minima", "momentum", 0.01, 10)
    assert gd_x[-1] > 0.5 and gd_final > -0.1  # the shallow one, at x = 0.84
    assert momentum_x[-1] < -0.9 and momentum_final < -2.0  # the deeper one, at x = -1.11


def test_gd_creeps_along_rosenbrocks_valley_where_momentum_reaches_the_minimum(make_cfg, runs):
    gd_x, _, gd_final = walk(make_cfg, runs, "rosenbrock", "gd", 0.001, 50)
    momentum_x, momentum_y, momentum_final = walk(make_cfg, runs, "rosenbrock", "momentum", 0.001, 50)
    assert gd_final > 1.0 and gd_x[-1] < 0  # 1,000 steps and still on the valley's far side
    assert momentum_final < 1e-3 and abs(momentum_x[-1] - 1) < 0.05 and abs(momentum_y[-1] - 1) < 0.05


def test_adagrads_steps_shrink_on_rosenbrock_where_rmsprops_do_not(make_cfg, runs):
    def moved(xs, ys, epochs):
        return float(np.hypot(xs[epochs.stop - 1] - xs[epochs.start - 1], ys[epochs.stop - 1] - ys[epochs.start - 1]))

    ada_x, ada_y, ada_final = walk(make_cfg, runs, "rosenbrock", "adagrad", 0.01, 50)
    rms_x, rms_y, rms_final = walk(make_cfg, runs, "rosenbrock", "rmsprop", 0.01, 50)
    assert moved(ada_x, ada_y, range(40, 50)) < moved(ada_x, ada_y, range(1, 11)) / 5  # 8x less here
    assert ada_final > 5 and rms_final < 0.5  # at the same rate, RMSprop got much further along


def test_a_surface_run_logs_x_y_and_the_loss_every_epoch_and_its_trajectory_figure(make_cfg, runs):
    train(
        make_cfg(
            "experiment=surfaces",
            "loss=rosenbrock",
            "optimizer=adam",
            "optimizer.learning_rate=0.1",
            "trainer.epochs=3",
        )
    )
    (run,) = runs()
    assert run.info.status == "FINISHED" and run.data.params["model.start"] == "[-2.0, 2.0]"
    assert run.data.params["trainer.batch_size"] == "1" and run.data.params["data.steps_per_epoch"] == "20"
    for key in ("x", "y", "loss", "val_loss"):
        assert [step for step, _ in history(runs.client, run, key)] == [0, 1, 2], key
    assert history(runs.client, run, "x")[-1][1] != -2.0  # it moved
    assert "plots/trajectory.png" in artifacts(runs.client, run.info.run_id, "plots")


def test_gd_takes_as_many_steps_as_every_other_optimizer_in_the_preset(make_cfg):
    # optimizer=gd sets trainer.batch_size=full (one step an epoch); the preset, applied last, keeps 1.
    assert make_cfg("experiment=surfaces", "optimizer=gd").trainer.batch_size == 1


def record(run_id, surface_name, optimizer, rate, final, status="FINISHED"):
    steps = [(0, 5.0), (1, final)]
    return RunRecord(
        run_id,
        run_id,
        status,
        params={
            "optimizer.learning_rate": str(rate),
            "model.start": "[-2.0, 2.0]",
            "loss.fn._target_": "kerastrack.losses.surfaces.Rosenbrock",
        },
        tags={"loss": surface_name, "optimizer": optimizer, **({"diverged": "true"} if math.isnan(final) else {})},
        history={"x": [(0, -1.0), (1, 0.5)], "y": [(0, 1.0), (1, 0.2)], "val_loss": steps},
    )


def test_the_overlay_picks_each_optimizers_lowest_final_value_and_never_a_diverged_run():
    records = [
        record("a", "rosenbrock", "gd", 0.001, 1.5),
        record("b", "rosenbrock", "gd", 0.01, math.nan, "FAILED"),
        record("c", "rosenbrock", "gd", 0.0001, 5.0),
        record("d", "rosenbrock", "adam", 0.1, 0.4),
        record("e", "rosenbrock", "adam", 1.0, 0.4),
        record("f", "saddle", "gd", 1.0, math.nan, "FAILED"),
    ]
    best = best_paths(records)
    assert {o: r.run_id for o, r in best["rosenbrock"].items()} == {"gd": "a", "adam": "d"}  # a tie: the smaller rate
    assert best["saddle"] == {}  # every run diverged: nothing to show
    fig = sweep_overlay(records)
    assert (
        "rate tuned on the grid 0.0001, 0.001, 0.01, 0.1, 1 (the same for every optimizer)"
        in fig.get_suptitle().replace("\n", " ")
    )
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["gd (0.001): 1.5", "adam (0.1): 0.4"]


@pytest.mark.slow
def test_a_surfaces_sweep_overlays_every_optimizers_path_on_its_parent(tmp_path):
    result = run_train(
        tmp_path,
        "-m",
        "experiment=surfaces",
        "loss=saddle,two_minima",
        "optimizer=gd,adam",
        "optimizer.learning_rate=0.01,0.1",
        "trainer.epochs=2",
        "tracking.log_model=false",
        "trainer.verbose=0",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client = store_client(tmp_path)
    exp = client.get_experiment_by_name("kerastrack")
    (parent,) = client.search_runs([exp.experiment_id], "tags.`sweep.role` = 'parent'")
    report = artifacts(client, parent.info.run_id, "report")
    assert {"report/report.png", "report/surfaces.png", "report/surfaces.gif"} <= set(report)
    assert "surfaces.png, surfaces.gif" in result.stdout


def test_the_overlay_calls_nothing_but_a_surface_named_in_a_stores_params():
    run = record("a", "rosenbrock", "gd", 0.001, 1.5)
    run.params["loss.fn._target_"] = "os.getcwd"  # a store's params could name any callable
    with pytest.raises(ValueError, match="loss.fn._target_ of run a is not a surface: os.getcwd"):
        sweep_overlay([run])
