"""The study presets in conf/experiment/: every swept combination is valid, and one trains.

Parametrized over the files, so a new preset is covered without touching this file.
"""

import itertools
import math
import re

import numpy as np
import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from kerastrack.config.checks import check_config
from kerastrack.data.files import DEBIAN_FASHION_MNIST
from kerastrack.pipeline import train
from tests.helpers import ROOT, options

EXPERIMENTS = options("experiment")
PARSER = OverridesParser.create()
# What each probe logs every epoch (a name ending in "/" is a prefix: one metric per layer).
PROBE_METRICS = {
    "kerastrack.callbacks.probes.GradientNorms": ("grad_norm/",),
    "kerastrack.callbacks.probes.WeightStats": ("near_zero_share", "weight_l1", "weight_l2"),
    "kerastrack.callbacks.probes.UpdateSize": ("update_per_step",),
    "kerastrack.callbacks.probes.Parameters": ("x",),
    "kerastrack.callbacks.probes.Trajectory": ("x", "y"),
}
# Quick: one epoch on a few samples. Without Debian's Fashion-MNIST, digits (bundled). The
# lab's problems (no data.limit) are small already.
QUICK = ["trainer.epochs=1", "data.limit=200"] + ([] if DEBIAN_FASHION_MNIST.is_dir() else ["data=digits"])


def quick(cfg):
    return QUICK if "limit" in cfg.data else ["trainer.epochs=1"]


def depends_on_seed(cfg):
    """Whether anything in a run depends on the seed: the lab's online problem starts at
    zero and reads its steps in order, and a walk on a surface starts at its given point
    (model=point), so seeds would repeat one run."""
    starts_fixed = cfg.model.get("kernel_initializer") == "zeros" or "start" in cfg.model
    return cfg.trainer.shuffle or not starts_fixed or "seed" in cfg.data


def sweep_combinations(cfg):
    """Every job of the preset's sweep: the cartesian product of hydra.sweeper.params."""
    params = cfg.hydra.sweeper.params or {}
    parsed = PARSER.parse_overrides([f"{key}={value}" for key, value in params.items()])
    values = [
        [f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()]
        if o.is_sweep_override()
        else [f"{o.get_key_element()}={o.value()}"]
        for o in parsed
    ]
    return [list(combo) for combo in itertools.product(*values)]


def test_every_study_in_the_studies_table_is_a_preset_with_its_page():
    table = (ROOT / "experiments" / "README.md").read_text()
    studies = re.findall(r"^\| \[(\w+)\]\(\1/\) \|.*`python train.py -m experiment=(\w+)`", table, re.MULTILINE)
    assert studies and all(name == preset for name, preset in studies), studies
    assert sorted(name for name, _ in studies) == EXPERIMENTS
    assert all((ROOT / "experiments" / name / "README.md").is_file() for name, _ in studies)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_combination_of_the_sweep_is_a_valid_config(experiment, make_cfg):
    cfg = make_cfg(f"experiment={experiment}")
    combos = sweep_combinations(cfg)
    # A study compares configurations, each over several seeds (if the seed changes anything).
    assert len(combos) > 1 and all(any(o.startswith("seed=") for o in c) or not depends_on_seed(cfg) for c in combos), (
        combos
    )
    for combo in combos:
        cfg = make_cfg(f"experiment={experiment}", *combo)
        check_config(cfg)
        for override in PARSER.parse_overrides(combo):  # each swept value reached the config
            key = override.get_key_element()
            chosen = cfg.hydra.runtime.choices.get(key)
            assert (chosen if chosen is not None else OmegaConf.select(cfg, key)) == override.value(), key


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_the_first_combination_trains_and_logs_its_probes(experiment, make_cfg, runs):
    first = sweep_combinations(make_cfg(f"experiment={experiment}"))[0]  # the first value of each param
    cfg = make_cfg(f"experiment={experiment}", *first)
    cfg = make_cfg(f"experiment={experiment}", *first, *quick(cfg))
    assert math.isfinite(train(cfg))
    (run,) = runs()
    assert run.info.status == "FINISHED", run.data.tags.get("error.message")
    logged = set(run.data.metrics)
    assert {"loss", "val_loss", "learning_rate", "epoch_time_s", f"best_{cfg.trainer.monitor}"} <= logged
    probes = [PROBE_METRICS[cb._target_] for cb in cfg.callbacks.values() if cb.get("_target_") in PROBE_METRICS]
    for name in (n for names in probes for n in names):
        found = [k for k in logged if k.startswith(name)] if name.endswith("/") else [k for k in logged if k == name]
        assert found, f"{experiment}: no {name} metric; logged {sorted(logged)}"
    if (
        any(p == PROBE_METRICS["kerastrack.callbacks.probes.GradientNorms"] for p in probes)
        and "hidden_units" in cfg.model
    ):
        # One norm per layer with a kernel: every hidden layer of the MLP and its output layer.
        assert len([k for k in logged if k.startswith("grad_norm/")]) == len(cfg.model.hidden_units) + 1


def _summarize():
    """experiments/summarize.py, a script beside the studies rather than a module of src/."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "summarize", Path(__file__).resolve().parent.parent / "experiments" / "summarize.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_summarize_gives_each_groups_interval_on_another_column_against_a_named_group():
    import json

    from kerastrack.report.build import build_report
    from kerastrack.tracking.query import RunRecord

    summarize = _summarize()
    # val_loss ranks 'cosine' best; test accuracy is compared against 'constant' as asked.
    test_accuracy = {"constant": [0.80, 0.82, 0.81], "cosine": [0.83, 0.86, 0.84], "step": [0.79, 0.83, 0.80]}
    val_loss = {"constant": 0.50, "cosine": 0.40, "step": 0.45}
    records = [
        RunRecord(
            run_id=f"{group}{seed}",
            name=f"{group}{seed}",
            status="FINISHED",
            params={"scheduler": group, "seed": str(seed)},
            tags={"sweep.values": json.dumps({"scheduler": group, "seed": str(seed)})},
            metrics={"test_accuracy": values[seed]},
            history={"val_loss": [(0, val_loss[group] + 0.01 * seed)], "loss": [(0, 1.0)]},
        )
        for group, values in test_accuracy.items()
        for seed in range(3)
    ]
    report = build_report(records)
    table = summarize.interval_table(records, report, "schedules", "test_accuracy", against="constant")
    rows = {line.split(" | ")[0].strip("| "): line for line in table.splitlines()[2:]}
    assert "reference" in rows["constant"]
    differences = [c - b for c, b in zip(test_accuracy["cosine"], test_accuracy["constant"])]
    low, high = scipy_t_interval(differences)
    assert f"{np.mean(differences):+.4f} [{low:+.4f}, {high:+.4f}] different" in rows["cosine"]
    assert "indistinguishable" in rows["step"]
    with pytest.raises(summarize.ConfigError, match="Received: --against='linear'"):
        summarize.interval_table(records, report, "schedules", "test_accuracy", against="linear")
    # Without --against: the best group by the monitor (cosine, lowest val_loss) is the reference.
    assert "| cosine | reference |" in summarize.interval_table(records, report, "schedules", "test_accuracy")


def scipy_t_interval(differences):
    from scipy import stats

    return stats.ttest_1samp(differences, 0).confidence_interval(0.95)
