"""``kerastrack.Tracker``: ``python train.py``'s record of a run, for a plain Keras script.

    model.fit(x, y, epochs=5, validation_split=0.2, callbacks=[kerastrack.Tracker()])

One run per ``fit`` call, recorded through the same ``MlflowTracker`` as the command line's
runs (the same store default, outage spool and masking) under the same names: the compiled
model's params (``compiled``), every epoch's metrics, learning rate and time (the pipeline's
``EpochLogger``), the data fit received as dataset inputs, the best epoch's summary and the
model. How the run's end is seen, FAILED or KILLED included: ``fit_call``.
"""

import atexit
import datetime
import logging
import math
import sys
import uuid
import weakref
from pathlib import Path

import numpy as np

from kerastrack.callbacks import compiled, fit_call
from kerastrack.callbacks.recording import EpochLogger
from kerastrack.errors import DivergedError
from kerastrack.tracking import MlflowTracker, flatten_config, git_state, library_versions
from kerastrack.utils.secrets import mask_secrets, mask_uri

log = logging.getLogger(__name__)
SHORT = {"training": "train", "validation": "val"}  # in dataset.sizes, as train.py writes it
DATA_SOURCE = "keras.Model.fit"  # a dataset input's source when the script names none: the arrays fit got
# Runs open when the process exits: only where fit was not the wrapped one (see _close_open_runs).
_open = weakref.WeakSet()


class Tracker(fit_call.FitWatcher):
    """Records each ``fit`` call it is given to as one MLflow run, as ``python train.py`` does.

    The store, experiment and server are checked when it is made, before any training: a
    tracking URI that cannot work raises ``kerastrack.errors.ConfigError`` there.

    Args:
        tracking_uri: None: $MLFLOW_TRACKING_URI, else ``mlflow.db`` in the current directory
            (as train.py).
        experiment_name: None: $MLFLOW_EXPERIMENT_NAME, else ``kerastrack``.
        run_name: None: from the model, loss and optimizer, as train.py names runs
            (``sequential-categorical_crossentropy-adam``; with ``data_name`` first).
        tags: More tags of the run (credentials in them are masked).
        log_model: Log the trained model as the run's MLflow logged model.
        monitor: The logged value ``best_*`` follows; None: ``val_loss`` when fit validates,
            else ``loss``.
        data_name: The data set's name for its dataset inputs, the ``data`` tag and the run's
            name (e.g. ``digits``); None: ``dataset``, and no tag.
        data_source: Where the data came from (a file's absolute path, or the function
            that loads it); None: ``keras.Model.fit``.
        log_datasets: Describe fit's data as dataset inputs (a tf.data input costs one pass).
        output_dir: Where a run's record is spooled when the tracking server is away; None:
            ``outputs/<date>/<time>-<id>`` of the current directory (made only if needed).
    """

    def __init__(
        self,
        tracking_uri=None,
        experiment_name=None,
        run_name=None,
        tags=None,
        log_model=True,
        monitor=None,
        data_name=None,
        data_source=None,
        log_datasets=True,
        output_dir=None,
    ):
        super().__init__()
        self.tracker = MlflowTracker(tracking_uri=tracking_uri, experiment_name=experiment_name, log_model=log_model)
        self.tracker.prepare()  # the store and experiment, before any time goes into training
        self.run_name = run_name
        self.tags = dict(tags or {})
        self.monitor = monitor
        self.data_name = data_name
        self.data_source = data_source
        self.log_datasets = log_datasets
        self.output_dir = output_dir
        self._call = self._last_call = None
        self._run = None
        self._logger = None
        self._steps = []
        fit_call.install()

    @property
    def run_id(self):
        """The last run's MLflow id (None before the first ``fit``)."""
        return self.tracker.run_id

    @property
    def status(self):
        """The last run's final status (FINISHED, FAILED, KILLED); None while it runs."""
        return self.tracker.status

    def fit_started(self, call):
        self._call = self._last_call = call

    def on_train_begin(self, logs=None):
        for stale in list(_open):  # fit is not re-entrant: a run still open is one whose fit raised unseen
            stale._close(RuntimeError("fit ended without reaching its end (it raised)"))
        call = self._call
        if call is None:
            log.warning(
                "kerastrack.Tracker: this fit did not go through kerastrack's watch of keras.Model.fit, so "
                "its data is not recorded and a raise ends its run only at the next fit or at exit; "
                "import kerastrack after keras (or make the Tracker before the fit call)"
            )
        tags = {**compiled.model_tags(self.model), **self._more_tags(call)}
        name = self.run_name or compiled.run_name(tags, self.data_name)
        self._run = self.tracker.run(name, tags=mask_secrets(tags), output_dir=self._output_dir())
        self._run.__enter__()
        _open.add(self)
        try:
            self._log_setup(call)
            self._logger = EpochLogger(self.tracker)
            self._logger.set_model(self.model)
            self._logger.set_params(self.params)
            self._logger.on_train_begin()
            self._steps = []
        except BaseException as exc:
            self._close(exc)
            raise

    def on_epoch_begin(self, epoch, logs=None):
        self._logger.on_epoch_begin(epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._steps.append(epoch)
        self._logger.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None):
        if self._call is None:  # fit is not the wrapped one: its end is here
            self.fit_ended()

    def fit_ended(self, error=None):
        """Ends the run: FINISHED with the summary and model when fit returned, FAILED when
        it raised, KILLED on Ctrl-C or SIGTERM (see ``tracker.closing``)."""
        self._call = None
        if self._run is None:  # fit stopped before training began (Keras refused the data): no run
            return
        if error is not None:
            return self._close(error)
        try:
            error = self._log_summary()
        except BaseException as exc:  # an interrupt while the model is logged: KILLED, and raised
            self._close(exc)
            raise
        self._close(error)

    def _close(self, error=None):
        run, self._run = self._run, None
        if run is None:
            return
        _open.discard(self)
        if error is None:
            run.__exit__(None, None, None)
        else:
            run.__exit__(type(error), error, error.__traceback__)

    def _output_dir(self):
        if self.output_dir is not None:
            return Path(self.output_dir)
        now = datetime.datetime.now()
        return Path.cwd() / "outputs" / f"{now:%Y-%m-%d}" / f"{now:%H-%M-%S}-{uuid.uuid4().hex[:6]}"

    def _more_tags(self, call):
        """The tags beside the model's: the data set, the other callbacks, versions, git."""
        tags = {"data": self.data_name} if self.data_name else {}
        if call is not None:
            others = [c for c in call.arguments.get("callbacks") or [] if c is not self]
            tags["callbacks"] = ",".join(compiled.snake_case(type(c).__name__) for c in others) or "none"
        tags.update({f"version.{name}": v for name, v in library_versions().items()})
        git = git_state(_code_dir())
        if git:
            tags.update({"git.commit": git["commit"], "git.dirty": str(git["dirty"]).lower()})
        return {**tags, **self.tags}

    def _log_setup(self, call):
        """Params (credentials masked) and the data as dataset inputs, when the run opens."""
        params = compiled.model_params(self.model)
        splits = call.splits() if call is not None and self.log_datasets else {}
        params.update(call.params() if call is not None else {"trainer.epochs": self.params.get("epochs")})
        params["trainer.monitor"] = self._monitor(call.has_validation if call is not None else None)
        if splits:
            params["dataset.input_shape"] = tuple(splits["training"][0].shape[1:])
            params["dataset.sizes"] = " ".join(f"{SHORT[c]}={len(x)}" for c, (x, _) in splits.items())
        params.update(
            {
                "tracking._target_": "kerastrack.Tracker",
                "tracking.tracking_uri": mask_uri(self.tracker.tracking_uri),
                "tracking.experiment_name": self.tracker.experiment_name,
                "tracking.run_name": self.run_name,
                "tracking.log_model": self.tracker.log_model,
            }
        )
        self.tracker.log_params(flatten_config(mask_secrets(params)))
        if splits:
            self.tracker.log_datasets(self.data_name or "dataset", self.data_source or DATA_SOURCE, splits)

    def _monitor(self, validates):
        """The monitored key: the one given, else val_loss when fit validates, else loss
        (``validates`` None: not known before the first epoch's logs)."""
        if self.monitor:
            return self.monitor
        if validates is None:
            validates = any("val_loss" in e for e in self._logger.epochs) if self._logger else True
        return "val_loss" if validates else "loss"

    def _log_summary(self):
        """``best_<monitor>`` and ``best_epoch`` (its step) at step 0, and the model, as train.py
        logs them; returns the DivergedError that ends a run whose loss became NaN or inf."""
        epochs = self._logger.epochs
        if (at := self._logger.diverged_epoch) is not None:
            step = self._steps[at]
            self.tracker.set_tags({"diverged": "true", "diverged_epoch": str(step)})
            log.warning(
                "kerastrack.Tracker: the loss became %s at epoch %d: the run ends FAILED", epochs[at]["loss"], step
            )
            return DivergedError(f"the loss became {epochs[at]['loss']} at epoch {step}: training diverged")
        monitor = self._monitor(None)
        values = [(e[monitor], i) for i, e in enumerate(epochs) if math.isfinite(e.get(monitor, math.nan))]
        keys = []
        if values:
            best, at = max(values) if _mode(monitor) == "max" else min(values)
            self.tracker.log_metrics({f"best_{monitor}": best, "best_epoch": self._steps[at]}, step=0)
            keys = [f"best_{monitor}", "best_epoch"]
        if self.tracker.log_model and epochs:
            self._log_model(keys)
        return None

    def _log_model(self, keys):
        example = self._example()
        if example is None:
            log.warning(
                "kerastrack.Tracker: fit's input was not seen and the model's input shape is not fixed: no model logged"
            )
            return
        self.tracker.log_keras_model(self.model, example, step=self._steps[-1], metrics=keys)

    def _example(self):
        """A few of fit's samples; else zeros of the model's input shape, when fixed."""
        example = self._last_call.input_example() if self._last_call is not None else None
        if example is not None:
            return example
        shape = getattr(self.model, "input_shape", None)
        if isinstance(shape, tuple) and all(isinstance(n, int) for n in shape[1:]):
            return np.zeros((1, *shape[1:]), dtype=self.model.inputs[0].dtype)
        return None


def _mode(monitor):
    """'max' or 'min', as train.py's ``trainer.monitor_mode=auto`` decides (config.checks,
    a layer above this one): max for accuracy-like names."""
    return "max" if any(word in monitor for word in ("acc", "auc", "precision", "recall", "f1")) else "min"


def _code_dir():
    """The directory of the script that trains (its git state is the run's); the current
    directory in a notebook or an interactive session."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    return Path(path).resolve().parent if path else Path.cwd()


@atexit.register
def _close_open_runs():
    """A run still open when the process exits: fit ended without the wrapper seeing it (a
    fit that is not ``keras.Model.fit``'s) and without on_train_end, so it raised: FAILED,
    or KILLED for an uncaught Ctrl-C."""
    error = getattr(sys, "last_value", None) or RuntimeError("the process exited during fit")
    for tracker in list(_open):
        tracker._close(error)
