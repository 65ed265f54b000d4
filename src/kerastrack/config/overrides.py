"""Checks on the command line's overrides themselves, which the composed config cannot show.

Hydra refuses ``trainer.epoch=3`` (no such key) and suggests ``+trainer.epoch=3``, which
adds the key: nothing reads it, the run trains the default epochs and records the typo as
a param. Keys handed to a Keras class or function are checked by it (or by
``config.checks._check_arguments``); the top level and the groups below are read by kerastrack
itself, so a key added there is refused here, with the close match difflib finds. A key
removed there with ``~`` is one kerastrack needs (``~seed``), refused too.
"""

import difflib

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from kerastrack.errors import ConfigError
from kerastrack.utils.hydra_job import code_dir, parse_overrides, task_overrides
from kerastrack.utils.secrets import is_secret_key

# Groups with one fixed set of keys, which kerastrack reads (not a Keras object's arguments).
FIXED_GROUPS = ("trainer", "paths")


def check_overrides(cfg, overrides=None):
    """Refuses keys added (``+``, ``++``) or removed (``~``) at the top level or in FIXED_GROUPS.

    A key that names a credential (``+db_password=...``, see ``secrets.is_secret_key``) may be
    added anywhere: it is there for interpolations (``${db_password}``) to use.

    Args:
        cfg: The composed config (its ``hydra`` node tells the config groups).
        overrides: Override strings; None: the running job's.

    Raises:
        ConfigError: Naming the key, the close match if there is one, and the override.
    """
    # The job's config has no hydra node under @hydra.main (a test's compose has one): then HydraConfig's.
    choices = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    groups = set(choices or (HydraConfig.get().runtime.choices if HydraConfig.initialized() else {}))
    for _, override in parse_overrides(task_overrides() if overrides is None else overrides):
        key = override.key_or_group
        parts = key.split(".")
        # A group given as a list (callbacks=[default,model_checkpoint]) or removed (~data) is
        # not among Hydra's choices: its folder in the config dir tells.
        in_group = parts[0] in groups or (code_dir() / parts[0]).is_dir()
        whole_group = in_group and len(parts) == 1 and override.is_delete()
        if parts[0] == "hydra" or (in_group and parts[0] not in FIXED_GROUPS and not whole_group):
            continue  # Hydra's own settings; options and their Keras arguments, checked where built
        node, name = ("", parts[0]) if parts[0] not in FIXED_GROUPS else (parts[0], parts[1] if len(parts) > 1 else "")
        typed = override.input_line or key
        if override.is_delete():
            # A group removed is no longer among the choices: its folder in the config dir tells.
            _refuse_removal(key, key in groups or (code_dir() / key).is_dir(), typed)
        elif (override.is_add() or override.is_force_add()) and name and not is_secret_key(key):
            _check_added(cfg, node, name, key, typed, forced=override.is_force_add())


def _refuse_removal(key, is_group, typed):
    what = f"choose one of its options instead (conf/{key}/)" if is_group else f"set it instead: {key}=<value>"
    raise ConfigError(f"{key} cannot be removed: kerastrack reads it; {what}. Received: {typed}")


def _check_added(cfg, node, name, key, typed, forced):
    parent = OmegaConf.select(cfg, node) if node else cfg
    known = [str(k) for k in (parent.keys() if isinstance(parent, DictConfig) else ()) if str(k) not in (name, "hydra")]
    # ++ sets a key on purpose, and whether it was there before cannot be told from the composed
    # config: only a near-miss of a known key (epoch, epochs) is taken for a typo here; any other
    # key of a group with a schema is refused by config.schema, naming the key but not the override.
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8 if forced else 0.6)
    if forced and not close:
        return
    where = f"a key of {node}" if node else "a top-level key"
    prefix = f"{node}." if node else ""
    hint = f"did you mean {prefix}{close[0]}?" if close else f"it has {', '.join(known)}."
    raise ConfigError(
        f"{key} is not {where}: nothing would read it (and its default would be used); {hint} Received: {typed}"
    )
