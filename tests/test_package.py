"""kerastrack as a package a user installs: every import of src/ a declared dependency, and a
wheel in a fresh virtualenv outside the checkout running the folder example of examples/."""

import ast
import json
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tests.helpers import ROOT, store_client

SRC = ROOT / "src"


def _imported_top_names():
    """(top-level name, the module it came from) of every absolute import in src/; for the
    ``hydra_plugins`` namespace, the plugin's own name (each plugin is a distribution)."""
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module]
            else:
                continue
            for module in modules:
                parts = module.split(".")
                yield (".".join(parts[:2]) if parts[0] == "hydra_plugins" else parts[0]), path


def _normal(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda requirements: {_normal(re.split(r"[\s<>=!~\[;]", r, maxsplit=1)[0]) for r in requirements}  # noqa: E731
    extras = set().union(*(names(r) for r in project["optional-dependencies"].values()))
    return names(project["dependencies"]), extras


def test_every_module_that_src_imports_is_a_declared_dependency():
    declared, extras = _declared()
    distributions = metadata.packages_distributions()
    own = {"kerastrack", "hydra_plugins.kerastrack_optuna_sweeper", "hydra_plugins.kerastrack_joblib_launcher"}
    undeclared = {}
    for name, path in _imported_top_names():
        if name in sys.stdlib_module_names or name in own:
            continue
        top = name.split(".")[0]
        found = {_normal(d) for d in distributions.get(top, [])} - {"kerastrack"}
        if name.startswith("hydra_plugins."):  # a namespace: its plugin's distribution has the plugin's name
            found = {_normal(name.split(".")[1])}
        if not found & (declared | extras) and not (name == "ray" and "ray" in extras):
            undeclared.setdefault(name, path.relative_to(ROOT).as_posix())
    assert not undeclared, f"imported but not in pyproject.toml's dependencies: {undeclared}"


def test_the_package_data_holds_every_config_yaml():
    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    conf = SRC / "kerastrack" / "conf"
    matched = {p for pattern in spec["kerastrack.conf"] for p in conf.glob(pattern)}
    assert matched == set(conf.rglob("*.yaml")), sorted(map(str, set(conf.rglob("*.yaml")) - matched))


def _wheel(tmp_path):
    """A wheel built from a copy of the checkout's package files (the build leaves its
    ``build/`` and egg-info there, not in the checkout)."""
    tree = tmp_path / "tree"
    shutil.copytree(SRC, tree / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree)
    # No build isolation: the test environment's setuptools builds it, with no download.
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", tmp_path, tree],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("kerastrack-*.whl")
    return wheel


def _fresh_venv(tmp_path, wheel):
    """A new virtualenv with the wheel installed. Its dependencies come from this test
    environment's site-packages through a .pth line (installing TensorFlow and the rest again
    would download ~1 GB); .pth files there are not read, so this checkout's editable
    kerastrack stays out of it."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    (purelib,) = venv.glob("lib/python*/site-packages")
    (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", venv / "bin" / "python", "install", "-q", "--no-deps", wheel],
        check=True,
        capture_output=True,
    )
    return venv


@pytest.mark.slow
def test_a_wheel_in_a_fresh_virtualenv_outside_the_checkout_runs_the_folder_example(tmp_path):
    venv = _fresh_venv(tmp_path, _wheel(tmp_path))
    where = subprocess.run(
        [
            venv / "bin" / "python",
            "-c",
            "import kerastrack.conf, json; print(json.dumps(list(kerastrack.conf.__path__)))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert where.returncode == 0, where.stderr[-2000:]
    assert all(Path(p).is_relative_to(venv) for p in json.loads(where.stdout)), where.stdout

    # Only the folder says where runs go: the test process's MLFLOW_* variables are dropped.
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    project = tmp_path / "project"
    shutil.copytree(ROOT / "examples" / "own_code", project)
    # The example's preset as its README runs it, shrunk: 2 epochs, one seed (two jobs).
    args = ["--config-dir", "conf", "experiment=moons_optimizers", "trainer.epochs=2", "hydra.sweeper.params.seed=0"]
    done = subprocess.run(
        [venv / "bin" / "kerastrack", *args], cwd=project, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr

    client = store_client(project)
    runs = client.search_runs([client.get_experiment_by_name("kerastrack").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(runs) == 3 and {r.info.status for r in runs} == {"FINISHED"}
    # A sweep names its children by the swept values; the groups chosen are their tags.
    assert sorted(r.info.run_name for r in children) == ["optimizer=adam,seed=0", "optimizer=sgd,seed=0"]
    for run in children:
        assert run.data.tags["model"] == "wide_relu" and run.data.tags["data"] == "moons"
        assert run.data.params["model._target_"] == "my_models.wide_relu"
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1]
