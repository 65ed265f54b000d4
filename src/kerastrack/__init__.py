"""kerastrack: Keras training runs chosen with Hydra and compared in MLflow."""

__version__ = "0.1.0"

from kerastrack import config as _config  # noqa: F401  (registers the kt.* resolvers)
