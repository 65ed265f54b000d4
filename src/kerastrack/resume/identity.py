"""A run's identity: what its results depend on (``experiment_config``, ``config_hash``), the
keys that do not count, and what it writes for ``resume=`` to find it (``save_run_info``)."""

import hashlib
import json
import os
import socket
from pathlib import Path

from omegaconf import OmegaConf

from kerastrack.utils.files import write_atomic
from kerastrack.utils.secrets import mask_secrets

STATE_DIR = "state"
# Keys that do not change what a run computes: a resumed run may differ in these, and
# sweeps match finished jobs without them.
NEUTRAL_KEYS = ("resume", "paths", "tracking", "threads", "trainer.verbose", "trainer.steps_per_execution")
# The neutral keys a resumed run takes from the invocation that resumes it, not from its record:
# the tracker is that invocation's (built from its ``tracking``), and so are its verbosity and threads.
INVOCATION_KEYS = ("resume", "tracking", "threads", "trainer.verbose")
# The run's labels (its tags and description): they do not change what it computes, so the
# hash leaves them out (a sweep matches its finished jobs whatever their notes), but they are
# the run's config: a resumed run keeps its own, and an override that changes them is refused.
LABEL_KEYS = ("tags", "notes")


def experiment_config(cfg):
    """The resolved config without hydra, NEUTRAL_KEYS and LABEL_KEYS: what a run's results depend on."""
    plain = OmegaConf.create({k: cfg[k] for k in cfg if k != "hydra"})
    if "paths" in plain:  # values derived from the output dir (checkpoint paths) must not count
        plain.paths.output_dir = "<output_dir>"
    container = OmegaConf.to_container(plain, resolve=True)
    for key in (*NEUTRAL_KEYS, *LABEL_KEYS):
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
