"""Callbacks that tests plug in through the config (`+callbacks.x._target_=tests.support.X`)."""

import os
import signal

import keras


class SignalAtEpoch(keras.callbacks.Callback):
    """Sends this process a signal at the end of an epoch, as `kill` or a scheduler would.

    Args:
        epoch: The epoch (0-based) after which to send it.
        signum: The signal number (SIGTERM by default).
        once: A file path: send the signal only if it does not exist yet, and create it
            (a resumed run, which has this callback in its config, is not stopped again).
    """

    def __init__(self, epoch=1, signum=int(signal.SIGTERM), once=None):
        super().__init__()
        self.epoch = epoch
        self.signum = signum
        self.once = once

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            if self.once:
                if os.path.exists(self.once):
                    return
                open(self.once, "w").close()
            os.kill(os.getpid(), self.signum)


class FailAtEpoch(keras.callbacks.Callback):
    """Raises an error at the end of an epoch, like a bug in user code would."""

    def __init__(self, epoch=0):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise RuntimeError(f"boom at epoch {epoch}")


class StopServerAtEpoch(keras.callbacks.Callback):
    """Stops a tracking server (its whole process group) at the end of an epoch, as an
    outage would, and waits until its port refuses connections.

    Args:
        pgid: The server's process group (MlflowServer.process.pid).
        port: Its port on 127.0.0.1.
        epoch: The epoch (0-based) after which to stop it.
    """

    def __init__(self, pgid, port, epoch=1):
        super().__init__()
        self.pgid = pgid
        self.port = port
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        import socket
        import time

        if epoch != self.epoch:
            return
        os.killpg(self.pgid, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) != 0:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"the server on port {self.port} still answers")


def user_iris(**kwargs):
    """A user's own data function: its samples' shape is known only once it has loaded."""
    from kerastrack.data.sets import sklearn_set

    return sklearn_set(**kwargs)


class FillDiskAtEpoch(keras.callbacks.Callback):
    """Fills the disk of ``path`` at the end of an epoch, as another program would: every
    write after it fails with ENOSPC (No space left on device).

    Args:
        path: A file to grow until the disk is full; only if it does not exist yet (a
            resumed run, which has this callback in its config, does not fill it again).
        epoch: The epoch (0-based) after which to fill it.
    """

    def __init__(self, path, epoch=1):
        super().__init__()
        self.path = path
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch != self.epoch or os.path.exists(f"{self.path}.done"):
            return
        open(f"{self.path}.done", "w").close()
        chunk = b"\0" * (64 * 1024)
        with open(self.path, "ab", buffering=0) as f:
            try:
                while True:
                    f.write(chunk)
            except OSError:
                pass
            try:  # the last few bytes
                while True:
                    f.write(b"\0")
            except OSError:
                pass


class DeleteAtEpoch(keras.callbacks.Callback):
    """Deletes a directory (a run's output dir) at the end of an epoch, as a user's ``rm -rf``
    in another terminal would."""

    def __init__(self, path, epoch=1):
        super().__init__()
        self.path = path
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        import shutil

        if epoch == self.epoch:
            shutil.rmtree(self.path, ignore_errors=True)
