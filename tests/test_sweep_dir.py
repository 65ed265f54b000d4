"""A sweep dir holds one sweep: the same sweep continues in it, another is refused before
anything is written; a grid sweep refuses what only a search can sample; a sweep whose
jobs all fail before their runs open says so. Real Hydra and a real MLflow store, in this
process; the jobs are fake (no TensorFlow)."""

import json
import math
import threading

import pytest

from kerastrack.sweeps.sweep_dir import claim
from tests.helpers import multirun, store_client, store_uri


def job(cfg):
    """A job that leaves an output in its dir, as training would."""
    from hydra.core.hydra_config import HydraConfig

    with open(f"{HydraConfig.get().runtime.output_dir}/out.txt", "w") as f:
        f.write(cfg.optimizer._target_)
    return 0.0


def failed_before_its_run_opened(cfg):
    return math.nan  # what train.py returns for a job whose config check failed


def snapshot(directory):
    """Every file under ``directory``: its bytes and modification time."""
    return {
        str(p.relative_to(directory)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(directory.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def parents(tmp_path):
    client = store_client(tmp_path)
    return [r for r in client.search_runs(["1"]) if r.data.tags.get("sweep.role") == "parent"]


def test_a_sweep_dir_refuses_a_different_sweep_and_nothing_in_it_changes(tmp_path, monkeypatch, capsys):
    sweep = tmp_path / "D"
    common = [
        f"tracking.tracking_uri={store_uri(tmp_path)}",
        f"hydra.sweep.dir={sweep}",
        "hydra.callbacks.mlflow_sweep.report=false",
    ]
    with pytest.raises(SystemExit):  # no job opened a run: the sweep ends in an Error line
        multirun(monkeypatch, tmp_path, job, "optimizer=sgd,adam", *common)
    before, (parent,) = snapshot(sweep), parents(tmp_path)
    assert (sweep / "0/out.txt").read_text() == "keras.optimizers.SGD"

    with pytest.raises(SystemExit) as refused:
        multirun(monkeypatch, tmp_path, job, "optimizer=rmsprop,nadam", *common)
    line = str(refused.value)
    assert line.startswith(f"Error: hydra.sweep.dir={sweep} holds another sweep (optimizer=sgd,adam ")
    assert line.endswith(f"Received: hydra.sweep.dir={sweep} (optimizer=rmsprop,nadam {common[0]})")
    assert "\n" not in line
    assert snapshot(sweep) == before  # no job dir, log or multirun.yaml overwritten
    (after,) = parents(tmp_path)  # the first sweep's parent, untouched
    assert after.info.run_id == parent.info.run_id and after.data.tags == parent.data.tags
    assert after.info.end_time == parent.info.end_time

    # The same sweep continues in its dir, in its parent (the re-launch of an interrupted sweep).
    capsys.readouterr()
    with pytest.raises(SystemExit):
        multirun(monkeypatch, tmp_path, job, "optimizer=sgd,adam", *common)
    (again,) = parents(tmp_path)
    assert again.info.run_id == parent.info.run_id and again.data.tags["sweep.relaunches"] == "1"


def test_a_sweep_dir_emptied_and_reused_gives_the_new_sweep_a_parent_of_its_own(tmp_path, monkeypatch):
    import shutil

    common = [
        f"tracking.tracking_uri={store_uri(tmp_path)}",
        "hydra.sweep.dir=D",
        "hydra.callbacks.mlflow_sweep.report=false",
    ]
    for optimizers in ("sgd,adam", "rmsprop,nadam"):
        with pytest.raises(SystemExit):
            multirun(monkeypatch, tmp_path, job, f"optimizer={optimizers}", *common)
        shutil.rmtree(tmp_path / "D")
    overrides = sorted(p.data.tags["sweep.overrides"].split()[0] for p in parents(tmp_path))
    assert overrides == ["optimizer=rmsprop,nadam", "optimizer=sgd,adam"]
    assert all("sweep.relaunches" not in p.data.tags for p in parents(tmp_path))


def test_of_two_different_sweeps_launched_into_one_dir_at_once_one_is_refused(tmp_path):
    from omegaconf import OmegaConf

    def config(optimizers):
        return OmegaConf.create({"hydra": {"overrides": {"task": [f"optimizer={optimizers}"]}, "sweeper": {}}})

    for attempt in range(10):
        control = tmp_path / str(attempt) / ".kerastrack"
        start, outcomes = threading.Barrier(2), []

        def launch(optimizers, start=start, control=control, outcomes=outcomes):
            start.wait()
            try:
                claim(control.parent, control, config(optimizers))
                outcomes.append(("claimed", optimizers))
            except SystemExit as exc:
                outcomes.append(("refused", str(exc)))

        threads = [threading.Thread(target=launch, args=(o,)) for o in ("sgd,adam", "rmsprop,nadam")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(kind for kind, _ in outcomes) == ["claimed", "refused"]
        (winner,) = [o for kind, o in outcomes if kind == "claimed"]
        assert json.loads((control / "sweep.json").read_text())["overrides"] == [f"optimizer={winner}"]


def test_a_grid_sweep_refuses_an_interval_in_one_line_and_records_nothing(tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as refused:
        multirun(
            monkeypatch,
            tmp_path,
            job,
            "optimizer.learning_rate=interval(0.001,0.1)",
            f"tracking.tracking_uri={store_uri(tmp_path)}",
            "hydra.sweep.dir=D",
        )
    assert str(refused.value) == (
        "Error: optimizer.learning_rate=interval(...) is a range to search, which a grid sweep cannot run (it sweeps "
        "lists: optimizer.learning_rate=0.001,0.01,0.1, or range(start,stop,step)); search it with Optuna: python "
        "train.py -m hparams_search=optuna 'optimizer.learning_rate=interval(0.001,0.1)'. "
        "Received: optimizer.learning_rate=interval(0.001,0.1)"
    )
    assert not (tmp_path / "mlflow.db").exists()  # no store, no parent run
    assert not list((tmp_path / "D").rglob("*"))  # nothing claimed or written


def test_a_sweep_whose_jobs_all_fail_before_their_runs_open_says_so_and_offers_no_view(tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as failed:
        multirun(
            monkeypatch,
            tmp_path,
            failed_before_its_run_opened,
            "optimizer=sgd,adam",
            f"tracking.tracking_uri={store_uri(tmp_path)}",
            "hydra.sweep.dir=D",
        )
    assert str(failed.value) == (
        f"Error: 2 of 2 jobs failed (0 of them diverged); they failed before any run opened, "
        f"with nothing recorded; their logs are in {tmp_path / 'D'}"
    )
    out = capsys.readouterr().out
    assert "Sweep of 2 job(s) done" in out and "MLflow UI" not in out
    (parent,) = parents(tmp_path)
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.n_failed"] == "2"
