"""Hydra, in this process, as the ``kerastrack`` command runs it: for the Python API.

A call composes the same config, runs the same Hydra callbacks, sweepers and launchers and
writes the same record as the command line, through Hydra's own ``hydra.main`` with the
command line it would have read (``kerastrack [-m] [--config-dir DIR] OVERRIDES``). Hydra
has no public call that runs an app with its callbacks and launchers from Python
(``hydra.compose`` only composes), so this module hands ``hydra.main`` that command line and
puts back what Hydra changes in a process that lives on (a notebook's kernel): ``sys.argv``,
the signal handlers, the root logger's handlers, the environment.

Errors come back as exceptions instead of an exit: ``HYDRA_FULL_ERROR=1`` makes Hydra
re-raise what it would print, and Hydra's own (an unknown option, a mistyped key) become
one ``ConfigError`` with a one-line message.
"""

import contextlib
import logging
import os
import re
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.errors import HydraException
from hydra.types import RunMode

from kerastrack.config.hydra_errors import one_line
from kerastrack.errors import ConfigError
from kerastrack.sweeps.callback import LAUNCHED, report_interrupted
from kerastrack.sweeps.job import LAUNCHER_PID, job
from kerastrack.utils import startup
from kerastrack.utils.secrets import mask_text

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Values Hydra's override grammar reads as they are; anything else is quoted.
_PLAIN = re.compile(r"[\w.\-+/:@]+")


@dataclass
class Opened:
    """What a single run's call recorded, as the pipeline reports it when the run opens."""

    run_id: str | None = None
    tracking_uri: str | None = None
    output_dir: Path | None = None


_OPENED = []  # the run each call in this process opened (its task function runs here)


def overrides(positional, values, sweep):
    """The command line's overrides: ``positional`` as given, then ``values`` (key -> value)
    written in Hydra's grammar; in a sweep a list, tuple or range is the values to sweep.

    Raises:
        ConfigError: An override that is not a string.
    """
    for item in positional:
        if not isinstance(item, str):
            raise ConfigError(
                f"overrides are strings such as 'optimizer=adam' (or keyword arguments: optimizer='adam'). "
                f"Received: {item!r}"
            )
    written = []
    for key, value in values.items():
        if sweep and isinstance(value, list | tuple | range):
            written.append(f"{key}={','.join(_value(v) for v in value)}")
        else:
            written.append(f"{key}={_value(value)}")
    return [*positional, *written]


def _value(value):
    """One value as Hydra's override grammar reads it back as the same value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        return f"[{','.join(_value(v) for v in value)}]"
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_hydra(args, config_dir=None, multirun=False):
    """Runs the command line ``args`` with Hydra in this process.

    Args:
        args: The overrides.
        config_dir: A folder of the user's own config groups (``--config-dir``), or None.
        multirun: A sweep (``-m``).

    Returns:
        For a single run, its ``Opened`` (no run id when none opened: a finished sweep job
        skipped); for a sweep, the ``LAUNCHED`` entry of its parent, or None offline.

    Raises:
        ConfigError: A bad input (Hydra's own errors included), before anything is recorded.
        KeyboardInterrupt: Ctrl-C: the run (or the sweep's runs) closed KILLED, said in one line.
    """
    command = ["kerastrack", *(["-m"] if multirun else [])]
    if config_dir is not None:
        if not Path(config_dir).is_dir():
            raise ConfigError(
                f"config_dir is a folder of config groups (conf/model/my_net.yaml, ...); there is no "
                f"folder {Path(config_dir).resolve()}. Received: config_dir={config_dir}"
            )
        command += ["--config-dir", str(Path(config_dir).resolve())]
    startup.quiet_tensorflow()  # as the command: before TensorFlow is first imported
    launched = len(LAUNCHED)
    _OPENED.clear()
    with _process_kept([*command, *args]):
        try:
            hydra.main(version_base="1.3", config_path="pkg://kerastrack.conf", config_name="train")(_task)()
        except HydraException as exc:
            raise ConfigError(mask_text(one_line(exc, args))) from None
        except KeyboardInterrupt:  # composing the config, or between a sweep's jobs
            if not report_interrupted():
                print("Interrupted before the run opened: no run was recorded.", file=sys.stderr)
            raise
        except SystemExit as exc:
            _sweep_exit(exc, multirun and len(LAUNCHED) > launched)
    if multirun:
        return LAUNCHED[-1] if len(LAUNCHED) > launched else None
    opened = _OPENED.pop() if _OPENED else Opened()
    if isinstance(opened, BaseException):
        raise opened
    return opened


def _sweep_exit(exc, opened_parent):
    """A sweep's end that the command line would exit on. An interrupt comes back as one; a
    sweep refused before it opened its parent run (a bad value of its own) is a ConfigError;
    a sweep with failed or skipped jobs is left to be read, its line printed as the
    command prints it."""
    if exc.code in (None, 0):
        return
    if exc.code == 130:
        raise KeyboardInterrupt("the sweep stopped") from None
    message = mask_text(str(exc.code)).removeprefix("Error: ")
    if not opened_parent:
        raise ConfigError(message) from None
    if isinstance(exc.code, str):
        print(f"Error: {message}", file=sys.stderr)


def _task(cfg):
    """The job, as the command's: one run, or a sweep's job (``kerastrack.sweeps.job``).
    A single run's end is kept for ``run_hydra``, also when it raises: Hydra would print
    "Error executing job" for it before re-raising."""
    with startup.loading_tensorflow():
        from kerastrack.pipeline import train

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return job(train, cfg)
    opened = Opened()

    def record(**where):
        for key, value in where.items():
            setattr(opened, key, value)

    try:
        best = train(cfg, opened=record)
    except BaseException as exc:  # noqa: BLE001 - given to the caller as it is, with the run it ended
        exc.opened = opened
        _OPENED.append(exc)
        return None
    _OPENED.append(opened)
    return best


@contextlib.contextmanager
def _process_kept(argv):
    """``sys.argv`` is ``argv`` for the duration (Hydra reads it, and the lines that say how
    to continue a run name the command); then what Hydra and a sweep changed in the process
    is put back."""
    saved_argv, saved_env = sys.argv, {k: os.environ.get(k) for k in ("HYDRA_FULL_ERROR", LAUNCHER_PID)}
    saved_signals = {sig: signal.getsignal(sig) for sig in _SIGNALS}
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    sys.argv = argv
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra re-raises instead of printing and exiting
    try:
        yield
    finally:
        sys.argv = saved_argv
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        with contextlib.suppress(ValueError):  # off the main thread no handler was installed
            for sig, handler in saved_signals.items():
                signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for handler in root.handlers:
            if handler not in saved_handlers:  # the run's train.log stays closed, not appended to later
                handler.close()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
