"""kerastrack.utils.signals, in-process: handlers installed for a span and put back after it."""

import signal
import sys
import threading

import pytest

from kerastrack.utils.signals import Held, handlers, ignore, install, signals_deferred

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@pytest.fixture
def calls():
    """A handler of this test's own in place for both signals; the calls it got."""
    got = []

    def mine(signum, frame):
        got.append(signum)

    before = install(dict.fromkeys(SIGNALS, mine))
    yield got
    install(before)


def _current():
    return {sig: signal.getsignal(sig) for sig in SIGNALS}


def test_the_previous_handlers_come_back_also_when_the_body_raises(calls):
    before = _current()
    with pytest.raises(ZeroDivisionError), handlers(dict.fromkeys(SIGNALS, ignore)):
        assert _current() == dict.fromkeys(SIGNALS, ignore)
        1 / 0  # noqa: B018
    assert _current() == before
    signal.raise_signal(signal.SIGTERM)
    assert calls == [signal.SIGTERM], "the handler before the span gets the signals after it"


def test_what_the_body_leaves_stays_in_place_and_the_rest_comes_back(calls):
    before = _current()
    with handlers(dict.fromkeys(SIGNALS, signal.SIG_IGN)) as leave:
        leave[signal.SIGTERM] = ignore
    assert _current() == {signal.SIGINT: before[signal.SIGINT], signal.SIGTERM: ignore}


def test_off_the_main_thread_nothing_is_installed_and_nothing_raises(calls):
    before = _current()
    seen = []

    def body():
        with handlers(dict.fromkeys(SIGNALS, ignore)):
            seen.append(_current())

    thread = threading.Thread(target=body)
    thread.start()
    thread.join()
    assert seen == [before]


def test_a_deferred_signal_is_raised_after_the_span(calls):
    with pytest.raises(KeyboardInterrupt, match="signal 15"), signals_deferred():
        signal.raise_signal(signal.SIGTERM)
        assert calls == [], "held back during the span"
    assert calls == []


def test_a_held_signal_reaches_the_handler_in_place_at_release(calls):
    held = Held()
    held.hold()
    signal.raise_signal(signal.SIGINT)
    assert calls == []
    held.release()
    assert calls == [signal.SIGINT]
    signal.raise_signal(signal.SIGTERM)
    assert calls == [signal.SIGINT, signal.SIGTERM], "after the span the handler is the one before it"


@pytest.mark.parametrize(
    "argv0, expected", [("/venv/bin/kerastrack", "kerastrack"), ("/repo/train.py", "python train.py")]
)
def test_the_lines_that_say_how_to_go_on_name_the_command_the_user_started(monkeypatch, argv0, expected):
    from kerastrack.utils import signals

    monkeypatch.setattr(sys, "argv", [argv0, "optimizer=adam"])
    assert signals.command() == expected
