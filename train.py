"""kerastrack's command line: `python train.py optimizer=adam`, `python train.py -m ...`."""

import logging
import math
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from kerastrack.errors import ConfigError
from kerastrack.pipeline import DivergedError, train
from kerastrack.secrets import mask_text

log = logging.getLogger("kerastrack")


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Trains once and returns the best monitored value, for sweepers to optimize."""
    try:
        return train(cfg)
    except KeyboardInterrupt:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            raise  # the sweep stops; its parent and this job's run are closed KILLED
        # The run is closed KILLED with its state saved: say how to go on, not a traceback.
        print(f"Interrupted: the run is KILLED. Continue it with: python train.py resume={cfg.paths.output_dir}",
              file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        if HydraConfig.get().mode == RunMode.MULTIRUN:
            # One failed job must not abort the sweep: its run is already recorded as
            # FAILED (or KILLED when a search pruned it), the sweep callback counts it and
            # the sweep exits non-zero at the end if any job failed.
            if type(exc).__name__ == "TrialPruned":
                log.info("trial pruned: %s", exc)
            else:
                log.error("job failed: %s: %s", type(exc).__name__, exc,
                          exc_info=not isinstance(exc, (ConfigError, DivergedError)))
            return math.nan
        if isinstance(exc, (ConfigError, DivergedError)):
            # One clear line instead of a traceback: the message names the key, the value
            # and what would work. Exits non-zero.
            sys.exit(f"Error: {mask_text(str(exc))}")
        raise


if __name__ == "__main__":
    main()
