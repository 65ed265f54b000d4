"""Model builders. Each takes the data's input shape and the head derived from the loss.

Model options in conf/model/ are ``_partial_`` calls to these functions: input_shape and
head are known only once the data set and loss are.
"""

import math
from collections.abc import Sequence

import keras

import kerastrack.losses.custom  # noqa: F401 - registers the losses a saved model may name
import kerastrack.losses.surfaces  # noqa: F401 - and the surfaces
from kerastrack.errors import ConfigError


def _regularizer(l1, l2):
    return keras.regularizers.L1L2(l1=l1, l2=l2) if (l1 or l2) else None


def _output(x, head, regularizer, **dense_args):
    # float32 under mixed precision too: a float16 softmax/sigmoid and the loss on it are
    # numerically unstable (Keras' mixed precision guide keeps the output layer float32).
    return keras.layers.Dense(
        head.units,
        activation=head.activation,
        kernel_regularizer=regularizer,
        dtype="float32",
        name="head",
        **dense_args,
    )(x)


def _flat_input(input_shape):
    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = keras.layers.Flatten(name="flatten")(inputs) if len(input_shape) > 1 else inputs
    return inputs, x


def linear(input_shape, head, l1=0.0, l2=0.0, use_bias=True, kernel_initializer="glorot_uniform", max_norm=None):
    """A linear classifier/regressor: softmax, logistic, SVM or linear regression.

    Args:
        input_shape: Shape of one sample.
        head: The output head (units, activation).
        l1: L1 weight penalty on the weights.
        l2: L2 weight penalty on the weights.
        use_bias: Whether the model has a bias (the papers' analyses often have none).
        kernel_initializer: How the weights start, any Keras initializer name
            (``zeros``: from the origin, as gradient methods' analyses assume).
        max_norm: None, or the largest norm each unit's weight vector may have: Keras
            projects the weights back after every update (``keras.constraints.MaxNorm``;
            for one weight, onto [-max_norm, max_norm]).
    """
    inputs, x = _flat_input(input_shape)
    constraint = None if max_norm is None else keras.constraints.MaxNorm(max_norm, axis=0)
    return keras.Model(
        inputs,
        _output(
            x,
            head,
            _regularizer(l1, l2),
            use_bias=use_bias,
            kernel_initializer=kernel_initializer,
            kernel_constraint=constraint,
        ),
        name="linear",
    )


def mlp(input_shape, head, hidden_units=(128,), activation="relu", dropout=0.0, l1=0.0, l2=0.0):
    """A multilayer perceptron.

    Args:
        input_shape: Shape of one sample (images are flattened).
        head: The output head (units, activation).
        hidden_units: Units of each hidden layer.
        activation: Hidden activation, any Keras name (relu, sigmoid, tanh, ...).
        dropout: Dropout rate after each hidden layer.
        l1: L1 weight penalty on every kernel.
        l2: L2 weight penalty on every kernel.
    """
    inputs, x = _flat_input(input_shape)
    regularizer = _regularizer(l1, l2)
    for i, units in enumerate(hidden_units):
        x = keras.layers.Dense(units, activation=activation, kernel_regularizer=regularizer, name=f"dense_{i}")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name=f"dropout_{i}")(x)
    return keras.Model(inputs, _output(x, head, regularizer), name="mlp")


def cnn(
    input_shape, head, filters=(32, 64), kernel_size=3, dense_units=128, activation="relu", dropout=0.0, l1=0.0, l2=0.0
):
    """A small convolutional network: conv + max-pool blocks, then a dense layer.

    Args:
        input_shape: Shape of one image, (height, width, channels).
        head: The output head (units, activation).
        filters: Filters of each conv block.
        kernel_size: Convolution kernel size.
        dense_units: Units of the dense layer before the head.
        activation: Hidden activation, any Keras name.
        dropout: Dropout rate before the head.
        l1: L1 weight penalty on every kernel.
        l2: L2 weight penalty on every kernel.
    """
    if len(input_shape) != 3:
        raise ConfigError(
            f"model=cnn needs image data of shape (height, width, channels). "
            f"Received: input shape {tuple(input_shape)}; use model=mlp or model=linear"
        )
    regularizer = _regularizer(l1, l2)
    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    x = inputs
    for i, n in enumerate(filters):
        x = keras.layers.Conv2D(
            n, kernel_size, padding="same", activation=activation, kernel_regularizer=regularizer, name=f"conv_{i}"
        )(x)
        if min(x.shape[1:3]) >= 2:
            x = keras.layers.MaxPooling2D(name=f"pool_{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, activation=activation, kernel_regularizer=regularizer, name="dense")(x)
    if dropout:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(inputs, _output(x, head, regularizer), name="cnn")


# Read by the config check, which refuses model=cnn on a tabular data set before any run.
cnn.needs_images = True


@keras.saving.register_keras_serializable(package="kerastrack")
class Position(keras.layers.Layer):
    """A point (x, y) as a layer's one weight: its output is that point for every sample,
    whatever the input, so that a surface loss (kerastrack.losses.surfaces) scores the point and
    the optimizer moves it.

    Args:
        start: Where the point starts, [x, y].
        **kwargs: Those of ``keras.layers.Layer``.
    """

    def __init__(self, start=(0.0, 0.0), **kwargs):
        super().__init__(**kwargs)
        self.start = [float(v) for v in start]

    def build(self, input_shape):
        self.position = self.add_weight(shape=(len(self.start),), initializer="zeros", name="position")
        self.position.assign(self.start)

    def call(self, inputs):
        return keras.ops.ones((keras.ops.shape(inputs)[0], 1), dtype=self.position.dtype) * self.position

    def get_config(self):
        return {**super().get_config(), "start": self.start}


def point(input_shape, head, start=(0.0, 0.0)):
    """The position on a 2-D surface as the model: one weight, (x, y), started at ``start``;
    it outputs the position and a surface loss (``loss=rosenbrock``, ...) scores it. The
    head is not used: the output is the position itself.

    Args:
        input_shape: Shape of one sample (unused: see ``data=surface_steps``).
        head: The output head (unused).
        start: Where the position starts, [x, y]; conf/model/point.yaml takes the surface's
            own (``loss.start``).
    """
    values = list(start) if isinstance(start, Sequence) and not isinstance(start, str) else None  # a ListConfig too
    if not (
        values
        and len(values) == 2
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)
    ):
        raise ConfigError(
            f"model.start must be a list of two numbers [x, y], e.g. [-2, 2]. Received: model.start={start}"
        )
    inputs = keras.Input(shape=tuple(input_shape), name="inputs")
    # float32 under mixed precision too: the position is the whole model.
    return keras.Model(inputs, Position(values, dtype="float32", name="position")(inputs), name="point")


point.is_position = True  # config's check: only a surface loss scores it, and a surface needs it


def load_model(path):
    """Loads a saved model, e.g. a run's ``checkpoints/best.keras``, in Keras' safe mode.

    Safe mode refuses a file that would run code while loading (a Lambda layer's pickled
    bytecode): a model file from elsewhere cannot take over the process that opens it.
    Keras lets ``keras.config.enable_unsafe_deserialization()`` override it process-wide;
    kerastrack never calls that.

    Args:
        path: A ``.keras`` file.
    """
    return keras.saving.load_model(path, safe_mode=True)
