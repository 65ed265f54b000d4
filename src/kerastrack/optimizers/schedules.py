"""Learning-rate schedules given in epochs, built as Keras schedules counted in steps."""

import math

from omegaconf import OmegaConf

from kerastrack.errors import ConfigError

# Users think in epochs, Keras schedules count optimizer steps, and steps per epoch are
# known only once the data and batch size are. Schedule options therefore name their
# lengths in epochs; each key here is turned into the Keras argument beside it.
EPOCH_ARGS = {
    "decay_epochs": "decay_steps",
    "warmup_epochs": "warmup_steps",
    "first_decay_epochs": "first_decay_steps",
    "boundary_epochs": "boundaries",
}


def epochs_to_steps(epochs, steps_per_epoch):
    """Rounds a length in epochs (a number or a list) to whole optimizer steps."""
    if isinstance(epochs, (list, tuple)):
        return [epochs_to_steps(e, steps_per_epoch) for e in epochs]
    return int(round(float(epochs) * steps_per_epoch))


def in_steps(cfg, steps_per_epoch):
    """A scheduler option with its lengths in optimizer steps, ready to instantiate, or None
    for a constant rate.

    Args:
        cfg: The scheduler config: empty for a constant rate, else a ``_target_`` at a
            ``keras.optimizers.schedules`` class with lengths in epochs (see EPOCH_ARGS).
        steps_per_epoch: Optimizer steps per epoch.

    Returns:
        A plain dict for ``hydra.utils.instantiate``, or None.
    """
    if not cfg or "_target_" not in cfg:
        return None
    kwargs = OmegaConf.to_container(cfg, resolve=True)
    for epoch_key, step_key in EPOCH_ARGS.items():
        if epoch_key in kwargs:
            epochs = kwargs.pop(epoch_key)
            kwargs[step_key] = epochs_to_steps(epochs, steps_per_epoch)
            _check_steps(epoch_key, epochs, kwargs[step_key], steps_per_epoch)
    return kwargs


def _check_steps(key, epochs, steps, per_epoch):
    """A length in epochs > 0 that rounds to 0 steps would divide by zero in Keras."""
    pairs = zip(epochs, steps) if isinstance(epochs, list) else [(epochs, steps)]
    if any(e > 0 and s == 0 for e, s in pairs):
        raise ConfigError(
            f"scheduler.{key} is less than one optimizer step ({per_epoch} steps per epoch); "
            f"use at least {1 / per_epoch:.3g} epochs. Received: scheduler.{key}={epochs}"
        )


def steps_per_epoch(num_samples, batch_size):
    """Optimizer steps in one pass over num_samples (Keras keeps the last partial batch)."""
    return math.ceil(num_samples / batch_size)
