"""The trained Keras model as an MLflow 3 logged model (``models:/<model_id>``).

It is saved in MLflow's format first, then registered from that directory: created as a
LoggedModel of the run's experiment, its files uploaded, marked READY, recorded as the
run's output and linked to the run's final metrics. A model spooled while the server was
away is saved the same way and registered when the spool is uploaded, so both paths give
the same record.

Not ``mlflow.keras.log_model``: it cannot register a directory saved earlier (the spool's),
it links every metric of the run at its ``step`` to the model (epoch 0's loss, by default,
which is not this model's number), and it loads the model back to check the input example.
"""

import contextlib
import io
import os
import tempfile

from kerastrack.errors import ConfigError
from kerastrack.tracking.provenance import library_versions
from kerastrack.tracking.workarounds import KerasFlavor

NAME = "model"


def save(model, input_example, path):
    """Saves ``model`` in MLflow's Keras format at ``path`` (a new directory).

    The signature is given explicitly, and so are the requirements: left to MLflow, it
    infers them by loading the model in a fresh Python process, which imports TensorFlow
    again (~5 s here).
    """
    from mlflow.models import infer_signature

    signature = infer_signature(input_example, model.predict(input_example, verbose=0))
    versions = library_versions()
    requirements = [f"{name}=={versions[name]}" for name in ("tensorflow", "keras", "mlflow") if name in versions]
    with contextlib.redirect_stdout(io.StringIO()):  # Keras' progress bar, when MLflow predicts the example
        KerasFlavor.save_model(
            path=str(path), model=model, input_example=input_example, signature=signature, pip_requirements=requirements
        )


def register(client, run_id, path, step=0, metrics=()):
    """Registers the model saved at ``path`` as the run's logged model; returns its id.

    A model of the run that an interrupted call or upload left behind is completed, not
    logged a second time.

    Args:
        client: An ``mlflow.MlflowClient`` on the run's store.
        run_id: The run that trained it.
        path: The directory ``save`` wrote (its MLmodel file is completed here).
        step: The epoch the model came out of.
        metrics: Keys of the run's metrics to link to the model.
    """
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model

    run = client.get_run(run_id)
    found = client.search_logged_models(
        [run.info.experiment_id], max_results=1, filter_string=f"source_run_id = '{run_id}' AND name = '{NAME}'"
    )
    logged = found[0] if found else None
    if logged is None:
        # Its params are the run's, as mlflow.keras.log_model gives them.
        logged = client.create_logged_model(
            run.info.experiment_id, name=NAME, source_run_id=run_id, params=dict(run.data.params)
        )
    if logged.model_id not in {o.model_id for o in run.outputs.model_outputs}:  # also after a kill in between
        client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])
    if logged.status != LoggedModelStatus.READY:
        # The ids MLflow writes into MLmodel when it logs a model (Model.log), known only now.
        saved = Model.load(str(path))
        saved.artifact_path, saved.run_id = logged.artifact_location, run_id
        saved.model_uuid = saved.model_id = logged.model_id
        saved.save(os.path.join(path, "MLmodel"))
        client.log_model_artifacts(logged.model_id, str(path))
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    link_metrics(client, run_id, logged.model_id, metrics)
    return logged.model_id


def link_metrics(client, run_id, model_id, keys):
    """Links the run's values of metrics ``keys`` to the model.

    As MLflow's Model.log does: each value is logged again, identical but for the model id;
    the run's history keeps it once (the store drops an exact repeat), and the model gets it.
    """
    from mlflow.entities import Metric

    linked = [
        Metric(m.key, m.value, m.timestamp, m.step, model_id=model_id, run_id=run_id)
        for key in dict.fromkeys(keys)
        for m in client.get_metric_history(run_id, key)
    ]
    if linked:
        client.log_batch(run_id, metrics=linked)


def load(tracking_uri, run_id):
    """The Keras model that run ``run_id`` logged, loaded from the store's copy.

    Raises:
        ConfigError: The run logged no model (``tracking.log_model=false``, or it stopped
            before its end).
    """
    import mlflow
    from mlflow.entities import LoggedModelStatus

    client = mlflow.MlflowClient(tracking_uri)
    run = client.get_run(run_id)
    found = client.search_logged_models(
        [run.info.experiment_id], max_results=1, filter_string=f"source_run_id = '{run_id}' AND name = '{NAME}'"
    )
    if not found or found[0].status != LoggedModelStatus.READY:
        raise ConfigError(
            f"Run {run_id} has no logged model: it ran with tracking.log_model=false or ended before "
            f"its model was logged (status {run.info.status}). Received: run_id={run_id}"
        )
    return load_files(tracking_uri, found[0].artifact_location)


def load_files(tracking_uri, artifact_location):
    """The Keras model (MLflow's keras flavor) saved at a logged model's ``artifact_location``,
    compiled as it was trained; its files are read through a temporary folder."""
    # MLflow's progress bar, a line per refresh on a terminal, for files read from a local store.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow.artifacts
    import mlflow.keras

    with tempfile.TemporaryDirectory() as tmp:
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=artifact_location, dst_path=tmp, tracking_uri=tracking_uri
        )
        return mlflow.keras.load_model(path)
