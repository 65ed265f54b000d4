"""Errors that kerastrack reports to the user as one line, before any training."""


class ConfigError(ValueError):
    """A config value that cannot work, found before training starts.

    The message names the key, the received value and what is allowed, e.g.
    ``optimizer.learning_rate must be > 0. Received: optimizer.learning_rate=-1``.
    """


class RunHeld(ConfigError):
    """The run is being trained by another process right now (it holds the run's lock, or
    its recorded process is alive): refused. A sweep counts such a job as skipped, not
    failed: the run is RUNNING, and that other process's.

    Args:
        message: The one line, naming the run and the process.
        held: What is held, in a few words: ``run <id> (process <pid> on <host>)``.
    """

    def __init__(self, message, held):
        super().__init__(message)
        self.held = held


class DivergedError(RuntimeError):
    """The loss became NaN or infinite; the run is recorded as FAILED with diverged=true."""


class DataUnavailable(ConfigError):
    """A data set that is neither on this machine nor downloadable now (no network).

    Every job of a sweep would fail the same way, so a sweep stops at the first one. The
    message says how to get the data, e.g. ``apt-get install dataset-fashion-mnist``.
    """


class DiskFull(RuntimeError):
    """The disk filled up during a run: training stopped; the message says what is kept
    and how to continue once there is space."""


def is_pruned(exc):
    """Whether ``exc`` is a search's pruning of a trial (``optuna.TrialPruned``): the run
    ends KILLED with ``pruned=true``, not FAILED. Matched by name, so that Optuna stays an
    optional import."""
    return type(exc).__name__ == "TrialPruned"


def disk_full(exc):
    """Whether ``exc`` (or what caused it) is a full disk: ENOSPC from a write, or SQLite's
    "database or disk is full"."""
    import errno

    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
            return True
        if "disk is full" in str(exc) or "No space left on device" in str(exc):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def shown(value):
    """``value`` as an error's ``Received:`` shows it: a string that reads as a number, a
    boolean or null (``'1e-3'``, quoted on the command line or in YAML) is said to be one."""
    text = str(value).strip().lower()
    try:
        number = bool(text) and float(text) is not None
    except ValueError:
        number = False
    if isinstance(value, str) and (number or text in ("true", "false", "null", "none")):
        return f"'{value}' (a string: give it without quotes)"
    return value
