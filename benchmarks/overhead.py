"""What kerastrack's tracking costs, against plain Keras and ``mlflow.keras.autolog``.

In one process, on the same data and model (digits, the default config's MLP), with the
variants interleaved (A B C A B C ...) so that machine noise hits them alike:

1. per-epoch time of (A) a plain ``fit``, (B) ``fit`` with kerastrack's EpochLogger logging
   to an MLflow run in an SQLite store and (C) ``fit`` under ``mlflow.keras.autolog``;
2. kerastrack's end-of-run cost without the model (``_log_best``, ``_log_results`` with
   ``log_model=False``: test metrics, plots, artifacts; and closing the run);
3. model logging: ``MlflowTracker.log_keras_model`` against autolog's, and the share of
   autolog's spent in MLflow's pip-requirement inference subprocess;
4. ``python train.py``'s time to its first epoch against a bare ``import tensorflow``.

Usage:
    python benchmarks/overhead.py [--rounds 6] [--epochs 12] [--model-rounds 3] [--startup-rounds 3]
"""

import argparse
import contextlib
import io
import logging
import os
import re
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from statistics import median
from types import SimpleNamespace

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def quiet_fd2():
    """Points file descriptor 2 at /dev/null: C++ log lines bypass Python's sys.stderr."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with quiet_fd2():  # TensorFlow 2.21's absl start-up lines ignore TF_CPP_MIN_LOG_LEVEL
    import keras
    import mlflow
    import mlflow.keras
    import tensorflow as tf
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from mlflow.keras.utils import get_model_signature
    from mlflow.utils import requirements_utils

    from kerastrack import pipeline
    from kerastrack.callbacks import EpochLogger
    from kerastrack.config import monitor_mode
    from kerastrack.heads import resolve_head, resolve_metrics
    from kerastrack.tracking import MlflowTracker, library_versions


class EpochClock(keras.callbacks.Callback):
    """Epoch times from one epoch's start to the next one's (the last: to the end of training).

    Start to start counts every callback's on_epoch_end work wherever it sits in the list
    (autolog appends its callback after this one).
    """

    def on_train_begin(self, logs=None):
        self.marks = []

    def on_epoch_begin(self, epoch, logs=None):
        self.marks.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.end = time.perf_counter()
        self.marks.append(self.end)

    def epoch_times(self):
        return [b - a for a, b in zip(self.marks, self.marks[1:])][1:]  # epoch 0 also traces graphs


class TimedEpochLogger(EpochLogger):
    """kerastrack's EpochLogger, also summing the time spent in its own hooks, per epoch."""

    def _timed(self, hook, *args):
        start = time.perf_counter()
        hook(*args)
        self.spent[-1] += time.perf_counter() - start

    def on_epoch_begin(self, epoch, logs=None):
        self.spent = [*getattr(self, "spent", []), 0.0]
        self._timed(super().on_epoch_begin, epoch, logs)

    def on_train_batch_end(self, batch, logs=None):
        self._timed(super().on_train_batch_end, batch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._timed(super().on_epoch_end, epoch, logs)


def setup(seed, workdir):
    """The default config (digits, mlp, adam) composed as train.py would, and the data."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"seed={seed}", "data=digits"])
    data = instantiate(cfg.data)  # kerastrack.data.digits(seed=seed)
    head = resolve_head(cfg.loss, data.task, data.num_classes)
    tf.config.experimental.enable_op_determinism()  # as train.py's default deterministic=true
    (Path(workdir) / "outputs").mkdir()  # train() creates its output dir before the run
    return SimpleNamespace(
        cfg=cfg, data=data, head=head, y_train=head.encode(data.y_train), y_val=head.encode(data.y_val),
        batch_size=cfg.trainer.batch_size, monitor=cfg.trainer.monitor,
        mode=monitor_mode(cfg.trainer.monitor, cfg.trainer.monitor_mode),
        metric_names=[m.name for m in resolve_metrics(cfg.trainer.metrics, head)],
        uri=f"sqlite:///{workdir}/mlflow.db", outdir=Path(workdir) / "outputs")


def build(s):
    """A fresh compiled model, with the same initial weights and shuffles every time."""
    keras.utils.set_random_seed(s.cfg.seed)
    model = instantiate(s.cfg.model)(input_shape=s.data.input_shape, head=s.head)
    model.compile(optimizer=instantiate(s.cfg.optimizer), loss=instantiate(s.cfg.loss.fn),
                  metrics=resolve_metrics(s.cfg.trainer.metrics, s.head))
    return model


def fit(s, model, epochs, callbacks):
    model.fit(s.data.x_train, s.y_train, validation_data=(s.data.x_val, s.y_val), epochs=epochs,
              batch_size=s.batch_size, shuffle=True, callbacks=callbacks, verbose=0)


def per_epoch(s, rounds, warmup, epochs):
    """Parts 1 and 2: epoch times of A, B and C, B's own hook time and B's end-of-run costs."""
    times, hooks, end_of_run = {"A": [], "B": [], "C": []}, [], []
    for r in range(warmup + rounds):
        for variant in "ABC":
            model, clock = build(s), EpochClock()
            if variant == "A":
                fit(s, model, epochs, [clock])
            elif variant == "B":  # then what train() does after fit, minus logging the model
                tracker = MlflowTracker(tracking_uri=s.uri, experiment_name="overhead", log_model=False)
                logger = TimedEpochLogger(tracker)
                with tracker.run("B-epoch-logger"):
                    fit(s, model, epochs, [clock, logger])
                    start = time.perf_counter()
                    pipeline._log_best(tracker, logger.epochs, s.monitor, s.mode)
                    pipeline._log_results(tracker, model, s.data, s.head, logger.epochs, s.metric_names,
                                          s.outdir, s.batch_size)
                end_of_run.append(time.perf_counter() - start)  # includes closing the run
                hooks += logger.spent[1:] if r >= warmup else []
            else:
                mlflow.keras.autolog(log_models=False, silent=True)  # opens and closes its own run
                fit(s, model, epochs, [clock])
                mlflow.keras.autolog(disable=True)
            if r >= warmup:  # the first fits in a process are slower for all variants
                times[variant] += clock.epoch_times()
    return {k: median(v) for k, v in times.items()}, median(hooks), end_of_run


def model_logging(s, rounds):
    """Part 3: seconds to log the model (and in MLflow's subprocess), median per way."""
    in_subprocess, run_command = [], requirements_utils._run_command  # runs _capture_modules.py

    def timed_run_command(*args, **kwargs):
        start = time.perf_counter()
        try:
            return run_command(*args, **kwargs)
        finally:
            in_subprocess.append(time.perf_counter() - start)

    def clocked(log):
        in_subprocess.clear()
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):  # MLflow's input-example check prints a progress bar
            log()
        return time.perf_counter() - start, sum(in_subprocess)

    requirements_utils._run_command = timed_run_command
    pinned = [f"{n}=={v}" for n, v in library_versions().items() if n in ("tensorflow", "keras", "mlflow")]
    tracker = MlflowTracker(tracking_uri=s.uri, experiment_name="overhead")
    found = {k: [] for k in ("kerastrack", "autolog", "inferred", "explicit")}
    for _ in range(rounds):
        model = build(s)
        fit(s, model, 1, [])
        with tracker.run("model-logging"):
            found["kerastrack"].append(clocked(lambda: tracker.log_keras_model(model, s.data.x_test[:5])))
            # autolog's own call (mlflow/keras/autologging.py): a signature, no input example
            found["inferred"].append(clocked(lambda: mlflow.keras.log_model(
                model, name="model", signature=get_model_signature(model))))
            found["explicit"].append(clocked(lambda: mlflow.keras.log_model(
                model, name="model", signature=get_model_signature(model), pip_requirements=pinned)))
        clock = EpochClock()  # autolog's real path: after Keras' fit, it logs the model and closes its run
        mlflow.keras.autolog(log_models=True, silent=True)
        _, spent = clocked(lambda: fit(s, build(s), 1, [clock]))
        found["autolog"].append((time.perf_counter() - clock.end, spent))
        mlflow.keras.autolog(disable=True)
    requirements_utils._run_command = run_command
    return {k: (median(t for t, _ in v), median(p for _, p in v)) for k, v in found.items()}


def startup(rounds, uri):
    """Part 4: seconds to a bare ``import tensorflow``, and to train.py's first epoch start and end.

    Runs ``epochs=2``: Keras prints "Epoch 1/N" as an epoch begins only when N > 1.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "PYTHONHASHSEED": "0",
           "MLFLOW_TRACKING_URI": uri}  # an existing store: creating one is a one-off ~1 s
    command = [sys.executable, str(ROOT / "train.py"), "trainer.epochs=2", "tracking.log_model=false",
               "trainer.verbose=2"]
    found = []
    with tempfile.TemporaryDirectory() as cwd:  # Hydra's outputs/ go there, not into the repo
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, cwd=cwd, check=True,
                           capture_output=True)
            marks = [time.perf_counter() - start]
            start = time.perf_counter()
            with subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) as proc:
                for line in proc.stdout:  # "Epoch 1/2" as epoch 1 begins, "34/34 - 1s - ..." as it ends
                    if len(marks) < 3 and re.match(r"Epoch 1/|\d+/\d+ - ", line):
                        marks.append(time.perf_counter() - start)
            if proc.returncode or len(marks) < 3:
                raise RuntimeError(f"{' '.join(command)}: exit {proc.returncode}, or no epoch lines")
            found.append([*marks, time.perf_counter() - start])
    return [median(column) for column in zip(*found)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=6, help="timed A B C rounds (parts 1, 2)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed A B C rounds before them")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per fit; the first is not counted")
    parser.add_argument("--model-rounds", type=int, default=3, help="rounds of model logging (part 3)")
    parser.add_argument("--startup-rounds", type=int, default=3, help="subprocess pairs (part 4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)

    with tempfile.TemporaryDirectory() as workdir:
        s = setup(args.seed, workdir)
        mlflow.keras.autolog(disable=True)
        MlflowTracker(tracking_uri=s.uri, experiment_name="overhead")._set_experiment()  # the store, once
        epoch, hooks, end_of_run = per_epoch(s, args.rounds, args.warmup, args.epochs)
        logged = model_logging(s, args.model_rounds)
        bare, begun, ended, total = startup(args.startup_rounds, s.uri)

    a, b, c, hooks = epoch["A"] * 1e3, epoch["B"] * 1e3, epoch["C"] * 1e3, hooks * 1e3
    cold, warm = end_of_run[0], median(end_of_run[args.warmup:] or end_of_run)
    kt, auto, sub = logged["kerastrack"][0], *logged["autolog"]
    verdict = {True: "PASS", False: "FAIL"}
    print(f"\nkerastrack overhead: digits, MLP {list(s.cfg.model.hidden_units)}, {s.cfg.optimizer._target_}, "
          f"batch {s.batch_size}, {os.cpu_count()} CPUs; medians")
    print(f"1. per epoch, {args.rounds} interleaved rounds x {args.epochs - 1} epochs (after a first one)")
    print(f"   A plain model.fit                       {a:7.1f} ms")
    print(f"   B + EpochLogger -> MlflowTracker        {b:7.1f} ms   B/A {b / a:.3f}  target <= 1.01  "
          f"{verdict[b / a <= 1.01]}")
    print(f"     time inside EpochLogger's own hooks   {hooks:7.1f} ms   {hooks / a:.1%} of A")
    print(f"   C mlflow.keras.autolog(log_models=False) {c:6.1f} ms   C/A {c / a:.3f}")
    print("2. end of run without the model (_log_best, _log_results, closing the run)")
    print(f"   first in the process (as in train.py) {cold:6.2f} s   later {warm:.2f} s   target <= 1 s  "
          f"{verdict[cold <= 1]}")
    print(f"3. model logging, {args.model_rounds} rounds")
    print(f"   kerastrack log_keras_model            {kt:6.2f} s   {kt / auto:.0%} of autolog's  "
          f"target < 25%  {verdict[kt < auto / 4]}")
    print(f"   autolog, end of fit -> fit returns    {auto:6.2f} s   in requirement-inference subprocess {sub:.2f} s")
    print(f"   mlflow.keras.log_model as autolog calls it {logged['inferred'][0]:.2f} s "
          f"(subprocess {logged['inferred'][1]:.2f} s); with pip_requirements {logged['explicit'][0]:.2f} s")
    print(f"   why: with no pip_requirements MLflow infers them by loading the saved model in a fresh Python "
          f"(mlflow/utils/_capture_modules.py) that imports TensorFlow again: {sub / auto:.0%} of autolog's "
          f"cost; a bare import tensorflow takes {bare:.2f} s")
    print(f"4. start-up, {args.startup_rounds} interleaved pairs of subprocesses")
    print(f"   python -c 'import tensorflow'         {bare:6.2f} s")
    print(f"   python train.py to 'Epoch 1/2'        {begun:6.2f} s   +{begun - bare:.2f} s, x{begun / bare:.2f}; "
          f"epoch 1 ends {ended:.2f} s; whole run {total:.2f} s")


if __name__ == "__main__":
    main()
