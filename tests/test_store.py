"""The MLflow store: created all or nothing, a half-created one is named, a deleted
experiment is refused before anything runs."""

import pytest

from kerastrack.errors import ConfigError
from kerastrack.pipeline import train
from kerastrack.tracking import open_store


def test_an_interrupt_while_a_new_store_is_created_leaves_no_store_and_the_next_open_works(tmp_path, monkeypatch):
    import mlflow.store.db.utils as db_utils

    upgrade = db_utils._upgrade_db

    def interrupted_between_tables_and_migrations(engine):
        raise KeyboardInterrupt("Ctrl-C while the tables are made")

    monkeypatch.setattr(db_utils, "_upgrade_db", interrupted_between_tables_and_migrations)
    database = tmp_path / "mlflow.db"
    with pytest.raises(KeyboardInterrupt):
        open_store(f"sqlite:///{database}")
    assert not database.exists()  # not half made: nothing
    assert [p.name for p in tmp_path.iterdir()] == ["mlflow.db.lock"]

    monkeypatch.setattr(db_utils, "_upgrade_db", upgrade)
    client = open_store(f"sqlite:///{database}")
    assert [e.name for e in client.search_experiments()] == ["Default"]


def test_a_leftover_of_a_store_killed_while_it_was_created_is_replaced(tmp_path):
    (tmp_path / ".mlflow.db.creating-123-abc").write_bytes(b"half a database")  # what kill -9 leaves
    open_store(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlflow.db.lock"]


def test_a_store_half_created_by_an_older_version_is_one_error_saying_what_to_do(tmp_path, monkeypatch):
    # What an interrupt in the middle of MLflow's migrations used to leave: the store is
    # made in place (as MLflow does) and Ctrl-C lands after 30 of the migrations' statements.
    import mlflow
    import mlflow.store.db.utils as db_utils
    import sqlalchemy

    upgrade = db_utils._upgrade_db

    def interrupted_migrations(engine):
        count = []

        def statement(*args):
            count.append(1)
            if len(count) == 30:
                raise KeyboardInterrupt

        sqlalchemy.event.listen(sqlalchemy.engine.Engine, "before_cursor_execute", statement)
        try:
            upgrade(engine)
        finally:
            sqlalchemy.event.remove(sqlalchemy.engine.Engine, "before_cursor_execute", statement)

    database = tmp_path / "mlflow.db"
    monkeypatch.setattr(db_utils, "_upgrade_db", interrupted_migrations)
    with pytest.raises(KeyboardInterrupt):
        mlflow.MlflowClient(f"sqlite:///{database}").search_experiments()
    monkeypatch.setattr(db_utils, "_upgrade_db", upgrade)
    with pytest.raises(ConfigError, match=rf"the MLflow store {database} was left half-created .*\(rm {database}\)"):
        open_store(f"sqlite:///{database}")


def test_a_deleted_experiment_is_refused_before_any_run(make_cfg, runs, store):
    import mlflow

    client = mlflow.MlflowClient(store)
    experiment_id = client.create_experiment("trashed")
    client.delete_experiment(experiment_id)
    with pytest.raises(
        ConfigError,
        match=rf"tracking.experiment_name: the experiment 'trashed' was deleted in MLflow "
        rf".*--experiment-id {experiment_id}.*Received: tracking.experiment_name=trashed",
    ):
        train(make_cfg("tracking.experiment_name=trashed"))
    assert client.search_runs([experiment_id], run_view_type=3) == []


def _copy_of_a_store(store, tmp_path, name="mlflow.db"):
    """A store of its own for one test: a copy of the session's (MLflow caches a store per URI)."""
    import shutil

    from kerastrack.tracking.store import sqlite_path

    database = tmp_path / name
    shutil.copy(sqlite_path(store), database)
    return database


@pytest.fixture
def immutable():
    """``chattr +i`` on a path, undone after the test; skips where chattr cannot (as root, chmod does not stop writes)."""
    import shutil
    import subprocess

    made = []

    def make(path):
        if (
            shutil.which("chattr") is None
            or subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode
        ):
            pytest.skip("needs chattr +i on this file system (as root, a read-only mode does not stop writes)")
        made.append(path)

    yield make
    for path in made:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_a_truncated_store_is_one_error_naming_the_file_and_how_to_recover_it(store, tmp_path):
    database = _copy_of_a_store(store, tmp_path)
    with open(database, "r+b") as file:
        file.truncate(database.stat().st_size // 2)
    with pytest.raises(
        ConfigError,
        match=rf"the MLflow store {database} is damaged \(database disk image is malformed\)"
        rf".*Restore it from a copy.*sqlite3 {database} \.recover.*tracking\.tracking_uri=",
    ):
        open_store(f"sqlite:///{database}")


def test_a_file_that_is_no_database_is_refused_as_damaged(tmp_path):
    database = tmp_path / "mlflow.db"
    database.write_text("not a database, but long enough to have a header of sorts " * 20)
    with pytest.raises(ConfigError, match=r"is damaged \(file is not a database\)"):
        open_store(f"sqlite:///{database}")


def test_an_immutable_store_is_refused_when_it_opens_not_at_the_runs_first_write(store, tmp_path, immutable):
    database = _copy_of_a_store(store, tmp_path)
    immutable(database)
    with pytest.raises(
        ConfigError,
        match=rf"the MLflow store {database} cannot be written \(attempt to write a readonly "
        rf"database\).*chattr -i.*Received: tracking.tracking_uri=sqlite:///{database}",
    ):
        open_store(f"sqlite:///{database}")


def test_a_store_in_a_folder_that_cannot_be_written_is_refused_for_old_and_new_stores(store, tmp_path, immutable):
    folder = tmp_path / "frozen"
    folder.mkdir()
    database = _copy_of_a_store(store, folder)
    immutable(folder)  # SQLite cannot write its journal beside the file
    with pytest.raises(
        ConfigError, match=rf"the MLflow store {database} cannot be written \(unable to open database file\)"
    ):
        open_store(f"sqlite:///{database}")
    with pytest.raises(
        ConfigError, match=rf"the MLflow store {folder / 'new.db'} cannot be written \(.*Operation not permitted"
    ):
        open_store(f"sqlite:///{folder / 'new.db'}")


@pytest.fixture
def locked(tmp_path):
    """Holds a store locked (``BEGIN EXCLUSIVE``, as a sqlite3 shell in a transaction does) for ``seconds``."""
    import sqlite3
    import threading

    held = []

    def lock(database, seconds):
        connection = sqlite3.connect(database, isolation_level=None, check_same_thread=False)
        connection.execute("BEGIN EXCLUSIVE")
        timer = threading.Timer(seconds, lambda: (connection.execute("COMMIT"), connection.close()))
        timer.start()
        held.append(timer)

    yield lock
    for timer in held:
        timer.join()


def test_a_store_locked_by_another_process_is_waited_for_saying_so(store, tmp_path, locked, caplog):
    import time

    database = _copy_of_a_store(store, tmp_path)
    locked(database, 6)  # beyond the 5 s after which MLflow's connection gives up
    started = time.monotonic()
    with caplog.at_level("INFO", logger="kerastrack.tracking.store"):
        client = open_store(f"sqlite:///{database}", wait=20)
    assert time.monotonic() - started >= 5.5
    assert client.search_experiments()
    assert (
        f"The MLflow store {database} is locked by another process (database is locked): waiting up to 20 s"
        in caplog.text
    )
    assert f"The MLflow store {database} is free again" in caplog.text


def test_a_store_that_stays_locked_is_one_error_after_the_wait(store, tmp_path, locked):
    database = _copy_of_a_store(store, tmp_path)
    locked(database, 2.5)
    with pytest.raises(
        ConfigError,
        match=rf"the MLflow store {database} stayed locked by another process \(database is "
        r"locked\).*tracking.store_wait=<seconds>",
    ):
        open_store(f"sqlite:///{database}", wait=1.2)


@pytest.mark.slow
def test_train_on_a_damaged_store_is_one_error_line_before_any_data_loads(store, tmp_path):
    from tests.helpers import run_train

    database = _copy_of_a_store(store, tmp_path)
    with open(database, "r+b") as file:
        file.truncate(database.stat().st_size // 2)
    result = run_train(tmp_path, "trainer.epochs=1", "data.limit=100")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: the MLflow store {database} is damaged (database disk image is malformed) and cannot be opened. Restore "
        f"it from a copy, or recover what it holds into a new file: sqlite3 {database} .recover | sqlite3 "
        f"{tmp_path / 'recovered.db'} (then tracking.tracking_uri=sqlite:///{tmp_path / 'recovered.db'}), or record "
        f"into another store: tracking.tracking_uri=sqlite:///<another path>/mlflow.db. "
        f"Received: tracking.tracking_uri=sqlite:///{database}"
    ]
    assert "data=" not in result.stdout + result.stderr  # refused before the data loads


def test_a_database_url_may_name_its_driver_as_mlflow_accepts():
    from kerastrack.tracking.store import check_scheme

    for uri in ("postgresql+psycopg2://u:pw@db/mlflow", "postgresql+psycopg://u@db/mlflow", "mysql+pymysql://u@db/m"):
        check_scheme(uri)
    with pytest.raises(
        ConfigError, match=r"unknown scheme 'postgres'.*Received: tracking.tracking_uri=postgres://u:\*\*\*@db/m"
    ):
        check_scheme("postgres://u:pw@db/m")  # SQLAlchemy 2 has no such name


def test_a_store_locked_past_mlflows_wait_during_a_run_loses_no_epoch_and_says_so(make_cfg, runs, monkeypatch, caplog):
    # What MLflow raises when another process holds the store past its 20 s wait
    # (mlflow/store/db/utils.py, make_managed_session), injected into the first write
    # of metrics; the rest is the real store.
    import sqlite3

    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from tests.helpers import steps

    real, locked = SqlAlchemyStore.log_batch, []

    def log_batch(self, run_id, metrics, *args, **kwargs):
        if metrics and not locked:
            locked.append(run_id)
            cause = sqlite3.OperationalError("database is locked")
            raise MlflowException(
                message=f"(sqlite3.OperationalError) {cause}", error_code=TEMPORARILY_UNAVAILABLE
            ) from cause
        return real(self, run_id, metrics, *args, **kwargs)

    monkeypatch.setattr(SqlAlchemyStore, "log_batch", log_batch)
    with caplog.at_level("WARNING"):
        train(make_cfg("trainer.epochs=3"))
    (run,) = runs()
    assert locked and run.info.status == "FINISHED"
    for key in ("loss", "val_loss", "learning_rate"):
        assert steps(runs.client, run.info.run_id, key) == [0, 1, 2], key  # each epoch once
    assert (
        "MLflow store sqlite:///" in caplog.text
        and "locked by another process (database is locked): training goes on" in caplog.text
    )
    assert "Traceback" not in caplog.text
