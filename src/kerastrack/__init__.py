"""kerastrack: Keras training runs chosen with Hydra and compared in MLflow."""

__version__ = "0.1.0"

from kerastrack.config import checks as _checks  # noqa: F401  (registers the kt.* resolvers)
from kerastrack.utils import moved as _moved

_moved.install()
