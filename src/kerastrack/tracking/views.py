"""What the MLflow UI shows first: the experiment's kind, each sweep child's colour, and a
saved view of a sweep's runs side by side, with the URL that opens it.

MLflow 3.17's UI reads all of it from the store, but no Python API writes it, hence this
module. What the UI reads (its JavaScript bundle, checked in a real browser by
tests/test_ui_browser.py):

- the experiment tag ``mlflow.experimentKind`` (``custom_model_development``: model
  training) and the URL parameter ``workflowType=machine_learning`` (the sidebar's switch,
  which otherwise opens the GenAI view, whatever the tag says);
- the run tag ``mlflow.runColor``: without it, colours come from a hash of the run id, and
  three children of one sweep may get three near-identical greens;
- a view saved as the experiment tag ``mlflow.sharedViewState.<key>`` (what the UI's Share
  button writes: the search, the order, and the charts' layout, as JSON), opened by the URL
  parameters ``viewStateShareKey=<key>`` and ``compareRunsMode=CHART``;
- its chart rule: a metric is drawn as a line chart when some run logged it at a step >= 1,
  else as a bar chart (one bar a run, 10 runs at most unless the chart says more); child
  runs are nested under their collapsed parent, and so hidden from the charts, unless the
  runs are ordered by something other than their start time.
"""

import json
import shlex
import uuid
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from kerastrack.tracking.query import PARENT_FILTER
from kerastrack.tracking.store import DEFAULT_URI, resolve_tracking_uri
from kerastrack.utils.secrets import mask_uri

EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")
VIEW_TAG = "mlflow.sharedViewState."
# Matplotlib's tab10 then the light halves of tab20: distinct side by side, and the same
# colours the report uses for its first ten groups.
PALETTE = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
    "#aec7e8",
    "#ffbb78",
    "#98df8a",
    "#ff9896",
    "#c5b0d5",
    "#c49c94",
    "#f7b6d2",
    "#c7c7c7",
    "#dbdb8d",
    "#9edae5",
]
# The URL parameters every link into the UI carries: the model-training side of the UI.
MODEL_TRAINING = {"workflowType": "machine_learning"}


def run_color(index):
    """The colour of a sweep's ``index``-th job (``mlflow.runColor``)."""
    return PALETTE[int(index) % len(PALETTE)]


def is_summary(key):
    """Whether a metric is one value per run (logged once, at step 0), not one per epoch."""
    return key.startswith(("best_", "test_"))


def mark_experiment(client, experiment):
    """Marks a kerastrack experiment as model training, unless its kind was chosen already."""
    if EXPERIMENT_KIND[0] not in experiment.tags:
        client.set_experiment_tag(experiment.experiment_id, *EXPERIMENT_KIND)


def _metric_order(key):
    # loss first, each metric beside its validation twin; the rate and the epoch's time last.
    last = {"learning_rate": 1, "epoch_time_s": 2}.get(key, 0)
    return last, key.removeprefix("val_") != "loss", key.removeprefix("val_"), key.startswith("val_")


def _card(kind, key, section, n_runs):
    card = {
        "uuid": str(uuid.uuid4()),
        "type": kind,
        "metricKey": key,
        "displayName": key,
        "metricSectionId": section,
        "runsCountToCompare": max(n_runs, 10),
        "deleted": False,
        "isGenerated": False,
    }
    if kind == "LINE":
        card.update(
            lineSmoothness=0,
            xAxisKey="step",
            scaleType="linear",
            xAxisScaleType="linear",
            range={},
            displayPoints=True,
            useGlobalXaxisKey=False,
            useGlobalLineSmoothing=False,
        )
    return card


def _section(name, columns, height):
    return {
        "uuid": str(uuid.uuid4()),
        "name": name,
        "display": True,
        "isReordered": True,
        "deleted": False,
        "isGenerated": False,
        "columns": columns,
        "cardHeight": height,
    }


def comparison_state(runs, search_filter, monitor=None, mode="min"):
    """The saved view of ``runs`` side by side: every per-epoch metric as a full-width line
    chart (wide enough for a legend that names every run), the one-value metrics as bars.

    Args:
        runs: The runs shown (``mlflow.entities.Run``), for their metric keys and count.
        search_filter: The runs' search, as typed in the UI's search box.
        monitor: The value the runs are ranked by (``val_loss``), or None.
        mode: ``min`` or ``max``: the better end of ``monitor``.
    """
    keys = {key for run in runs for key in run.data.metrics}
    per_epoch, summary = _section("Per epoch", 1, 360), _section("Summary (best epoch, test set)", 3, 300)
    cards = [
        _card("LINE", k, per_epoch["uuid"], len(runs)) for k in sorted(keys, key=_metric_order) if not is_summary(k)
    ]
    cards += [_card("BAR", k, summary["uuid"], len(runs)) for k in sorted(keys) if is_summary(k)]
    # Ordered by a metric (not by start time): the UI then lists the runs flat, so none is
    # hidden under a collapsed parent.
    order = f"best_{monitor}" if monitor and f"best_{monitor}" in keys else "val_loss" if "val_loss" in keys else "loss"
    return {
        "searchFilter": search_filter,
        "orderByKey": f"metrics.`{order}`",
        "orderByAsc": mode != "max",
        "runsHiddenMode": "SHOW_ALL",
        "hideEmptyCharts": True,
        "compareRunSections": [per_epoch, summary],
        "compareRunCharts": cards,
    }


def save_view(client, experiment_id, key, state):
    """Saves ``state`` as the experiment's view ``key`` and returns the URL fragment (after
    the UI's address) that opens it."""
    client.set_experiment_tag(experiment_id, VIEW_TAG + key, json.dumps(state))
    query = urlencode({**MODEL_TRAINING, "viewStateShareKey": key, "compareRunsMode": "CHART"})
    return f"#/experiments/{experiment_id}/runs?{query}"


def sweep_view(client, parent):
    """Saves the view of a sweep's child runs side by side; returns its URL fragment.

    Args:
        client: An ``MlflowClient`` on the store.
        parent: The sweep's parent run (``mlflow.entities.Run``).
    """
    experiment_id, run_id = parent.info.experiment_id, parent.info.run_id
    search = f"tags.mlflow.parentRunId = '{run_id}'"
    children = client.search_runs([experiment_id], filter_string=search, max_results=10000)
    tags = parent.data.tags
    state = comparison_state(children, search, tags.get("sweep.monitor"), tags.get("sweep.monitor_mode", "min"))
    return save_view(client, experiment_id, f"kerastrack-sweep-{run_id}", state)


def run_url(run):
    """The URL fragment of one run's page, on its per-epoch charts."""
    return (
        f"#/experiments/{run.info.experiment_id}/runs/{quote(run.info.run_id)}/model-metrics?"
        f"{urlencode(MODEL_TRAINING)}"
    )


def find_run(client, run_id):
    """The run ``run_id``, or None when the store has none (or the id is malformed)."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(run_id)
    except MlflowException:
        return None


def latest_sweep(client, experiment_id):
    """The experiment's latest sweep parent run, or None."""
    found = client.search_runs(
        [experiment_id], filter_string=PARENT_FILTER, max_results=1, order_by=["attributes.start_time DESC"]
    )
    return found[0] if found else None


def ui_link(tracking_uri, fragment, option):
    """What shows a run or a sweep in the UI: on a tracking server, the URL; on a local
    store, the command that starts the UI on it and prints the URL.

    Args:
        tracking_uri: The store the run is in.
        fragment: The URL fragment of the view (``sweep_view``, ``run_url``).
        option: The ``python -m kerastrack.ui`` option that opens the same view
            (``--sweep <id>``, ``--run <id>``).
    """
    scheme, netloc, *_ = urlsplit(tracking_uri)
    if scheme in ("http", "https"):
        # The server's own address, without the credentials a tracking URI may carry.
        return mask_uri(urlunsplit((scheme, netloc.rpartition("@")[2], "/", "", ""))) + fragment
    command = f"python -m kerastrack.ui {option}"
    # Named unless it is ./mlflow.db: MLflow itself sets $MLFLOW_TRACKING_URI in this
    # process, so the variable says nothing of the user's shell.
    if tracking_uri != resolve_tracking_uri(DEFAULT_URI):
        command += f" --backend-store-uri {shlex.quote(mask_uri(tracking_uri))}"
    return command
