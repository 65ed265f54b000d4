"""What a run that a full disk stopped keeps, in the one line train.py prints: how far it
got, its status, and ``resume=`` only where resume= would take it (checked as it checks)."""

from dataclasses import dataclass
from pathlib import Path

from kerastrack.callbacks.recording import TrainingState
from kerastrack.errors import ConfigError
from kerastrack.resume.identity import STATE_DIR
from kerastrack.resume.state import check_on_record, load, read_dir
from kerastrack.utils import signals


@dataclass
class Progress:
    """How far a run got, for the line said when it stops on an error.

    Attributes:
        planned: The epochs it was to train (``trainer.epochs``).
        logger: Its ``EpochLogger`` once training was set up (``epochs``: the finished
            ones, a resumed run's earlier ones included), else None.
        trained: Whether training ended (fit returned): what failed came after it.
    """

    planned: int
    logger: object = None
    trained: bool = False


def disk_full_message(tracker, output_dir, progress):
    """The one line for a run that the disk filling up stopped.

    Args:
        tracker: The run's tracker (its final status, the store to check resume= against).
        output_dir: The run's output dir.
        progress: How far the run got.
    """
    return (
        f"the disk is full (No space left on device): {_when(progress)}; {_run(tracker)}. "
        f"{_kept(tracker, Path(output_dir))}"
    )


def _when(progress):
    if progress.logger is None:
        return "before training started"
    n = len(progress.logger.epochs)
    done = f"{n} of {progress.planned} epochs finished"
    if progress.trained:
        return f"after training ended ({done}), while its results were saved"
    return f"after training's last epoch ({done})" if n >= progress.planned else f"training stopped with {done}"


def _run(tracker):
    if tracker.status:  # the store took the final status
        return f"run {tracker.run_id} is {tracker.status}" if tracker.run_id else "the run stopped"
    return (
        f"run {tracker.run_id} could not be closed in the store and shows RUNNING there"
        if tracker.run_id
        else "no run was recorded"
    )


def _kept(tracker, output_dir):
    """What the state dir holds, and the command that continues from it where it works."""
    state = output_dir / STATE_DIR
    if tracker.status == "FINISHED":
        return "Everything is on record."
    if tracker.status is None and not tracker.run_id:
        return "Free some space, then run it again."
    command = f"{signals.command()} resume={output_dir}"
    if not (state / "run.json").is_file():  # resume= finds the run by it
        return f"Nothing was saved in {state}, so resume= cannot continue the run: free some space, then run it again."
    try:
        received, run_id = f"resume={output_dir}", tracker.run_id
        kept = load(read_dir(output_dir), run_id, received)
        if kept.saved is None and run_id:  # may it start over in the same run? Only the store tells
            check_on_record(kept, run_id, tracker.lookup(run_id=run_id).steps, state, received)
    except ConfigError as exc:
        if not (state / TrainingState.FILE).is_file():
            return (
                f"No training state could be saved in {state}, so resume= cannot continue the run: free some "
                f"space, then start it again as a new run."
            )
        return f"It cannot be continued: {str(exc).removeprefix('resume: ').split(' Received: ')[0]}"
    except Exception as exc:  # noqa: BLE001 - the store's own failures (it may be on the full disk too)
        return f"Free some space, then continue it: {command} (the store could not be asked whether it can: {exc})"
    if kept.saved is None:  # stopped within its first epoch: resume starts it over, in the same run
        return f"No training state was saved yet. Free some space, then start it over in the same run: {command}"
    n = kept.saved.meta["epoch"]
    return (
        f"The training state after {n} epoch{'s' if n != 1 else ''} is kept in {state}. Free some space, "
        f"then continue it: {command}"
    )
