"""kerastrack's command line: `python train.py optimizer=adam`, `python train.py -m ...`."""

import signal
import sys


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# SIGTERM (kill, a scheduler) stops this process the way Ctrl-C does, from the first line:
# whatever was reached is closed in a true state and said in one line, never a traceback.
signal.signal(signal.SIGTERM, _interrupt)
# kerastrack.utils.signals.NOTHING_RECORDED, written out: it is said before kerastrack is imported.
NOTHING_RECORDED = "Interrupted before the run opened: no run was recorded."
try:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig

    from kerastrack.errors import ConfigError, DiskFull, DivergedError
    from kerastrack.sweeps.callback import report_interrupted
    from kerastrack.sweeps.job import job
    from kerastrack.utils import startup
    from kerastrack.utils.secrets import mask_stderr, mask_text
    from kerastrack.utils.signals import interrupted_line
except KeyboardInterrupt:
    print(NOTHING_RECORDED, file=sys.stderr)
    sys.exit(130)

mask_stderr()  # what Hydra and Python print of an error (the overrides, a traceback) keeps no password
startup.quiet_tensorflow()  # before TensorFlow is imported; TF_CPP_MIN_LOG_LEVEL=0 shows its lines


@hydra.main(version_base="1.3", config_path="conf", config_name="train")
def main(cfg: DictConfig) -> float:
    """Trains once and returns the best monitored value, for sweepers to optimize."""
    # Imported here, not above: TensorFlow takes seconds to import, and a sweep's launching
    # process, which trains nothing when jobs run in workers, does without it.
    with startup.loading_tensorflow():
        from kerastrack.pipeline import train

    if HydraConfig.get().mode == RunMode.MULTIRUN:
        return job(train, cfg)  # a failed job does not stop the sweep; an interrupt does
    try:
        return train(cfg)
    except KeyboardInterrupt as exc:
        print(interrupted_line(exc), file=sys.stderr)
        sys.exit(130)
    except (ConfigError, DivergedError, DiskFull) as exc:
        # One clear line instead of a traceback: the message names the key, the value
        # and what would work (or what is kept and how to go on). Exits non-zero.
        sys.exit(f"Error: {mask_text(str(exc))}")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # before the run (composing the config) or between sweep jobs
        if not report_interrupted():
            print(NOTHING_RECORDED, file=sys.stderr)
        sys.exit(130)
