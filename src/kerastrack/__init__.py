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


# What a user imports; each loaded when first used: the callback imports Keras and MLflow,
# the Python API Hydra and pandas, which ``import kerastrack`` alone must not pay for.
_PUBLIC = {
    "Tracker": "kerastrack.callbacks.tracker",
    "train": "kerastrack.api",
    "sweep": "kerastrack.api",
    "compare": "kerastrack.api",
    "runs": "kerastrack.api",
    "Run": "kerastrack.api",
    "Sweep": "kerastrack.api",
    "ConfigError": "kerastrack.errors",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
    """``kerastrack.Tracker`` (the Keras callback), ``kerastrack.train``, ``.sweep``,
    ``.compare``, ``.runs`` (the Python API) and ``kerastrack.ConfigError``, imported on first use."""
    if name in _PUBLIC:
        import importlib

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'kerastrack' has no attribute {name!r}")
