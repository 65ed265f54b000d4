"""Each sweep job's part in its sweep, and the state the launching process and its jobs share
through the sweep dir's control folder (``.kerastrack/``): a job registers itself so that an
interrupt reaches it, watches its launcher, is skipped when another process holds its run, and
stops the sweep when it must (a full disk). ``kerastrack.sweeps.callback`` is the launching
process's side.
"""

import contextlib
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig

from kerastrack.sweeps.watchdog import watch
from kerastrack.utils.hydra_job import job_num, sweep_dir
from kerastrack.utils.signals import ignore, interrupt_once

CONTROL_DIR = ".kerastrack"  # in the sweep dir: the stop mark and the running jobs
STOPPING = "stopping"
LAUNCHER = "launcher"  # in CONTROL_DIR: the launching process (host, pid, start time), for the workers' watch
SKIPPED = "skipped"  # in CONTROL_DIR: a file per job skipped because another process holds its run
LAUNCHER_PID = "KERASTRACK_SWEEP_LAUNCHER_PID"
_ACTIVE = []  # the launching process's callback, while its sweep runs
_STOPPED = []  # the message of a job that stopped the sweep, in the launching process


class SweepInterrupted(Exception):
    """The sweep is stopping: a job that has not started yet does not start."""


def _control_dir(hydra_cfg=None):
    return Path(sweep_dir(hydra_cfg)) / CONTROL_DIR


@contextlib.contextmanager
def job():
    """Around one sweep job, in whichever process runs it.

    The job registers its pid (so that the launcher can stop it), does not start if the
    sweep is stopping, and marks the sweep stopping if it is interrupted. In a worker
    process (parallel launcher), SIGTERM and Ctrl-C interrupt the job, and Ctrl-C is
    ignored between jobs: an idle worker killed by it would break the pool and take the
    running jobs down before they could close their runs. A worker on the launcher's
    machine also watches the launcher (``kerastrack.sweeps.watchdog``): once it is gone (killed
    hard), the job is interrupted, its run closes KILLED, and the worker exits.

    Raises:
        SweepInterrupted: The sweep is stopping.
    """
    control = _control_dir()
    # Not the launching process: a worker of the parallel launcher (which inherits its
    # environment) or of Ray (which does not).
    in_worker = os.environ.get(LAUNCHER_PID) != str(os.getpid())
    launcher = _launcher_watch(control) if in_worker else None
    with (
        launcher.job() if launcher else contextlib.nullcontext(),
        _registered(control, in_worker, orphaned=launcher.gone if launcher else None),
    ):
        yield


@contextlib.contextmanager
def _registered(control, in_worker, orphaned):
    jobs = control / "jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    me = jobs / f"{socket.gethostname()}-{os.getpid()}"
    # Before looking at the mark (the launcher marks, then looks at the jobs); its number
    # tells the parallel launcher whose worker was killed (hydra_plugins.kerastrack_joblib_launcher).
    me.write_text(str(job_num()) if HydraConfig.initialized() else "")
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    if in_worker:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, interrupt_once)
    try:
        if (control / STOPPING).exists():
            raise SweepInterrupted
        yield
    except KeyboardInterrupt:
        # A worker whose launcher is gone does not mark the sweep: the mark would stop
        # the re-launch that may already be running in this sweep dir.
        if not (orphaned and orphaned.is_set()):
            (control / STOPPING).touch()
        raise
    finally:
        me.unlink(missing_ok=True)
        if in_worker:
            signal.signal(signal.SIGINT, ignore)
            # The launcher marks the sweep stopping, then sends SIGTERM to the jobs it
            # finds: one that found this job before it ended may still be on its way, and
            # would kill the idle worker (the pool then breaks with a traceback). Loky
            # ends its workers with SIGKILL, so ignoring SIGTERM here holds nothing up.
            stopping = (control / STOPPING).exists() or (orphaned and orphaned.is_set())
            signal.signal(signal.SIGTERM, ignore if stopping else previous[signal.SIGTERM])


def _launcher_watch(control):
    """The watch over the launching process, read from the sweep dir (Ray's workers do not
    inherit its environment); None where it runs on another machine or left no record."""
    try:
        launcher = json.loads((control / LAUNCHER).read_text())
    except (OSError, ValueError):
        return None
    if launcher.get("host") != socket.gethostname() or launcher.get("pid") == os.getpid():
        return None
    return watch(int(launcher["pid"]), float(launcher["started"]))


def skipped(exc):
    """Records that this job was skipped because another process holds its run
    (``errors.RunHeld``), for the sweep's end: its run is not FAILED, it is someone else's."""
    folder = _control_dir() / SKIPPED
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}").write_text(exc.held)


def stop(message):
    """Stops the sweep from a job: jobs not started yet do not start, and the sweep exits
    non-zero with ``message`` (once, whichever job said it first)."""
    control = _control_dir()
    if (control / STOPPING).exists():
        return
    in_launcher = os.environ.get(LAUNCHER_PID) == str(os.getpid())
    try:
        (control / "reason").write_text(message)
    except OSError:  # a full disk (the message may say so): said now, or never
        (control / "reason").unlink(missing_ok=True)
        if not in_launcher:
            print(message, file=sys.stderr)
    with contextlib.suppress(OSError):
        (control / STOPPING).touch()
    if in_launcher:
        # The basic launcher runs the next job in this process, and Hydra writes its config
        # into the sweep dir before the job could see the stop (on a full disk: a traceback).
        # So the sweep ends here; the parent is closed FAILED at exit (_close_if_open).
        _STOPPED.append(message)
        raise SystemExit(message)


def report_interrupted():
    """Closes the running sweep as interrupted and prints how to continue it; returns
    False when no sweep runs in this process."""
    if not _ACTIVE:
        return False
    _ACTIVE[-1].close_interrupted()
    return True
