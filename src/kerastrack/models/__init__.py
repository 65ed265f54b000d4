"""Model builders (``builders``) and the output head and label encoding each gets from the
data set and the loss (``heads``)."""

from kerastrack.models.builders import cnn, linear, load_model, mlp, point

__all__ = ["cnn", "linear", "load_model", "mlp", "point"]
