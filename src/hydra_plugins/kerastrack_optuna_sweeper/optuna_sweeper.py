"""A Hydra sweeper that searches hyperparameters with an Optuna study, one job per trial.

``hydra-optuna-sweeper`` pins optuna<3 (which cannot persist a study with SQLAlchemy 2)
and hides the trial from the job, so nothing can prune. This one asks the study for a
trial, runs it as a Hydra job through the configured launcher and tells the study the
job's return value. Each job gets a ``kerastrack.callbacks.pruning.PruningCallback`` that reports
every epoch to the same trial in the study's storage and stops a trial the pruner
gives up on.

Hydra imports every module of ``hydra_plugins`` at each start, single runs included, so
optuna is imported only when a search runs.
"""

import logging
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep, IntervalSweep, Quote, QuotedString, RangeSweep, Transformer
from hydra.errors import CompactHydraException, HydraException
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from kerastrack.config.checks import monitor_mode
from kerastrack.errors import ConfigError
from kerastrack.sweeps.job import CONTROL_DIR, STOPPING
from kerastrack.tracking.store import absolute_sqlite_uri
from kerastrack.utils.secrets import mask_override, mask_uri

log = logging.getLogger(__name__)

DIRECTIONS = ("minimize", "maximize")
# Strings Hydra reads back as the same string without quotes (and not as null, a number...).
_PLAIN = re.compile(r"(?!(?i:null|true|false|nan|inf)$)[A-Za-z_][\w\-./]*", re.ASCII)


@dataclass
class KerastrackOptunaSweeperConf:
    """``hydra/sweeper=kerastrack_optuna``; see ``KerastrackOptunaSweeper`` for the fields."""

    _target_: str = "hydra_plugins.kerastrack_optuna_sweeper.optuna_sweeper.KerastrackOptunaSweeper"
    # The pruner stays a config: jobs get it as overrides and build their own.
    _recursive_: bool = False
    n_trials: int = 20
    n_jobs: int = 1
    direction: Optional[str] = None
    storage: Optional[str] = "sqlite:///optuna.db"
    study_name: Optional[str] = None
    seed: Optional[int] = None
    pruner: Optional[Any] = field(
        default_factory=lambda: {"_target_": "optuna.pruners.MedianPruner", "n_startup_trials": 3, "n_warmup_steps": 2}
    )
    params: Optional[Dict[str, Any]] = None


ConfigStore.instance().store(group="hydra/sweeper", name="kerastrack_optuna", node=KerastrackOptunaSweeperConf)


class SearchConfigError(ConfigError, CompactHydraException):
    """A sweeper setting that cannot work; Hydra prints its message without a traceback."""


class KerastrackOptunaSweeper(Sweeper):
    """Runs ``n_trials`` trials of an Optuna study (TPE), each one a Hydra job.

    Re-running the same command resumes the study: trials already finished (complete,
    pruned or failed) count towards ``n_trials``. A job that returns NaN/inf or raises
    is a failed trial, one whose ``PruningCallback`` stopped it a pruned one; neither
    stops the search. The best trial is logged and written to
    ``<sweep dir>/optuna_best.yaml``.

    Args:
        n_trials: Trials the study should have in all (>= 1).
        n_jobs: Trials handed to the launcher at once (>= 1); with ``launcher=parallel``
            they run side by side.
        direction: ``minimize`` or ``maximize``; None: from ``trainer.monitor`` and
            ``trainer.monitor_mode``.
        storage: Optuna storage URL; a relative SQLite path is taken from the launch
            directory. None: in memory (no resuming, no pruning).
        study_name: None: the command's overrides, sorted, so that the same command
            resumes the same study and another one starts its own.
        seed: Seed of the TPE sampler; None: random.
        pruner: A ``_target_`` config of an ``optuna.pruners`` pruner; None: no pruning.
        params: The search space, ``{key: Hydra override value}``: ``choice(a, b)``,
            ``interval(lo, hi)``, ``tag(log, interval(lo, hi))``, ``range(start, stop,
            step=s)`` (stop excluded, as in Hydra), or a plain value fixed for all trials.
            Sweeps on the command line join it and win over it.
    """

    def __init__(self, n_trials, n_jobs, direction, storage, study_name, seed, pruner, params):
        self.n_trials = n_trials
        self.n_jobs = n_jobs
        self.direction = direction
        self.storage = storage
        self.study_name = study_name
        self.seed = seed
        self.pruner = _plain(pruner)
        # Override strings; a YAML value that is not a string (null, a list) in override syntax.
        self.params = [
            f"{k}={v if isinstance(v, str) else Transformer.str(v)}" for k, v in (_plain(params) or {}).items()
        ]
        self.job_idx = 0

    def setup(self, *, hydra_context, task_function, config):
        from hydra.core.plugins import Plugins

        for key in ("n_trials", "n_jobs"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise SearchConfigError(
                    f"hydra.sweeper.{key} must be an integer >= 1. Received: hydra.sweeper.{key}={value}"
                )
        if self.direction is None:
            mode = monitor_mode(config.trainer.monitor, config.trainer.monitor_mode)
            self.direction = "maximize" if mode == "max" else "minimize"
        elif self.direction not in DIRECTIONS:
            raise SearchConfigError(
                f"hydra.sweeper.direction must be minimize, maximize or null (from trainer.monitor). "
                f"Received: hydra.sweeper.direction={self.direction}"
            )
        self.storage = absolute_storage(self.storage, config.hydra.runtime.cwd)
        self.study_name = self.study_name or default_study_name(config.hydra.overrides.task)
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments):
        import optuna

        space, fixed = search_space(self.params + list(arguments))
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        # The search continued in its own sweep dir: new trials take new job dirs, after the
        # earlier trials' (which their runs' paths.output_dir name).
        self.job_idx = 1 + max((int(p.name) for p in sweep_dir.iterdir() if p.name.isdigit()), default=-1)
        study = optuna.create_study(
            storage=self.storage, study_name=self.study_name, direction=self.direction, load_if_exists=True
        )
        done = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
        # A resumed study must not replay the first run's random trials: offset the seed.
        study.sampler = optuna.samplers.TPESampler(seed=None if self.seed is None else self.seed + done)
        log.info(
            "Optuna study '%s' in %s: %d of %d trials done, %s",
            study.study_name,
            self.storage or "memory",
            done,
            self.n_trials,
            self.direction,
        )
        while done < self.n_trials:
            trials = [study.ask(space) for _ in range(min(self.n_jobs, self.n_trials - done))]
            self._run(study, trials, fixed)
            done += len(trials)
            if (sweep_dir / CONTROL_DIR / STOPPING).exists():
                break  # interrupted, or a job stopped the search: ask for no more trials
        return self._report_best(study, sweep_dir)

    def _run(self, study, trials, fixed):
        """Launches one batch of trials and tells the study how each one ended."""
        from optuna.trial import TrialState

        jobs = []
        for trial in trials:
            overrides = [
                *fixed.values(),
                *(f"{k}={format_value(v)}" for k, v in trial.params.items()),
                *self._pruning_overrides(trial),
            ]
            try:  # a value the config cannot take fails its trial, not the search
                self.validate_batch_is_legal([overrides])
                jobs.append((trial, overrides))
            except Exception as exc:  # noqa: BLE001
                log.error("trial %d failed: %s", trial.number, exc)
                study.tell(trial, state=TrialState.FAIL)
        try:
            returns = self.launcher.launch([o for _, o in jobs], initial_job_idx=self.job_idx) if jobs else []
        except BaseException:
            # Interrupted: end the batch's trials rather than leave them RUNNING forever.
            for trial, _ in jobs:
                study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            raise
        self.job_idx += len(returns)
        running = {t.number: t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
        for (trial, _), ret in zip(jobs, returns):
            try:
                value = float(ret.return_value)  # re-raises a job's exception
            except Exception as exc:  # noqa: BLE001
                log.error("trial %d failed: %s: %s", trial.number, type(exc).__name__, exc)
                value = math.nan
            if math.isfinite(value):
                study.tell(trial, value)
                state = TrialState.COMPLETE
            else:
                # The job returns NaN when pruned too; its PruningCallback left this mark.
                pruned = running.get(trial.number) and running[trial.number].user_attrs.get("pruned")
                state = TrialState.PRUNED if pruned else TrialState.FAIL
                study.tell(trial, state=state)
            log.info("trial %d %s: %s, %s", trial.number, state.name, value, trial.params)

    def _pruning_overrides(self, trial):
        """Overrides that add a PruningCallback for ``trial`` to the job's callbacks."""
        if self.pruner is None or self.storage is None:  # in-memory: jobs cannot reach it
            return []
        node = "++callbacks.optuna_pruning"
        return [
            f"{node}._target_=kerastrack.callbacks.pruning.PruningCallback",
            f"{node}.storage={quote(self.storage)}",
            f"{node}.study_name={quote(self.study_name)}",
            f"{node}.trial_number={trial.number}",
            f"{node}.monitor=${{trainer.monitor}}",  # the value the job returns
            f"{node}.pruner={Transformer.str(self.pruner)}",
        ]

    def _report_best(self, study, sweep_dir):
        counts = dict(Counter(t.state.name for t in study.get_trials(deepcopy=False)))
        try:
            best = study.best_trial
        except ValueError:  # no trial completed
            log.warning("Optuna study '%s': no trial completed (%s)", study.study_name, counts)
            return None
        result = {
            "study_name": study.study_name,
            "storage": mask_uri(self.storage),
            "direction": self.direction,
            "trials": counts,
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": best.params,
            "best_overrides": " ".join(f"{k}={format_value(v)}" for k, v in best.params.items()),
        }
        OmegaConf.save(OmegaConf.create(result), sweep_dir / "optuna_best.yaml")
        log.info(
            "Best trial %d of study '%s' (%s): value %s, %s",
            best.number,
            study.study_name,
            ", ".join(f"{n} {c}" for n, c in counts.items()),
            best.value,
            best.params,
        )
        return result


def _plain(node):
    """A config node as plain Python, interpolations resolved; anything else as it is."""
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node


def search_space(lines):
    """Splits Hydra override strings into Optuna distributions and fixed overrides.

    Args:
        lines: Override strings such as ``"optimizer=choice(sgd, adam)"``,
            ``"optimizer.learning_rate=tag(log, interval(1e-4, 1e-1))"`` or
            ``"trainer.epochs=5"``; a later one replaces an earlier one with the same key.

    Returns:
        ``(distributions, fixed)``: ``{key: optuna distribution}`` for the swept keys and
        ``{key: override string}`` for the others, passed to every job as written.

    Raises:
        SearchConfigError: A string that does not parse, or no search space Optuna has.
    """
    parser = OverridesParser.create()
    space, fixed = {}, {}
    for line in lines:
        try:
            override = parser.parse_override(line)
        except HydraException as exc:
            raise _bad(line, exc) from exc
        key = override.get_key_element()
        space.pop(key, None)
        fixed.pop(key, None)
        if override.is_sweep_override():
            space[key] = _distribution(override, line)
        else:
            fixed[key] = line
    return space, fixed


def _distribution(override, line):
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    sweep = override.value()
    try:
        # In the order written, shuffle() or not: a resumed study needs the same space.
        if isinstance(sweep, ChoiceSweep):
            return CategoricalDistribution(sweep.list)
        if isinstance(sweep, RangeSweep):
            values = sorted(override.sweep_iterator())  # Hydra's range: stop excluded
            kind = IntDistribution if all(isinstance(v, int) for v in values) else FloatDistribution
            return kind(values[0], values[-1], step=abs(sweep.step))
        if isinstance(sweep, IntervalSweep):
            return FloatDistribution(sweep.start, sweep.end, log="log" in sweep.tags)
    except IndexError as exc:
        raise _bad(line, "the range is empty") from exc
    except ValueError as exc:
        raise _bad(line, exc) from exc
    raise _bad(line, f"{type(sweep).__name__} is not a search space")


def _bad(line, reason):
    key, _, value = line.partition("=")
    reason = " ".join(str(reason).split())
    return SearchConfigError(
        f"search space {key}: {reason}. Use choice(a, b, ...), interval(low, high), tag(log, interval(low, high)), "
        f"range(start, stop, step=s) or a plain value. Received: {key}={value}"
    )


def format_value(value):
    """``value`` as Hydra's override grammar reads it back: plain when it can, else quoted."""
    if isinstance(value, str) and not _PLAIN.fullmatch(value):
        return quote(value)
    return Transformer.str(value)


def quote(text):
    """``text`` as a single-quoted override value that comes back unchanged.

    Spaces, quotes, commas, brackets, ``=`` and backslashes survive; ``${`` does not (a
    quoted value may hold an interpolation, and ``instantiate`` resolves it even escaped).
    """
    return QuotedString(text=text, quote=Quote.single).with_quotes()


def absolute_storage(storage, base_dir):
    """A relative SQLite path made absolute against ``base_dir``; other URLs unchanged."""
    return absolute_sqlite_uri(storage, base_dir) if storage else storage


def default_study_name(task_overrides):
    """The command's overrides, sorted: the same command names the same study.

    ``hydra.*`` overrides (``hydra.sweeper.n_trials=40``) are not task overrides, so
    asking for more trials resumes the study. Secrets are masked (the name is stored, logged,
    and passed to every job).
    """
    return " ".join(sorted(mask_override(str(o)).lstrip("+") for o in task_overrides)) or "kerastrack"
