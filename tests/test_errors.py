"""The walk along an error's causes (kerastrack.errors.chain) and the questions asked with it."""

import errno
import threading

import pytest

from kerastrack.errors import ConfigError, chain, disk_full
from kerastrack.tracking.outbox import check_server, unreachable


def raised(error, cause=None):
    """``error`` as raised ``from cause`` inside an ``except`` (so also with a context)."""
    try:
        try:
            raise KeyError("handled")
        except KeyError:
            raise error from cause
    except Exception as exc:  # noqa: BLE001 - the test builds the chain
        return exc


def looped():
    """Two errors, each the cause of the other (an error raised again from one it caused)."""
    outer, inner = RuntimeError("outer"), ValueError("inner")
    outer.__cause__, inner.__cause__ = inner, outer
    return outer


def test_the_chain_is_the_error_then_its_causes_outermost_first_the_cause_before_the_context():
    cause = OSError("disk")
    error = raised(RuntimeError("wrapper"), cause)
    assert [str(e) for e in chain(error)] == ["wrapper", "disk"]  # __cause__ wins over __context__
    context = raised(RuntimeError("while handling"))
    assert [type(e) for e in chain(context)] == [RuntimeError, KeyError]
    assert list(chain(None)) == []


def test_a_chain_that_loops_gives_each_error_once():
    assert [str(e) for e in chain(looped())] == ["outer", "inner"]
    assert not disk_full(looped()) and not unreachable(looped())
    assert disk_full(raised(ConfigError("store"), OSError(errno.ENOSPC, "No space left on device")))


def test_a_server_check_that_fails_with_a_looping_chain_still_says_why(monkeypatch):
    # The check names the transport's reason by walking what MLflow's error wraps: on a loop
    # it must end, with the error's own text.
    import mlflow.utils.rest_utils

    def http_request(*args, **kwargs):
        raise looped()

    monkeypatch.setattr(mlflow.utils.rest_utils, "http_request", http_request)
    result = []

    def check():
        with pytest.raises(ConfigError) as error:
            check_server("http://127.0.0.1:1", timeout=1)
        result.append(str(error.value))

    walker = threading.Thread(target=check, daemon=True)  # a walk without an end would hang the suite
    walker.start()
    walker.join(10)
    assert not walker.is_alive(), "check_server walked the looping chain forever"
    assert result[0].startswith("the MLflow tracking server at http://127.0.0.1:1 is unreachable: outer.")
