"""The job's side of a hyperparameter search (``hydra/sweeper=kerastrack_optuna``).

The sweeper runs in another process than the job (or before it, in the same one) and
hands the job its Optuna trial by name: storage, study and trial number, added to
``callbacks`` as overrides. ``PruningCallback`` reports every epoch to that trial and
stops training when the pruner gives up on it.
"""

import optuna
from optuna_integration.keras import KerasPruningCallback


class PruningCallback(KerasPruningCallback):
    """Reports the monitored value to a stored Optuna trial each epoch; prunes it.

    ``KerasPruningCallback`` does the reporting and pruning but needs a trial object;
    the trial lives in the sweeper's storage, so it is loaded when training begins.
    When the pruner gives up, the trial gets the user attribute ``pruned=True`` before
    ``optuna.TrialPruned`` is raised: the job then only returns NaN, and the mark is how
    the sweeper tells a pruned trial from a failed one. kerastrack's tracker ends the
    MLflow run KILLED with the tag ``pruned=true``.

    Args:
        storage: The study's storage URL, e.g. ``sqlite:////abs/path/optuna.db``.
        study_name: The study's name.
        trial_number: The trial's number in the study.
        monitor: The epoch log to report, e.g. ``val_loss`` (the value the job returns).
        pruner: An ``optuna.pruners`` pruner, the sweeper's (storage does not keep it);
            None: Optuna's default, ``MedianPruner()``.
        interval: Report and check every ``interval`` epochs.
    """

    def __init__(self, storage, study_name, trial_number, monitor="val_loss", pruner=None, interval=1):
        super().__init__(trial=None, monitor=monitor, interval=interval)
        self.storage = storage
        self.study_name = study_name
        self.trial_number = trial_number
        self.pruner = pruner

    def on_train_begin(self, logs=None):
        study = optuna.load_study(study_name=self.study_name, storage=self.storage, pruner=self.pruner)
        (stored,) = [t for t in study.get_trials(deepcopy=False) if t.number == self.trial_number]
        # Optuna builds a Trial from an existing id only through this constructor.
        self._trial = optuna.trial.Trial(study, stored._trial_id)

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        try:
            super().on_epoch_end(epoch, logs)
        except optuna.TrialPruned:
            self._trial.set_user_attr("pruned", True)
            raise
