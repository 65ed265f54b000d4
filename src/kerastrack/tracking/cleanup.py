"""Which runs a cleanup deletes, and their deletion from the store, for ``python -m kerastrack.clean``.

Runs are selected by filters that all hold (a sweep, an age, a status); a sweep's parent takes
its children with it. A RUNNING run is never deleted, nor the parent of one: it is another
process's, and its record is still being written. Deleted runs go to MLflow's trash first, then,
on a local store (SQLite, a file store), ``mlflow gc`` removes them and their artifacts for good.
"""

import contextlib
import os
import time
from dataclasses import dataclass, field
from urllib.parse import urlparse

from kerastrack.errors import ConfigError
from kerastrack.tracking.query import _search, open_client, recent_runs, to_record

STATUSES = ("FINISHED", "FAILED", "KILLED", "RUNNING", "SCHEDULED")
PARENT_TAG = "mlflow.parentRunId"


@dataclass
class Selection:
    """What a cleanup would do.

    Attributes:
        delete: The runs to delete (``RunRecord``), parents before their children.
        kept: ``(RunRecord, reason)`` of the selected runs that stay.
        dirs_in_use: The output dirs of runs that stay (a dir of these is not removed).
    """

    delete: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    dirs_in_use: set = field(default_factory=set)


def output_dir(record):
    """The directory a run wrote its files to: a job's ``paths.output_dir``, a sweep's dir."""
    return record.params.get("paths.output_dir") or record.tags.get("sweep.dir") or None


def select(tracking_uri, sweep=None, older_than_s=None, status=None, now=None):
    """The runs that match every filter given, with the children of the parents among them.

    Args:
        tracking_uri: The store.
        sweep: A sweep's parent run id: the parent and its runs.
        older_than_s: Runs started more than this many seconds ago.
        status: Runs in this status (one of ``STATUSES``).
        now: The time to measure ages from (seconds since the epoch); None: now.

    Raises:
        ConfigError: No store there; an unknown sweep or status.
    """
    if status is not None and status not in STATUSES:
        raise ConfigError(f"--status must be one of {', '.join(STATUSES)}. Received: status={status}")
    client = open_client(tracking_uri)
    clauses = []
    if status:
        clauses.append(f"attributes.status = '{status}'")
    if older_than_s is not None:
        clauses.append(f"attributes.start_time < {int(((now or time.time()) - older_than_s) * 1000)}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    if sweep is not None:
        parent = _sweep(client, sweep)
        experiments = [parent.info.experiment_id]
    every = [to_record(r) for r in _search(client, experiments, "")]
    matched = [to_record(r) for r in _search(client, experiments, " and ".join(clauses))]
    if sweep is not None:
        matched = [r for r in matched if sweep in (r.run_id, r.tags.get(PARENT_TAG))]
    return _with_children(matched, every)


def _sweep(client, run_id):
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        run = None
    if run is None or run.data.tags.get("sweep.role") != "parent" or run.info.lifecycle_stage == "deleted":
        raise ConfigError(
            f"there is no sweep {run_id} (a sweep's parent run id) in the store; the latest sweeps are: "
            f"{recent_runs(client)}. "
            f"Received: sweep={run_id}"
        )
    return run


def _with_children(matched, every):
    children = {}
    for record in every:
        if record.tags.get(PARENT_TAG):
            children.setdefault(record.tags[PARENT_TAG], []).append(record)
    chosen = {r.run_id: r for r in matched}
    for record in matched:
        for child in children.get(record.run_id, ()):
            chosen.setdefault(child.run_id, child)
    selection = Selection()
    for record in sorted(chosen.values(), key=lambda r: (r.tags.get(PARENT_TAG, ""), r.start_time or 0)):
        running = [c.run_id for c in children.get(record.run_id, ()) if c.status == "RUNNING"]
        if record.status == "RUNNING":
            selection.kept.append((record, "RUNNING: another process is writing it"))
        elif running:
            selection.kept.append((record, f"its run {running[0]} is RUNNING"))
        else:
            selection.delete.append(record)
    doomed = {r.run_id for r in selection.delete}
    selection.dirs_in_use = {output_dir(r) for r in every if r.run_id not in doomed and output_dir(r)}
    return selection


def is_local(tracking_uri):
    """Whether the store is a database or folder of this machine's (not a tracking server),
    where ``mlflow gc`` can reach what deleted runs leave."""
    return urlparse(tracking_uri).scheme not in ("http", "https", "databricks")


def delete(tracking_uri, records):
    """Deletes ``records``' runs and their logged models; on a local store, for good.

    A run that is RUNNING by now (resumed since it was listed) is left alone.

    Returns:
        ``(deleted run ids, [(run id, reason) left alone])``.
    """
    client = open_client(tracking_uri)
    deleted, left, models, folders = [], [], [], []
    for record in records:
        run = client.get_run(record.run_id)
        if run.info.status == "RUNNING":
            left.append((record.run_id, "RUNNING by now"))
            continue
        for model in client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{record.run_id}'"
        ):
            client.delete_logged_model(model.model_id)
            models.append(model.model_id)
            folders.append(model.artifact_location)
        client.delete_run(record.run_id)
        deleted.append(record.run_id)
        folders.append(run.info.artifact_uri)
    if deleted and is_local(tracking_uri):
        _gc(tracking_uri, deleted, models)
        _remove_empty(folders)
    return deleted, left


def _remove_empty(uris):
    """The folders that ``mlflow gc`` empties but leaves, of artifacts on this machine: removed
    when empty (``os.removedirs`` then goes up while the parents are empty too)."""
    from mlflow.utils.file_utils import local_file_uri_to_path
    from mlflow.utils.uri import is_local_uri

    for uri in uris:
        if uri and is_local_uri(uri):
            path = local_file_uri_to_path(uri)
            # An artifact_location ends in .../models/<id>/artifacts, a run's in .../<run id>/artifacts.
            for folder in (path, os.path.dirname(path)):
                with contextlib.suppress(OSError):  # not empty, or gone
                    os.rmdir(folder)


def _gc(tracking_uri, run_ids, model_ids):
    """``mlflow gc`` on the deleted runs and models: their rows and their artifacts, for good."""
    from mlflow.cli import gc

    args = ["--backend-store-uri", tracking_uri, "--tracking-uri", tracking_uri, "--run-ids", ",".join(run_ids)]
    if model_ids:
        args += ["--logged-model-ids", ",".join(model_ids)]
    gc.main(args, standalone_mode=False)
