"""Helpers shared by the test modules: where the project is, ``python train.py`` and
``python -m kerastrack.ui`` as a user runs them, and readers of what an MLflow store holds.

Plain functions and constants, imported by name (``from tests.helpers import run_train``).
Fixtures live in conftest.py, where pytest finds them; no test module imports from conftest or
from another test module.
"""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "src" / "kerastrack" / "conf"
CHROMIUM = "/usr/bin/chromium"  # Debian's chromium package; Playwright drives it (no browser download)


def options(group):
    """Every option of a config group: one YAML file each, e.g. ``options("optimizer")``."""
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


# -- processes, as a user starts them --


def run_train(cwd, *overrides, script=ROOT / "train.py", env=None):
    """``python train.py`` as a user runs it from ``cwd``, with ``env`` added to a clean
    environment: the test process's MLFLOW_* variables are dropped, so that only ``env``
    says where runs go and with which credentials.

    Returns:
        The ``subprocess.CompletedProcess`` (text stdout and stderr).
    """
    base = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    return subprocess.run(
        [sys.executable, str(script), *overrides],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def multirun(monkeypatch, cwd, task, *overrides):
    """``python train.py -m OVERRIDES`` in this process from ``cwd``, with ``task`` as the job
    function (train.py's own would import TensorFlow): real Hydra, its sweeper, the basic
    launcher and kerastrack's callbacks. Hydra leaves logging alone (pytest's capture stays),
    and the sweep's signal handlers are undone after it.

    Returns:
        What the sweeper returned.
    """
    import hydra

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(
        sys, "argv", ["train.py", "-m", "hydra/job_logging=none", "hydra/hydra_logging=none", *overrides]
    )
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return hydra.main(config_path=str(CONF), config_name="train", version_base="1.3")(task)()
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def children(pid):
    """Pids whose parent is ``pid`` (from /proc: the ui's server is in its own session)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


class UiProcess:
    """``python -m kerastrack.ui`` as a subprocess in its own process group, as a terminal runs it.

    A context manager: leaving it kills what is still running.

    Args:
        cwd: Where it starts (its default store is ``cwd/mlflow.db``).
        args: More command-line arguments.
    """

    def __init__(self, cwd, *args):
        from kerastrack.tracking.server import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "kerastrack.ui", "--port", str(self.port), *args],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )

    def wait_ready(self, timeout=90):
        """Reads its output until it prints the URL; returns the output so far."""
        deadline = time.monotonic() + timeout
        lines = []
        for line in self.process.stdout:  # ends when the process exits
            lines.append(line)
            if line.startswith("MLflow UI: "):
                return "".join(lines)
            if time.monotonic() > deadline:
                break
        self.kill()
        raise AssertionError(f"kerastrack.ui did not print its URL:\n{''.join(lines)}")

    def stop(self, signum=signal.SIGINT, timeout=30):
        """Sends ``signum`` to the ui process only (the server's group is its job); returns its exit code."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout)
        finally:
            self.kill()

    def kill(self):
        """Kills the ui's process group and its server's."""
        with contextlib.suppress(ProcessLookupError):
            for pid in children(self.process.pid):
                os.killpg(pid, signal.SIGKILL)
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.process.poll() is None:
            self.kill()


def train_in_process(uri, out, *overrides):
    """Trains one tiny run (200 digits, one epoch) into the store ``uri`` in this process, its
    files in ``out``; returns its run id."""
    import mlflow
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from kerastrack.pipeline import train

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                "trainer.epochs=1",
                "trainer.verbose=0",
                "data.limit=200",
                "callbacks=none",
                f"paths.output_dir={out}",
                f"tracking.tracking_uri={uri}",
                *overrides,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    try:
        train(cfg)
    finally:
        HydraConfig.instance().cfg = None
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"params.`paths.output_dir` = '{out}'",
    )
    return run.info.run_id


# -- what a store holds --


def store_uri(cwd):
    """The store ``python train.py`` uses when started in ``cwd``: ``cwd/mlflow.db``."""
    return f"sqlite:///{Path(cwd) / 'mlflow.db'}"


def store_client(cwd):
    """An ``MlflowClient`` on the store of the launch directory ``cwd`` (see ``store_uri``).

    Opening a store that is not there creates it: check for ``cwd/mlflow.db`` first where
    its absence is what a test expects.
    """
    import mlflow

    return mlflow.MlflowClient(store_uri(cwd))


def history(client, run, key):
    """``[(step, value), ...]`` of metric ``key`` in ``run``, by step."""
    return [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]


def steps(client, run_id, key):
    """The steps of metric ``key`` in the run, one entry per logged value, sorted: a step
    logged twice shows twice."""
    return sorted(m.step for m in client.get_metric_history(run_id, key))


def artifacts(client, run_id, path=None):
    """The paths of every artifact file of the run (under ``path``), at any depth."""
    found = []
    for item in client.list_artifacts(run_id, path):
        found += artifacts(client, run_id, item.path) if item.is_dir else [item.path]
    return found


def as_in_a_terminal():
    """``preexec_fn`` for a ``python train.py`` that a test sends Ctrl-C: SIGINT's default
    action, as a terminal gives it. A shell starting a background job (pytest run with
    ``&``, some CI runners) passes SIGINT on ignored, and Python then keeps ignoring it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
