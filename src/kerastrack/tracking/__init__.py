"""Experiment tracking: the only package that imports mlflow.

Its modules, from the bottom up: ``store`` (where the store is, opening and creating it),
``workarounds`` (MLflow's gaps), ``provenance`` (config, git, versions as MLflow records
them), ``query`` (runs read back as plain records), ``datasets`` (a run's data as dataset
inputs), ``logged_model`` (the model as an MLflow 3 logged model), ``spool`` (what could not
reach a server, and its replay), ``outbox`` (calls to a server that may be away), ``parent`` (a
sweep's parent and child runs), ``lookups`` (the earlier runs an invocation may continue,
fetched at once; a new run's experiment), ``tracker`` (the interface, and a run's end as a
status), ``opening`` (a run opened new or reopened), ``mlflow_tracker`` (a run's life in
MLflow), ``server`` (``mlflow server`` in its own process group). This file only names what the rest of kerastrack uses, and turns MLflow's telemetry off.
"""

import os

# MLflow sends usage data to its telemetry host from every process that imports it, and its
# server relays the UI's: a user of a local store expects no outbound traffic. Off unless the
# user says otherwise (MLFLOW_DISABLE_TELEMETRY=false): docs/records.md. Set before any
# module here imports mlflow, and inherited by the processes this one starts (mlflow server).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

from kerastrack.tracking.mlflow_tracker import MlflowTracker  # noqa: E402
from kerastrack.tracking.provenance import flatten_config, git_state, library_versions  # noqa: E402
from kerastrack.tracking.store import open_store, resolve_tracking_uri  # noqa: E402
from kerastrack.tracking.tracker import NullTracker  # noqa: E402

__all__ = [
    "MlflowTracker",
    "NullTracker",
    "flatten_config",
    "git_state",
    "library_versions",
    "open_store",
    "resolve_tracking_uri",
]
