"""The composed config: checks that must pass before any run is recorded (``checks``), the
fixed groups' schema (``schema``), how values go together (``links``), the monitored values
(``monitors``), the command line's overrides (``overrides``), the ``kt.*`` resolvers
(``resolvers``) and the Hydra callback that checks the run dir (``dir_check``)."""

from kerastrack.config.checks import check_config
from kerastrack.config.dir_check import DirCheck
from kerastrack.config.monitors import check_monitors, monitor_mode

__all__ = ["DirCheck", "check_config", "check_monitors", "monitor_mode"]
