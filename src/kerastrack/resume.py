"""Resuming runs: the training state each run keeps, and what a resumed run may change.

Every run keeps ``<output_dir>/state/``: its whole training state, saved at the end of
every epoch (``TrainingState``), its resolved config and its MLflow run id. ``python
train.py resume=<run id or output dir>`` continues such a run in the same MLflow run from
the epoch after the last one saved; a re-launched sweep does it per job (``plan``).
"""

import hashlib
import json
import logging
import os
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from omegaconf import OmegaConf

from kerastrack.errors import ConfigError
from kerastrack.secrets import is_masked, is_secret_key, mask_override, mask_secrets, mask_value

log = logging.getLogger(__name__)
STATE_DIR = "state"
# Keys that do not change what a run computes: a resumed run may differ in these, and
# sweeps match finished jobs without them.
NEUTRAL_KEYS = ("resume", "paths", "tracking", "threads", "trainer.verbose")
# Keras callbacks' state that their on_train_begin resets (and BackupAndRestore does not keep).
CALLBACK_STATE = {
    keras.callbacks.EarlyStopping: ("wait", "stopped_epoch", "best", "best_epoch"),
    keras.callbacks.ReduceLROnPlateau: ("wait", "cooldown_counter", "best"),
    keras.callbacks.ModelCheckpoint: ("best",),
}


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
    """Writes what ``resume=`` needs to find and re-create the run: config and run id."""
    state = Path(output_dir) / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    plain = OmegaConf.create({k: cfg[k] for k in cfg if k != "hydra"})
    # No credentials on disk: resuming takes the masked values from the new invocation.
    masked = mask_secrets(OmegaConf.to_container(plain, resolve=True))
    _write_atomic(state / "config.yaml", OmegaConf.to_yaml(OmegaConf.create(masked)))
    info = {"run_id": run_id, "choices": choices, "host": socket.gethostname(), "pid": os.getpid()}
    _write_atomic(state / "run.json", json.dumps(info, indent=1))


@dataclass
class Plan:
    """What to do about a run to resume.

    Attributes:
        run_id: The MLflow run to continue (None with tracking=none).
        output_dir: Its output dir, holding ``state/``.
        config: The run's own config, with ``hydra.runtime.choices`` restored.
        finished_best: For a finished sweep job: its recorded best value (skip it).
    """

    run_id: str | None
    output_dir: Path
    config: object = None
    finished_best: float | None = None


def plan(cfg, tracker, overrides=()):
    """Decides whether this invocation continues an earlier run.

    ``resume=<run id | output dir>`` names the run. In a multirun whose sweep dir already
    has a parent run (a re-launched sweep), a job whose config matches a FINISHED child is
    skipped and one that matches a KILLED or FAILED child with a saved state resumes it.

    Args:
        cfg: The composed config.
        tracker: The run's tracker (looks runs up in the store).
        overrides: The command line's overrides (``key=value``), checked against the run.

    Returns:
        A Plan, or None to start a new run.

    Raises:
        ConfigError: The run does not exist, is FINISHED or still running, has no saved
            state, or an override would change its experiment.
    """
    target = cfg.get("resume")
    if target and getattr(tracker, "offline", False):
        raise ConfigError("resume continues a run on the tracking server; with tracking.offline=true there is "
                          "none. Upload the run's spool (python -m kerastrack.upload <output dir>), then resume "
                          f"by its run id, with the server up. Received: resume={target}")
    if target:
        return _plan_named(str(target), tracker, cfg, overrides)
    child = tracker.find_sweep_child(config_hash(cfg))
    if child is None:
        return None
    if child.status == "FINISHED":
        best = child.metrics.get(f"best_{cfg.trainer.monitor}", float("nan"))
        log.info("skipped: this job's config already FINISHED in run %s", child.run_id)
        return Plan(child.run_id, Path(child.params.get("paths.output_dir", ".")), finished_best=best)
    output_dir = Path(child.params.get("paths.output_dir", ""))
    if child.status in ("KILLED", "FAILED") and (output_dir / STATE_DIR / "run.json").is_file():
        log.info("resuming run %s (%s) of the earlier launch of this sweep", child.run_id, child.status)
        return _load(output_dir, child.run_id)
    return None


def _plan_named(target, tracker, current, overrides):
    path = Path(target).expanduser()
    if path.name == STATE_DIR:
        path = path.parent
    if path.is_dir():
        if not (path / STATE_DIR / "run.json").is_file():
            raise ConfigError(f"resume: {path} has no saved training state ({STATE_DIR}/run.json); "
                              f"give a run's output dir or its MLflow run id. Received: resume={target}")
        run_id = json.loads((path / STATE_DIR / "run.json").read_text())["run_id"]
        record = tracker.get_run(run_id) if run_id else None
        if run_id and record is None and getattr(tracker, "tracking_uri", None):
            raise ConfigError(f"resume: the run of {path} ({run_id}) is not in {tracker.tracking_uri}; point "
                              f"tracking.tracking_uri at the store it was recorded in. Received: resume={target}")
        if record is not None:
            _check_resumable(record, path, target)
    else:
        run_id = target
        record = tracker.get_run(run_id)
        if record is None:
            raise ConfigError(
                f"resume: no run {target} in {getattr(tracker, 'tracking_uri', 'the store')} and no such "
                f"directory; give a KILLED or FAILED run's id (see the MLflow UI) or its output dir. "
                f"Received: resume={target}")
        path = Path(record.params.get("paths.output_dir", ""))
        _check_resumable(record, path, target)
        if not (path / STATE_DIR / "run.json").is_file():
            raise ConfigError(f"resume: run {run_id} has no saved training state in {path / STATE_DIR} (its "
                              f"output dir was moved or deleted). Received: resume={target}")
    resumed = _load(path, run_id)
    _check_overrides(resumed.config, current, overrides, target)
    return resumed


def _check_resumable(record, output_dir, target):
    if record.status == "FINISHED":
        raise ConfigError(f"resume: run {record.run_id} is FINISHED; only KILLED or FAILED runs can be "
                          f"continued. Start a new run instead. Received: resume={target}")
    if record.status == "RUNNING":
        run_json = output_dir / STATE_DIR / "run.json"
        info = json.loads(run_json.read_text()) if run_json.is_file() else {}
        if info.get("host") != socket.gethostname() or _alive(info.get("pid")):
            raise ConfigError(f"resume: run {record.run_id} is RUNNING (process {info.get('pid')} on "
                              f"{info.get('host')}); stop it first. Received: resume={target}")
        log.warning("run %s is marked RUNNING but its process %s is gone (killed hard): resuming it",
                    record.run_id, info.get("pid"))


def _alive(pid):
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, TypeError, ValueError):
        return False
    except PermissionError:
        return True
    return True


def _load(output_dir, run_id):
    from kerastrack.tracking.spool import Spool

    spool = Spool(output_dir)
    if spool.pending():
        raise ConfigError(f"run {run_id} has tracking calls that never reached the server, in {spool.directory}; "
                          f"upload them first (python -m kerastrack.upload {output_dir}), then resume. "
                          f"Received: resume={run_id}")
    state = Path(output_dir) / STATE_DIR
    config = OmegaConf.load(state / "config.yaml")
    info = json.loads((state / "run.json").read_text())
    config.hydra = {"runtime": {"choices": info.get("choices", {})}}
    return Plan(run_id, Path(output_dir), config)


def _check_overrides(config, current, overrides, target):
    """Refuses command-line overrides that would make the resumed run another experiment:
    each overridden key must have the value (or group option) the run has."""
    from kerastrack.config import group_choices
    from kerastrack.tracking.sweep import parse_overrides

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
            f"{'; '.join(changed)}. Drop them, or start a new run. Received: {' '.join(map(mask_override, overrides))}")


class TrainingState(keras.callbacks.Callback):
    """Keeps the whole training state at the end of every epoch, and restores it, so that a
    resumed run repeats the uninterrupted one bit for bit.

    The state: every model variable (weights and the dropout layers' seed generators),
    every optimizer variable (slots, iteration count, so the schedule's step, and the
    rate ReduceLROnPlateau set), the epoch, the other callbacks' counters (early-stopping
    patience, the plateau's wait, the best value so far, the best weights) and whether one
    stopped training, and the epochs logged so far (for the run's best_* and plots).

    Written by hand rather than with ``keras.callbacks.BackupAndRestore``: that callback
    keeps neither the seed generators nor the callbacks' state, and its HDF5 write costs
    13.7 ms an epoch here (10% of a digits epoch). Here the training thread only copies
    the variables (~0.5 ms); one numpy archive is written in the background and replaces
    the previous one atomically, so a kill at any moment leaves a whole state behind.

    Goes last in the callback list: it restores after the other callbacks' on_train_begin
    resets them, and saves after their on_epoch_end updates them.

    Args:
        state_dir: Where the state lives (``<output_dir>/state``).
        callbacks: The run's other callbacks.
        logger: The run's ``EpochLogger``.
    """

    FILE = "training_state.npz"

    def __init__(self, state_dir, callbacks=(), logger=None):
        super().__init__()
        self.path = Path(state_dir) / self.FILE
        # Only the callbacks whose state Keras resets at train begin need keeping.
        self.stateful = [c for c in callbacks if type(c) in CALLBACK_STATE]
        self.logger = logger
        self._writer = None

    def on_train_begin(self, logs=None):
        if self.path.is_file():
            self._restore()

    def on_epoch_end(self, epoch, logs=None):
        stateful = self.stateful
        meta = {
            "epoch": epoch + 1,
            "stop_training": bool(self.model.stop_training),
            "epochs": self.logger.epochs if self.logger else [],
            "callbacks": [{a: _plain(getattr(c, a, None)) for a in CALLBACK_STATE[type(c)]} for c in stateful],
            "best_weights": [getattr(c, "best_weights", None) is not None for c in stateful],
        }
        arrays = [v.numpy() for v in self._variables()]
        for callback in stateful:
            arrays += list(getattr(callback, "best_weights", None) or [])
        self._wait()
        self._writer = threading.Thread(target=self._write, args=(arrays, json.dumps(meta)), name="training-state")
        self._writer.start()

    def on_train_end(self, logs=None):
        self._wait()

    def discard(self):
        """Deletes the saved state (run.json and config.yaml stay, as a record)."""
        self._wait()
        self.path.unlink(missing_ok=True)

    def _variables(self):
        optimizer = self.model.optimizer
        if not optimizer.built:  # its slots exist only after the first step
            optimizer.build(self.model.trainable_variables)
        return [*self.model.variables, *optimizer.variables]

    def _write(self, arrays, meta):
        tmp = self.path.with_name(f"{self.FILE}.tmp")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, *arrays, meta=np.array(meta))
        os.replace(tmp, self.path)

    def _wait(self):
        if self._writer is not None:
            self._writer.join()
            self._writer = None

    def _restore(self):
        with np.load(self.path) as saved:
            meta = json.loads(str(saved["meta"]))
            arrays = [saved[f"arr_{i}"] for i in range(len(saved.files) - 1)]
        variables = self._variables()
        stateful = self.stateful
        n_best = len(self.model.get_weights())
        expected = len(variables) + n_best * sum(meta["best_weights"])
        if len(arrays) != expected or any(a.shape != tuple(v.shape) for a, v in zip(arrays, variables)):
            raise ConfigError(f"the training state in {self.path} does not fit this model (another config or "
                              f"version of the code); start a new run")
        for variable, value in zip(variables, arrays):
            variable.assign(value)
        rest = arrays[len(variables):]
        for callback, values, has_best in zip(stateful, meta["callbacks"], meta["best_weights"], strict=True):
            for name, value in values.items():
                setattr(callback, name, value)
            if has_best:
                callback.best_weights, rest = rest[:n_best], rest[n_best:]
        if self.logger:
            self.logger.restore(meta["epochs"])
        log.info("resuming from the state saved after epoch %d (%s)", meta["epoch"] - 1, self.path)
        # Keras' fit starts from model._initial_epoch (what BackupAndRestore sets, too);
        # after an early stop, nothing is left to run.
        self.model._initial_epoch = 1 << 30 if meta["stop_training"] else meta["epoch"]


def _plain(value):
    return value.item() if isinstance(value, np.generic) else (float(value) if hasattr(value, "numpy") else value)


def _write_atomic(path, text):
    tmp = Path(f"{path}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
