"""The ``kt.*`` OmegaConf resolvers that option YAMLs use, registered when this module is
imported (``import kerastrack`` does it, so every process that composes a config has them).

They do arithmetic on interpolated values (e.g. a final rate that is 1% of the
optimizer's, or the epochs left after a warm-up), which OmegaConf has no syntax for.
"""

from omegaconf import OmegaConf

RESOLVERS = {
    "kt.mul": lambda a, b: float(a) * float(b),
    "kt.sub": lambda a, b: a - b,
}

for _name, _fn in RESOLVERS.items():
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _fn)
