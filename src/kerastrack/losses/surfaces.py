"""The optimizer lab's 2-D surfaces: f(x, y) as Keras losses of a position.

A surface is a loss option (``loss=rosenbrock``, conf/loss/): the model ``model=point`` is
the position (x, y) itself, its output is that position, and the loss is the surface's
value there, so every optimizer step is a step of the real Keras optimizer on f. The data
(``data=surface_steps``) only paces it: one step a sample. Each loss option also names
where the position starts (``loss.start``), which ``model=point`` reads.

Rosenbrock and Rastrigin have classes of their own; any polynomial in x and y (the saddle,
the two minima) is a ``Polynomial`` written in its YAML alone.
"""

import math
from collections.abc import Sequence
from numbers import Integral, Real

import keras
from keras import ops

from kerastrack.errors import ConfigError


class Surface(keras.losses.Loss):
    """Base class: the loss is ``value(x, y)`` at the position the model outputs, ``(batch, 2)``.

    The targets are ignored: the surface alone says how good a position is.

    Args:
        reduction: Keras loss reduction, e.g. ``"sum_over_batch_size"`` (the mean).
        name: Name of the loss.
        dtype: Dtype of the loss computation.
    """

    minimum = None  # where the global minimum is, (x, y), when known: figures mark it
    needs_position = True  # config's check: its model must be model=point

    def __init__(self, reduction="sum_over_batch_size", name="surface", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def value(self, x, y):
        """f(x, y), element-wise, for tensors or NumPy arrays of the same shape."""
        raise NotImplementedError

    def call(self, y_true, y_pred):
        return self.value(y_pred[..., 0], y_pred[..., 1])


@keras.saving.register_keras_serializable(package="kerastrack")
class Rosenbrock(Surface):
    """``(a - x)^2 + b (y - x^2)^2``: a narrow curved valley, minimum 0 at (a, a^2).

    Args:
        a: Where the minimum is: (a, a^2).
        b: The valley's steepness; the larger, the narrower.
        **kwargs: Those of ``Surface``.
    """

    def __init__(self, a=1.0, b=100.0, name="rosenbrock", **kwargs):
        super().__init__(name=name, **kwargs)
        self.a, self.b = _number("loss.fn.a", a), _number("loss.fn.b", b)
        self.minimum = (self.a, self.a**2)

    def value(self, x, y):
        return (self.a - x) ** 2 + self.b * (y - x**2) ** 2

    def get_config(self):
        return {**super().get_config(), "a": self.a, "b": self.b}


@keras.saving.register_keras_serializable(package="kerastrack")
class Rastrigin(Surface):
    """``2A + x^2 + y^2 - A (cos 2 pi x + cos 2 pi y)``: a bowl covered in local minima
    (near every integer point), global minimum 0 at the origin.

    Args:
        amplitude: A, the depth of the ripples.
        **kwargs: Those of ``Surface``.
    """

    def __init__(self, amplitude=10.0, name="rastrigin", **kwargs):
        super().__init__(name=name, **kwargs)
        self.amplitude = _number("loss.fn.amplitude", amplitude)
        self.minimum = (0.0, 0.0)

    def value(self, x, y):
        a = self.amplitude
        return 2 * a + x**2 + y**2 - a * (ops.cos(2 * math.pi * x) + ops.cos(2 * math.pi * y))

    def get_config(self):
        return {**super().get_config(), "amplitude": self.amplitude}


@keras.saving.register_keras_serializable(package="kerastrack")
class Polynomial(Surface):
    """A polynomial in x and y, one ``[coefficient, power of x, power of y]`` a term:
    ``[[1, 2, 0], [-1, 0, 2]]`` is x^2 - y^2. A new polynomial surface needs a YAML only.

    Args:
        terms: The terms; powers are integers >= 0.
        minimum: Where the global minimum is, [x, y], when known (figures mark it), or None.
        **kwargs: Those of ``Surface``.
    """

    def __init__(self, terms=((1.0, 2, 0), (1.0, 0, 2)), minimum=None, name="polynomial", **kwargs):
        super().__init__(name=name, **kwargs)
        if minimum is not None and not (_is_list(minimum) and len(minimum) == 2 and all(map(_is_number, minimum))):
            raise ConfigError(f"loss.fn.minimum must be null or [x, y]. Received: loss.fn.minimum={minimum}")
        self.minimum = None if minimum is None else tuple(float(v) for v in minimum)
        ok = (
            _is_list(terms)
            and len(terms) > 0
            and all(
                _is_list(t)
                and len(t) == 3
                and _is_number(t[0])
                and all(isinstance(p, Integral) and not isinstance(p, bool) and p >= 0 for p in t[1:])
                for t in terms
            )
        )
        if not ok:
            raise ConfigError(
                "loss.fn.terms must be a non-empty list of [coefficient, power of x, power of y] with "
                f"integer powers >= 0, e.g. [[1, 2, 0], [-1, 0, 2]] for x^2 - y^2. "
                f"Received: loss.fn.terms={terms}"
            )
        self.terms = [[float(c), int(i), int(j)] for c, i, j in terms]

    def value(self, x, y):
        # Products, not ops.power: the gradient of x**0 is 0 * x**-1, NaN at x = 0.
        total = 0.0
        for coefficient, i, j in self.terms:
            term = coefficient
            for _ in range(i):
                term = term * x
            for _ in range(j):
                term = term * y
            total = total + term
        return total + 0.0 * x  # a constant polynomial still has the inputs' shape

    def get_config(self):
        return {**super().get_config(), "terms": self.terms, "minimum": self.minimum}


def _is_list(value):
    return isinstance(value, Sequence) and not isinstance(value, str)  # a ListConfig too


def _is_number(value):
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def _number(key, value):
    if not _is_number(value):
        raise ConfigError(f"{key} must be a finite number. Received: {key}={value}")
    return float(value)
