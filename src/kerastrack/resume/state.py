"""A run's state dir as ``resume=`` reads it: ``state/run.json`` (its run id, group choices,
host and process), ``state/config.yaml`` (its resolved config, masked) and the training state
archive (``SavedState``). Read once (``read_dir``), each file as it is or why it cannot be used;
``load`` checks what a resumed run needs of them."""

import json
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import psutil
from omegaconf import DictConfig, OmegaConf

from kerastrack.callbacks.recording import TrainingState
from kerastrack.errors import ConfigError
from kerastrack.resume.identity import STATE_DIR
from kerastrack.resume.lock import in_use
from kerastrack.tracking.spool import Spool


@dataclass(frozen=True)
class Unreadable:
    """A state file that is there but cannot be used: why, without the ``Received:`` part,
    which says what asked for it (``error``)."""

    message: str

    def error(self, received):
        return ConfigError(f"{self.message} Received: {received}")


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


@dataclass(frozen=True)
class RunDir:
    """What a run's output dir holds, read at one moment (``read_dir``).

    Attributes:
        path: The output dir.
        info: ``state/run.json`` as a dict, an ``Unreadable``, or None when there is none.
        config: ``state/config.yaml`` as a DictConfig, an ``Unreadable``, or None.
        saved: The training state (``SavedState``), an ``Unreadable``, or None.
        pending: The spool directory when it holds calls that never reached the server, else None.
        held: Whether a process holds the dir's run lock.
        alive: Whether run.json's process still runs on this machine.
    """

    path: Path
    info: object
    config: object
    saved: object
    pending: Path | None
    held: bool
    alive: bool

    @property
    def state(self):
        return self.path / STATE_DIR


@dataclass(frozen=True)
class Kept:
    """What a resumed run continues from: its own config, its group choices, and its
    training state (None: it starts its training over from the first epoch)."""

    config: DictConfig
    choices: dict
    saved: SavedState | None


def read_dir(output_dir):
    """Reads ``output_dir``'s state files once, keeping what is wrong with each (a RunDir)."""
    path = Path(output_dir)
    state = path / STATE_DIR
    info = _read_json(state / "run.json")
    spool = Spool(path)
    alive = (
        isinstance(info, dict)
        and info.get("host") == socket.gethostname()
        and isinstance(info.get("pid"), int)
        and psutil.pid_exists(info["pid"])
    )
    return RunDir(
        path=path,
        info=info,
        config=_read_yaml(state / "config.yaml"),
        saved=_read_archive(state / TrainingState.FILE),
        pending=spool.directory if spool.pending() else None,
        held=in_use(path),
        alive=alive,
    )


def need(value, received, missing=None):
    """The file's content; its error, when it is Unreadable; ``missing`` when there is none."""
    if isinstance(value, Unreadable):
        raise value.error(received)
    return missing if value is None else value


def load(run_dir, run_id, received, fallback_config=None, fallback_choices=None):
    """Checks everything a resumed run needs of its state dir, before the run is reopened.

    Args:
        run_dir: The run's output dir as read (``read_dir``).
        run_id: The run it must belong to (None with tracking=none).
        received: What asked for it, for the error line (``resume=...``).
        fallback_config: A config equal to the run's in everything it computes (a sweep
            job's own), standing in for a lost config.yaml; and its ``fallback_choices``.

    Returns:
        What the run continues from (``Kept``).

    Raises:
        ConfigError: Why the run cannot be continued from ``run_dir``.
    """
    if run_dir.pending is not None:
        raise ConfigError(
            f"run {run_id} has tracking calls that never reached the server, in {run_dir.pending}; "
            f"upload them first (python -m kerastrack.upload {run_dir.path}), then resume. "
            f"Received: {received}"
        )
    info = need(run_dir.info, received, missing={})
    if run_id and info.get("run_id") not in (None, run_id):
        raise ConfigError(
            f"resume: the state in {run_dir.state} belongs to run {info['run_id']}, not to run {run_id}: a run "
            f"continues only from its own state. Received: {received}"
        )
    if run_dir.config is not None or fallback_config is None:
        config = need(run_dir.config, received)
        if config is None:
            raise ConfigError(
                f"resume: the run's config {run_dir.state / 'config.yaml'} is missing, so it cannot be continued "
                f"with its own config. Start a new run. Received: {received}"
            )
        config = config.copy()  # the settled config is built on it: the read one stays as read
    else:
        config = OmegaConf.create({k: fallback_config[k] for k in fallback_config if k != "hydra"})
    choices = info.get("choices") or dict(fallback_choices or {})
    return Kept(config, choices, need(run_dir.saved, received))


def check_on_record(kept, run_id, steps, state, received):
    """Refuses to start a run's training over when epochs after its first are on record:
    the state is saved after the first epoch, so without one, only a run stopped before its
    first save (within epoch 0) may start over in the same run (epoch 0 is recomputed, and
    not logged twice).

    Args:
        kept: What the run continues from (``load``).
        run_id: The run.
        steps: What the store has of it: metric key -> steps.
        state: Its state dir, for the message.
        received: What asked for it.
    """
    if kept.saved is None and run_id and any(s >= 1 for key in ("loss", "epoch_time_s") for s in steps.get(key, ())):
        raise ConfigError(
            f"resume: run {run_id} has epochs on record but its training state {state / TrainingState.FILE} is "
            f"missing, so it cannot continue where it stopped (starting over would log its epochs twice). Start "
            f"a new run in another output dir. Received: {received}"
        )


def read_state(path, received):
    """The training state archive at ``path``, checked, or None if there is none.

    Raises:
        ConfigError: The archive is damaged (truncated, not an archive, bad meta).
    """
    return need(_read_archive(Path(path)), received)


def _read_archive(path):
    if not path.is_file():
        return None
    try:
        with np.load(path) as archive:
            meta = json.loads(str(archive["meta"]))
            arrays = [archive[f"arr_{i}"] for i in range(len(archive.files) - 1)]
        if not {"epoch", "epochs", "callbacks", "best_weights"} <= meta.keys():
            raise ValueError("its meta lacks keys")
    except Exception as exc:  # noqa: BLE001 - zipfile, numpy and json raise many types for a broken file
        return Unreadable(
            f"resume: the training state {path} is damaged ({_reason(exc)}); the run cannot be "
            f"continued from it. Start a new run in another output dir (its epochs so far stay on "
            f"record)."
        )
    return SavedState(path, arrays, meta)


def _read_json(path):
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return Unreadable(
            f"resume: {path} is damaged ({_reason(exc)}); the run cannot be continued from it. "
            f"Start a new run in another output dir."
        )


def _read_yaml(path):
    if not path.is_file():
        return None
    try:
        config = OmegaConf.load(path)
    except Exception as exc:  # noqa: BLE001 - yaml and OmegaConf raise many types for a broken file
        return Unreadable(
            f"resume: the run's config {path} is damaged ({_reason(exc)}); the run cannot be "
            f"continued. Start a new run."
        )
    if not isinstance(config, DictConfig) or "trainer" not in config:
        return Unreadable(
            f"resume: {path} is not a kerastrack run config; the run cannot be continued. Start a new run."
        )
    return config


def _reason(exc):
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) < 200 else text[:200] + "..."
