"""Where the MLflow store is, and opening it: URI resolution, scheme checks, and creating
a new SQLite store all or nothing under a lock."""

import contextlib
import logging
import os
import re
import sqlite3
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

from filelock import FileLock
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from kerastrack.errors import ConfigError, chain
from kerastrack.tracking.workarounds import dispose_engine
from kerastrack.utils.hydra_job import launch_dir
from kerastrack.utils.secrets import mask_text, mask_uri
from kerastrack.utils.signals import signals_deferred
from kerastrack.utils.startup import gc_paused

DEFAULT_URI = "sqlite:///mlflow.db"
# Seconds a run waits for an SQLite store that another process holds locked (a sqlite3
# shell in a transaction, a backup, another run's long write); tracking.store_wait.
STORE_WAIT = 60.0
log = logging.getLogger(__name__)


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
    """Raises ConfigError for a URI scheme that MLflow has no store for.

    A database URL may name its driver (``postgresql+psycopg2://``, ``mysql+pymysql://``):
    MLflow's own parsing (``get_uri_scheme``) reads the store's kind from it.
    """
    # Imported here, as everywhere in this package: mlflow costs seconds to import, and a
    # sweep's launching process or a bad-input exit should not wait for it.
    with gc_paused("mlflow"):
        from mlflow.tracking._tracking_service import utils as tracking_utils  # registry of stores
        from mlflow.utils.uri import get_uri_scheme

    if len(urlparse(uri).scheme) <= 1:  # a path (a file store), or a Windows drive
        return
    try:
        scheme = get_uri_scheme(uri)
    except Exception:  # noqa: BLE001 - MLflow refuses a database URL it cannot parse: unknown here too
        scheme = urlparse(uri).scheme
    schemes = sorted(s for s in tracking_utils._tracking_store_registry._registry if s)
    if scheme not in schemes:
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
        raise ConfigError(
            "tracking.experiment_name must be a name, or null for $MLFLOW_EXPERIMENT_NAME, else "
            f"{default}. Received: tracking.experiment_name='{name}'"
        )
    key, resolved = (
        ("tracking.experiment_name", str(name))
        if name is not None
        else ("MLFLOW_EXPERIMENT_NAME", os.environ.get("MLFLOW_EXPERIMENT_NAME") or default)
    )
    if len(resolved) > MAX_EXPERIMENT_NAME_LENGTH:
        raise ConfigError(
            f"{key} must be at most {MAX_EXPERIMENT_NAME_LENGTH} characters (MLflow's limit); it has "
            f"{len(resolved)}. Received: {key}={resolved[:60]}..."
        )
    return resolved


def open_store(uri, wait=STORE_WAIT):
    """Opens (and creates, if new) the store at ``uri``, and returns an MlflowClient on it.

    A local database store puts new experiments' artifacts under ./mlruns of the working
    directory at the moment the store is first opened in a process (MLflow caches the
    store). Opening it from the database's own directory keeps them beside it, whatever
    directory Hydra or the user is in.

    Args:
        uri: The tracking URI (resolved).
        wait: Seconds to wait for an SQLite store that another process holds locked.

    Raises:
        ConfigError: The store cannot be used as it is: an SQLite file that is damaged,
            cannot be written, stays locked, or was left half-created by an interrupted
            first run of an older version; a database that cannot be reached, or whose
            driver is not installed.
    """
    import mlflow

    database = sqlite_path(uri)
    directory = database.parent if database else launch_dir()
    # The first opening in a process imports MLflow's database store (SQLAlchemy, alembic).
    with _store_refusals(uri, database), gc_paused("mlflow store"):
        directory.mkdir(parents=True, exist_ok=True)
        with contextlib.chdir(directory):
            if database is not None and not database.exists():
                _create_sqlite_store(database)
            elif database is not None:
                check_sqlite(database, wait)
            else:
                check_database(uri)
            client = mlflow.MlflowClient(uri)
            client.search_experiments(max_results=1)
    return client


def check_sqlite(database, wait=STORE_WAIT):
    """Reads and writes (rolled back) an existing SQLite store, so that a store that cannot
    be used fails here, before any data loads, instead of at the run's first write.

    MLflow only reads a store when it opens it: a read-only file or folder (SQLite writes a
    journal beside the file) fails at the first write, after the data has loaded and the
    run has started. A store that another process holds locked is waited for up to ``wait``
    seconds, saying so (MLflow's own connections give up after 5 s, with a traceback).

    Raises:
        sqlite3.Error: What SQLite said (``_store_refusals`` turns it into one line).
    """
    started = time.monotonic()
    connection = sqlite3.connect(f"{database.as_uri()}?mode=rw", uri=True, isolation_level=None, timeout=min(wait, 1.0))
    try:
        try:
            connection.execute("BEGIN IMMEDIATE")  # the write lock: busy while another process holds the store
        except sqlite3.OperationalError as exc:
            if not _locked(exc) or wait <= 1.0:
                raise
            log.warning(
                "The MLflow store %s is locked by another process (%s): waiting up to %.0f s for it "
                "(tracking.store_wait)",
                database,
                exc,
                wait,
            )
            connection.execute(f"PRAGMA busy_timeout = {int(max(wait - (time.monotonic() - started), 0) * 1000)}")
            connection.execute("BEGIN IMMEDIATE")
            log.info("The MLflow store %s is free again after %.0f s", database, time.monotonic() - started)
        connection.execute("SELECT count(*) FROM sqlite_master").fetchone()  # a damaged file fails here
        # A write that changes nothing and is rolled back: it needs the file and its
        # folder (the journal) writable, as every write of the run will.
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        connection.execute(f"PRAGMA user_version = {int(version)}")
        connection.execute("ROLLBACK")
    finally:
        connection.close()


def check_database(uri, timeout=10):
    """Connects once to a database store (PostgreSQL, MySQL, ...) before MLflow opens it;
    nothing for other stores (a server, a file store).

    MLflow retries a connection that fails ten times over 100 s, printing a warning each
    time (mlflow/store/db/utils.py, create_sqlalchemy_engine_with_retry); a database that
    is not there is said at once, in one line (``_store_refusals``).

    Raises:
        sqlalchemy.exc.OperationalError: The database cannot be reached.
        ModuleNotFoundError: SQLAlchemy's driver for the URL is not installed.
    """
    import sqlalchemy
    from mlflow.store.db.db_types import DATABASE_ENGINES, MYSQL, POSTGRES
    from mlflow.utils.uri import get_uri_scheme

    kind = get_uri_scheme(uri)
    if kind not in DATABASE_ENGINES:
        return
    # Both PostgreSQL drivers and the MySQL ones take connect_timeout; others keep their own default.
    engine = sqlalchemy.create_engine(
        uri, connect_args={"connect_timeout": timeout} if kind in (POSTGRES, MYSQL) else {}
    )
    try:
        with engine.connect():
            pass
    finally:
        engine.dispose()


def _locked(exc):
    return "database is locked" in str(exc) or "database table is locked" in str(exc)


@contextlib.contextmanager
def _store_refusals(uri, database):
    """Turns what keeps a store from being used into one ConfigError that names it and
    says what to do; anything else passes unchanged."""
    try:
        yield
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - each kind is judged below; the rest is raised as it is
        message = _sqlite_refusal(uri, database, exc) if database is not None else _database_refusal(uri, exc)
        if message is None:
            raise
        raise ConfigError(message) from None


def _sqlite_refusal(uri, database, exc):
    """The message for an SQLite store that cannot be used, or None."""
    reason = _reason(exc)
    received = f"Received: tracking.tracking_uri={uri}"
    elsewhere = f"or record into another store: tracking.tracking_uri=sqlite:///<another path>/{database.name}"
    if re.search(r"malformed|not a database|file is encrypted", reason):
        return (
            f"the MLflow store {database} is damaged ({reason}) and cannot be opened. Restore it from a copy, "
            f"or recover what it holds into a new file: sqlite3 {database} .recover | sqlite3 "
            f"{database.with_name('recovered.db')} (then tracking.tracking_uri=sqlite:///"
            f"{database.with_name('recovered.db')}), {elsewhere}. {received}"
        )
    if re.search(
        r"readonly database|unable to open database|read-only file system|Operation not permitted|"
        r"Permission denied",
        reason,
        re.IGNORECASE,
    ):
        return (
            f"the MLflow store {database} cannot be written ({reason}): the file or its folder "
            f"{database.parent} is read-only (SQLite also writes a journal file beside it), immutable (lsattr; "
            f"chattr -i) or on a read-only mount. Make both writable, {elsewhere}. {received}"
        )
    if _locked(reason):
        return (
            f"the MLflow store {database} stayed locked by another process ({reason}): another program holds it "
            f"in a write (a sqlite3 shell in a transaction, a backup, another run's long write). Finish or stop "
            f"it and run again, wait longer (tracking.store_wait=<seconds>), {elsewhere}. {received}"
        )
    # Migrations that collide with what is there ("table ... already exists",
    # "duplicate column name"): the schema is half made.
    if re.search(r"already exists|duplicate column", reason):
        return (
            f"the MLflow store {database} was left half-created (its first run was interrupted while it "
            f"created the tables, with an older kerastrack) and cannot be opened. If it holds no runs you "
            f"need, delete it (rm {database}) and run again; kerastrack now creates stores all or nothing. "
            f"{received}"
        )
    return None


def _database_refusal(uri, exc):
    """The message for a database store (PostgreSQL, MySQL) that cannot be used, or None."""
    import sqlalchemy.exc

    shown = mask_uri(uri)
    received = f"Received: tracking.tracking_uri={shown}"
    missing = next((e for e in chain(exc) if isinstance(e, ModuleNotFoundError)), None)
    if missing is not None:
        driver = make_url(uri).get_driver_name()
        return (
            f"the MLflow store {shown} needs the database driver '{driver}' (SQLAlchemy's for this URL), which "
            f"is not installed ({missing}): pip install -r requirements.txt installs psycopg (postgresql://) and "
            f"psycopg2 (postgresql+psycopg2://); for another, install it or name an installed one in the URL "
            f"(<database>+<driver>://). {received}"
        )
    if any(isinstance(e, (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError)) for e in chain(exc)):
        return (
            f"the MLflow store {shown} cannot be reached ({_reason(exc)}). Check that the database server "
            f"runs and the host, port, user, password and database name, or record into a local store: "
            f"tracking.tracking_uri=sqlite:///mlflow.db. {received}"
        )
    return None


def _reason(exc):
    """What the database itself said, in one masked line: the innermost DB-API or OS error
    (SQLAlchemy's and MLflow's wrappers add the SQL and a link)."""
    import sqlalchemy.exc

    inner = exc
    for cause in chain(exc):
        inner = cause
        if isinstance(cause, sqlalchemy.exc.DBAPIError) and cause.orig is not None:
            inner = cause.orig
            break
    text = " ".join(str(inner).split()) or type(inner).__name__
    return mask_text(text if len(text) < 300 else text[:300] + "...")


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
