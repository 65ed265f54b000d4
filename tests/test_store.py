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
    with pytest.raises(ConfigError, match=rf"tracking.experiment_name: the experiment 'trashed' was deleted in MLflow "
                                          rf".*--experiment-id {experiment_id}.*Received: tracking.experiment_name=trashed"):
        train(make_cfg("tracking.experiment_name=trashed"))
    assert client.search_runs([experiment_id], run_view_type=3) == []
