"""``python -m kerastrack.ui``: which store it shows, bad input, and a clean Ctrl-C."""

import contextlib
import os
import signal
import time
import urllib.request

import pytest

from kerastrack import ui
from kerastrack.errors import ConfigError
from kerastrack.tracking.server import free_port
from tests.helpers import UiProcess, children


def group_alive(pgid):
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


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


def test_a_tracking_server_that_does_not_answer_is_named(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert ui.main([]) == 2
    assert "Error: the MLflow tracking server at http://127.0.0.1:5999 is unreachable" in capsys.readouterr().err


def test_a_busy_port_is_refused_early(tmp_path, monkeypatch, capsys):
    (tmp_path / "mlflow.db").touch()
    with contextlib.closing(__import__("socket").socket()) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert ui.main(["--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--port", str(port)]) == 2
    assert f"Received: port={port}" in capsys.readouterr().err


@pytest.mark.parametrize("port", ["99999", "0", "abc"])
def test_a_port_out_of_range_is_refused_by_the_command_line(port, capsys):
    with pytest.raises(SystemExit) as done:
        ui.main(["--port", port])
    assert done.value.code == 2
    assert f"argument --port: must be an integer in [1, 65535]. Received: port={port}" in capsys.readouterr().err


def test_a_port_another_ui_holds_is_refused_before_its_check(tmp_path, capsys):
    (tmp_path / "mlflow.db").touch()
    port = free_port()
    with ui.claim_port(port):  # as a UI that is starting holds it: nothing listens there yet
        assert ui.main(["--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after MLflow's lines creating the empty store
    assert err.startswith(f"Error: another python -m kerastrack.ui is starting or running on port {port}")
    assert err.endswith(f"Received: port={port}")


@pytest.mark.parametrize(
    "host, loopback",
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("192.168.1.5", False),
        ("example.org", False),
    ],
)
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


@pytest.mark.slow
def lock_held(path, timeout=60):
    """Waits until some process holds a lock on ``path``, read from the kernel's table
    (/proc/locks) so that looking does not take the lock from the process about to."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            inode = f":{os.stat(path).st_ino} "
            with open("/proc/locks") as locks:
                if any(inode in line for line in locks):
                    return True
        time.sleep(0.05)
    return False


def test_a_second_ui_on_the_port_is_refused_and_kill_9_of_the_ui_leaves_no_server(store, tmp_path):
    import tempfile
    from pathlib import Path

    with UiProcess(tmp_path, "--backend-store-uri", store) as first:
        # Before its server answers (the two would race for the port without the lock), but
        # after the first holds the lock: otherwise the second may be first to it.
        assert lock_held(Path(tempfile.gettempdir()) / f"kerastrack-ui-{first.port}.lock")
        with UiProcess(tmp_path, "--backend-store-uri", store, "--port", str(first.port)) as second:
            assert second.process.wait(60) == 2  # started together: the first holds the port
            out = second.process.stdout.read().strip()
        assert out.startswith(f"Error: another python -m kerastrack.ui is starting or running on port {first.port}")
        assert len(out.splitlines()) == 1
        first.wait_ready()
        (group,) = children(first.process.pid)
        os.kill(first.process.pid, signal.SIGKILL)  # no handler runs: the watchdog must end the server
        first.process.wait(10)
        deadline = time.monotonic() + 60
        while group_alive(group) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not group_alive(group), "the server outlived its ui's kill -9"


class _ServerThatFailsToStop:
    """Stands in for MlflowServer: it cannot start, and its stop raises."""

    def __init__(self, uri, **kwargs):
        pass

    def start(self):
        raise RuntimeError("mlflow server did not start")

    def stop(self):
        raise OSError("the server's group is gone")


def test_the_handlers_before_the_ui_come_back_even_when_its_stop_raises(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ui, "MlflowServer", _ServerThatFailsToStop)
    before = {sig: signal.getsignal(sig) for sig in ui.STOP_SIGNALS}
    with pytest.raises(OSError, match="group is gone"):
        ui.serve(f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert {sig: signal.getsignal(sig) for sig in ui.STOP_SIGNALS} == before
    assert "Error: mlflow server did not start" in capsys.readouterr().err
