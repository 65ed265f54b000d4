"""A sweep worker's watch over its launching process.

The parallel launcher's workers (loky) and Ray's local workers outlive a launcher killed
hard (``kill -9``, the OOM killer): loky's are re-parented to pid 1, run the jobs already
queued for them and then wait for ever on a pipe nobody reads, each holding a TensorFlow
process's memory; loky's and multiprocessing's resource trackers wait on them. So a
worker watches the launcher from its first job on: once it is gone, a job in progress is
interrupted as by the launcher's own SIGTERM (its run closes KILLED with every finished
epoch), no job starts any more, and the process exits; the resource trackers then see
their pipes close and exit too.

Polled with psutil (which tells a reused pid from the launcher by its start time), not
``prctl(PR_SET_PDEATHSIG)``: that signal comes when the *thread* that started the worker
ends (loky starts workers from a thread of its own, which may end before the launcher),
and a Ray worker's parent is the raylet, not the launcher.
"""

import contextlib
import logging
import os
import signal
import sys
import threading

import psutil

log = logging.getLogger(__name__)
POLL_S = 1.0  # how soon a worker notices; a psutil check costs ~20 us
_WATCHES = []  # this process's watch (one: a worker serves one launcher)


class LauncherWatch:
    """Watches the launcher from a daemon thread and ends this worker once it is gone.

    Args:
        pid: The launcher's pid on this machine.
        started: Its start time as it recorded it (``psutil.Process().create_time()``):
            a pid reused by another process is not the launcher.
        poll_s: Seconds between checks.
        exit: Ends the process (``os._exit``): a worker whose launcher is gone may be
            blocked for ever on loky's pipes, where no exception would reach.
    """

    def __init__(self, pid, started, poll_s=POLL_S, exit=os._exit):
        self.pid = pid
        self.gone = threading.Event()
        self._poll_s = poll_s
        self._exit = exit
        self._in_job = False
        self._stopped = threading.Event()
        try:
            self._launcher = psutil.Process(pid)
            alive = abs(self._launcher.create_time() - started) < 0.01 and _alive(self._launcher)
        except psutil.Error:
            alive = False
        if not alive:
            self.gone.set()
            return
        threading.Thread(target=self._watch, daemon=True, name="kerastrack-launcher-watch").start()

    @contextlib.contextmanager
    def job(self):
        """Around one job: it does not start once the launcher is gone, and the process
        exits right after it if the launcher went meanwhile.

        No lock between the job and the watch: an interrupt landing in a lock's wait
        could leave the job marked running for ever. Each writes its flag, then reads
        the other's, so at least one of them sees both (and both may exit: harmless).
        """
        self._in_job = True
        if self.gone.is_set():
            self._end("starts no more jobs and exits")
        try:
            yield
        finally:
            self._in_job = False
            if self.gone.is_set():
                self._end("closed its job's run and exits")

    def stop(self):
        """Ends the watch (tests)."""
        self._stopped.set()

    def _watch(self):
        signalled = False
        while not self._stopped.wait(self._poll_s):
            if not self.gone.is_set() and _alive(self._launcher):
                continue
            self.gone.set()
            if not self._in_job:
                self._end("exits")
                return
            if not signalled:
                log.warning(
                    "the sweep's launching process (pid %d) is gone: stopping this job; its run closes "
                    "KILLED with every finished epoch",
                    self.pid,
                )
                # The path of the launcher's own SIGTERM (sweep.job's handler): the run
                # closes in order; the job's end, or this loop once it ended, exits.
                os.kill(os.getpid(), signal.SIGTERM)
                signalled = True

    def _end(self, what):
        log.warning(
            "the sweep's launching process (pid %d) is gone: this worker (pid %d) %s", self.pid, os.getpid(), what
        )
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self._exit(0)


def _alive(process):
    """Running, and not a zombie (killed, not yet reaped by its parent); psutil's
    ``is_running`` is also False for a pid reused by another process."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def watch(pid, started):
    """This process's watch over the launcher ``pid``, started on the first call (a
    worker serves one launcher).

    Args:
        pid: The launcher's pid on this machine.
        started: Its start time, as the launcher recorded it.
    """
    if not _WATCHES or _WATCHES[-1].pid != pid:
        _WATCHES.append(LauncherWatch(pid, started))
    return _WATCHES[-1]
