"""A tracking server that is down at the start, goes away mid-run, or is not wanted
(offline): nothing recorded is lost, and the upload puts it all into the run."""

import contextlib
import json
import shutil
import subprocess
import sys
import time

import mlflow
import numpy as np
import pytest

from kerastrack import ui
from kerastrack.errors import ConfigError
from kerastrack.pipeline import train
from kerastrack.tracking.server import MlflowServer, free_port, sqlite_uri
from kerastrack.tracking.spool import Spool
from kerastrack.upload import main as upload_main
from kerastrack.upload import upload_dir
from tests.helpers import ROOT, artifacts, multirun, steps

EPOCH_KEYS = ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate", "epoch_time_s")


@pytest.fixture
def server(tmp_path):
    """A real mlflow server on its own SQLite db; ``server.restart()`` brings it back on
    the same port after it was stopped."""
    s = MlflowServer(
        sqlite_uri(tmp_path / "server.db"),
        artifacts_destination=tmp_path / "artifacts",
        cwd=tmp_path,
        log_file=tmp_path / "server.log",
    )

    def restart():
        s.stop()  # reaps what an outage left
        s.start()

    s.restart = restart
    yield s
    s.stop()


@pytest.fixture(scope="module")
def running_server(tmp_path_factory):
    """A server that stays up, for the offline tests (they never contact it while training)."""
    tmp = tmp_path_factory.mktemp("server")
    with MlflowServer(sqlite_uri(tmp / "server.db"), artifacts_destination=tmp / "artifacts", cwd=tmp) as s:
        yield s


def only_run(client, experiment):
    exp = client.get_experiment_by_name(experiment)
    (run,) = client.search_runs([exp.experiment_id])
    return run


def test_an_unreachable_server_is_reported_before_any_training(make_cfg, tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ConfigError) as error:
        train(make_cfg(f"tracking.tracking_uri={uri}", "trainer.epochs=3"))
    message = str(error.value)
    assert uri in message and "connection refused" in message
    for hint in (
        "mlflow server --backend-store-uri",
        "tracking.offline=true",
        "python -m kerastrack.upload",
        "tracking=none",
        f"Received: tracking.tracking_uri={uri}",
    ):
        assert hint in message
    assert not (tmp_path / "out").exists()  # made just before the run opens: nothing ran


def test_a_server_that_goes_away_mid_run_loses_nothing(make_cfg, server, request, tmp_path):
    server.start()
    experiment = request.node.name
    train(
        make_cfg(
            f"tracking.tracking_uri={server.url}",
            "trainer.epochs=4",
            "+callbacks.outage._target_=tests.support.StopServerAtEpoch",
            f"+callbacks.outage.pgid={server.process.pid}",
            f"+callbacks.outage.port={server.port}",
        )
    )
    out = tmp_path / "out"
    spool = Spool(out)
    assert spool.directory == out / "mlflow-spool"
    pending = spool.pending()
    spooled = sorted({op["step"] for op in pending if op["op"] == "metrics" and "loss" in op["metrics"]})
    assert pending[-1] == {**pending[-1], "op": "terminate", "status": "FINISHED"}  # the status, last

    server.restart()
    client = mlflow.MlflowClient(server.url)
    run = only_run(client, experiment)
    assert run.info.status == "RUNNING"  # never FINISHED while epochs are missing
    # Epochs are sent off the training thread: epoch 1's may have reached the server before
    # it went away at that epoch's end, or not. Each epoch is in one place, once.
    on_server = steps(client, run.info.run_id, "loss")
    assert on_server[:1] == [0] and on_server + spooled == [0, 1, 2, 3]

    lines = []
    assert upload_dir(out, log_progress=lines.append) == run.info.run_id
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FINISHED"
    for key in EPOCH_KEYS:
        assert steps(client, run.info.run_id, key) == [0, 1, 2, 3], key
    assert {"best_val_loss", "test_accuracy"} <= set(run.data.metrics)
    assert {"plots/learning_curves.png", "plots/confusion_matrix.png", "config/config.yaml"} <= set(
        artifacts(client, run.info.run_id)
    )
    assert any("metric values" in line for line in lines) and any("FINISHED" in line for line in lines)

    assert upload_dir(out, log_progress=lines.append) is None  # again: nothing left, nothing doubled
    assert steps(client, run.info.run_id, "loss") == [0, 1, 2, 3]


def test_an_offline_run_is_uploaded_whole_later(make_cfg, running_server, request, tmp_path):
    server = running_server
    train(make_cfg(f"tracking.tracking_uri={server.url}", "tracking.offline=true", "trainer.epochs=3"))
    out = tmp_path / "out"
    meta = Spool(out).meta()
    assert meta["run_id"] is None and meta["tracking_uri"] == server.url

    run_id = upload_dir(out, log_progress=lambda line: None)
    client = mlflow.MlflowClient(server.url)
    run = only_run(client, request.node.name)
    assert run.info.run_id == run_id and run.info.status == "FINISHED"
    assert run.info.run_name == "digits-mlp-categorical_crossentropy-adam"
    for key in EPOCH_KEYS:
        assert steps(client, run_id, key) == [0, 1, 2], key
    assert run.data.params["trainer.epochs"] == "3" and run.data.tags["optimizer"] == "adam"
    assert {"plots/learning_curves.png", "config/config.yaml"} <= set(artifacts(client, run_id))
    assert upload_dir(out, log_progress=lambda line: None) is None
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_an_offline_run_uploaded_later_has_its_dataset_inputs_and_logged_model(make_cfg, running_server, tmp_path):
    server = running_server
    train(
        make_cfg(
            f"tracking.tracking_uri={server.url}",
            "tracking.offline=true",
            "trainer.epochs=2",
            "tracking.log_model=true",
            "callbacks=none",
        )
    )
    out = tmp_path / "out"
    assert {"inputs", "model"} <= {op["op"] for op in Spool(out).ops()}  # described and saved, sent later

    run_id = upload_dir(out, log_progress=lambda line: None)
    client = mlflow.MlflowClient(server.url)
    run = client.get_run(run_id)
    contexts = {t.value: i.dataset for i in run.inputs.dataset_inputs for t in i.tags if t.key == "mlflow.data.context"}
    assert sorted(contexts) == ["testing", "training", "validation"]
    assert {(d.name, d.source_type) for d in contexts.values()} == {("digits", "code")}
    (model,) = client.search_logged_models([run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'")
    assert model.status == "READY" and [o.model_id for o in run.outputs.model_outputs] == [model.model_id]
    assert {m.key for m in model.metrics} == {k for k in run.data.metrics if k.startswith(("best_", "test_"))}
    mlflow.set_tracking_uri(server.url)
    loaded = mlflow.pyfunc.load_model(f"models:/{model.model_id}")
    assert loaded.metadata.run_id == run_id and loaded.metadata.model_id == model.model_id
    assert loaded.predict(np.zeros((2, 8, 8, 1), "float32")).shape == (2, 10)


def test_on_a_tracking_server_the_run_and_the_ui_print_the_url_that_shows_it(
    make_cfg, running_server, request, caplog, capsys, monkeypatch
):
    server = running_server
    caplog.set_level("INFO", logger="kerastrack.pipeline")
    train(make_cfg(f"tracking.tracking_uri={server.url}"))
    run = only_run(mlflow.MlflowClient(server.url), request.node.name)
    url = f"{server.url}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}/model-metrics?workflowType="
    assert f"In the MLflow UI: {url}machine_learning" in caplog.text
    # The uploaded offline runs share the server: ask for this run by its id.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    assert ui.main(["--run", run.info.run_id]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"Run '{run.info.run_name}': {url}machine_learning"
    experiment = mlflow.MlflowClient(server.url).get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_an_offline_run_that_fails_is_uploaded_failed(make_cfg, running_server, tmp_path):
    server = running_server
    with pytest.raises(RuntimeError, match="boom"):
        train(
            make_cfg(
                f"tracking.tracking_uri={server.url}",
                "tracking.offline=true",
                "trainer.epochs=3",
                "+callbacks.fail._target_=tests.support.FailAtEpoch",
                "+callbacks.fail.epoch=1",
            )
        )
    run_id = upload_dir(tmp_path / "out", log_progress=lambda line: None)
    run = mlflow.MlflowClient(server.url).get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["error.type"] == "RuntimeError"


@pytest.mark.slow
def test_the_upload_command_says_when_the_server_is_still_down(tmp_path):
    uri = f"http://127.0.0.1:{free_port()}"
    spool = Spool(tmp_path / "mlflow-spool")
    spool.write_meta(tracking_uri=uri, experiment_name="e", run_id="0" * 32, run_name="r")
    spool.append({"op": "terminate", "status": "FINISHED", "end_time": 1})
    done = subprocess.run(
        [sys.executable, "-m", "kerastrack.upload", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stderr.startswith(f"Error: the MLflow tracking server at {uri} is unreachable: connection refused")
    assert (
        json.loads(
            (spool.directory / "state.json").read_text()
            if (spool.directory / "state.json").exists()
            else '{"uploaded": 0}'
        )["uploaded"]
        == 0
    )


def test_an_offline_sweep_needs_no_server_and_uploads_as_a_parent_with_its_children(
    running_server, tmp_path, monkeypatch, capsys
):
    # The sweep's server is down throughout (nothing listens there); the upload goes to a real one.
    down = f"http://127.0.0.1:{free_port()}"
    multirun(
        monkeypatch,
        tmp_path,
        train,
        "tracking.offline=true",
        "optimizer=sgd,adam",
        f"tracking.tracking_uri={down}",
        "tracking.experiment_name=offline-sweep",
        "trainer.epochs=2",
        "data.limit=100",
        "trainer.verbose=0",
        "tracking.log_model=false",
        "hydra.sweep.dir=D",
    )
    out = capsys.readouterr().out
    sweep = tmp_path / "D"
    assert "Sweep of 2 job(s) done" in out and "MLflow UI" not in out
    assert f"upload them all (the parent, each job's run under it) with: python -m kerastrack.upload {sweep}," in out
    assert [op for op in Spool(sweep).ops() if op["op"] != "terminate"] == [
        {"op": "tags", "tags": {"sweep.n_jobs": "2", "sweep.n_failed": "0", "sweep.n_skipped": "0"}}
    ]  # the spooled jobs counted as done

    assert upload_main([str(sweep), "--tracking-uri", running_server.url]) == 0
    client = mlflow.MlflowClient(running_server.url)
    found = client.search_runs([client.get_experiment_by_name("offline-sweep").experiment_id])
    (parent,) = [r for r in found if r.data.tags.get("sweep.role") == "parent"]
    assert parent.info.status == "FINISHED" and parent.data.tags["sweep.n_failed"] == "0"
    assert parent.data.tags["sweep.dir"] == str(sweep)
    children = {r.info.run_name: r for r in found if r is not parent}
    assert sorted(children) == ["optimizer=adam", "optimizer=sgd"]
    for child in children.values():
        assert child.info.status == "FINISHED" and child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert steps(client, child.info.run_id, "val_loss") == [0, 1]
    assert upload_main([str(sweep), "--tracking-uri", running_server.url]) == 0  # again: nothing doubled
    assert len(client.search_runs([parent.info.experiment_id])) == 3


class Killed(BaseException):
    """The upload's process dies here: nothing after the call runs (no except, no finally of ours)."""


class DiesAfter:
    """An MlflowClient whose process dies right after its ``n``-th call that writes to the
    server has returned: what the server accepted is there, what the upload meant to note
    next (its state) is not."""

    WRITES = (
        "create_experiment",
        "create_run",
        "log_batch",
        "log_artifact",
        "log_artifacts",
        "log_inputs",
        "create_logged_model",
        "log_outputs",
        "log_model_artifacts",
        "finalize_logged_model",
        "set_terminated",
    )

    def __init__(self, client, n):
        self.client, self.n, self.calls = client, n, []

    def __getattr__(self, name):
        method = getattr(self.client, name)
        if name not in self.WRITES:
            return method

        def call(*args, **kwargs):
            result = method(*args, **kwargs)
            self.calls.append(name)
            if len(self.calls) == self.n:
                raise Killed(name)
            return result

        return call


def test_an_upload_killed_at_any_moment_and_run_again_records_the_run_once(make_cfg, store, tmp_path):
    from kerastrack.tracking.spool import SPOOL_ID_TAG, upload

    train(make_cfg("tracking.offline=true", "trainer.epochs=3", "tracking.log_model=true", "callbacks=none"))
    original = Spool(tmp_path / "out")
    expected = {}
    for op in original.ops():
        for key in op.get("metrics", {}) if op["op"] == "metrics" else ():
            expected.setdefault(key, []).append(op["step"])
    client = mlflow.MlflowClient(store)
    whole = DiesAfter(client, n=0)  # never dies: counts the calls of a whole upload
    copy = Spool(shutil.copytree(original.directory, tmp_path / "whole"))
    copy.write_meta(**{**copy.meta(), "experiment_name": "whole upload"})
    upload(copy, whole, log_progress=lambda line: None)
    assert {"create_run", "log_batch", "log_model_artifacts", "set_terminated"} <= set(whole.calls)
    # Every moment: after each call the server accepted (after the run is created, between
    # metric batches, before and after the final status...), before the upload noted it.
    for n, name in enumerate(whole.calls, start=1):
        moment = f"after call {n} ({name})"
        spool = Spool(shutil.copytree(original.directory, tmp_path / f"killed{n}"))
        spool.write_meta(**{**spool.meta(), "experiment_name": f"killed {moment}"})
        with pytest.raises(Killed):
            upload(spool, DiesAfter(client, n), log_progress=lambda line: None)
        run_id, _ = upload(spool, client, log_progress=lambda line: None)  # the same command again

        experiment = client.get_experiment_by_name(f"killed {moment}")
        (run,) = client.search_runs([experiment.experiment_id])  # one run per spool
        assert run.info.run_id == run_id and run.data.tags.get(SPOOL_ID_TAG) == spool.state().get("spool_id"), moment
        assert run.info.status == "FINISHED", moment
        for key, logged in expected.items():
            assert steps(client, run_id, key) == sorted(logged), f"{key}, killed {moment}"
        assert len(run.inputs.dataset_inputs) == 3, moment
        models = client.search_logged_models([experiment.experiment_id])
        assert [m.status for m in models] == ["READY"] and len(run.outputs.model_outputs) == 1, moment


class SlowFirstCreate:
    """A proxy on loopback in front of ``upstream`` that forwards every request at once but
    holds the answer to the first ``runs/create`` for ``delay`` seconds: a server very slow
    for a while, exactly when the run is created (the client times out and retries, and the
    first request has made a run all the same)."""

    def __init__(self, upstream, delay):
        import http.client
        import http.server
        import threading
        from urllib.parse import urlparse

        target, state = urlparse(upstream), {"held": False}

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                self.forward()

            def do_POST(self):
                self.forward()

            def forward(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                connection.request(self.command, self.path, body, {"Content-Type": "application/json"})
                answer = connection.getresponse()
                data = answer.read()
                if self.path.endswith("/runs/create") and not state["held"]:
                    state["held"] = True
                    time.sleep(delay)  # the run is made on the server; its answer comes too late
                self.send_response(answer.status)
                self.send_header("Content-Type", answer.getheader("Content-Type", "application/json"))
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                with contextlib.suppress(OSError):  # the client that gave up on the held answer is gone
                    self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_a_server_slow_to_answer_when_the_run_is_created_records_one_run(
    running_server, request, monkeypatch, tmp_path
):
    from kerastrack.tracking.mlflow_tracker import MlflowTracker

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")  # MLflow retries the create after 2 s
    with SlowFirstCreate(running_server.url, delay=3) as proxy:
        tracker = MlflowTracker(tracking_uri=proxy.url, experiment_name=request.node.name, log_model=False)
        with tracker.run("slow-create", output_dir=tmp_path):
            tracker.log_params({"lr": "0.1"})
    client = mlflow.MlflowClient(running_server.url)
    run = only_run(client, request.node.name)  # one run: the retried create's twin is not on record
    assert run.info.run_id == tracker.run_id and run.info.status == "FINISHED"
    assert run.data.params == {"lr": "0.1"}
