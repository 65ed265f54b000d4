"""Fault injection for the fault-matrix tests: pauses a process at a named moment.

Python imports ``sitecustomize`` at startup from the first ``sys.path`` entry that has
one; the tests put this directory first on the PYTHONPATH of ``python train.py`` (and so
of every process it starts, loky workers of the parallel launcher included). Nothing
happens unless ``KT_PAUSE_AT`` is set.

Environment:
    KT_PAUSE_AT: Comma-separated moments to pause at (each at most once per process):
        ``store``: a fresh MLflow SQL store has its initial tables, no migration ran yet;
        ``migrate``: inside the migrations of a fresh store: the one that creates the
        ``registered_model_tags`` table has run, its version is not stamped yet (what an
        interrupted ``mlflow db upgrade`` leaves: a re-run repeats it and fails);
        ``open``: while the data loads, before the run opens: just before scikit-learn's
        ``load_digits`` (the default data set; a sweep's jobs only);
        ``fit``: just after ``kerastrack.callbacks.recording.EpochLogger.on_epoch_end`` returned for
        epoch 1 (0-based): epochs 0 and 1 are finished and handed to the tracker;
        ``close``: just before a run's final status is set (``mlflow.end_run`` or
        ``MlflowClient.set_terminated``, whichever comes first; a sweep's jobs only).
    KT_PAUSE_DIR: Where a paused process writes ``<pid>`` (holding the moment's name) and
        waits for ``<pid>.go``, which releases it.
    KT_PAUSE_S: The longest pause, in seconds (60): the process goes on after it.
    KT_PAUSE_ROOT_PID: Set here, by the first process (inherited by those it starts).

The patches are applied lazily, when the target module is first imported (a
``sys.meta_path`` finder wraps its loader), so that nothing heavy is imported at startup.
"""

import functools
import importlib.abc
import os
import sys
import time

_MOMENTS = {m for m in os.environ.get("KT_PAUSE_AT", "").split(",") if m}
_DONE = set()


def _in_sweep_launcher():
    """The first process, when it runs ``train.py -m``, launches jobs: it is not one of them.

    Known by its pid, not its command line: spawned workers (loky) take their parent's
    sys.argv and main module.
    """
    multirun = any(a in ("-m", "--multirun") for a in sys.argv[1:])
    return multirun and os.environ.get("KT_PAUSE_ROOT_PID") == str(os.getpid())


def pause(moment, jobs_only=False):
    """Writes the marker and waits for the release (or KT_PAUSE_S), once per moment.

    A signal delivered meanwhile is handled as it would be at this point of the code: its
    Python handler runs inside ``time.sleep``.
    """
    if moment not in _MOMENTS or moment in _DONE or (jobs_only and _in_sweep_launcher()):
        return
    _DONE.add(moment)
    directory = os.environ["KT_PAUSE_DIR"]
    marker = os.path.join(directory, str(os.getpid()))
    go = f"{marker}.go"
    with open(f"{marker}.tmp", "w") as f:
        f.write(moment)
    os.replace(f"{marker}.tmp", marker)  # the test never reads half a name
    deadline = time.monotonic() + float(os.environ.get("KT_PAUSE_S", "60"))
    while time.monotonic() < deadline and not os.path.exists(go):
        time.sleep(0.02)
    for path in (go, marker):
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def _before(function, moment, jobs_only=False):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        pause(moment, jobs_only)
        return function(*args, **kwargs)

    return wrapper


def _patch_sklearn(module):
    if "open" in _MOMENTS:
        module.load_digits = _before(module.load_digits, "open", jobs_only=True)


def _patch_fluent(module):
    if "close" in _MOMENTS:
        module.end_run = _before(module.end_run, "close", jobs_only=True)


def _patch_client(module):
    if "close" in _MOMENTS:
        cls = module.MlflowClient
        cls.set_terminated = _before(cls.set_terminated, "close", jobs_only=True)


def _patch_db_utils(module):
    # _initialize_tables creates the initial tables, then calls _upgrade_db (a module
    # global) for the migrations: pausing before it is pausing in between.
    if "store" in _MOMENTS:
        module._upgrade_db = _before(module._upgrade_db, "store")


# The migration that creates registered_model_tags (MLflow's revision ids never change).
_MIGRATION = "728d730b5ebd"


def _patch_alembic(module):
    if "migrate" not in _MOMENTS:
        return
    original = module.HeadMaintainer.update_to_step

    @functools.wraps(original)
    def update_to_step(self, step):
        # Alembic stamps each migration's revision after running it (SQLite's DDL is not
        # transactional here): pausing before the stamp leaves the migration's tables behind.
        if _MIGRATION in getattr(step, "to_revisions", ()):
            pause("migrate")
        return original(self, step)

    module.HeadMaintainer.update_to_step = update_to_step


def _patch_callbacks(module):
    if "fit" not in _MOMENTS:
        return
    original = module.EpochLogger.on_epoch_end

    @functools.wraps(original)
    def on_epoch_end(self, epoch, logs=None):
        result = original(self, epoch, logs)
        if epoch == 1:
            pause("fit")
        return result

    module.EpochLogger.on_epoch_end = on_epoch_end


_PATCHES = {
    "sklearn.datasets": _patch_sklearn,
    "mlflow.tracking.fluent": _patch_fluent,
    "mlflow.tracking.client": _patch_client,
    "mlflow.store.db.utils": _patch_db_utils,
    "alembic.runtime.migration": _patch_alembic,
    "kerastrack.callbacks.recording": _patch_callbacks,
}


class _PatchingFinder(importlib.abc.MetaPathFinder):
    """Finds a target module with the other finders and patches it right after it runs."""

    def find_spec(self, name, path, target=None):
        patch = _PATCHES.get(name)
        if patch is None:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def patched_exec_module(module):
            exec_module(module)
            patch(module)

        spec.loader.exec_module = patched_exec_module
        return spec


if _MOMENTS:
    os.environ.setdefault("KT_PAUSE_ROOT_PID", str(os.getpid()))  # inherited by every process it starts
    sys.meta_path.insert(0, _PatchingFinder())
