"""Keras callbacks that record training: the per-epoch and per-batch loggers (through a
tracker, see kerastrack.tracking) and the training state a run keeps for ``resume=``."""

import json
import logging
import math
import tempfile
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from kerastrack.errors import ConfigError
from kerastrack.utils.background import Worker
from kerastrack.utils.files import write_atomic
from kerastrack.utils.signals import Held

log = logging.getLogger(__name__)
# Keras callbacks' state that their on_train_begin resets (and BackupAndRestore does not keep).
CALLBACK_STATE = {
    keras.callbacks.EarlyStopping: ("wait", "stopped_epoch", "best", "best_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "cooldown_counter", "best"),
    keras.callbacks.ModelCheckpoint: ("best",),
}


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
        probes: ``kerastrack.callbacks.probes.Probe`` objects whose measurements are logged with
            each epoch.
        sample: (x, y), a fixed sample of the training set for the probes.

    Attributes:
        epochs: One dict per finished epoch of everything logged, kept for the end-of-run
            summary even when training is interrupted.
        on_record: Metric key -> steps already in the store (a resumed run): an epoch
            that was logged but whose state was not saved yet is recomputed, identically,
            and what is on record of it is not logged twice.
        next_learning_rate: The rate the next epoch starts with, when ``TrainingState``
            read it with the state (one call into TensorFlow an epoch instead of two).
    """

    def __init__(self, tracker, probes=(), sample=(None, None)):
        super().__init__()
        self.tracker = tracker
        self.probes = list(probes)
        self.sample = sample
        self.epochs = []
        self.on_record = {}
        self.next_learning_rate = None

    def on_train_begin(self, logs=None):
        self.epochs = []
        self.next_learning_rate = None
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
        rate, self.next_learning_rate = self.next_learning_rate, None
        self._learning_rate = current_learning_rate(self.model.optimizer) if rate is None else rate
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        record = {k: float(v) for k, v in logs.items() if np.ndim(v) == 0}
        record["learning_rate"] = self._learning_rate
        record["epoch_time_s"] = time.perf_counter() - self._start
        for probe in self.probes:
            record.update(probe.measure(self.model, *self.sample))
        self.epochs.append(record)
        missing = {k: v for k, v in record.items() if epoch not in self.on_record.get(k, ())}
        if missing:
            self.tracker.log_metrics(missing, step=epoch)
        self.tracker.check()  # a store that can no longer write (a full disk) stops training
        if not math.isfinite(record.get("loss", 0.0)):
            # Also without TerminateOnNaN (callbacks=none): a diverged run trains no further.
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        # A probe's figures of the whole run (a trajectory), logged under plots/ like the
        # pipeline's; drawn also for a diverged run: the path shows where it went.
        for probe in self.probes:
            if not (figures := probe.figures(self.epochs)):
                continue
            with tempfile.TemporaryDirectory() as tmp:
                for name, fig in figures.items():
                    fig.savefig(Path(tmp) / name, dpi=100)
                    self.tracker.log_artifact(Path(tmp) / name, "plots")

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
    With ``trainer.steps_per_execution`` > 1 Keras calls it once per execution: it logs
    when an execution crossed a multiple of N, at the step the logs are from.

    Args:
        tracker: Where to log (a kerastrack tracker).
        every_n_steps: Log every this many optimizer steps (>= 1).
    """

    def __init__(self, tracker, every_n_steps):
        super().__init__()
        self.tracker = tracker
        self.every_n_steps = every_n_steps

    def on_train_begin(self, logs=None):
        self._last = None

    def on_train_batch_end(self, batch, logs=None):
        # The optimizer's count is the true step, whatever the steps per execution, and it
        # goes on where a resumed run stopped.
        step = int(self.model.optimizer.iterations)
        last = step - (batch + 1) if self._last is None else self._last  # the count before this call
        self._last = step
        if step // self.every_n_steps > last // self.every_n_steps:
            logs = logs or {}
            self.tracker.log_metrics({f"batch_{k}": float(v) for k, v in logs.items() if np.ndim(v) == 0}, step=step)


class TrainingState(keras.callbacks.Callback):
    """Keeps the whole training state at an epoch's end (see ``every_s``), and restores it,
    so that a resumed run repeats the uninterrupted one bit for bit.

    The state: every model variable (weights and the dropout layers' seed generators),
    every optimizer variable (slots, iteration count, so the schedule's step, and the
    rate ReduceLROnPlateau set), the epoch, the other callbacks' counters (early-stopping
    patience, the plateau's wait, the best value so far, the best weights) and whether one
    stopped training, and the epochs logged so far (for the run's best_* and plots).

    Written by hand rather than with ``keras.callbacks.BackupAndRestore``: that callback
    keeps neither the seed generators nor the callbacks' state, and its HDF5 write costs
    13.7 ms an epoch here (10% of a digits epoch). Here the training thread only reads the
    variables, in one TensorFlow call (~0.2 ms); the archive is made and written in the
    background and replaces the previous one atomically, so a kill at any moment leaves a
    whole state behind.

    Saved after the first epoch, then at most every ``every_s`` seconds, and where training
    stops: after the epoch it stops at (the end, early stopping), and, when it is stopped
    (Ctrl-C, SIGTERM, an error), the last finished epoch's state, which every epoch's end
    reads (``keep_last``), so that the run resumes with the epoch after the last one on
    record. Only a run killed hard resumes from an older state: it repeats the epochs since,
    and what is on record of them is not logged twice (``EpochLogger.on_record``). For
    epochs of ~40 ms, writing each one cost more than all the rest of the tracking. Only
    under TensorFlow's op determinism are the repeated epochs the same as the recorded
    ones; otherwise the pipeline saves every epoch (``every_s=0``).

    Goes last in the callback list: it restores after the other callbacks' on_train_begin
    resets them, and reads after their on_epoch_end updates them. ``opening`` goes before
    the ``EpochLogger``: from it to here, a signal is held (``signals.Held``), so that an
    epoch on record always has its state read. It restores only the state it is given (a
    resumed run's, read and checked beforehand): a state found in the output dir belongs
    to whichever run left it there.

    Args:
        state_dir: Where the state lives (``<output_dir>/state``).
        callbacks: The run's other callbacks.
        logger: The run's ``EpochLogger``.
        saved: The ``SavedState`` to continue from, or None for a run from its first epoch.
        every_s: Seconds between saves (0: after every epoch).
    """

    FILE = "training_state.npz"

    def __init__(self, state_dir, callbacks=(), logger=None, saved=None, every_s=0):
        super().__init__()
        self.path = Path(state_dir) / self.FILE
        # Only the callbacks whose state Keras resets at train begin need keeping.
        self.stateful = [c for c in callbacks if type(c) in CALLBACK_STATE]
        self.logger = logger
        self.saved = saved
        self.every_s = every_s
        self._writer = None
        self._error = None
        self._read = None
        self._saved_at = None
        self._last = None  # the last finished epoch's state: (values, best weights, meta)
        self._last_written = False
        self._held = Held()
        self.opening = _Hold(self._held)
        self.beside = {}  # files resume= needs beside the state (run.json, config.yaml): name -> text

    def on_train_begin(self, logs=None):
        self._read = None
        self._saved_at = None
        self._last, self._last_written = None, False
        if self._writer is None:
            self._writer = Worker("training-state")
        if self.saved is not None:
            self._restore(self.saved)

    def _due(self, epoch):
        return (
            self._saved_at is None
            or self.model.stop_training
            or epoch + 1 >= self.params.get("epochs", 0)
            or time.monotonic() - self._saved_at >= self.every_s
        )

    def on_epoch_end(self, epoch, logs=None):
        try:
            self._raise_error()  # a write that failed (a full disk) stops training at the next epoch's end
            self._last, self._last_written = self._read_state(epoch), False
            if self._due(epoch):
                self._saved_at = time.monotonic()
                self._wait()
                self._put_last()
        finally:
            self._held.release()  # a signal held since the logger's on_epoch_end is raised here

    def _read_state(self, epoch):
        """On the training thread, only what the next step changes is taken: the variables'
        values (tensors that keep them, ~0.2 ms, see ``_values``), and the callbacks'
        counters. Keras replaces best_weights, never changes them."""
        values, rate = self._values()
        if self.logger:  # read after every callback's on_epoch_end: ReduceLROnPlateau's cut counts
            self.logger.next_learning_rate = float(rate)
        stateful = self.stateful
        meta = {
            "epoch": epoch + 1,
            "stop_training": bool(self.model.stop_training),
            "epochs": list(self.logger.epochs) if self.logger else [],
            "callbacks": [{a: _plain(getattr(c, a, None)) for a in CALLBACK_STATE[type(c)]} for c in stateful],
            "best_weights": [getattr(c, "best_weights", None) is not None for c in stateful],
        }
        best = [w for c in stateful for w in getattr(c, "best_weights", None) or []]
        return values, best, meta

    def _put_last(self):
        self._last_written = True
        self._writer.put(self._write, *self._last)

    def on_train_end(self, logs=None):
        self._wait()

    def keep_last(self):
        """Writes the last finished epoch's state if the last write was of an older one:
        called when training is stopped (what it costs: one epoch's write, ~4 ms here). A
        write that fails (a full disk) is logged: the last whole state stays."""
        try:
            deleted = any(not (self.path.parent / name).is_file() for name in self.beside)
            if self._writer is not None and self._last is not None and (deleted or not self._last_written):
                self._wait()
                self._put_last()
                self._wait()
        except OSError as exc:
            log.warning("%s", exc)
        finally:
            self._held.release()  # an error in a callback may have cut the span short

    def close(self):
        """Waits for the last write and ends the writer's thread: called however the run ends
        (Keras skips on_train_end when fit raises), so that no state write is cut short. A
        write that failed was raised at the next epoch's end, or the training's."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.stop()
        self._held.release()

    def discard(self):
        """Deletes the saved state (run.json and config.yaml stay, as a record)."""
        self._wait()
        self.path.unlink(missing_ok=True)

    def _values(self):
        """Every variable's value now, as tensors that keep it (TensorFlow copies a variable's
        buffer before an update while a read of it is alive), and the optimizer's rate for
        its next step, read in one graph call: a read per variable from Python costs ~30 us."""
        if self._read is None:
            variables = [v.value for v in self._variables()]
            optimizer = self.model.optimizer
            # A concrete function: called without tf.function's dispatch (~0.1 ms less).
            self._read = tf.function(
                lambda: ([tf.identity(v) for v in variables], tf.convert_to_tensor(optimizer.learning_rate))
            ).get_concrete_function()
        return self._read()

    def _variables(self):
        optimizer = self.model.optimizer
        if not optimizer.built:  # its slots exist only after the first step
            optimizer.build(self.model.trainable_variables)
        return [*self.model.variables, *optimizer.variables]

    def _write(self, values, best, meta):
        try:
            arrays = [v.numpy() for v in values] + best
            self.path.parent.mkdir(parents=True, exist_ok=True)
            for name, text in self.beside.items():  # the output dir was deleted under the run: whole again
                if not (self.path.parent / name).is_file():
                    write_atomic(self.path.parent / name, text)
            write_atomic(self.path, lambda f: np.savez(f, *arrays, meta=np.array(json.dumps(meta))))
        except OSError as exc:  # a full disk: keep the last whole state, report it on the training thread
            self._error = exc

    def _wait(self):
        if self._writer is not None:
            self._writer.join()
            if (failure := self._writer.take_failure()) is not None:  # not a full disk: a bug, raised as is
                raise failure
        self._raise_error()

    def _raise_error(self):
        if self._error is not None:
            error, self._error = self._error, None
            raise StateNotSaved(
                f"the training state could not be saved in {self.path.parent} "
                f"({error.strerror or error}); the last whole state is kept"
            ) from error

    def _restore(self, saved):
        meta, arrays = saved.meta, saved.arrays
        variables = self._variables()
        stateful = self.stateful
        n_best = len(self.model.get_weights())
        expected = len(variables) + n_best * sum(meta["best_weights"])
        if (
            len(arrays) != expected
            or len(meta["best_weights"]) != len(stateful)
            or any(a.shape != tuple(v.shape) for a, v in zip(arrays, variables))
        ):
            raise ConfigError(
                f"the training state in {saved.path} does not fit this model (another config or "
                f"version of the code); start a new run"
            )
        for variable, value in zip(variables, arrays):
            variable.assign(value)
        rest = arrays[len(variables) :]
        for callback, values, has_best in zip(stateful, meta["callbacks"], meta["best_weights"], strict=True):
            for name, value in values.items():
                setattr(callback, name, value)
            if has_best:
                callback.best_weights, rest = rest[:n_best], rest[n_best:]
        if self.logger:
            self.logger.restore(meta["epochs"])
        log.info("resuming from the state saved after epoch %d (%s)", meta["epoch"] - 1, saved.path)
        # Keras' fit starts from model._initial_epoch (what BackupAndRestore sets, too);
        # after an early stop, nothing is left to run.
        self.model._initial_epoch = 1 << 30 if meta["stop_training"] else meta["epoch"]


class _Hold(keras.callbacks.Callback):
    """Opens the span of an epoch's end in which signals are held (see TrainingState)."""

    def __init__(self, held):
        super().__init__()
        self.held = held

    def on_epoch_end(self, epoch, logs=None):
        self.held.hold()


class StateNotSaved(OSError):
    """The training state could not be written (a full disk): the run ends FAILED."""


def _plain(value):
    return value.item() if isinstance(value, np.generic) else (float(value) if hasattr(value, "numpy") else value)
