"""A sweep job's signal handling in a worker of the parallel launcher, in-process."""

import os
import signal

import pytest

from kerastrack import sweep
from kerastrack.signals import ignore


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
