"""What a run's numbers depend on, in the form MLflow records: the config as flat params,
the git state of the code, the library versions."""

import contextlib
import platform
import subprocess
from importlib.metadata import PackageNotFoundError, version

from omegaconf import OmegaConf


def flatten_config(cfg, prefix=""):
    """Flattens a config to dotted keys with string values, e.g. {"optimizer.beta_1": "0.9"},
    within MLflow's limits on param keys and values."""
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH  # mlflow: deferred, see store.py

    flat = {}
    node = cfg if isinstance(cfg, (dict, list)) else OmegaConf.to_container(cfg, resolve=True)
    for key, value in node.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten_config(value, f"{name}."))
        elif len(name) <= MAX_ENTITY_KEY_LENGTH:
            flat[name] = str(value)[:MAX_PARAM_VAL_LENGTH]
    return flat


def git_state(directory):
    """The git commit, dirtiness and diff of ``directory``'s repository, or {} if none."""

    def git(*args):
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, timeout=10, check=True
        ).stdout

    try:
        commit = git("rev-parse", "HEAD").strip()
        dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
        return {"commit": commit, "dirty": dirty, "diff": git("diff", "HEAD") if dirty else ""}
    except (OSError, subprocess.SubprocessError):
        return {}


def library_versions():
    """Versions of the libraries a run's numbers depend on."""
    versions = {"python": platform.python_version()}
    for name in ("tensorflow", "keras", "mlflow", "hydra-core", "numpy", "scikit-learn", "kerastrack"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    return versions
