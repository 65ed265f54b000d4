"""A sweep job's failure policy, its signal handling in a worker of the parallel launcher,
and its watch over the launching process, in-process."""

import contextlib
import json
import logging
import math
import os
import signal
import socket
import threading
import time

import psutil
import pytest

from kerastrack.errors import ConfigError, DataUnavailable, RunHeld
from kerastrack.sweeps import job
from kerastrack.sweeps.watchdog import LauncherWatch
from kerastrack.utils.signals import Interrupted, handlers, ignore


@pytest.fixture
def worker(tmp_path, monkeypatch):
    """This process as a parallel launcher's worker: the launcher is another pid."""
    monkeypatch.setattr(job, "control_dir", lambda hydra_cfg=None: tmp_path / job.CONTROL_DIR)
    monkeypatch.setenv(job.LAUNCHER_PID, str(os.getppid()))
    # SIGTERM as in a fresh loky worker; the test's own handlers come back after it.
    with handlers({signal.SIGINT: signal.getsignal(signal.SIGINT), signal.SIGTERM: signal.SIG_DFL}):
        yield tmp_path / job.CONTROL_DIR


def test_an_interrupted_job_leaves_its_idle_worker_deaf_to_the_launchers_late_sigterm(worker):
    # Ctrl-C reaches the worker and the launcher at once; the launcher's SIGTERM to the
    # jobs it listed may arrive after the job ended, and must not kill the idle worker.
    with pytest.raises(KeyboardInterrupt), job.taking_part():
        assert (worker / "jobs").iterdir(), "the job is registered while it runs"
        (worker / job.STOPPING).touch()  # what the launcher does first
        raise KeyboardInterrupt
    assert signal.getsignal(signal.SIGTERM) is ignore
    assert signal.getsignal(signal.SIGINT) is ignore
    assert not list((worker / "jobs").iterdir())


def test_a_job_that_ends_normally_gives_the_worker_back_its_sigterm(worker):
    with job.taking_part():
        assert signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_a_job_does_not_start_once_the_sweep_is_stopping(worker):
    worker.mkdir(parents=True)
    (worker / job.STOPPING).touch()
    with pytest.raises(job.SweepInterrupted), job.taking_part():
        pytest.fail("the job started")


# -- what a job's end means for the sweep (job.job) --


def _raising(exc):
    def train(cfg):
        raise exc

    return train


def test_a_finished_job_returns_its_value_to_the_sweeper(worker):
    assert job.job(lambda cfg: cfg["best"], {"best": 0.25}) == 0.25


def test_a_failed_job_is_said_and_the_sweep_goes_on(worker, caplog):
    with caplog.at_level(logging.INFO, logger="kerastrack"):
        assert math.isnan(job.job(_raising(ValueError("bad shapes")), None))
        assert math.isnan(job.job(_raising(ConfigError("Received: optimizer.learning_rate=-1")), None))
    failed = [r for r in caplog.records if r.getMessage().startswith("job failed")]
    assert [r.getMessage() for r in failed] == [
        "job failed: ValueError: bad shapes",
        "job failed: ConfigError: Received: optimizer.learning_rate=-1",
    ]
    assert [bool(r.exc_info) for r in failed] == [True, False], "a traceback only for what is not a bad value"
    assert not (worker / job.STOPPING).exists()


def test_a_job_whose_run_another_process_holds_is_skipped_not_failed(worker, caplog):
    with caplog.at_level(logging.WARNING, logger="kerastrack"):
        assert math.isnan(job.job(_raising(RunHeld("held right now", held="run abc (process 7 on h)")), None))
    assert [p.read_text() for p in (worker / job.SKIPPED).iterdir()] == ["run abc (process 7 on h)"]
    assert "skipped: held by another process: held right now" in caplog.text
    assert "job failed" not in caplog.text


def test_a_job_whose_data_cannot_be_had_stops_the_sweep_with_its_line(worker):
    assert math.isnan(job.job(_raising(DataUnavailable("no network: apt-get install dataset-x")), None))
    assert (worker / "reason").read_text() == "Error: no network: apt-get install dataset-x"
    assert (worker / job.STOPPING).exists(), "jobs not started yet do not start"


def test_an_interrupted_job_stops_the_sweep_and_says_what_became_of_its_run(worker, caplog):
    with caplog.at_level(logging.WARNING, logger="kerastrack"):
        interrupt = Interrupted("KILLED", run_id="abc", output_dir="/out")
        assert math.isnan(job.job(_raising(interrupt), None))
    assert (worker / job.STOPPING).exists()
    # The sweep's launcher says how to continue the whole sweep: no resume= line per job.
    assert "Interrupted: run abc is KILLED, with every finished epoch." in caplog.text
    assert "resume=" not in caplog.text


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

    monkeypatch.setattr(job, "watch", quick_watch)
    process = psutil.Popen(["sleep", "60"])
    worker.mkdir(parents=True, exist_ok=True)
    (worker / job.LAUNCHER).write_text(
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
    with pytest.raises(SystemExit), job.taking_part():
        try:
            _kill(process)
            time.sleep(5)  # training; the watch's SIGTERM interrupts it
        except KeyboardInterrupt:
            interrupted = True  # the run closes KILLED here, as for the launcher's own SIGTERM
    assert interrupted
    assert exits.calls == [True], "the worker exits right after the job, from its own thread"
    assert not (worker / job.STOPPING).exists(), "a re-launch may already be running in this sweep dir"
    assert not list((worker / "jobs").iterdir())


def test_a_worker_starts_no_job_once_its_launcher_is_gone(launcher):
    process, exits = launcher
    _kill(process)
    with pytest.raises(SystemExit), job.taking_part():
        pytest.fail("the job started")
    assert exits.calls == [True]


def test_an_idle_worker_exits_when_its_launcher_dies(launcher):
    process, exits = launcher
    with job.taking_part():
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
            with job.taking_part():
                time.sleep(0.05)
    assert psutil.Process(process.pid).status() == psutil.STATUS_ZOMBIE
