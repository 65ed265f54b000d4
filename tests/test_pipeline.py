"""Training runs in-process on the real config, and what they leave in MLflow."""

import math

import mlflow
import numpy as np
import pytest
import yaml
from hydra.utils import instantiate

from kerastrack.errors import ConfigError
from kerastrack.pipeline import DivergedError, train
from tests.helpers import CONF, artifacts, history, options


def test_a_run_records_every_epoch_and_the_summary(make_cfg, runs, tmp_path):
    best = train(make_cfg("trainer.epochs=3", "optimizer=momentum"))
    (run,) = runs()
    client = runs.client
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "digits-mlp-categorical_crossentropy-momentum"
    for key in ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate", "epoch_time_s"):
        assert [s for s, _ in history(client, run, key)] == [0, 1, 2], key
    assert all(v == pytest.approx(0.01) for _, v in history(client, run, "learning_rate"))
    val_losses = [v for _, v in history(client, run, "val_loss")]
    m = run.data.metrics
    assert m["best_val_loss"] == min(val_losses) == best
    assert m["best_epoch"] == val_losses.index(min(val_losses))
    assert 0 < m["test_accuracy"] <= 1 and m["test_loss"] > 0
    tags, params = run.data.tags, run.data.params
    assert {tags[g] for g in ("data", "model", "loss", "optimizer", "scheduler")} == {
        "digits",
        "mlp",
        "categorical_crossentropy",
        "momentum",
        "constant",
    }
    assert tags["version.keras"].startswith("3.") and tags["version.tensorflow"]
    assert params["optimizer.momentum"] == "0.9" and params["optimizer._target_"] == "keras.optimizers.SGD"
    assert params["trainer.epochs"] == "3" and params["dataset.task"] == "multiclass"
    assert int(params["model.num_params"]) > 0
    files = artifacts(client, run.info.run_id)
    assert {
        "config/config.yaml",
        "config/overrides.yaml",
        "plots/learning_curves.png",
        "plots/confusion_matrix.png",
    } <= set(files)
    config = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config/config.yaml", str(tmp_path))))
    assert config["optimizer"]["momentum"] == 0.9 and "hydra" not in config
    overrides = yaml.safe_load(open(client.download_artifacts(run.info.run_id, "config/overrides.yaml", str(tmp_path))))
    assert "optimizer=momentum" in overrides
    assert not (tmp_path / "out" / "checkpoints").exists()  # model_checkpoint is not a default callback


@pytest.mark.parametrize("optimizer", options("optimizer"))
def test_every_optimizer_trains_on_a_classification_set(optimizer, make_cfg, runs):
    train(make_cfg(f"optimizer={optimizer}", "trainer.epochs=2", "callbacks=none"))
    (run,) = runs()
    assert run.info.status == "FINISHED" and run.data.tags["optimizer"] == optimizer
    assert [s for s, _ in history(runs.client, run, "val_accuracy")] == [0, 1]
    assert math.isfinite(run.data.metrics["test_loss"])


DATA_FOR_TASK = {"multiclass": "iris", "binary": "breast_cancer", "regression": "diabetes"}
# The 2-D surfaces (a `start` of their own) score model=point's position: tests/test_surfaces.py.
LOSS_TASKS = [
    (loss, task)
    for loss in options("loss")
    if "start" not in (spec := yaml.safe_load((CONF / "loss" / f"{loss}.yaml").read_text()))
    for task in spec["tasks"]
]


@pytest.mark.parametrize("loss, task", LOSS_TASKS, ids=[f"{loss}-{task}" for loss, task in LOSS_TASKS])
def test_every_loss_trains_on_every_task_it_fits(loss, task, make_cfg, runs):
    data = DATA_FOR_TASK[task]
    train(
        make_cfg(f"loss={loss}", f"data={data}", "trainer.epochs=2", "callbacks=none", "optimizer.learning_rate=0.01")
    )
    (run,) = runs()
    m = run.data.metrics
    assert run.info.status == "FINISHED" and run.data.tags["loss"] == loss
    assert math.isfinite(m["loss"]) and math.isfinite(m["test_loss"])
    if task == "regression":
        assert "val_mae" in m and "accuracy" not in m
    else:
        assert 0 <= m["val_accuracy"] <= 1 and "plots/confusion_matrix.png" in artifacts(runs.client, run.info.run_id)


def test_classification_losses_learn_something(make_cfg, runs):
    # Accuracy well above chance (10%) after a few epochs: the head and labels fit together.
    for loss in ("sparse_categorical_crossentropy", "multiclass_svm", "hinge", "mse"):
        train(make_cfg(f"loss={loss}", "trainer.epochs=4", "callbacks=none", "optimizer.learning_rate=0.01"))
    assert all(r.data.metrics["val_accuracy"] > 0.6 for r in runs()), [r.data.metrics["val_accuracy"] for r in runs()]


@pytest.mark.parametrize("scheduler", [s for s in options("scheduler") if s not in ("constant", "plateau")])
def test_logged_learning_rate_follows_the_schedule(scheduler, make_cfg, runs):
    cfg = make_cfg(
        f"scheduler={scheduler}",
        "trainer.epochs=4",
        "callbacks=none",
        "optimizer.learning_rate=0.01",
        "scheduler.boundary_epochs=[1,2]" if scheduler == "piecewise" else "scheduler.decay_epochs=2",
    )
    train(cfg)
    (run,) = runs()
    from kerastrack.optimizers.schedules import in_steps, steps_per_epoch

    steps = steps_per_epoch(int(run.data.params["dataset.sizes"].split()[0].split("=")[1]), cfg.trainer.batch_size)
    schedule = instantiate(in_steps(cfg.scheduler, steps))
    logged = [v for _, v in history(runs.client, run, "learning_rate")]
    assert len(set(logged)) > 1, logged
    assert logged == pytest.approx([float(schedule(e * steps)) for e in range(4)], rel=1e-5)


@pytest.mark.parametrize("choice", ["callbacks=[default,reduce_lr_on_plateau]", "scheduler=plateau"])
def test_reduce_lr_on_plateau_lowers_the_logged_rate(choice, make_cfg, runs):
    train(
        make_cfg(
            choice,
            "trainer.epochs=4",
            "optimizer.learning_rate=0.01",
            "callbacks.reduce_lr_on_plateau.patience=0",
            "callbacks.reduce_lr_on_plateau.min_delta=100",
        )
    )
    (run,) = runs()
    logged = [v for _, v in history(runs.client, run, "learning_rate")]
    # Epoch 0 sets the reference; every later epoch misses it by min_delta and halves the
    # rate, which the next epoch starts with.
    assert logged == pytest.approx([0.01, 0.01, 0.005, 0.0025])


def test_full_batch_gd_takes_one_step_per_epoch(make_cfg, runs):
    train(make_cfg("optimizer=gd", "trainer.epochs=2", "callbacks=none", "tracking.log_every_n_steps=1"))
    (run,) = runs()
    assert run.data.params["trainer.batch_size"] == "full"
    assert [s for s, _ in history(runs.client, run, "batch_loss")] == [1, 2]


@pytest.mark.parametrize("steps_per_execution, steps", [(1, [5, 10, 15, 20]), (4, [8, 11, 15, 22])])
def test_batch_logging_every_n_steps(steps_per_execution, steps, make_cfg, runs):
    # 1,077 samples: 11 steps an epoch. With 4 steps a call, Keras' batch hook sees steps 4, 8,
    # 11 | 15, 19, 22: it logs at the first call past each multiple of 5, at that call's step.
    train(
        make_cfg(
            "trainer.batch_size=100",
            "trainer.epochs=2",
            "tracking.log_every_n_steps=5",
            "callbacks=none",
            f"trainer.steps_per_execution={steps_per_execution}",
        )
    )
    (run,) = runs()
    assert [s for s, _ in history(runs.client, run, "batch_loss")] == steps


def test_validation_split_trains_on_the_first_share_and_validates_on_the_rest(make_cfg, runs):
    train(make_cfg("callbacks=none"))
    train(
        make_cfg(
            "trainer.validation_split=0.25",
            "callbacks=none",
            "trainer.steps_per_execution=1",
            "tracking.log_every_n_steps=1",
        )
    )
    split, own = runs()
    train_size = int(split.data.params["dataset.sizes"].split()[0].removeprefix("train="))
    batch_size = int(split.data.params["trainer.batch_size"])
    # Trained on the first 75% only: one logged step per batch of it.
    assert len(history(runs.client, split, "batch_loss")) == math.ceil(int(train_size * 0.75) / batch_size)
    # Validated on other samples than the data set's own validation split.
    assert split.data.metrics["val_loss"] != own.data.metrics["val_loss"]


def test_two_runs_with_the_same_seed_are_bit_identical(make_cfg, runs):
    for _ in range(2):
        train(make_cfg("trainer.epochs=2", "callbacks=none", "model.dropout=0.2"))
    first, second = runs()
    for key in ("loss", "val_loss", "val_accuracy"):
        assert history(runs.client, first, key) == history(runs.client, second, key)
    train(make_cfg("trainer.epochs=2", "callbacks=none", "model.dropout=0.2", "seed=7"))
    assert history(runs.client, runs()[0], "loss") != history(runs.client, first, "loss")


@pytest.mark.parametrize("callbacks", ["default", "none"])
def test_divergence_stops_training_and_fails_the_run(callbacks, make_cfg, runs):
    with pytest.raises(DivergedError, match="training diverged"):
        train(make_cfg("optimizer=sgd", "optimizer.learning_rate=1e30", "trainer.epochs=3", f"callbacks={callbacks}"))
    (run,) = runs()
    assert run.info.status == "FAILED"
    assert run.data.tags["diverged"] == "true" and run.data.tags["diverged_epoch"] == "0"
    assert run.data.tags["error.type"] == "DivergedError"
    # Stopped at once: by TerminateOnNaN, or without it by the epoch logger.
    assert len(history(runs.client, run, "loss")) == 1


def test_an_error_during_training_fails_the_run_with_the_error(make_cfg, runs):
    with pytest.raises(RuntimeError, match="boom"):
        train(
            make_cfg(
                "trainer.epochs=3", "+callbacks.fail._target_=tests.support.FailAtEpoch", "+callbacks.fail.epoch=1"
            )
        )
    (run,) = runs()
    assert run.info.status == "FAILED"
    assert run.data.tags["error.type"] == "RuntimeError" and "boom at epoch 1" in run.data.tags["error.message"]
    assert "error/traceback.txt" in artifacts(runs.client, run.info.run_id)
    assert [s for s, _ in history(runs.client, run, "loss")] == [0, 1]  # what was logged stays
    # Summaries are logged once, when training completes (a resumed run would log them again).
    assert "best_val_loss" not in run.data.metrics


def test_an_error_after_the_run_opened_fails_it(make_cfg, runs):
    # model=cnn on data=iris is refused before any run; a data function of the user's own
    # is found tabular only by the model, once the run is open.
    with pytest.raises(ConfigError, match="model=cnn needs image data"):
        train(make_cfg("model=cnn", "data=iris", "data._target_=tests.support.user_iris"))
    assert [r.info.status for r in runs()] == ["FAILED"]


def test_sigterm_kills_the_run_and_keeps_what_was_logged(make_cfg, runs, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train(
            make_cfg(
                "trainer.epochs=5",
                "callbacks=[default,model_checkpoint]",
                "+callbacks.kill._target_=tests.support.SignalAtEpoch",
                "+callbacks.kill.epoch=1",
            )
        )
    (run,) = runs()
    assert run.info.status == "KILLED"
    assert [s for s, _ in history(runs.client, run, "val_loss")] == [0, 1]
    assert (tmp_path / "out" / "checkpoints" / "best.keras").is_file()


def test_logged_model_loads_and_predicts(make_cfg, runs):
    train(make_cfg("tracking.log_model=true", "callbacks=none"))
    (run,) = runs()
    mlflow.set_tracking_uri(runs.client.tracking_uri)
    (model_info,) = mlflow.search_logged_models(
        filter_string=f"source_run_id = '{run.info.run_id}'", output_format="list"
    )
    loaded = mlflow.pyfunc.load_model(f"models:/{model_info.model_id}")
    x = np.zeros((2, 8, 8, 1), "float32")
    assert np.asarray(loaded.predict(x)).shape == (2, 10)
    assert loaded.metadata.signature is not None and loaded.metadata.get_input_schema() is not None


def test_tracking_none_trains_without_a_store(make_cfg, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert math.isfinite(train(make_cfg("tracking=none", "callbacks=none")))
    assert not (tmp_path / "mlflow.db").exists()
    assert (tmp_path / "out" / "learning_curves.png").is_file()


def test_mlflow_environment_variables_are_honoured(make_cfg, tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    train(make_cfg("tracking.tracking_uri=null", "tracking.experiment_name=null", "callbacks=none"))
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name("from-env")
    assert [r.info.status for r in client.search_runs([exp.experiment_id])] == ["FINISHED"]


def test_probes_are_logged_with_every_epoch(make_cfg, runs):
    train(
        make_cfg(
            "callbacks=[none,gradient_norms,weight_stats,update_size]",
            "trainer.epochs=2",
            "model.hidden_units=[32,16]",
            "model.l1=0.01",
        )
    )
    (run,) = runs()
    for key in (
        "grad_norm/dense_0",
        "grad_norm/dense_1",
        "grad_norm/head",
        "near_zero_share",
        "weight_l1",
        "weight_l2",
        "update_per_step",
    ):
        assert [s for s, _ in history(runs.client, run, key)] == [0, 1], key
    assert all(0 <= v <= 1 for _, v in history(runs.client, run, "near_zero_share"))
    assert all(v > 0 for _, v in history(runs.client, run, "update_per_step"))


def test_artifacts_go_beside_the_store_not_the_working_directory(make_cfg, tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    train(make_cfg(f"tracking.tracking_uri={uri}", "callbacks=none"))
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("test_artifacts_go_beside_the_store_not_the_working_directory").experiment_id]
    )
    assert run.info.artifact_uri.startswith(str(tmp_path / "store" / "mlruns"))
    assert not list(elsewhere.iterdir())


def test_credentials_never_reach_the_store(make_cfg, runs, tmp_path, monkeypatch):
    monkeypatch.setenv("KT_TEST_TOKEN", "s3cr3t-from-env")
    train(
        make_cfg(
            "callbacks=none",
            "+trainer.db_password=hunter2",
            "+trainer.api_token=${oc.env:KT_TEST_TOKEN}",
            # A key of its own that kerastrack takes (trainer's are fixed): LambdaCallback keeps any.
            "+callbacks.vocab._target_=keras.callbacks.LambdaCallback",
            "+callbacks.vocab.tokenizer_vocab=ok",
        )
    )
    (run,) = runs()
    params = run.data.params
    assert params["trainer.db_password"] == "***" and params["trainer.api_token"] == "***"
    files = [
        runs.client.download_artifacts(run.info.run_id, f"config/{n}.yaml", str(tmp_path))
        for n in ("config", "overrides")
    ]
    text = "".join(open(f).read() for f in files) + str(params) + str(run.data.tags)
    assert "hunter2" not in text and "s3cr3t-from-env" not in text
    assert "trainer.db_password=***" in text
    assert params["callbacks.vocab.tokenizer_vocab"] == "ok"  # a name part, not a substring, marks a secret


def test_a_checkpoint_loads_in_safe_mode_and_unsafe_files_are_refused(make_cfg, tmp_path):
    import keras

    from kerastrack.models.builders import load_model

    train(make_cfg("loss=multiclass_svm", "tracking=none", "callbacks=[default,model_checkpoint]"))
    model = load_model(tmp_path / "out" / "checkpoints" / "best.keras")
    assert model.predict(np.zeros((2, 8, 8, 1), "float32"), verbose=0).shape == (2, 10)

    inputs = keras.Input((3,))
    unsafe = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    unsafe.save(tmp_path / "unsafe.keras")
    with pytest.raises(ValueError, match="safe_mode"):
        load_model(tmp_path / "unsafe.keras")
