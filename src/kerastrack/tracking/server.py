"""A real ``mlflow server`` process: started light, on loopback, in its own process group.

Used by ``python -m kerastrack.ui`` and by the tests that need a tracking server. MLflow
has no API to run its server in-process and stop it cleanly: the CLI starts a process
tree (uvicorn/gunicorn workers, a job runner), so it is started in a new session and
stopped by signalling the whole process group, never only its pid. The group's leader is a
watchdog (``server_watch.py``) that ends the group when the process that started it dies.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from kerastrack.utils.secrets import mask_uri

LOOPBACK = "127.0.0.1"
WATCHDOG = Path(__file__).with_name("server_watch.py")


def free_port(host=LOOPBACK):
    """A TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class MlflowServer:
    """``mlflow server`` on ``host:port``, as a context manager.

    The defaults are the light configuration (measured in docs/performance.md): one worker
    and no job runner, ~5 s to start, 2 processes, ~0.5 GB (the CLI defaults take 11-13 s,
    15 processes and 2.4 GB).

    Args:
        backend_store_uri: The store, e.g. ``sqlite:////abs/mlflow.db`` or
            ``postgresql://user@127.0.0.1:5432/db``.
        artifacts_destination: Where a served-artifacts server keeps artifacts (a
            directory or URI); None: MLflow's default (``./mlartifacts`` of ``cwd``).
        host: The interface to bind; loopback unless told otherwise.
        port: None: a free port.
        workers: Server worker processes.
        app_name: e.g. ``"basic-auth"`` for MLflow's authentication app.
        extra_args: More ``mlflow server`` arguments.
        env: Extra environment variables for the server.
        cwd: The server's working directory.
        log_file: Where the server's stdout/stderr go; None: discarded.
    """

    def __init__(
        self,
        backend_store_uri,
        artifacts_destination=None,
        host=LOOPBACK,
        port=None,
        workers=1,
        app_name=None,
        extra_args=(),
        env=None,
        cwd=None,
        log_file=None,
    ):
        self.backend_store_uri = backend_store_uri
        self.artifacts_destination = artifacts_destination
        self.host = host
        self.port = port or free_port(host)
        self.workers = workers
        self.app_name = app_name
        self.extra_args = list(extra_args)
        self.env = dict(env or {})
        self.cwd = cwd
        self.log_file = log_file
        self.process = None

    @property
    def url(self):
        return f"http://{self.host}:{self.port}"

    def command(self):
        cmd = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            self.backend_store_uri,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
        ]
        if self.artifacts_destination:
            cmd += ["--artifacts-destination", str(self.artifacts_destination)]
        if self.app_name:
            cmd += ["--app-name", self.app_name]
        return cmd + self.extra_args

    def environment(self):
        """The server's environment: this process's (MLflow's telemetry off unless the user
        turned it on: kerastrack.tracking sets it), no job runner, then ``env``."""
        return {
            "MLFLOW_DISABLE_TELEMETRY": "true",
            **os.environ,
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            **self.env,
        }

    def start(self, timeout=90):
        """Starts the server and waits until it answers ``/health``."""
        env = self.environment()
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        try:
            # Through the watchdog, which leads the new group and ends it if this process dies
            # (kill -9 included): the write end of its stdin pipe stays here, unwritten.
            self.process = subprocess.Popen(
                [sys.executable, "-I", str(WATCHDOG), *self.command()],
                env=env,
                cwd=self.cwd,
                stdin=subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if self.log_file:
                out.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                command = " ".join(mask_uri(arg) for arg in self.command())
                raise RuntimeError(
                    f"mlflow server exited with code {self.process.returncode}: "
                    f"{command} (log: {self.log_file or 'discarded'})"
                )
            if self.healthy():
                return self
            time.sleep(0.25)
        self.stop()
        raise TimeoutError(f"mlflow server did not answer {self.url}/health within {timeout} s")

    def healthy(self):
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"{self.url}/health", timeout=2) as response:
                return response.status == 200
        return False

    def stop(self, timeout=15):
        """Stops the whole process group: SIGTERM, then SIGKILL after ``timeout`` s."""
        if self.process is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        # Workers may outlive the leader; the group is gone only when none is left.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.process.stdin.close()
        self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def sqlite_uri(path):
    """``sqlite:///`` URI of an absolute path."""
    return f"sqlite:///{Path(path).resolve()}"
