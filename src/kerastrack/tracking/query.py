"""Reads recorded runs back from an MLflow store, for reports that compare them.

A sweep is one parent run (tag ``sweep.role=parent``) and one child run per job, nested
under it by MLflow's ``mlflow.parentRunId`` tag. Runs come back as plain ``RunRecord``
objects so that code outside this package never touches mlflow.
"""

import fnmatch
import math
import sys
import uuid
from dataclasses import dataclass, field

from kerastrack.errors import ConfigError
from kerastrack.tracking.store import sqlite_path

LATEST = "latest"
PARENT_FILTER = "tags.`sweep.role` = 'parent'"
# Per-epoch keys a report needs besides the runs' own metrics (which are found per run).
BASE_HISTORY_KEYS = ("loss", "val_loss", "learning_rate")
# Summary and batch metrics: one value per run, or per step rather than per epoch; a finished
# run's evaluations (python -m kerastrack.evaluate).
SKIPPED_PREFIXES = ("best_", "test_", "batch_", "eval/")
_PAGE = 1000
OPEN_ID_TAG = "kerastrack.open_id"


@dataclass
class RunRecord:
    """One run as recorded: its identity, state, params, tags and metrics.

    Attributes:
        run_id: The MLflow run id.
        name: The run name.
        status: FINISHED, FAILED, KILLED, RUNNING or SCHEDULED.
        params: Param name -> value (strings, as MLflow stores them).
        tags: Tag name -> value.
        metrics: Metric name -> latest value.
        history: Metric name -> [(step, value), ...] sorted by step, for the fetched keys.
        start_time: Start time in ms since the epoch, or None.
        end_time: End time in ms since the epoch, or None while the run is open.
    """

    run_id: str
    name: str
    status: str
    params: dict = field(default_factory=dict)
    tags: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    history: dict = field(default_factory=dict)
    start_time: int | None = None
    end_time: int | None = None

    @property
    def wall_time_s(self):
        """Seconds from start to end, or None while the run has not ended."""
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time) / 1000


def fetch_runs(tracking_uri, *, parent=None, experiment=None, filter_string="", history_keys=None):
    """The children of a sweep, or the runs of an experiment, with their per-epoch history.

    Args:
        tracking_uri: The MLflow tracking URI to read.
        parent: A parent run id, or "latest" for the most recently started sweep (in
            ``experiment`` if given, else in any experiment). Returns its children.
        experiment: An experiment name. Without ``parent``: returns its runs, except
            sweep parents.
        filter_string: MLflow search syntax that runs must also match, e.g.
            ``"metrics.val_accuracy > 0.9"``.
        history_keys: The metrics to fetch the history of; a key may be a glob pattern,
            e.g. ``"grad_norm/*"``, matched against each run's metrics. None: loss,
            val_loss, learning_rate and every per-epoch metric each run has (no best_*,
            test_*, batch_*).

    Returns:
        A list of RunRecord, oldest first.

    Raises:
        ConfigError: No store at the URI, an unknown parent or experiment, no sweep
            found, or a filter MLflow cannot parse.
    """
    client = open_client(tracking_uri)
    if parent is not None:
        parent_run = _parent_run(client, parent, experiment)
        experiment_ids = [parent_run.info.experiment_id]
        base = f"tags.mlflow.parentRunId = '{parent_run.info.run_id}'"
    elif experiment is not None:
        experiment_ids, base = [_experiment(client, experiment).experiment_id], ""
    else:
        raise ConfigError(
            "fetch_runs needs a parent run id (or 'latest') or an experiment name. "
            "Received: parent=None, experiment=None"
        )
    runs = _search(client, experiment_ids, " and ".join(f for f in (base, filter_string) if f))
    runs = [r for r in runs if r.data.tags.get("sweep.role") != "parent"]
    return [_record(client, run, history_keys) for run in runs]


def fetch_parent(tracking_uri, parent, *, experiment=None):
    """The parent run of a sweep, without history.

    Args:
        tracking_uri: The MLflow tracking URI to read.
        parent: A parent run id, or "latest" for the most recently started sweep.
        experiment: An experiment name that "latest" is looked for in; None: any.

    Returns:
        A RunRecord.

    Raises:
        ConfigError: No store at the URI, an unknown run id, or no sweep found.
    """
    client = open_client(tracking_uri)
    return _record(client, _parent_run(client, parent, experiment), history_keys=())


def fetch_run(tracking_uri, run_id, *, history_keys=None):
    """One run with its per-epoch history (see ``fetch_runs`` for ``history_keys``).

    Raises:
        ConfigError: No store at the URI, or no run with that id in it.
    """
    from mlflow.exceptions import MlflowException

    client = open_client(tracking_uri)
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise ConfigError(f"There is no run with id '{run_id}' in {tracking_uri}. Received: run_id={run_id}") from None
    return _record(client, run, history_keys)


def search_records(tracking_uri, *, experiment=None, filter_string=""):
    """Every run of a store (or of one experiment) that matches ``filter_string``, sweep
    parents included, oldest first, as RunRecords without history.

    Raises:
        ConfigError: No store at the URI, an unknown experiment, or a filter MLflow cannot parse.
    """
    client = open_client(tracking_uri)
    ids = [_experiment(client, experiment).experiment_id] if experiment else _experiment_ids(client)
    return [to_record(run) for run in _search(client, ids, filter_string)] if ids else []


def open_client(tracking_uri):
    """An ``MlflowClient`` on a store that exists (mlflow imported here: ~0.5 s)."""
    import mlflow

    # Opening a missing SQLite file would create an empty store: a typo in the URI, or
    # the wrong directory, would then read as "no runs" instead of being reported.
    path = sqlite_path(tracking_uri)
    if path is not None and not path.is_file():
        raise ConfigError(
            f"There is no MLflow store at {path}; pass the store that the runs were "
            f"recorded in (--tracking-uri, or $MLFLOW_TRACKING_URI). "
            f"Received: tracking_uri={tracking_uri}"
        )
    return mlflow.MlflowClient(tracking_uri)


def _experiment(client, name):
    found = client.get_experiment_by_name(name)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise ConfigError(
            f"There is no experiment named '{name}'; the store has: {', '.join(names) or 'none'}. "
            f"Received: experiment={name}"
        )
    return found


def _parent_run(client, parent, experiment):
    if parent == LATEST:
        ids = [_experiment(client, experiment).experiment_id] if experiment else _experiment_ids(client)
        found = client.search_runs(ids, PARENT_FILTER, order_by=["attributes.start_time DESC"], max_results=1)
        if not found:
            where = f"experiment '{experiment}'" if experiment else "any experiment"
            raise ConfigError(
                f"There is no sweep (a run tagged sweep.role=parent) in {where}; run one with "
                f"`python train.py -m ...`, or pass --experiment to list single runs. "
                f"Received: parent={parent}"
            )
        return found[0]
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(parent)
    except MlflowException:
        raise ConfigError(
            f"There is no run with id '{parent}'. The latest sweeps are: {recent_runs(client)}. "
            f"Received: parent={parent}"
        ) from None
    _check_is_parent(client, run)
    return run


def _check_is_parent(client, run):
    """A run given as a sweep's parent that is one of its jobs, or a single run, is said to be
    that (its report would otherwise read "no runs yet")."""
    run_id, tags = run.info.run_id, run.data.tags
    if tags.get("sweep.role") == "parent" or client.search_runs(
        [run.info.experiment_id], f"tags.mlflow.parentRunId = '{run_id}'", max_results=1
    ):
        return
    owner = tags.get("mlflow.parentRunId")
    if owner:
        what = f"a job of the sweep {owner}: report that sweep with python -m kerastrack.report {owner}"
    else:
        experiment = client.get_experiment(run.info.experiment_id).name
        what = f"a single run: compare single runs with python -m kerastrack.report --experiment '{experiment}'"
    raise ConfigError(
        f"Run {run_id} ('{run.info.run_name}') is not a sweep's parent run; it is {what}. Received: parent={run_id}"
    )


def recent_runs(client, filter_string=PARENT_FILTER, limit=5):
    """The latest runs matching ``filter_string`` (sweep parents by default), as an error
    message lists them: ``id (name), ...``, or "none"."""
    runs = client.search_runs(
        _experiment_ids(client), filter_string, order_by=["attributes.start_time DESC"], max_results=limit
    )
    return ", ".join(f"{r.info.run_id} ({r.info.run_name})" for r in runs) or "none"


def _experiment_ids(client):
    return [e.experiment_id for e in client.search_experiments()]


def _search(client, experiment_ids, filter_string):
    from mlflow.exceptions import MlflowException

    runs, token = [], None
    try:
        while True:
            page = client.search_runs(
                experiment_ids,
                filter_string,
                max_results=_PAGE,
                order_by=["attributes.start_time ASC"],
                page_token=token,
            )
            runs += page
            token = page.token
            if not token:
                return runs
    except MlflowException as exc:
        raise ConfigError(
            f"MLflow cannot search with this filter ({exc.message}); see "
            f"https://mlflow.org/docs/latest/search-runs.html. Received: filter={filter_string}"
        ) from None


def _record(client, run, history_keys):
    record = to_record(run)
    keys = _history_keys(record.metrics) if history_keys is None else _matching(record.metrics, history_keys)
    record.history = {
        key: sorted((m.step, _finite_or_inf(m.value)) for m in client.get_metric_history(run.info.run_id, key))
        for key in keys
    }
    return record


def to_record(run):
    """A RunRecord of an mlflow Run, without metric histories."""
    return RunRecord(
        run_id=run.info.run_id,
        name=run.info.run_name or run.info.run_id,
        status=run.info.status,
        params=dict(run.data.params),
        tags=dict(run.data.tags),
        metrics={k: _finite_or_inf(v) for k, v in run.data.metrics.items()},
        start_time=run.info.start_time,
        end_time=run.info.end_time,
    )


def _history_keys(metrics):
    own = [k for k in sorted(metrics) if not k.startswith(SKIPPED_PREFIXES)]
    return [k for k in BASE_HISTORY_KEYS if k in metrics] + [k for k in own if k not in BASE_HISTORY_KEYS]


def _matching(metrics, patterns):
    """The run's metric names that ``patterns`` (names or globs) match, in pattern order."""
    names = sorted(metrics)
    return list(dict.fromkeys(k for p in patterns for k in fnmatch.filter(names, p)))


def _finite_or_inf(value):
    # The SQL store saves +-inf as +-float max; give a diverged value back as infinite.
    if abs(value) >= sys.float_info.max:
        return math.copysign(math.inf, value)
    return value


def resumed_tags(run):
    """The tags a resumed run gets: the count of resumptions, and the error of the
    interruption as ``resume.last_error`` (its ``error.*`` tags are removed).

    Args:
        run: The MLflow run as it was before it resumed.
    """
    previous = run.data.tags
    if run.info.status == "RUNNING":
        last_error = "RUNNING: killed hard (the process ended without closing the run)"
    else:
        last_error = f"{run.info.status}: {previous.get('error.type', '?')}: {previous.get('error.message', '')}"
    return {"resume.count": str(int(previous.get("resume.count", "0")) + 1), "resume.last_error": last_error[:5000]}


def with_open_id(tags):
    """``tags`` plus a new ``kerastrack.open_id``: the one opening a run is, client-made, so
    that what a retried create made as well can be found (``delete_twins``)."""
    return {**(tags or {}), OPEN_ID_TAG: uuid.uuid4().hex}


def delete_twins(client, run):
    """Deletes the runs that the opening of ``run`` made besides it.

    MLflow's HTTP client retries a ``runs/create`` that timed out (it retries POSTs too),
    and the server may have made the run all the same: a server slow for a while when a
    run opens leaves a second, empty run, RUNNING forever. The server has no idempotency
    key for a create, so the opening's own tag finds its twins; they are closed KILLED and
    moved to the trash (``mlflow gc`` removes them for good).

    Args:
        client: An ``mlflow.MlflowClient`` on the run's store.
        run: The run as opened (its tags hold ``kerastrack.open_id``).
    """
    open_id = run.data.tags.get(OPEN_ID_TAG)
    if not open_id:
        return
    for twin in client.search_runs([run.info.experiment_id], f"tags.`{OPEN_ID_TAG}` = '{open_id}'"):
        if twin.info.run_id != run.info.run_id:
            client.set_terminated(twin.info.run_id, "KILLED")
            client.delete_run(twin.info.run_id)
