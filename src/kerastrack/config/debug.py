"""What a debugging preset (``debug=fast|overfit|profile``, conf/debug/) changed, said at the
run's start, and the composed config it may print.

A preset names the keys it sets (``debug.says``); their values are read from the composed
config, so that the line shows what the run uses: a key the command line set as well
(``tracking.tracking_uri=...``) shows the command line's value.
"""

from omegaconf import DictConfig, ListConfig, OmegaConf

from kerastrack.utils import secrets


def start_line(cfg, choices):
    """The line that says what the chosen debugging preset changed, or None without one.

    Args:
        cfg: The composed config.
        choices: The config-group choices (``{"debug": "fast", ...}``).

    Returns:
        E.g. ``debug=fast: trainer.epochs=1, data.limit=256, tracking.log_model=false, ...``.
    """
    spec = cfg.get("debug")
    if not isinstance(spec, DictConfig):
        return None
    said = ", ".join(f"{key}={_shown(OmegaConf.select(cfg, key))}" for key in spec.get("says") or [])
    return secrets.mask_text(f"debug={choices.get('debug', '?')}: {said}")


def config_tree(cfg):
    """The composed config, resolved and with credentials masked, as YAML, when the chosen
    debugging preset asks for it (``debug.print_config``); else None."""
    spec = cfg.get("debug")
    if not isinstance(spec, DictConfig) or not spec.get("print_config"):
        return None
    plain = OmegaConf.to_container(OmegaConf.create({k: cfg[k] for k in cfg if k != "hydra"}), resolve=True)
    return OmegaConf.to_yaml(secrets.mask_secrets(plain))


def _shown(value):
    """A value as one would type it on the command line; a group's node (``callbacks``) as
    the list of its entries."""
    if isinstance(value, DictConfig):
        return f"[{','.join(str(k) for k in value)}]"
    if isinstance(value, ListConfig):
        return f"[{','.join(str(_shown(v)) for v in value)}]"
    if isinstance(value, bool) or value is None:
        return {True: "true", False: "false", None: "null"}[value]
    return value
