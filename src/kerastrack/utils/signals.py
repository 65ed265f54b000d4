"""Signal handling shared by the pipeline, the sweep and the tracking package (which must not
import the pipeline): SIGTERM ends a run like Ctrl-C, writes that must not be left half
done are never cut short, and an interruption carries what became of the run."""

import contextlib
import signal
import threading

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
    for sig in _SIGNALS:
        signal.signal(sig, ignore)
    raise KeyboardInterrupt(f"signal {signum}")


def _main_thread():
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def _handling(handler):
    """SIGINT and SIGTERM go to ``handler`` for the duration (main thread only: Python
    delivers signals there, and other threads may not install handlers)."""
    if not _main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in _SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def sigterm_as_interrupt():
    """For the duration of a run: SIGTERM (kill, schedulers) raises KeyboardInterrupt, as
    Ctrl-C does, once; later ones are ignored until the run is closed."""
    return _handling(interrupt_once)


def signals_held():
    """Ignores SIGINT and SIGTERM for the duration: for closing a run that is already
    ending because of an error or an interruption."""
    return _handling(ignore)


@contextlib.contextmanager
def signals_deferred():
    """Holds SIGINT and SIGTERM back for the duration and raises KeyboardInterrupt after it
    if one came (main thread only): for work that must complete or not start (closing a
    finished run, creating a store), without losing the user's interrupt."""
    received = []
    with _handling(lambda signum, frame: received.append(signum)):
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
        self._previous = None
        self._received = []

    def hold(self):
        if self._previous is not None or not _main_thread():
            return
        self._received = []
        self._previous = {sig: signal.signal(sig, self._keep) for sig in _SIGNALS}

    def _keep(self, signum, frame):
        self._received.append(signum)

    def release(self):
        """Ends the span; raises what the handler in place raises for a signal held in it."""
        if self._previous is None:
            return
        previous, self._previous = self._previous, None
        for sig, old in previous.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)
        if self._received:
            # The handler runs inside raise_signal (CPython checks for signals before it
            # returns), so its KeyboardInterrupt is raised here, on the training thread.
            signal.raise_signal(self._received[0])
