"""What could not reach the tracking server, kept on disk and uploaded later.

A spool is a directory (``<output_dir>/mlflow-spool``) with:

- ``meta.json``: the tracking URI, experiment, run id (None for an offline run) and name;
- ``ops.jsonl``: the tracker calls that were not sent, in order, one JSON object a line;
- ``files/``: copies of the artifacts those calls named (taken when the call was made, so
  later changes to the output dir do not change what is uploaded);
- ``state.json``: how far an upload got (the run id it uploads into, ops sent so far).

``python -m kerastrack.upload <output_dir>`` replays it into the run on the server. The
state is written after every batch of ops the server accepted, so a second upload (or one
after a broken one) sends only what is left: nothing is duplicated.

MLflow has no offline queue of its own (its async logging keeps metrics in memory only,
and loses them when the server is away), hence this module.
"""

import contextlib
import json
import logging
import os
import shutil
import time
from pathlib import Path

from kerastrack.secrets import drop_password, has_password, is_masked, mask_text, mask_uri

log = logging.getLogger(__name__)
SPOOL_DIRNAME = "mlflow-spool"
UPLOAD_COMMAND = "python -m kerastrack.upload"
# Bounded retries for every HTTP call MLflow makes (its defaults retry for minutes): 2
# retries, 0 s then ~2 s apart, 10 s without an answer is a timeout. The user's own
# settings of these variables win.
HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "0.5",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def bound_http_retries():
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)


def now_ms():
    return int(time.time() * 1000)


def unreachable(exc):
    """Whether an error means the server could not be reached (or answered 5xx), as
    opposed to a request it refused (a bad value): only those are spooled."""
    import requests

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, requests.HTTPError):
            return exc.response is None or exc.response.status_code >= 500
        if isinstance(exc, (requests.RequestException, ConnectionError, TimeoutError)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


class Spool:
    """The spool directory of one run.

    Args:
        directory: The spool directory, or an output dir that holds one.
    """

    def __init__(self, directory):
        directory = Path(directory)
        self.directory = directory / SPOOL_DIRNAME if (directory / SPOOL_DIRNAME).is_dir() else directory

    @property
    def ops_file(self):
        return self.directory / "ops.jsonl"

    def exists(self):
        return (self.directory / "meta.json").is_file()

    def meta(self):
        return json.loads((self.directory / "meta.json").read_text())

    def write_meta(self, **meta):
        self.directory.mkdir(parents=True, exist_ok=True)
        _write_json(self.directory / "meta.json", meta)

    def state(self):
        path = self.directory / "state.json"
        return json.loads(path.read_text()) if path.is_file() else {"run_id": None, "uploaded": 0}

    def save_state(self, state):
        _write_json(self.directory / "state.json", state)

    def ops(self):
        if not self.ops_file.is_file():
            return []
        with open(self.ops_file) as f:
            return [json.loads(line) for line in f if line.strip()]

    def pending(self):
        return self.ops()[self.state()["uploaded"]:]

    def append(self, op):
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.ops_file, "a") as f:
            f.write(json.dumps(op) + "\n")
            f.flush()
            os.fsync(f.fileno())  # a crash right after must not lose the line

    def add_file(self, local_path):
        """Copies a file or directory into the spool; returns its path relative to it."""
        local_path = Path(local_path)
        target = self._new_file_dir() / local_path.name
        if local_path.is_dir():
            shutil.copytree(local_path, target)
        else:
            shutil.copy2(local_path, target)
        return str(target.relative_to(self.directory))

    def add_text(self, text, name):
        target = self._new_file_dir() / name
        target.write_text(text)
        return str(target.relative_to(self.directory))

    def _new_file_dir(self):
        files = self.directory / "files"
        files.mkdir(parents=True, exist_ok=True)
        directory = files / str(sum(1 for _ in files.iterdir()))
        directory.mkdir()
        return directory


def _write_json(path, value):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(value, indent=1))
    os.replace(tmp, path)  # atomic: a crash leaves the old state or the new, never half


def upload(spool, client, log_progress=print):
    """Replays a spool's pending ops into its run (created first for an offline run).

    Args:
        spool: The Spool.
        client: An ``mlflow.MlflowClient`` on the server.
        log_progress: Called with one line per kind of thing uploaded.

    Returns:
        (run_id, counts): the run and how many of each op were sent.
    """
    meta, state = spool.meta(), spool.state()
    run_id = state["run_id"] or meta.get("run_id")
    if run_id is None:  # an offline run: create it once, remember it before anything else
        experiment = client.get_experiment_by_name(meta["experiment_name"])
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(meta["experiment_name"])
        run = client.create_run(experiment_id, start_time=meta.get("start_time"), tags=meta.get("tags") or {},
                                run_name=meta.get("run_name"))
        run_id = run.info.run_id
        log_progress(f"created run {run_id} '{run.info.run_name}' in experiment {meta['experiment_name']}")
    state["run_id"] = run_id
    spool.save_state(state)
    ops = spool.ops()
    counts = {}
    i = state["uploaded"]
    while i < len(ops):
        # Consecutive metrics/params/tags go in one log_batch (the client splits it to the
        # server's limits); files and the final status one at a time, status last.
        j = i + 1
        if ops[i]["op"] in ("metrics", "params", "tags"):
            while j < len(ops) and ops[j]["op"] in ("metrics", "params", "tags"):
                j += 1
        _send(client, run_id, spool, ops[i:j], counts)
        state["uploaded"] = j
        spool.save_state(state)
        i = j
    for kind, n in counts.items():
        log_progress(f"uploaded {n} {kind} to run {run_id}")
    return run_id, counts


def _send(client, run_id, spool, ops, counts):
    from mlflow.entities import Metric, Param, RunTag

    metrics, params, tags = [], {}, {}
    for op in ops:
        kind = op["op"]
        if kind == "metrics":
            metrics += [Metric(k, v, op["timestamp"], op["step"]) for k, v in op["metrics"].items()]
        elif kind == "params":
            params.update(op["params"])
        elif kind == "tags":
            tags.update(op["tags"])
        elif kind == "artifact":
            path = spool.directory / op["path"]
            if path.is_dir():
                client.log_artifacts(run_id, str(path), op.get("artifact_path"))
            else:
                client.log_artifact(run_id, str(path), op.get("artifact_path"))
            _count(counts, "artifacts")
        elif kind == "terminate":
            client.set_terminated(run_id, op["status"], op.get("end_time"))
            _count(counts, f"final status ({op['status']})")
    if metrics or params or tags:
        client.log_batch(run_id, metrics=metrics, params=[Param(k, str(v)) for k, v in params.items()],
                         tags=[RunTag(k, str(v)) for k, v in tags.items()])
        _count(counts, "metric values", len(metrics))
        _count(counts, "params", len(params))
        _count(counts, "tags", len(tags))


def _count(counts, kind, n=1):
    if n:
        counts[kind] = counts.get(kind, 0) + n


class Outbox:
    """Sends a run's tracker calls to the server; what cannot reach it goes to the spool.

    A call that fails for want of the server (after MLflow's bounded HTTP retries) opens
    a circuit breaker: for ``cooldown`` seconds every call goes straight to the spool, so
    an outage costs training one retry cycle, not one per epoch. After that, the next call
    first uploads what was spooled (in order) and, if that works, goes back to live
    logging. Once something was spooled, the final status is set only after it.

    Args:
        spool: Where calls go that could not be sent.
        meta: The spool's meta (URI, experiment, run id, name), written with the first op.
        client_factory: Makes an ``mlflow.MlflowClient`` on the server (for draining).
        offline: Send nothing: everything goes to the spool.
        cooldown: Seconds to spool without trying, once the server was found down.
    """

    def __init__(self, spool, meta, client_factory, offline=False, cooldown=30.0):
        self.spool = spool
        self.meta = meta
        self.client_factory = client_factory
        self.offline = offline
        self.cooldown = cooldown
        self.down_until = None
        self.warned = False

    @property
    def spooled(self):
        return self.spool.exists() and bool(self.spool.pending())

    def send(self, op, call, spool_op=None):
        """Runs ``call()`` (the live call); if the server is away, spools ``op`` instead.

        Args:
            op: The op as the spool stores it (files already copied), or None when
                ``spool_op`` makes it.
            call: Zero-argument function doing the call on the server.
            spool_op: Zero-argument function that returns the op; for ops whose files
                are only made when spooled (a saved model).
        """
        if self.offline or not self._try_live():
            return self._spool(op or spool_op())
        try:
            call()
        except Exception as exc:
            if not unreachable(exc):
                raise
            self._trip(exc)
            self._spool(op or spool_op())

    def terminate(self, status, end_call):
        """Ends the run: on the server when nothing is left in the spool, else in the spool
        (the upload sets it after everything else). Returns True if the server has it."""
        op = {"op": "terminate", "status": status, "end_time": now_ms()}
        if not self.offline and self.spooled:
            self.down_until = None  # the last chance to drain: try it, whatever the breaker says
            self._try_live()
        if self.offline or self.spooled or (self.down_until and time.monotonic() < self.down_until):
            self._spool(op)
            return False
        try:
            end_call()
            return True
        except Exception as exc:
            if not unreachable(exc):
                raise
            self._trip(exc)
            self._spool(op)
            return False

    def _try_live(self):
        """Whether to call the server now: not while the breaker is open; after it, only
        once the spool has been drained (order is kept)."""
        if self.down_until is not None and time.monotonic() < self.down_until:
            return False
        if not self.spooled:
            return True
        try:
            upload(self.spool, self.client_factory(), log_progress=log.info)
            log.warning("MLflow server %s is back: the spooled calls are uploaded", mask_uri(self.meta["tracking_uri"]))
            self.down_until = None
            return True
        except Exception as exc:
            if not unreachable(exc):
                raise
            self._trip(exc)
            return False

    def _trip(self, exc):
        self.down_until = time.monotonic() + self.cooldown
        if not self.warned:
            self.warned = True
            log.warning("MLflow server %s unreachable (%s): training goes on, and what cannot be sent "
                        "is kept in %s; upload it later with: %s %s", mask_uri(self.meta["tracking_uri"]),
                        _short(exc), self.spool.directory, UPLOAD_COMMAND, self.spool.directory)

    def _spool(self, op):
        if not self.spool.exists():
            self.spool.write_meta(**self.meta)
        self.spool.append(op)


def _short(exc):
    text = mask_text(" ".join(str(exc).split()))  # MLflow's errors name the URL called, password included
    return text if len(text) < 300 else text[:300] + "..."


@contextlib.contextmanager
def offline_run(close):
    """Maps how the block ended to a final status, like MlflowTracker.run(): ``close(status,
    error_type, message, trace, pruned)`` records it (in the spool)."""
    import traceback

    from kerastrack.signals import interrupted

    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - whatever it is, the run must not stay RUNNING
        if interrupted(exc):
            close("KILLED", "KeyboardInterrupt", "interrupted (Ctrl-C or SIGTERM)")
        elif type(exc).__name__ == "TrialPruned":
            close("KILLED", type(exc).__name__, str(exc) or "pruned by the search", pruned=True)
        else:
            close("FAILED", type(exc).__name__, str(exc), traceback.format_exc())
        raise
    else:
        close("FINISHED")


def check_server(uri, timeout=5, key="tracking.tracking_uri", credentials=None):
    """Raises ConfigError unless the tracking server at ``uri`` answers an API call within
    ``timeout`` seconds (one try: this runs before any training, and the user waits).

    Args:
        uri: The server.
        timeout: Seconds to wait for the answer.
        key: The setting the URI came from, for the messages.
        credentials: How to give credentials, for the message when the server wants them.
    """
    import requests
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    from kerastrack.errors import ConfigError

    start = ("Start one with `python -m kerastrack.ui` or `mlflow server --backend-store-uri "
             "sqlite:///mlflow.db --host 127.0.0.1 --port 5000`, or train without it: tracking.offline=true "
             f"(kept in <output_dir>/{SPOOL_DIRNAME}, uploaded later with `{UPLOAD_COMMAND} <output_dir>`) "
             "or tracking=none (nothing recorded).")
    shown = mask_uri(uri)
    received = f"Received: {key}={shown}"
    try:
        response = http_request(get_default_host_creds(uri), "/api/2.0/mlflow/experiments/search", "POST",
                                max_retries=0, timeout=timeout, raise_on_status=False, json={"max_results": 1})
    except Exception as exc:  # noqa: BLE001 - MLflow wraps every transport error in MlflowException
        reason, cause = _short(exc), exc
        while cause is not None:
            if isinstance(cause, requests.Timeout):
                reason = f"no answer within {timeout} s (timeout)"
                break
            if isinstance(cause, requests.ConnectionError):
                reason = "connection refused" if "refused" in str(cause).lower() else f"connection failed ({_short(cause)})"
                break
            cause = cause.__cause__ or cause.__context__
        raise ConfigError(f"the MLflow tracking server at {shown} is unreachable: {reason}. {start} {received}") from None
    if response.status_code in (401, 403):
        raise ConfigError(
            f"the MLflow tracking server at {shown} needs credentials (HTTP {response.status_code}): "
            f"{credentials or 'set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment.'} "
            f"{received}")
    if response.status_code != 200:
        raise ConfigError(f"the MLflow tracking server at {shown} answered HTTP {response.status_code} "
                          f"({_short(response.text)}) instead of working. {start} {received}")


def upload_dir(path, tracking_uri=None, log_progress=print):
    """Uploads the spool in ``path`` (a run's output dir or its spool dir).

    The spool keeps the run's URI without its password: the credentials then come from
    the environment (MLFLOW_TRACKING_USERNAME/PASSWORD, PGPASSWORD, ...), or ``tracking_uri``.

    Args:
        path: The directory.
        tracking_uri: The server; None: the one the run was logging to.
        log_progress: Called with each line to show the user.

    Returns:
        The run id on the server, or None when the spool held nothing left to send.

    Raises:
        ConfigError: No spool there, or the server is unreachable (nothing is lost: what
            was sent is marked, and running it again sends the rest).
    """
    from urllib.parse import urlparse

    from kerastrack.errors import ConfigError
    from kerastrack.tracking import open_store

    spool = Spool(path)
    if not spool.exists():
        raise ConfigError(f"{path} holds no MLflow spool (no {SPOOL_DIRNAME}/meta.json): give a run's output dir "
                          f"or its {SPOOL_DIRNAME} dir. Received: path={path}")
    meta, state = spool.meta(), spool.state()
    uri = tracking_uri or meta["tracking_uri"]
    if is_masked(uri):  # the masked password is no password: the environment gives the real one
        uri = drop_password(uri)
    shown = mask_uri(uri)
    if not spool.pending():
        log_progress(f"{spool.directory}: nothing left to upload (run {state['run_id'] or meta['run_id']}, {shown})")
        return None
    if urlparse(uri).scheme in ("http", "https"):
        bound_http_retries()
        if has_password(uri):  # MLflow prints "View run ... at: <the URI>" otherwise
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        check_server(uri, key="tracking_uri", credentials=(
            "the spool keeps no password: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
            "MLFLOW_TRACKING_TOKEN) in the environment, or pass --tracking-uri http://USER:PASSWORD@host:port."))
        import mlflow

        client = mlflow.MlflowClient(uri)
    else:
        client = open_store(uri)
    try:
        run_id, _ = upload(spool, client, log_progress)
    except Exception as exc:
        if not unreachable(exc):
            raise
        raise ConfigError(f"the upload to {shown} stopped, the server went away ({_short(exc)}); what was sent "
                          f"is marked: run the command again to send the rest. Received: path={path}") from None
    log_progress(f"{spool.directory}: everything uploaded to run {run_id} at {shown}")
    return run_id
