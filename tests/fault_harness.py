"""Helpers of the fault matrix: start ``train.py`` paused at a moment, signal it there, and
read back what the store says.

A process started with ``pause=`` stops at that moment (tests/faults/sitecustomize.py),
writes a marker and waits; the test waits for the marker(s), delivers its signal, and
then releases the pause, so a signal that is held or ignored lets the process go on.
"""

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests import helpers
from tests.helpers import ROOT, as_in_a_terminal, store_client

FAULTS_DIR = ROOT / "tests" / "faults"
EPOCHS = 3
# Cheap and quiet: digits with the default MLP; no model artifact, no sweep report.
COMMON = [f"trainer.epochs={EPOCHS}", "tracking.log_model=false"]
SWEEP = ["-m", "launcher=parallel", "optimizer=sgd,adam", "hydra.callbacks.mlflow_sweep.report=false"]
PER_EPOCH = ("loss", "val_loss", "learning_rate", "epoch_time_s")
SUMMARY = ("best_val_loss", "best_epoch", "test_loss", "test_accuracy")
INTERRUPTED = 130
MARKER_TIMEOUT_S = 180  # a sweep starts three TensorFlow processes on a shared 2-core machine
RUN_TIMEOUT_S = 300


@dataclass
class Train:
    """One ``python train.py`` process (its own session: a process group of its own)."""

    args: list
    cwd: Path
    process: subprocess.Popen
    log_stem: Path
    pause_dir: Path | None = None
    returncode: int | None = None

    @property
    def stdout(self):
        return Path(f"{self.log_stem}.out").read_text(errors="replace")

    @property
    def stderr(self):
        return Path(f"{self.log_stem}.err").read_text(errors="replace")

    def tail(self, n=3000):
        return f"--- stdout ---\n{self.stdout[-n:]}\n--- stderr ---\n{self.stderr[-n:]}"

    def wait(self, timeout=RUN_TIMEOUT_S):
        try:
            self.returncode = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            self.returncode = self.process.wait()
            raise AssertionError(f"train.py {' '.join(self.args)} ran over {timeout} s\n{self.tail()}") from None
        return self.returncode

    def markers(self, moment):
        """Pids paused at ``moment`` now."""
        found = []
        for path in self.pause_dir.iterdir():
            if path.name.isdigit():
                try:
                    if path.read_text() == moment:
                        found.append(int(path.name))
                except FileNotFoundError:  # released meanwhile
                    pass
        return sorted(found)

    def wait_paused(self, moment, count=1, timeout=MARKER_TIMEOUT_S):
        """Waits until ``count`` processes are paused at ``moment``; returns their pids."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = self.markers(moment)
            if len(pids) >= count:
                return pids
            if self.process.poll() is not None:
                raise AssertionError(
                    f"train.py exited {self.process.returncode} before {count} process(es) "
                    f"paused at '{moment}' (paused: {pids})\n{self.tail()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"{count} process(es) did not pause at '{moment}' within {timeout} s\n{self.tail()}")

    def release(self, pids):
        for pid in pids:
            (self.pause_dir / f"{pid}.go").touch()

    def group(self):
        """Live (not zombie) processes of this process group."""
        return processes_in_group(self.process.pid)

    def kill_group(self):
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait_group_gone(self, timeout=20):
        """Waits for every process of the group to end; returns those still alive."""
        deadline = time.monotonic() + timeout
        while (alive := self.group()) and time.monotonic() < deadline:
            time.sleep(0.1)
        return alive


def processes_in_group(pgid):
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def subprocess_env(pause_at=None, pause_dir=None):
    """The test process's environment without MLFLOW_* (the store is the launch dir's
    mlflow.db), the fault injection first on PYTHONPATH, and the pause moments."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "KT_PAUSE"))}
    env["PYTHONPATH"] = os.pathsep.join([str(FAULTS_DIR), str(ROOT / "src")])
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    if pause_at:
        env.update(KT_PAUSE_AT=pause_at, KT_PAUSE_DIR=str(pause_dir))
    return env


def start_train(cwd, *args, pause_at=None, name="train"):
    """Starts ``python <repo>/train.py *args`` in ``cwd``, in a session of its own.

    Args:
        cwd: The launch directory (its mlflow.db is the store).
        *args: Command-line arguments.
        pause_at: Moment(s) to pause at (comma-separated), or None.
        name: Name of the log files under ``cwd/logs``.
    """
    cwd = Path(cwd)
    logs = cwd / "logs"
    logs.mkdir(exist_ok=True)
    stem = logs / name
    n = 1
    while Path(f"{stem}.err").exists():
        n += 1
        stem = logs / f"{name}-{n}"
    pause_dir = None
    if pause_at:
        pause_dir = cwd / "pause"
        pause_dir.mkdir(exist_ok=True)
    with open(f"{stem}.out", "w") as out, open(f"{stem}.err", "w") as err:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "train.py"), *args],
            cwd=cwd,
            env=subprocess_env(pause_at, pause_dir),
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=as_in_a_terminal,
        )
    return Train(list(args), cwd, process, stem, pause_dir)


def run_train(cwd, *args, name="train", timeout=RUN_TIMEOUT_S):
    """Runs ``train.py`` to its end, without faults."""
    train = start_train(cwd, *args, name=name)
    try:
        train.wait(timeout)
    finally:
        train.kill_group()
    return train


def deliver(train, how, pids=()):
    """Delivers a fault to a paused ``train.py`` run, as a user or the system would.

    Args:
        train: The ``Train``.
        how: ``SIGINT`` (Ctrl-C: the whole process group, as a terminal sends it),
            ``SIGTERM`` (the started process only, as ``kill`` or a scheduler does) or
            ``SIGKILL`` (the whole group: nothing survives).
        pids: The paused processes, released after the signal: a signal that is held or
            ignored lets them go on, as it would without the pause.
    """
    if how == "SIGINT":
        os.killpg(train.process.pid, signal.SIGINT)
    elif how == "SIGTERM":
        os.kill(train.process.pid, signal.SIGTERM)
    elif how == "SIGKILL":
        os.killpg(train.process.pid, signal.SIGKILL)
    else:
        raise ValueError(how)
    if how != "SIGKILL":
        time.sleep(0.5)  # the handlers run (they interrupt the pause) before the release
        train.release(pids)


# -- the store --


def all_runs(cwd):
    """Every run in the launch dir's store, oldest first; [] without a store.

    Opening a store that is not there would create it: only done when it exists.
    """
    if not (Path(cwd) / "mlflow.db").exists():
        return []
    mlflow_client = store_client(cwd)
    experiments = [e.experiment_id for e in mlflow_client.search_experiments()]
    if not experiments:
        return []
    return mlflow_client.search_runs(experiments, order_by=["attributes.start_time ASC"], max_results=1000)


def steps(cwd, run_id, key):
    """The steps of ``key`` in the run, one entry per logged value, sorted."""
    return helpers.steps(store_client(cwd), run_id, key)


def sweep_runs(cwd):
    """(parents, {optimizer: [children]}) of the store."""
    runs = all_runs(cwd)
    parents = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    children = {}
    for run in runs:
        if "mlflow.parentRunId" in run.data.tags:
            children.setdefault(run.data.tags.get("optimizer", "?"), []).append(run)
    return parents, children


class Checks:
    """Collects every failed expectation of a case, so that its report says all of them."""

    def __init__(self, context=""):
        self.failures = []
        self.context = context

    def __call__(self, condition, message):
        if not condition:
            self.failures.append(message)
        return bool(condition)

    def done(self):
        if self.failures:
            lines = "\n".join(f"- {f}" for f in self.failures)
            raise AssertionError(f"{len(self.failures)} expectation(s) failed:\n{lines}\n{self.context}")

    def exit_code(self, train, expected):
        return self(
            train.returncode == expected,
            f"{train.log_stem.name}: exit code {train.returncode}, expected {expected}"
            f"{' — ' + last_line(train.stderr) if train.returncode != expected else ''}",
        )

    def no_traceback(self, train):
        for stream, text in (("stderr", train.stderr), ("stdout", train.stdout)):
            if "Traceback" in text:
                self.failures.append(f"{train.log_stem.name}: a traceback on {stream}: {traceback_summary(text)}")

    def status(self, cwd, run, expected):
        status = store_client(cwd).get_run(run.info.run_id).info.status
        allowed = (expected,) if isinstance(expected, str) else tuple(expected)
        return self(
            status in allowed,
            f"run {run.info.run_id[:8]} ({run.info.run_name}) is {status}, expected {' or '.join(allowed)}",
        )

    def epochs_once(self, cwd, run, epochs):
        """Each per-epoch key has exactly the steps ``0..epochs-1``, each once."""
        ok = True
        for key in PER_EPOCH:
            got = steps(cwd, run.info.run_id, key)
            ok &= self(
                got == list(range(epochs)),
                f"run {run.info.run_id[:8]} ({run.info.run_name}): {key} steps {got}, expected "
                f"{list(range(epochs))} each once",
            )
        return ok

    def summary_once(self, cwd, run):
        ok = True
        for key in SUMMARY:
            n = len(steps(cwd, run.info.run_id, key))
            ok &= self(
                n == 1, f"run {run.info.run_id[:8]} ({run.info.run_name}): {key} logged {n} time(s), expected once"
            )
        return ok

    def complete(self, cwd, run):
        """FINISHED, every epoch once, the summary once."""
        self.status(cwd, run, "FINISHED")
        self.epochs_once(cwd, run, EPOCHS)
        self.summary_once(cwd, run)

    def steps_once_so_far(self, cwd, run):
        """Every per-epoch key has steps 0..k each once, for some k (maybe none)."""
        for key in PER_EPOCH:
            got = steps(cwd, run.info.run_id, key)
            self(
                got == list(range(len(got))),
                f"run {run.info.run_id[:8]} ({run.info.run_name}): {key} steps {got}, expected each of 0..k once",
            )


def last_line(text):
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else "(no output)"


def traceback_summary(text):
    """The exception line that ends the first traceback."""
    lines = text[text.index("Traceback") :].splitlines()
    for line in lines[1:]:
        if line and not line.startswith((" ", "\t", "Traceback")):
            return line[:300]
    return lines[-1][:300]


# -- what the interrupted process said --


def continue_command(text, sweep_dir):
    """The command a stopped sweep printed to continue it: (line, argv after train.py), or
    (None, None). The line must name the sweep dir and hold ``python ... train.py ...``."""
    for line in text.splitlines():
        if str(sweep_dir) not in line or "hydra.sweep.dir=" not in line:
            continue
        match = re.search(r"python3?\s+(\S*train\.py)(.*)$", line)
        if match:
            try:
                return line, shlex.split(match.group(2))
            except ValueError:
                return line, None
    return None, None


def without_sweep_dir(args):
    return [a for a in args if not a.startswith("hydra.sweep.dir=")]


def sweep_dir_of(args, cwd):
    values = [a.split("=", 1)[1] for a in args if a.startswith("hydra.sweep.dir=")]
    return [str((Path(cwd) / v).resolve()) for v in values]
