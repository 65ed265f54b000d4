"""Old module paths, kept importable after kerastrack's modules moved into packages.

A run recorded before the move saved its objects' ``_target_``s under the old paths (for
example ``kerastrack.surfaces.Rosenbrock``), and ``resume=`` re-creates the objects from them.
Python has no alias for a module name, so a finder on ``sys.meta_path`` answers each old name
with the module it became. ``kerastrack.sweep`` is not kept: that name is the Python API's.
"""

import importlib
import importlib.abc
import importlib.util
import sys

MOVED = {
    "kerastrack.background": "kerastrack.utils.background",
    "kerastrack.best_over": "kerastrack.report.best_over",
    "kerastrack.config_links": "kerastrack.config.links",
    "kerastrack.datafiles": "kerastrack.data.files",
    "kerastrack.feed": "kerastrack.data.feed",
    "kerastrack.files": "kerastrack.utils.files",
    "kerastrack.grouping": "kerastrack.report.grouping",
    "kerastrack.heads": "kerastrack.models.heads",
    "kerastrack.hydra_utils": "kerastrack.utils.hydra_job",
    "kerastrack.lab": "kerastrack.data.lab",
    "kerastrack.overrides": "kerastrack.config.overrides",
    "kerastrack.plots": "kerastrack.figures.curves",
    "kerastrack.probes": "kerastrack.callbacks.probes",
    "kerastrack.report_page": "kerastrack.report.page",
    "kerastrack.schedules": "kerastrack.optimizers.schedules",
    "kerastrack.search": "kerastrack.callbacks.pruning",
    "kerastrack.secrets": "kerastrack.utils.secrets",
    "kerastrack.signals": "kerastrack.utils.signals",
    "kerastrack.startup": "kerastrack.utils.startup",
    "kerastrack.stats": "kerastrack.report.stats",
    "kerastrack.stopped": "kerastrack.resume.stopped",
    "kerastrack.surfaces": "kerastrack.losses.surfaces",
    "kerastrack.sweep_dir": "kerastrack.sweeps.sweep_dir",
    "kerastrack.tracking.watchdog": "kerastrack.tracking.server_watch",
    "kerastrack.trajectories": "kerastrack.figures.trajectories",
    "kerastrack.watchdog": "kerastrack.sweeps.watchdog",
}


class _Alias(importlib.abc.Loader):
    """Loads an old name as the module it became, leaving that module's own spec in place."""

    def __init__(self, target):
        self.target = target
        self.spec = None

    def create_module(self, spec):
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module):
        module.__spec__ = self.spec  # the import system gave it the old name's spec


class MovedFinder(importlib.abc.MetaPathFinder):
    """Finds every old name of ``MOVED``."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname not in MOVED:
            return None
        return importlib.util.spec_from_loader(fullname, _Alias(MOVED[fullname]))


def install():
    """Puts the finder on ``sys.meta_path``, once."""
    if not any(isinstance(finder, MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedFinder())
