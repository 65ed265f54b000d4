"""Every option of every group trains: default callbacks and model logging on, as users run.

One short run per row; each row combines one option of each group (a loss with a data set
it fits, cnn with images), so that every option runs once in about a dozen runs. A
default option failing after its first epoch (the schedule that could not be saved with
the model) is what this catches; the other tests switch callbacks and model logging off.
"""

import math

import mlflow
import numpy as np
import pytest

from kerastrack.pipeline import train
from tests.helpers import options

ROWS = [
    # data, model, loss, optimizer, scheduler, callbacks
    ("breast_cancer", "mlp", "binary_crossentropy", "adagrad", "cosine", "[default,gradient_norms]"),
    ("digits", "cnn", "categorical_crossentropy", "adam", "piecewise", "default"),
    ("iris", "linear", "categorical_hinge", "adamw", "exponential", "[default,update_size]"),
    ("breast_cancer", "linear", "hinge", "amsgrad", "constant", "[default,reduce_lr_on_plateau]"),
    ("diabetes", "mlp", "huber", "gd", "polynomial", "[default,weight_stats,tensorboard]"),
    ("diabetes", "linear", "mae", "momentum", "step", "none"),
    ("csv", "mlp", "mse", "nadam", "cosine_warmup", "early_stopping"),
    ("wine", "mlp", "multiclass_svm", "nesterov", "plateau", "model_checkpoint"),
    ("digits", "cnn", "sparse_categorical_crossentropy", "rmsprop", "constant", "terminate_on_nan"),
    ("iris", "mlp", "squared_hinge", "sgd", "constant", "default"),
    ("reddi_online", "linear", "online_linear", "amsgrad", "constant", "[default,parameters]"),
    ("wilson_separable", "linear", "least_squares", "adagrad_from_zero", "constant", "default"),
    # The optimizer lab's surfaces: the position is the model (experiment=surfaces).
    ("surface_steps", "point", "rosenbrock", "adam", "constant", "[default,trajectory]"),
    ("surface_steps", "point", "saddle", "sgd", "constant", "trajectory"),
    ("surface_steps", "point", "two_minima", "momentum", "constant", "trajectory"),
    ("surface_steps", "point", "rastrigin", "rmsprop", "constant", "trajectory"),
]
# Debian's dataset-fashion-mnist, an extra (it skips without it); mnist and cifar10 would download.
FASHION_ROW = ("fashion_mnist", "cnn", "categorical_crossentropy", "adam", "constant", "default")
GROUPS = ("data", "model", "loss", "optimizer", "scheduler", "callbacks")
NEEDS_DOWNLOAD = {"mnist", "cifar10"}


def test_the_rows_cover_every_option():
    for i, group in enumerate(GROUPS):
        used = {name for row in [*ROWS, FASHION_ROW] for name in row[i].strip("[]").split(",")}
        assert set(options(group)) - NEEDS_DOWNLOAD <= used, group


def _overrides(row, tmp_path):
    overrides = [f"{group}={choice}" for group, choice in zip(GROUPS, row)]
    overrides += ["tracking.log_model=true"]
    if row[0] == "reddi_online":  # the lab's online problem: one weight, x, one step at a time
        overrides += ["data.steps_per_epoch=101", "model.use_bias=false", "trainer.batch_size=1"]
    elif row[0] == "wilson_separable":  # the lab's construction: points, not a set to limit
        overrides.append("data.n=20")
    elif row[0] == "surface_steps":  # a point on a surface, one step a sample
        overrides += ["trainer.batch_size=1", "trainer.metrics=[]"]
    else:
        overrides.append("data.limit=60")
    if row[0] == "csv":  # a float target with many values: regression, for mse
        path = tmp_path / "toy.csv"
        rng = np.random.default_rng(0)
        path.write_text("a,b,y\n" + "".join(f"{a:.3f},{b:.3f},{a + 2 * b:.3f}\n" for a, b in rng.normal(size=(90, 2))))
        overrides += [f"data.path={path}", "data.target=y"]
    if row[4] == "cosine_warmup":  # warm-up must end before the single epoch does
        overrides.append("scheduler.warmup_epochs=0.5")
    return overrides


@pytest.mark.parametrize(
    "row",
    [*ROWS, pytest.param(FASHION_ROW, marks=pytest.mark.extra("fashion_mnist"))],
    ids=[" ".join(row) for row in [*ROWS, FASHION_ROW]],
)
def test_every_option_trains_with_default_callbacks_and_a_logged_model(row, make_cfg, runs, tmp_path):
    train(make_cfg(*_overrides(row, tmp_path)))
    (run,) = runs()
    assert run.info.status == "FINISHED"
    mlflow.set_tracking_uri(runs.client.tracking_uri)
    (model_info,) = mlflow.search_logged_models(
        filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list"
    )
    model = mlflow.pyfunc.load_model(f"models:/{model_info.model_id}")
    shape = model.metadata.get_input_schema().inputs[0].shape  # (-1, *one sample)
    assert len(np.asarray(model.predict(np.zeros((2, *shape[1:]), "float32")))) == 2


def test_tracking_none_and_distribute_mirrored_train(make_cfg):
    # distribute=mirrored on the logical CPUs this process has (one, unless logical_cpus).
    assert math.isfinite(train(make_cfg("tracking=none", "distribute=mirrored", "data.limit=60")))
