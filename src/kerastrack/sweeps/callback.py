"""The launching process's work around a multirun: its Hydra callback.

Sweep-level work belongs to the launching process, so it lives in a Hydra Callback
(registered in conf/train.yaml, always on). Through the tracker it creates the store and
the experiment once before any job starts and opens the sweep's parent run
(``tracking.parent``); at the end it tags the parent with how many jobs ran, failed and
were skipped, logs the comparison report on it and closes it in a true state. Each job's
part is ``kerastrack.sweeps.job``.

An interrupt stops a sweep in a true state. Ctrl-C (to the terminal's process group) or
SIGTERM to the launching process marks the sweep dir as stopping and sends SIGTERM to the
job processes on this machine (each job registers itself in the sweep dir): running jobs
close their runs KILLED with every finished epoch, jobs not yet started do not start, the
parent ends KILLED, and one line says how to continue (the same command into the same
sweep dir). A second interrupt stops at once (runs killed hard stay RUNNING; the
re-launch continues them too). A launching process killed hard (``kill -9``) cannot do any
of this: its workers watch it (``kerastrack.sweeps.watchdog``), close their runs KILLED and exit.
A re-launch's job whose run another process still trains is skipped, and said so.
"""

import atexit
import contextlib
import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import psutil
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from hydra.utils import instantiate
from omegaconf import OmegaConf

from kerastrack.config.checks import check_labels
from kerastrack.errors import ConfigError
from kerastrack.sweeps.job import LAUNCHER, LAUNCHER_PID, SKIPPED, STOP_MESSAGES, STOPPING, control_dir
from kerastrack.sweeps.sweep_dir import check_sweepable, claim, continue_command, failure_line, skipped_line
from kerastrack.tracking.labels import label_tags
from kerastrack.utils.hydra_job import parse_overrides, sweep_dir
from kerastrack.utils.signals import install

log = logging.getLogger(__name__)
_ACTIVE = []  # the launching process's callback, while its sweep runs
# The sweeps this process launched, each its parent's (run id, tracking URI, sweep dir), last
# last: how kerastrack.sweep() in a notebook finds the parent its Hydra call opened.
LAUNCHED = []


def report_interrupted():
    """Closes the running sweep as interrupted and prints how to continue it; returns
    False when no sweep runs in this process."""
    if not _ACTIVE:
        return False
    _ACTIVE[-1].close_interrupted()
    return True


def _start_ray_first(config):
    """Starts Ray in this process before the sweep's interrupt handlers go in, when the
    launcher is Ray's: ``ray.init`` installs a SIGTERM handler of its own (exit at once,
    leaving the jobs' runs RUNNING), which would replace them if Hydra's Ray launcher
    started Ray later. The launcher then finds Ray started and uses it."""
    if "hydra_ray_launcher" not in str(OmegaConf.select(config, "hydra.launcher._target_", default="")):
        return
    import ray

    if not ray.is_initialized():
        ray.init(**OmegaConf.to_container(config.hydra.launcher.ray.init, resolve=True))


class MlflowSweepCallback(Callback):
    """Opens a parent MLflow run for each multirun and closes it in a true state.

    The parent ends FINISHED when the sweep completes, with the counts as tags (not
    metrics): ``sweep.n_jobs``, ``sweep.n_failed`` and ``sweep.n_skipped`` (the exit code is
    then 1 if any job failed, or was skipped because another process holds its run); it ends
    KILLED on Ctrl-C/SIGTERM and FAILED if the sweep itself dies. Single runs get no parent.

    Args:
        report: Write the comparison report (plots, tables) onto the parent at the end.
        best_over: A swept key, e.g. "optimizer.learning_rate": the report adds each
            group at its best value of it (``kerastrack.report.best_over``); None: no such view.
        diverged_ok: A job whose loss diverged (its run FAILED, tag ``diverged=true``) is
            one of the sweep's results, not a failure of the sweep: in a learning-rate grid
            the largest rates are expected to diverge. The exit code is then 0 when every
            failed job diverged.
    """

    def __init__(self, report=True, best_over=None, diverged_ok=False):
        self.report = report
        self.best_over = best_over
        self.diverged_ok = diverged_ok
        self.parent = None
        self._records = None

    def on_multirun_start(self, config, **kwargs):
        overrides = list(config.hydra.overrides.task)
        keys = [key for key, o in parse_overrides(overrides) if o.is_sweep_override()]
        # Sweepers that search (Optuna) take their space from hydra.sweeper.params.
        params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
        keys += [str(k) for k in params if str(k) not in keys]
        if self.best_over is not None and (self.best_over not in keys or self.best_over == "seed"):
            # Before any run: the report at the sweep's end would have no view to show.
            raise SystemExit(
                f"Error: hydra.callbacks.mlflow_sweep.best_over must be a key the sweep varies, other "
                f"than seed; this sweep varies: {', '.join(k for k in keys if k != 'seed') or 'nothing'}. "
                f"Received: hydra.callbacks.mlflow_sweep.best_over={self.best_over}"
            )
        check_sweepable(config)
        try:  # before the parent opens: its tags would fail in MLflow, after the sweep dir was claimed
            check_labels(config, write_back=False)
        except ConfigError as exc:
            raise SystemExit(f"Error: {exc}") from None
        self.sweep_dir = sweep_dir(config.hydra)
        self._control = control_dir(config.hydra)
        # Before anything is written or recorded: only the same sweep continues in a sweep dir.
        claim(self.sweep_dir, self._control, config)
        self._records = None  # the children, read at the end
        for leftover in (
            self._control / STOPPING,
            self._control / "reason",
            *self._control.glob("jobs/*"),
            *self._control.glob(f"{SKIPPED}/*"),
        ):
            leftover.unlink(missing_ok=True)  # a re-launch continues the sweep
        (self._control / "jobs").mkdir(parents=True, exist_ok=True)
        (self._control / LAUNCHER).write_text(
            json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "started": psutil.Process().create_time()})
        )
        self._command = continue_command(sys.argv, self.sweep_dir)
        log.info("Sweep dir: %s", self.sweep_dir)
        os.environ[LAUNCHER_PID] = str(os.getpid())
        _ACTIVE.append(self)
        _start_ray_first(config)
        # For good, not for a span: no hook is sure to come after the jobs (Hydra skips
        # on_multirun_end when a job raises), and the process ends with the sweep.
        install(dict.fromkeys((signal.SIGINT, signal.SIGTERM), self._on_interrupt))
        # A re-launch into the same sweep dir continues that sweep's parent: its jobs skip
        # what finished and resume what was cut short (kerastrack.resume.plan.plan).
        labels = label_tags(config.get("tags"), config.get("notes"))  # the jobs' runs get the tags too
        # The tracking node may name the sweep's dir through Hydra's config (debug=fast's store,
        # ${kt.invocation_dir:}), which Hydra sets only in each job.
        # Only for the span: the launching process's jobs (and what runs after the sweep in a
        # notebook) must not read the sweep's config as theirs (it has no hydra.job.num).
        hydra_config = HydraConfig.instance().cfg
        HydraConfig.instance().set_config(config)
        try:
            self.parent = instantiate(config.tracking).open_sweep(self.sweep_dir, keys, overrides, labels)
        finally:
            HydraConfig.instance().cfg = hydra_config
        if self.parent is not None:
            atexit.register(self._close_if_open)
            LAUNCHED.append((self.parent.run_id, self.parent.tracking_uri, self.sweep_dir))

    def _on_interrupt(self, signum, frame):
        """The launching process's Ctrl-C/SIGTERM: the first stops the sweep in order (see
        the module's docstring), a second one at once. A job running in this very process
        (the basic launcher) is interrupted as in a single run."""
        here = f"{socket.gethostname()}-{os.getpid()}"
        jobs = list(self._control.glob("jobs/*"))
        if getattr(self, "_stopping", False) or any(j.name == here for j in jobs):
            raise KeyboardInterrupt(f"signal {signum}")
        self._stopping = True
        (self._control / STOPPING).touch()
        log.warning("stopping the sweep: its running jobs close their runs (Ctrl-C again stops at once)")
        for job_file in self._control.glob("jobs/*"):
            host, _, pid = job_file.name.rpartition("-")
            if host == socket.gethostname():
                with contextlib.suppress(OSError, ValueError):
                    os.kill(int(pid), signal.SIGTERM)

    def close_interrupted(self):
        """Ends the parent KILLED and prints the one line that says how to continue."""
        if self.parent is not None:
            with contextlib.suppress(Exception):
                self._end("KILLED")
        if _ACTIVE and _ACTIVE[-1] is self:
            _ACTIVE.pop()
        print(
            f"Interrupted: the sweep in {self.sweep_dir} stopped; its runs are KILLED with every finished "
            f"epoch. Continue it with: {self._command}",
            file=sys.stderr,
        )

    def on_multirun_end(self, config, **kwargs):
        if _ACTIVE and _ACTIVE[-1] is self:
            _ACTIVE.pop()
        reason = self._control / "reason"
        if reason.exists():  # a job stopped the sweep (e.g. its data cannot be had)
            if self.parent is not None:
                self._end("FAILED")
            sys.exit(reason.read_text().strip())
        if (self._control / STOPPING).exists():
            self.close_interrupted()
            sys.exit(130)
        if self.parent is None:
            return
        children = self.parent.children()
        # Jobs that failed before their run opened (a bad value) have no child run, but
        # every job has a Hydra output dir.
        n_jobs = max(len(children), len(list(Path(self.sweep_dir).glob("*/.hydra"))))
        n_done = sum(r.status == "FINISHED" or r.tags.get("pruned") == "true" for r in children)
        # A job refused because another process holds its run (a worker of an earlier
        # launch still training it) did not fail: that run is RUNNING, and not this launch's.
        held = [p.read_text() for p in sorted((self._control / SKIPPED).glob("*"))]
        n_failed = n_jobs - n_done - len(held)
        report = link = None
        offline = self.parent.tracking_uri is None  # spooled: nothing to read back before the upload
        try:
            self.parent.log_counts(n_jobs, n_failed, n_skipped=len(held))
            if self.report and children and not offline:
                try:
                    report = self._log_report()
                except Exception as exc:  # noqa: BLE001 - a report must not fail a finished sweep
                    log.warning("no comparison report: %s: %s", type(exc).__name__, exc)
                if any("x" in r.metrics and "y" in r.metrics for r in children):  # walks on 2-D surfaces
                    try:
                        report = [*(report or []), *self._log_surfaces()]
                    except Exception as exc:  # noqa: BLE001 - nor its figure
                        log.warning("no surfaces figure: %s: %s", type(exc).__name__, exc)
            try:
                link = self.parent.ui_link() if children else None  # nothing to show side by side
            except Exception as exc:  # noqa: BLE001 - nor a view of it in the UI
                log.warning("no view of the sweep in the MLflow UI: %s: %s", type(exc).__name__, exc)
        finally:
            self._end("FINISHED")
        print(f"Sweep of {n_jobs} job(s) done; each job's output dir is in {self.sweep_dir}")
        if report:
            names = ", ".join(p.name for p in report[1:])
            print(f"Report: {report[0]}" + (f" (beside it: {names})" if names else ""))
        if link:
            print(f"Side by side in the MLflow UI: {link}")
        if offline:
            from kerastrack.tracking.outbox import UPLOAD_COMMAND  # here: train.py imports this module at every start

            print(
                f"tracking.offline=true: the sweep's runs are in their spools only; upload them all (the parent, "
                f"each job's run under it) with: {UPLOAD_COMMAND} {self.sweep_dir}, then make the report with: "
                f"python -m kerastrack.report"
            )
        if held:
            print(skipped_line(held, n_jobs, self._command), file=sys.stderr)
        n_diverged = sum(r.tags.get("diverged") == "true" for r in children)
        if n_failed and self.diverged_ok and n_failed == n_diverged:
            print(
                f"{n_diverged} of {n_jobs} jobs diverged (FAILED {'in their spools' if offline else 'in MLflow'} "
                f"with diverged=true): a result of this sweep (hydra.callbacks.mlflow_sweep.diverged_ok=true), not an error"
            )
        elif n_failed:
            sys.exit(failure_line(n_failed, n_jobs, n_diverged, n_jobs - len(children), offline, self.sweep_dir))
        if held:
            sys.exit(1)  # the sweep is not complete

    def _log_report(self):
        # Imported here for start-up time: pandas and matplotlib cost ~0.8 s at every start
        # of train.py, and only a sweep's end needs them.
        from kerastrack.report import build as report
        from kerastrack.tracking.query import fetch_parent

        records = self._children()
        title = report.sweep_title(fetch_parent(self.parent.tracking_uri, self.parent.run_id))
        result = report.build_report(records, title=title, best_over=self.best_over)  # x: epochs, as Keras prints them
        paths = report.write_report(result, Path(self.sweep_dir) / "report")
        self.parent.log_report(paths.values(), result.best_run_id, result.monitor, result.best_value, result.mode)
        print(report.format_table(result))
        # The figure first: it is what a user opens.
        return sorted(paths.values(), key=lambda p: p.suffix != ".png")

    def _log_surfaces(self):
        """The optimizer lab's overlay of every optimizer's path on each surface (at its best
        rate), as report/surfaces.png and, animated, surfaces.gif on the parent."""
        from kerastrack.figures.trajectories import overlay_animation, overlay_figure, sweep_panels

        drawn = sweep_panels(self._children())
        if drawn is None:
            return []
        folder = Path(self.sweep_dir) / "report"
        folder.mkdir(parents=True, exist_ok=True)
        overlay_figure(*drawn).savefig(folder / "surfaces.png", dpi=80)
        overlay_animation(*drawn, folder / "surfaces.gif")  # the same paths, growing epoch by epoch
        paths = [folder / "surfaces.png", folder / "surfaces.gif"]
        self.parent.log_report(paths)
        return paths

    def _children(self):
        """The children with every per-epoch history (x, y among them), read once for the
        report and the surfaces overlay: a 140-run sweep's histories take seconds to read."""
        from kerastrack.tracking.query import fetch_runs

        if self._records is None:
            self._records = fetch_runs(self.parent.tracking_uri, parent=self.parent.run_id)
        return self._records

    def _end(self, status):
        parent, self.parent = self.parent, None
        try:
            parent.end(status)
        except Exception as exc:  # noqa: BLE001 - the store cannot be written (a full disk): say so, once
            log.warning(
                "the sweep's parent run %s could not be closed %s (%s): it shows RUNNING; the same command "
                "into the same sweep dir continues the sweep",
                parent.run_id,
                status,
                " ".join(str(exc).split())[:300],
            )

    def _close_if_open(self):
        # Runs at interpreter exit: the sweep died before on_multirun_end (Hydra skips it
        # when a job raises), so the parent must not stay RUNNING.
        if self.parent is None:
            return
        stopped = STOP_MESSAGES or (self._control / "reason").exists()  # by a job (a full disk): not interrupted
        interrupted = ((self._control / STOPPING).exists() and not stopped) or isinstance(
            getattr(sys, "last_value", None), KeyboardInterrupt
        )
        self._end("KILLED" if interrupted else "FAILED")
