"""A model of your own: a function that takes the data's input shape and the output head
(its ``units`` and ``activation``, which kerastrack derives from the loss) and returns a
``keras.Model``. conf/model/wide_relu.yaml names it with ``_target_: my_models.wide_relu``."""

import keras


def wide_relu(input_shape, head, width=64, dropout=0.1):
    """One wide hidden layer with dropout.

    Args:
        input_shape: Shape of one sample, e.g. (2,).
        head: The output head: ``head.units`` outputs with ``head.activation``.
        width: Units of the hidden layer.
        dropout: Share of the hidden units dropped in training.
    """
    inputs = keras.Input(shape=tuple(input_shape))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(width, activation="relu")(x)
    x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(head.units, activation=head.activation, dtype="float32")(x)
    return keras.Model(inputs, outputs, name="wide_relu")
