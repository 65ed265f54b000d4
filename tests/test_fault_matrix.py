"""The fault matrix: a signal at each moment of a run's life, and what the record says after.

{SIGINT, SIGTERM, SIGKILL + recovery} x {before the run opens, during store creation
(before the migrations, and in the middle of them), mid-fit, while closing}, for
``python train.py`` and for a parallel sweep. Each case runs in its own launch dir with a
fresh mlflow.db; the process is paused at the moment by tests/faults/sitecustomize.py and
signalled there (see tests/fault_harness.py).

Whatever the fault, the record must be true: no run left RUNNING by a process that
stopped, every epoch on record exactly once, the summary once, a store that still works,
and a way to continue (printed, for an interrupt) that completes the same runs in place.
"""

import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.fault_harness import (
    COMMON,
    INTERRUPTED,
    SWEEP,
    Checks,
    all_runs,
    continue_command,
    deliver,
    last_line,
    run_train,
    start_train,
    sweep_dir_of,
    sweep_runs,
    without_sweep_dir,
)

pytestmark = pytest.mark.slow

MOMENTS = {  # the harness's name of each moment: the test ids
    "open": "before-the-run-opens",
    # In the middle of a fresh store's migrations, where an interrupt used to leave a store
    # no later run could open (tests/test_store.py covers the moments around it in-process).
    "migrate": "during-store-creation",
    "fit": "mid-fit",
    "close": "while-closing",
}
# A fresh store is created before any run: a store cut short there must still work.
STORE_MOMENTS = ("migrate",)
SIGNALS = ("SIGINT", "SIGTERM", "SIGKILL")
OPTIMIZERS = ("sgd", "adam")
MATRIX = [pytest.param(how, moment, id=f"{how}-{name}") for how in SIGNALS for moment, name in MOMENTS.items()]


def signalled(cwd, args, how, moment, paused=1):
    """Starts train.py paused at ``moment``, delivers ``how`` there and waits for the end."""
    first = start_train(cwd, *args, pause_at=moment, name=f"{how}-at-{moment}")
    try:
        pids = first.wait_paused(moment, paused)
        deliver(first, how, pids)
        first.wait()
        stragglers = first.wait_group_gone()
    finally:
        first.kill_group()
    return first, stragglers


def context(cwd):
    """Every log of the case, for the failure report."""
    parts = []
    for log in sorted((Path(cwd) / "logs").glob("*.err")):
        out = log.with_suffix(".out").read_text(errors="replace")
        parts.append(
            f"=== {log.stem} stdout (tail) ===\n{out[-1500:]}\n=== {log.stem} stderr (tail) ===\n"
            f"{log.read_text(errors='replace')[-2500:]}"
        )
    return "\n".join(parts)


def output_dir_of(cwd, run_id):
    for run_json in Path(cwd).glob("outputs/*/*/state/run.json"):
        if json.loads(run_json.read_text()).get("run_id") == run_id:
            return run_json.parents[1]
    return None


# -- the harness itself --


def test_the_harness_pauses_a_single_run_at_every_moment_and_changes_nothing_by_itself(tmp_path):
    train = start_train(tmp_path, *COMMON, pause_at="store,migrate,open,fit,close", name="paused")
    try:
        pids = []
        for moment in ("store", "migrate", "open", "fit", "close"):
            (pid,) = train.wait_paused(moment)
            pids.append(pid)
            train.release([pid])
        train.wait()
    finally:
        train.kill_group()
    check = Checks(context(tmp_path))
    check(pids == [train.process.pid] * 5, f"paused in {pids}, expected train.py ({train.process.pid}) each time")
    check.exit_code(train, 0)
    check.no_traceback(train)
    runs = all_runs(tmp_path)
    if check(len(runs) == 1, f"{len(runs)} runs, expected 1"):
        check.complete(tmp_path, runs[0])
    check.done()


def test_the_harness_pauses_a_sweeps_jobs_and_its_launcher_only_at_store_creation(tmp_path):
    args = [*SWEEP, *COMMON, f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    train = start_train(tmp_path, *args, pause_at="store,migrate,open,fit,close", name="paused")
    try:
        (launcher,) = train.wait_paused("store")
        train.release([launcher])
        (migrating,) = train.wait_paused("migrate")
        train.release([migrating])
        jobs = {}
        for moment in ("open", "fit", "close"):
            jobs[moment] = train.wait_paused(moment, 2)
            train.release(jobs[moment])
        train.wait()
    finally:
        train.kill_group()
    check = Checks(context(tmp_path))
    check(
        launcher == migrating == train.process.pid,
        f"the store was created in {launcher} and {migrating}, not the launcher {train.process.pid}",
    )
    check(train.process.pid not in sum(jobs.values(), []), f"the launcher paused at a job's moment: {jobs}")
    check(jobs["open"] == jobs["fit"] == jobs["close"], f"not the same two job processes at each moment: {jobs}")
    check.exit_code(train, 0)
    check.no_traceback(train)
    check_sweep_complete(check, tmp_path)
    check.done()


# -- a single run --


@pytest.mark.parametrize("how, moment", MATRIX)
def test_a_single_run_hit_at_any_moment_leaves_a_true_record_and_can_be_completed(how, moment, tmp_path):
    first, _ = signalled(tmp_path, COMMON, how, moment)
    check = Checks()
    if how == "SIGKILL":
        check(first.returncode == -9, f"the killed process exited {first.returncode}")
        _single_after_kill(check, tmp_path, moment)
    else:
        _single_after_interrupt(check, tmp_path, moment, first)
    check.context = context(tmp_path)
    check.done()


def _single_after_interrupt(check, cwd, moment, first):
    check.exit_code(first, INTERRUPTED)
    check.no_traceback(first)
    if moment == "open":
        check(
            "no run was recorded" in first.stderr.lower(),
            f"stderr does not say that no run was recorded: {first.stderr.strip().splitlines()[-1:]}",
        )
        runs = all_runs(cwd)
        check(not runs, f"{len(runs)} run(s) recorded ({[r.info.status for r in runs]}), expected none")
    elif moment in STORE_MOMENTS:
        _check_store_works_again(check, cwd)
    elif moment == "fit":
        runs = all_runs(cwd)
        if not check(len(runs) == 1, f"{len(runs)} runs after the interrupt, expected 1"):
            return
        (run,) = runs
        check.status(cwd, run, "KILLED")
        check.epochs_once(cwd, run, 2)
        last = (first.stderr.strip().splitlines() or [""])[-1]
        said = f"Interrupted: run {run.info.run_id} is KILLED, with every finished epoch. Continue it with: python train.py resume="
        if not check(last.startswith(said), f"the last line does not say how to continue: {last!r}"):
            return
        resumed = run_train(
            cwd, last.removeprefix(said.rsplit(" ", 1)[0] + " "), "tracking.log_model=false", name="resume"
        )
        _check_resumed(check, cwd, run, resumed)
    elif moment == "close":
        runs = all_runs(cwd)
        if check(len(runs) == 1, f"{len(runs)} runs, expected 1"):
            check.complete(cwd, runs[0])


def _single_after_kill(check, cwd, moment):
    if moment in ("open", *STORE_MOMENTS):
        if moment == "open":  # the store is whole: it may be read before the second try
            runs = all_runs(cwd)
            check(not runs, f"{len(runs)} run(s) after a kill before the run opened, expected none")
        _check_store_works_again(check, cwd)
        return
    runs = all_runs(cwd)
    if not check(len(runs) == 1, f"{len(runs)} runs after the kill, expected 1"):
        return
    (run,) = runs
    if moment == "fit":
        check.status(cwd, run, "RUNNING")  # nothing could close it
    output_dir = output_dir_of(cwd, run.info.run_id)
    if not check(output_dir is not None, f"no outputs/*/*/state/run.json names run {run.info.run_id}"):
        return
    resumed = run_train(cwd, f"resume={output_dir}", "tracking.log_model=false", name="resume")
    if moment == "close" and resumed.returncode != 0:
        # The run may have been FINISHED before the kill; then resume may refuse, in a line.
        errors = [line for line in resumed.stderr.splitlines() if line.startswith("Error:")]
        check(
            any("FINISHED" in line for line in errors),
            f"resume exited {resumed.returncode} without an Error: line naming FINISHED: "
            f"{errors or resumed.stderr.strip().splitlines()[-1:]}",
        )
        check.no_traceback(resumed)
        check.complete(cwd, run)
        check(len(all_runs(cwd)) == 1, f"{len(all_runs(cwd))} runs, expected 1")
        return
    _check_resumed(check, cwd, run, resumed)


def _check_store_works_again(check, cwd):
    """The same command again, without faults: it must work on the store left behind."""
    again = run_train(cwd, *COMMON, name="again")
    check.exit_code(again, 0)
    check.no_traceback(again)
    runs = all_runs(cwd) if again.returncode == 0 else _runs_or_none(cwd, check)
    if runs is None:
        return
    if not check(runs, "no run in the store after the second try"):
        return
    *earlier, newest = runs
    check.complete(cwd, newest)
    check(len(earlier) <= 1, f"{len(earlier)} runs from the interrupted process, expected at most 1")
    for run in earlier:
        check(
            run.info.status not in ("RUNNING", "FINISHED"),
            f"the interrupted process's run {run.info.run_id[:8]} is {run.info.status}",
        )


def _runs_or_none(cwd, check):
    try:
        return all_runs(cwd)
    except Exception as exc:  # noqa: BLE001 - a broken store is a finding, not a test error
        check(False, f"the store cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return None


def _check_resumed(check, cwd, run, resumed):
    check.exit_code(resumed, 0)
    check.no_traceback(resumed)
    check.complete(cwd, run)
    runs = all_runs(cwd)
    check(
        len(runs) == 1,
        f"{len(runs)} runs after resuming, expected the one resumed "
        f"({[(r.info.run_id[:8], r.info.status) for r in runs]})",
    )


# -- a parallel sweep --


@pytest.mark.parametrize("how, moment", MATRIX)
def test_a_parallel_sweep_hit_at_any_moment_leaves_a_true_record_and_can_be_completed(how, moment, tmp_path):
    sweep_dir = tmp_path / "multirun"
    args = [*SWEEP, *COMMON, f"hydra.sweep.dir={sweep_dir}"]
    # Store creation happens once, in the launcher; every other moment in both jobs.
    first, stragglers = signalled(tmp_path, args, how, moment, paused=1 if moment in STORE_MOMENTS else 2)
    check = Checks()
    check(not stragglers, f"processes of the sweep outlived it: {stragglers}")
    before = {}
    if moment not in STORE_MOMENTS:  # a store interrupted while it was being created is not read before the re-run
        parents, children = sweep_runs(tmp_path)
        before = {opt: [r.info.run_id for r in runs] for opt, runs in children.items()}
        if how != "SIGKILL":
            _check_sweep_stopped(check, tmp_path, moment, parents, children)
    again_args = args
    if how == "SIGKILL":
        check(first.returncode == -9, f"the killed launcher exited {first.returncode}")
    else:
        check.exit_code(first, INTERRUPTED)
        check.no_traceback(first)
        line, printed = continue_command(first.stderr, sweep_dir)
        if check(
            line is not None,
            f"stderr has no line naming {sweep_dir} with the command that continues it "
            f"(python train.py ... hydra.sweep.dir=...)",
        ):
            check(
                printed is not None
                and without_sweep_dir(printed) == without_sweep_dir(args)
                and sweep_dir_of(printed, tmp_path) == [str(sweep_dir)],
                f"the printed command is not this one plus hydra.sweep.dir={sweep_dir}: {line.strip()}",
            )
            if printed is not None:
                again_args = printed
    if how == "SIGTERM" and moment != "fit":
        # Continuing is the same path as after Ctrl-C (tested there); this saves a sweep.
        check.context = context(tmp_path)
        check.done()
        return
    again = run_train(tmp_path, *again_args, name="again")
    check.exit_code(again, 0)
    check.no_traceback(again)
    check_sweep_complete(check, tmp_path, before)
    check.context = context(tmp_path)
    check.done()


def _check_sweep_stopped(check, cwd, moment, parents, children):
    """After Ctrl-C/SIGTERM: nothing RUNNING, the parent KILLED, each job's epochs once."""
    running = [(r.info.run_id[:8], r.info.run_name) for r in all_runs(cwd) if r.info.status == "RUNNING"]
    check(not running, f"runs left RUNNING after the sweep stopped: {running}")
    if check(len(parents) == 1, f"{len(parents)} parent runs, expected 1"):
        check.status(cwd, parents[0], "KILLED")
    for optimizer, runs in children.items():
        check(len(runs) == 1, f"{len(runs)} children for optimizer={optimizer}, expected at most 1")
        for run in runs:
            if moment == "fit":
                check.status(cwd, run, "KILLED")
                check.epochs_once(cwd, run, 2)
            elif moment == "close":  # closing is not cut short: FINISHED, or KILLED at most
                check.status(cwd, run, ("FINISHED", "KILLED"))
                check.steps_once_so_far(cwd, run)
            else:
                check.status(cwd, run, "KILLED")
    if moment == "fit":
        check(
            sorted(children) == sorted(OPTIMIZERS),
            f"children after the interrupt: {sorted(children)}, expected one per optimizer",
        )


def check_sweep_complete(check, cwd, before=None):
    """One FINISHED parent; one FINISHED child per optimizer (the same run as before where
    there was one) with every epoch and its summary exactly once."""
    try:
        parents, children = sweep_runs(cwd)
    except Exception as exc:  # noqa: BLE001 - a broken store is a finding, not a test error
        check(False, f"the store cannot be read: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}")
        return
    if check(len(parents) == 1, f"{len(parents)} parent runs, expected 1"):
        check.status(cwd, parents[0], "FINISHED")
        for runs in children.values():
            for run in runs:
                check(
                    run.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id,
                    f"child {run.info.run_id[:8]} belongs to another parent",
                )
    check(sorted(children) == sorted(OPTIMIZERS), f"children for {sorted(children)}, expected {sorted(OPTIMIZERS)}")
    for optimizer, runs in sorted(children.items()):
        ids = [(r.info.run_id[:8], r.info.status) for r in runs]
        if not check(len(runs) == 1, f"optimizer={optimizer}: {len(runs)} children {ids}, expected 1"):
            continue
        (run,) = runs
        earlier = (before or {}).get(optimizer)
        if earlier:
            check(
                run.info.run_id in earlier,
                f"optimizer={optimizer}: a new child {run.info.run_id[:8]}, "
                f"not the earlier {[i[:8] for i in earlier]} completed in place",
            )
        check.complete(cwd, run)


# -- the launcher killed alone --


def test_a_launcher_killed_hard_leaves_no_process_and_no_running_child_and_a_relaunch_skips_held_runs(tmp_path):
    # kill -9 (or the OOM killer) reaches the launching process only: its workers, re-parented
    # to pid 1, used to finish their jobs, start the queued ones and then wait for ever.
    sweep_dir = tmp_path / "multirun"
    args = [*SWEEP, *COMMON, f"hydra.sweep.dir={sweep_dir}"]
    first = start_train(tmp_path, *args, pause_at="fit", name="first")
    try:
        paused = first.wait_paused("fit", 2)
        # A re-launch while the first launch's workers still train: their runs are held.
        again = run_train(tmp_path, *args, name="again")
        os.kill(first.process.pid, signal.SIGKILL)
        first.wait()
        noticed = _wait_for_lines(sweep_dir.glob("*/train.log"), "launching process", 2)
        first.release(paused)  # only once they noticed: released at once, they would train on (up to 1 s)
        stragglers = first.wait_group_gone(timeout=30)  # the workers and both resource trackers
    finally:
        first.kill_group()
    check = Checks(context(tmp_path))
    check(noticed, "the workers did not notice within 15 s that their launcher was gone")
    check(not stragglers, f"processes of the killed launcher's sweep still alive after 30 s: {stragglers}")
    check.exit_code(again, 1)
    check.no_traceback(again)
    said = [line for line in again.stderr.splitlines() if line.startswith("Skipped: ")]
    check(
        said and said[0].startswith("Skipped: 2 of 2 jobs, held by another process (RUNNING in MLflow"),
        f"the re-launch does not say its jobs were skipped as held: {said or again.stderr.splitlines()[-3:]}",
    )
    check("jobs failed" not in again.stderr, "the re-launch calls the held jobs failed")
    parents, children = sweep_runs(tmp_path)
    if check(len(parents) == 1, f"{len(parents)} parent runs, expected 1"):
        tags = parents[0].data.tags
        check(
            (tags.get("sweep.n_skipped"), tags.get("sweep.n_failed")) == ("2", "0"),
            f"the parent says n_skipped={tags.get('sweep.n_skipped')}, n_failed={tags.get('sweep.n_failed')}",
        )
    check(sorted(children) == sorted(OPTIMIZERS), f"children for {sorted(children)}, expected {list(OPTIMIZERS)}")
    for runs in children.values():
        for run in runs:  # closed by their workers once the launcher was gone
            check.status(tmp_path, run, "KILLED")
            check.epochs_once(tmp_path, run, 2)
    check.done()


def _wait_for_lines(paths, text, count, timeout=15):
    """Waits until ``count`` of the files hold ``text``; returns whether they did."""
    paths, deadline = list(paths), time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(text in p.read_text(errors="replace") for p in paths) >= count:
            return True
        time.sleep(0.1)
    return False


# -- a worker killed alone --


def test_a_worker_killed_alone_fails_its_job_only_and_the_sweep_goes_on(tmp_path):
    # The OOM killer (or kill -9) takes one loky worker: loky then kills the other workers
    # too, and the sweep used to end in a traceback with their runs RUNNING.
    sweep_dir = tmp_path / "multirun"
    args = [
        *(a for a in SWEEP if not a.startswith("optimizer=")),
        "optimizer=sgd,adam,rmsprop",
        *COMMON,
        f"hydra.sweep.dir={sweep_dir}",
    ]
    first = start_train(tmp_path, *args, pause_at="fit", name="first")
    try:
        victim, *_ = first.wait_paused("fit", 2)
        run_of = {
            json.loads(p.read_text())["pid"]: json.loads(p.read_text())["run_id"]
            for p in sweep_dir.glob("*/state/run.json")
        }
        os.kill(victim, signal.SIGKILL)
        while first.process.poll() is None:  # the fresh pool's workers pause at fit too
            first.release(first.markers("fit"))
            time.sleep(0.1)
        first.wait()
        stragglers = first.wait_group_gone()
    finally:
        first.kill_group()
    check = Checks(context(tmp_path))
    check(not stragglers, f"processes of the sweep outlived it: {stragglers}")
    check.exit_code(first, 1)
    check.no_traceback(first)
    output = first.stdout + first.stderr
    said = [line for line in output.splitlines() if "worker process was killed (process " in line]
    check(
        len(said) == 1 and "the sweep goes on" in said[0],
        f"not one line naming the job whose worker was killed: {said or last_line(first.stderr)}",
    )
    ended = [line for line in first.stderr.splitlines() if line.startswith("Error: 1 of 3 jobs failed")]
    check(ended, f"the sweep's end does not count one failed job: {last_line(first.stderr)}")
    parents, children = sweep_runs(tmp_path)
    if check(len(parents) == 1, f"{len(parents)} parent runs, expected 1"):
        check.status(tmp_path, parents[0], "FINISHED")
        tags = parents[0].data.tags
        check(tags.get("sweep.n_failed") == "1", f"the parent says sweep.n_failed={tags.get('sweep.n_failed')}")
    check(sorted(children) == ["adam", "rmsprop", "sgd"], f"children for {sorted(children)}")
    killed = run_of.get(victim)
    check(killed is not None, f"no run.json names the killed worker {victim}: {run_of}")
    for optimizer, runs in sorted(children.items()):
        if not check(len(runs) == 1, f"optimizer={optimizer}: {len(runs)} children, expected 1"):
            continue
        (run,) = runs
        if run.info.run_id == killed:
            check.status(tmp_path, run, "FAILED")
            check(
                run.data.tags.get("error.type") == "WorkerKilled",
                f"the killed job's run has error.type={run.data.tags.get('error.type')}",
            )
        else:
            check.complete(tmp_path, run)  # loky's second victim continued in place, the third job ran
    running = [r.info.run_id[:8] for r in all_runs(tmp_path) if r.info.status == "RUNNING"]
    check(not running, f"runs left RUNNING: {running}")
    check.done()
