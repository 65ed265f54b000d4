"""Where the MLflow store is, and opening it: URI resolution, scheme checks, and creating
a new SQLite store all or nothing under a lock."""

import contextlib
import os
import re
import uuid
from pathlib import Path
from urllib.parse import urlparse

from filelock import FileLock
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from kerastrack.errors import ConfigError
from kerastrack.hydra_utils import launch_dir
from kerastrack.secrets import mask_uri
from kerastrack.signals import signals_deferred
from kerastrack.startup import gc_paused
from kerastrack.tracking.workarounds import dispose_engine

DEFAULT_URI = "sqlite:///mlflow.db"


def resolve_tracking_uri(uri=None, base_dir=None):
    """The tracking URI to use: the config's, else $MLFLOW_TRACKING_URI, else mlflow.db.

    Relative SQLite and file-store paths are made absolute against ``base_dir`` (the launch
    directory), so that runs in changed working directories share one store.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI
    base_dir = Path(base_dir or launch_dir())
    if uri.startswith("sqlite:"):
        return absolute_sqlite_uri(uri, base_dir)
    if "://" not in uri and ":" not in uri[:3]:  # a bare path means a file store
        return str((base_dir / uri).resolve())
    return uri


def sqlite_path(uri):
    """The database file of an ``sqlite:`` URI (SQLAlchemy parses it), else None (another
    scheme, or an in-memory database)."""
    if not uri.startswith("sqlite:"):
        return None
    database = make_url(uri).database
    return Path(database) if database and database != ":memory:" else None


def absolute_sqlite_uri(uri, base_dir):
    """An ``sqlite:`` URI with a relative path made absolute against ``base_dir``; any
    other URI unchanged (Optuna's storage takes the same URLs)."""
    path = sqlite_path(uri or "")
    if path is None or path.is_absolute():
        return uri
    query = uri.partition("?")[2]
    return f"sqlite:///{(Path(base_dir) / path).resolve()}" + (f"?{query}" if query else "")


def check_scheme(uri):
    """Raises ConfigError for a URI scheme that MLflow has no store for."""
    # Imported here, as everywhere in this package: mlflow costs seconds to import, and a
    # sweep's launching process or a bad-input exit should not wait for it.
    with gc_paused("mlflow"):
        from mlflow.tracking._tracking_service import utils as tracking_utils  # registry of stores

    scheme = urlparse(uri).scheme
    schemes = sorted(s for s in tracking_utils._tracking_store_registry._registry if s)
    if len(scheme) > 1 and scheme not in schemes:
        raise ConfigError(
            f"tracking.tracking_uri has an unknown scheme '{scheme}'; MLflow knows "
            f"{', '.join(schemes)} (e.g. sqlite:///mlflow.db, http://127.0.0.1:5000). "
            f"Received: tracking.tracking_uri={mask_uri(uri)}"
        )


def check_experiment_name(name, default):
    """The experiment to record into: ``name``, else $MLFLOW_EXPERIMENT_NAME, else ``default``,
    checked as MLflow will check it when the run is created (too late: a traceback then).

    Raises:
        ConfigError: An empty name (it would quietly mean the default), or one over MLflow's length.
    """
    from mlflow.utils.validation import MAX_EXPERIMENT_NAME_LENGTH

    if name is not None and not str(name).strip():
        raise ConfigError("tracking.experiment_name must be a name, or null for $MLFLOW_EXPERIMENT_NAME, else "
                          f"{default}. Received: tracking.experiment_name='{name}'")
    key, resolved = ("tracking.experiment_name", str(name)) if name is not None else \
        ("MLFLOW_EXPERIMENT_NAME", os.environ.get("MLFLOW_EXPERIMENT_NAME") or default)
    if len(resolved) > MAX_EXPERIMENT_NAME_LENGTH:
        raise ConfigError(f"{key} must be at most {MAX_EXPERIMENT_NAME_LENGTH} characters (MLflow's limit); it has "
                          f"{len(resolved)}. Received: {key}={resolved[:60]}...")
    return resolved


def open_store(uri):
    """Opens (and creates, if new) the store at ``uri``, and returns an MlflowClient on it.

    A local database store puts new experiments' artifacts under ./mlruns of the working
    directory at the moment the store is first opened in a process (MLflow caches the
    store). Opening it from the database's own directory keeps them beside it, whatever
    directory Hydra or the user is in.

    Raises:
        ConfigError: The SQLite file is a store left half-created by an interrupted
            first run of an older version.
    """
    import mlflow

    database = sqlite_path(uri)
    directory = database.parent if database else launch_dir()
    directory.mkdir(parents=True, exist_ok=True)
    # The first opening in a process imports MLflow's database store (SQLAlchemy, alembic).
    with contextlib.chdir(directory), gc_paused("mlflow store"):
        if database is not None and not database.exists():
            _create_sqlite_store(database)
        try:
            client = mlflow.MlflowClient(uri)
            client.search_experiments(max_results=1)
        except Exception as exc:
            # Migrations that collide with what is there ("table ... already exists",
            # "duplicate column name"): the schema is half made.
            if database is not None and re.search(r"already exists|duplicate column", str(exc)):
                raise ConfigError(
                    f"the MLflow store {database} was left half-created (its first run was interrupted while it "
                    f"created the tables, with an older kerastrack) and cannot be opened. If it holds no runs you "
                    f"need, delete it (rm {database}) and run again; kerastrack now creates stores all or nothing. "
                    f"Received: tracking.tracking_uri={uri}") from None
            raise
    return client


def _create_sqlite_store(database):
    """Creates a new SQLite store all or nothing, once, whoever else tries at the moment.

    MLflow creates and migrates a new store's tables without a lock, in many transactions:
    two processes doing it at once break it ("Online migration expected to match one
    row"), and a signal or kill in between leaves a half-migrated file that no later run
    can open ("table registered_models already exists"). So the tables are made in a
    temporary file beside it, under a lock file, with Ctrl-C/SIGTERM held back until it is
    done, and renamed into place (atomic); a kill leaves only the temporary file, which the
    next creator replaces. Being temporary, it is built without a sync per statement
    (``_unsynced``) and synced once, before the rename.
    """
    import mlflow

    with FileLock(f"{database}.lock"), signals_deferred():
        if database.exists():  # another process made it while this one waited
            return
        for leftover in database.parent.glob(f".{database.name}.creating-*"):  # a creator killed hard
            leftover.unlink(missing_ok=True)
        # A name of its own: MLflow caches a store per URI, tables and all.
        building = database.with_name(f".{database.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            with _unsynced(building.name):
                mlflow.MlflowClient(f"sqlite:///{building}").search_experiments(max_results=1)
            dispose_engine(f"sqlite:///{building}")
            with open(building, "rb") as made:
                os.fsync(made.fileno())
            os.replace(building, database)
        finally:
            building.unlink(missing_ok=True)


@contextlib.contextmanager
def _unsynced(name):
    """SQLite connections opened in the block to a database file called ``name`` neither
    sync to disk nor write a rollback journal file.

    MLflow's migrations run several hundred statements, most of them DDL, each its own
    transaction: synced, that is a third of a new store's creation time here, and far more
    on a slow disk. Both pragmas hold for the connection only, never for the file. MLflow
    opens its engine and migrates in one call, so the pragmas go in through SQLAlchemy's
    connect event, for this one file.
    """
    def connected(dbapi_connection, connection_record):
        if any(Path(row[2]).name == name for row in dbapi_connection.execute("PRAGMA database_list")):
            dbapi_connection.execute("PRAGMA synchronous=OFF")
            dbapi_connection.execute("PRAGMA journal_mode=MEMORY")

    event.listen(Engine, "connect", connected)
    try:
        yield
    finally:
        event.remove(Engine, "connect", connected)
