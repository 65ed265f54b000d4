"""``DirCheck``, the Hydra callback (``hydra.callbacks.dir_check`` in conf/train.yaml) that
refuses a run or sweep dir that cannot be written."""

from hydra.experimental.callback import Callback

from kerastrack.utils.files import writable_dir


class DirCheck(Callback):
    """A Hydra callback that refuses a run or sweep dir that cannot be written.

    Hydra creates the dir itself and, when it cannot, ends with a stack trace; this says it
    in one line first, before anything is recorded.
    """

    def on_run_start(self, config, **kwargs):
        _check_writable("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config, **kwargs):
        _check_writable("hydra.sweep.dir", config.hydra.sweep.dir)


def _check_writable(key, path):
    try:
        writable_dir(path)  # Hydra creates it next anyway
    except OSError as exc:
        raise SystemExit(
            f"Error: {key} cannot be written ({exc.strerror or exc}): the run's outputs, logs and "
            f"training state go there. Choose another, e.g. {key}=outputs/mine. Received: {key}={path}"
        ) from None
