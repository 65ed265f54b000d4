"""The composed config: checks that must pass before any run is recorded (``checks``), how
values go together (``links``), the command line's overrides (``overrides``), the ``kt.*``
resolvers (``resolvers``) and the run dir's check (``dir_check``)."""

from kerastrack.config.checks import check_config, check_monitors, monitor_mode
from kerastrack.config.dir_check import DirCheck

__all__ = ["DirCheck", "check_config", "check_monitors", "monitor_mode"]
