"""A run's data as MLflow dataset inputs.

Each split is described once, from its arrays, as the plain strings MLflow stores (name,
digest, source, schema, profile) plus its context: that description is what a spool keeps
(arrays are not spooled), and it becomes MLflow's entities when it is sent, live or at
upload.
"""

import hashlib
import json
import os

DIGEST_LENGTH = 10  # hex digits; MLflow advises at most 10 (mlflow.data.dataset.Dataset)


def digest(features, targets):
    """A fingerprint of every value of the arrays, their dtypes and shapes.

    Written here because MLflow's own (``compute_numpy_digest``) hashes only the first
    10,000 values of each array: two training sets that differ after those would share it.
    Hashing all of Fashion-MNIST's training split (170 MB) takes ~0.2 s here.
    """
    import numpy as np

    h = hashlib.sha256()
    for array in (features, targets):
        array = np.ascontiguousarray(array)
        h.update(f"{array.dtype.str}{array.shape}".encode())
        h.update(array.data)
    return h.hexdigest()[:DIGEST_LENGTH]


def _source(source):
    """MLflow's source for ``source``: a file (``local``, shown as its path in the UI) or the
    function that loads the data (``code``). Built from JSON: resolving a path string makes
    MLflow warn that it fits two of its local source types."""
    import mlflow.data

    if source and os.path.isabs(source):
        return mlflow.data.get_dataset_source_from_json(json.dumps({"uri": source}), "local")
    return mlflow.data.get_dataset_source_from_json(json.dumps({"tags": {"mlflow.source.name": str(source)}}), "code")


def describe(name, source, context, features, targets):
    """One split as a JSON-able dict: MLflow's record of the dataset, and its context.

    Args:
        name: The data set's name.
        source: A file path, or the name of the function that loads the data.
        context: ``training``, ``validation`` or ``testing``.
        features: The split's features.
        targets: Its targets.
    """
    import mlflow.data

    dataset = mlflow.data.from_numpy(
        features, targets=targets, source=_source(source), name=name, digest=digest(features, targets)
    )
    return {**dataset.to_dict(), "context": context}


def to_inputs(descriptions):
    """MLflow's ``DatasetInput`` entities for ``describe``'s dicts (for ``log_inputs``)."""
    from mlflow.entities import Dataset, DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    return [
        DatasetInput(
            Dataset(**{k: v for k, v in d.items() if k != "context"}),
            tags=[InputTag(MLFLOW_DATASET_CONTEXT, d["context"])],
        )
        for d in descriptions
    ]


def log_inputs(client, run_id, descriptions):
    """Logs ``describe``'s dicts as the run's dataset inputs.

    MLflow's SQL store looks a dataset up, then inserts it, without a lock: two jobs of a
    parallel sweep logging the same data at once can both miss it, and the second insert
    fails on the table's unique key. Tried again, the lookup finds the row the other job made.
    """
    from mlflow.exceptions import MlflowException

    try:
        client.log_inputs(run_id, datasets=to_inputs(descriptions))
    except MlflowException as exc:
        if "UNIQUE constraint failed: datasets." not in str(exc) and "duplicate key" not in str(exc):
            raise
        client.log_inputs(run_id, datasets=to_inputs(descriptions))
