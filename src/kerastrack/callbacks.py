"""Keras callbacks that record training through a tracker (see kerastrack.tracking)."""

import math
import time

import keras
import numpy as np


def current_learning_rate(optimizer):
    """The optimizer's rate for its next step: the schedule's value or the set rate."""
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


class EpochLogger(keras.callbacks.Callback):
    """Logs every Keras epoch log, the learning rate and the epoch's wall time.

    Metrics go to the tracker at step = epoch index (0-based), validation metrics in the
    same step as training ones. ``mlflow.keras.MlflowCallback`` logs no learning rate and
    puts validation metrics at step 0, hence this callback.

    Args:
        tracker: Where to log (a kerastrack tracker).
        probes: ``kerastrack.probes.Probe`` objects whose measurements are logged with
            each epoch.
        sample: (x, y), a fixed sample of the training set for the probes.

    Attributes:
        epochs: One dict per finished epoch of everything logged, kept for the end-of-run
            summary even when training is interrupted.
        logged_through: Epochs up to this one are on record already (a resumed run that
            had logged an epoch but not yet saved its state repeats it): not logged again.
    """

    def __init__(self, tracker, probes=(), sample=(None, None)):
        super().__init__()
        self.tracker = tracker
        self.probes = list(probes)
        self.sample = sample
        self.epochs = []
        self.logged_through = -1

    def on_train_begin(self, logs=None):
        self.epochs = []
        for probe in self.probes:
            probe.start(self.model)

    def restore(self, epochs):
        """Continues from a saved state: the epochs so far, and the probes restarted on the
        restored weights."""
        self.epochs = list(epochs)
        for probe in self.probes:
            probe.start(self.model)

    def on_epoch_begin(self, epoch, logs=None):
        # Read before the first step: the rate this epoch started with (ReduceLROnPlateau
        # changes it at the end of the previous epoch, a schedule at every step).
        self._learning_rate = current_learning_rate(self.model.optimizer)
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        record = {k: float(v) for k, v in logs.items() if np.ndim(v) == 0}
        record["learning_rate"] = self._learning_rate
        record["epoch_time_s"] = time.perf_counter() - self._start
        for probe in self.probes:
            record.update(probe.measure(self.model, *self.sample))
        self.epochs.append(record)
        if epoch > self.logged_through:
            self.tracker.log_metrics(record, step=epoch)
        if not math.isfinite(record.get("loss", 0.0)):
            # Also without TerminateOnNaN (callbacks=none): a diverged run trains no further.
            self.model.stop_training = True

    @property
    def diverged_epoch(self):
        """The first epoch whose loss was NaN or infinite, or None."""
        for epoch, record in enumerate(self.epochs):
            if not math.isfinite(record.get("loss", 0.0)):
                return epoch
        return None


class BatchLogger(keras.callbacks.Callback):
    """Logs the batch logs as ``batch_<name>`` every N optimizer steps (step = global step).

    Separate from EpochLogger and only used when asked for: a callback with a batch hook
    makes Keras hand it every batch's logs, which costs time even when nothing is logged.

    Args:
        tracker: Where to log (a kerastrack tracker).
        every_n_steps: Log every this many optimizer steps (>= 1).
    """

    def __init__(self, tracker, every_n_steps):
        super().__init__()
        self.tracker = tracker
        self.every_n_steps = every_n_steps

    def on_train_begin(self, logs=None):
        self._step = 0

    def on_train_batch_end(self, batch, logs=None):
        logs = logs or {}
        self._step += 1
        if self._step % self.every_n_steps == 0:
            self.tracker.log_metrics({f"batch_{k}": float(v) for k, v in logs.items() if np.ndim(v) == 0}, step=self._step)
