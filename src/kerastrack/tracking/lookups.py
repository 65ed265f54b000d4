"""What a tracker looks up in the store: the earlier runs an invocation may continue, fetched
at once as one value (``lookup``, an ``Earlier``) for ``kerastrack.resume.plan`` to decide
on; the experiment a new run goes into (``open_experiment``); the link that shows a run in the MLflow UI (``run_link``)."""

from dataclasses import dataclass, field

from kerastrack.errors import ConfigError
from kerastrack.tracking.parent import find_child, find_offline_child, find_parent
from kerastrack.tracking.query import RunRecord, to_record
from kerastrack.tracking.store import open_store
from kerastrack.tracking.views import mark_experiment, run_url, ui_link
from kerastrack.utils.hydra_job import in_multirun


@dataclass(frozen=True)
class Earlier:
    """What the store knows of the runs an invocation may continue.

    Attributes:
        run: The run asked for by id (``resume=``'s, or the one whose state is in a new
            run's output dir), as a RunRecord, or None if the store has no such run.
        child: In a re-launched sweep: the latest child of its parent with the job's config
            hash, or None.
        steps: Every metric on record of the run that would be continued (the child, else
            the run; none when it FINISHED): key -> the steps logged (a list, one entry per
            value, so a step logged twice shows twice).
    """

    run: RunRecord | None = None
    child: RunRecord | None = None
    steps: dict = field(default_factory=dict)


def lookup(client, tracking_uri, store_wait, experiment_name, offline=False, run_id=None, config_hash=None):
    """The ``Earlier`` runs of a store, in one go.

    Args:
        client: Makes the tracker's MlflowClient on the store: called once the store is open
            (a client made before keeps the store's artifacts in the working directory).
        tracking_uri: The store.
        store_wait: Seconds to wait for an SQLite store another process holds locked.
        experiment_name: The experiment a sweep's parent is looked for in.
        offline: Whether the tracker is offline (a sweep's children are in its spools).
        run_id: The run to look up, or None.
        config_hash: The job's config hash: in a re-launched sweep, its earlier child is looked up.
    """
    from mlflow.exceptions import MlflowException  # deferred: see store.py

    found = None
    if run_id:
        try:
            found = open_store(tracking_uri, store_wait).get_run(run_id)
        except MlflowException:
            found = None
    child = None
    if config_hash and offline:
        child = find_offline_child(config_hash)
    elif config_hash and in_multirun():
        experiment = open_experiment(client, tracking_uri, store_wait, experiment_name)
        parent = find_parent(client(), experiment.experiment_id)
        child = find_child(client(), parent, config_hash) if parent else None
    steps = {}
    if child is not None and child.status != "FINISHED":
        steps = _steps(client(), child.run_id, child.metrics)
    elif child is None and found is not None and found.info.status != "FINISHED":
        steps = _steps(client(), run_id, found.data.metrics)
    return Earlier(to_record(found) if found is not None else None, child, steps)


def _steps(client, run_id, metrics):
    return {key: [m.step for m in client.get_metric_history(run_id, key)] for key in metrics}


def open_experiment(client, tracking_uri, store_wait, name):
    """Opens the store and the experiment ``name`` (both created if new); returns the experiment.

    Args:
        client: Makes an MlflowClient on the store (see ``lookup``).
        tracking_uri: The store.
        store_wait: Seconds to wait for an SQLite store another process holds locked.
        name: The experiment.

    Raises:
        ConfigError: The experiment was deleted in MLflow (it is in the trash).
    """
    import mlflow

    open_store(tracking_uri, store_wait)
    mlflow.set_tracking_uri(tracking_uri)
    client = client()
    experiment = client.get_experiment_by_name(name)
    if experiment is not None and experiment.lifecycle_stage == "deleted":
        raise ConfigError(
            f"tracking.experiment_name: the experiment '{name}' was deleted in MLflow (it is in "
            f"the trash, id {experiment.experiment_id}); restore it (mlflow experiments restore --experiment-id "
            f"{experiment.experiment_id}) or record into another one: tracking.experiment_name=<name>. "
            f"Received: tracking.experiment_name={name}"
        )
    experiment = mlflow.set_experiment(name)
    mark_experiment(client, experiment)
    return experiment


def run_link(client, tracking_uri, run_id):
    """What shows the run in the MLflow UI (see ``views.ui_link``), or None when the store
    cannot be read any more."""
    try:
        run = client.get_run(run_id)
    except Exception:  # noqa: BLE001 - the store went away after the run: nothing to show
        return None
    return ui_link(tracking_uri, run_url(run), f"--run {run_id}")
