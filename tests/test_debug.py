"""The debugging presets (debug=fast|overfit|profile) and TensorBoard beside MLflow
(callbacks=[default,tensorboard]): what each preset sets, the line it says at the start, the
throwaway store, a loss driven to about 0, a profile's trace and the TensorBoard logs as the
run's artifact. The real config and real training in this process; one run of train.py."""

import logging

import mlflow
import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf

from kerastrack.config import debug
from kerastrack.pipeline import train
from kerastrack.tracking.store import resolve_tracking_uri
from kerastrack.upload import upload_dir
from tests.helpers import CONF, artifacts, multirun, options, run_train, steps


def _debug_cfg(make_cfg, tmp_path, store, experiment, *overrides):
    """The config as a user gets it with a preset (make_cfg's shrinking would override the
    preset's own epochs), recorded into the test's experiment and dirs."""
    return make_cfg(
        "trainer.verbose=0",
        f"paths.output_dir={tmp_path / 'out'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        f"tracking.tracking_uri={store}",
        f"tracking.experiment_name='{experiment}'",
        "tracking.log_model=false",
        *overrides,
        shrink=False,
    )


def test_debug_fast_takes_one_epoch_a_slice_no_model_and_a_store_in_the_run_dir_unless_the_command_line_names_one(
    make_cfg, tmp_path
):
    run_dir = tmp_path / "run"
    cfg = make_cfg("debug=fast", f"hydra.run.dir={run_dir}", shrink=False)
    assert (cfg.trainer.epochs, cfg.data.limit, cfg.tracking.log_model) == (1, 256, False)
    assert cfg.tracking.tracking_uri == f"sqlite:///{run_dir}/mlflow.db"
    assert debug.start_line(cfg, {"debug": "fast"}) == (
        f"debug=fast: trainer.epochs=1, data.limit=256, tracking.log_model=false, "
        f"tracking.tracking_uri=sqlite:///{run_dir}/mlflow.db"
    )
    tree = OmegaConf.create(debug.config_tree(cfg))
    assert tree.data.limit == 256 and "hydra" not in tree

    # What the command line says wins, and the line says what the run uses.
    cfg = make_cfg("debug=fast", "tracking.tracking_uri=sqlite:///kept.db", "data.limit=100", shrink=False)
    assert cfg.tracking.tracking_uri == "sqlite:///kept.db"
    line = debug.start_line(cfg, {"debug": "fast"})
    assert "data.limit=100," in line and line.endswith("tracking.tracking_uri=sqlite:///kept.db")

    cfg = make_cfg(shrink=False)  # no preset: nothing said, nothing printed
    assert debug.start_line(cfg, {}) is None and debug.config_tree(cfg) is None


def test_debug_overfit_and_profile_set_what_they_say(make_cfg):
    cfg = make_cfg("debug=overfit", shrink=False)
    assert list(cfg.callbacks) == ["terminate_on_nan"]  # no early stopping
    assert (cfg.data.limit, cfg.trainer.batch_size, cfg.trainer.epochs, cfg.trainer.monitor) == (32, 8, 100, "loss")
    assert debug.start_line(cfg, {"debug": "overfit"}) == (
        "debug=overfit: data.limit=32, trainer.batch_size=8, trainer.epochs=100, trainer.monitor=loss, "
        "callbacks=[terminate_on_nan]"
    )
    cfg = make_cfg("debug=profile", "callbacks=none", shrink=False)
    assert list(cfg.callbacks) == ["tensorboard"]  # added to whatever callbacks are chosen
    assert cfg.callbacks.tensorboard.profile_batch == [2, 4] and cfg.trainer.epochs == 2


def test_an_unknown_debug_preset_is_refused_as_any_unknown_option_with_the_options_listed():
    assert options("debug") == ["fast", "overfit", "profile"]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        with pytest.raises(MissingConfigException, match="Could not find 'debug/nope'") as refused:
            compose("train", overrides=["debug=nope"])
    assert all(name in str(refused.value) for name in ("fast", "overfit", "profile"))


def test_debug_overfit_drives_the_training_loss_to_about_zero_over_every_epoch(
    make_cfg, store, runs, request, tmp_path
):
    train(_debug_cfg(make_cfg, tmp_path, store, request.node.name[:200], "debug=overfit"))
    (run,) = runs()
    assert run.info.status == "FINISHED" and run.data.tags["debug"] == "overfit"
    assert len(steps(runs.client, run.info.run_id, "loss")) == 100  # nothing stopped it early
    assert run.data.metrics["best_loss"] < 0.1  # from 2.3 at the first epoch
    assert run.data.params["dataset.sizes"].startswith("train=32 ")


def test_debug_profile_logs_tensorflows_trace_with_the_tensorboard_logs_also_from_an_offline_run(
    make_cfg, store, request, tmp_path, caplog
):
    # Offline: the logs are spooled as a directory and uploaded later, as a live run logs them.
    caplog.set_level(logging.INFO, logger="kerastrack.pipeline")
    cfg = _debug_cfg(make_cfg, tmp_path, store, request.node.name[:200], "debug=profile", "tracking.offline=true")
    train(cfg)
    log_dir = tmp_path / "out" / "tensorboard"
    assert (
        f"debug=profile: trainer.epochs=2, callbacks.tensorboard.profile_batch=[2,4], "
        f"callbacks.tensorboard.log_dir={log_dir}" in caplog.messages
    )
    run_id = upload_dir(tmp_path / "out", log_progress=lambda line: None)
    found = artifacts(mlflow.MlflowClient(store), run_id, "tensorboard")
    assert any(p.startswith("tensorboard/train/plugins/profile/") and p.endswith(".xplane.pb") for p in found)
    assert any(p.startswith("tensorboard/validation/events.out.tfevents.") for p in found)


def sweep_job(cfg):
    """A sweep's job that only notes the store it would record into."""
    from hydra.core.hydra_config import HydraConfig

    with open(f"{HydraConfig.get().runtime.output_dir}/store.txt", "w") as f:
        f.write(cfg.tracking.tracking_uri)
    return 0.0


def test_debug_fast_sweep_puts_its_parent_and_its_jobs_into_one_store_in_the_sweep_dir(tmp_path, monkeypatch):
    with pytest.raises(SystemExit):  # the fake jobs open no run: the sweep ends in an Error line
        multirun(
            monkeypatch,
            tmp_path,
            sweep_job,
            "debug=fast",
            "optimizer=sgd,adam",
            "hydra.sweep.dir=D",
            "hydra.callbacks.mlflow_sweep.report=false",
        )
    expected = f"sqlite:///{tmp_path / 'D' / 'mlflow.db'}"
    assert [resolve_tracking_uri((tmp_path / "D" / n / "store.txt").read_text(), tmp_path) for n in "01"] == [
        expected
    ] * 2
    client = mlflow.MlflowClient(expected)
    (parent,) = client.search_runs([client.get_experiment_by_name("kerastrack").experiment_id])
    assert parent.data.tags["sweep.role"] == "parent"


@pytest.mark.slow
def test_debug_fast_says_what_it_changed_and_records_into_the_run_dir_with_its_tensorboard_logs(tmp_path):
    # $MLFLOW_TRACKING_URI (a team's server, say) does not get the throwaway run.
    elsewhere = tmp_path / "team.db"
    result = run_train(
        tmp_path,
        "debug=fast",
        "callbacks=[default,tensorboard]",
        "hydra.run.dir=outputs/r",
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{elsewhere}"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout + result.stderr
    line = "debug=fast: trainer.epochs=1, data.limit=256, tracking.log_model=false, "
    assert f"{line}tracking.tracking_uri=sqlite:///outputs/r/mlflow.db\n" in out
    assert "config:\nseed: 42\n" in out
    assert not elsewhere.exists() and not (tmp_path / "mlflow.db").exists()
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'outputs/r/mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("kerastrack").experiment_id])
    assert run.info.status == "FINISHED" and run.data.params["dataset.sizes"].startswith("train=256 ")
    assert steps(client, run.info.run_id, "val_loss") == [0]
    mlflow.set_tracking_uri(client.tracking_uri)
    assert mlflow.search_logged_models(experiment_ids=[run.info.experiment_id], output_format="list") == []
    assert any(p.startswith("tensorboard/train/events.out.tfevents.") for p in artifacts(client, run.info.run_id))
