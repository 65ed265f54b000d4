"""``python -m kerastrack.ui``: the MLflow UI on the project's store, one command away.

It runs ``mlflow server`` (through ``kerastrack.tracking.server.MlflowServer``: one worker,
no job runner, in its own process group, led by a watchdog that ends it if this process is
killed with kill -9) on the store ``python train.py`` records into,
on 127.0.0.1 unless ``--host`` says otherwise, and stops the server's whole process group
on Ctrl-C, SIGTERM or SIGHUP. The server runs in its own session so that it starts and
stops as one group; the terminal's signals therefore reach only this process, which
forwards them by stopping the group.
"""

import argparse
import contextlib
import ipaddress
import os
import signal
import socket
import sys
import tempfile
import webbrowser
from pathlib import Path
from urllib.parse import urlparse

from kerastrack.errors import ConfigError
from kerastrack.tracking.outbox import check_server
from kerastrack.tracking.query import open_client
from kerastrack.tracking.server import LOOPBACK, MlflowServer
from kerastrack.tracking.store import resolve_tracking_uri, sqlite_path
from kerastrack.tracking.views import find_run, latest_sweep, run_url, sweep_view, ui_link
from kerastrack.utils.secrets import mask_text, mask_uri
from kerastrack.utils.signals import handlers, ignore

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop(Exception):
    """A stop signal arrived."""


def store_uri(backend_store_uri=None, cwd=None):
    """The store to show: ``backend_store_uri``, else what ``python train.py`` in ``cwd`` uses.

    Returns:
        The absolute store URI, and for a tracking server (http/https) None.

    Raises:
        ConfigError: A local store that does not exist (starting the server on it would
            create an empty one and show nothing).
    """
    uri = resolve_tracking_uri(backend_store_uri, base_dir=cwd or Path.cwd())
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        return None
    path = sqlite_path(uri) if uri.startswith("sqlite:") else uri if "://" not in uri else None
    if path is not None and not Path(path).exists():
        raise ConfigError(
            f"there is no MLflow store at {path}: run `python train.py` in this directory first, "
            f"or pass --backend-store-uri (or set MLFLOW_TRACKING_URI). Received: backend_store_uri={uri}"
        )
    return uri


def check_port(host, port):
    """Fails early, naming the port, when something already listens there."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        # As the server will: connections of a server just stopped (TIME_WAIT) do not count.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror}); is a UI already running? "
                f"Pick another port with --port. Received: port={port}"
            ) from None


def port_number(text):
    """argparse's ``type`` of --port: a TCP port, 1 to 65535."""
    with contextlib.suppress(ValueError):
        if 1 <= int(text) <= 65535:
            return int(text)
    raise argparse.ArgumentTypeError(f"must be an integer in [1, 65535]. Received: port={text}")


@contextlib.contextmanager
def claim_port(port):
    """Holds the port for this UI from before its check until its server has stopped.

    The check alone lets two UIs started together both find the port free; the one whose
    server then loses the race would report the other's server as its own. The lock is
    the kernel's (flock), so a UI killed with kill -9 leaves it free.

    Raises:
        ConfigError: Another ``python -m kerastrack.ui`` holds it.
    """
    from filelock import FileLock, Timeout

    lock = FileLock(Path(tempfile.gettempdir()) / f"kerastrack-ui-{port}.lock")
    try:
        lock.acquire(timeout=0)
    except PermissionError:  # another user's lock file: their UI, if it runs, holds the port itself
        yield
        return
    except Timeout:
        raise ConfigError(
            f"another python -m kerastrack.ui is starting or running on port {port} (it holds "
            f"{lock.lock_file}); use that one, or pick another port with --port. "
            f"Received: port={port}"
        ) from None
    try:
        yield
    finally:
        lock.release()


def is_loopback(host):
    if host == "localhost":
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


def serve(uri, host=LOOPBACK, port=5000, out=sys.stdout, view=None, open_browser=False):
    """Runs the UI until a stop signal, then stops the server's whole process group.

    Args:
        uri: The store.
        host: The interface to bind.
        port: The port to listen on.
        out: Where the URL lines go.
        view: ``(what, fragment)``: the view to print the URL of (see ``landing``), or None.
        open_browser: Open the view's URL (or the UI's) in the default web browser.

    Returns:
        0 after a stop signal; 1 when the server failed to start or exited on its own.
    """
    # The store's own directory: the server's artifact destination and working directory,
    # so that nothing it writes lands in the caller's current directory.
    local = sqlite_path(uri).parent if sqlite_path(uri) else None
    log = tempfile.NamedTemporaryFile(prefix="kerastrack-ui-", suffix=".log", delete=False)  # noqa: SIM115
    log.close()
    server = MlflowServer(
        uri,
        artifacts_destination=local / "mlartifacts" if local else None,
        host=host,
        port=port,
        cwd=local,
        log_file=log.name,
    )

    def stop(signum, frame):
        raise _Stop(signum)

    code = 1
    # Outside, ignored: a second Ctrl-C must not interrupt the stop and leave workers behind;
    # the handlers before the UI come back after the stop, also when the stop raises.
    with handlers(dict.fromkeys(STOP_SIGNALS, ignore)):
        try:
            with handlers(dict.fromkeys(STOP_SIGNALS, stop)):
                print(f"Starting the MLflow UI on {mask_uri(uri)} ...", file=out, flush=True)
                server.start()
                url = server.url
                if view:
                    url = f"{server.url}/{view[1]}"
                    print(f"{view[0]}: {url}", file=out, flush=True)
                if open_browser:
                    webbrowser.open(url)
                print(f"MLflow UI: {server.url}  (Ctrl-C stops it)", file=out, flush=True)
                returncode = server.process.wait()
            print(f"Error: mlflow server exited with code {returncode}:\n{mask_text(_tail(log.name))}", file=sys.stderr)
        except (RuntimeError, TimeoutError) as exc:
            print(f"Error: {mask_text(str(exc))}\n{mask_text(_tail(log.name))}", file=sys.stderr)
        except (_Stop, KeyboardInterrupt):
            code = 0
        finally:
            server.stop()
            if code == 0:
                os.unlink(log.name)
    if code == 0:
        print("MLflow UI stopped.", file=out, flush=True)
    return code


def landing(uri, sweep=None, run=None):
    """What the UI opens on: a run's charts, a sweep's runs side by side, or by default the
    latest sweep's (the latest run's when there is no sweep), saved as a view of the store.

    Returns:
        ``(what, fragment)``: a line's start naming what the view shows, and its URL
        fragment; None when the store has no run to show.

    Raises:
        ConfigError: ``--sweep`` or ``--run`` names no such sweep or run.
    """
    client = open_client(uri)
    if run or sweep:
        wanted = run or sweep
        found = find_run(client, wanted)
        if found is None or (sweep and found.data.tags.get("sweep.role") != "parent"):
            what = "run" if run else "sweep (a sweep's parent run id, printed when the sweep ended)"
            raise ConfigError(
                f"there is no {what} {wanted} in {mask_uri(uri)}. Received: {'run' if run else 'sweep'}={wanted}"
            )
        if run:
            return f"Run '{found.info.run_name}'", run_url(found)
        return _sweep_landing(client, found)
    for experiment in client.search_experiments(order_by=["last_update_time DESC"]):
        parent = latest_sweep(client, experiment.experiment_id)
        if parent is not None:
            return _sweep_landing(client, parent)
        latest = client.search_runs([experiment.experiment_id], max_results=1, order_by=["attributes.start_time DESC"])
        if latest:
            return f"The latest run, '{latest[0].info.run_name}'", run_url(latest[0])
    return None


def _sweep_landing(client, parent):
    return f"Sweep '{parent.info.run_name}', its runs side by side", sweep_view(client, parent)


def _tail(path, lines=20):
    text = Path(path).read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:]) + f"\n(full server log: {path})"


def main(argv=None):
    """``python -m kerastrack.ui``.

    Returns:
        The exit code: 0 after Ctrl-C/SIGTERM (or when the store is a tracking server
        whose UI is already running), 1 when the server failed, 2 for bad input.
    """
    parser = argparse.ArgumentParser(
        prog="python -m kerastrack.ui",
        description="Start the MLflow UI on the store `python train.py` records into; Ctrl-C stops it.",
    )
    parser.add_argument("--port", type=port_number, default=5000, help="port to listen on, 1 to 65535 (default 5000)")
    parser.add_argument(
        "--host",
        default=LOOPBACK,
        help="interface to bind (default 127.0.0.1; anything else exposes the store to the network)",
    )
    parser.add_argument(
        "--backend-store-uri",
        default=None,
        help="the store (default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db here)",
    )
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument(
        "--sweep",
        metavar="ID",
        help="show this sweep's runs side by side (its parent run id; default: the latest sweep)",
    )
    shown.add_argument("--run", metavar="ID", help="show this run's charts")
    parser.add_argument("--open", action="store_true", help="open the URL in the default web browser")
    args = parser.parse_args(argv)
    try:
        uri = store_uri(args.backend_store_uri)
        if uri is None:  # a tracking server: its UI is running already
            server = resolve_tracking_uri(args.backend_store_uri)
            check_server(server, key="backend_store_uri")
            view = landing(server, args.sweep, args.run)
            url = ui_link(server, view[1] if view else "", "")
            print(f"{view[0] if view else 'The tracking server'}: {url}")
            if args.open:
                webbrowser.open(url)
            return 0
        view = landing(uri, args.sweep, args.run)
        with claim_port(args.port):  # until the server has stopped
            check_port(args.host, args.port)
            if not is_loopback(args.host):
                print(
                    f"Warning: --host {args.host} makes the UI, and every run in {mask_uri(uri)}, reachable from "
                    "the network without authentication.",
                    file=sys.stderr,
                )
            return serve(uri, args.host, args.port, view=view, open_browser=args.open)
    except ConfigError as exc:
        print(f"Error: {mask_text(str(exc))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
