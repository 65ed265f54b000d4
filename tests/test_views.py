"""What the MLflow UI opens on: saved views of a sweep, run colours, the experiment's kind,
and what the terminal prints to get there (in a real store; the browser test looks)."""

import json
from urllib.parse import parse_qs, urlsplit

import mlflow
import pytest

from kerastrack import ui
from kerastrack.errors import ConfigError
from kerastrack.pipeline import train
from kerastrack.tracking import views

PER_EPOCH = ("loss", "val_loss", "accuracy", "val_accuracy", "learning_rate", "epoch_time_s")


@pytest.fixture
def sweep(store, request):
    """A parent run with three children in the session store, as a sweep leaves them:
    per-epoch metrics at steps 0-2, one-value metrics at step 0."""
    client = mlflow.MlflowClient(store)
    experiment_id = client.create_experiment(request.node.name[:200])
    parent = client.create_run(experiment_id, run_name="sweep optimizer", tags={"sweep.role": "parent"})
    children = []
    for job, name in enumerate(("sgd", "adam", "amsgrad")):
        child = client.create_run(
            experiment_id,
            run_name=f"optimizer={name}",
            tags={
                "mlflow.parentRunId": parent.info.run_id,
                "sweep.role": "child",
                "mlflow.runColor": views.run_color(job),
            },
        )
        for step in range(3):
            for key in PER_EPOCH:
                client.log_metric(child.info.run_id, key, 1.0 / (step + 1 + job), step=step)
        for key in ("best_val_loss", "best_epoch", "test_loss", "test_accuracy"):
            client.log_metric(child.info.run_id, key, 0.5 + job, step=0)
        children.append(child)
    client.create_run(experiment_id, run_name="unrelated")  # not in the sweep: not in its view
    return client, experiment_id, client.get_run(parent.info.run_id), children


def saved_state(client, experiment_id, fragment):
    query = parse_qs(urlsplit(fragment.removeprefix("#")).query)
    key = query["viewStateShareKey"][0]
    return query, json.loads(client.get_experiment(experiment_id).tags[views.VIEW_TAG + key])


def test_a_sweep_view_shows_only_its_children_every_epoch_metric_as_a_line_and_summaries_as_bars(sweep):
    client, experiment_id, parent, children = sweep
    fragment = views.sweep_view(client, parent)
    assert fragment.startswith(f"#/experiments/{experiment_id}/runs?")
    query, state = saved_state(client, experiment_id, fragment)
    assert query["compareRunsMode"] == ["CHART"] and query["workflowType"] == ["machine_learning"]
    found = client.search_runs([experiment_id], filter_string=state["searchFilter"])
    assert sorted(r.info.run_id for r in found) == sorted(c.info.run_id for c in children)
    charts = {card["metricKey"]: card for card in state["compareRunCharts"]}
    assert {k for k, c in charts.items() if c["type"] == "LINE"} == set(PER_EPOCH)
    assert {k for k, c in charts.items() if c["type"] == "BAR"} == {
        "best_val_loss",
        "best_epoch",
        "test_loss",
        "test_accuracy",
    }
    assert [c["metricKey"] for c in state["compareRunCharts"]][:2] == ["loss", "val_loss"]
    sections = {s["uuid"]: s for s in state["compareRunSections"]}
    assert all(card["metricSectionId"] in sections for card in charts.values())
    assert sections[charts["loss"]["metricSectionId"]]["columns"] == 1  # wide: the legend names every run
    # Every run shown, none nested under a collapsed parent: ordered by a metric, not by time.
    assert state["runsHiddenMode"] == "SHOW_ALL" and "start_time" not in state["orderByKey"]


def test_a_sweep_view_ranks_by_the_sweeps_monitor_in_its_direction(sweep):
    client, experiment_id, parent, _ = sweep
    client.set_tag(parent.info.run_id, "sweep.monitor", "val_loss")
    client.set_tag(parent.info.run_id, "sweep.monitor_mode", "max")
    _, state = saved_state(client, experiment_id, views.sweep_view(client, client.get_run(parent.info.run_id)))
    assert state["orderByKey"] == "metrics.`best_val_loss`" and state["orderByAsc"] is False


def test_sweep_children_get_distinct_colours():
    assert len({views.run_color(i) for i in range(20)}) == 20
    assert views.run_color(20) == views.run_color(0)


def test_a_run_marks_its_experiment_as_model_training_and_says_where_everything_went(
    make_cfg, runs, tmp_path, caplog, monkeypatch
):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the UI's default store is then not this one
    caplog.set_level("INFO", logger="kerastrack.pipeline")
    train(make_cfg())
    (run,) = runs()
    experiment = runs.client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    # The one-value metrics are at step 0: the UI compares them in bar charts.
    for key in ("best_val_loss", "best_epoch", "test_loss"):
        assert [m.step for m in runs.client.get_metric_history(run.info.run_id, key)] == [0], key
    said = caplog.text
    assert f"Output dir (plots, config, log): {tmp_path / 'out'}" in said
    assert f"In the MLflow UI: python -m kerastrack.ui --run {run.info.run_id} --backend-store-uri sqlite:///" in said


def test_a_kind_chosen_in_the_ui_is_kept(make_cfg, runs, store):
    train(make_cfg())
    (run,) = runs()
    runs.client.set_experiment_tag(run.info.experiment_id, "mlflow.experimentKind", "genai_development")
    train(make_cfg())
    assert runs.client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "genai_development"


def test_ui_links_name_the_server_without_credentials_or_the_command_for_a_local_store(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert (
        views.ui_link("https://alice:secret@mlflow.example.org:8443/", "#/x", "--run 1")
        == "https://mlflow.example.org:8443/#/x"
    )
    assert (
        views.ui_link(f"sqlite:///{tmp_path / 'mlflow.db'}", "#/x", "--sweep 7") == "python -m kerastrack.ui --sweep 7"
    )
    assert (
        views.ui_link("sqlite:////elsewhere/my store.db", "#/x", "--run 1")
        == "python -m kerastrack.ui --run 1 --backend-store-uri 'sqlite:////elsewhere/my store.db'"
    )


def test_the_ui_lands_on_the_latest_sweep_or_the_one_asked_for(sweep, store):
    client, experiment_id, parent, children = sweep
    what, fragment = ui.landing(store)
    assert what.startswith("Sweep 'sweep optimizer'") and "viewStateShareKey=kerastrack-sweep-" in fragment
    what, fragment = ui.landing(store, run=children[1].info.run_id)
    assert what == "Run 'optimizer=adam'"
    assert fragment.startswith(f"#/experiments/{experiment_id}/runs/{children[1].info.run_id}/model-metrics?")


@pytest.mark.parametrize("option", ["--sweep", "--run"])
def test_an_unknown_sweep_or_run_is_refused_before_the_server_starts(option, sweep, store, capsys):
    _, _, _, children = sweep
    wanted = children[0].info.run_id if option == "--sweep" else "0123456789abcdef0123456789abcdef"
    assert ui.main(["--backend-store-uri", store, option, wanted]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: there is no ") and f"Received: {option[2:]}={wanted}" in err
    with pytest.raises(ConfigError):
        ui.landing(store, **{option[2:]: wanted})
