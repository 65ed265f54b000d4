"""Errors that kerastrack reports to the user as one line, before any training, and the
questions asked of an error (what caused it: ``chain``; a full disk, a pruned trial)."""


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


def chain(exc):
    """``exc`` and the errors behind it, outermost first: each one's ``__cause__`` (``raise ...
    from``), else its ``__context__`` (raised while handling it), as a traceback shows them.

    Written here because the standard library walks these links only to print them
    (``traceback.TracebackException`` keeps their text, not the errors). The walk stops at an
    error it has seen: a chain can loop (an error raised again from one it caused).

    Args:
        exc: An exception, or None (then nothing).

    Yields:
        Each exception of the chain, once.
    """
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def disk_full(exc):
    """Whether ``exc`` (or what caused it) is a full disk: ENOSPC from a write, or SQLite's
    "database or disk is full"."""
    import errno

    return any(
        (isinstance(e, OSError) and e.errno == errno.ENOSPC)
        or "disk is full" in str(e)
        or "No space left on device" in str(e)
        for e in chain(exc)
    )


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
