"""Signal handling shared by the pipeline and the tracking package (which must not import
the pipeline): SIGTERM ends a run like Ctrl-C, and closing a run is never cut short."""

import contextlib
import signal
import threading


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (kill, schedulers) raises KeyboardInterrupt, as Ctrl-C does (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def install_sigterm_as_interrupt():
    """Like ``sigterm_as_interrupt`` for the rest of the process (a sweep's launcher)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


@contextlib.contextmanager
def signals_held():
    """Ignores SIGINT and SIGTERM for the duration (main thread only): for writes that
    must not be left half done (closing a run, saving the training state)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
