"""How a run opens in MLflow: a new one in the config's experiment (a sweep's job as a child
of the sweep's parent), or a KILLED or FAILED one reopened in its own experiment, its
error tags traded for the resume tags."""

from kerastrack.tracking.labels import without_parent_note
from kerastrack.tracking.lookups import open_experiment
from kerastrack.tracking.parent import child_tags, find_parent
from kerastrack.tracking.query import delete_twins, resumed_tags, with_open_id
from kerastrack.tracking.store import open_store
from kerastrack.utils.hydra_job import in_multirun


def start_run(client, tracking_uri, store_wait, experiment_name, run_name, tags, run_id=None, named=False):
    """Starts the run, or reopens ``run_id``, as MLflow's active run.

    Args:
        client: Makes an MlflowClient on the store, once it is open (see ``lookups.lookup``).
        tracking_uri: The store.
        store_wait: Seconds to wait for an SQLite store another process holds locked.
        experiment_name: The experiment of a new run.
        run_name: The name of a new run.
        tags: The tags of a new run.
        run_id: The run to reopen, or None.
        named: Whether ``run_name`` is the user's (tracking.run_name): a sweep's job keeps it
            instead of the name made of its swept values.

    Returns:
        The active run, and the name of the experiment it is in.
    """
    import mlflow  # deferred: see store.py

    if run_id:
        open_store(tracking_uri, store_wait)
        mlflow.set_tracking_uri(tracking_uri)
        previous = client().get_run(run_id)
        experiment = mlflow.set_experiment(experiment_id=previous.info.experiment_id)
        active = mlflow.start_run(run_id=run_id)
        _mark_resumed(client(), previous)
        return active, experiment.name
    experiment = open_experiment(client, tracking_uri, store_wait, experiment_name)
    parent = find_parent(client(), experiment.experiment_id) if in_multirun() else None
    if parent is None:
        active = mlflow.start_run(run_name=run_name, tags=with_open_id(tags))
    else:
        sweep_tags, swept = child_tags(parent.data.tags)
        active = mlflow.start_run(
            run_name=run_name if named else swept or run_name,
            parent_run_id=parent.info.run_id,
            tags=with_open_id(without_parent_note({**(tags or {}), **sweep_tags}, parent.data.tags)),
        )
    delete_twins(client(), active)  # a timed-out, retried create made one run more
    return active, experiment_name


def _mark_resumed(client, run):
    import mlflow

    for tag in ("error.type", "error.message", "pruned"):  # a FINISHED run must not carry an error tag
        if tag in run.data.tags:
            client.delete_tag(run.info.run_id, tag)
    mlflow.set_tags(resumed_tags(run))
