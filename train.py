"""kerastrack's command line: `python train.py optimizer=adam`, `python train.py -m ...`."""

import signal
import sys


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# SIGTERM (kill, a scheduler) stops this process the way Ctrl-C does, from the first line:
# whatever was reached is closed in a true state and said in one line, never a traceback.
signal.signal(signal.SIGTERM, _interrupt)
NOTHING_RECORDED = "Interrupted before the run opened: no run was recorded."
try:
    import logging
    import math

    import hydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import DictConfig, OmegaConf

    from kerastrack.errors import ConfigError, DataUnavailable, DiskFull, DivergedError, RunHeld, is_pruned
    from kerastrack.sweeps import job as sweep
    from kerastrack.utils import startup
    from kerastrack.utils.secrets import mask_stderr, mask_text
except KeyboardInterrupt:
    print(NOTHING_RECORDED, file=sys.stderr)
    sys.exit(130)

log = logging.getLogger("kerastrack")
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
        return _sweep_job(cfg, train)
    try:
        return train(cfg)
    except KeyboardInterrupt as exc:
        print(_interrupted_line(exc), file=sys.stderr)
        sys.exit(130)
    except (ConfigError, DivergedError, DiskFull) as exc:
        # One clear line instead of a traceback: the message names the key, the value
        # and what would work (or what is kept and how to go on). Exits non-zero.
        sys.exit(f"Error: {mask_text(str(exc))}")


def _sweep_job(cfg, train):
    """One job of a sweep: a failed job must not abort the sweep (its run is recorded as
    FAILED, or KILLED when a search pruned it; the sweep callback counts it and the sweep
    exits non-zero at the end), but an interrupt stops the whole sweep."""
    try:
        with sweep.job():
            return train(cfg)
    except sweep.SweepInterrupted:
        return math.nan  # the sweep is stopping: this job does not start
    except KeyboardInterrupt as exc:
        log.warning("%s", _interrupted_line(exc, resume_hint=False))
        return math.nan
    except RunHeld as exc:
        # Not a failure: another process (an earlier launch's worker) is training this run.
        log.warning("skipped: held by another process: %s", mask_text(str(exc)))
        sweep.skipped(exc)
        return math.nan
    except (DataUnavailable, DiskFull) as exc:
        # Every job would fail the same way: say it once and stop the sweep.
        sweep.stop(f"Error: {mask_text(str(exc))}")
        return math.nan
    except Exception as exc:
        if is_pruned(exc):
            log.info("trial pruned: %s", exc)
        elif isinstance(exc, DivergedError) and OmegaConf.select(
            HydraConfig.get(), "callbacks.mlflow_sweep.diverged_ok"
        ):
            log.warning("job diverged (a result of this sweep, diverged_ok): %s", exc)
        else:
            log.error(
                "job failed: %s: %s",
                type(exc).__name__,
                exc,
                exc_info=not isinstance(exc, (ConfigError, DivergedError)),
            )
        return math.nan


def _interrupted_line(exc, resume_hint=True):
    """What became of the run, in one line."""
    status, run_id, output_dir = (getattr(exc, name, None) for name in ("status", "run_id", "output_dir"))
    run = f"run {run_id}" if run_id else "the run (tracking=none: nothing recorded)"
    if status == "FINISHED":
        return f"Interrupted while the run closed: {run} FINISHED with everything recorded."
    if status is None:
        return NOTHING_RECORDED
    hint = f" Continue it with: python train.py resume={output_dir}" if resume_hint and output_dir else ""
    return f"Interrupted: {run} is {status}, with every finished epoch.{hint}"


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # before the run (composing the config) or between sweep jobs
        if not sweep.report_interrupted():
            print(NOTHING_RECORDED, file=sys.stderr)
        sys.exit(130)
