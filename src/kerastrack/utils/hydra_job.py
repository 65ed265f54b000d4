"""What Hydra knows about the running job: where it started, its sweep, its overrides and
group choices. The one module that asks Hydra's global state; it imports nothing of
kerastrack, so every layer may use it.

Outside a Hydra app (tests, ``python -m kerastrack.report``) each answer falls back to
what the process itself knows.
"""

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.types import RunMode
from omegaconf import OmegaConf


def launch_dir():
    """The directory ``python train.py`` was started in, even under hydra.job.chdir=true."""
    if HydraConfig.initialized():
        return Path(HydraConfig.get().runtime.cwd)
    return Path.cwd()


def code_dir():
    """The directory of the experiment's code, whose git state the run records: the user's
    config dir (``--config-dir``; its repository holds their models and data functions), else
    a primary config in a folder, else the launch directory (where ``_target_`` finds their
    modules; kerastrack's own configs live in the package)."""
    if HydraConfig.initialized():
        sources = HydraConfig.get().runtime.config_sources
        for provider in ("command-line", "main"):
            for source in sources:
                if source.provider == provider and source.schema == "file":
                    return Path(source.path)
    return launch_dir()


def in_multirun():
    """Whether this process runs a job of a sweep (``-m``)."""
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_dir(hydra_cfg=None):
    """The sweep dir as an absolute path (Hydra's is relative to the launch dir).

    Args:
        hydra_cfg: The ``hydra`` node of a config; None: the running job's.
    """
    hydra_cfg = hydra_cfg or HydraConfig.get()
    cwd = OmegaConf.select(hydra_cfg, "runtime.cwd", default=None) or Path.cwd()
    return str((Path(cwd) / str(hydra_cfg.sweep.dir)).resolve())


def job_num():
    """The running job's number in its sweep."""
    return HydraConfig.get().job.num


def task_overrides(resolve=False):
    """The command line's overrides of the running job (``key=value`` strings), as typed:
    unresolved by default ("+api_token=${oc.env:MY_TOKEN}" fails to resolve without
    MY_TOKEN). Empty outside a Hydra app."""
    if not HydraConfig.initialized():
        return []
    return OmegaConf.to_container(HydraConfig.get().overrides.task, resolve=resolve)


def parse_overrides(overrides):
    """(key, override) pairs of Hydra override strings, sweeps included; the value as
    written is ``override.get_value_element_as_str()``."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [(o.get_key_element(), o) for o in parsed]


def group_choices(cfg):
    """The option chosen in each config group, e.g. {"optimizer": "adam"}: from the config's
    own ``hydra.runtime.choices`` (a resumed run's), else the running job's."""
    choices = dict(OmegaConf.select(cfg, "hydra.runtime.choices") or {})
    if not choices and HydraConfig.initialized():
        choices = dict(HydraConfig.get().runtime.choices)
    return {k: str(v) for k, v in choices.items() if not k.startswith("hydra") and v is not None}
