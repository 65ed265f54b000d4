"""Sends what a run could not send to its tracking server: ``python -m kerastrack.upload DIR...``.

DIR is a run's output dir (or its ``mlflow-spool`` dir), or an offline sweep's dir (its
parent run and every job's run, under it). The spooled params, metrics,
tags, artifacts and final status go into the same run on the server (an offline run is
created there first), in order, final status last. Running it again sends nothing twice.
"""

import argparse
import sys

from kerastrack.errors import ConfigError
from kerastrack.tracking.outbox import connect, short_error, unreachable
from kerastrack.tracking.spool import SPOOL_DIRNAME, Spool, sweep_spools, upload
from kerastrack.tracking.store import open_store
from kerastrack.utils.secrets import drop_password, is_masked, mask_text, mask_uri


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kerastrack.upload", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="a run's output dir or its mlflow-spool dir")
    parser.add_argument("--tracking-uri", help="the server; default: the one the run was logging to")
    args = parser.parse_args(argv)
    failed = 0
    # An offline sweep's dir: its parent run, then every job's run under it.
    for directory in [d for given in args.dirs for d in sweep_spools(given)]:
        try:
            upload_dir(directory, args.tracking_uri)
        except ConfigError as exc:
            print(f"Error: {mask_text(str(exc))}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def upload_dir(path, tracking_uri=None, log_progress=print):
    """Uploads the spool in ``path`` (a run's output dir or its spool dir).

    The spool keeps the run's URI without its password: the credentials then come from
    the environment (MLFLOW_TRACKING_USERNAME/PASSWORD, PGPASSWORD, ...), or ``tracking_uri``.

    Args:
        path: The directory.
        tracking_uri: The server; None: the one the run was logging to.
        log_progress: Called with each line to show the user.

    Returns:
        The run id on the server, or None when the spool held nothing left to send.

    Raises:
        ConfigError: No spool there, or the server is unreachable (nothing is lost: what
            was sent is marked, and running it again sends the rest).
    """
    spool = Spool(path)
    if not spool.exists():
        raise ConfigError(
            f"{path} holds no MLflow spool (no {SPOOL_DIRNAME}/meta.json): give a run's output dir "
            f"or its {SPOOL_DIRNAME} dir. Received: path={path}"
        )
    meta, state = spool.meta(), spool.state()
    uri = tracking_uri or meta["tracking_uri"]
    if is_masked(uri):  # the masked password is no password: the environment gives the real one
        uri = drop_password(uri)
    shown = mask_uri(uri)
    if not spool.pending():
        log_progress(f"{spool.directory}: nothing left to upload (run {state['run_id'] or meta['run_id']}, {shown})")
        return None
    connect(
        uri,
        key="tracking_uri",
        credentials=(
            "the spool keeps no password: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or "
            "MLFLOW_TRACKING_TOKEN) in the environment, or pass --tracking-uri http://USER:PASSWORD@host:port."
        ),
    )
    client = open_store(uri)
    try:
        run_id, _ = upload(spool, client, log_progress)
    except Exception as exc:
        if not unreachable(exc):
            raise
        raise ConfigError(
            f"the upload to {shown} stopped, the server went away ({short_error(exc)}); what was sent "
            f"is marked: run the command again to send the rest. Received: path={path}"
        ) from None
    log_progress(f"{spool.directory}: everything uploaded to run {run_id} at {shown}")
    return run_id


if __name__ == "__main__":
    sys.exit(main())
