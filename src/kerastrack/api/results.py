"""What the Python API's calls give back: a ``Run`` and a ``Sweep``, read from their MLflow
store when asked, so that what they show is what the record holds now (a run another
process resumes, a sweep still going), and a store's runs as one ``pandas.DataFrame``."""

import functools
import sys
from pathlib import Path

import pandas as pd

from kerastrack.errors import ConfigError
from kerastrack.tracking import logged_model
from kerastrack.tracking.query import fetch_parent, fetch_run, fetch_runs, search_records


class Run:
    """One recorded run.

    Args:
        run_id: Its MLflow run id.
        tracking_uri: The store it is recorded in.
        output_dir: Its output dir (plots, config, log, the training state), if known.
    """

    def __init__(self, run_id, tracking_uri, output_dir=None):
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self._output_dir = output_dir

    def _record(self, history_keys=()):
        if self.run_id is None or self.tracking_uri is None:
            raise ConfigError(
                "this run cannot be read back: it recorded nothing (tracking=none) or only into its "
                "spool (tracking.offline=true; python -m kerastrack.upload sends it). "
                f"Received: run_id={self.run_id}"
            )
        return fetch_run(self.tracking_uri, self.run_id, history_keys=history_keys)

    @property
    def status(self):
        """FINISHED, FAILED, KILLED or RUNNING, as the store says now."""
        return self._record().status

    @property
    def name(self):
        """The run's name, e.g. ``digits-mlp-categorical_crossentropy-adam``."""
        return self._record().name

    @property
    def params(self):
        """The run's params: name -> value (strings, as MLflow keeps them)."""
        return self._record().params

    @property
    def tags(self):
        """The run's tags: name -> value."""
        return self._record().tags

    @property
    def metrics(self):
        """Each metric's last value: the one-value ones (``best_*``, ``test_*``) among them."""
        return self._record().metrics

    @property
    def output_dir(self):
        """The run's output dir, a Path (the ``paths.output_dir`` it recorded)."""
        if self._output_dir is None:
            self._output_dir = self.params.get("paths.output_dir")
        return Path(self._output_dir) if self._output_dir else None

    @property
    def history(self):
        """Every epoch's logged values: a DataFrame, one row an epoch (index ``epoch``, from
        0 as MLflow's steps and Keras' ``History.epoch`` count), one column a metric."""
        record = self._record(history_keys=None)
        columns = {key: pd.Series(dict(points), dtype=float) for key, points in record.history.items()}
        frame = pd.DataFrame(columns)
        frame.index = frame.index.astype(int)
        return frame.sort_index().rename_axis("epoch")

    @property
    def best(self):
        """The best epoch's row of ``history`` (its name is the epoch) by the run's
        ``trainer.monitor``, or None before a best epoch is on record."""
        epoch = self.metrics.get("best_epoch")
        if epoch is None:
            return None
        return self.history.loc[int(epoch)]

    @functools.cached_property
    def model(self):
        """The trained Keras model, loaded from the run's MLflow logged model (first use only).

        Raises:
            ConfigError: The run logged no model (``tracking.log_model=false``).
        """
        self._record()
        return logged_model.load(self.tracking_uri, self.run_id)

    def __repr__(self):
        try:
            record = self._record()
            return f"Run(run_id={self.run_id!r}, name={record.name!r}, status={record.status!r})"
        except ConfigError:
            return f"Run(run_id={self.run_id!r})"


class Sweep:
    """One recorded sweep: its parent run and a child run per job.

    Args:
        parent_run_id: The parent run's id.
        tracking_uri: The store it is recorded in.
        sweep_dir: Its sweep dir (a folder per job, the report), if known.
    """

    def __init__(self, parent_run_id, tracking_uri, sweep_dir=None):
        self.parent_run_id = parent_run_id
        self.tracking_uri = tracking_uri
        self.sweep_dir = Path(sweep_dir) if sweep_dir else None

    @property
    def parent(self):
        """The parent run, a Run."""
        return Run(self.parent_run_id, self.tracking_uri)

    @property
    def status(self):
        """The parent run's status: FINISHED once every job ended, KILLED when stopped."""
        return self.parent.status

    @property
    def runs(self):
        """The child runs, a list of Run in the order they started."""
        records = fetch_runs(self.tracking_uri, parent=self.parent_run_id, history_keys=())
        return [Run(r.run_id, self.tracking_uri, r.params.get("paths.output_dir")) for r in records]

    def compare(self, filter="", **report_options):
        """``kerastrack.compare(self, filter=filter, **report_options)``."""
        return report(self, self.tracking_uri, filter, report_options)

    def __repr__(self):
        return f"Sweep(parent_run_id={self.parent_run_id!r}, sweep_dir={str(self.sweep_dir)!r})"


def report(sweep_or_id, tracking_uri, filter_string, options):
    """The comparison report of a Sweep, a parent run id or "latest" (``kerastrack.compare``)."""
    from kerastrack.report.build import build_report, sweep_title

    if isinstance(sweep_or_id, Sweep):
        sweep_or_id, tracking_uri = sweep_or_id.parent_run_id, sweep_or_id.tracking_uri
    elif not isinstance(sweep_or_id, str):
        raise ConfigError(
            f"compare takes a Sweep, a sweep's parent run id or 'latest'. Received: sweep={sweep_or_id!r}"
        )
    parent = fetch_parent(tracking_uri, sweep_or_id)
    _figures_inline()
    runs = fetch_runs(tracking_uri, parent=parent.run_id, filter_string=filter_string)
    return build_report(runs, title=sweep_title(parent), **options)


def _figures_inline():
    """In Jupyter, a Figure shows inline: IPython registers its display of matplotlib
    figures when pyplot is imported, and the report draws on a bare ``Figure`` (no pyplot:
    no figure kept open per report). Done as the inline backend does it, unless the user
    chose a display of figures already."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    from IPython.core.pylabtools import select_figure_formats
    from matplotlib.figure import Figure

    formatters = shell.display_formatter.formatters
    if not any(Figure in formatters[kind].type_printers for kind in ("image/png", "image/svg+xml", "application/pdf")):
        select_figure_formats(shell, {"png"})


def runs_frame(tracking_uri, experiment, filter_string):
    """The store's runs as one DataFrame with ``mlflow.search_runs``' columns: ``run_id``,
    ``run_name``, ``status``, ``start_time``, ``end_time``, then ``metrics.*``, ``params.*``,
    ``tags.*``. (``mlflow.search_runs`` itself reads only the process's global store.)"""
    rows = []
    for record in search_records(tracking_uri, experiment=experiment, filter_string=filter_string):
        row = {
            "run_id": record.run_id,
            "run_name": record.name,
            "status": record.status,
            "start_time": pd.to_datetime(record.start_time, unit="ms", utc=True),
            "end_time": pd.to_datetime(record.end_time, unit="ms", utc=True) if record.end_time else pd.NaT,
        }
        row |= {f"metrics.{k}": v for k, v in sorted(record.metrics.items())}
        row |= {f"params.{k}": v for k, v in sorted(record.params.items())}
        row |= {f"tags.{k}": v for k, v in sorted(record.tags.items())}
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["run_id", "run_name", "status", "start_time", "end_time"])
