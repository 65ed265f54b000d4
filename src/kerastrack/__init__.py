"""kerastrack: Keras training runs chosen with Hydra and compared in MLflow."""

__version__ = "0.1.0"

import sys as _sys

from kerastrack.config import resolvers as _resolvers  # noqa: F401  (registers the kt.* resolvers)
from kerastrack.utils import moved as _moved

_moved.install()

if "keras" in _sys.modules:
    # A script's first `model.fit(..., callbacks=[kerastrack.Tracker()])` looks `fit` up before
    # the Tracker exists: wrapped now, that call goes through the wrapper too (its data, its raise).
    from kerastrack.callbacks import fit_call as _fit_call

    _fit_call.install()


def __getattr__(name):
    """``kerastrack.Tracker`` (the Keras callback), imported when first used: it imports
    Keras and MLflow, which ``import kerastrack`` alone must not pay for."""
    if name == "Tracker":
        from kerastrack.callbacks.tracker import Tracker

        return Tracker
    raise AttributeError(f"module 'kerastrack' has no attribute {name!r}")
