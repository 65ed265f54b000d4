"""kerastrack from Python (a notebook, a script): ``train``, ``sweep``, ``compare``, ``runs``.

Each call is the command line's, in this process: ``kerastrack.train("optimizer=adam")`` is
``kerastrack optimizer=adam``, ``kerastrack.sweep(optimizer=["sgd", "adam"], seed=range(3))``
is ``kerastrack -m optimizer=sgd,adam seed=0,1,2``: the same config groups and checks, the
same record, the same numbers. A bad input raises ``ConfigError`` with the command's one
line; Ctrl-C (a notebook's interrupt) closes the run KILLED, says so in one line and
raises ``KeyboardInterrupt``, and the process goes on.

``launch`` runs Hydra in this process; ``results`` owns what comes back (``Run``, ``Sweep``).
"""

import sys

from kerastrack.api import launch
from kerastrack.api.results import Run, Sweep, report, runs_frame
from kerastrack.errors import ConfigError
from kerastrack.utils.secrets import mask_text
from kerastrack.utils.signals import interrupted_line

__all__ = ["Run", "Sweep", "compare", "runs", "sweep", "train"]


def train(*overrides, config_dir=None, **values):
    """Trains one run, as ``kerastrack OVERRIDES`` does.

    Args:
        *overrides: Hydra overrides, e.g. ``"optimizer=adam"``, ``"trainer.epochs=5"``.
        config_dir: A folder of your own config groups (``conf/model/my_net.yaml``),
            beside the built-in ones: the command's ``--config-dir``.
        **values: More overrides as keyword arguments: ``optimizer="adam", seed=1``
            (a list is a list value: ``trainer.metrics``).

    Returns:
        The Run.

    Raises:
        ConfigError: A bad input, before anything is recorded.
        DivergedError: The loss became NaN or infinite (the run is FAILED; ``exc.run``).
        KeyboardInterrupt: Ctrl-C: the run is KILLED with every finished epoch (``exc.run``).
    """
    try:
        opened = launch.run_hydra(launch.overrides(overrides, values, sweep=False), config_dir)
    except BaseException as exc:
        raise _ended(exc) from None
    return Run(opened.run_id, opened.tracking_uri, opened.output_dir)


def sweep(*overrides, config_dir=None, **grid):
    """Runs a sweep, as ``kerastrack -m OVERRIDES`` does: a parent run, a child run per job.

    Args:
        *overrides: Hydra overrides; a sweep's own too: ``"optimizer=sgd,adam"``,
            ``"launcher=parallel"``, ``"experiment=optimizers"``.
        config_dir: A folder of your own config groups (see ``train``).
        **grid: Keys to sweep and their values, a list or a range each:
            ``optimizer=["sgd", "adam"], seed=range(3)``; a single value is set, not swept.

    Returns:
        The Sweep. Jobs that failed are FAILED in ``sweep.runs`` (the line the command
        would exit with is printed).

    Raises:
        ConfigError: A bad input, before anything is recorded (or a sweep recorded only
            into spools: ``tracking.offline=true``).
        KeyboardInterrupt: Ctrl-C: the running jobs' runs and the parent are KILLED.
    """
    launched = launch.run_hydra(launch.overrides(overrides, grid, sweep=True), config_dir, multirun=True)
    if launched is None or launched[0] is None:
        raise ConfigError(
            "the sweep recorded its runs into spools only (tracking.offline=true): upload them with "
            "python -m kerastrack.upload <sweep dir>, then read them with kerastrack.compare. Received: tracking.offline=true"
        )
    return Sweep(*launched)


def compare(sweep_or_parent_run_id="latest", *, tracking_uri=None, filter="", **report_options):
    """The comparison report of a sweep's runs, as ``python -m kerastrack.report`` builds it.

    Args:
        sweep_or_parent_run_id: A Sweep, its parent run id, or "latest" (the most recent sweep).
        tracking_uri: The store, for a run id; None: ``$MLFLOW_TRACKING_URI``, else
            ``./mlflow.db``. A Sweep knows its own.
        filter: MLflow search syntax the runs must also match, e.g. ``"params.seed != '2'"``.
        **report_options: ``build_report``'s: ``group_keys``, ``monitor``, ``mode``,
            ``extra_keys``, ``x`` ("epoch" or "time"), ``best_over``.

    Returns:
        A Report: ``.table`` (one row a child run, best first), ``.groups`` (each group's
        n, mean and std over its seeds, and the 95% interval of its difference to the best
        group), ``.figure`` (a matplotlib Figure of the mean learning curves).
    """
    from kerastrack.tracking.store import resolve_tracking_uri

    return report(sweep_or_parent_run_id, resolve_tracking_uri(tracking_uri), filter, report_options)


def runs(filter="", *, experiment=None, tracking_uri=None):
    """Every run of a store that matches ``filter``, one row each (sweep parents too).

    Args:
        filter: MLflow search syntax, e.g. ``"tags.optimizer = 'adam' and metrics.best_val_loss < 0.2"``.
        experiment: Only this experiment's runs; None: every experiment's.
        tracking_uri: The store; None: ``$MLFLOW_TRACKING_URI``, else ``./mlflow.db``.

    Returns:
        A pandas DataFrame with ``mlflow.search_runs``' columns: ``run_id``, ``run_name``,
        ``status``, ``start_time``, ``end_time``, ``metrics.*``, ``params.*``, ``tags.*``.
    """
    from kerastrack.tracking.store import resolve_tracking_uri

    return runs_frame(resolve_tracking_uri(tracking_uri), experiment, filter)


def _ended(exc):
    """``exc`` as ``train`` raises it: when the run raised it, the Run it ended attached as
    ``exc.run``, an interrupt said in the command's one line, a message masked of secrets."""
    opened = getattr(exc, "opened", None)
    if opened is None:  # raised before the run: composing, checking
        return exc
    exc.run = Run(opened.run_id, opened.tracking_uri, opened.output_dir) if opened.run_id else None
    if isinstance(exc, KeyboardInterrupt):
        print(interrupted_line(exc), file=sys.stderr)
    elif len(exc.args) == 1 and isinstance(exc.args[0], str):
        exc.args = (mask_text(exc.args[0]),)
    return exc
