"""Signal handling for every layer above (the pipeline, the sweep's jobs and launcher, the
tracking package, the Keras callbacks, the UI): SIGTERM ends a run like Ctrl-C, writes that
must not be left half done are never cut short, an interruption carries what became of the
run, and ``handlers`` is the one place that installs handlers and puts the previous ones back.

train.py does not use this module: its own SIGTERM handler goes in on its first line, before
kerastrack (and the libraries it imports) can be imported.
"""

import contextlib
import os
import signal
import sys
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


NOTHING_RECORDED = "Interrupted before the run opened: no run was recorded."


def command():
    """How the user starts kerastrack, for the lines that say how to go on: ``kerastrack``
    when the installed command runs, else the checkout's ``python train.py``."""
    return "kerastrack" if os.path.basename(sys.argv[0]) == "kerastrack" else "python train.py"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, with what became of the run, for the one line train.py prints.

    Args:
        status: The run's final status (KILLED, or FINISHED when the signal came while the
            run was closing), or None when no run was recorded.
        run_id: The MLflow run id, or None.
        output_dir: The run's output dir (what ``resume=`` takes), or None.
        epochs: Finished epochs on record.
    """

    def __init__(self, status=None, run_id=None, output_dir=None, epochs=0):
        super().__init__(status or "interrupted before the run opened")
        self.status = status
        self.run_id = run_id
        self.output_dir = output_dir
        self.epochs = epochs


def interrupted_line(exc, resume_hint=True):
    """What became of the run, in one line, from an interrupt (``Interrupted`` or a plain
    KeyboardInterrupt, which says nothing of a run).

    Args:
        exc: The interrupt.
        resume_hint: Add the command that continues the run (a sweep's job has its own: the
            sweep's, said once by the launching process).
    """
    status, run_id, output_dir = (getattr(exc, name, None) for name in ("status", "run_id", "output_dir"))
    run = f"run {run_id}" if run_id else "the run (tracking=none: nothing recorded)"
    if status == "FINISHED":
        return f"Interrupted while the run closed: {run} FINISHED with everything recorded."
    if status is None:
        return NOTHING_RECORDED
    hint = f" Continue it with: {command()} resume={output_dir}" if resume_hint and output_dir else ""
    return f"Interrupted: {run} is {status}, with every finished epoch.{hint}"


def interrupted(exc):
    """Whether ``exc`` is an interrupt, or an error an interrupt caused: Ctrl-C lands
    anywhere, and TensorFlow turns one raised inside its device scope into "RuntimeError:
    Exiting device scope without proper scope nesting" (the interrupt is its context), or
    into errors of its own that do not carry it at all; so a signal received during the
    run (see ``sigterm_as_interrupt``) counts too."""
    if _received:
        return True
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


_received = []  # the signals received during the current run


def forget_interrupts():
    """Starts a run with no interrupt received (a process may train several runs)."""
    _received.clear()


def ignore(signum, frame):
    """Ignores a signal. A Python handler rather than SIG_IGN: a signal that arrived just
    before the switch is then dropped quietly (with SIG_IGN, Python prints "OSError: Signal
    15 ignored due to race condition" with a traceback)."""


def interrupt_once(signum, frame):
    """Raises KeyboardInterrupt for the first Ctrl-C or SIGTERM and ignores the ones after
    it: a second signal (a terminal's Ctrl-C reaches every process of the group, and a
    sweep's launcher also sends SIGTERM) must not cut short the closing of the run."""
    _received.append(signum)
    install(dict.fromkeys(_SIGNALS, ignore))
    raise KeyboardInterrupt(f"signal {signum}")


def _main_thread():
    return threading.current_thread() is threading.main_thread()


def install(wanted):
    """Puts handlers in place, for good (main thread only: Python delivers signals there,
    and other threads may not install handlers; elsewhere nothing changes).

    Args:
        wanted: ``{signal: handler}``; a handler is a function, ``signal.SIG_DFL`` or
            ``signal.SIG_IGN``.

    Returns:
        ``{signal: handler}``: the ones they replaced (``signal.SIG_DFL`` for a handler not
        installed from Python, which ``signal.signal`` reports as None and cannot take back);
        empty off the main thread.
    """
    if not _main_thread():
        return {}
    previous = {}
    for sig, handler in wanted.items():
        old = signal.signal(sig, handler)
        previous[sig] = signal.SIG_DFL if old is None else old
    return previous


@contextlib.contextmanager
def handlers(wanted):
    """Installs ``wanted`` (see ``install``) for the duration, and puts the previous
    handlers back at its end, also when the body raises.

    Args:
        wanted: ``{signal: handler}``.

    Yields:
        ``{signal: handler}``, empty: what the body puts in it is left in place at the end
        instead of the previous handler (a job's worker ends deaf to a late SIGTERM), with
        no moment in between under the previous one.
    """
    previous = install(wanted)
    leave = {}
    try:
        yield leave
    finally:
        install({sig: leave.get(sig, old) for sig, old in previous.items()})


def sigterm_as_interrupt():
    """For the duration of a run: SIGTERM (kill, schedulers) raises KeyboardInterrupt, as
    Ctrl-C does, once; later ones are ignored until the run is closed."""
    return handlers(dict.fromkeys(_SIGNALS, interrupt_once))


def signals_held():
    """Ignores SIGINT and SIGTERM for the duration: for closing a run that is already
    ending because of an error or an interruption."""
    return handlers(dict.fromkeys(_SIGNALS, ignore))


@contextlib.contextmanager
def signals_deferred():
    """Holds SIGINT and SIGTERM back for the duration and raises KeyboardInterrupt after it
    if one came (main thread only): for work that must complete or not start (closing a
    finished run, creating a store), without losing the user's interrupt."""
    received = []
    with handlers(dict.fromkeys(_SIGNALS, lambda signum, frame: received.append(signum))):
        yield
    if received:
        raise KeyboardInterrupt(f"signal {received[0]}")


class Held:
    """Holds SIGINT and SIGTERM back from ``hold()`` to ``release()`` (main thread only), then
    hands the first one to the handler in place again, as if it came then: for a span that
    opens in one Keras callback and closes in another (an epoch's end, whose record and
    saved state must go together). Every signal in the span is held, so that the two that a
    sweep's job gets at once (the terminal's Ctrl-C, the launcher's SIGTERM) do not cut it.
    """

    def __init__(self):
        self._span = None
        self._received = []

    def hold(self):
        if self._span is not None or not _main_thread():
            return
        self._received = []
        self._span = contextlib.ExitStack()
        self._span.enter_context(handlers(dict.fromkeys(_SIGNALS, self._keep)))

    def _keep(self, signum, frame):
        self._received.append(signum)

    def release(self):
        """Ends the span; raises what the handler in place raises for a signal held in it."""
        if self._span is None:
            return
        span, self._span = self._span, None
        span.close()
        if self._received:
            # The handler runs inside raise_signal (CPython checks for signals before it
            # returns), so its KeyboardInterrupt is raised here, on the training thread.
            signal.raise_signal(self._received[0])
