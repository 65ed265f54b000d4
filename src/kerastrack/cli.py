"""The ``kerastrack`` command (and the checkout's ``python train.py``, which calls it):
``kerastrack optimizer=adam``, ``kerastrack -m optimizer=sgd,adam``,
``kerastrack --config-dir conf model=my_net``.

It owns what a process started from a shell needs and a notebook must not get: SIGTERM
stops it the way Ctrl-C does, a user's mistake is one ``Error:`` line and a non-zero exit.
The config groups are the package's own (``pkg://kerastrack.conf``); Hydra's
``--config-dir`` puts a user's groups and options beside them."""

import signal
import sys


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# SIGTERM (kill, a scheduler) stops this process the way Ctrl-C does, from the first line:
# whatever was reached is closed in a true state and said in one line, never a traceback.
signal.signal(signal.SIGTERM, _interrupt)
# kerastrack.utils.signals.NOTHING_RECORDED, written out: it is said before the rest is imported.
NOTHING_RECORDED = "Interrupted before the run opened: no run was recorded."
try:
    import os

    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.errors import HydraException
    from hydra.types import RunMode
    from omegaconf import DictConfig

    from kerastrack.config.hydra_errors import one_line
    from kerastrack.errors import ConfigError, DiskFull, DivergedError
    from kerastrack.sweeps.callback import report_interrupted
    from kerastrack.sweeps.job import job
    from kerastrack.utils import startup
    from kerastrack.utils.secrets import mask_stderr, mask_text
    from kerastrack.utils.signals import interrupted_line
except KeyboardInterrupt:
    print(NOTHING_RECORDED, file=sys.stderr)
    sys.exit(130)


@hydra.main(version_base="1.3", config_path="pkg://kerastrack.conf", config_name="train")
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


def run():
    """The command's entry point: Hydra reads the command line (``sys.argv``)."""
    mask_stderr()  # what Hydra and Python print of an error (the overrides, a traceback) keeps no password
    startup.quiet_tensorflow()  # before TensorFlow is imported; TF_CPP_MIN_LOG_LEVEL=0 shows its lines
    # `_target_: my_models.build` names a module in the folder the command runs in, as
    # `python train.py` and `python -m` find it; a console script's sys.path[0] is its bin/.
    if os.getcwd() not in sys.path:
        sys.path.insert(1, os.getcwd())
    # Hydra's own refusals (an unknown option, a mistyped key) come out as one line too:
    # HYDRA_FULL_ERROR=1 makes Hydra raise them here instead of printing them over several
    # lines. Set by the user, it keeps its meaning: Hydra's full traceback.
    asked_full = os.environ.get("HYDRA_FULL_ERROR") == "1"
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        main()
    except HydraException as exc:
        if asked_full:
            raise
        sys.exit(f"Error: {mask_text(one_line(exc, sys.argv[1:]))}")
    except KeyboardInterrupt:  # before the run (composing the config) or between sweep jobs
        if not report_interrupted():
            print(NOTHING_RECORDED, file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    run()
