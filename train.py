"""kerastrack's command line: `python train.py optimizer=adam`, `python train.py -m ...`."""

import sys

import hydra
from omegaconf import DictConfig

from kerastrack.errors import ConfigError
from kerastrack.pipeline import DivergedError, train


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Trains once and returns the best monitored value, for sweepers to optimize."""
    try:
        return train(cfg)
    except (ConfigError, DivergedError) as exc:
        # One clear line instead of a traceback: the message names the key, the value
        # and what would work. Exits non-zero.
        sys.exit(f"Error: {exc}")


if __name__ == "__main__":
    main()
