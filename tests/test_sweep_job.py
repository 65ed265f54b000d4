"""A sweep job's signal handling in a worker of the parallel launcher, and its watch over
the launching process, in-process."""

import contextlib
import json
import os
import signal
import socket
import threading
import time

import psutil
import pytest

from kerastrack.sweeps import job as sweep
from kerastrack.sweeps.watchdog import LauncherWatch
from kerastrack.utils.signals import ignore


@pytest.fixture
def worker(tmp_path, monkeypatch):
    """This process as a parallel launcher's worker: the launcher is another pid."""
    monkeypatch.setattr(sweep, "_control_dir", lambda hydra_cfg=None: tmp_path / sweep.CONTROL_DIR)
    monkeypatch.setenv(sweep.LAUNCHER_PID, str(os.getppid()))
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # as in a fresh loky worker
    yield tmp_path / sweep.CONTROL_DIR
    for sig, handler in saved.items():
        signal.signal(sig, handler)


def test_an_interrupted_job_leaves_its_idle_worker_deaf_to_the_launchers_late_sigterm(worker):
    # Ctrl-C reaches the worker and the launcher at once; the launcher's SIGTERM to the
    # jobs it listed may arrive after the job ended, and must not kill the idle worker.
    with pytest.raises(KeyboardInterrupt), sweep.job():
        assert (worker / "jobs").iterdir(), "the job is registered while it runs"
        (worker / sweep.STOPPING).touch()  # what the launcher does first
        raise KeyboardInterrupt
    assert signal.getsignal(signal.SIGTERM) is ignore
    assert signal.getsignal(signal.SIGINT) is ignore
    assert not list((worker / "jobs").iterdir())


def test_a_job_that_ends_normally_gives_the_worker_back_its_sigterm(worker):
    with sweep.job():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_job_does_not_start_once_the_sweep_is_stopping(worker):
    worker.mkdir(parents=True)
    (worker / sweep.STOPPING).touch()
    with pytest.raises(sweep.SweepInterrupted), sweep.job():
        pytest.fail("the job started")


# -- the worker's watch over its launcher (kerastrack.sweeps.watchdog) --


class Exits:
    """Stands in for os._exit: records each call; in the main thread it also stops the
    caller, as the real one would (the watch's thread just ends)."""

    def __init__(self):
        self.calls = []

    def __call__(self, code):
        self.calls.append(threading.current_thread() is threading.main_thread())
        if self.calls[-1]:
            raise SystemExit(code)


@pytest.fixture
def launcher(worker, monkeypatch):
    """A stand-in launching process (``sleep``), recorded in the sweep dir as the
    launcher is; the watch polls it every 20 ms and exits through ``Exits``."""
    exits = Exits()
    watches = []

    def quick_watch(pid, started):
        watches.append(LauncherWatch(pid, started, poll_s=0.02, exit=exits))
        return watches[-1]

    monkeypatch.setattr(sweep, "watch", quick_watch)
    process = psutil.Popen(["sleep", "60"])
    worker.mkdir(parents=True, exist_ok=True)
    (worker / sweep.LAUNCHER).write_text(
        json.dumps({"host": socket.gethostname(), "pid": process.pid, "started": process.create_time()})
    )
    yield process, exits
    for watch in watches:
        watch.stop()
    with contextlib.suppress(psutil.NoSuchProcess):
        _kill(process)


def _kill(process):
    process.kill()
    process.wait()  # reaped: gone, as a dead launcher is for its re-parented workers


def test_a_worker_whose_launcher_dies_mid_job_interrupts_the_job_and_exits_after_it(launcher, worker):
    process, exits = launcher
    interrupted = False
    with pytest.raises(SystemExit), sweep.job():
        try:
            _kill(process)
            time.sleep(5)  # training; the watch's SIGTERM interrupts it
        except KeyboardInterrupt:
            interrupted = True  # the run closes KILLED here, as for the launcher's own SIGTERM
    assert interrupted
    assert exits.calls == [True], "the worker exits right after the job, from its own thread"
    assert not (worker / sweep.STOPPING).exists(), "a re-launch may already be running in this sweep dir"
    assert not list((worker / "jobs").iterdir())


def test_a_worker_starts_no_job_once_its_launcher_is_gone(launcher):
    process, exits = launcher
    _kill(process)
    with pytest.raises(SystemExit), sweep.job():
        pytest.fail("the job started")
    assert exits.calls == [True]


def test_an_idle_worker_exits_when_its_launcher_dies(launcher):
    process, exits = launcher
    with sweep.job():
        pass
    assert exits.calls == [], "the launcher is alive: the worker stays"
    _kill(process)
    deadline = time.monotonic() + 5
    while not exits.calls and time.monotonic() < deadline:
        time.sleep(0.01)
    assert exits.calls == [False], "the watch's thread ends the idle worker"


def test_a_pid_reused_by_another_process_is_not_the_launcher():
    process = psutil.Popen(["sleep", "60"])
    try:
        watch = LauncherWatch(process.pid, process.create_time() - 3600, exit=Exits())
        assert watch.gone.is_set()
    finally:
        _kill(process)


def test_a_launcher_killed_but_not_yet_reaped_is_gone(launcher):
    process, _ = launcher
    process.kill()  # a zombie until its parent (here, this test) waits for it
    deadline = time.monotonic() + 5
    with pytest.raises(SystemExit):
        while time.monotonic() < deadline:
            with sweep.job():
                time.sleep(0.05)
    assert psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE
