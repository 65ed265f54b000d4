"""Shared fixtures: the real config, composed and shrunk, and a throwaway MLflow store.

Also the ``extra`` marker: ``@pytest.mark.extra("ray")`` on a test that needs a part outside
requirements.txt, which then skips without it, saying how to install it (see ``EXTRAS``).

Plain helpers that tests import (paths, ``run_train``, store readers) are in tests/helpers.py:
nothing imports from this file.
"""

import importlib.util
import os

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

import kerastrack  # noqa: F401  (registers the kt.* resolvers)
from tests.helpers import CHROMIUM, CONF


def _ray_launcher():
    try:
        return all(importlib.util.find_spec(m) for m in ("ray", "hydra_plugins.hydra_ray_launcher"))
    except ModuleNotFoundError:  # no hydra_plugins package at all
        return False


def _postgresql():
    from tests.servers import postgres_bin

    return postgres_bin() is not None


def _fashion_mnist():
    from kerastrack.data.files import DEBIAN_FASHION_MNIST

    return DEBIAN_FASHION_MNIST.is_dir()


# The parts outside requirements.txt that some tests need: a check that the part is here, and
# how to install it. A newcomer's `pytest` skips those tests; `.ci/run` installs the parts and
# runs again the tests that skipped for want of one.
EXTRAS = {
    "ray": (_ray_launcher, "the Ray launcher: pip install -r requirements-ray.txt"),
    "postgresql": (_postgresql, "PostgreSQL: apt-get install postgresql"),
    "chromium": (lambda: os.access(CHROMIUM, os.X_OK), f"{CHROMIUM}: apt-get install chromium"),
    "fashion_mnist": (_fashion_mnist, "Debian's Fashion-MNIST: apt-get install dataset-fashion-mnist"),
}


def pytest_collection_modifyitems(config, items):
    """Skips the tests marked ``extra`` whose part is missing, naming what to install.

    Each such test also carries the property ``missing_extra`` (in ``--junitxml`` reports), by
    which `.ci/run` finds the tests to run again once the extras are installed.
    """
    present = {}
    for item in items:
        for mark in item.iter_markers("extra"):
            (name,) = mark.args
            if name not in EXTRAS:
                raise pytest.UsageError(f"{item.nodeid}: unknown extra {name!r}; known: {', '.join(EXTRAS)}")
            check, install = EXTRAS[name]
            if name not in present:
                present[name] = check()
            if not present[name]:
                item.add_marker(pytest.mark.skip(reason=f"needs {install} (outside requirements.txt)"))
                item.user_properties.append(("missing_extra", name))


@pytest.fixture(scope="session")
def store(tmp_path_factory):
    """One SQLite store for the session, created once (table creation costs ~1 s)."""
    from kerastrack.tracking import open_store

    uri = f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}"
    open_store(uri)  # its artifacts go beside it, not into the working directory
    return uri


@pytest.fixture
def make_cfg(tmp_path, store, request):
    """Composes conf/train.yaml with overrides, shrunk for tests.

    Each test logs to its own experiment (named after the test) in the session store, and
    writes files under tmp_path.
    """
    experiment = request.node.name[:200]

    def make(*overrides, shrink=True):
        base = ["trainer.epochs=1", "trainer.verbose=0", f"paths.output_dir={tmp_path / 'out'}"] if shrink else []
        if shrink and "tracking=none" not in overrides:
            base += [
                f"tracking.tracking_uri={store}",
                f"tracking.experiment_name='{experiment}'",
                "tracking.log_model=false",
            ]
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose("train", overrides=[*base, *overrides], return_hydra_config=True)
        HydraConfig.instance().set_config(cfg)
        return cfg

    yield make
    HydraConfig.instance().cfg = None


@pytest.fixture
def runs(store, request):
    """The runs recorded by this test, newest first."""
    import mlflow

    client = mlflow.MlflowClient(store)

    def get():
        exp = client.get_experiment_by_name(request.node.name[:200])
        return [] if exp is None else client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"])

    get.client = client
    return get
