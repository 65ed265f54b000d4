"""Checks of how config values go together, for ``config.check_config``: a model and the
data and loss it is given, and a value made by an interpolation from keys the user typed.
"""

import re

from omegaconf import DictConfig, OmegaConf

from kerastrack.errors import ConfigError
from kerastrack.utils.hydra_job import group_choices

# OmegaConf lists no interpolation's references: ${a.b} and ${.sibling} are what our YAMLs use.
_REFERENCE = re.compile(r"\$\{(\.?[A-Za-z_][\w.]*)\}")


def _select(cfg, path):
    node = OmegaConf.select(cfg, path)
    return node if isinstance(node, DictConfig) else OmegaConf.create({})


def _choice(cfg, group):
    return group_choices(cfg).get(group, "?")


def explain_derived(cfg, key, value, error):
    """The error of a value that an interpolation made, naming the keys it is made of
    (cosine_warmup's decay_epochs is trainer.epochs minus warmup_epochs): those were typed,
    the derived key was not.

    Args:
        cfg: The composed config.
        key: The refused key, e.g. ``scheduler.decay_epochs``.
        value: Its value.
        error: The ConfigError that refused it.

    Returns:
        A ConfigError to raise: ``error`` itself when the value was given, not derived.
    """
    parent, leaf = key.rsplit(".", 1)
    node = OmegaConf.select(cfg, parent)
    if not isinstance(node, DictConfig) or not OmegaConf.is_interpolation(node, leaf):
        return error
    raw = str(node._get_node(leaf)._value())  # the unresolved text: OmegaConf has no public reader of it
    refs = [f"{parent}{r}" if r.startswith(".") else r for r in _REFERENCE.findall(raw)]
    typed = ", ".join(f"{r}={OmegaConf.select(cfg, r)}" for r in refs) or f"{key}={value}"
    return ConfigError(
        f"{str(error).rsplit('. Received: ', 1)[0]}; it is {raw} here, which is {value}: change "
        f"{' or '.join(refs) or 'it'}. Received: {typed}"
    )


def check_model_fits_data(cfg):
    """model=cnn on a tabular data set, a 2-D surface's loss without model=point (or the
    reverse), known from the names alone."""
    from hydra.utils import get_object

    from kerastrack.data.sets import (
        TABULAR_SETS,  # scikit-learn and pandas: deferred, every process loads config
    )

    model, data, fn = _select(cfg, "model"), _select(cfg, "data"), _select(cfg, "loss").get("fn") or {}
    try:
        model_class = get_object(model._target_) if "_target_" in model else None
        surface = getattr(get_object(fn["_target_"]), "needs_position", False) if "_target_" in fn else False
    except ImportError:
        return
    if surface != getattr(model_class, "is_position", False):
        m, loss = _choice(cfg, "model"), _choice(cfg, "loss")
        raise ConfigError(
            f"a 2-D surface's loss (rosenbrock, saddle, two_minima, rastrigin) scores a position, which "
            f"model=point is, and model=point needs one. Received: loss={loss}, model={m}"
        )
    needs_images = getattr(model_class, "needs_images", False)
    target = str(data.get("_target_", ""))
    if not target.startswith("kerastrack.data.sets."):
        return  # a user's own data function: its samples' shape is known once it has loaded
    # Our YAMLs name their set (data=iris: `name: iris`); the CSV family is a set of its own.
    data_set = data.get("name", target.removeprefix("kerastrack.data.sets."))
    if needs_images and data_set in TABULAR_SETS:
        m, d = _choice(cfg, "model"), _choice(cfg, "data")
        raise ConfigError(
            f"model={m} needs image data of shape (height, width, channels); data={d} is tabular. "
            f"Use model=mlp or model=linear, or an image data set (digits, mnist, fashion_mnist, cifar10). "
            f"Received: model={m}, data={d}"
        )
