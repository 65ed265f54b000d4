"""The command line of ``python -m kerastrack.evaluate`` and ``kerastrack-evaluate``.

``kerastrack-evaluate <run_id|models:/...> [data=<option>] [data.<key>=<value> ...]`` loads the
run's logged model, evaluates it on the data set's test split and records the result: in the
run (``eval/<data>/test_loss``, ...) or, with ``--new-run`` or for a run that is not FINISHED,
in a new run tagged with its id. Every refusal comes before anything is recorded.
"""

import argparse
import sys
from pathlib import Path

from kerastrack.errors import ConfigError
from kerastrack.evaluate import data as datasets
from kerastrack.tracking import evaluation
from kerastrack.tracking.store import resolve_tracking_uri
from kerastrack.utils import startup
from kerastrack.utils.secrets import mask_text


class _Parser(argparse.ArgumentParser):
    """argparse, its refusals as the house's one ``Error:`` line (exit code 2)."""

    def error(self, message):
        raise ConfigError(message)


def _parser():
    parser = _Parser(
        prog="kerastrack-evaluate",
        description="Evaluate a run's logged model on a data set's test split (by default the one it was "
        "trained on) and record the result in the run, or in a new run linked to it.",
    )
    parser.add_argument("source", help="a run id, models:/<model_id> (a logged model) or models:/<name>/<version>")
    parser.add_argument(
        "overrides", nargs="*", metavar="data=...", help="data=<option> and data.<key>=<value> (default: the run's)"
    )
    parser.add_argument(
        "--new-run", action="store_true", help="record the result in a new run linked to the source run"
    )
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="default: $MLFLOW_TRACKING_URI, else sqlite:///mlflow.db in this directory",
    )
    return parser


def main(argv=None):
    """``python -m kerastrack.evaluate``.

    Args:
        argv: Command-line arguments; None: ``sys.argv[1:]``.

    Returns:
        The exit code: 0, or 2 for bad input (one ``Error:`` line on stderr, nothing recorded).
    """
    try:
        return _run(_parser().parse_intermixed_args(argv))
    except ConfigError as exc:
        print(f"Error: {mask_text(str(exc))}", file=sys.stderr)
        return 2


def run():
    """The ``kerastrack-evaluate`` script's entry point."""
    startup.quiet_tensorflow()
    sys.exit(main())


def _run(args):
    uri = resolve_tracking_uri(args.tracking_uri, Path.cwd())
    option, keys = datasets.split_overrides(args.overrides)
    source = evaluation.find_source(uri, args.source)
    config = source.config or {}
    name = option or source.run.tags.get("data") or "?"
    node = datasets.data_config(source.config, option, keys)
    evaluation.check_recordable(source, name, args.new_run)
    data = datasets.build(node, name)
    with startup.loading_tensorflow():
        # What the model's config names by kerastrack's registered names (its losses, layers).
        import kerastrack.losses.custom  # noqa: F401
        import kerastrack.models.builders  # noqa: F401

        model = evaluation.load_model(uri, source)
    head = datasets.check_fits(model, data, config.get("loss"), name, source.run.run_id)
    batch_size = config.get("trainer", {}).get("batch_size", 32)
    batch_size = len(data.x_test) if batch_size == "full" else int(batch_size)
    results = model.evaluate(data.x_test, head.encode(data.y_test), batch_size=batch_size, return_dict=True, verbose=0)
    results = {k: float(v) for k, v in results.items()}
    run_id = evaluation.record(uri, source, results, name, args.new_run)
    where = f"run {run_id}" if run_id == source.run.run_id else f"a new run {run_id} (linked to {source.run.run_id})"
    shown = ", ".join(f"test_{k}={v:.4f}" for k, v in results.items())
    print(f"{source.model_uri} on data={name} ({len(data.x_test)} test samples): {shown}; recorded in {where}")
    return 0
