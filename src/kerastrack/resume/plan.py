"""Resuming runs: the training state each run keeps, and what a resumed run may change.

Every run keeps ``<output_dir>/state/``: its whole training state, saved after the first
epoch, then every few seconds and where training stops (``TrainingState``), its resolved
config and its MLflow run id. ``python train.py resume=<run id or output dir>`` continues such a run in the same
MLflow run from the epoch after the last one saved; a re-launched sweep does it per job
(``plan``).
"""

import contextlib
import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from filelock import FileLock, Timeout
from omegaconf import DictConfig, OmegaConf

from kerastrack.callbacks.recording import TrainingState
from kerastrack.errors import ConfigError, RunHeld
from kerastrack.tracking.spool import Spool
from kerastrack.utils.files import write_atomic
from kerastrack.utils.hydra_job import group_choices, parse_overrides
from kerastrack.utils.secrets import is_masked, is_secret_key, mask_override, mask_secrets, mask_value

log = logging.getLogger(__name__)
STATE_DIR = "state"
# Keys that do not change what a run computes: a resumed run may differ in these, and
# sweeps match finished jobs without them.
NEUTRAL_KEYS = ("resume", "paths", "tracking", "threads", "trainer.verbose", "trainer.steps_per_execution")


def experiment_config(cfg):
    """The resolved config without hydra and NEUTRAL_KEYS: what a run's results depend on."""
    plain = OmegaConf.create({k: cfg[k] for k in cfg if k != "hydra"})
    if "paths" in plain:  # values derived from the output dir (checkpoint paths) must not count
        plain.paths.output_dir = "<output_dir>"
    container = OmegaConf.to_container(plain, resolve=True)
    for key in NEUTRAL_KEYS:
        *parents, last = key.split(".")
        node = container
        for part in parents:
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if isinstance(node, dict):
            node.pop(last, None)
    return mask_secrets(container)  # the hash goes on record: it must not reveal a credential either


def config_hash(cfg):
    """A short hash of ``experiment_config(cfg)``: equal configs, equal hashes."""
    text = json.dumps(experiment_config(cfg), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_run_info(output_dir, cfg, choices, run_id):
    """Writes what resume= needs (config, run id); returns {file name: text} (``TrainingState.beside``)."""
    state = Path(output_dir) / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    plain = OmegaConf.create({k: cfg[k] for k in cfg if k != "hydra"})
    # No credentials on disk: resuming takes the masked values from the new invocation.
    masked = mask_secrets(OmegaConf.to_container(plain, resolve=True))
    info = {"run_id": run_id, "choices": choices, "host": socket.gethostname(), "pid": os.getpid()}
    files = {"config.yaml": OmegaConf.to_yaml(OmegaConf.create(masked)), "run.json": json.dumps(info, indent=1)}
    for name, text in files.items():
        write_atomic(state / name, text)
    return files


@dataclass
class Plan:
    """What to do about a run to resume.

    Attributes:
        run_id: The MLflow run to continue (None with tracking=none).
        output_dir: Its output dir, holding ``state/``.
        config: The run's own config, with ``hydra.runtime.choices`` restored.
        finished_best: For a finished sweep job: its recorded best value (skip it).
        saved: The training state to continue from (``SavedState``), or None to start the
            run's training from its first epoch (it was stopped before one was saved).
    """

    run_id: str | None
    output_dir: Path
    config: object = None
    finished_best: float | None = None
    saved: object = None


@dataclass
class SavedState:
    """A training state read from disk: the ``TrainingState`` archive's arrays and meta."""

    path: Path
    arrays: list
    meta: dict

    @property
    def epochs(self):
        """One dict per finished epoch, as the run logged them."""
        return self.meta["epochs"]


def check_target(target):
    """Refuses an empty ``resume=`` (Hydra reads it as ""): it would start a new run silently."""
    if target is not None and not str(target).strip():
        raise ConfigError(
            "resume= needs the run to continue: its MLflow run id or its output dir (e.g. resume=outputs/"
            f"2026-11-21/16-42-07); leave resume out to start a new run. Received: resume={target}"
        )


def plan(cfg, tracker, overrides=()):
    """Decides whether this invocation continues an earlier run.

    ``resume=<run id | output dir>`` names the run. In a multirun whose sweep dir already
    has a parent run (a re-launched sweep), a job whose config matches a FINISHED child is
    skipped, and one that matches a KILLED or FAILED child, or a RUNNING one whose process
    is gone, continues it in place.

    Args:
        cfg: The composed config.
        tracker: The run's tracker (looks runs up in the store).
        overrides: The command line's overrides (``key=value``), checked against the run.

    Returns:
        A Plan, or None to start a new run.

    Raises:
        ConfigError: The run does not exist, is FINISHED or still running, its saved
            state is damaged or missing, or an override would change its experiment.
    """
    target = cfg.get("resume")
    if target and getattr(tracker, "offline", False):
        raise ConfigError(
            "resume continues a run on the tracking server; with tracking.offline=true there is "
            "none. Upload the run's spool (python -m kerastrack.upload <output dir>), then resume "
            f"by its run id, with the server up. Received: resume={target}"
        )
    if target:
        return _plan_named(str(target), tracker, cfg, overrides)
    child = tracker.find_sweep_child(config_hash(cfg))
    if child is None:
        return None
    output_dir = Path(child.params.get("paths.output_dir", ""))
    if child.status == "FINISHED":
        best = child.metrics.get(f"best_{cfg.trainer.monitor}", float("nan"))
        log.info("skipped: this job's config already FINISHED in run %s", child.run_id)
        return Plan(child.run_id, output_dir, finished_best=best)
    received = f"the re-launched sweep's job for run {child.run_id}"
    if child.status == "RUNNING":
        _check_abandoned(child.run_id, output_dir, received)
    log.info("continuing run %s (%s) of the earlier launch of this sweep", child.run_id, child.status)
    # The job's own config is the run's (equal hashes): it stands in for a lost config.yaml.
    return load(output_dir, child.run_id, tracker, received, fallback_config=cfg)


def _plan_named(target, tracker, current, overrides):
    path = Path(target).expanduser()
    if path.name == STATE_DIR:
        path = path.parent
    received = f"resume={target}"
    if path.is_dir():
        run_json = path / STATE_DIR / "run.json"
        if not run_json.is_file():
            raise ConfigError(
                f"resume: {path} has no saved training state ({STATE_DIR}/run.json); "
                f"give a run's output dir or its MLflow run id. Received: {received}"
            )
        run_id = _read_json(run_json, received).get("run_id")
        record = tracker.get_run(run_id) if run_id else None
        if run_id and record is None and getattr(tracker, "tracking_uri", None):
            raise ConfigError(
                f"resume: the run of {path} ({run_id}) is not in {tracker.tracking_uri}; point "
                f"tracking.tracking_uri at the store it was recorded in. Received: {received}"
            )
        if record is not None:
            _check_resumable(record, path, received)
    else:
        run_id = target
        record = tracker.get_run(run_id)
        if record is None:
            raise ConfigError(
                f"resume: no run {target} in {getattr(tracker, 'tracking_uri', 'the store')} and no such "
                f"directory; give a KILLED or FAILED run's id (see the MLflow UI) or its output dir. "
                f"Received: {received}"
            )
        path = Path(record.params.get("paths.output_dir", ""))
        _check_resumable(record, path, received)
        if not (path / STATE_DIR / "run.json").is_file():
            raise ConfigError(
                f"resume: run {run_id} has no saved training state in {path / STATE_DIR} (its "
                f"output dir was moved or deleted). Received: {received}"
            )
    resumed = load(path, run_id, tracker, received)
    _check_overrides(resumed.config, current, overrides, target)
    return resumed


def _check_resumable(record, output_dir, received):
    if record.status == "FINISHED":
        raise ConfigError(
            f"resume: run {record.run_id} is FINISHED; only KILLED or FAILED runs can be "
            f"continued. Start a new run instead. Received: {received}"
        )
    if record.status == "RUNNING":
        _check_abandoned(record.run_id, output_dir, received)


def _check_abandoned(run_id, output_dir, received):
    """A RUNNING run may be continued only when no process is running it any more (it was
    killed hard, with no chance to close it)."""
    info = _read_json(output_dir / STATE_DIR / "run.json", received, missing={})
    if in_use(output_dir) or (
        info.get("host") == socket.gethostname() and isinstance(info.get("pid"), int) and psutil.pid_exists(info["pid"])
    ):
        raise RunHeld(
            f"resume: run {run_id} is RUNNING (process {info.get('pid')} on {info.get('host')}); "
            f"stop it first, or wait for it to end. Received: {received}",
            f"run {run_id} (process {info.get('pid')} on {info.get('host')})",
        )
    if info.get("host") not in (None, socket.gethostname()):
        raise ConfigError(
            f"resume: run {run_id} is RUNNING on {info.get('host')}; kerastrack cannot tell from "
            f"here whether its process is gone. Resume it on that machine. Received: {received}"
        )
    log.warning(
        "run %s is marked RUNNING but its process %s is gone (killed hard): continuing it", run_id, info.get("pid")
    )


def load(output_dir, run_id, tracker, received, fallback_config=None):
    """Reads and checks everything a resumed run needs, before the run is reopened: the Plan,
    or a ConfigError saying why the run cannot be continued from ``output_dir``."""
    spool = Spool(output_dir)
    if spool.pending():
        raise ConfigError(
            f"run {run_id} has tracking calls that never reached the server, in {spool.directory}; "
            f"upload them first (python -m kerastrack.upload {output_dir}), then resume. "
            f"Received: {received}"
        )
    state = Path(output_dir) / STATE_DIR
    info = _read_json(state / "run.json", received, missing={})
    if run_id and info.get("run_id") not in (None, run_id):
        raise ConfigError(
            f"resume: the state in {state} belongs to run {info['run_id']}, not to run {run_id}: a run "
            f"continues only from its own state. Received: {received}"
        )
    if (state / "config.yaml").is_file() or fallback_config is None:
        config = _read_yaml(state / "config.yaml", received)
    else:
        config = OmegaConf.create({k: fallback_config[k] for k in fallback_config if k != "hydra"})
    choices = info.get("choices") or (group_choices(fallback_config) if fallback_config is not None else {})
    config.hydra = {"runtime": {"choices": choices}}
    saved = read_state(state / TrainingState.FILE, received)
    if saved is None and run_id and _epochs_on_record(tracker.metric_steps(run_id)):
        raise ConfigError(
            f"resume: run {run_id} has epochs on record but its training state {state / TrainingState.FILE} is "
            f"missing, so it cannot continue where it stopped (starting over would log its epochs twice). Start "
            f"a new run in another output dir. Received: {received}"
        )
    return Plan(run_id, Path(output_dir), config, saved=saved)


def _epochs_on_record(steps):
    """Whether epochs after the first are on record: the state is saved after the first epoch,
    so without one, only a run stopped before its first save (within epoch 0) may start
    over in the same run (epoch 0 is recomputed, and not logged twice)."""
    return any(step >= 1 for key in ("loss", "epoch_time_s") for step in steps.get(key, ()))


def _read_json(path, received, missing=None):
    if not path.is_file():
        if missing is not None:
            return missing
        raise ConfigError(
            f"resume: {path} is missing; the run's saved state is incomplete and cannot be "
            f"continued. Start a new run. Received: {received}"
        )
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"resume: {path} is damaged ({_reason(exc)}); the run cannot be continued from it. "
            f"Start a new run in another output dir. Received: {received}"
        ) from None


def _read_yaml(path, received):
    if not path.is_file():
        raise ConfigError(
            f"resume: the run's config {path} is missing, so it cannot be continued with its own "
            f"config. Start a new run. Received: {received}"
        )
    try:
        config = OmegaConf.load(path)
    except Exception as exc:  # noqa: BLE001 - yaml and OmegaConf raise many types for a broken file
        raise ConfigError(
            f"resume: the run's config {path} is damaged ({_reason(exc)}); the run cannot be "
            f"continued. Start a new run. Received: {received}"
        ) from None
    if not isinstance(config, DictConfig) or "trainer" not in config:
        raise ConfigError(
            f"resume: {path} is not a kerastrack run config; the run cannot be continued. "
            f"Start a new run. Received: {received}"
        )
    return config


def read_state(path, received):
    """The training state archive at ``path``, checked, or None if there is none.

    Raises:
        ConfigError: The archive is damaged (truncated, not an archive, bad meta).
    """
    path = Path(path)
    if not path.is_file():
        return None
    try:
        with np.load(path) as archive:
            meta = json.loads(str(archive["meta"]))
            arrays = [archive[f"arr_{i}"] for i in range(len(archive.files) - 1)]
        if not {"epoch", "epochs", "callbacks", "best_weights"} <= meta.keys():
            raise ValueError("its meta lacks keys")
    except Exception as exc:  # noqa: BLE001 - zipfile, numpy and json raise many types for a broken file
        raise ConfigError(
            f"resume: the training state {path} is damaged ({_reason(exc)}); the run cannot be "
            f"continued from it. Start a new run in another output dir (its epochs so far stay on "
            f"record). Received: {received}"
        ) from None
    return SavedState(path, arrays, meta)


def _reason(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."


def in_use(output_dir):
    """Whether a process holds the run lock of ``output_dir`` (a run or a resume in it)."""
    lock_path = Path(output_dir) / STATE_DIR / "lock"
    if not lock_path.exists():
        return False
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


@contextlib.contextmanager
def claim(output_dir, tracker, resumed=None):
    """Holds the output dir's run lock while a run trains in it, after checking that a new
    run may start there.

    A second process continuing the same run, or training into the same dir, is refused
    (its record would interleave with this one's). A new run is refused where another
    run's state is saved: only ``resume=`` may continue that, and a fresh start must not
    overwrite it (or, worse, train on from it).

    Raises:
        ConfigError: The lock is held, or the dir holds another run's unfinished state.
    """
    state = Path(output_dir) / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    lock = FileLock(state / "lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        what = f"resume={resumed.run_id or output_dir}" if resumed else f"paths.output_dir={output_dir}"
        raise RunHeld(
            f"another process is training in {output_dir} right now (it holds {state / 'lock'}): "
            f"two processes must not write one run. Wait for it to end, or stop it. "
            f"Received: {what}",
            f"{f'run {resumed.run_id}' if resumed else 'the run'} in {output_dir} (its lock)",
        ) from None
    try:
        if resumed is None:
            _check_fresh(state, tracker, output_dir)
        yield
    finally:
        lock.release()


def _check_fresh(state, tracker, output_dir):
    archive = state / TrainingState.FILE
    if not archive.is_file():
        return
    info = _read_json(state / "run.json", f"paths.output_dir={output_dir}", missing={})
    run_id = info.get("run_id")
    record = tracker.get_run(run_id) if run_id else None
    if record is not None and record.status == "FINISHED":  # a finished run's leftover: dead weight
        archive.unlink(missing_ok=True)
        return
    whose = f"run {run_id} ({record.status})" if record is not None else f"run {run_id}" if run_id else "a run"
    raise ConfigError(
        f"the output dir {output_dir} holds the saved training state of {whose}, which only resume= may continue: "
        f"python train.py resume={output_dir}. To start a new run, use another output dir (hydra.run.dir=... or "
        f"paths.output_dir=...) or delete {state}. Received: paths.output_dir={output_dir}"
    )


def _check_overrides(config, current, overrides, target):
    """Refuses command-line overrides that would make the resumed run another experiment:
    each overridden key must have the value (or group option) the run has."""
    changed = []
    recorded_choices, current_choices = config.hydra.runtime.choices, group_choices(current)
    keys = dict.fromkeys(key.lstrip("+~") for key, _ in parse_overrides(overrides))
    for key in keys:
        if any(key == k or key.startswith(f"{k}.") for k in NEUTRAL_KEYS) or key.startswith("hydra"):
            continue
        if is_secret_key(key):  # masked in the state, see below
            continue
        if key in recorded_choices or key in current_choices:
            recorded, value = recorded_choices.get(key), current_choices.get(key)
        else:
            recorded = OmegaConf.select(config, key, default="<absent>")
            value = OmegaConf.select(current, key, default="<absent>")
        if is_masked(recorded):  # a secret: pipeline._resumed_config takes (and checks) this invocation's
            continue
        if recorded != value:
            changed.append(f"{key}={mask_value(key, value)} (the run has {mask_value(key, recorded)})")
    if changed:
        raise ConfigError(
            f"resume continues run {target} with its own config; these overrides would change the experiment: "
            f"{'; '.join(changed)}. Drop them, or start a new run. Received: {' '.join(map(mask_override, overrides))}"
        )
