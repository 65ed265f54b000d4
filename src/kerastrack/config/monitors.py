"""The values that early stopping, checkpoints and ``best_*`` follow: which way each one
improves, and that the run logs each one."""

from omegaconf import DictConfig, OmegaConf

from kerastrack.errors import ConfigError

MONITOR_MODES = ("auto", "min", "max")


def check_monitors(cfg, logged):
    """Checks that every monitored value is one the run logs.

    Args:
        cfg: The composed config.
        logged: Names Keras will log each epoch, e.g. ``["loss", "accuracy", "val_loss"]``.

    Raises:
        ConfigError: Naming the first monitor that is never logged, and what is.
    """
    monitors = [("trainer.monitor", cfg.trainer.monitor)]
    callbacks = OmegaConf.select(cfg, "callbacks")
    for name, cb in callbacks.items() if isinstance(callbacks, DictConfig) else ():
        if isinstance(cb, DictConfig) and "monitor" in cb:
            monitors.append((f"callbacks.{name}.monitor", cb.monitor))
    for key, monitor in monitors:
        if monitor not in logged:
            raise ConfigError(
                f"{key} is never logged by this run; it logs {', '.join(logged)}. Received: {key}={monitor}"
            )


def monitor_mode(monitor, mode="auto"):
    """'max' or 'min': the direction in which the monitored value improves.

    Args:
        monitor: A logged value's name, e.g. ``val_accuracy``.
        mode: ``min``, ``max``, or ``auto``: from the name (accuracy-like names improve up).
    """
    if mode != "auto":
        return mode
    higher_is_better = ("acc", "auc", "precision", "recall", "f1")
    return "max" if any(word in monitor for word in higher_is_better) else "min"
