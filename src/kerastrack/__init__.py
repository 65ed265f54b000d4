"""kerastrack: Keras training runs chosen with Hydra and compared in MLflow."""

__version__ = "0.1.0"

from kerastrack.config import resolvers as _resolvers  # noqa: F401  (registers the kt.* resolvers)
from kerastrack.utils import moved as _moved

_moved.install()


def __getattr__(name):
    """``kerastrack.Tracker`` (the Keras callback), imported when first used: it imports
    Keras and MLflow, which ``import kerastrack`` alone must not pay for."""
    if name == "Tracker":
        from kerastrack.callbacks.tracker import Tracker

        return Tracker
    raise AttributeError(f"module 'kerastrack' has no attribute {name!r}")
