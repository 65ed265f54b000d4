"""A sweep in MLflow: one parent run per sweep dir, every job a child run nested under it.

The sweep callback opens the parent (or continues it, when a sweep is re-launched into the
same dir) and closes it; a job finds its parent by the ``sweep.dir`` tag, which works with
any launcher whose jobs reach the same store, and a re-launched job finds its own earlier
child by the config's hash.
"""

import json
from pathlib import Path

from kerastrack.hydra_utils import job_num, parse_overrides, sweep_dir, task_overrides
from kerastrack.secrets import mask_override, mask_value
from kerastrack.tracking.query import to_record
from kerastrack.tracking.views import run_color, sweep_view, ui_link

LATEST_FIRST = ["attributes.start_time DESC"]


def find_parent(client, experiment_id, directory=None):
    """The parent run of the sweep in ``directory`` (None: the running job's), or None."""
    parents = client.search_runs(
        [experiment_id], max_results=1, order_by=LATEST_FIRST,
        filter_string=f"tags.`sweep.dir` = '{directory or sweep_dir()}' and tags.`sweep.role` = 'parent'")
    return parents[0] if parents else None


def find_child(client, parent, config_hash):
    """The latest child of ``parent`` with this config hash, as a RunRecord, or None."""
    children = client.search_runs(
        [parent.info.experiment_id], max_results=1, order_by=LATEST_FIRST,
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`config.hash` = '{config_hash}'")
    return to_record(children[0]) if children else None


def child_tags(parent):
    """Tags that make the running job's run a child of ``parent``, and its name from the
    swept values (``optimizer=adam,seed=1``), or None when nothing is swept."""
    keys = json.loads(parent.data.tags.get("sweep.keys", "[]"))
    values = {k: mask_value(k, o.get_value_element_as_str())
              for k, o in parse_overrides(task_overrides()) if k in keys}
    tags = {"sweep.role": "child", "sweep.job": str(job_num()), "sweep.values": json.dumps(values),
            "mlflow.runColor": run_color(job_num())}
    return tags, ",".join(f"{k}={v}" for k, v in values.items()) or None


class ParentRun:
    """The parent run of one sweep: opened new, or continued when a sweep is re-launched into
    the same sweep dir (its jobs then skip what finished and resume what was cut short).

    Args:
        client: An ``mlflow.MlflowClient`` on the store, experiment created.
        experiment_id: The sweep's experiment.
        directory: The sweep dir (absolute).
        keys: The swept keys.
        overrides: The command line's overrides, as typed.
    """

    def __init__(self, client, experiment_id, directory, keys, overrides):
        self.client = client
        self.experiment_id = experiment_id
        self.tracking_uri = client.tracking_uri
        earlier = find_parent(client, experiment_id, directory)
        self.continued = earlier is not None
        if earlier:
            self.run_id = earlier.info.run_id
            client.update_run(self.run_id, status="RUNNING")
            client.set_tag(self.run_id, "sweep.relaunches", str(int(earlier.data.tags.get("sweep.relaunches", "0")) + 1))
        else:
            where = Path(directory)
            name = f"sweep {', '.join(keys) or 'of 1'} ({where.parent.name} {where.name})"
            self.run_id = client.create_run(experiment_id, run_name=name, tags={
                "sweep.role": "parent", "sweep.keys": json.dumps(keys), "sweep.dir": directory,
                "sweep.overrides": " ".join(mask_override(o) for o in overrides)[:5000]}).info.run_id

    def children(self):
        """The child runs so far, as RunRecords (without histories)."""
        runs = self.client.search_runs([self.experiment_id], max_results=10000,
                                       filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'")
        return [to_record(run) for run in runs]

    def log_counts(self, n_jobs, n_failed, n_skipped=0):
        # Tags, not metrics: a metric becomes a chart of its own in the UI's comparison.
        self.client.set_tag(self.run_id, "sweep.n_jobs", str(n_jobs))
        self.client.set_tag(self.run_id, "sweep.n_failed", str(n_failed))
        self.client.set_tag(self.run_id, "sweep.n_skipped", str(n_skipped))  # held by another process

    def log_report(self, paths, best_run_id=None, monitor=None, best_value=None, mode="min"):
        """Logs the comparison report's files under ``report/``, and the best run."""
        for path in paths:
            self.client.log_artifact(self.run_id, str(path), "report")
        if best_run_id:
            self.client.set_tag(self.run_id, "best_run_id", best_run_id)
            self.client.set_tag(self.run_id, f"best_{monitor}", repr(float(best_value)))
            self.client.set_tag(self.run_id, "sweep.monitor", monitor)
            self.client.set_tag(self.run_id, "sweep.monitor_mode", mode)

    def ui_link(self):
        """Saves the UI's view of the children side by side; returns what opens it (the URL
        on a tracking server, else the ``python -m kerastrack.ui`` command)."""
        return ui_link(self.tracking_uri, sweep_view(self.client, self.client.get_run(self.run_id)),
                       f"--sweep {self.run_id}")

    def end(self, status):
        self.client.set_terminated(self.run_id, status)
