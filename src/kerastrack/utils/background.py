"""Work done in order on a thread of its own, off the training thread: the per-epoch metrics'
calls to MLflow (the outbox) and the training state's writes."""

import queue
import threading
import time


class Worker:
    """Runs calls in order on a daemon thread; a failure is kept for the caller's thread.

    A burst starts 2 ms after its first call is handed over: the training thread is back in
    TensorFlow by then. Started at once, the worker's Python held the GIL that the training
    thread's epoch-end work waited for (the training state's read: 0.6 ms became 1.1 ms).

    Args:
        name: The thread's name.
    """

    def __init__(self, name):
        self._calls = queue.Queue()
        self._failure = None
        threading.Thread(target=self._run, daemon=True, name=name).start()

    def put(self, call, *args):
        self._calls.put((call, args))

    def join(self):
        """Waits until every call handed over has run."""
        self._calls.join()

    def take_failure(self):
        """The first exception a call raised since the last take, or None."""
        failure, self._failure = self._failure, None
        return failure

    def stop(self):
        """Runs what is left, then ends the thread."""
        self.join()
        self._calls.put(None)

    def _run(self):
        while (item := self._calls.get()) is not None:
            if self._calls.empty():
                time.sleep(0.002)
            try:
                call, args = item
                call(*args)
            except BaseException as exc:  # noqa: BLE001 - raised on the caller's thread, by its owner
                self._failure = self._failure or exc
            finally:
                self._calls.task_done()
        self._calls.task_done()
