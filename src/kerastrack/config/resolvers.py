"""The ``kt.*`` OmegaConf resolvers the option YAMLs use, registered on import (by
``import kerastrack``)."""

from omegaconf import OmegaConf

# Arithmetic that option YAMLs need on interpolated values (e.g. a final rate that is 1% of
# the optimizer's), which OmegaConf has no syntax for.
for _name, _fn in {"mul": lambda a, b: float(a) * float(b), "sub": lambda a, b: a - b}.items():
    if not OmegaConf.has_resolver(f"kt.{_name}"):
        OmegaConf.register_new_resolver(f"kt.{_name}", _fn)
