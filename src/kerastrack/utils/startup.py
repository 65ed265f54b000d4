"""A fast and quiet start: TensorFlow's C++ log lines off unless asked for, and the cyclic
garbage collector paused while the big libraries load.

Why the collector: importing TensorFlow, Keras and MLflow creates about a million Python
objects that live as long as the process, and the collector, set off by the allocations,
walks all of them again and again: a fifth of ``import tensorflow`` (0.65 s of 3.2 s here)
and a third of importing MLflow and opening its store. Paused during those blocks, then
frozen (``gc.freeze``: later collections skip what is there), a later full collection takes
milliseconds instead of half a second.

Why a filter on file descriptor 2: TensorFlow prints a few lines (oneDNN, CUDA drivers,
``All log messages before absl::InitializeLog() ...``) from its libraries' static
initializers, before it reads ``TF_CPP_MIN_LOG_LEVEL``; they bypass Python's ``sys.stderr``.
"""

import contextlib
import gc
import logging
import os
import re
import subprocess
import sys

TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
# 3: TensorFlow's C++ code logs only what ends the process. Its ERROR lines on a healthy CPU
# machine are noise (``failed call to cuInit``, ``NodeDef mentions attribute ...``); real
# failures reach Python as exceptions.
QUIET_LEVEL = "3"

# Run in a process of its own: its stdin is the importing process's fd 2, its stdout the
# real stderr. A process, not a thread: it outlives an abort during the import (a C++ check
# that fails), and passes on the line that says why.
_FILTER = r"""
import re, sys
level = int(sys.argv[1])
absl = re.compile(rb"([IWEF])\d{4} [\d:.]+ +\d+ [^\]]+\] ")
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    match = absl.match(line)
    if line.startswith(b"WARNING: All log messages before absl::InitializeLog()") or (
            match and "IWEF".index(match[1].decode()) < level):
        continue
    out.write(line)
    out.flush()
"""

_paused = set()


def quiet_tensorflow():
    """Sets ``TF_CPP_MIN_LOG_LEVEL`` to 3 unless it is set already, before TensorFlow is
    imported: ``TF_CPP_MIN_LOG_LEVEL=0 python train.py`` shows TensorFlow's lines again."""
    os.environ.setdefault(TF_LOG_LEVEL, QUIET_LEVEL)


def tensorflow_log_level():
    """The level TensorFlow's C++ code logs at (0: all, 1: no INFO, 2: no WARNING, 3: no ERROR)."""
    # Read as TensorFlow reads it (a C++ stream): a leading integer, else 0.
    found = re.match(r"\s*([+-]?\d+)", os.environ.get(TF_LOG_LEVEL, ""))
    return int(found[1]) if found else 0


@contextlib.contextmanager
def gc_paused(what):
    """Pauses the cyclic garbage collector for a block that creates many long-lived
    objects (a big library's first import, an MLflow store's first opening), then freezes
    them, so that later collections skip them.

    Once per ``what`` and process: run again, the block runs as is. Freezing again would
    make a run's own objects permanent (a sweep runs many jobs in one process).

    Args:
        what: A name for the block, e.g. ``"tensorflow"``.
    """
    if what in _paused or not gc.isenabled():  # done, or a block around it pauses already
        yield
        return
    _paused.add(what)
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


@contextlib.contextmanager
def loading_tensorflow():
    """The block that imports TensorFlow for the first time: the collector paused, and the
    lines TensorFlow prints before it reads ``TF_CPP_MIN_LOG_LEVEL`` held to that level.
    Every process that trains passes here (a launcher's workers too)."""
    if tensorflow_log_level() > 0:
        _KerasRetracing.install()
    if "tensorflow" in sys.modules:
        yield
        return
    with gc_paused("tensorflow"), _start_lines_filtered(tensorflow_log_level()):
        yield


class _KerasRetracing(logging.Filter):
    """Drops TensorFlow's warning that "N out of the last N calls to <function
    TensorFlowTrainer._make_function.<locals>.multi_step_on_iterator ...> triggered
    tf.function retracing" for Keras' own per-model functions (and the training state's).

    Why it comes: TensorFlow counts traces per function *code*, which every model's train,
    test and predict functions share; each model traces its own once (and once more for a
    last, smaller batch). A process that runs several sweep jobs (the basic launcher's, or
    a parallel launcher's worker) builds a new model per job by design, and from the third
    job on the count passes TensorFlow's threshold, although no function is traced twice
    for the same input. Other retracing warnings (a user's own function) stay."""

    # Keras 3.15 names them TensorFlowTrainer._make_function.<locals>...; earlier
    # versions TensorFlowTrainer.make_train_function.<locals>...
    OWN = ("TensorFlowTrainer.", "TrainingState.")

    @classmethod
    def install(cls):
        logger = logging.getLogger("tensorflow")  # tf.get_logger(), before TensorFlow exists
        if not any(isinstance(f, cls) for f in logger.filters):
            logger.addFilter(cls())

    def filter(self, record):
        message = record.getMessage()
        return not ("triggered tf.function retracing" in message and any(own in message for own in self.OWN))


@contextlib.contextmanager
def _start_lines_filtered(level):
    """Sends file descriptor 2 through a filter that drops TensorFlow's log lines below
    ``level``; everything else (Python's warnings, tracebacks) passes unchanged, in order."""
    if level <= 0:  # everything wanted: nothing to filter
        yield
        return
    sys.stderr.flush()
    try:
        # Its own session: Ctrl-C at the terminal must not end it before it has passed on
        # what it holds; it ends when the pipe closes.
        filtering = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER, str(level)],
            stdin=subprocess.PIPE,
            stdout=2,
            start_new_session=True,
        )
    except OSError:  # no process to spare: the lines show, nothing is lost
        yield
        return
    saved = os.dup(2)
    os.dup2(filtering.stdin.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        filtering.stdin.close()
        filtering.wait()  # what it holds is out before anything else is written
