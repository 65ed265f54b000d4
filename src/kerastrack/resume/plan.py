"""Whether this invocation continues an earlier run: the facts, fetched once (``gather``),
and the decision, a pure function of them and the config (``plan``), as a ``Plan``.

Every run keeps ``<output_dir>/state/``: its whole training state, saved after the first
epoch, then every few seconds and where training stops (``TrainingState``), its resolved
config and its MLflow run id. ``python train.py resume=<run id or output dir>`` continues such
a run in the same MLflow run from the epoch after the last one saved; a re-launched sweep
does it per job.
"""

import logging
import socket
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from kerastrack.errors import ConfigError, RunHeld
from kerastrack.resume.identity import INVOCATION_KEYS, NEUTRAL_KEYS, STATE_DIR, config_hash
from kerastrack.resume.lock import unfinished_state
from kerastrack.resume.state import RunDir, SavedState, check_on_record, load, need, read_dir
from kerastrack.tracking.lookups import Earlier
from kerastrack.utils.hydra_job import parse_overrides
from kerastrack.utils.secrets import is_masked, is_secret_key, mask_override, mask_value, unmask

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Plan:
    """What this invocation does: start a new run, skip a finished sweep job, or continue a run.

    Attributes:
        action: ``new``, ``skip`` or ``continue``.
        config: The config the run uses: the invocation's for a new run; a continued run's
            own, with INVOCATION_KEYS (and its masked secrets) from this invocation.
        choices: Its config-group choices (``optimizer=adam``, ...).
        run_id: The run to reopen (None with tracking=none), or the finished one skipped.
        saved: The training state to continue from, or None: training starts at epoch 0.
        on_record: What the store has of the run: metric key -> steps ({} for a new run).
        best: A skipped job's recorded best value.
        leftover: A new run's: what to do, under the output dir's lock, about another run's
            state saved there: None (there is none), ``discard`` (a FINISHED run's), or the
            ConfigError that refuses the new run.
    """

    action: str
    config: DictConfig
    choices: dict
    run_id: str | None = None
    saved: SavedState | None = None
    on_record: dict = field(default_factory=dict)
    best: float | None = None
    leftover: object = None

    @property
    def continues(self):
        return self.action == "continue"


@dataclass(frozen=True)
class Facts:
    """What a plan is decided on.

    Attributes:
        earlier: What the store knows (``tracker.lookup``): the run named or found, a sweep's child.
        run_dir: The output dir of the run ``resume=`` names, or of the sweep's child, as read.
        here: A new run's output dir, as read (another run's state may be saved there).
        by_dir: Whether ``resume=`` names an output dir (not a run id).
        offline: Whether the tracker is offline (tracking.offline=true).
        tracking_uri: The tracker's store (None: tracking=none).
    """

    earlier: Earlier
    run_dir: RunDir | None = None
    here: RunDir | None = None
    by_dir: bool = False
    offline: bool = False
    tracking_uri: str | None = None


def check_target(target):
    """Refuses an empty ``resume=`` (Hydra reads it as ""): it would start a new run silently."""
    if target is not None and not str(target).strip():
        raise ConfigError(
            "resume= needs the run to continue: its MLflow run id or its output dir (e.g. resume=outputs/"
            f"2026-11-21/16-42-07); leave resume out to start a new run. Received: resume={target}"
        )


def gather(cfg, tracker):
    """Fetches the facts ``plan`` decides on: the state files it may continue from, and what
    the store knows of the earlier runs, in one ``tracker.lookup``.

    Args:
        cfg: The invocation's config, checked.
        tracker: The invocation's tracker.
    """
    target = cfg.get("resume")
    where = {"offline": getattr(tracker, "offline", False), "tracking_uri": getattr(tracker, "tracking_uri", None)}
    if target and where["offline"]:  # refused by plan, before anything is asked
        return Facts(Earlier(), **where)
    if target and _target_dir(target).is_dir():
        run_dir = read_dir(_target_dir(target))
        run_id = run_dir.info.get("run_id") if isinstance(run_dir.info, dict) else None
        return Facts(tracker.lookup(run_id=run_id) if run_id else Earlier(), run_dir, by_dir=True, **where)
    if target:
        earlier = tracker.lookup(run_id=str(target))
        output_dir = earlier.run.params.get("paths.output_dir", "") if earlier.run else None
        return Facts(earlier, read_dir(output_dir) if output_dir is not None else None, **where)
    here = read_dir(cfg.paths.output_dir)
    leftover_id = here.info.get("run_id") if here.saved is not None and isinstance(here.info, dict) else None
    earlier = tracker.lookup(run_id=leftover_id, config_hash=config_hash(cfg))
    child = earlier.child
    run_dir = read_dir(child.params.get("paths.output_dir", "")) if child and child.status != "FINISHED" else None
    return Facts(earlier, run_dir, here, **where)


def plan(cfg, choices, overrides, facts):
    """Decides whether this invocation continues an earlier run.

    ``resume=<run id | output dir>`` names the run. In a multirun whose sweep dir already
    has a parent run (a re-launched sweep), a job whose config matches a FINISHED child is
    skipped, and one that matches a KILLED or FAILED child, or a RUNNING one whose process
    is gone, continues it in place.

    Args:
        cfg: The invocation's config, checked.
        choices: Its config-group choices.
        overrides: The command line's overrides (``key=value``), checked against the run.
        facts: What the decision is made on (``gather``).

    Returns:
        The Plan.

    Raises:
        ConfigError: The run does not exist, is FINISHED or still running, its saved
            state is damaged or missing, or an override would change its experiment.
        RunHeld: The run is RUNNING in a process that is still there.
    """
    target = cfg.get("resume")
    if target and facts.offline:
        raise ConfigError(
            "resume continues a run on the tracking server; with tracking.offline=true there is "
            "none. Upload the run's spool (python -m kerastrack.upload <output dir>), then resume "
            f"by its run id, with the server up. Received: resume={target}"
        )
    if target:
        return _plan_named(str(target), cfg, choices, overrides, facts)
    child = facts.earlier.child
    if child is None:
        return Plan("new", cfg, choices, leftover=_leftover(facts.here, facts.earlier.run))
    if child.status == "FINISHED":
        log.info("skipped: this job's config already FINISHED in run %s", child.run_id)
        best = child.metrics.get(f"best_{cfg.trainer.monitor}", float("nan"))
        return Plan("skip", cfg, choices, child.run_id, best=best)
    received = f"the re-launched sweep's job for run {child.run_id}"
    if child.status == "RUNNING":
        _check_abandoned(child.run_id, facts.run_dir, received)
    log.info("continuing run %s (%s) of the earlier launch of this sweep", child.run_id, child.status)
    # The job's own config is the run's (equal hashes): it stands in for a lost config.yaml.
    kept = load(facts.run_dir, child.run_id, received, fallback_config=cfg, fallback_choices=choices)
    return _continued(kept, child.run_id, cfg, facts, received)


def _target_dir(target):
    path = Path(str(target)).expanduser()
    return path.parent if path.name == STATE_DIR else path


def _plan_named(target, current, choices, overrides, facts):
    received = f"resume={target}"
    record, run_dir = facts.earlier.run, facts.run_dir
    if facts.by_dir:
        if run_dir.info is None:
            raise ConfigError(
                f"resume: {run_dir.path} has no saved training state ({STATE_DIR}/run.json); "
                f"give a run's output dir or its MLflow run id. Received: {received}"
            )
        run_id = need(run_dir.info, received).get("run_id")
        if run_id and record is None and facts.tracking_uri:
            raise ConfigError(
                f"resume: the run of {run_dir.path} ({run_id}) is not in {facts.tracking_uri}; point "
                f"tracking.tracking_uri at the store it was recorded in. Received: {received}"
            )
        if record is not None:
            _check_resumable(record, run_dir, received)
    else:
        run_id = target
        if record is None:
            raise ConfigError(
                f"resume: no run {target} in {facts.tracking_uri or 'the store'} and no such "
                f"directory; give a KILLED or FAILED run's id (see the MLflow UI) or its output dir. "
                f"Received: {received}"
            )
        _check_resumable(record, run_dir, received)
        if run_dir.info is None:
            raise ConfigError(
                f"resume: run {run_id} has no saved training state in {run_dir.state} (its "
                f"output dir was moved or deleted). Received: {received}"
            )
    kept = load(run_dir, run_id, received)
    _check_overrides(kept, current, choices, overrides, target)
    return _continued(kept, run_id, current, facts, received)


def _continued(kept, run_id, current, facts, received):
    """The plan that continues the run from what it ``kept``."""
    check_on_record(kept, run_id, facts.earlier.steps, facts.run_dir.state, received)
    config = _settle(kept.config, current)
    record = facts.earlier.run
    if config.trainer.get("jit_compile") == "auto" and record is not None:
        # The run goes on with the XLA choice it started with, so that its repeated epochs are the
        # recorded ones: what `auto` picks changed (a run begun before it chose XLA on CPU has no
        # trainer.jit_compile.used param, and trained without XLA).
        OmegaConf.update(config, "trainer.jit_compile", record.params.get("trainer.jit_compile.used") == "True")
    return Plan("continue", config, kept.choices, run_id, kept.saved, facts.earlier.steps)


def _settle(recorded, current):
    """The resumed run's own config, with INVOCATION_KEYS from this invocation."""
    cfg = recorded.copy()
    for key in INVOCATION_KEYS:
        OmegaConf.update(cfg, key, OmegaConf.select(current, key, default=None), merge=False)
    # Secrets: state/config.yaml keeps them masked; this invocation gives them again.
    return unmask(cfg, current, f"{STATE_DIR}/config.yaml")


def _leftover(here, record):
    """What a new run must do about another run's state saved in its output dir (Plan.leftover)."""
    if here is None or here.saved is None:
        return None
    try:
        run_id = need(here.info, f"paths.output_dir={here.path}", missing={}).get("run_id")
    except ConfigError as exc:
        return exc
    if record is not None and record.status == "FINISHED":
        return "discard"
    whose = f"run {run_id} ({record.status})" if record is not None else f"run {run_id}" if run_id else "a run"
    return unfinished_state(here.path, whose)


def _check_resumable(record, run_dir, received):
    if record.status == "FINISHED":
        raise ConfigError(
            f"resume: run {record.run_id} is FINISHED; only KILLED or FAILED runs can be "
            f"continued. Start a new run instead. Received: {received}"
        )
    if record.status == "RUNNING":
        _check_abandoned(record.run_id, run_dir, received)


def _check_abandoned(run_id, run_dir, received):
    """A RUNNING run may be continued only when no process is running it any more (it was
    killed hard, with no chance to close it)."""
    info = need(run_dir.info, received, missing={})
    if run_dir.held or run_dir.alive:
        raise RunHeld(
            f"resume: run {run_id} is RUNNING (process {info.get('pid')} on {info.get('host')}); "
            f"stop it first, or wait for it to end. Received: {received}",
            f"run {run_id} (process {info.get('pid')} on {info.get('host')})",
        )
    if info.get("host") not in (None, socket.gethostname()):
        raise ConfigError(
            f"resume: run {run_id} is RUNNING on {info.get('host')}; kerastrack cannot tell from "
            f"here whether its process is gone. Resume it on that machine. Received: {received}"
        )
    log.warning(
        "run %s is marked RUNNING but its process %s is gone (killed hard): continuing it", run_id, info.get("pid")
    )


def _check_overrides(kept, current, current_choices, overrides, target):
    """Refuses command-line overrides that would make the resumed run another experiment:
    each overridden key must have the value (or group option) the run has."""
    changed = []
    keys = dict.fromkeys(key.lstrip("+~") for key, _ in parse_overrides(overrides))
    for key in keys:
        if any(key == k or key.startswith(f"{k}.") for k in NEUTRAL_KEYS) or key.startswith("hydra"):
            continue
        if is_secret_key(key):  # masked in the state, see below
            continue
        if key in kept.choices or key in current_choices:
            recorded, value = kept.choices.get(key), current_choices.get(key)
        else:
            recorded = OmegaConf.select(kept.config, key, default="<absent>")
            value = OmegaConf.select(current, key, default="<absent>")
        if is_masked(recorded):  # a secret: _settle takes (and checks) this invocation's
            continue
        if recorded != value:
            changed.append(f"{key}={mask_value(key, value)} (the run has {mask_value(key, recorded)})")
    if changed:
        raise ConfigError(
            f"resume continues run {target} with its own config; these overrides would change the experiment: "
            f"{'; '.join(changed)}. Drop them, or start a new run. Received: {' '.join(map(mask_override, overrides))}"
        )
