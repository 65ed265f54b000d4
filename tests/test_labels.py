"""tags=[...] and notes="..." as a user labels runs and sweeps: MLflow tags and the run's
description, read back from the real store, and the report's --filter selecting by a tag."""

import pandas as pd
import pytest
import yaml
from hydra.utils import instantiate

from kerastrack.config.checks import check_config
from kerastrack.errors import ConfigError
from kerastrack.pipeline import train
from kerastrack.report.cli import main as report_main
from kerastrack.resume.identity import config_hash
from kerastrack.tracking.labels import NOTE_TAG, tag_refusal
from kerastrack.utils.hydra_job import group_choices
from tests.helpers import multirun, store_client

TINY = ["data.limit=200", "callbacks=none"]


def test_tags_and_notes_label_the_run_and_the_report_selects_runs_by_a_tag(make_cfg, runs, store, tmp_path, capsys):
    cfg = make_cfg(*TINY, "tags=[baseline,lr-study,2024]", "notes='first try, db_password=hunter2'")
    train(cfg)
    train(make_cfg(*TINY, "optimizer=sgd"))
    plain, tagged = runs()
    tags = tagged.data.tags
    assert {k: tags[k] for k in ("baseline", "lr-study", "2024")} == dict.fromkeys(
        ("baseline", "lr-study", "2024"), "true"
    )
    assert tags[NOTE_TAG] == "first try, db_password=***"  # the UI's description, credentials masked
    assert NOTE_TAG not in plain.data.tags and "baseline" not in plain.data.tags
    # Labels, not parameters; the config artifact has them (the note masked too).
    assert not {"tags", "notes"} & set(tagged.data.params)
    path = runs.client.download_artifacts(tagged.info.run_id, "config/config.yaml", str(tmp_path))
    config = yaml.safe_load(open(path))
    assert config["tags"] == ["baseline", "lr-study", "2024"] and config["notes"] == "first try, db_password=***"
    # Every other tag on the run is one of kerastrack's or MLflow's own, which no user tag may overwrite.
    users = {"baseline", "lr-study", "2024"}
    assert all(tag_refusal(k, group_choices(cfg)) for k in tags if k not in users), tags
    # A sweep matches its finished jobs whatever their labels: the hash leaves them out.
    fresh = make_cfg(*TINY)
    check_config(fresh)
    assert tags["config.hash"] == config_hash(fresh)

    experiment = runs.client.get_experiment(tagged.info.experiment_id).name
    for expr in ("tags.baseline = 'true'", "tags.`lr-study` = 'true'"):
        out = tmp_path / "report"
        assert (
            report_main(["--experiment", experiment, "--tracking-uri", store, "--filter", expr, "--out", str(out)]) == 0
        )
        assert pd.read_csv(out / "runs.csv")["run_id"].tolist() == [tagged.info.run_id], expr
    capsys.readouterr()


BAD = [
    (
        "tags=baseline",
        r"tags must be a list of tag names, e.g. tags=\[baseline,lr-study\] \(none: tags=\[\]\)\. Received: tags=baseline$",
    ),
    ("tags=[a,true]", r"; true is not a name \(quoted, it is one: 'tags=\[\"true\"\]'\)\. Received: tags=\[a, true\]$"),
    ("tags=[a,[b]]", r"; \[b\] is not a name\. Received: tags=\[a, \[b\]\]$"),
    ("tags=['lr study!']", r"; lr study!: MLflow refuses it: Names may only contain .*Received: tags=\[lr study!\]$"),
    ("tags=['a//b']", r"; a//b: MLflow refuses a name that reads as another path .*Received: tags=\[a//b\]$"),
    ("tags=[optimizer]", r"; optimizer: kerastrack sets a tag of that name itself\. Received: tags=\[optimizer\]$"),
    ("tags=[mlflow.note.content]", r"; mlflow.note.content: kerastrack sets a tag of that name itself\."),
    (
        "notes=true",
        r"^notes must be a text \(the run's description\), e.g. notes=\"first try\"; null: none\. Received: notes=true$",
    ),
    ("notes=[a,b]", r"^notes must be a text .*Received: notes=\[a, b\]$"),
]


@pytest.mark.parametrize("override, message", BAD, ids=[o.replace("'", "") for o, _ in BAD])  # names an experiment
def test_bad_tags_and_notes_are_refused_in_one_line_before_any_run(override, message, make_cfg, runs):
    with pytest.raises(ConfigError, match=message):
        train(make_cfg(override))
    assert runs() == []


def test_a_sweep_with_bad_tags_is_refused_before_its_parent_opens(make_cfg, tmp_path):
    cfg = make_cfg("tags=[sweep.role]", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    with pytest.raises(
        SystemExit, match=r"^Error: tags must be .*sweep.role: kerastrack sets .*Received: tags=\[sweep.role\]$"
    ):
        instantiate(cfg.hydra.callbacks.mlflow_sweep).on_multirun_start(cfg)
    assert not (tmp_path / "sweep").exists()  # nothing started


def test_a_sweeps_notes_go_on_its_parent_and_its_tags_on_the_parent_and_every_child(tmp_path, monkeypatch, capsys):
    multirun(
        monkeypatch,
        tmp_path,
        train,
        "optimizer=sgd,adam",
        "tags=[lr-study]",
        "notes='Adam against SGD'",
        *TINY,
        "trainer.epochs=1",
        "trainer.verbose=0",
        "tracking.log_model=false",
        "hydra.callbacks.mlflow_sweep.report=false",
        f"tracking.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        "tracking.experiment_name=labels",
        "hydra.sweep.dir=D",
    )
    capsys.readouterr()
    client = store_client(tmp_path)
    found = client.search_runs([client.get_experiment_by_name("labels").experiment_id])
    (parent,) = [r for r in found if r.data.tags.get("sweep.role") == "parent"]
    children = [r for r in found if r is not parent]
    assert parent.info.status == "FINISHED" and len(children) == 2
    assert parent.data.tags[NOTE_TAG] == "Adam against SGD" and parent.data.tags["lr-study"] == "true"
    for child in children:
        assert child.info.status == "FINISHED" and child.data.tags["lr-study"] == "true"
        assert NOTE_TAG not in child.data.tags  # the sweep's description is its parent's
    selected = client.search_runs([parent.info.experiment_id], filter_string="tags.`lr-study` = 'true'")
    assert len(selected) == 3
