"""Resuming: a run killed after epoch k and resumed repeats the uninterrupted run bit for bit."""

import json

import pytest

from kerastrack.errors import ConfigError, DiskFull, RunHeld
from kerastrack.pipeline import train
from kerastrack.resume.state import read_state
from tests.helpers import ROOT, history, run_train, steps, store_client

PER_EPOCH = ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate")


def killed_at(make_cfg, tmp_path, epoch, *overrides):
    """Trains until SIGTERM after ``epoch``; returns the KILLED run's id."""
    stop = [
        "+callbacks.stop._target_=tests.support.SignalAtEpoch",
        f"+callbacks.stop.epoch={epoch}",
        f"+callbacks.stop.once={tmp_path / 'signalled'}",
    ]
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg(*overrides, *stop, f"paths.output_dir={tmp_path / 'killed'}"))
    return json.loads((tmp_path / "killed" / "state" / "run.json").read_text())["run_id"]


@pytest.mark.parametrize(
    "overrides",
    [
        # dropout (seed generators) and a schedule (the optimizer's step)
        ("model.dropout=0.3", "scheduler=exponential", "trainer.epochs=4"),
        # ReduceLROnPlateau's and EarlyStopping's counters: the rate is cut every other epoch
        # and training stops early, at the same epoch as the uninterrupted run.
        (
            "scheduler=plateau",
            "callbacks.reduce_lr_on_plateau.patience=1",
            "callbacks.reduce_lr_on_plateau.min_delta=1.0",
            "callbacks.early_stopping.patience=3",
            "callbacks.early_stopping.min_delta=1.0",
            "trainer.epochs=8",
        ),
    ],
    ids=["dropout-schedule", "plateau-earlystopping"],
)
def test_a_killed_and_resumed_run_is_bit_identical_to_an_uninterrupted_one(overrides, make_cfg, runs, tmp_path):
    # The signal comes at the end of epoch 1, after the logger recorded it and before the
    # state was read (its write not due yet, state_every_s=2): it is held until the state
    # of epoch 1 is read, and that is saved as the run stops, so resume repeats no epoch.
    run_id = killed_at(make_cfg, tmp_path, 1, *overrides)
    (killed,) = runs()
    assert killed.info.status == "KILLED" and [s for s, _ in history(runs.client, killed, "loss")] == [0, 1]
    saved = read_state(tmp_path / "killed" / "state" / "training_state.npz", "")
    assert saved.meta["epoch"] == 2 and len(saved.epochs) == 2  # the epochs on record, no fewer

    epochs = next(o for o in overrides if o.startswith("trainer.epochs="))
    best = train(make_cfg(f"resume={run_id}", epochs))
    resumed = runs.client.get_run(run_id)
    assert resumed.info.status == "FINISHED"
    assert resumed.data.tags["resume.count"] == "1" and "error.type" not in resumed.data.tags
    assert resumed.data.tags["resume.last_error"].startswith("KILLED: KeyboardInterrupt")

    expected = train(make_cfg(*overrides, f"paths.output_dir={tmp_path / 'whole'}"))
    whole = runs()[0]
    assert whole.info.run_id != run_id and best == expected
    for key in PER_EPOCH:
        assert history(runs.client, resumed, key) == history(runs.client, whole, key), key
    for key in ("best_val_loss", "best_epoch", "test_loss", "test_accuracy"):
        assert resumed.data.metrics[key] == whole.data.metrics[key], key
        assert len(history(runs.client, resumed, key)) == 1, key  # once, not once per start
    if "scheduler=plateau" in overrides:  # the rate was cut, and training stopped early
        assert len({v for _, v in history(runs.client, whole, "learning_rate")}) > 1
        assert len(history(runs.client, whole, "loss")) < 8
    assert not (tmp_path / "killed" / "state" / "training_state.npz").exists()  # finished: state gone
    assert (tmp_path / "killed" / "state" / "run.json").is_file()


@pytest.mark.parametrize(
    "deterministic, saved_after, model",
    [
        ("true", 0, "model=mlp"),
        ("false", 3, "model=mlp"),
        ("true", 0, "model.hidden_units=[1024]"),  # auto: XLA on CPU, without op determinism
    ],
    ids=["deterministic", "not-deterministic", "xla"],
)
def test_the_state_is_saved_at_intervals_and_a_run_killed_hard_repeats_the_epochs_since_bit_for_bit(
    deterministic, saved_after, model, make_cfg, runs, tmp_path, monkeypatch
):
    # An hour between saves: only the first epoch's state is kept, unless TensorFlow's ops
    # are not deterministic (repeated epochs could then differ from the recorded ones). A
    # kill -9 leaves it so: no save as the run stops (here only that save is left out).
    from kerastrack.callbacks.recording import TrainingState

    monkeypatch.setattr(TrainingState, "keep_last", lambda self: None)
    overrides = ("trainer.epochs=5", "trainer.state_every_s=3600", f"deterministic={deterministic}", model)
    run_id = killed_at(make_cfg, tmp_path, 3, *overrides)
    saved = read_state(tmp_path / "killed" / "state" / "training_state.npz", "")
    assert saved.meta["epoch"] - 1 == saved_after
    assert steps(runs.client, run_id, "loss") == [0, 1, 2, 3]
    assert runs.client.get_run(run_id).data.params["trainer.jit_compile.used"] == str("1024" in model)
    if deterministic == "false":
        return
    monkeypatch.undo()
    best = train(make_cfg(f"resume={run_id}", *overrides))
    assert best == train(make_cfg(*overrides, f"paths.output_dir={tmp_path / 'whole'}"))
    resumed, whole = runs.client.get_run(run_id), runs()[0]
    for key in PER_EPOCH:  # the repeated epochs 1-3 were not logged twice, and match
        assert history(runs.client, resumed, key) == history(runs.client, whole, key), key


def test_resume_by_output_dir_without_tracking(make_cfg, tmp_path):
    stop = [
        "+callbacks.stop._target_=tests.support.SignalAtEpoch",
        "+callbacks.stop.epoch=0",
        f"+callbacks.stop.once={tmp_path / 'signalled'}",
    ]
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg("tracking=none", "trainer.epochs=3", *stop, f"paths.output_dir={tmp_path / 'a'}"))
    assert json.loads((tmp_path / "a" / "state" / "run.json").read_text())["run_id"] is None
    best = train(make_cfg("tracking=none", "trainer.epochs=3", f"resume={tmp_path / 'a'}"))
    assert best == train(make_cfg("tracking=none", "trainer.epochs=3", *stop, f"paths.output_dir={tmp_path / 'b'}"))
    assert (tmp_path / "a" / "learning_curves.png").is_file()


def test_what_cannot_be_resumed_is_refused_before_anything_runs(make_cfg, runs, tmp_path):
    run_id = killed_at(make_cfg, tmp_path, 0, "trainer.epochs=2")
    with pytest.raises(ConfigError, match=r"optimizer=sgd \(the run has adam\).*Received: .*optimizer=sgd"):
        train(make_cfg(f"resume={run_id}", "optimizer=sgd"))
    with pytest.raises(ConfigError, match=r"trainer.epochs=5 \(the run has 2\)"):
        train(make_cfg(f"resume={run_id}", "trainer.epochs=5"))
    with pytest.raises(ConfigError, match=r"trainer.epochs=1 \(the run has 2\)"):
        train(make_cfg(f"resume={run_id}"))  # the test's shrunk default, 1 epoch
    with pytest.raises(ConfigError, match=r"notes=retry \(the run has None\)"):  # labels are the run's own too
        train(make_cfg(f"resume={run_id}", "trainer.epochs=2", "notes=retry"))
    assert runs.client.get_run(run_id).info.status == "KILLED"  # refusals change nothing
    train(make_cfg(f"resume={run_id}", "trainer.epochs=2", "trainer.verbose=1", "optimizer=adam"))  # neutral or equal
    with pytest.raises(ConfigError, match=f"run {run_id} is FINISHED"):
        train(make_cfg(f"resume={run_id}", "trainer.epochs=2"))
    with pytest.raises(ConfigError, match="resume: no run 0123abcd in sqlite:///.*Received: resume=0123abcd"):
        train(make_cfg("resume=0123abcd"))
    with pytest.raises(ConfigError, match="has no saved training state"):
        train(make_cfg(f"resume={tmp_path}"))
    for empty in ("resume=", "resume=''"):  # not a new run, silently
        with pytest.raises(ConfigError, match=r"^resume= needs the run to continue: .* Received: resume=$"):
            train(make_cfg(empty))
    assert len(runs()) == 1


def test_a_new_run_never_trains_on_from_another_runs_state_in_its_output_dir(make_cfg, runs, tmp_path):
    run_id = killed_at(make_cfg, tmp_path, 1, "trainer.epochs=4")
    out = tmp_path / "killed"
    with pytest.raises(
        ConfigError,
        match=rf"holds the saved training state of run {run_id} \(KILLED\), which only "
        rf"resume= may continue: python train.py resume={out}\..*Received: "
        rf"paths.output_dir={out}",
    ):
        train(make_cfg("trainer.epochs=4", "optimizer.learning_rate=0.01", f"paths.output_dir={out}"))
    assert len(runs()) == 1 and (out / "state" / "training_state.npz").is_file()  # refused, nothing touched

    train(make_cfg(f"resume={run_id}", "trainer.epochs=4"))  # once the run is FINISHED, the dir is free
    train(make_cfg("trainer.epochs=2", "optimizer.learning_rate=0.01", f"paths.output_dir={out}"))
    fresh = runs()[0]
    assert fresh.info.run_id != run_id and fresh.info.status == "FINISHED"
    assert history(runs.client, fresh, "learning_rate") == [(0, pytest.approx(0.01)), (1, pytest.approx(0.01))]


def test_epochs_lost_from_the_store_are_logged_from_the_saved_state_on_resume(make_cfg, runs, tmp_path, store):
    # A process killed hard loses what MLflow's asynchronous queue still held: here the
    # store loses epochs 1 and 2 of a run killed after epoch 2 (its state saved epoch 1).
    import sqlite3

    run_id = killed_at(make_cfg, tmp_path, 2, "trainer.epochs=4")
    with sqlite3.connect(store.removeprefix("sqlite:///")) as db:
        db.execute("DELETE FROM metrics WHERE run_uuid = ? AND step >= 1", (run_id,))
    assert steps(runs.client, run_id, "loss") == [0]

    train(make_cfg(f"resume={run_id}", "trainer.epochs=4"))
    for key in ("loss", "val_loss", "accuracy", "learning_rate", "epoch_time_s"):
        assert steps(runs.client, run_id, key) == [0, 1, 2, 3], key
    for key in ("best_val_loss", "best_epoch", "test_loss"):
        assert len(steps(runs.client, run_id, key)) == 1, key


@pytest.mark.parametrize(
    "damage, named",
    [
        (
            lambda state: (state / "training_state.npz").write_bytes((state / "training_state.npz").read_bytes()[:200]),
            "training_state.npz is damaged",
        ),
        (lambda state: (state / "training_state.npz").unlink(), "training_state.npz is missing"),
        (lambda state: (state / "run.json").write_text("{not json"), "run.json is damaged"),
        (lambda state: (state / "config.yaml").write_text("trainer: [unclosed"), "config.yaml is damaged"),
        (lambda state: (state / "config.yaml").unlink(), "config.yaml is missing"),
    ],
    ids=["truncated-archive", "missing-archive", "bad-run-json", "bad-config-yaml", "missing-config"],
)
def test_a_damaged_or_missing_state_is_one_error_naming_the_file(damage, named, make_cfg, runs, tmp_path):
    run_id = killed_at(make_cfg, tmp_path, 2, "trainer.epochs=4")
    damage(tmp_path / "killed" / "state")
    target = run_id if "run.json" not in named else tmp_path / "killed"
    with pytest.raises(ConfigError, match=rf"{named}.*Received: resume="):
        train(make_cfg(f"resume={target}", "trainer.epochs=4"))
    run = runs.client.get_run(run_id)
    assert run.info.status == "KILLED" and steps(runs.client, run_id, "loss") == [0, 1, 2]  # nothing restarted


def test_a_resumed_run_stays_in_its_own_experiment_and_says_so(make_cfg, runs, tmp_path, caplog):
    import logging

    run_id = killed_at(make_cfg, tmp_path, 0, "trainer.epochs=2")
    own = runs.client.get_run(run_id).info.experiment_id
    with caplog.at_level(logging.INFO, logger="kerastrack"):
        train(make_cfg(f"resume={run_id}", "trainer.epochs=2", "tracking.experiment_name=elsewhere"))
    assert runs.client.get_run(run_id).info.experiment_id == own
    assert runs.client.get_experiment_by_name("elsewhere") is None  # not created on the way
    finished = [r.getMessage() for r in caplog.records if "FINISHED in" in r.getMessage()]
    assert finished and finished[-1].endswith(f"(experiment {runs.client.get_experiment(own).name})")


def test_a_second_resume_of_a_run_being_resumed_is_refused(make_cfg, runs, tmp_path):
    from filelock import FileLock

    run_id = killed_at(make_cfg, tmp_path, 0, "trainer.epochs=2")
    with FileLock(tmp_path / "killed" / "state" / "lock"):  # what the first resume holds while it trains
        with pytest.raises(RunHeld, match=r"another process is training in .*killed right now") as refused:
            train(make_cfg(f"resume={run_id}", "trainer.epochs=2"))
    assert (
        refused.value.held == f"run {run_id} in {tmp_path / 'killed'} (its lock)"
    )  # a sweep's job: skipped, not failed
    assert runs.client.get_run(run_id).info.status == "KILLED"
    train(make_cfg(f"resume={run_id}", "trainer.epochs=2"))
    assert runs.client.get_run(run_id).info.status == "FINISHED"


@pytest.mark.slow
def test_a_relaunched_sweep_skips_finished_jobs_and_resumes_the_killed_one(tmp_path):
    # Job 0 (2 epochs) finishes; job 1 (3 epochs) is killed after epoch 2, which kills the
    # sweep. The same command into the same sweep dir skips job 0 and resumes job 1.
    command = [
        "-m",
        "trainer.epochs=2,3",
        "hydra.sweep.dir=sweep",
        "tracking.log_model=false",
        "trainer.verbose=0",
        "+callbacks.stop._target_=tests.support.SignalAtEpoch",
        "+callbacks.stop.epoch=2",
        f"+callbacks.stop.once={tmp_path / 'signalled'}",
        "hydra.callbacks.mlflow_sweep.report=false",
    ]
    first = run_train(tmp_path, *command)
    assert first.returncode != 0
    client = store_client(tmp_path)
    before = {r.info.run_name: r for r in client.search_runs(["1"])}
    assert before["trainer.epochs=2"].info.status == "FINISHED"
    assert before["trainer.epochs=3"].info.status == "KILLED"

    second = run_train(tmp_path, *command)
    assert second.returncode == 0, second.stderr[-3000:]
    after = {r.info.run_name: r for r in client.search_runs(["1"])}
    assert after.keys() == before.keys()  # no new runs: one parent, the same two children
    parent = next(r for r in after.values() if r.data.tags.get("sweep.role") == "parent")
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.n_failed"] == "0"
    assert parent.data.tags["sweep.relaunches"] == "1"
    skipped, resumed = after["trainer.epochs=2"], after["trainer.epochs=3"]
    assert skipped.info.end_time == before["trainer.epochs=2"].info.end_time  # untouched
    assert resumed.info.status == "FINISHED" and resumed.data.tags["resume.count"] == "1"
    assert [m.step for m in client.get_metric_history(resumed.info.run_id, "val_loss")] == [0, 1, 2]


def test_a_full_disk_that_let_no_state_be_saved_stops_the_run_early_and_offers_no_resume(
    make_cfg, runs, tmp_path, monkeypatch
):
    # The output dir's disk has room for run.json but not for the training state (its
    # archive is the one big write); the store is on another disk.
    import errno

    from kerastrack.callbacks import recording as callbacks

    def full(path, content):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(callbacks, "write_atomic", full)
    with pytest.raises(DiskFull) as error:
        train(make_cfg("trainer.epochs=20"))
    message, out = str(error.value), tmp_path / "out"
    (run,) = runs()
    done = int(message.split("training stopped with ")[1].split(" of 20 epochs finished; ")[0])
    assert 1 <= done < 20 and steps(runs.client, run.info.run_id, "loss") == list(range(done))  # not after the fact
    assert message.endswith(
        f"run {run.info.run_id} is FAILED. No training state could be saved in {out / 'state'}, "
        f"so resume= cannot continue the run: free some space, then start it again as a new run."
    )
    monkeypatch.undo()
    with pytest.raises(ConfigError, match="training state .* is missing"):  # as said: resume= refuses it
        train(make_cfg(f"resume={out}", "trainer.epochs=20"))


@pytest.fixture
def small_disk(tmp_path):
    """A small disk of its own (an 8 MiB tmpfs), and the env that lets ``python train.py``
    on it import the tests' callbacks."""
    import os
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small disk (tmpfs) needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], check=True)
    try:
        yield disk, {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


@pytest.mark.slow
def test_a_full_disk_stops_the_run_in_one_line_and_resume_completes_it_once_there_is_space(small_disk):
    # A small disk of its own (tmpfs) holds the store and the outputs, as a project dir on
    # a full disk would; a callback fills it after epoch 1.
    import contextlib
    import re

    disk, env = small_disk
    full = run_train(
        disk,
        "trainer.epochs=4",
        "hydra.run.dir=out",
        "+callbacks.fill._target_=tests.support.FillDiskAtEpoch",
        f"+callbacks.fill.path={disk / 'filler'}",
        env=env,
    )
    assert full.returncode == 1
    assert "Traceback" not in full.stderr and "disk is full" not in full.stdout
    errors = [line for line in full.stderr.splitlines() if "disk is full" in line]
    assert len(errors) == 1 and errors[0].startswith("Error: the disk is full (No space left on device): ")
    kept = re.search(
        r"The training state after (\d+) epochs? is kept in (\S+)\. Free some space, then continue it: "
        r"python train.py resume=(\S+)$",
        errors[0],
    )
    assert kept and kept.group(2) == str(disk / "out" / "state") and kept.group(3) == str(disk / "out"), errors

    # What the failed run freed: full again.
    with open(disk / "filler", "ab", buffering=0) as filler, contextlib.suppress(OSError):
        while True:
            filler.write(b"\0" * 4096)
    elsewhere = run_train(disk, "hydra.run.dir=other", env=env)  # refused before Hydra writes into it
    assert elsewhere.returncode == 1 and "Traceback" not in elsewhere.stderr
    assert (
        elsewhere.stderr.strip()
        .splitlines()[-1]
        .startswith("Error: hydra.run.dir cannot be written (No space left on device)")
    )

    (disk / "filler").unlink()
    resumed = run_train(disk, f"resume={kept.group(3)}", env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    # It continues from the state the line named.
    assert f"resuming from the state saved after epoch {int(kept.group(1)) - 1} " in resumed.stdout
    client = store_client(disk)
    (run,) = client.search_runs(["1"])
    assert run.info.status == "FINISHED"
    for key in ("loss", "val_loss", "learning_rate"):
        assert steps(client, run.info.run_id, key) == [0, 1, 2, 3], key
    assert len(steps(client, run.info.run_id, "best_val_loss")) == 1


def test_a_run_killed_while_its_model_is_logged_has_its_summary_and_resume_adds_the_model_once(
    make_cfg, runs, tmp_path, monkeypatch
):
    import os
    import signal

    import mlflow

    from kerastrack.tracking.mlflow_tracker import MlflowTracker

    log_model = MlflowTracker.log_keras_model

    def killed(self, *args, **kwargs):  # SIGTERM as the model's logging starts, once
        monkeypatch.setattr(MlflowTracker, "log_keras_model", log_model)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(MlflowTracker, "log_keras_model", killed)
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg("trainer.epochs=2", "tracking.log_model=true"))
    (run,) = runs()
    summary = ("best_val_loss", "best_epoch", "test_loss", "test_accuracy")
    assert run.info.status == "KILLED" and all(len(steps(runs.client, run.info.run_id, k)) == 1 for k in summary)

    def models():
        return mlflow.search_logged_models(
            experiment_ids=[run.info.experiment_id],
            output_format="list",
            filter_string=f"source_run_id = '{run.info.run_id}'",
        )

    assert models() == []

    train(make_cfg(f"resume={run.info.run_id}", "trainer.epochs=2", "tracking.log_model=true"))
    assert runs.client.get_run(run.info.run_id).info.status == "FINISHED" and len(models()) == 1
    for key in summary:  # nothing logged twice, nothing trained again
        assert steps(runs.client, run.info.run_id, key) == [0], key
    for key in ("loss", "val_loss", "epoch_time_s"):
        assert steps(runs.client, run.info.run_id, key) == [0, 1], key


@pytest.mark.slow
def test_a_sweep_on_a_disk_that_fills_stops_in_one_line_and_its_relaunch_completes_every_job_once(small_disk):
    # The basic launcher: job 0 fills the disk after epoch 1; Hydra would write job 1's config
    # into the full sweep dir next (it used to end in a traceback, and so did closing the parent).
    disk, env = small_disk
    command = [
        "-m",
        "optimizer=sgd,adam",
        "trainer.epochs=3",
        "tracking.log_model=false",
        "hydra.sweep.dir=sweep",
        "hydra.callbacks.mlflow_sweep.report=false",
        "+callbacks.fill._target_=tests.support.FillDiskAtEpoch",
        f"+callbacks.fill.path={disk / 'filler'}",
    ]
    full = run_train(disk, *command, env=env)
    assert full.returncode == 1 and "Traceback" not in full.stderr + full.stdout, full.stderr[-3000:]
    errors = [line for line in full.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith("Error: the disk is full (No space left on device): ")
    assert not (disk / "sweep" / "1").exists()  # job 1 never started

    (disk / "filler").unlink()
    again = run_train(disk, *command, env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    client = store_client(disk)
    runs = {r.info.run_name: r for r in client.search_runs(["1"])}
    assert len(runs) == 3 and {r.info.status for r in runs.values()} == {"FINISHED"}  # the parent, 2 jobs
    for name in ("optimizer=sgd", "optimizer=adam"):
        assert steps(client, runs[name].info.run_id, "loss") == [0, 1, 2], name
        assert len(steps(client, runs[name].info.run_id, "best_val_loss")) == 1, name


def test_an_output_dir_deleted_under_a_run_is_whole_again_when_it_stops_and_resume_completes_it(
    make_cfg, runs, tmp_path
):
    out = tmp_path / "killed"
    run_id = killed_at(
        make_cfg,
        tmp_path,
        2,
        "trainer.epochs=3",
        "+callbacks.rm._target_=tests.support.DeleteAtEpoch",
        f"+callbacks.rm.path={out}",
    )
    assert {p.name for p in (out / "state").iterdir()} >= {"run.json", "config.yaml", "training_state.npz"}
    train(make_cfg(f"resume={out}", "trainer.epochs=3"))  # as the interrupted line said
    assert runs.client.get_run(run_id).info.status == "FINISHED"
    for key in ("loss", "val_loss", "epoch_time_s"):
        assert steps(runs.client, run_id, key) == [0, 1, 2], key


# The module paths of kerastrack's objects before its modules moved into packages, as a run
# recorded then saved them in state/config.yaml (conf/ in the commits before the move).
PRE_MOVE = {
    "kerastrack.data.lab.": "kerastrack.lab.",
    "kerastrack.losses.surfaces.": "kerastrack.surfaces.",
    "kerastrack.callbacks.probes.": "kerastrack.probes.",
    "kerastrack.models.builders.": "kerastrack.models.",
}


def test_a_run_recorded_before_the_modules_moved_resumes_after_the_move(make_cfg, runs, tmp_path, monkeypatch):
    import sys

    from kerastrack.utils.moved import MovedFinder

    lab = ("experiment=surfaces", "trainer.epochs=3", "data.steps_per_epoch=2", "optimizer=adam")
    run_id = killed_at(make_cfg, tmp_path, 0, *lab)
    config = tmp_path / "killed" / "state" / "config.yaml"
    text = config.read_text()
    for new, old in PRE_MOVE.items():
        assert f"_target_: {new}" in text, new  # the run's data, loss, callback and model
        text = text.replace(f"_target_: {new}", f"_target_: {old}")
    config.write_text(text)
    old_modules = ("kerastrack.lab", "kerastrack.surfaces", "kerastrack.probes")
    for name in old_modules:  # imported by this resume, not left over from another test
        monkeypatch.delitem(sys.modules, name, raising=False)

    # Without the finder of the old paths, resume cannot re-create the run's objects...
    with monkeypatch.context() as without:
        without.setattr(sys, "meta_path", [f for f in sys.meta_path if not isinstance(f, MovedFinder)])
        with pytest.raises(ConfigError, match=r"kerastrack\.lab\.surface_steps"):
            train(make_cfg(f"resume={run_id}", *lab))
    assert runs.client.get_run(run_id).info.status == "KILLED"

    # ... with it, the run continues where it stopped, in the same MLflow run.
    train(make_cfg(f"resume={run_id}", *lab))
    (run,) = runs()
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert steps(runs.client, run_id, "x") == [0, 1, 2] and steps(runs.client, run_id, "loss") == [0, 1, 2]
    assert all(name in sys.modules for name in old_modules)  # built from the old paths
