"""``model.fit`` as ``kerastrack.Tracker`` sees it: how it was called, and how it ended.

A Keras callback is not told when ``fit`` raises (Keras skips ``on_train_end`` and the
exception goes straight to the caller), nor which data or batch size ``fit`` was given
(``self.params`` holds the epochs, steps and verbosity only). So ``install`` wraps
``keras.Model.fit`` once per process, as ``mlflow.keras.autolog`` does: the wrapper reads
the call's arguments, and a ``FitWatcher`` among the callbacks is told the call before it
starts and its end after it ends, with the exception that ended it. A call without a
``FitWatcher`` goes straight to Keras' own ``fit``. While a watched call runs, SIGTERM
stops it as Ctrl-C does (a run killed by a scheduler ends KILLED, as ``python train.py``'s).
"""

import functools
import hashlib
import inspect
import logging

import keras
import numpy as np
import tensorflow as tf
from keras.src.trainers.data_adapters import array_slicing  # the split fit makes itself: no public API

from kerastrack.utils.signals import forget_interrupts, sigterm_as_interrupt

log = logging.getLogger(__name__)
EXAMPLE_ROWS = 5  # samples kept with the logged model, as train.py keeps
# One pass over a tf.data input is taken to describe it; a bigger one is not described.
MAX_PASS_BYTES = 256 << 20
KERAS_DEFAULT_BATCH_SIZE = 32  # fit's batch size for arrays when it is given none


class FitWatcher(keras.callbacks.Callback):
    """A callback that is told how ``fit`` was called and how the call ended (see ``install``)."""

    def fit_started(self, call):
        """Called before Keras' ``fit`` starts, with the call (a ``FitCall``)."""

    def fit_ended(self, error=None):
        """Called when ``fit`` returned (``error`` None) or raised ``error``."""


def install():
    """Wraps ``keras.Model.fit`` (and so every model's, whose class inherits it), once."""
    original = keras.Model.fit
    if getattr(original, "watched", False):
        return
    signature = inspect.signature(original)

    @functools.wraps(original)
    def fit(self, *args, **kwargs):
        try:
            arguments = signature.bind(self, *args, **kwargs)
        except TypeError:  # Keras' own message for a call that does not fit its signature
            return original(self, *args, **kwargs)
        arguments.apply_defaults()
        callbacks = arguments.arguments.get("callbacks") or []
        callbacks = callbacks.callbacks if isinstance(callbacks, keras.callbacks.CallbackList) else callbacks
        watchers = [c for c in callbacks if isinstance(c, FitWatcher)]
        if not watchers:
            return original(self, *args, **kwargs)
        forget_interrupts()  # an interrupt of an earlier run in this process is not this one's
        call = FitCall(arguments.arguments)
        for watcher in watchers:
            watcher.fit_started(call)
        with sigterm_as_interrupt():
            try:
                history = original(self, *args, **kwargs)
            except BaseException as exc:
                for watcher in watchers:
                    watcher.fit_ended(exc)
                raise
            for watcher in watchers:
                watcher.fit_ended()
        return history

    fit.watched = True
    keras.Model.fit = fit


def _array(value):
    """``value`` as a numeric numpy array (numpy, a tensor, a DataFrame), else None (a dict
    of inputs, a list of them, None)."""
    if value is None or isinstance(value, (dict, list, tuple)) or not hasattr(value, "shape"):
        return None
    array = np.asarray(value)
    return array if array.dtype.kind in "biuf" and array.ndim >= 1 else None


def _pair(x, y):
    x, y = _array(x), _array(y)
    return (x, y) if x is not None and y is not None and len(x) == len(y) else None


class FitCall:
    """The arguments of one ``fit`` call, and the data it trains and validates on.

    Args:
        arguments: fit's arguments by name, defaults included.
    """

    def __init__(self, arguments):
        self.arguments = arguments
        self._example = None
        self._batch_rows = None

    @property
    def has_validation(self):
        return self.arguments["validation_data"] is not None or bool(self.arguments["validation_split"])

    def splits(self):
        """``{context: (features, targets)}`` of what fit trains (``training``) and validates
        (``validation``) on, where it can be seen: arrays as fit uses them (the training
        share and the last ``validation_split`` of them, as Keras splits them), a finite
        tf.data.Dataset of (x, y) once passed over (see ``_one_pass``). Called once training
        started (Keras has accepted the data)."""
        x, y, validation = self.arguments["x"], self.arguments["y"], self.arguments["validation_data"]
        split = self.arguments["validation_split"]
        found = {}
        if isinstance(x, tf.data.Dataset):
            found["training"] = self._one_pass(x, keep_example=True)
        else:
            if split and validation is None and _pair(x, y):
                (x, y, _), validation = array_slicing.train_validation_split((x, y, None), validation_split=split)
            found["training"] = _pair(x, y)
        if isinstance(validation, tf.data.Dataset):
            found["validation"] = self._one_pass(validation)
        elif isinstance(validation, (tuple, list)) and len(validation) in (2, 3):
            found["validation"] = _pair(*validation[:2])
        if found["training"] is not None and self._example is None:
            self._example = found["training"][0][:EXAMPLE_ROWS]
        return {context: pair for context, pair in found.items() if pair is not None}

    def _one_pass(self, dataset, keep_example=False):
        """(features, targets) of one pass over a finite ``dataset`` of (x, y[, weights])
        arrays, or None (infinite, of another structure, over ``MAX_PASS_BYTES``). Its
        samples are put in an order of their own (sorted by each one's hash): a pipeline that
        reshuffles every pass gives the same description of the same samples."""
        if dataset.cardinality() == tf.data.INFINITE_CARDINALITY:
            return None
        xs, ys, size = [], [], 0
        for element in dataset.as_numpy_iterator():
            pair = _pair(*element[:2]) if isinstance(element, tuple) and len(element) in (2, 3) else None
            if pair is None:
                return None
            if keep_example and not xs:
                self._example, self._batch_rows = pair[0][:EXAMPLE_ROWS], len(pair[0])
            size += pair[0].nbytes + pair[1].nbytes
            if size > MAX_PASS_BYTES:
                log.info("the tf.data input is over %d MB: not logged as a dataset input", MAX_PASS_BYTES >> 20)
                return None
            xs.append(pair[0])
            ys.append(pair[1])
        if not xs:
            return None
        x, y = np.concatenate(xs), np.concatenate(ys)
        keys = [hashlib.blake2b(a.tobytes() + b.tobytes(), digest_size=16).digest() for a, b in zip(x, y)]
        order = sorted(range(len(keys)), key=keys.__getitem__)
        return x[order], y[order]

    def input_example(self):
        """A few training samples, or None where fit's input is not arrays or (x, y) batches."""
        x = self.arguments["x"]
        if self._example is None and isinstance(x, tf.data.Dataset):
            for element in x.take(1).as_numpy_iterator():
                pair = _pair(*element[:2]) if isinstance(element, tuple) and len(element) in (2, 3) else None
                self._example = None if pair is None else pair[0][:EXAMPLE_ROWS]
        elif self._example is None and (array := _array(x)) is not None:
            self._example = array[:EXAMPLE_ROWS]
        return self._example

    def params(self):
        """fit's arguments under train.py's names (``trainer.batch_size``, ...)."""
        arguments = self.arguments
        batch_size = arguments["batch_size"]
        if batch_size is None:
            batch_size = self._batch_rows if isinstance(arguments["x"], tf.data.Dataset) else KERAS_DEFAULT_BATCH_SIZE
        params = {
            "trainer.epochs": arguments["epochs"],
            "trainer.validation_split": arguments["validation_split"] or None,
            "trainer.shuffle": arguments["shuffle"],
            "trainer.verbose": arguments["verbose"],
        }
        if batch_size is not None:
            params["trainer.batch_size"] = batch_size
        if arguments["initial_epoch"]:
            params["trainer.initial_epoch"] = arguments["initial_epoch"]
        return params
