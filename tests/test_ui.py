"""``python -m kerastrack.ui``: which store it shows, bad input, and a clean Ctrl-C."""

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from kerastrack import ui
from kerastrack.errors import ConfigError
from kerastrack.tracking.server import free_port


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def children(pid):
    """Pids whose parent is ``pid`` (from /proc: the server is in its own session)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


class UiProcess:
    """``python -m kerastrack.ui`` as a subprocess in its own process group, as a terminal runs it.

    Args:
        cwd: Where it starts (its default store is ``cwd/mlflow.db``).
        args: More command-line arguments.
    """

    def __init__(self, cwd, *args):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        self.process = subprocess.Popen([sys.executable, "-m", "kerastrack.ui", "--port", str(self.port), *args],
                                        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True, start_new_session=True)

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


def test_default_store_is_mlflow_db_in_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "mlflow.db").touch()
    assert ui.store_uri(cwd=tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///other.db")
    (tmp_path / "other.db").touch()
    assert ui.store_uri(cwd=tmp_path) == f"sqlite:///{tmp_path / 'other.db'}"


def test_a_missing_store_is_refused_not_created(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"no MLflow store at .*mlflow\.db: run `python train.py`.*Received: "):
        ui.store_uri()
    assert ui.main([]) == 2
    assert "Error: there is no MLflow store" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()


def test_a_tracking_server_already_has_its_ui(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert ui.main([]) == 0
    assert "its UI is already there: open http://127.0.0.1:5999" in capsys.readouterr().out


def test_a_busy_port_is_refused_early(tmp_path, monkeypatch, capsys):
    (tmp_path / "mlflow.db").touch()
    with contextlib.closing(__import__("socket").socket()) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert ui.main(["--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--port", str(port)]) == 2
    assert f"Received: port={port}" in capsys.readouterr().err


@pytest.mark.parametrize("host, loopback", [("127.0.0.1", True), ("localhost", True), ("::1", True),
                                            ("0.0.0.0", False), ("192.168.1.5", False), ("example.org", False)])
def test_only_loopback_counts_as_local(host, loopback):
    assert ui.is_loopback(host) is loopback


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=lambda s: s.name)
def test_ui_serves_the_store_and_stops_cleanly(store, tmp_path, signum):
    with UiProcess(tmp_path, "--backend-store-uri", store) as proc:
        output = proc.wait_ready()
        assert f"MLflow UI: {proc.url}" in output
        with urllib.request.urlopen(f"{proc.url}/ajax-api/2.0/mlflow/experiments/search?max_results=10") as r:
            assert r.status == 200 and b"experiments" in r.read()
        servers = children(proc.process.pid)
        assert servers, "the ui process has no server child"
        assert all(os.getpgid(pid) == pid != proc.process.pid for pid in servers)  # its own group

        assert proc.stop(signum) == 0
        rest = proc.process.stdout.read()
        assert "MLflow UI stopped." in rest
        assert not group_alive(proc.process.pid)
        for pgid in servers:
            assert not group_alive(pgid), f"server process group {pgid} left behind"
    assert list(tmp_path.iterdir()) == []  # nothing written where it was started
