"""A sweep in MLflow: one parent run per sweep dir, every job a child run nested under it.

The sweep callback opens the parent (or continues it, when a sweep is re-launched into the
same dir) and closes it; a job finds its parent by the ``sweep.dir`` tag, which works with
any launcher whose jobs reach the same store, and a re-launched job finds its own earlier
child by the config's hash.
"""

import json
import os
from pathlib import Path

from kerastrack.tracking.labels import without_parent_note
from kerastrack.tracking.outbox import now_ms
from kerastrack.tracking.query import delete_twins, to_record, with_open_id
from kerastrack.tracking.spool import SPOOL_DIRNAME, Spool
from kerastrack.tracking.views import run_color, sweep_view, ui_link
from kerastrack.utils.hydra_job import in_multirun, job_num, parse_overrides, sweep_dir, task_overrides
from kerastrack.utils.secrets import mask_override, mask_value

LATEST_FIRST = ["attributes.start_time DESC"]


def find_parent(client, experiment_id, directory=None):
    """The parent run of the sweep in ``directory`` (None: the running job's), or None."""
    parents = client.search_runs(
        [experiment_id],
        max_results=1,
        order_by=LATEST_FIRST,
        filter_string=f"tags.`sweep.dir` = '{directory or sweep_dir()}' and tags.`sweep.role` = 'parent'",
    )
    return parents[0] if parents else None


def find_child(client, parent, config_hash):
    """The latest child of ``parent`` with this config hash, as a RunRecord, or None."""
    children = client.search_runs(
        [parent.info.experiment_id],
        max_results=1,
        order_by=LATEST_FIRST,
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}' and tags.`config.hash` = '{config_hash}'",
    )
    return to_record(children[0]) if children else None


def child_tags(parent_tags):
    """Tags that make the running job's run a child of the parent with ``parent_tags``, and
    its name from the swept values (``optimizer=adam,seed=1``), or None when nothing is swept."""
    keys = json.loads(parent_tags.get("sweep.keys", "[]"))
    values = {k: mask_value(k, o.get_value_element_as_str()) for k, o in parse_overrides(task_overrides()) if k in keys}
    tags = {
        "sweep.role": "child",
        "sweep.job": str(job_num()),
        "sweep.values": json.dumps(values),
        "mlflow.runColor": run_color(job_num()),
    }
    return tags, ",".join(f"{k}={v}" for k, v in values.items()) or None


def _parent_tags(directory, keys, overrides, labels=None):
    """A new parent's name and tags (``labels``: the sweep's tags and notes)."""
    where = Path(directory)
    name = f"sweep {', '.join(keys) or 'of 1'} ({where.parent.name} {where.name})"
    return name, {
        **(labels or {}),
        "sweep.role": "parent",
        "sweep.keys": json.dumps(keys),
        "sweep.dir": directory,
        "sweep.overrides": _shown(overrides),
    }


def _shown(overrides):
    return " ".join(mask_override(o) for o in overrides)[:5000]


class ParentRun:
    """The parent run of one sweep: opened new, or continued when a sweep is re-launched into
    the same sweep dir (its jobs then skip what finished and resume what was cut short).

    Args:
        client: An ``mlflow.MlflowClient`` on the store, experiment created.
        experiment_id: The sweep's experiment.
        directory: The sweep dir (absolute).
        keys: The swept keys.
        overrides: The command line's overrides, as typed.
        labels: A new parent's tags from the sweep's ``tags`` and ``notes`` (a continued one keeps its own).
    """

    def __init__(self, client, experiment_id, directory, keys, overrides, labels=None):
        self.client = client
        self.experiment_id = experiment_id
        self.tracking_uri = client.tracking_uri
        earlier = find_parent(client, experiment_id, directory)
        if earlier is not None and earlier.data.tags.get("sweep.overrides") != _shown(overrides):
            # Another sweep's parent, of a sweep dir since emptied (the dir itself refuses
            # another sweep while it holds one): this sweep gets a parent of its own, the
            # latest of this dir, which its jobs find.
            earlier = None
        self.continued = earlier is not None
        if earlier:
            self.run_id = earlier.info.run_id
            client.update_run(self.run_id, status="RUNNING")
            client.set_tag(
                self.run_id, "sweep.relaunches", str(int(earlier.data.tags.get("sweep.relaunches", "0")) + 1)
            )
        else:
            name, tags = _parent_tags(directory, keys, overrides, labels)
            run = client.create_run(experiment_id, run_name=name, tags=with_open_id(tags))
            delete_twins(client, run)  # a timed-out, retried create made one parent more
            self.run_id = run.info.run_id

    def children(self):
        """The child runs so far, as RunRecords (without histories)."""
        runs = self.client.search_runs(
            [self.experiment_id], max_results=10000, filter_string=f"tags.mlflow.parentRunId = '{self.run_id}'"
        )
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
        return ui_link(
            self.tracking_uri, sweep_view(self.client, self.client.get_run(self.run_id)), f"--sweep {self.run_id}"
        )

    def fail_child(self, job, error_type, message):
        """Closes job ``job``'s child run FAILED, if it is RUNNING (its process died unable to
        close it); returns its run id, or None where it has no RUNNING child."""
        runs = self.client.search_runs(
            [self.experiment_id],
            max_results=10,
            filter_string=(
                f"tags.mlflow.parentRunId = '{self.run_id}' and tags.`sweep.job` = '{job}' and attributes.status = 'RUNNING'"
            ),
        )
        for run in runs:
            self.client.set_tag(run.info.run_id, "error.type", error_type)
            self.client.set_tag(run.info.run_id, "error.message", message)
            self.client.set_terminated(run.info.run_id, "FAILED")
        return runs[0].info.run_id if runs else None

    def end(self, status):
        self.client.set_terminated(self.run_id, status)


def offline_parent():
    """In a job of an offline sweep: the spool of its parent run, else None."""
    if not in_multirun():
        return None
    parent = Spool(Path(sweep_dir()) / SPOOL_DIRNAME)
    return parent if parent.exists() else None


def offline_child(spool, tags):
    """For a run spooled in ``spool``: in a job of an offline sweep, its name from the swept
    values (or None), its tags as a child, and the spool meta's link to the parent's spool
    (relative: the sweep dir may be moved whole before the upload); else (None, tags, {})."""
    parent = offline_parent()
    if parent is None:
        return None, tags, {}
    parent_tags = parent.meta()["tags"]
    sweep_tags, swept = child_tags(parent_tags)
    tags = without_parent_note({**(tags or {}), **sweep_tags}, parent_tags)
    return swept, tags, {"parent_spool": os.path.relpath(parent.directory, spool.directory)}


def find_offline_child(config_hash):
    """In a re-launched offline sweep: the latest job's run with this config hash that
    FINISHED in its spool (the job is done), as a RunRecord, or None."""
    parent = offline_parent()
    done = [c.record() for c in parent.children()] if parent else []
    done = [r for r in done if r.status == "FINISHED" and r.tags.get("config.hash") == config_hash]
    return done[-1] if done else None


class OfflineParent:
    """The parent run of an offline sweep (``tracking.offline=true``): spooled in the sweep
    dir (``<sweep dir>/mlflow-spool``), as its jobs' runs are in theirs, and uploaded with
    them (``python -m kerastrack.upload <sweep dir>``), the jobs under it. Nothing here
    contacts the server.

    Args:
        tracking_uri: The server's URI, password masked (the upload takes it from the environment).
        experiment_name: The sweep's experiment.
        directory: The sweep dir (absolute).
        keys: The swept keys.
        overrides: The command line's overrides, as typed.
        labels: A new parent's tags from the sweep's ``tags`` and ``notes``.
    """

    tracking_uri = None  # nothing to read back: the sweep's report needs the server
    run_id = None

    def __init__(self, tracking_uri, experiment_name, directory, keys, overrides, labels=None):
        self.spool = Spool(Path(directory) / SPOOL_DIRNAME)
        self.continued = self.spool.exists()
        if self.continued:  # a re-launch into the same sweep dir (the same sweep: see sweep_dir.py)
            relaunches = int(self.spool.record().tags.get("sweep.relaunches", "0")) + 1
            self.spool.append({"op": "tags", "tags": {"sweep.relaunches": str(relaunches)}})
        else:
            name, tags = _parent_tags(directory, keys, overrides, labels)
            self.spool.write_meta(
                tracking_uri=tracking_uri,
                experiment_name=experiment_name,
                run_id=None,
                run_name=name,
                tags=tags,
                start_time=now_ms(),
            )

    def children(self):
        """The jobs' runs as spooled so far, as RunRecords: each job's latest attempt (a job
        of a re-launch that did not finish left an earlier one, uploaded too)."""
        latest = {}
        for record in sorted((child.record() for child in self.spool.children()), key=lambda r: r.start_time or 0):
            latest[record.tags.get("sweep.job")] = record
        return list(latest.values())

    def log_counts(self, n_jobs, n_failed, n_skipped=0):
        self.spool.append(
            {
                "op": "tags",
                "tags": {
                    "sweep.n_jobs": str(n_jobs),
                    "sweep.n_failed": str(n_failed),
                    "sweep.n_skipped": str(n_skipped),
                },
            }
        )

    def fail_child(self, job, error_type, message):
        """As ``ParentRun.fail_child``, in the job's spool (a run id once uploaded, else "")."""
        for child in self.spool.children():
            record = child.record()
            if record.tags.get("sweep.job") == str(job) and record.status == "RUNNING":
                child.append({"op": "tags", "tags": {"error.type": error_type, "error.message": message}})
                child.append({"op": "terminate", "status": "FAILED", "end_time": now_ms()})
                return record.run_id
        return None

    def ui_link(self):
        return None  # in no store until uploaded

    def end(self, status):
        self.spool.append({"op": "terminate", "status": status, "end_time": now_ms()})
