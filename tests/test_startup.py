"""A fast and quiet start: TensorFlow's C++ log lines held to TF_CPP_MIN_LOG_LEVEL from its
first line, the collector paused while the big libraries load, a new store built unsynced."""

import gc
import logging
import os
import sqlite3

import pytest

from kerastrack.tracking import open_store
from kerastrack.utils import startup

# What TensorFlow 2.21 prints from its libraries' static initializers on a CPU machine,
# before it reads TF_CPP_MIN_LOG_LEVEL (written to fd 2 by C++, not through sys.stderr).
ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
ONEDNN = (
    b"I0000 00:00:1795998344.111442   16911 port.cc:153] oneDNN custom operations are on. You may see "
    b"slightly different numerical results due to floating-point round-off errors.\n"
)
A_WARNING = b"W0000 00:00:1795998344.158124   16911 some_op.cc:12] a warning\n"
AN_ERROR = b"E0000 00:00:1795998349.280575   16911 cuda_platform.cc:52] failed call to cuInit: UNKNOWN ERROR (303)\n"
PYTHON_LINE = b"train.py:3: UserWarning: not TensorFlow's\n"


def written_through_the_filter(level, capfd):
    with startup._start_lines_filtered(level):
        for line in (ABSL_NOTICE, ONEDNN, A_WARNING, PYTHON_LINE, AN_ERROR):
            os.write(2, line)
    return capfd.readouterr().err.encode()


def test_tensorflows_early_lines_below_the_level_are_dropped_and_the_rest_pass_in_order(capfd):
    assert written_through_the_filter(1, capfd) == A_WARNING + PYTHON_LINE + AN_ERROR
    assert written_through_the_filter(3, capfd) == PYTHON_LINE


def test_level_0_shows_every_line_unfiltered(capfd):
    assert written_through_the_filter(0, capfd) == ABSL_NOTICE + ONEDNN + A_WARNING + PYTHON_LINE + AN_ERROR


def test_quiet_by_default_and_a_level_the_user_set_is_kept(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    startup.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    startup.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0" and startup.tensorflow_log_level() == 0


def test_the_collector_is_paused_once_per_block_and_back_on_after_an_interrupt(monkeypatch):
    monkeypatch.setattr(startup, "_paused", set())
    frozen = gc.get_freeze_count()
    try:
        with pytest.raises(KeyboardInterrupt), startup.gc_paused("a library"):
            assert not gc.isenabled()
            built = [[] for _ in range(1000)]  # noqa: F841  long-lived objects, as an import makes
            raise KeyboardInterrupt
        assert gc.isenabled() and gc.get_freeze_count() >= frozen + 1000  # later collections skip them
        with startup.gc_paused("a library"):  # again (a sweep's next job): runs as is
            assert gc.isenabled()
    finally:
        gc.unfreeze()


def test_a_new_store_is_a_plain_durable_sqlite_file(tmp_path):
    # Built without syncs or a journal file: those pragmas hold for the building connection
    # only, never for the store that runs are then recorded in.
    database = tmp_path / "mlflow.db"
    client = open_store(f"sqlite:///{database}")
    assert [e.name for e in client.search_experiments()] == ["Default"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.db", "mlflow.db.lock"]
    with sqlite3.connect(database) as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    from mlflow.tracking._tracking_service.utils import _get_store

    with _get_store(f"sqlite:///{database}").engine.connect() as connection:  # MLflow's own, for runs
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL, SQLite's default


def test_only_retracing_warnings_about_keras_own_functions_are_dropped():
    def passes(message):
        return startup._KerasRetracing().filter(logging.makeLogRecord({"msg": message, "levelno": logging.WARNING}))

    keras_own = (
        "5 out of the last 5 calls to <function TensorFlowTrainer.make_predict_function.<locals>."
        "multi_step_on_data at 0x7f> triggered tf.function retracing. Tracing is expensive"
    )
    assert not passes(keras_own)
    assert passes("5 out of the last 5 calls to <function my_step at 0x7f> triggered tf.function retracing.")
    assert passes("TensorFlowTrainer.make_train_function: some other warning")


def test_the_retracing_warnings_of_a_process_that_builds_a_model_per_job_are_dropped():
    # As the basic launcher runs a sweep: one process, a new Keras model per job. TensorFlow
    # counts traces per function code, across models; a fresh count for this test.
    import keras
    import numpy as np
    from tensorflow.python.eager.polymorphic_function import polymorphic_function as tf_function

    tf_function._frequent_tracing_detector_manager = tf_function._FrequentTracingDetectorManager()
    seen = []
    handler = logging.Handler()
    handler.emit = seen.append
    logger = logging.getLogger("tensorflow")
    installed = [f for f in logger.filters if isinstance(f, startup._KerasRetracing)]  # by another test
    for f in installed:
        logger.removeFilter(f)
    logger.addHandler(handler)
    try:
        x, y = np.zeros((40, 4), "float32"), np.zeros((40, 1), "float32")
        for _ in range(4):  # jobs
            model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
            model.compile("sgd", "mse")
            model.fit(x, y, batch_size=16, epochs=1, validation_data=(x, y), verbose=0)
    finally:
        logger.removeHandler(handler)
        for f in installed:
            logger.addFilter(f)
    retracing = [r for r in seen if "triggered tf.function retracing" in r.getMessage()]
    assert retracing, "TensorFlow no longer warns here: the filter may go"
    assert not [r.getMessage() for r in retracing if startup._KerasRetracing().filter(r)]
