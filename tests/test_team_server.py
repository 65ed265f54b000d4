"""The team setup of docs/team-server.md: ``mlflow server`` on PostgreSQL with a file artifact store.

A real PostgreSQL, a real ``mlflow server`` and a real parallel sweep (``python train.py -m
launcher=parallel``) writing to it over HTTP from several processes at once; then MLflow's
basic-auth app: anonymous writes refused, credentials from the environment accepted.
"""

import mlflow
import mlflow.server
import pytest

from tests.helpers import run_train
from tests.servers import mlflow_server, postgres  # noqa: F401  (postgres: a fixture)

pytestmark = [pytest.mark.slow, pytest.mark.extra("postgresql")]
OPTIMIZERS = ["sgd", "adam", "rmsprop", "momentum"]
EPOCHS = 3


@pytest.fixture(scope="module")
def team_server(postgres, tmp_path_factory):  # noqa: F811
    """``mlflow server`` on PostgreSQL database ``mlflow``, artifacts in a temporary directory."""
    with mlflow_server(postgres, tmp_path_factory.mktemp("team"), "mlflow") as server:
        yield server


def test_a_parallel_sweep_records_every_epoch_of_every_child(team_server, tmp_path):
    result = run_train(
        tmp_path,
        "-m",
        "launcher=parallel",
        f"optimizer={','.join(OPTIMIZERS)}",
        f"trainer.epochs={EPOCHS}",
        "tracking.log_model=false",
        "trainer.verbose=0",
        env={"MLFLOW_TRACKING_URI": team_server.url},
    )
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


# --- MLflow's basic-auth app: one server for both the refused and the authenticated case ---

ADMIN, ADMIN_PASSWORD = "admin", "admin-pw-for-tests"
USER, PASSWORD = "alice", "alice-pw-for-tests"
COLLEAGUE, COLLEAGUE_PASSWORD = "bob", "bob-pw-for-tests"


@pytest.fixture(scope="module")
def auth_server(postgres, tmp_path_factory):  # noqa: F811
    """``mlflow server --app-name basic-auth``, its user store in PostgreSQL, users alice and bob."""
    tmp = tmp_path_factory.mktemp("auth")
    # The ini of docs/team-server.md; the credential cache spares a PBKDF2 hash per request (each
    # epoch is several requests), a large share of the logged run's time on a busy machine.
    ini = tmp / "basic_auth.ini"
    ini.write_text(
        "[mlflow]\n"
        "default_permission = EDIT\n"
        f"database_uri = {postgres.create_database('mlflow_auth')}\n"
        f"admin_username = {ADMIN}\n"
        f"admin_password = {ADMIN_PASSWORD}\n"
        "auth_cache_ttl_seconds = 60\n"
    )
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": "csrf-key-for-tests"}
    with mlflow_server(postgres, tmp, "mlflow_tracking_auth", app_name="basic-auth", env=env) as server:
        with pytest.MonkeyPatch.context() as mp:
            credentials(mp, ADMIN, ADMIN_PASSWORD)
            users = mlflow.server.get_app_client("basic-auth", tracking_uri=server.url)
            users.create_user(USER, PASSWORD)
            users.create_user(COLLEAGUE, COLLEAGUE_PASSWORD)
        yield server


def credentials(monkeypatch, username=None, password=None):
    """Sets (or, with None, removes) the credentials MLflow's clients read from the environment."""
    for name, value in (("MLFLOW_TRACKING_USERNAME", username), ("MLFLOW_TRACKING_PASSWORD", password)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


def all_runs(server, monkeypatch):
    """Every run on the server, read as the admin."""
    credentials(monkeypatch, ADMIN, ADMIN_PASSWORD)
    client = mlflow.MlflowClient(server.url)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client, client.search_runs(ids)


def test_unauthenticated_writes_are_refused(auth_server, tmp_path, monkeypatch):
    credentials(monkeypatch)
    client = mlflow.MlflowClient(auth_server.url)
    with pytest.raises(mlflow.exceptions.MlflowException, match="401"):
        client.create_experiment("anonymous")
    with pytest.raises(mlflow.exceptions.MlflowException, match="401"):
        client.create_run("0")  # the Default experiment, which exists

    _, before = all_runs(auth_server, monkeypatch)
    result = run_train(
        tmp_path,
        "trainer.epochs=1",
        "tracking.log_model=false",
        "trainer.verbose=0",
        env={"MLFLOW_TRACKING_URI": auth_server.url},
    )
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ") and "MLFLOW_TRACKING_USERNAME" in error and "Traceback" not in result.stderr
    _, after = all_runs(auth_server, monkeypatch)
    assert len(after) == len(before), "a refused client recorded a run"
    assert not (tmp_path / "mlflow.db").exists(), "kerastrack fell back to a local store"


def test_credentials_from_the_environment_log_the_run(auth_server, tmp_path, monkeypatch):
    result = run_train(
        tmp_path,
        "trainer.epochs=2",
        "tracking.log_model=false",
        "trainer.verbose=0",
        "tracking.experiment_name=alice",
        env={
            "MLFLOW_TRACKING_URI": auth_server.url,
            "MLFLOW_TRACKING_USERNAME": USER,
            "MLFLOW_TRACKING_PASSWORD": PASSWORD,
        },
    )
    assert result.returncode == 0, result.stderr[-3000:]
    client, found = all_runs(auth_server, monkeypatch)
    (run,) = [r for r in found if r.info.experiment_id == client.get_experiment_by_name("alice").experiment_id]
    assert run.info.status == "FINISHED"
    assert run.info.user_id == USER  # the server records who logged it
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_loss")] == [0, 1]
    config = client.download_artifacts(run.info.run_id, "config/config.yaml", str(tmp_path))
    recorded = [*run.data.params.values(), *run.data.tags.values(), open(config).read()]
    assert not [text for text in recorded if PASSWORD in text], "the password was recorded"

    # default_permission = EDIT (docs/team-server.md's ini): a colleague may log into alice's experiment.
    credentials(monkeypatch, COLLEAGUE, COLLEAGUE_PASSWORD)
    colleague = mlflow.MlflowClient(auth_server.url)
    run_id = colleague.create_run(run.info.experiment_id).info.run_id
    colleague.log_metric(run_id, "val_loss", 0.5, step=0)
    colleague.set_terminated(run_id)


def test_a_direct_postgresql_store_works_with_either_driver_and_a_wrong_password_is_one_masked_error(postgres):  # noqa: F811
    from kerastrack.errors import ConfigError
    from kerastrack.tracking.store import check_scheme, open_store

    psycopg2_uri = postgres.create_database("direct")
    default_uri = psycopg2_uri.replace("postgresql+psycopg2://", "postgresql://")  # SQLAlchemy's default: psycopg 3
    for uri in (default_uri, psycopg2_uri):
        check_scheme(uri)
        client = open_store(uri)
        run = client.create_run(client.create_experiment(uri.split(":")[0]))
        client.log_metric(run.info.run_id, "loss", 0.5, step=1)
        assert [(m.step, m.value) for m in client.get_metric_history(run.info.run_id, "loss")] == [(1, 0.5)]
    wrong = default_uri.replace(f":{postgres.password}@", ":not-the-pg-password@")
    with pytest.raises(
        ConfigError,
        match=r"the MLflow store postgresql://kerastrack:\*\*\*@127.0.0.1:\d+/direct cannot be "
        r"reached \(.*password authentication failed",
    ) as refused:
        open_store(wrong)
    assert "not-the-pg-password" not in str(refused.value)
