"""Sends what a run could not send to its tracking server: ``python -m kerastrack.upload DIR...``.

DIR is a run's output dir (or its ``mlflow-spool`` dir). The spooled params, metrics,
tags, artifacts and final status go into the same run on the server (an offline run is
created there first), in order, final status last. Running it again sends nothing twice.
"""

import argparse
import sys

from kerastrack.errors import ConfigError
from kerastrack.secrets import mask_text


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m kerastrack.upload", description=__doc__.split("\n")[0])
    parser.add_argument("dirs", nargs="+", metavar="DIR", help="a run's output dir or its mlflow-spool dir")
    parser.add_argument("--tracking-uri", help="the server; default: the one the run was logging to")
    args = parser.parse_args(argv)
    from kerastrack.tracking.spool import upload_dir

    failed = 0
    for directory in args.dirs:
        try:
            upload_dir(directory, args.tracking_uri)
        except ConfigError as exc:
            print(f"Error: {mask_text(str(exc))}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
