"""What could not reach the tracking server, kept on disk and uploaded later.

A spool is a directory (``<output_dir>/mlflow-spool``) with:

- ``meta.json``: the tracking URI, experiment, run id (None for an offline run) and name;
- ``ops.jsonl``: the tracker calls that were not sent, in order, one JSON object a line
  (dataset inputs as their description, not their arrays);
- ``files/``: copies of the artifacts those calls named (taken when the call was made, so
  later changes to the output dir do not change what is uploaded), and the model saved in
  MLflow's format, registered as the run's logged model when uploaded;
- ``state.json``: how far an upload got (the run id it uploads into, ops sent so far, and
  for an offline run the spool's id, which tags the run the upload creates).

An offline sweep spools its parent run in the sweep dir, and each job's meta names that
spool (``parent_spool``, relative to the job's): the upload puts the job's run under the
parent's run on the server, uploading the parent first if it is not there yet.

``python -m kerastrack.upload <output_dir>`` replays it into the run on the server. The
state is written after every batch of ops the server accepted, so a second upload (or one
after a broken one) sends only what is left. Killed between the server's accepting a batch
and the state's write, the upload sends that batch again: the server's store drops the
repeated metric values (same key, step, timestamp and value), params and tags are set to
the same values, files are written over, and the logged model is completed, not made
twice. Nothing is duplicated.

MLflow has no offline queue of its own (its async logging keeps metrics in memory only,
and loses them when the server is away), hence this module.
"""

import json
import os
import shutil
import uuid
from pathlib import Path

from kerastrack.errors import ConfigError
from kerastrack.tracking import datasets, logged_model
from kerastrack.tracking.query import RunRecord
from kerastrack.tracking.views import EXPERIMENT_KIND
from kerastrack.utils.files import write_atomic

SPOOL_DIRNAME = "mlflow-spool"
EARLIER = SPOOL_DIRNAME + ".*"  # an earlier attempt's spool, set aside in the same output dir
SPOOL_ID_TAG = "spool.id"  # on a run an upload created: which spool it came from


class Spool:
    """The spool directory of one run.

    Args:
        directory: The spool directory, or an output dir that holds one.
    """

    def __init__(self, directory):
        directory = Path(directory)
        self.directory = directory / SPOOL_DIRNAME if (directory / SPOOL_DIRNAME).is_dir() else directory

    @property
    def ops_file(self):
        return self.directory / "ops.jsonl"

    def exists(self):
        return (self.directory / "meta.json").is_file()

    def meta(self):
        return json.loads((self.directory / "meta.json").read_text())

    def write_meta(self, **meta):
        self.directory.mkdir(parents=True, exist_ok=True)
        write_atomic(self.directory / "meta.json", json.dumps(meta, indent=1))

    def state(self):
        path = self.directory / "state.json"
        return json.loads(path.read_text()) if path.is_file() else {"run_id": None, "uploaded": 0}

    def save_state(self, state):
        write_atomic(self.directory / "state.json", json.dumps(state, indent=1))

    def ops(self):
        if not self.ops_file.is_file():
            return []
        with open(self.ops_file) as f:
            return [json.loads(line) for line in f if line.strip()]

    def pending(self):
        return self.ops()[self.state()["uploaded"] :]

    def append(self, op):
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.ops_file, "a") as f:
            f.write(json.dumps(op) + "\n")
            f.flush()
            os.fsync(f.fileno())  # a crash right after must not lose the line

    def add_file(self, local_path):
        """Copies a file or directory into the spool; returns its path relative to it."""
        local_path = Path(local_path)
        target = self._new_file_dir() / local_path.name
        if local_path.is_dir():
            shutil.copytree(local_path, target)
        else:
            shutil.copy2(local_path, target)
        return str(target.relative_to(self.directory))

    def add_text(self, text, name):
        target = self._new_file_dir() / name
        target.write_text(text)
        return str(target.relative_to(self.directory))

    def set_aside(self):
        """Makes room for a new run's spool where an earlier attempt's is (a job of a
        re-launched offline sweep that did not finish): the earlier one moves to
        ``mlflow-spool.1`` (then .2, ...) and is uploaded as the run it was, so that the two
        runs' records do not mix."""
        if self.exists():
            n = 1 + sum(1 for _ in self.directory.parent.glob(EARLIER))
            self.directory.rename(self.directory.with_name(f"{SPOOL_DIRNAME}.{n}"))

    def record(self):
        """The run as spooled, a RunRecord (status RUNNING until its final status is spooled;
        run id: the server's once uploaded, else empty)."""
        meta, params, tags, metrics, status = self.meta(), {}, {}, {}, "RUNNING"
        for op in self.ops():
            if op["op"] == "params":
                params.update(op["params"])
            elif op["op"] == "tags":
                tags.update(op["tags"])
            elif op["op"] == "metrics":
                metrics.update(op["metrics"])
            elif op["op"] == "terminate":
                status = op["status"]
        return RunRecord(
            run_id=self.state()["run_id"] or meta.get("run_id") or "",
            name=meta.get("run_name") or "",
            status=status,
            params=params,
            tags={**(meta.get("tags") or {}), **tags},
            metrics=metrics,
            start_time=meta.get("start_time"),
        )

    def parent(self):
        """The spool of the sweep's parent run this run is a child of, or None."""
        link = self.meta().get("parent_spool")
        return Spool(self.directory / link) if link else None

    def children(self):
        """The spools of the jobs of the offline sweep whose parent this spool is (in the
        job dirs beside it, earlier attempts included), in job order."""
        found = [
            Spool(d) for pattern in (f"*/{SPOOL_DIRNAME}", f"*/{EARLIER}") for d in self.directory.parent.glob(pattern)
        ]
        mine = self.directory.resolve()
        found = [c for c in found if c.exists() and c.parent() and c.parent().directory.resolve() == mine]
        return sorted(found, key=lambda c: (int((c.meta().get("tags") or {}).get("sweep.job", 0)), str(c.directory)))

    def _new_file_dir(self):
        files = self.directory / "files"
        files.mkdir(parents=True, exist_ok=True)
        directory = files / str(sum(1 for _ in files.iterdir()))
        directory.mkdir()
        return directory


def upload(spool, client, log_progress=print):
    """Replays a spool's pending ops into its run (created first for an offline run).

    Args:
        spool: The Spool.
        client: An ``mlflow.MlflowClient`` on the server.
        log_progress: Called with one line per kind of thing uploaded.

    Returns:
        (run_id, counts): the run and how many of each op were sent.
    """
    state = spool.state()
    run_id = find_or_create_run(spool, client, state, log_progress)
    state["run_id"] = run_id
    spool.save_state(state)
    ops = spool.ops()
    counts = {}
    i = state["uploaded"]
    while i < len(ops):
        # Consecutive metrics/params/tags go in one log_batch (the client splits it to the
        # server's limits); files and the final status one at a time, status last.
        j = i + 1
        if ops[i]["op"] in ("metrics", "params", "tags"):
            while j < len(ops) and ops[j]["op"] in ("metrics", "params", "tags"):
                j += 1
        _send(client, run_id, spool, ops[i:j], counts)
        state["uploaded"] = j
        spool.save_state(state)
        i = j
    for kind, n in counts.items():
        log_progress(f"uploaded {n} {kind} to run {run_id}")
    return run_id, counts


def _parent_run_id(parent, client, log_progress):
    """The server's run of an offline sweep's parent spool, uploaded first if need be."""
    if not parent.exists():
        raise ConfigError(
            f"this run is a job of an offline sweep whose parent run's spool is gone ({parent.directory} "
            f"holds no meta.json): upload the sweep dir whole, as the sweep left it. "
            f"Received: parent_spool={parent.directory}"
        )
    run_id = parent.state()["run_id"] or parent.meta().get("run_id")
    return run_id or upload(parent, client, log_progress)[0]


def sweep_spools(path):
    """What to upload for ``path``: its spool, and when it is an offline sweep's parent (the
    sweep dir), every job's spool of that sweep after it."""
    spool = Spool(path)
    if not spool.exists() or (spool.meta().get("tags") or {}).get("sweep.role") != "parent":
        return [path]
    return [path, *(str(child.directory) for child in spool.children())]


def find_or_create_run(spool, client, state, log_progress=print):
    """The server's run that the spool goes into, created once whenever the upload is killed.

    An online run's spool names its run. An offline run's is created by the first upload,
    tagged with the spool's own id (saved in ``state`` before the run exists): an upload
    killed after creating it, before it could note the run's id, finds it again by that tag
    rather than making a second run of the same name.

    Args:
        spool: The Spool.
        client: An ``mlflow.MlflowClient`` on the server.
        state: The spool's upload state; its ``spool_id`` is set (and saved) if new.
        log_progress: Called with a line when a run is created or found.

    Returns:
        The run id.
    """
    meta = spool.meta()
    if state["run_id"] or meta.get("run_id"):
        return state["run_id"] or meta["run_id"]
    if not state.get("spool_id"):
        state["spool_id"] = uuid.uuid4().hex
        spool.save_state(state)
    experiment = client.get_experiment_by_name(meta["experiment_name"])
    experiment_id = (
        experiment.experiment_id
        if experiment
        else client.create_experiment(meta["experiment_name"], tags=dict([EXPERIMENT_KIND]))
    )
    found = client.search_runs([experiment_id], f"tags.`{SPOOL_ID_TAG}` = '{state['spool_id']}'", max_results=1)
    if found:
        log_progress(
            f"continuing run {found[0].info.run_id} '{found[0].info.run_name}', which an earlier upload "
            f"of this spool created"
        )
        return found[0].info.run_id
    tags = {**(meta.get("tags") or {}), SPOOL_ID_TAG: state["spool_id"]}
    if (parent := spool.parent()) is not None:  # a job of an offline sweep: under its parent
        tags["mlflow.parentRunId"] = _parent_run_id(parent, client, log_progress)
    run = client.create_run(experiment_id, start_time=meta.get("start_time"), run_name=meta.get("run_name"), tags=tags)
    log_progress(f"created run {run.info.run_id} '{run.info.run_name}' in experiment {meta['experiment_name']}")
    return run.info.run_id


def _send(client, run_id, spool, ops, counts):
    from mlflow.entities import Metric, Param, RunTag

    metrics, params, tags = [], {}, {}
    for op in ops:
        kind = op["op"]
        if kind == "metrics":
            metrics += [Metric(k, v, op["timestamp"], op["step"]) for k, v in op["metrics"].items()]
        elif kind == "params":
            params.update(op["params"])
        elif kind == "tags":
            tags.update(op["tags"])
        elif kind == "artifact":
            # A directory as the live run logs it (mlflow.log_artifact): under its own name.
            client.log_artifact(run_id, str(spool.directory / op["path"]), op.get("artifact_path"))
            _count(counts, "artifacts")
        elif kind == "inputs":  # described when the run logged them (see datasets.py)
            datasets.log_inputs(client, run_id, op["datasets"])
            _count(counts, "dataset inputs", len(op["datasets"]))
        elif kind == "model":  # saved in MLflow's format when spooled; registered now
            model_id = logged_model.register(client, run_id, spool.directory / op["path"], op["step"], op["metrics"])
            _count(counts, f"logged model ({model_id})")
        elif kind == "terminate":
            client.set_terminated(run_id, op["status"], op.get("end_time"))
            _count(counts, f"final status ({op['status']})")
    if metrics or params or tags:
        client.log_batch(
            run_id,
            metrics=metrics,
            params=[Param(k, str(v)) for k, v in params.items()],
            tags=[RunTag(k, str(v)) for k, v in tags.items()],
        )
        _count(counts, "metric values", len(metrics))
        _count(counts, "params", len(params))
        _count(counts, "tags", len(tags))


def _count(counts, kind, n=1):
    if n:
        counts[kind] = counts.get(kind, 0) + n
