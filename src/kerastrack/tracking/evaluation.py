"""A finished run's logged model read back, and its evaluation recorded, for
``python -m kerastrack.evaluate``.

The source is a run id or a model URI (``models:/<model_id>`` of a logged model, or
``models:/<name>/<version>`` of a registered one); both lead to the run that trained the
model, whose config (``config/config.yaml``) says which data set and loss it was trained on.
The result goes into that run, once per data set under ``eval/<data>/``, or into a new run
that names it (``evaluate.source_run``).
"""

import os
import tempfile
import time
from dataclasses import dataclass

from omegaconf import OmegaConf

from kerastrack.errors import ConfigError
from kerastrack.tracking import logged_model
from kerastrack.tracking.logged_model import NAME
from kerastrack.tracking.query import open_client, recent_runs, to_record

MODELS = "models:/"
SOURCE_TAG = "evaluate.source_run"
# In the source run: one value per data set, at step 0, apart from training's own test_*.
PREFIX = "eval/"


@dataclass
class Source:
    """What an evaluation starts from.

    Attributes:
        run: The run that trained the model (a ``RunRecord``).
        experiment_id: The run's experiment.
        model_uri: ``models:/<model_id>`` of its logged model.
        artifact_location: Where the logged model's files are.
        config: The run's config as it recorded it (a dict), or None.
    """

    run: object
    experiment_id: str
    model_uri: str
    artifact_location: str
    config: dict | None


def find_source(tracking_uri, source):
    """The run and logged model that ``source`` names.

    Args:
        tracking_uri: The store.
        source: A run id, ``models:/<model_id>`` or ``models:/<name>/<version>``.

    Raises:
        ConfigError: No store there, no such run or model, or a run without a logged model.
    """
    from mlflow.entities import LoggedModelStatus

    client = open_client(tracking_uri)
    if source.startswith(MODELS):
        model = _logged_model(client, source)
        run = _run(client, model.source_run_id, source)
    else:
        run = _run(client, source, source)
        found = client.search_logged_models(
            [run.info.experiment_id], filter_string=f"source_run_id = '{run.info.run_id}' AND name = '{NAME}'"
        )
        model = next((m for m in found if m.status == LoggedModelStatus.READY), None)
        if model is None:
            raise ConfigError(
                f"run {run.info.run_id} ('{run.info.run_name}') has no logged model to evaluate: it was "
                "trained with tracking.log_model=false, or did not finish. Evaluate a run trained with "
                f"tracking.log_model=true (the default). Received: run={source}"
            )
    return Source(
        to_record(run),
        run.info.experiment_id,
        f"{MODELS}{model.model_id}",
        model.artifact_location,
        _config(client, run),
    )


def _run(client, run_id, source):
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException:
        run = None
    if run is None or run.info.lifecycle_stage == "deleted":
        raise ConfigError(
            f"there is no run {run_id} in the store {client.tracking_uri}; the latest runs are: "
            f"{recent_runs(client, filter_string='')}. "
            f"Received: run={source}"
        )
    return run


def _logged_model(client, uri):
    from mlflow.exceptions import MlflowException

    name, _, version = uri[len(MODELS) :].partition("/")
    try:
        model_id = _registered_model_id(client.get_model_version(name, version)) if version else name
        if model_id:
            return client.get_logged_model(model_id)
    except MlflowException:
        pass
    raise ConfigError(
        f"there is no model {uri} in the store {client.tracking_uri}: give a run id, models:/<model_id> "
        f"(a run's logged model) or models:/<name>/<version> (a registered one of a run's). Received: run={uri}"
    )


def _registered_model_id(version):
    """The logged model a registered version was made from: its ``model_id``, which MLflow 3.17 fills
    only when the registry finds the model through the process's global tracking URI, else the id
    in its ``models:/<model_id>`` source; None for a version registered from other files."""
    if version.model_id:
        return version.model_id
    source = version.source or ""
    return source[len(MODELS) :] if source.startswith(f"{MODELS}m-") else None


def _config(client, run):
    """The config the run recorded (``config/config.yaml``), or None (a run of kerastrack.Tracker)."""
    from mlflow.exceptions import MlflowException

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run.info.run_id, "config/config.yaml", tmp)
        except (MlflowException, OSError):
            return None
        return OmegaConf.to_container(OmegaConf.load(path))


def load_model(tracking_uri, source):
    """The Keras model of ``source`` (MLflow's keras flavor), compiled as it was trained."""
    return logged_model.load_files(tracking_uri, source.artifact_location)


def recorded_keys(data_name):
    """The metric names of an evaluation on ``data_name`` in the source run: ``eval/<data>/``."""
    return f"{PREFIX}{data_name}/"


def in_new_run(source, new_run):
    """Whether the result goes into a run of its own: asked, or a source run not FINISHED
    (a KILLED or FAILED run's record says how it ended; a RUNNING one is another process's)."""
    return new_run or source.run.status != "FINISHED"


def check_recordable(source, data_name, new_run=False):
    """Refuses an evaluation on a data set that the source run holds one of already (a second
    value at step 0 would make its record say it was evaluated twice, ambiguously).

    Raises:
        ConfigError: It does, and the result would go into it.
    """
    if in_new_run(source, new_run):
        return
    prefix = recorded_keys(data_name)
    already = {k: v for k, v in source.run.metrics.items() if k.startswith(prefix)}
    if already:
        raise ConfigError(
            f"run {source.run.run_id} holds an evaluation on data={data_name} already "
            f"({', '.join(f'{k}={v:.4g}' for k, v in sorted(already.items()))}); pass --new-run to record "
            f"another one in a run of its own. Received: data={data_name}"
        )


def record(tracking_uri, source, results, data_name, new_run=False):
    """Records ``results`` (``{"loss": .., "accuracy": ..}``) of evaluating on ``data_name``.

    In the source run: ``eval/<data>/test_<key>`` at step 0 and the tags ``evaluated=true``
    and ``eval/<data>.model``; its per-epoch metrics and training's test_* stay as they were.
    In a new run (``new_run``, or a source run that is not FINISHED): ``test_<key>`` at step 0,
    tagged with the source run's id.

    Returns:
        The id of the run the result went into.

    Raises:
        ConfigError: The source run holds an evaluation on this data set already.
    """
    from mlflow.entities import Metric, RunTag

    client = open_client(tracking_uri)
    now = int(time.time() * 1000)
    run = source.run
    if in_new_run(source, new_run):
        tags = {
            SOURCE_TAG: run.run_id,
            "evaluate.model": source.model_uri,
            "evaluate.data": data_name,
            "mlflow.note.content": f"Evaluation of run {run.run_id} ({run.name}) on data={data_name}.",
        }
        created = client.create_run(source.experiment_id, tags=tags, run_name=f"evaluate-{run.name}-{data_name}")
        run_id = created.info.run_id
        try:
            client.log_batch(run_id, metrics=[Metric(f"test_{k}", float(v), now, 0) for k, v in results.items()])
        except BaseException:
            client.set_terminated(run_id, "FAILED")
            raise
        client.set_terminated(run_id, "FINISHED")
        return run_id
    check_recordable(source, data_name, new_run)
    prefix = recorded_keys(data_name)
    client.log_batch(
        run.run_id,
        metrics=[Metric(f"{prefix}test_{k}", float(v), now, 0) for k, v in results.items()],
        tags=[RunTag("evaluated", "true"), RunTag(f"{PREFIX}{data_name}.model", source.model_uri)],
    )
    return run.run_id
