"""What the benchmarks share: TensorFlow imported without its C++ start-up lines, and a clock
of a fit's epochs."""

import contextlib
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@contextlib.contextmanager
def quiet_fd2():
    """Points file descriptor 2 at /dev/null: C++ log lines bypass Python's sys.stderr."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with quiet_fd2():  # TensorFlow 2.21's absl start-up lines ignore TF_CPP_MIN_LOG_LEVEL
    import keras


class EpochClock(keras.callbacks.Callback):
    """Epoch times, start to next start (last: to the end of training), so that every
    callback's on_epoch_end work counts, wherever it sits in the list."""

    def on_train_begin(self, logs=None):
        self.marks = []

    def on_epoch_begin(self, epoch, logs=None):
        self.marks.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.marks.append(time.perf_counter())

    def epoch_times(self):
        return [b - a for a, b in zip(self.marks, self.marks[1:])][1:]  # epoch 0 also traces graphs
