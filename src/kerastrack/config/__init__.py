"""The composed config: checks that must pass before any run is recorded (``checks``), how
values go together (``links``) and the command line's overrides (``overrides``)."""

from kerastrack.config.checks import DirCheck, check_config, check_monitors, monitor_mode

__all__ = ["DirCheck", "check_config", "check_monitors", "monitor_mode"]
