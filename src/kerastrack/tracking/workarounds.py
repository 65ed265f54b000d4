"""Where MLflow 3.17 falls short, and what kerastrack does instead; each says why, so that
it can go when MLflow no longer needs it. Nothing here is kerastrack's own logic."""

import contextlib
import logging
import os
import threading


class StoreFull(logging.Filter):
    """Notes a store that a full disk keeps from writing, and keeps MLflow from printing a
    traceback for every batch it then fails to write (its async queue logs each one): the
    pipeline stops the run and says it once. Also drops MLflow's traceback for a store
    locked by another process: the outbox keeps what could not be written, and says so once."""

    seen = threading.Event()
    LOGGERS = ("mlflow.store.db.utils", "mlflow.utils.async_logging.async_logging_queue")

    @classmethod
    def install(cls):
        for name in cls.LOGGERS:
            logger = logging.getLogger(name)
            if not any(isinstance(f, cls) for f in logger.filters):
                logger.addFilter(cls())

    def filter(self, record):
        text = record.getMessage() + (str(record.exc_info[1]) if record.exc_info else "")
        if "disk is full" in text or "No space left on device" in text:
            self.seen.set()
            return False
        return "database is locked" not in text


def dispose_engine(uri):
    """Closes MLflow's cached connections to a database file before it is renamed (MLflow
    keeps one engine per URI for the process's life, and has no public way to drop it)."""
    from mlflow.tracking._tracking_service.utils import _get_store

    with contextlib.suppress(Exception):
        _get_store(uri).engine.dispose()


def forget_active_run(run_id):
    """Ends the fluent API's active run without telling the server (which has not got
    everything yet). mlflow.end_run has no such mode; this is what it does before its
    set_terminated call (mlflow/tracking/fluent.py, 3.17)."""
    from mlflow.environment_variables import MLFLOW_RUN_ID
    from mlflow.tracking import fluent

    stack = fluent._active_run_stack.get()
    if stack and stack[-1].info.run_id == run_id:
        stack.pop()
        MLFLOW_RUN_ID.unset()
        fluent._last_active_run_id.set(run_id)


class KerasFlavor:
    """``mlflow.keras`` that creates the model directory before saving into it.

    With an input example, ``mlflow.keras.save_model`` writes the example before it creates
    the directory and fails (mlflow issue #16183, open in 3.17).
    """

    __name__ = "mlflow.keras"

    @staticmethod
    def save_model(path, **kwargs):
        import mlflow.keras

        os.makedirs(path, exist_ok=True)
        mlflow.keras.save_model(path=path, **kwargs)
