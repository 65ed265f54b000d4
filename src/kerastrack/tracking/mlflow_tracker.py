"""``MlflowTracker``: a run's life in MLflow, from opening to a true final status.

Every call goes through an ``Outbox``: what cannot reach a tracking server is spooled in
the run's output dir, not lost, and uploaded when the server is back.
"""

import contextlib
import errno
import importlib.util
import logging
import os
import tempfile
import time
from pathlib import Path

from kerastrack.errors import ConfigError
from kerastrack.tracking import datasets, logged_model
from kerastrack.tracking.lookups import lookup, open_experiment, run_link
from kerastrack.tracking.opening import start_run
from kerastrack.tracking.outbox import UPLOAD_COMMAND, Outbox, connect, now_ms
from kerastrack.tracking.parent import OfflineParent, ParentRun, offline_child
from kerastrack.tracking.spool import SPOOL_DIRNAME, Spool
from kerastrack.tracking.store import STORE_WAIT, check_experiment_name, check_scheme, resolve_tracking_uri
from kerastrack.tracking.system_metrics import start_sampler
from kerastrack.tracking.tracker import NullTracker, closing
from kerastrack.tracking.workarounds import StoreFull, forget_active_run
from kerastrack.utils.secrets import mask_text, mask_uri
from kerastrack.utils.signals import signals_deferred, signals_held

DEFAULT_EXPERIMENT = "kerastrack"
MAX_BATCH = 1000  # metrics per log_batch call: MLflow's limit
log = logging.getLogger(__name__)


class MlflowTracker(NullTracker):
    """Logs runs to MLflow.

    Args:
        tracking_uri: MLflow tracking URI. None: $MLFLOW_TRACKING_URI, else an SQLite file
            ``mlflow.db`` in the launch directory.
        experiment_name: None: $MLFLOW_EXPERIMENT_NAME, else "kerastrack".
        run_name: None: the pipeline builds one from the config choices.
        log_model: Log the trained model as the run's MLflow logged model (Keras flavor).
        log_every_n_steps: Also log batch metrics every N optimizer steps; 0 is off.
        offline: Do not contact the server: everything goes to the spool, for
            ``python -m kerastrack.upload`` to send later.
        system_metrics: Also log MLflow's system metrics (``system/...``: CPU, memory,
            disk, network) while the run is open; not offline (they are sampled into the
            run on the server).
        system_metrics_interval: Seconds between two samples of them.
        store_wait: Seconds to wait, when the run opens, for an SQLite store that another
            process holds locked, saying so; then one error line.

    Attributes:
        metrics_every_s: Metrics logged within this many seconds of the last ones sent
            wait and go with the next: one MLflow call for several short epochs. Every
            other call, and the run's end, sends what waits first.
    """

    # Each log_batch costs ~0.3-0.5 ms of Python on the outbox's thread, against 1-2 ms
    # epochs' worth of cores for a small model at 30 epochs a second; a kill -9 loses what
    # waits, as it loses MLflow's own queue, and a resume logs it from the training state.
    metrics_every_s = 0.5

    def __init__(
        self,
        tracking_uri=None,
        experiment_name=None,
        run_name=None,
        log_model=True,
        log_every_n_steps=0,
        offline=False,
        system_metrics=False,
        system_metrics_interval=1.0,
        store_wait=STORE_WAIT,
    ):
        if not isinstance(log_every_n_steps, int) or log_every_n_steps < 0:
            raise ConfigError(
                f"tracking.log_every_n_steps must be an integer >= 0 (0: off). "
                f"Received: tracking.log_every_n_steps={log_every_n_steps}"
            )
        if system_metrics is True and importlib.util.find_spec("psutil") is None:
            raise ConfigError(
                "tracking.system_metrics=true needs psutil, which MLflow samples with: pip install "
                "psutil (it is in requirements.txt). Received: tracking.system_metrics=true"
            )
        if isinstance(store_wait, bool) or not isinstance(store_wait, (int, float)) or store_wait < 0:
            raise ConfigError(
                f"tracking.store_wait must be a number of seconds >= 0 (0: do not wait for a locked "
                f"store). Received: tracking.store_wait={store_wait}"
            )
        self.store_wait = float(store_wait)
        # Metrics are queued and written by MLflow's logging thread. Unbuffered, that thread
        # blocks in a 1 s queue poll, which every run then waits out when it closes;
        # buffered, it wakes as soon as the run closes, and writes in batches.
        os.environ.setdefault("MLFLOW_ASYNC_LOGGING_BUFFERING_SECONDS", "1")
        StoreFull.install()
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        check_scheme(self.tracking_uri)
        self.experiment_name = check_experiment_name(experiment_name, DEFAULT_EXPERIMENT)
        self.run_name = run_name
        self.log_model = log_model
        self.log_every_n_steps = log_every_n_steps
        self.run_id = None
        self.offline = offline
        self.readable_uri = None if offline else self.tracking_uri
        self.system_metrics = system_metrics
        self.system_metrics_interval = system_metrics_interval
        self._monitor = None
        self._outbox = None
        self._mlflow_client = None
        self._waiting, self._last_sent = [], -float("inf")
        # A remote server can go away: bounded retries, synchronous metrics (async ones
        # fail unseen, in MLflow's thread, and are lost), and a check now, before training.
        self.remote = connect(self.tracking_uri, check=not offline)

    def _client(self):
        """The tracker's MlflowClient, made once: making one looks for a Spark session
        (~0.15 ms here), which the per-epoch calls must not pay."""
        import mlflow  # deferred: see store.py

        if self._mlflow_client is None:
            self._mlflow_client = mlflow.MlflowClient(self.tracking_uri)
        return self._mlflow_client

    def _set_experiment(self):
        """Opens the store and the experiment (both created if new); returns the experiment."""
        return open_experiment(self._client, self.tracking_uri, self.store_wait, self.experiment_name)

    def check(self):
        if self._outbox is not None:
            self._outbox.check()  # what failed on the outbox's thread stops training now
        if StoreFull.seen.is_set():
            raise OSError(errno.ENOSPC, "the MLflow store could not be written: database or disk is full")

    def prepare(self, run_id=None):
        """Opens the store and a new run's experiment before any time goes into data or
        training, so that a store or experiment that cannot be used is reported first; a
        reopened run's is its own (``run_id``), which is not created on the way."""
        if not self.offline and run_id is None:
            self._set_experiment()

    def open_sweep(self, directory, keys, overrides, labels=None):
        """Creates the store and experiment once, before any job starts (MLflow creates
        SQLite tables without a lock), and opens or continues the sweep's parent run;
        offline, the parent is spooled in the sweep dir, and nothing contacts the server."""
        if self.offline:
            parent = OfflineParent(
                mask_uri(self.tracking_uri), self.experiment_name, directory, keys, overrides, labels
            )
            log.info("tracking.offline=true: the sweep's parent run is recorded in %s only", parent.spool.directory)
            return parent
        experiment = self._set_experiment()
        parent = ParentRun(self._client(), experiment.experiment_id, directory, keys, overrides, labels)
        if parent.continued:
            log.info("continuing the sweep of %s (parent run %s)", directory, parent.run_id)
        log.info("MLflow parent run %s (%s)", parent.run_id, mask_uri(self.tracking_uri))
        return parent

    @contextlib.contextmanager
    def run(self, run_name, tags=None, run_id=None, output_dir=None):
        self.run_id = self.status = None
        self._outbox, self.reopened = None, run_id is not None
        spool = Spool(Path(output_dir or Path.cwd()) / SPOOL_DIRNAME)
        try:
            # Opened whole or not at all: an interrupt while opening lands once it is open,
            # and closes it KILLED below, instead of stranding a RUNNING run.
            with signals_deferred():
                self._open(self.run_name or run_name, tags, run_id, spool)
        except KeyboardInterrupt:
            if self.run_id:
                self._end("KILLED", "KeyboardInterrupt", "interrupted while starting")
            raise
        with closing(self._end):
            yield self
        # Everything is recorded: the close completes, and an interrupt during it is
        # raised after it (the caller reports a FINISHED run that was interrupted).
        with signals_deferred():
            if self._end_run("FINISHED"):
                log.info(
                    "MLflow run %s '%s' FINISHED in %s (experiment %s)",
                    self.run_id,
                    self._outbox.meta["run_name"],
                    mask_uri(self.tracking_uri),
                    self.experiment_name,
                )

    def _open(self, run_name, tags, run_id, spool):
        """Starts (or reopens) the run and its outbox; offline, the run is only the spool's."""
        meta = {"tracking_uri": mask_uri(self.tracking_uri), "experiment_name": self.experiment_name}
        if self.offline:
            swept, tags, link = offline_child(spool, tags)  # a job of an offline sweep: a child
            run_name = self.run_name or swept or run_name
            spool.set_aside()
            meta.update(link, run_id=None, run_name=run_name, tags=tags or {}, start_time=now_ms())
            spool.write_meta(**meta)
            log.info("tracking.offline=true: run '%s' recorded in %s only", run_name, spool.directory)
        else:
            # A reopened run stays in its own experiment, whatever the config says.
            active, self.experiment_name = start_run(
                self._client,
                self.tracking_uri,
                self.store_wait,
                self.experiment_name,
                run_name,
                tags,
                run_id,
                named=self.run_name is not None,
            )
            self.run_id = active.info.run_id
            # The experiment may be the resumed run's own; the spool keeps no password: the
            # upload takes it from the environment (or --tracking-uri).
            meta.update(experiment_name=self.experiment_name, run_id=self.run_id, run_name=active.info.run_name)
        self._outbox = Outbox(spool, meta, self._client, offline=self.offline)
        self._start_system_metrics(resumed=run_id is not None)

    def _start_system_metrics(self, resumed):
        if not self.system_metrics:
            return
        if self.offline:
            log.warning(
                "tracking.system_metrics=true: an offline run records no system metrics (MLflow samples "
                "them into the run on the server)"
            )
            return
        self._monitor = start_sampler(self.run_id, self.system_metrics_interval, resumed, self.tracking_uri)

    def _stop_system_metrics(self):
        """Stops the sampler and logs what it holds, before the run's final status."""
        monitor, self._monitor = self._monitor, None
        if monitor is not None:
            monitor.finish()

    def ui_link(self):
        if self.run_id is None or self.offline:  # an offline run is only in its spool, until uploaded
            return None
        return run_link(self._client(), self.tracking_uri, self.run_id)

    def lookup(self, run_id=None, config_hash=None):
        """The earlier runs this invocation may continue (``lookups.lookup``); a run not
        in the store is None."""
        return lookup(
            self._client, self.tracking_uri, self.store_wait, self.experiment_name, self.offline, run_id, config_hash
        )

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
                forget_active_run(self.run_id)

    def _end_run(self, status):
        """Sets the final status on the server, or in the spool after what it holds;
        returns whether the server has it."""
        import mlflow

        self.status = status
        self._stop_system_metrics()
        if self._outbox is None:  # the run opened, its outbox not yet
            mlflow.end_run(status)
            return True
        self._send_waiting()
        if self._outbox.terminate(status, lambda: mlflow.end_run(status)):
            return True
        forget_active_run(self.run_id)
        spool, name, uri = self._outbox.spool.directory, self._outbox.meta["run_name"], mask_uri(self.tracking_uri)
        if self.offline:
            log.info(
                "Offline run '%s' ended %s, recorded in %s. Upload it to %s with: %s %s",
                name,
                status,
                spool,
                uri,
                UPLOAD_COMMAND,
                spool,
            )
        else:
            log.warning(
                "MLflow run %s '%s' ended %s, but not everything reached %s: the rest and the final "
                "status are in %s. Upload them (the run stays RUNNING on the server until then) with: "
                "%s %s",
                self.run_id,
                name,
                status,
                uri,
                spool,
                UPLOAD_COMMAND,
                spool,
            )
        return False

    def _send(self, op, call, spool_op=None):
        if self._outbox is None:  # outside a run: straight through, as MLflow would
            return call()
        self._send_waiting()  # the record keeps its order
        self._outbox.send(op, call, spool_op)

    def log_params(self, params):
        import mlflow

        self._send(
            {"op": "params", "params": {k: str(v) for k, v in params.items()}}, lambda: mlflow.log_params(params)
        )

    def log_metrics(self, metrics, step):
        op = {
            "op": "metrics",
            "metrics": {k: float(v) for k, v in metrics.items()},
            "step": step,
            "timestamp": now_ms(),
        }
        if self._outbox is None:  # outside a run: straight through, as MLflow would
            return self._log_batch([op])
        self._waiting.append(op)
        if time.monotonic() - self._last_sent >= self.metrics_every_s:
            self._send_waiting()

    def _send_waiting(self):
        """Posts the metrics that wait to the outbox's thread, as one call (see the class)."""
        if self._waiting and self._outbox is not None:
            ops, self._waiting, self._last_sent = self._waiting, [], time.monotonic()
            self._outbox.post(ops, lambda: self._log_batch(ops))  # off the training thread

    def _log_batch(self, ops):
        # Synchronous, on the outbox's thread (a local SQLite write, ~7 ms here, too): a failure
        # is seen and spooled (a server away, a store locked by another process past MLflow's
        # 20 s); MLflow's own queue would drop the batch. The client's log_batch, not
        # mlflow.log_metrics: that makes two clients a call (0.43 ms here, against 0.03 ms).
        from mlflow.entities import Metric

        batch = [Metric(key, value, op["timestamp"], op["step"]) for op in ops for key, value in op["metrics"].items()]
        for start in range(0, len(batch), MAX_BATCH):
            self._client().log_batch(self.run_id, metrics=batch[start : start + MAX_BATCH], synchronous=True)

    def set_tags(self, tags):
        import mlflow

        self._send({"op": "tags", "tags": {k: str(v) for k, v in tags.items()}}, lambda: mlflow.set_tags(tags))

    def log_text(self, text, artifact_file):
        import mlflow

        directory, _, name = artifact_file.rpartition("/")
        self._send(
            None,
            lambda: mlflow.log_text(text, artifact_file),
            lambda: {
                "op": "artifact",
                "path": self._outbox.spool.add_text(text, name),
                "artifact_path": directory or None,
            },
        )

    def log_artifact(self, local_path, artifact_path=None):
        import mlflow

        self._send(
            None,
            lambda: mlflow.log_artifact(str(local_path), artifact_path),
            lambda: {"op": "artifact", "path": self._outbox.spool.add_file(local_path), "artifact_path": artifact_path},
        )

    def log_datasets(self, name, source, splits):
        described = [datasets.describe(name, source, context, x, y) for context, (x, y) in splits.items()]
        self._send(
            {"op": "inputs", "datasets": described}, lambda: datasets.log_inputs(self._client(), self.run_id, described)
        )

    def log_keras_model(self, model, input_example, step=0, metrics=()):
        """Logs the model as the run's MLflow logged model (see logged_model.py); spooled,
        it is saved with the spool and registered when the spool is uploaded."""
        import mlflow

        def live():
            mlflow.flush_async_logging()  # the final metrics, queued by MLflow, must be in the store to be linked
            logged_model.register(self._client(), self.run_id, path, step, metrics)

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model"
            logged_model.save(model, input_example, path)
            self._send(
                None,
                live,
                lambda: {
                    "op": "model",
                    "path": self._outbox.spool.add_file(path),
                    "step": step,
                    "metrics": list(metrics),
                },
            )
