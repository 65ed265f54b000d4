"""A run's lock: one process at a time trains in an output dir (``claim``), and whether one
does now (``in_use``)."""

import contextlib
from pathlib import Path

from filelock import FileLock, Timeout

from kerastrack.callbacks.recording import TrainingState
from kerastrack.errors import ConfigError, RunHeld
from kerastrack.resume.identity import STATE_DIR
from kerastrack.utils import signals


def in_use(output_dir):
    """Whether a process holds the run lock of ``output_dir`` (a run or a resume in it)."""
    lock_path = Path(output_dir) / STATE_DIR / "lock"
    if not lock_path.exists():
        return False
    lock = FileLock(lock_path)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    lock.release()
    return False


def unfinished_state(output_dir, whose="a run"):
    """The refusal of a new run in a dir that holds another run's unfinished training state."""
    state = Path(output_dir) / STATE_DIR
    return ConfigError(
        f"the output dir {output_dir} holds the saved training state of {whose}, which only resume= may continue: "
        f"{signals.command()} resume={output_dir}. To start a new run, use another output dir (hydra.run.dir=... or "
        f"paths.output_dir=...) or delete {state}. Received: paths.output_dir={output_dir}"
    )


@contextlib.contextmanager
def claim(output_dir, plan):
    """Holds the output dir's run lock while a run trains in it, and does what ``plan`` says
    about another run's state found there.

    A second process continuing the same run, or training into the same dir, is refused
    (its record would interleave with this one's). A new run is refused where another
    run's state is saved: only ``resume=`` may continue that, and a fresh start must not
    overwrite it (or, worse, train on from it). Decided before the lock (``plan.leftover``),
    applied under it, where a state that appeared since is refused too.

    Args:
        output_dir: The run's output dir.
        plan: The run's ``Plan``.

    Raises:
        RunHeld: The lock is held.
        ConfigError: The dir holds another run's unfinished state.
    """
    state = Path(output_dir) / STATE_DIR
    state.mkdir(parents=True, exist_ok=True)
    lock = FileLock(state / "lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        what = f"resume={plan.run_id or output_dir}" if plan.continues else f"paths.output_dir={output_dir}"
        raise RunHeld(
            f"another process is training in {output_dir} right now (it holds {state / 'lock'}): "
            f"two processes must not write one run. Wait for it to end, or stop it. "
            f"Received: {what}",
            f"{f'run {plan.run_id}' if plan.continues else 'the run'} in {output_dir} (its lock)",
        ) from None
    try:
        if not plan.continues:
            _clear(state / TrainingState.FILE, plan.leftover, output_dir)
        yield
    finally:
        lock.release()


def _clear(archive, leftover, output_dir):
    if isinstance(leftover, Exception):
        raise leftover
    if leftover == "discard":  # a finished run's leftover: dead weight
        archive.unlink(missing_ok=True)
    elif archive.is_file():  # saved after the plan looked
        raise unfinished_state(output_dir)
