"""Calls to a tracking server that may be away: bounded retries, a check before training,
and the ``Outbox`` that spools what cannot be sent and uploads it when the server is back."""

import logging
import os
import time
from urllib.parse import urlparse

from kerastrack.errors import ConfigError, chain
from kerastrack.tracking.spool import SPOOL_DIRNAME, upload
from kerastrack.utils.background import Worker
from kerastrack.utils.secrets import has_password, mask_text, mask_uri

log = logging.getLogger(__name__)
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


def connect(uri, check=True, **check_args):
    """Readies MLflow for the server at an http(s) ``uri``: bounded retries, no URL with its
    password printed, and (``check``) the server answering now, before any work.

    Returns:
        Whether ``uri`` is a server (else nothing was done).
    """
    if urlparse(uri).scheme not in ("http", "https"):
        return False
    for key, value in HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    if has_password(uri):  # MLflow prints "View run ... at: <the URI>" otherwise
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    if check:
        check_server(uri, **check_args)
    return True


def store_locked(exc):
    """Whether ``exc`` is SQLite's "database is locked" (another process holds the store)."""
    return "database is locked" in str(exc)


def now_ms():
    return int(time.time() * 1000)


def unreachable(exc):
    """Whether an error means the server could not be reached (or answered 5xx), or a local
    store stayed locked by another process past MLflow's wait (20 s), as opposed to a
    request refused (a bad value): only those are spooled."""
    import requests

    for cause in chain(exc):
        if store_locked(cause):
            return True
        if isinstance(cause, requests.HTTPError):
            return cause.response is None or cause.response.status_code >= 500
        if isinstance(cause, (requests.RequestException, ConnectionError, TimeoutError)):
            return True
    return False


class Outbox:
    """Sends a run's tracker calls to the server; what cannot reach it goes to the spool.

    A call that fails for want of the server (after MLflow's bounded HTTP retries) opens
    a circuit breaker: for ``cooldown`` seconds every call goes straight to the spool, so
    an outage costs training one retry cycle, not one per epoch. After that, the next call
    first uploads what was spooled (in order) and, if that works, goes back to live
    logging. Once something was spooled, the final status is set only after it.

    Per-epoch metrics are ``post``-ed: sent in order by the outbox's own thread, so that the
    training thread does not wait for MLflow (~0.3 ms a call, more for a server). Every other
    call, and the final status, first waits until what was posted is sent, so the record
    keeps its order; a failure there is raised on the next call.

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
        self._posted = None

    @property
    def spooled(self):
        return self.spool.exists() and bool(self.spool.pending())

    def post(self, op, call):
        """``send(op, call)`` later, in order, on the outbox's thread (``op``: one op or a list)."""
        if self._posted is None:
            self._posted = Worker("outbox")
        self._posted.put(self._send, op, call)

    def flush(self):
        """Waits until everything posted is sent (or spooled); raises what failed there."""
        if self._posted is not None:
            self._posted.join()
        self.check()

    def check(self):
        """Raises what failed on the outbox's thread since the last call, once."""
        if self._posted is not None and (failure := self._posted.take_failure()) is not None:
            raise failure

    def send(self, op, call, spool_op=None):
        """Runs ``call()`` (the live call); if the server is away, spools ``op`` instead.

        Args:
            op: The op as the spool stores it (files already copied), or None when
                ``spool_op`` makes it.
            call: Zero-argument function doing the call on the server.
            spool_op: Zero-argument function that returns the op; for ops whose files
                are only made when spooled (a saved model).
        """
        self.flush()
        self._send(op, call, spool_op)

    def _send(self, op, call, spool_op=None):
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
        if self._posted is not None:  # the run ends, and its thread: what it could not send was raised already
            self._posted.stop()
            self._posted = None
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
            log.warning(
                "MLflow %s %s is back: the spooled calls are uploaded",
                self._kind(),
                mask_uri(self.meta["tracking_uri"]),
            )
            self.down_until = None
            return True
        except Exception as exc:
            if not unreachable(exc):
                raise
            self._trip(exc)
            return False

    def _kind(self):
        return "server" if urlparse(self.meta["tracking_uri"]).scheme in ("http", "https") else "store"

    def _trip(self, exc):
        self.down_until = time.monotonic() + self.cooldown
        if not self.warned:
            self.warned = True
            locked = store_locked(exc)
            log.warning(
                "MLflow %s %s %s (%s): training goes on, and what cannot be sent is kept in %s, sent when "
                "it is back (or later with: %s %s)",
                self._kind(),
                mask_uri(self.meta["tracking_uri"]),
                "locked by another process" if locked else "unreachable",
                "database is locked" if locked else short_error(exc),
                self.spool.directory,
                UPLOAD_COMMAND,
                self.spool.directory,
            )

    def _spool(self, op):
        """Spools an op, or a list of them (several epochs' metrics sent as one call)."""
        if not self.spool.exists():
            self.spool.write_meta(**self.meta)
        for one in op if isinstance(op, list) else [op]:
            self.spool.append(one)


def short_error(exc):
    text = mask_text(" ".join(str(exc).split()))  # MLflow's errors name the URL called, password included
    return text if len(text) < 300 else text[:300] + "..."


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
    from mlflow.utils.credentials import get_default_host_creds  # mlflow: deferred, see store.py
    from mlflow.utils.rest_utils import http_request

    start = (
        "Start one with `python -m kerastrack.ui` or `mlflow server --backend-store-uri "
        "sqlite:///mlflow.db --host 127.0.0.1 --port 5000`, or train without it: tracking.offline=true "
        f"(kept in <output_dir>/{SPOOL_DIRNAME}, uploaded later with `{UPLOAD_COMMAND} <output_dir>`) "
        "or tracking=none (nothing recorded)."
    )
    shown = mask_uri(uri)
    received = f"Received: {key}={shown}"
    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/search",
            "POST",
            max_retries=0,
            timeout=timeout,
            raise_on_status=False,
            json={"max_results": 1},
        )
    except Exception as exc:  # noqa: BLE001 - MLflow wraps every transport error in MlflowException
        reason = short_error(exc)
        for cause in chain(exc):
            if isinstance(cause, requests.Timeout):
                reason = f"no answer within {timeout} s (timeout)"
                break
            if isinstance(cause, requests.ConnectionError):
                reason = (
                    "connection refused"
                    if "refused" in str(cause).lower()
                    else f"connection failed ({short_error(cause)})"
                )
                break
        raise ConfigError(
            f"the MLflow tracking server at {shown} is unreachable: {reason}. {start} {received}"
        ) from None
    if response.status_code in (401, 403):
        raise ConfigError(
            f"the MLflow tracking server at {shown} needs credentials (HTTP {response.status_code}): "
            f"{credentials or 'set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment.'} "
            f"{received}"
        )
    if response.status_code != 200:
        raise ConfigError(
            f"the MLflow tracking server at {shown} answered HTTP {response.status_code} "
            f"({short_error(response.text)}) instead of working. {start} {received}"
        )
