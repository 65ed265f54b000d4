"""Hyperparameter search: the kerastrack_optuna sweeper and PruningCallback, on real Optuna
studies and real Hydra. One slow test runs `python train.py -m hparams_search=optuna`."""

import math
import re
import sys
from types import SimpleNamespace

import hydra
import optuna
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.plugins import Plugins
from hydra.errors import CompactHydraException
from hydra.plugins.sweeper import Sweeper
from hydra.utils import instantiate
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from kerastrack.callbacks.pruning import PruningCallback
from tests.helpers import CONF, run_train, store_client

# Hydra's plugin scan executes every plugin module again, replacing its classes: scan
# first, so that the names imported here are the ones the sweeper uses.
Plugins.instance()
from hydra_plugins.kerastrack_optuna_sweeper.optuna_sweeper import (  # noqa: E402
    KerastrackOptunaSweeper,
    SearchConfigError,
    absolute_storage,
    default_study_name,
    format_value,
    search_space,
)

# `hparams_search=optuna` once conf/train.yaml lists the group (`- hparams_search: null`);
# until then the group is added with `+`.
SEARCH = (
    "hparams_search=optuna" if "- hparams_search:" in (CONF / "train.yaml").read_text() else "+hparams_search=optuna"
)
# A space whose trials end all three ways: 0.1 learns (COMPLETE), 1e-6 falls behind it
# and is pruned at epoch 1 (PRUNED), 1e30 diverges at epoch 0 (FAIL). With seed 10 the
# sampler draws 0.1, 0.1, 1e-6, 1e30 first.
SPACE = [
    "optimizer=sgd",
    "optimizer.learning_rate=choice(0.1, 1e-6, 1e30)",
    "trainer.batch_size=64",
    "scheduler=constant",
    "hydra.sweeper.seed=10",
    "hydra.sweeper.pruner.n_startup_trials=1",
    "hydra.sweeper.pruner.n_warmup_steps=1",
]
EXPECTED = {0.1: "COMPLETE", 1e-6: "PRUNED", 1e30: "FAIL"}


def compose_search(*overrides):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("train", overrides=[SEARCH, *overrides], return_hydra_config=True)


def study_trials(storage):
    (name,) = optuna.get_all_study_names(storage)  # one study, however often the command ran
    return name, optuna.load_study(study_name=name, storage=storage).get_trials()


def test_hydra_finds_the_plugin_and_the_preset_selects_it():
    assert KerastrackOptunaSweeper in Plugins.instance().discover(Sweeper)
    sweeper = compose_search().hydra.sweeper
    assert sweeper._target_.endswith("KerastrackOptunaSweeper")
    assert set(sweeper.params) == {"optimizer", "optimizer.learning_rate", "trainer.batch_size", "scheduler"}


@pytest.mark.parametrize(
    "line, expected",
    [
        ("x=choice(sgd, momentum, adam)", CategoricalDistribution(["sgd", "momentum", "adam"])),
        ("x=sgd,adam", CategoricalDistribution(["sgd", "adam"])),
        ("x=interval(0, 0.5)", FloatDistribution(0, 0.5)),
        ("x=tag(log, interval(1e-4, 1e-1))", FloatDistribution(1e-4, 1e-1, log=True)),
        ("x=range(16, 128, step=16)", IntDistribution(16, 112, step=16)),  # stop excluded, as in Hydra
        ("x=range(0, 1, step=0.25)", FloatDistribution(0, 0.75, step=0.25)),
        ("x=shuffle(range(1, 4))", IntDistribution(1, 3)),  # the sampler draws at random anyway
        ("x=shuffle(b, a, c)", CategoricalDistribution(["b", "a", "c"])),  # fixed: a resumed study needs the same space
    ],
)
def test_search_space_reads_hydras_sweep_syntax(line, expected):
    assert search_space([line]) == ({"x": expected}, {})


def test_preset_params_are_read_as_override_strings():
    params = OmegaConf.create(
        {
            "optimizer": "choice(sgd, adam)",
            "trainer.validation_split": None,
            "model.hidden_units": [64, 64],
            "trainer.epochs": 5,
        }
    )
    sweeper = KerastrackOptunaSweeper(
        n_trials=4, n_jobs=1, direction=None, storage=None, study_name=None, seed=None, pruner=None, params=params
    )
    assert sweeper.params == [
        "optimizer=choice(sgd, adam)",
        "trainer.validation_split=null",
        "model.hidden_units=[64,64]",
        "trainer.epochs=5",
    ]


def test_plain_values_are_fixed_and_a_later_line_wins():
    # The preset's params first, then the command line: a fixed optimizer=sgd on the
    # command line replaces the preset's choice, a sweep there replaces a fixed value.
    space, fixed = search_space(
        [
            "optimizer=choice(sgd, adam)",
            "trainer.epochs=5",
            "model.hidden_units=[64,64]",
            "optimizer=sgd",
            "trainer.epochs=choice(1, 2)",
        ]
    )
    assert space == {"trainer.epochs": CategoricalDistribution([1, 2])}
    assert fixed == {"optimizer": "optimizer=sgd", "model.hidden_units": "model.hidden_units=[64,64]"}


@pytest.mark.parametrize(
    "line",
    [
        "x=interval(1e-4",  # does not parse
        "x=tag(log, interval(0, 1))",  # log scale from 0
        "x=interval(1, 0)",  # low > high
        "x=range(5, 1)",  # empty
        "x=glob(*)",  # a sweep Optuna has no distribution for
    ],
)
def test_a_bad_search_space_is_refused_naming_the_value(line):
    with pytest.raises(SearchConfigError, match=re.escape(f"Received: {line}")) as info:
        search_space([line])
    assert "choice(a, b, ...), interval(low, high)" in str(info.value)
    assert isinstance(info.value, CompactHydraException)  # Hydra prints the message, no traceback


@pytest.mark.parametrize(
    "override, message",
    [
        (
            "hydra.sweeper.n_trials=0",
            "hydra.sweeper.n_trials must be an integer >= 1. Received: hydra.sweeper.n_trials=0",
        ),
        ("hydra.sweeper.n_jobs=0", "hydra.sweeper.n_jobs must be an integer >= 1. Received: hydra.sweeper.n_jobs=0"),
        (
            "hydra.sweeper.direction=up",
            "hydra.sweeper.direction must be minimize, maximize or null (from trainer.monitor). "
            "Received: hydra.sweeper.direction=up",
        ),
    ],
)
def test_bad_sweeper_settings_are_refused_before_any_trial(override, message):
    cfg = compose_search(override)
    with pytest.raises(SearchConfigError, match=re.escape(message)):
        instantiate(cfg.hydra.sweeper).setup(hydra_context=None, task_function=None, config=cfg)


@pytest.mark.parametrize("monitor, direction", [("val_loss", "minimize"), ("val_accuracy", "maximize")])
def test_direction_storage_and_study_name_follow_the_command(monitor, direction, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = compose_search(f"trainer.monitor={monitor}", "trainer.epochs=3")
    sweeper = instantiate(cfg.hydra.sweeper)
    sweeper.setup(hydra_context=None, task_function=None, config=cfg)
    assert sweeper.direction == direction
    assert sweeper.storage == f"sqlite:///{tmp_path / 'optuna.db'}"
    assert sweeper.study_name == f"hparams_search=optuna trainer.epochs=3 trainer.monitor={monitor}"


def test_study_name_and_storage_helpers(tmp_path):
    # The same overrides in another order, or with `+`, are the same command.
    assert default_study_name(["b=2", "+a=1"]) == default_study_name(["a=1", "b=2"]) == "a=1 b=2"
    assert absolute_storage("sqlite:///optuna.db", tmp_path) == f"sqlite:///{tmp_path / 'optuna.db'}"
    for unchanged in ("sqlite:////abs/o.db", "sqlite:///:memory:", "postgresql://h/db", None):
        assert absolute_storage(unchanged, tmp_path) == unchanged


def test_a_trials_overrides_reach_the_job_unchanged(tmp_path):
    # Storage paths and study names with quotes, spaces and grammar characters must arrive
    # as they are; the trial's learning rate must win over the optimizer's own.
    storage = f'sqlite:///{tmp_path}/it\'s a "dir", =[1]{{2}} $x é\\/optuna.db'
    pruner = {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 1, "n_warmup_steps": 0}
    sweeper = KerastrackOptunaSweeper(4, 1, None, storage, "+a=1 b='x y'", None, pruner, None)
    trial = SimpleNamespace(
        number=7,
        params={
            "optimizer": "momentum",
            "optimizer.learning_rate": 0.0123,
            "tracking.run_name": "null",
            "model.activation": "relu",
        },
    )
    overrides = [f"{k}={format_value(v)}" for k, v in trial.params.items()] + sweeper._pruning_overrides(trial)
    cfg = compose_search("trainer.monitor=val_accuracy", *overrides)
    assert cfg.optimizer.learning_rate == 0.0123 and cfg.optimizer.momentum == 0.9  # momentum.yaml has 0.01
    assert cfg.tracking.run_name == "null" and cfg.model.activation == "relu"
    node = cfg.callbacks.optuna_pruning
    assert (node.storage, node.study_name, node.trial_number, node.monitor) == (
        storage,
        "+a=1 b='x y'",
        7,
        "val_accuracy",
    )
    callback = instantiate(node)
    assert isinstance(callback, PruningCallback) and isinstance(callback.pruner, optuna.pruners.MedianPruner)


def test_no_pruning_without_a_pruner_or_a_storage():
    assert KerastrackOptunaSweeper(4, 1, None, "sqlite:///o.db", "s", None, None, None)._pruning_overrides(None) == []
    assert KerastrackOptunaSweeper(4, 1, None, None, "s", None, {}, None)._pruning_overrides(None) == []


def test_pruning_callback_prunes_a_trial_behind_the_median(tmp_path):
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=2)
    study = optuna.create_study(storage=storage, study_name="s", pruner=pruner)
    for curve in ([1.0, 0.6, 0.4], [1.0, 0.5, 0.3]):  # median 0.35 at epoch 2
        study.add_trial(optuna.trial.create_trial(value=curve[-1], intermediate_values=dict(enumerate(curve))))
    good, bad = study.ask(), study.ask()
    callbacks = {t.number: PruningCallback(storage, "s", t.number, "val_loss", pruner) for t in (good, bad)}
    for callback in callbacks.values():
        callback.on_train_begin()
        callback.on_epoch_end(0, {"val_loss": 1.2})
        callback.on_epoch_end(1, {"val_loss": 1.1})  # behind, but still warming up
    callbacks[good.number].on_epoch_end(2, {"val_loss": 0.2})
    with pytest.raises(optuna.TrialPruned):
        callbacks[bad.number].on_epoch_end(2, {"val_loss": 1.0})
    stored = study.get_trials()
    assert stored[bad.number].intermediate_values == {0: 1.2, 1: 1.1, 2: 1.0}
    assert stored[bad.number].user_attrs == {"pruned": True}  # how the sweeper tells PRUNED from FAIL
    assert stored[good.number].intermediate_values == {0: 1.2, 1: 1.1, 2: 0.2} and stored[good.number].user_attrs == {}
    # A second fit starts over from storage: a finished trial cannot be reported to.
    study.tell(good, 0.2)
    callbacks[good.number].on_train_begin()
    with pytest.raises(RuntimeError, match="finished"):
        callbacks[good.number].on_epoch_end(3, {"val_loss": 0.1})


def fake_train(cfg):
    """A job without TensorFlow: val_loss falls faster for larger rates; NaN above 1."""
    rate = cfg.optimizer.learning_rate
    if rate > 1:
        return math.nan  # what train.py returns for a failed job in a multirun
    callback = instantiate(cfg.callbacks.optuna_pruning)
    callback.on_train_begin()
    losses = [1 / (1 + 100 * rate * (epoch + 1)) for epoch in range(cfg.trainer.epochs)]
    for epoch, loss in enumerate(losses):
        callback.on_epoch_end(epoch, {"val_loss": loss})  # a prune raises out of the job
    return min(losses)


def test_a_search_in_process_ends_trials_right_and_resumes(tmp_path, monkeypatch, caplog):
    # Real Hydra (composition, basic launcher, the trial overrides), real Optuna storage and
    # pruning; only the training is fake.
    monkeypatch.chdir(tmp_path)
    # Hydra leaves logging alone (pytest's capture stays in place).
    common = [
        "-m",
        SEARCH,
        "tracking=none",
        "trainer.epochs=3",
        "hydra/job_logging=none",
        "hydra/hydra_logging=none",
        *SPACE,
    ]
    main = hydra.main(config_path=str(CONF), config_name="train", version_base="1.3")(fake_train)
    monkeypatch.setattr(sys, "argv", ["train.py", *common, "hydra.sweeper.n_trials=4", "hydra.sweep.dir=multirun/a"])
    main()
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    name, trials = study_trials(storage)
    assert [t.params["optimizer.learning_rate"] for t in trials] == [0.1, 0.1, 1e-6, 1e30]  # seed 10
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED", "FAIL"]
    assert trials[2].intermediate_values.keys() == {0, 1} and trials[2].user_attrs == {"pruned": True}
    best = OmegaConf.load(tmp_path / "multirun/a/optuna_best.yaml")
    assert best.best_trial == 0 and best.best_params["optimizer.learning_rate"] == 0.1
    assert best.best_value == pytest.approx(1 / 31) and best.trials == {"COMPLETE": 2, "PRUNED": 1, "FAIL": 1}

    # The same command with more trials, two at a time, into the same sweep dir: the same
    # study, 6 trials in all, the new ones in job dirs of their own.
    first = (tmp_path / "multirun/a/0/.hydra/overrides.yaml").read_text()
    monkeypatch.setattr(
        sys,
        "argv",
        ["train.py", *common, "hydra.sweeper.n_trials=6", "hydra.sweeper.n_jobs=2", "hydra.sweep.dir=multirun/a"],
    )
    with caplog.at_level("INFO"):
        main()
    assert sorted(int(p.name) for p in (tmp_path / "multirun/a").iterdir() if p.name.isdigit()) == list(range(6))
    assert (tmp_path / "multirun/a/0/.hydra/overrides.yaml").read_text() == first
    assert "Launching 2 jobs locally" in caplog.text
    assert study_trials(storage)[0] == name
    trials = study_trials(storage)[1]
    assert len(trials) == 6
    assert [t.state.name for t in trials] == [EXPECTED[t.params["optimizer.learning_rate"]] for t in trials]


@pytest.mark.slow
def test_train_py_search_records_every_trial_in_optuna_and_mlflow(tmp_path):
    quick = [
        "trainer.epochs=3",
        "tracking.log_model=false",
        "trainer.verbose=0",
        "hydra.callbacks.mlflow_sweep.report=false",
    ]
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    client = store_client(tmp_path)
    seen = 0
    for n_trials in (4, 6):  # then the same command again: it resumes the study
        result = run_train(tmp_path, "-m", SEARCH, f"hydra.sweeper.n_trials={n_trials}", *SPACE, *quick)
        _, trials = study_trials(storage)
        assert len(trials) == n_trials
        states = [t.state.name for t in trials]
        assert states == [EXPECTED[t.params["optimizer.learning_rate"]] for t in trials]
        n_failed = states[seen:].count("FAIL")
        # The sweep callback exits 1 when a job failed; the search itself went on.
        assert result.returncode == (1 if n_failed else 0), result.stderr[-3000:]
        assert n_failed == 0 or f"Error: {n_failed} of {n_trials - seen} jobs failed" in result.stderr
        runs = client.search_runs(
            [client.get_experiment_by_name("kerastrack").experiment_id], order_by=["attributes.start_time DESC"]
        )
        parent = next(r for r in runs if r.data.tags.get("sweep.role") == "parent")
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        run_of = {int(r.data.params["callbacks.optuna_pruning.trial_number"]): r for r in children}
        assert sorted(run_of) == list(range(seen, n_trials))  # one child run per new trial
        for trial in trials[seen:]:
            run = run_of[trial.number]
            assert run.info.status == {"COMPLETE": "FINISHED", "PRUNED": "KILLED", "FAIL": "FAILED"}[trial.state.name]
            assert (run.data.tags.get("pruned") == "true") == (trial.state.name == "PRUNED")
        seen = n_trials
    assert sum(r.data.tags.get("sweep.role") == "parent" for r in runs) == 2
    assert {"COMPLETE", "PRUNED", "FAIL"} <= set(states)
