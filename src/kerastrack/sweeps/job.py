"""Each job's part in a sweep, in whichever process runs it (the launching process with the
basic launcher, a worker with the parallel one, Ray's).

A job registers itself in the sweep dir (so that the launching process can stop it), does
not start once the sweep is stopping, and marks the sweep stopping when it is interrupted.
A failed job does not abort the sweep: its run is recorded FAILED (KILLED when a search
pruned it), the launching process's callback (``kerastrack.sweeps.callback``) counts it,
and the sweep exits non-zero at its end. A job whose run another process holds is skipped,
and said so; a job whose failure every job would share (no data, a full disk) stops the
sweep with one line.
"""

import contextlib
import json
import logging
import math
import os
import signal
import socket
import sys
import time
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

from kerastrack.errors import ConfigError, DataUnavailable, DiskFull, DivergedError, RunHeld, is_pruned
from kerastrack.sweeps.watchdog import watch
from kerastrack.utils.hydra_job import job_num, sweep_dir
from kerastrack.utils.secrets import mask_text
from kerastrack.utils.signals import handlers, ignore, interrupt_once, interrupted_line

log = logging.getLogger(__name__)
CONTROL_DIR = ".kerastrack"  # in the sweep dir: the stop mark and the running jobs
STOPPING = "stopping"
LAUNCHER = "launcher"  # in CONTROL_DIR: the launching process (host, pid, start time), for the workers' watch
SKIPPED = "skipped"  # in CONTROL_DIR: a file per job skipped because another process holds its run
LAUNCHER_PID = "KERASTRACK_SWEEP_LAUNCHER_PID"
STOP_MESSAGES = []  # the message of a job that stopped the sweep, in the launching process


class SweepInterrupted(Exception):
    """The sweep is stopping: a job that has not started yet does not start."""


def control_dir(hydra_cfg=None):
    """The sweep dir's folder of marks between the launching process and the jobs."""
    return Path(sweep_dir(hydra_cfg)) / CONTROL_DIR


def job(train, cfg):
    """Runs one job of a sweep, ``train(cfg)``, inside ``taking_part``, and decides what
    its end means for the sweep. Only an interrupt stops the whole sweep; a job's own
    failure is logged and the sweep goes on.

    Args:
        train: The recipe (``kerastrack.pipeline.train``).
        cfg: The job's config.

    Returns:
        The best monitored value, for the sweeper; NaN for a job that did not finish.
    """
    try:
        with taking_part():
            return train(cfg)
    except SweepInterrupted:
        return math.nan  # the sweep is stopping: this job does not start
    except KeyboardInterrupt as exc:
        log.warning("%s", interrupted_line(exc, resume_hint=False))  # the sweep says how to continue
        return math.nan
    except RunHeld as exc:
        # Not a failure: another process (an earlier launch's worker) is training this run.
        log.warning("skipped: held by another process: %s", mask_text(str(exc)))
        skipped(exc)
        return math.nan
    except (DataUnavailable, DiskFull) as exc:
        # Every job would fail the same way: say it once and stop the sweep.
        stop(f"Error: {mask_text(str(exc))}")
        return math.nan
    except Exception as exc:  # noqa: BLE001 - one job's failure must not abort the sweep
        _log_failure(exc)
        return math.nan


def _log_failure(exc):
    """A failed job's line: a pruned trial and (with ``diverged_ok``) a diverged job are
    results of the sweep; a traceback only for what is not a user's value or a divergence."""
    if is_pruned(exc):
        log.info("trial pruned: %s", exc)
    elif isinstance(exc, DivergedError) and OmegaConf.select(HydraConfig.get(), "callbacks.mlflow_sweep.diverged_ok"):
        log.warning("job diverged (a result of this sweep, diverged_ok): %s", exc)
    else:
        log.error(
            "job failed: %s: %s", type(exc).__name__, exc, exc_info=not isinstance(exc, (ConfigError, DivergedError))
        )


@contextlib.contextmanager
def taking_part():
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
    control = control_dir()
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
    with handlers(dict.fromkeys((signal.SIGINT, signal.SIGTERM), interrupt_once) if in_worker else {}) as leave:
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
                leave[signal.SIGINT] = ignore
                # The launcher marks the sweep stopping, then sends SIGTERM to the jobs it
                # finds: one that found this job before it ended may still be on its way, and
                # would kill the idle worker (the pool then breaks with a traceback). Loky
                # ends its workers with SIGKILL, so ignoring SIGTERM here holds nothing up.
                if (control / STOPPING).exists() or (orphaned and orphaned.is_set()):
                    leave[signal.SIGTERM] = ignore


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
    folder = control_dir() / SKIPPED
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}").write_text(exc.held)


def stop(message):
    """Stops the sweep from a job: jobs not started yet do not start, and the sweep exits
    non-zero with ``message`` (once, whichever job said it first)."""
    control = control_dir()
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
        # So the sweep ends here; the parent is closed FAILED at exit (the callback's _close_if_open).
        STOP_MESSAGES.append(message)
        raise SystemExit(message)
