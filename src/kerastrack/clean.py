"""``python -m kerastrack.clean`` (and ``kerastrack-clean``): deletes runs, their output dirs and,
on a local store, their artifacts.

``--sweep ID``, ``--older-than 7d`` and ``--status FAILED`` select runs (all the filters given
must hold); a sweep's parent takes its children with it. The command lists what it will delete
and what it keeps (a RUNNING run, and the parent of one, always stay), then asks; ``--yes`` skips
the question, and without a terminal to ask on it refuses. The runs go first (MLflow's trash, then
``mlflow gc`` on a local store), then the output dirs that no remaining run writes to.
"""

import argparse
import re
import shutil
import sys
from datetime import datetime
from pathlib import Path

from kerastrack.errors import ConfigError
from kerastrack.tracking import cleanup
from kerastrack.tracking.store import resolve_tracking_uri
from kerastrack.utils.secrets import mask_text, mask_uri

# Seconds per unit of --older-than. Written here: the standard library parses no "7d", and
# pandas' Timedelta takes a bare "7" as nanoseconds, which a user would not mean.
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


class _Parser(argparse.ArgumentParser):
    """argparse, its refusals as the house's one ``Error:`` line (exit code 2)."""

    def error(self, message):
        raise ConfigError(message)


def age(text):
    """``--older-than``'s seconds: a number and a unit, s, m, h, d or w (``7d``, ``12h``)."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([smhdw])", text.strip())
    if not found:
        raise argparse.ArgumentTypeError(
            f"must be a number and a unit (s, m, h, d or w), e.g. 7d or 12h. Received: older_than={text}"
        )
    return float(found[1]) * UNITS[found[2]]


def _parser():
    parser = _Parser(
        prog="kerastrack-clean",
        description="Delete runs (a sweep's parent with its runs), their output dirs and their artifacts, "
        "after listing them and asking. Filters combine: each given must hold. RUNNING runs always stay.",
    )
    parser.add_argument("--sweep", metavar="ID", help="a sweep's parent run id: the sweep's runs")
    parser.add_argument("--older-than", type=age, metavar="AGE", help="runs started longer ago, e.g. 7d, 12h, 2w")
    parser.add_argument("--status", metavar="STATUS", help=f"runs in this status: {', '.join(cleanup.STATUSES)}")
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this directory",
    )
    parser.add_argument("--yes", action="store_true", help="delete without asking")
    return parser


def main(argv=None, stdin=None):
    """``python -m kerastrack.clean``.

    Args:
        argv: Command-line arguments; None: ``sys.argv[1:]``.
        stdin: Where the answer is read from; None: ``sys.stdin``.

    Returns:
        The exit code: 0 (also when nothing matched, or the answer was no), 2 for bad input.
    """
    try:
        return _run(_parser().parse_args(argv), stdin or sys.stdin)
    except ConfigError as exc:
        print(f"Error: {mask_text(str(exc))}", file=sys.stderr)
        return 2


def run():
    """The ``kerastrack-clean`` script's entry point."""
    sys.exit(main())


def _run(args, stdin):
    if args.sweep is None and args.older_than is None and args.status is None:
        raise ConfigError(
            "say which runs to delete: --sweep ID, --older-than AGE and/or --status STATUS. Received: no filter"
        )
    uri = resolve_tracking_uri(args.tracking_uri, Path.cwd())
    status = args.status.upper() if args.status else None
    selection = cleanup.select(uri, sweep=args.sweep, older_than_s=args.older_than, status=status)
    dirs = _dirs(selection)
    _list(selection, dirs, uri)
    if not selection.delete:
        return 0
    if not args.yes:
        if not stdin.isatty():
            raise ConfigError(
                "nothing deleted: there is no terminal to confirm on (stdin is not a tty); pass --yes to "
                "delete without asking. Received: yes=False"
            )
        print(f"Delete these {len(selection.delete)} runs? [y/N] ", end="", flush=True)
        if stdin.readline().strip().lower() not in ("y", "yes"):
            print("Nothing deleted.")
            return 0
    deleted, left = cleanup.delete(uri, selection.delete)
    for run_id, reason in left:
        print(f"  kept {run_id}: {reason}")
    removed = [d for run_id, d in dirs.items() if run_id in deleted and d is not None and _remove(d)]
    print(f"Deleted {len(deleted)} runs and {len(removed)} output dirs.")
    return 0


def _dirs(selection):
    """Run id -> the output dir to remove with it, or None: none recorded, gone, or one that a run
    that stays writes to (it, or a dir inside it: a resumed run's, a running job's in a sweep dir)."""
    in_use = [Path(d).resolve() for d in selection.dirs_in_use]
    doomed = {}
    for record in selection.delete:
        path = cleanup.output_dir(record)
        keep = not path or any(u.is_relative_to(Path(path).resolve()) for u in in_use) or not _removable(path)
        doomed[record.run_id] = None if keep else Path(path)
    return doomed


def _removable(path):
    """A directory that is there, and not the current one, one above it, or the home dir (a run's
    output dir set to one of those must not take the user's files with it)."""
    path, cwd = Path(path).resolve(), Path.cwd().resolve()
    return path.is_dir() and path not in (cwd, *cwd.parents, Path.home().resolve())


def _remove(path):
    if not path.exists():  # inside a dir removed before it (a job's, in its sweep's dir)
        return False
    try:
        shutil.rmtree(path)
    except OSError as exc:
        print(f"  could not remove {path}: {exc.strerror}", file=sys.stderr)
        return False
    return True


def _list(selection, dirs, uri):
    print(f"In {mask_uri(uri)}: {len(selection.delete)} runs to delete, {len(selection.kept)} kept.")
    for record in selection.delete:
        where = f", output dir {dirs[record.run_id]}" if dirs[record.run_id] else ""
        print(f"  delete {record.run_id}  {record.status:<8}  {_when(record)}  {record.name}{where}")
    for record, reason in selection.kept:
        print(f"  keep   {record.run_id}  {record.status:<8}  {_when(record)}  {record.name}  ({reason})")


def _when(record):
    return datetime.fromtimestamp(record.start_time / 1000).strftime("%Y-%m-%d %H:%M") if record.start_time else "?"


if __name__ == "__main__":
    sys.exit(main())
