"""What a sweep dir may hold: one sweep, and a sweep its sweeper can run.

A sweep dir belongs to the first sweep launched into it. The same sweep (the same
overrides and search space) may be launched into it again, and continues there (its jobs
skip what finished and resume what was cut short); a different one is refused before
anything is written or recorded: its jobs would share the numbered job dirs (``0/``,
``1/``, ...) of the first, overwrite their outputs, and join the first's parent run.
"""

import json
import os
import shlex
from pathlib import Path

from filelock import FileLock
from omegaconf import OmegaConf

from kerastrack.utils.files import write_atomic
from kerastrack.utils.hydra_job import parse_overrides
from kerastrack.utils.secrets import mask_override

CLAIM = "sweep.json"  # in the sweep's control dir: the definition of the sweep the dir holds
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def definition(config):
    """What makes a sweep the same sweep: the command line's overrides, in order (they
    number the jobs), and the sweeper's search space (``hydra.sweeper.params``), as text
    with credentials masked. Launcher settings and ``hydra.sweeper.n_trials`` are not in
    it: a sweep may continue with other workers, or a search with more trials.

    Args:
        config: A multirun's config (the launcher's, ``hydra`` node included).
    """
    overrides = OmegaConf.to_container(config.hydra.overrides.task, resolve=False)
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    params = OmegaConf.to_container(params, resolve=False) if OmegaConf.is_config(params) else dict(params)
    return {
        "overrides": [mask_override(o) for o in overrides],
        "params": {str(k): mask_override(f"{k}={v}").partition("=")[2] for k, v in params.items()},
    }


def _held(control_dir, sweep_dir):
    """The definition of the sweep the sweep dir holds, or None when it holds none yet:
    from the claim, else from Hydra's ``multirun.yaml`` (a dir of an earlier version)."""
    claim = Path(control_dir) / CLAIM
    if claim.is_file():
        return json.loads(claim.read_text())
    multirun = Path(sweep_dir) / "multirun.yaml"
    return definition(OmegaConf.load(multirun)) if multirun.is_file() else None


def claim(sweep_dir, control_dir, config):
    """Claims the sweep dir for this sweep, or refuses a dir that holds another.

    Under a lock: of two sweeps launched into one dir at once, the second is refused.

    Args:
        sweep_dir: The sweep dir (absolute).
        control_dir: The sweep's control dir in it.
        config: The multirun's config.

    Raises:
        SystemExit: With the one ``Error:`` line, when the dir holds another sweep.
    """
    mine = definition(config)
    control_dir = Path(control_dir)
    control_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(control_dir / "sweep.lock"):
        held = _held(control_dir, sweep_dir)
        if held in (None, mine):
            write_atomic(control_dir / CLAIM, json.dumps(mine, indent=1))
            return
    raise SystemExit(
        f"Error: hydra.sweep.dir={sweep_dir} holds another sweep ({_describe(held)}); its job dirs and "
        f"parent run are that sweep's. Continue it with its own overrides, or give this sweep a dir of its "
        f"own, e.g. hydra.sweep.dir={sweep_dir}-2. Received: hydra.sweep.dir={sweep_dir} ({_describe(mine)})"
    )


def _describe(held):
    overrides = " ".join(held["overrides"]) or "no overrides"
    params = ", ".join(f"{k}={v}" for k, v in held["params"].items())
    return overrides + (f"; search space {params}" if params else "")


def check_sweepable(config):
    """Refuses what the basic sweeper cannot sweep, before anything is recorded: a range
    to search, ``interval(low, high)``, which only a search (Optuna) samples.

    Raises:
        SystemExit: With the one ``Error:`` line.
    """
    sweeper = str(OmegaConf.select(config, "hydra.sweeper._target_", default=""))
    if sweeper != BASIC_SWEEPER:
        return
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None) or {}
    overrides = [*config.hydra.overrides.task, *(f"{k}={v}" for k, v in params.items())]
    for (key, override), text in zip(parse_overrides(overrides), overrides):
        if override.is_interval_sweep():
            raise SystemExit(
                f"Error: {key}=interval(...) is a range to search, which a grid sweep cannot run (it sweeps lists: "
                f"{key}=0.001,0.01,0.1, or range(start,stop,step)); search it with Optuna: "
                f"python train.py -m hparams_search=optuna '{mask_override(text)}'. Received: {mask_override(text)}"
            )


def continue_command(argv, directory):
    """The command line that continues a sweep: the same one, into the same sweep dir."""
    args = [a for a in argv[1:] if not a.startswith(("hydra.sweep.dir=", "+hydra.sweep.dir="))]
    # The installed command (and the Python API, which runs as it) is started by its name.
    start = ["kerastrack"] if os.path.basename(argv[0]) == "kerastrack" else ["python", argv[0]]
    return shlex.join([*start, *args, f"hydra.sweep.dir={directory}"])


def failure_line(n_failed, n_jobs, n_diverged, n_without_run, offline, directory):
    """The sweep's last line when jobs failed: what is on record of them, and where.

    Args:
        n_without_run: Jobs that failed before their run opened (a bad value): no run
            says anything of them, only their logs.
    """
    n_runs = n_failed - n_without_run
    where = "in their spools" if offline else "in MLflow"
    said = (
        [
            f"their runs are FAILED {where} (error.message tag)"
            if not n_without_run
            else f"{n_runs} of them FAILED {where} (error.message tag)"
        ]
        if n_runs
        else []
    )
    if n_without_run:
        said.append(
            f"{'they' if not n_runs else n_without_run} failed before {'a run' if n_runs else 'any run'} "
            f"opened, with nothing recorded"
        )
    return (
        f"Error: {n_failed} of {n_jobs} jobs failed ({n_diverged} of them diverged); {', '.join(said)}; "
        f"their logs are in {directory}"
    )


def skipped_line(held, n_jobs, command):
    """The sweep's line for jobs skipped because another process holds their runs.

    Args:
        held: What holds each skipped job's run (``errors.RunHeld.held``).
        n_jobs: The sweep's jobs.
        command: The command that continues the sweep.
    """
    return (
        f"Skipped: {len(held)} of {n_jobs} jobs, held by another process (RUNNING in MLflow, not in this "
        f"report): {'; '.join(held)}. Re-launch once it ended, to complete the sweep: {command}"
    )
