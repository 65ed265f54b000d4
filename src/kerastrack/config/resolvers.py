"""The ``kt.*`` OmegaConf resolvers that option YAMLs use, registered when this module is
imported (``import kerastrack`` does it, so every process that composes a config has them).

They do arithmetic on interpolated values (e.g. a final rate that is 1% of the
optimizer's, or the epochs left after a warm-up), which OmegaConf has no syntax for, and name
the dir of the invocation, run or sweep, which Hydra's own ``${hydra:...}`` cannot in one value.
"""

from omegaconf import OmegaConf


def invocation_dir():
    """The dir Hydra made for this invocation, as it names it (relative to the launch dir): a
    single run's run dir, or a sweep's dir, which its jobs and its parent run share (a job's
    ``${hydra:runtime.output_dir}`` is its own, and the sweep's launching process has none)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    return str(hydra_cfg.sweep.dir if hydra_cfg.mode == RunMode.MULTIRUN else hydra_cfg.run.dir)


RESOLVERS = {
    "kt.mul": lambda a, b: float(a) * float(b),
    "kt.sub": lambda a, b: a - b,
    "kt.invocation_dir": invocation_dir,  # debug=fast's throwaway store
}

for _name, _fn in RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)
