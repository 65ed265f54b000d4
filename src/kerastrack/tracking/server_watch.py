"""Runs a command in this process's group and ends the whole group when the owner dies.

``python -I watchdog.py COMMAND...``, started by ``server.MlflowServer`` as the leader of a
new session, with a pipe on stdin whose other end only the owner (``python -m
kerastrack.ui``, a test) holds. The server runs in a process group of its own, so that it
stops as one and a terminal's Ctrl-C does not reach it half-way; but then a ``kill -9`` of
the owner would leave it serving, with no one to stop it. The kernel closes a dead
process's end of the pipe whatever killed it, so the end of file on stdin is the one sign
that always comes: the watchdog then stops the group as ``MlflowServer.stop`` does.
(prctl's PR_SET_PDEATHSIG would reach the server's first process only, not its workers,
and fires when the parent *thread* that started it ends.)

Run by path and isolated (``-I``): it imports only the standard library (and
``kerastrack/utils/signals.py``, which imports only the standard library too, by its path),
so it starts in milliseconds. It exits with the server's exit code when the server exits on
its own.
"""

import importlib.util
import os
import select
import signal
import subprocess
import sys
from pathlib import Path

GRACE_S = 10  # the server's time to stop on SIGTERM before the group is killed


def _end_group(server):
    """SIGTERM to the group (this process ignores it), then SIGKILL to what is left, this one included."""
    os.killpg(0, signal.SIGTERM)
    try:
        server.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    os.killpg(0, signal.SIGKILL)  # workers that outlive the server's first process


def _signals():
    """kerastrack.utils.signals, loaded from its file: importing it by name would import
    kerastrack first (its config checks, OmegaConf: ~0.2 s instead of ~0.02 s), and under
    ``-I`` from whichever checkout the environment installed."""
    spec = importlib.util.spec_from_file_location(
        "kerastrack_server_watch_signals", Path(__file__).resolve().parents[1] / "utils" / "signals.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(command):
    signals = _signals()
    # A handler, not SIG_IGN: an ignored signal would stay ignored in the server after exec.
    # The owner's stop sends SIGTERM to the whole group; this process waits for the server.
    with signals.handlers({signal.SIGTERM: signals.ignore}):
        server = subprocess.Popen(command, stdin=subprocess.DEVNULL)  # in this process group
        while server.poll() is None:
            ready, _, _ = select.select([0], [], [], 0.5)
            if ready and not os.read(0, 512):  # end of file: the owner is gone
                _end_group(server)
    return server.returncode if server.returncode >= 0 else 128 - server.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
