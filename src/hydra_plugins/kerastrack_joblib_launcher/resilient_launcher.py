"""The parallel launcher: Hydra's joblib launcher, whose sweep goes on when a worker is killed.

A loky worker killed alone (the OOM killer, ``kill -9``) breaks loky's whole pool: loky
SIGKILLs the other workers, whose runs stay RUNNING, and Hydra's launcher ends the sweep
with a ``TerminatedWorkerError`` traceback. ``ResilientJoblibLauncher`` takes the same
config (``conf/launcher/parallel.yaml`` names it as ``hydra.launcher._target_``) and
instead closes the killed worker's run FAILED, says so in one line, and launches the jobs
without a result again in a fresh pool: a job whose run loky killed continues it in place
(``kerastrack.resume.plan.plan``: RUNNING, process gone), one whose run FINISHED is skipped.
"""

import contextlib
import logging
import math
import signal
import socket
from pathlib import Path

import psutil
from hydra.core.utils import JobReturn, JobStatus, filter_overrides
from joblib import Parallel, delayed
from joblib.externals.loky import process_executor

from hydra_plugins.hydra_joblib_launcher import _core
from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
from kerastrack.sweeps.callback import MlflowSweepCallback
from kerastrack.sweeps.job import CONTROL_DIR

log = logging.getLogger(__name__)
# A worker killed again in the fresh pool is handled the same way; after that many fresh
# pools, the jobs still without a result fail: a job the OOM killer keeps killing must not
# keep the sweep in a loop.
MAX_RELAUNCHES = 2
WORKER_KILLED = "WorkerKilled"  # the error.type tag of a run whose worker was killed


def _job(idx, *args):
    """Hydra's job in a worker, with its index: results arrive in the order jobs end."""
    return idx, _core.execute_job(idx, *args)


@contextlib.contextmanager
def _noting_dead_workers(dead):
    """Collects {pid: exit code} of the workers found dead when loky's pool breaks.

    Written by hand: loky's ``TerminatedWorkerError`` names no worker, and right after its
    manager thread notices the death it SIGKILLs the other workers too (``terminate_broken``
    then ``kill_workers``), so from outside every worker is dead alike. Only there, before
    the kill, is the worker that died first known by its exit code.
    """
    cls = process_executor._ExecutorManagerThread
    original = cls.terminate_broken

    def terminate_broken(self, bpe):
        dead.update({pid: p.exitcode for pid, p in list(self.processes.items()) if p.exitcode is not None})
        return original(self, bpe)

    cls.terminate_broken = terminate_broken
    try:
        yield
    finally:
        cls.terminate_broken = original


def _signal_name(exit_code):
    with contextlib.suppress(ValueError, TypeError):
        return signal.Signals(-exit_code).name
    return f"exit code {exit_code}"


class ResilientJoblibLauncher(JoblibLauncher):
    """Hydra's ``JoblibLauncher`` (same config) that goes on when a worker is killed.

    Returns one JobReturn per job, in order. A job whose worker was killed returns NaN, as a
    failed job does (``kerastrack.sweeps.job.job``): its run is FAILED (tag ``error.type``
    ``WorkerKilled``) and the sweep's end counts it among the failed jobs.
    """

    def launch(self, job_overrides, initial_job_idx):
        _core.setup_globals()
        _core.configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        self.joblib["backend"] = "loky"  # as Hydra's: the threading backend does not work with Hydra
        _core.process_joblib_cfg(self.joblib)
        log.info(
            "Joblib.Parallel(%s) is launching %d jobs",
            ",".join(f"{k}={v}" for k, v in self.joblib.items()),
            len(job_overrides),
        )
        log.info("Launching jobs, sweep output dir : %s", sweep_dir)
        for idx, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + idx, " ".join(filter_overrides(overrides)))
        jobs = {initial_job_idx + i: list(o) for i, o in enumerate(job_overrides)}
        results = {}
        for relaunch in range(MAX_RELAUNCHES + 1):
            todo = [idx for idx in jobs if idx not in results]
            dead = {}
            try:
                with _noting_dead_workers(dead):
                    self._run(todo, jobs, results)
                break
            except process_executor.BrokenProcessPool:
                killed = self._killed_jobs(sweep_dir, dead, jobs)
                last = relaunch == MAX_RELAUNCHES
                for idx in todo if last else killed:
                    results.setdefault(idx, self._failed(idx, jobs[idx], killed.get(idx)))
                if not last and all(idx in results for idx in jobs):
                    break
        return [results[idx] for idx in jobs]

    def _run(self, todo, jobs, results):
        singleton_state = _core.Singleton.get_state()
        for idx, ret in Parallel(**self.joblib, return_as="generator_unordered")(
            delayed(_job)(idx, jobs[idx], self.hydra_context, self.config, self.task_function, singleton_state)
            for idx in todo
        ):
            results[idx] = ret

    def _killed_jobs(self, sweep_dir, dead, overrides):
        """{job index: what killed its worker} of the jobs whose workers loky found dead; their
        registry files (left by the dead workers) are cleared, with those of the jobs loky
        killed after them, so that an interrupt signals no stale pid."""
        jobs = sweep_dir / CONTROL_DIR / "jobs"
        killed = {}
        for pid, exit_code in dead.items():
            registered = jobs / f"{socket.gethostname()}-{pid}"
            with contextlib.suppress(OSError, ValueError):
                killed[int(registered.read_text())] = f"process {pid}, {_signal_name(exit_code)}"
        for registered in jobs.glob(f"{socket.gethostname()}-*"):
            with contextlib.suppress(ValueError):
                if not psutil.pid_exists(int(registered.name.rpartition("-")[2])):
                    registered.unlink(missing_ok=True)
        for idx, how in killed.items():
            log.warning(
                "job #%d (%s): its worker process was killed (%s); its run is FAILED, the sweep goes on "
                "with the other jobs",
                idx,
                " ".join(filter_overrides(overrides[idx])),
                how,
            )
        return killed

    def _failed(self, idx, overrides, how):
        """The JobReturn of a job that did not end in a worker, its run closed FAILED."""
        why = (
            f"its worker process was killed ({how}): by the OOM killer or kill -9"
            if how
            else "its worker process was killed after the pool broke, and again in a fresh pool"
        )
        parent = next(
            (c.parent for c in self.hydra_context.callbacks.callbacks if isinstance(c, MlflowSweepCallback)), None
        )
        if parent is not None:
            try:
                parent.fail_child(idx, WORKER_KILLED, why)
            except Exception as exc:  # noqa: BLE001 - the store away: the run stays RUNNING, a re-launch continues it
                log.warning("job #%d: its run could not be closed FAILED: %s: %s", idx, type(exc).__name__, exc)
        if not how:
            log.warning("job #%d (%s) failed: %s", idx, " ".join(filter_overrides(overrides)), why)
        ret = JobReturn(overrides=overrides, status=JobStatus.COMPLETED)
        ret.return_value = math.nan  # as train.py's failed jobs: a sweeper reads it, Hydra raises nothing
        return ret
