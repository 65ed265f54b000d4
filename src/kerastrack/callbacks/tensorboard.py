"""TensorBoard beside MLflow: what Keras' own TensorBoard callback (``callbacks=[default,tensorboard]``,
``debug=profile``) wrote into the run's output dir goes to the run's artifacts at the end.

Keras' callback writes only local files; nothing else takes them to the run's record."""

from pathlib import Path


def log_dirs(callbacks):
    """The log dirs of the ``keras.callbacks.TensorBoard`` callbacks among ``callbacks``."""
    import keras

    return [Path(c.log_dir) for c in callbacks if isinstance(c, keras.callbacks.TensorBoard)]


def log_tensorboard(tracker, callbacks):
    """Logs each TensorBoard log dir of ``callbacks`` (curves, graph, a profile's trace) as the
    run's artifact named after the dir (``tensorboard/`` by default).

    Args:
        tracker: The run's tracker.
        callbacks: The run's Keras callbacks.
    """
    for directory in log_dirs(callbacks):
        if directory.is_dir():
            tracker.log_artifact(directory)
