"""Shared fixtures: the real config, composed and shrunk, and a throwaway MLflow store."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

import kerastrack  # noqa: F401  (registers the kt.* resolvers)

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"


def options(group):
    """Every option of a config group: one YAML file each."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


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
            base += [f"tracking.tracking_uri={store}", f"tracking.experiment_name='{experiment}'", "tracking.log_model=false"]
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
