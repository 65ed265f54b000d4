"""Experiment tracking. The only package that imports mlflow.

The pipeline owns the run through a tracker's ``run()`` context: it is opened before the
model is built and always closed in a true state, FINISHED only when the block completes,
KILLED on Ctrl-C/SIGTERM, FAILED on any error (with the error recorded). Callbacks log
through the tracker they are given.
"""

import contextlib
import errno
import json
import logging
import os
import platform
import re
import subprocess
import threading
import traceback
import uuid
from pathlib import Path
from urllib.parse import urlparse

from omegaconf import OmegaConf

from kerastrack.errors import ConfigError
from kerastrack.secrets import MASK, SECRET_KEY, has_password, mask_secrets, mask_text, mask_uri, mask_value  # noqa: F401 - re-exported
from kerastrack.signals import interrupted, signals_deferred, signals_held

DEFAULT_EXPERIMENT = "kerastrack"
log = logging.getLogger(__name__)


class NullTracker:
    """Records nothing; the interface every tracker has (``tracking=none``)."""

    log_every_n_steps = 0
    log_model = False
    run_id = None
    # Where calls that cannot reach a tracking server are kept (the pipeline sets
    # <output_dir>/mlflow-spool); see kerastrack.tracking.spool.
    spool_dir = None
    # The run's final status once it ended (FINISHED, FAILED, KILLED); None before, and
    # when the store could not take it (the run then shows RUNNING there).
    status = None

    def check(self):
        """Raises if the store has failed under the run (a full disk): called every epoch,
        so that training stops instead of going on unrecorded."""

    @contextlib.contextmanager
    def run(self, run_name, tags=None, run_id=None):
        self.status = None
        try:
            yield self
        except BaseException as exc:
            self.status = "KILLED" if interrupted(exc) else "FAILED"
            raise
        self.status = "FINISHED"

    def get_run(self, run_id):
        """The recorded run (a ``query.RunRecord``), or None if the store has no such run."""
        return None

    def find_sweep_child(self, config_hash):
        """In a re-launched sweep: the latest child of its parent with this config hash."""
        return None

    def metric_steps(self, run_id):
        """Every metric of the run on record: key -> the steps logged (a list, one entry per
        value, so a step logged twice shows twice)."""
        return {}

    def prepare(self):
        """Opens the store and experiment ahead of the run (nothing to do here)."""

    def log_params(self, params):
        pass

    def log_metrics(self, metrics, step):
        pass

    def set_tags(self, tags):
        pass

    def log_text(self, text, artifact_file):
        pass

    def log_artifact(self, local_path, artifact_path=None):
        pass

    def log_keras_model(self, model, input_example):
        pass


def launch_dir():
    """The directory ``python train.py`` was started in, even under hydra.job.chdir=true."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.cwd)
    return Path.cwd()


def code_dir():
    """The directory of the code that ran: the primary config's (its git repository holds
    the experiment's code), else the launch directory."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        for source in HydraConfig.get().runtime.config_sources:
            if source.provider == "main" and source.schema == "file":
                return Path(source.path)
    return launch_dir()


def resolve_tracking_uri(uri=None, base_dir=None):
    """The tracking URI to use: the config's, else $MLFLOW_TRACKING_URI, else mlflow.db.

    Relative SQLite and file-store paths are made absolute against ``base_dir`` (the launch
    directory), so that runs in changed working directories share one store.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"
    base_dir = Path(base_dir or launch_dir())
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///"):]
        if path and path != ":memory:" and not os.path.isabs(path):
            return f"sqlite:///{(base_dir / path).resolve()}"
    elif "://" not in uri and ":" not in uri[:3]:  # a bare path means a file store
        return str((base_dir / uri).resolve())
    return uri


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

    database = _sqlite_path(uri)
    directory = database.parent if database else launch_dir()
    directory.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(directory):
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


def _sqlite_path(uri):
    """The database file of an ``sqlite:///`` URI (SQLAlchemy parses it), else None."""
    from sqlalchemy.engine import make_url

    if not uri.startswith("sqlite:"):
        return None
    database = make_url(uri).database
    return Path(database) if database and database != ":memory:" else None


def _create_sqlite_store(database):
    """Creates a new SQLite store all or nothing, once, whoever else tries at the moment.

    MLflow creates and migrates a new store's tables without a lock, in many transactions:
    two processes doing it at once break it ("Online migration expected to match one
    row"), and a signal or kill in between leaves a half-migrated file that no later run
    can open ("table registered_models already exists"). So the tables are made in a
    temporary file beside it, under a lock file, with Ctrl-C/SIGTERM held back until it is
    done, and renamed into place (atomic); a kill leaves only the temporary file, which the
    next creator replaces.
    """
    import mlflow
    from filelock import FileLock

    with FileLock(f"{database}.lock"), signals_deferred():
        if database.exists():  # another process made it while this one waited
            return
        for leftover in database.parent.glob(f".{database.name}.creating-*"):  # a creator killed hard
            leftover.unlink(missing_ok=True)
        # A name of its own: MLflow caches a store per URI, tables and all.
        building = database.with_name(f".{database.name}.creating-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            mlflow.MlflowClient(f"sqlite:///{building}").search_experiments(max_results=1)
            _dispose_engine(f"sqlite:///{building}")
            os.replace(building, database)
        finally:
            building.unlink(missing_ok=True)


def _dispose_engine(uri):
    """Closes MLflow's cached connections to a database file before it is renamed."""
    from mlflow.tracking._tracking_service.utils import _get_store

    with contextlib.suppress(Exception):
        _get_store(uri).engine.dispose()


def _check_scheme(uri):
    from mlflow.tracking._tracking_service import utils as tracking_utils  # registry of stores

    scheme = urlparse(uri).scheme
    schemes = sorted(s for s in tracking_utils._tracking_store_registry._registry if s)
    if len(scheme) > 1 and scheme not in schemes:
        raise ConfigError(
            f"tracking.tracking_uri has an unknown scheme '{scheme}'; MLflow knows "
            f"{', '.join(schemes)} (e.g. sqlite:///mlflow.db, http://127.0.0.1:5000). "
            f"Received: tracking.tracking_uri={mask_uri(uri)}"
        )


def flatten_config(cfg, prefix=""):
    """Flattens a config to dotted keys with string values, e.g. {"optimizer.beta_1": "0.9"}."""
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

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
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version()}
    for name in ("tensorflow", "keras", "mlflow", "hydra-core", "numpy", "scikit-learn", "kerastrack"):
        with contextlib.suppress(PackageNotFoundError):
            versions[name] = version(name)
    return versions


class MlflowTracker(NullTracker):
    """Logs runs to MLflow.

    Args:
        tracking_uri: MLflow tracking URI. None: $MLFLOW_TRACKING_URI, else an SQLite file
            ``mlflow.db`` in the launch directory.
        experiment_name: None: $MLFLOW_EXPERIMENT_NAME, else "kerastrack".
        run_name: None: the pipeline builds one from the config choices.
        log_model: Log the trained model with ``mlflow.keras.log_model``.
        log_every_n_steps: Also log batch metrics every N optimizer steps; 0 is off.
        offline: Do not contact the server: everything goes to the spool, for
            ``python -m kerastrack.upload`` to send later.
    """

    def __init__(self, tracking_uri=None, experiment_name=None, run_name=None, log_model=True,
                 log_every_n_steps=0, offline=False):
        if not isinstance(log_every_n_steps, int) or log_every_n_steps < 0:
            raise ConfigError(
                f"tracking.log_every_n_steps must be an integer >= 0 (0: off). "
                f"Received: tracking.log_every_n_steps={log_every_n_steps}"
            )
        # Metrics are queued and written by MLflow's logging thread. Unbuffered, that thread
        # blocks in a 1 s queue poll, which every run then waits out when it closes;
        # buffered, it wakes as soon as the run closes, and writes in batches.
        os.environ.setdefault("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "1")
        _StoreFull.install()
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        _check_scheme(self.tracking_uri)
        self.experiment_name = experiment_name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
        self.run_name = run_name
        self.log_model = log_model
        self.log_every_n_steps = log_every_n_steps
        self.run_id = None
        self.offline = offline
        self._outbox = None
        # A remote server can go away: bounded retries, synchronous metrics (async ones
        # fail unseen, in MLflow's thread, and are lost), and a check now, before training.
        self.remote = urlparse(self.tracking_uri).scheme in ("http", "https")
        if self.remote:
            from kerastrack.tracking.spool import bound_http_retries, check_server

            bound_http_retries()
            if has_password(self.tracking_uri):  # MLflow prints "View run ... at: <the URI>" otherwise
                os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
            if not offline:
                check_server(self.tracking_uri)

    def _set_experiment(self):
        """Opens the store and the experiment (both created if new); returns the experiment.

        Raises:
            ConfigError: The experiment was deleted in MLflow (it is in the trash).
        """
        import mlflow

        open_store(self.tracking_uri)
        mlflow.set_tracking_uri(self.tracking_uri)
        experiment = mlflow.MlflowClient(self.tracking_uri).get_experiment_by_name(self.experiment_name)
        if experiment is not None and experiment.lifecycle_stage == "deleted":
            raise ConfigError(
                f"tracking.experiment_name: the experiment '{self.experiment_name}' was deleted in MLflow (it is in "
                f"the trash, id {experiment.experiment_id}); restore it (mlflow experiments restore --experiment-id "
                f"{experiment.experiment_id}) or record into another one: tracking.experiment_name=<name>. "
                f"Received: tracking.experiment_name={self.experiment_name}")
        return mlflow.set_experiment(self.experiment_name)

    def check(self):
        if _StoreFull.seen.is_set():
            raise OSError(errno.ENOSPC, "the MLflow store could not be written: database or disk is full")

    def prepare(self):
        """Opens the store and the experiment before any time goes into data or training,
        so that a store or experiment that cannot be used is reported first."""
        if not self.offline:
            self._set_experiment()

    @contextlib.contextmanager
    def run(self, run_name, tags=None, run_id=None):
        """Opens an MLflow run and closes it in the state that matches what happened.

        Args:
            run_name: The name of a new run.
            tags: Tags of a new run.
            run_id: Reopen this (KILLED or FAILED) run instead of starting a new one.
        """
        import mlflow

        if self.offline:
            with self._offline_run(self.run_name or run_name, tags):
                yield self
            return
        self.run_id = self.status = None
        try:
            # Opened whole or not at all: an interrupt while opening lands once it is open,
            # and closes it KILLED below, instead of stranding a RUNNING run.
            with signals_deferred():
                active = self._start_run(run_name, tags, run_id)
                self.run_id = active.info.run_id
                self._open_outbox(active.info.run_name)
        except KeyboardInterrupt:
            if self.run_id:
                self._end("KILLED", "KeyboardInterrupt", "interrupted while starting")
            raise
        try:
            yield self
        except BaseException as exc:  # noqa: BLE001 - whatever it is, the run must not stay RUNNING
            if interrupted(exc):
                self._end("KILLED", "KeyboardInterrupt", "interrupted (Ctrl-C or SIGTERM)")
            elif type(exc).__name__ == "TrialPruned":  # optuna's: a search stopped it on purpose
                self._end("KILLED", type(exc).__name__, str(exc) or "pruned by the search", pruned=True)
            else:
                self._end("FAILED", type(exc).__name__, str(exc), traceback.format_exc())
            raise
        else:
            # Everything is recorded: the close completes, and an interrupt during it is
            # raised after it (the caller reports a FINISHED run that was interrupted).
            with signals_deferred():
                on_server = self._end_run("FINISHED")
                if on_server:
                    log.info("MLflow run %s '%s' FINISHED in %s (experiment %s)", self.run_id,
                             active.info.run_name, mask_uri(self.tracking_uri), self.experiment_name)

    def _start_run(self, run_name, tags, run_id):
        import mlflow

        if run_id:
            open_store(self.tracking_uri)
            mlflow.set_tracking_uri(self.tracking_uri)
            previous = mlflow.MlflowClient(self.tracking_uri).get_run(run_id)
            experiment = mlflow.set_experiment(experiment_id=previous.info.experiment_id)
            self.experiment_name = experiment.name  # the run's own, whatever the config says
            active = mlflow.start_run(run_id=run_id)
            self._mark_resumed(previous)
            return active
        experiment = self._set_experiment()
        sweep_tags, sweep_name = self._sweep_child(experiment.experiment_id)
        return mlflow.start_run(run_name=self.run_name or sweep_name or run_name, tags={**(tags or {}), **sweep_tags})

    def _mark_resumed(self, run):
        """Counts the resumption; the error of the interruption moves to ``resume.last_error``
        (a FINISHED run must not carry an error tag)."""
        import mlflow

        client = mlflow.MlflowClient(self.tracking_uri)
        run_id, previous = run.info.run_id, run.data.tags
        for tag in ("error.type", "error.message", "pruned"):
            if tag in previous:
                client.delete_tag(run_id, tag)
        mlflow.set_tags({
            "resume.count": str(int(previous.get("resume.count", "0")) + 1),
            "resume.last_error": (f"{run.info.status}: {previous.get('error.type', '?')}: {previous.get('error.message', '')}"
                                  if run.info.status != "RUNNING" else
                                  "RUNNING: killed hard (the process ended without closing the run)")[:5000],
        })

    def get_run(self, run_id):
        from mlflow.exceptions import MlflowException

        from kerastrack.tracking.query import to_record

        try:
            return to_record(open_store(self.tracking_uri).get_run(run_id))
        except MlflowException:
            return None

    def find_sweep_child(self, config_hash):
        import mlflow

        from kerastrack.tracking.query import to_record

        parent = self._sweep_parent()
        if parent is None:
            return None
        children = mlflow.MlflowClient(self.tracking_uri).search_runs(
            [parent.info.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`config.hash` = '{config_hash}'")
        return to_record(children[0]) if children else None

    def metric_steps(self, run_id):
        import mlflow

        client = mlflow.MlflowClient(self.tracking_uri)
        steps = {}
        for key in client.get_run(run_id).data.metrics:
            steps[key] = [m.step for m in client.get_metric_history(run_id, key)]
        return steps

    def _sweep_parent(self, experiment_id=None):
        """This multirun's parent run (found by its sweep dir), or None outside a multirun."""
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from kerastrack.tracking.sweep import sweep_dir

        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
            return None
        import mlflow

        experiment_id = experiment_id or self._set_experiment().experiment_id
        parents = mlflow.MlflowClient(self.tracking_uri).search_runs(
            [experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
            filter_string=f"tags.`sweep.dir` = '{sweep_dir(HydraConfig.get())}' and tags.`sweep.role` = 'parent'",
        )
        return parents[0] if parents else None

    def _sweep_child(self, experiment_id):
        """Tags that make this run a child of its sweep's parent run, and a name from the
        swept values (``optimizer=adam,seed=1``); nothing outside a multirun."""
        from hydra.core.hydra_config import HydraConfig

        from kerastrack.tracking.sweep import parse_overrides

        parent = self._sweep_parent(experiment_id)
        if parent is None:
            return {}, None
        hydra = HydraConfig.get()
        keys = json.loads(parent.data.tags.get("sweep.keys", "[]"))
        values = {k: mask_value(k, o.get_value_element_as_str())
                  for k, o in parse_overrides(hydra.overrides.task) if k in keys}
        tags = {"mlflow.parentRunId": parent.info.run_id, "sweep.role": "child",
                "sweep.job": str(hydra.job.num), "sweep.values": json.dumps(values)}
        return tags, ",".join(f"{k}={v}" for k, v in values.items()) or None

    def _end(self, status, error_type, message, trace=None, pruned=False):
        with signals_held():  # a second Ctrl-C/SIGTERM must not cut the closing short
            # Best effort: if the store itself is what failed, still try to close the run.
            with contextlib.suppress(Exception):
                # MLflow's errors name the URL they called, password included.
                tags = {"error.type": error_type, "error.message": mask_text(message)[:5000]}
                self.set_tags({**tags, "pruned": "true"} if pruned else tags)
                if trace:
                    self.log_text(mask_text(trace), "error/traceback.txt")
            try:
                self._end_run(status)
            except Exception:  # noqa: BLE001 - the store cannot take it (a full disk): the caller says so
                self.status = None
                _forget_active_run(self.run_id)

    # -- the server may be away: every call goes through the outbox (tracking.spool) --

    def _spool(self):
        from kerastrack.tracking.spool import SPOOL_DIRNAME, Spool

        return Spool(Path(self.spool_dir or Path.cwd() / SPOOL_DIRNAME))

    def _open_outbox(self, run_name, **meta):
        import mlflow

        from kerastrack.tracking.spool import Outbox

        # The spool keeps no password: the upload takes it from the environment (or --tracking-uri).
        meta = {"tracking_uri": mask_uri(self.tracking_uri), "experiment_name": self.experiment_name,
                "run_id": self.run_id, "run_name": run_name, **meta}
        self._outbox = Outbox(self._spool(), meta, lambda: mlflow.MlflowClient(self.tracking_uri),
                              offline=self.offline)

    @contextlib.contextmanager
    def _offline_run(self, run_name, tags):
        from kerastrack.tracking.spool import now_ms, offline_run

        self._open_outbox(run_name, tags=tags or {}, start_time=now_ms())
        self._outbox.spool.write_meta(**self._outbox.meta)
        log.info("tracking.offline=true: run '%s' recorded in %s only", run_name, self._outbox.spool.directory)

        def close(status, *error, **kwargs):
            return self._end(status, *error, **kwargs) if error else self._end_run(status)

        with offline_run(close):
            yield

    def _end_run(self, status):
        """Sets the final status on the server, or in the spool after what it holds;
        returns whether the server has it."""
        import mlflow

        self.status = status
        if self._outbox is None:
            mlflow.end_run(status)
            return True
        if self._outbox.terminate(status, lambda: mlflow.end_run(status)):
            return True
        _forget_active_run(self.run_id)
        from kerastrack.tracking.spool import UPLOAD_COMMAND

        spool = self._outbox.spool.directory
        if self.offline:
            log.info("Offline run '%s' ended %s, recorded in %s. Upload it to %s with: %s %s",
                     self._outbox.meta["run_name"], status, spool, mask_uri(self.tracking_uri), UPLOAD_COMMAND, spool)
            return False
        log.warning("MLflow run %s '%s' ended %s, but not everything reached %s: the rest and the final "
                    "status are in %s. Upload them (the run stays RUNNING on the server until then) with: %s %s",
                    self.run_id, self._outbox.meta["run_name"], status, mask_uri(self.tracking_uri),
                    spool, UPLOAD_COMMAND, spool)
        return False

    def _send(self, op, call, spool_op=None):
        if self._outbox is None:  # outside a run: straight through, as MLflow would
            return call()
        self._outbox.send(op, call, spool_op)

    def log_params(self, params):
        import mlflow

        self._send({"op": "params", "params": {k: str(v) for k, v in params.items()}},
                   lambda: mlflow.log_params(params))

    def log_metrics(self, metrics, step):
        import mlflow

        from kerastrack.tracking.spool import now_ms

        timestamp = now_ms()
        # Local store: queued, not written on the training thread (a synchronous SQLite
        # write costs ~7 ms here, against ~0.6 ms queued); closing the run flushes the
        # queue. Remote server: synchronous, so that a failure is seen and spooled.
        self._send({"op": "metrics", "metrics": metrics, "step": step, "timestamp": timestamp},
                   lambda: mlflow.log_metrics(metrics, step=step, synchronous=self.remote,
                                              timestamp=timestamp))

    def set_tags(self, tags):
        import mlflow

        self._send({"op": "tags", "tags": {k: str(v) for k, v in tags.items()}}, lambda: mlflow.set_tags(tags))

    def log_text(self, text, artifact_file):
        import mlflow

        directory, _, name = artifact_file.rpartition("/")
        self._send(None, lambda: mlflow.log_text(text, artifact_file),
                   lambda: {"op": "artifact", "path": self._outbox.spool.add_text(text, name),
                            "artifact_path": directory or None})

    def log_artifact(self, local_path, artifact_path=None):
        import mlflow

        self._send(None, lambda: mlflow.log_artifact(str(local_path), artifact_path),
                   lambda: {"op": "artifact", "path": self._outbox.spool.add_file(local_path),
                            "artifact_path": artifact_path})

    def log_keras_model(self, model, input_example):
        """Logs the model with an input example and signature.

        Requirements are given explicitly: left to MLflow, it infers them by loading the
        model in a fresh Python process, which imports TensorFlow again (~5 s here).
        """
        from mlflow.models import Model, infer_signature

        signature = infer_signature(input_example, model.predict(input_example, verbose=0))
        versions = library_versions()
        requirements = [f"{name}=={versions[name]}" for name in ("tensorflow", "keras", "mlflow") if name in versions]
        # What mlflow.keras.log_model does, through _KerasFlavor (see there). MLflow checks
        # the input example by predicting with Keras' progress bar on stdout: keep it quiet.
        import io

        kwargs = {"model": model, "input_example": input_example, "signature": signature,
                  "pip_requirements": requirements}

        def live():
            with contextlib.redirect_stdout(io.StringIO()):
                Model.log(artifact_path=None, name="model", flavor=_KerasFlavor, **kwargs)

        def spooled():  # saved in MLflow's format; uploaded as the run's artifacts under model/
            import tempfile

            with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
                _KerasFlavor.save_model(path=os.path.join(tmp, "model"), **kwargs)
                return {"op": "artifact", "path": self._outbox.spool.add_file(os.path.join(tmp, "model")),
                        "artifact_path": "model"}

        self._send(None, live, spooled)


class _StoreFull(logging.Filter):
    """Notes a store that a full disk keeps from writing, and keeps MLflow from printing a
    traceback for every batch it then fails to write: the pipeline stops the run and
    says it once."""

    seen = threading.Event()
    LOGGERS = ("mlflow.store.db.utils", "mlflow.utils.async_logging.async_logging_queue")

    @classmethod
    def install(cls):
        for name in cls.LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, cls) for f in logger.filters):
                logger.addFilter(cls())

    def filter(self, record):
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        if "disk is full" in text or "No space left on device" in text:
            self.seen.set()
            return False
        return True


def _forget_active_run(run_id):
    """Ends the fluent API's active run without telling the server (which has not got
    everything yet). mlflow.end_run has no such mode; this is what it does before its
    set_terminated call (mlflow/tracking/fluent.py, 3.17)."""
    from mlflow.environment_variables import MLFLOW_RUN_ID
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()
    if stack and stack[-1].info.run_id == run_id:
        stack.pop()
        MLFLOW_RUN_ID.unset()
        fluent._last_active_run_id.set(run_id)


class _KerasFlavor:
    """``mlflow.keras`` that creates the model directory before saving into it.

    With an input example, ``mlflow.keras.save_model`` writes the example before it creates
    the directory and fails (mlflow issue #16183, open in 3.17).
    """

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path, **kwargs):
        import mlflow.keras

        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)
