"""The team setup of the README: ``mlflow server`` on PostgreSQL with a file artifact store.

A real PostgreSQL, a real ``mlflow server`` and a real parallel sweep (``python train.py -m
launcher=parallel``) writing to it over HTTP from several processes at once.
"""

import mlflow
import pytest

from tests.servers import mlflow_server, postgres, run_train  # noqa: F401  (postgres: a fixture)

pytestmark = pytest.mark.slow
OPTIMIZERS = ["sgd", "adam", "rmsprop", "momentum"]
EPOCHS = 3


@pytest.fixture(scope="module")
def team_server(postgres, tmp_path_factory):  # noqa: F811
    with mlflow_server(postgres, tmp_path_factory.mktemp("team"), "mlflow") as server:
        yield server


def test_a_parallel_sweep_records_every_epoch_of_every_child(team_server, tmp_path):
    result = run_train(tmp_path, "-m", "launcher=parallel", f"optimizer={','.join(OPTIMIZERS)}",
                       f"trainer.epochs={EPOCHS}", "tracking.log_model=false", "trainer.verbose=0",
                       env={"MLFLOW_TRACKING_URI": team_server.url})
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "mlflow.db").exists(), "runs went to a local store, not the server"

    client = mlflow.MlflowClient(team_server.url)
    found = client.search_runs([client.get_experiment_by_name("kerastrack").experiment_id])
    (parent,) = [r for r in found if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in found if r is not parent]
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.tags["optimizer"] for r in children) == sorted(OPTIMIZERS)
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        for key in ("loss", "val_loss", "learning_rate"):
            steps = [m.step for m in client.get_metric_history(child.info.run_id, key)]
            assert sorted(steps) == list(range(EPOCHS)), (child.info.run_name, key)

    # Artifacts went through the server into its file store, not into the launch directory.
    child = children[0]
    plots = {a.path for a in client.list_artifacts(child.info.run_id, "plots")}
    assert "plots/learning_curves.png" in plots
    on_disk = team_server.artifacts_destination / child.info.experiment_id / child.info.run_id / "artifacts"
    assert (on_disk / "plots" / "learning_curves.png").stat().st_size > 0
    assert not (tmp_path / "mlartifacts").exists() and not (tmp_path / "mlruns").exists()
