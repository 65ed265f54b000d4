"""The tracker's interface, and how a run's end maps to its final status.

The pipeline owns the run through a tracker's ``run()`` context: it is opened before the
model is built and always closed in a true state, FINISHED only when the block completes,
KILLED on Ctrl-C/SIGTERM (or a search's pruning), FAILED on any other error (recorded).
Callbacks log through the tracker they are given. ``NullTracker`` records nothing
(``tracking=none``); ``mlflow_tracker.MlflowTracker`` records to MLflow.
"""

import contextlib
import traceback

from kerastrack.errors import is_pruned
from kerastrack.tracking.lookups import Earlier
from kerastrack.utils.signals import interrupted


@contextlib.contextmanager
def closing(end):
    """Ends a run in the state that matches how the block ended: ``end(status, error_type,
    message, trace=None, pruned=False)`` records KILLED for Ctrl-C/SIGTERM or a search's
    pruning, FAILED with the error for anything else. A completed block is the caller's
    to close (FINISHED)."""
    try:
        yield
    except BaseException as exc:  # noqa: BLE001 - whatever it is, the run must not stay RUNNING
        if interrupted(exc):
            end("KILLED", "KeyboardInterrupt", "interrupted (Ctrl-C or SIGTERM)")
        elif is_pruned(exc):
            end("KILLED", type(exc).__name__, str(exc) or "pruned by the search", pruned=True)
        else:
            end("FAILED", type(exc).__name__, str(exc), traceback.format_exc())
        raise


class NullTracker:
    """Records nothing; the interface every tracker has (``tracking=none``)."""

    log_every_n_steps = 0
    log_model = False
    run_id = None
    reopened = False  # whether the open run is an earlier one, reopened (resume=)
    # The run's final status once it ended (FINISHED, FAILED, KILLED); None before, and
    # when the store could not take it (the run then shows RUNNING there).
    status = None
    # Where the run can be read back from now: None (nothing recorded, or only spooled).
    readable_uri = None

    def check(self):
        """Raises if the store has failed under the run (a full disk): called every epoch,
        so that training stops instead of going on unrecorded."""

    @contextlib.contextmanager
    def run(self, run_name, tags=None, run_id=None, output_dir=None):
        """The run's context (see the module's docstring).

        Args:
            run_name: The name of a new run.
            tags: Tags of a new run.
            run_id: Reopen this (KILLED or FAILED) run instead of starting a new one.
            output_dir: The run's output dir: what cannot reach a server is spooled there.
        """
        self.status, self.reopened = None, run_id is not None
        with closing(lambda status, *error, **kwargs: setattr(self, "status", status)):
            yield self
        self.status = "FINISHED"

    def open_sweep(self, directory, keys, overrides, labels=None):
        """The sweep's parent run (a ``parent.ParentRun``), opened or continued; None here.

        Args:
            directory: The sweep dir (absolute).
            keys: The swept keys.
            overrides: The command line's overrides, as typed.
            labels: A new parent's tags from the sweep's ``tags`` and ``notes`` (``labels.label_tags``).
        """
        return None

    def ui_link(self):
        """What shows the last run in the MLflow UI (a URL, or the command that starts the
        UI and prints it), or None when the run is not in a store."""
        return None

    def lookup(self, run_id=None, config_hash=None):
        """The earlier runs this invocation may continue, fetched at once (a ``lookups.Earlier``).

        Args:
            run_id: The run to look up (resume=, or the one whose state is in the output dir).
            config_hash: A sweep job's config hash: a re-launched sweep's earlier child with it.
        """
        return Earlier()

    def at_first_start(self, log, *args):
        """Calls ``log(*args)``, which records what the run's numbers depend on (its config,
        data, code, model size), when the open run started now: a reopened run (resume=) has
        it on record since its first start."""
        if not self.reopened:
            log(*args)

    def prepare(self, run_id=None):
        """Opens the store and the experiment of a new run ahead of it (nothing to do here).

        Args:
            run_id: The run to reopen instead: it is in its own experiment, nothing to open.
        """

    def log_params(self, params):
        pass

    def log_metrics(self, metrics, step):
        pass

    def set_tags(self, tags):
        pass

    def log_text(self, text, artifact_file):
        pass

    def log_artifact(self, local_path, artifact_path=None):
        pass

    def log_datasets(self, name, source, splits):
        """Records the data the run used (MLflow dataset inputs), once, when it opens.

        Args:
            name: The data set, e.g. ``digits`` or the CSV file's name.
            source: Where it came from: an absolute file path, or the function that
                loads it (``sklearn.datasets.load_digits``).
            splits: ``{context: (features, targets)}`` as the run used them, contexts
                ``training``, ``validation`` and ``testing``.
        """

    def log_keras_model(self, model, input_example, step=0, metrics=()):
        """Records the trained model, linked to the run and to its final metrics.

        Args:
            model: The Keras model.
            input_example: A few samples, kept with it (and its signature's source).
            step: The epoch the model came out of.
            metrics: Keys of the run's metrics that measure this model (best_*, test_*).
        """
