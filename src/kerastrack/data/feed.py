"""What ``model.fit`` reads: the training split as a tf.data pipeline in an order fixed by
the seed and the epoch, and the validation split in batches.

Keras' own path for NumPy arrays rebuilds its input pipeline (a permutation, a gather, an
unbatch and a rebatch) for every epoch and every validation pass: for the small models our
users compare, that was ~45 ms of a 70 ms digits epoch. The pipelines here are built once
and read anew each epoch, for ~12 ms.

The order is not tf.data's ``shuffle``: its seed generator is shared, within a process, by
every pipeline with the same seeds, so a run's orders would depend on which runs came
before it in the process (a basic-launcher sweep, a resumed run). Instead each batch takes
its samples through a stateless permutation of (seed, epoch), so epoch k reads the same
order in any run, resumed or not, and whatever ``steps_per_execution`` is.
"""

import keras
import tensorflow as tf


class TrainingFeed(keras.callbacks.Callback):
    """The training split, in batches, in a new order each epoch (``shuffle``).

    A callback, so that it knows the epoch Keras is about to read: pass it to ``fit`` with
    ``dataset`` as the data (Keras reads the pipeline after ``on_epoch_begin``).

    Args:
        x: Features, a NumPy array.
        y: Targets, encoded for the loss.
        batch_size: Samples per step; the last batch of an epoch may be smaller, as in Keras.
        shuffle: Whether each epoch reads the samples in its own order.
        seed: The run's seed.
    """

    def __init__(self, x, y, batch_size, shuffle, seed):
        super().__init__()
        if not shuffle:
            self.dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)
            return
        self._epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        features, targets, last = tf.constant(x), tf.constant(y), len(x) - 1
        seed = tf.constant(seed, tf.int64)

        def take(indices):
            at = tf.random.experimental.index_shuffle(indices, seed=tf.stack([seed, self._epoch]), max_index=last)
            return tf.gather(features, at), tf.gather(targets, at)

        # Prefetching one batch overlaps the gather with the step that came before.
        self.dataset = tf.data.Dataset.range(len(x)).batch(batch_size).map(take).prefetch(1)

    def on_epoch_begin(self, epoch, logs=None):
        if hasattr(self, "_epoch"):
            self._epoch.assign(epoch)


def validation_data(x, y, batch_size):
    """The validation split, in batches of ``batch_size`` (Keras' default validation batch)."""
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size)


def split(x, y, validation_split):
    """Keras' ``validation_split``: the last share of the samples, before any shuffling,
    validates. Returns ``(x_train, y_train), (x_val, y_val)``."""
    at = int(len(x) * (1 - validation_split))  # Keras floors the training share, as here
    return (x[:at], y[:at]), (x[at:], y[at:])


def used_splits(data, validation_split):
    """The samples a run trains, validates and tests on, by MLflow's names for them:
    ``{"training": (x, y), "validation": ..., "testing": ...}`` with the data set's own
    labels. With ``validation_split``, validation is the training split's last share (see
    ``split``), and the data set's own validation split goes unused."""
    if validation_split:
        train, val = split(data.x_train, data.y_train, validation_split)
    else:
        train, val = (data.x_train, data.y_train), (data.x_val, data.y_val)
    return {"training": train, "validation": val, "testing": (data.x_test, data.y_test)}
