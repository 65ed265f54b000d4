"""What kerastrack's tracking costs, against plain Keras and ``mlflow.keras.autolog``.

In one process, on the same data and model (digits, the default config's MLP), with the
variants interleaved so that machine noise hits them alike, it measures:

1. per-epoch time of (A) a plain ``fit``, (B) ``fit`` with kerastrack's EpochLogger logging
   to an MLflow run and (C) ``fit`` under ``mlflow.keras.autolog(log_models=False)``;
2. kerastrack's end-of-run cost without the model: ``_log_best``, ``_log_results`` with
   ``log_model=False`` (test metrics, plots, artifacts) and closing the run;
3. model logging: kerastrack's ``MlflowTracker.log_keras_model`` against autolog's, and how
   much of autolog's goes to MLflow's pip-requirement inference subprocess;
4. ``python train.py``'s time to its first epoch against a bare ``import tensorflow``.

Usage:
    python benchmarks/overhead.py [--rounds 5] [--epochs 10] [--model-rounds 3] [--startup-rounds 3]
"""

import argparse
import contextlib
import io
import logging
import re
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from statistics import median

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def quiet_stderr():
    """Sends file descriptor 2 to /dev/null (C++ log lines bypass Python's sys.stderr)."""
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with quiet_stderr():  # TensorFlow 2.21's absl start-up lines ignore TF_CPP_MIN_LOG_LEVEL
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
    """Epoch wall times, each from an epoch's start to the next one's (or the end of training).

    Measuring start to start counts every callback's on_epoch_end work, wherever it sits in
    the list (autolog appends its callback after this one).
    """

    def on_train_begin(self, logs=None):
        self.starts, self.end = [], None

    def on_epoch_begin(self, epoch, logs=None):
        self.starts.append(time.perf_counter())

    def on_train_end(self, logs=None):
        self.end = time.perf_counter()

    def epoch_times(self):
        marks = [*self.starts, self.end]
        return [b - a for a, b in zip(marks, marks[1:])][1:]  # epoch 0 also traces the graphs


def setup(seed, workdir):
    """The composed default config with digits, the data and what fitting needs."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"seed={seed}", "data=digits"])
    data = instantiate(cfg.data)  # kerastrack.data.digits(seed=seed)
    head = resolve_head(cfg.loss, data.task, data.num_classes)
    tf.config.experimental.enable_op_determinism()  # as train.py's default deterministic=true
    (Path(workdir) / "outputs").mkdir()  # train() makes its output dir before the run
    return dict(
        cfg=cfg, data=data, head=head, y_train=head.encode(data.y_train), y_val=head.encode(data.y_val),
        batch_size=cfg.trainer.batch_size, monitor=cfg.trainer.monitor,
        mode=monitor_mode(cfg.trainer.monitor, cfg.trainer.monitor_mode),
        metric_names=[m.name for m in resolve_metrics(cfg.trainer.metrics, head)],
        uri=f"sqlite:///{workdir}/mlflow.db", outdir=Path(workdir) / "outputs",
    )


def build(s):
    """A fresh model with the same initial weights (and shuffles) every time."""
    keras.utils.set_random_seed(s["cfg"].seed)
    model = instantiate(s["cfg"].model)(input_shape=s["data"].input_shape, head=s["head"])
    model.compile(optimizer=instantiate(s["cfg"].optimizer), loss=instantiate(s["cfg"].loss.fn),
                  metrics=resolve_metrics(s["cfg"].trainer.metrics, s["head"]))
    return model


def fit(s, model, epochs, callbacks):
    model.fit(s["data"].x_train, s["y_train"], validation_data=(s["data"].x_val, s["y_val"]), epochs=epochs,
              batch_size=s["batch_size"], shuffle=True, callbacks=callbacks, verbose=0)


def fit_tracked(s, model, epochs, clock):
    """B: fit with EpochLogger in a real run, then time what train() does after fit, minus the model."""
    tracker = MlflowTracker(tracking_uri=s["uri"], experiment_name="overhead", log_model=False)
    logger = EpochLogger(tracker)
    with tracker.run("B-epoch-logger"):
        fit(s, model, epochs, [clock, logger])
        start = time.perf_counter()
        pipeline._log_best(tracker, logger.epochs, s["monitor"], s["mode"])
        pipeline._log_results(tracker, model, s["data"], s["head"], logger.epochs, s["metric_names"],
                              s["outdir"], s["batch_size"])
    return time.perf_counter() - start  # includes closing the run


def per_epoch(s, rounds, epochs):
    """Parts 1 and 2: epoch times of A, B, C (A B C A B C ...) and B's end-of-run costs."""
    times, end_of_run = {"A": [], "B": [], "C": []}, []
    for _ in range(rounds):
        for variant in "ABC":
            model, clock = build(s), EpochClock()
            if variant == "A":
                fit(s, model, epochs, [clock])
            elif variant == "B":
                end_of_run.append(fit_tracked(s, model, epochs, clock))
            else:
                mlflow.keras.autolog(log_models=False, silent=True)  # opens and closes its own run
                fit(s, model, epochs, [clock])
                mlflow.keras.autolog(disable=True)
            times[variant] += clock.epoch_times()
    return {k: median(v) for k, v in times.items()}, end_of_run


def model_logging(s, rounds):
    """Part 3: model logging, kerastrack's and autolog's, timing MLflow's inference subprocess."""
    in_subprocess = []
    run_command = requirements_utils._run_command  # runs mlflow/utils/_capture_modules.py

    def timed_run_command(*args, **kwargs):
        start = time.perf_counter()
        try:
            return run_command(*args, **kwargs)
        finally:
            in_subprocess.append(time.perf_counter() - start)

    def clocked(log):
        in_subprocess.clear()
        start = time.perf_counter()
        # MLflow checks an input example by predicting with Keras' default verbosity: a progress bar.
        with contextlib.redirect_stdout(io.StringIO()):
            log()
        return time.perf_counter() - start, sum(in_subprocess)

    requirements_utils._run_command = timed_run_command
    versions = library_versions()
    pinned = [f"{n}=={versions[n]}" for n in ("tensorflow", "keras", "mlflow")]
    tracker = MlflowTracker(tracking_uri=s["uri"], experiment_name="overhead")
    found = {k: [] for k in ("kerastrack", "autolog", "inferred", "explicit")}
    for _ in range(rounds):
        model = build(s)
        fit(s, model, 1, [])
        with tracker.run("model-logging"):
            found["kerastrack"].append(clocked(lambda: tracker.log_keras_model(model, s["data"].x_test[:5])))
            # autolog's own call (mlflow/keras/autologging.py): signature, no input example, no requirements
            found["inferred"].append(clocked(lambda: mlflow.keras.log_model(
                model, name="model", signature=get_model_signature(model))))
            found["explicit"].append(clocked(lambda: mlflow.keras.log_model(
                model, name="model", signature=get_model_signature(model), pip_requirements=pinned)))
        # autolog's real path: after Keras' fit returns it logs the model, then closes its run.
        clock = EpochClock()
        in_subprocess.clear()
        mlflow.keras.autolog(log_models=True, silent=True)
        fit(s, build(s), 1, [clock])
        found["autolog"].append((time.perf_counter() - clock.end, sum(in_subprocess)))
        mlflow.keras.autolog(disable=True)
    requirements_utils._run_command = run_command
    return {k: (median(t for t, _ in v), median(p for _, p in v)) for k, v in found.items()}


def startup(rounds, uri):
    """Part 4: seconds to a bare ``import tensorflow`` and to train.py's first epoch.

    Runs ``epochs=2``: Keras prints "Epoch 1/N" as an epoch begins only when N > 1.
    """
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1", "PYTHONHASHSEED": "0",
           "MLFLOW_TRACKING_URI": uri}  # an existing store: creating one is a one-off cost
    command = [sys.executable, str(ROOT / "train.py"), "trainer.epochs=2", "tracking.log_model=false",
               "trainer.verbose=2"]
    bare, begun, ended, total = [], [], [], []
    with tempfile.TemporaryDirectory() as cwd:  # Hydra's outputs/ go there, not into the repo
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, cwd=cwd, check=True,
                           capture_output=True)
            bare.append(time.perf_counter() - start)
            start, seen = time.perf_counter(), []
            with subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) as proc:
                for line in proc.stdout:  # "Epoch 1/2" as epoch 1 begins, "34/34 - 1s - ..." as it ends
                    if re.match(r"Epoch 1/|\d+/\d+ - ", line) and len(seen) < 2:
                        seen.append(time.perf_counter() - start)
            total.append(time.perf_counter() - start)
            if proc.returncode or len(seen) < 2:
                raise RuntimeError(f"{' '.join(command)} failed (exit {proc.returncode}) or printed no epoch")
            begun.append(seen[0])
            ended.append(seen[1])
    return median(bare), median(begun), median(ended), median(total)


def verdict(ok):
    return "PASS" if ok else "FAIL"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="A B C rounds for parts 1-2")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per fit (the first is not counted)")
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
        MlflowTracker(tracking_uri=s["uri"], experiment_name="overhead")._set_experiment()  # the store, once
        epoch, end_of_run = per_epoch(s, args.rounds, args.epochs)
        logged = model_logging(s, args.model_rounds)
        bare, first, first_end, total = startup(args.startup_rounds, s["uri"])

    a, b, c = epoch["A"] * 1e3, epoch["B"] * 1e3, epoch["C"] * 1e3
    kt, auto = logged["kerastrack"][0], logged["autolog"][0]
    cold, warm = end_of_run[0], median(end_of_run[1:] or end_of_run)
    print(f"\nkerastrack overhead: digits, {s['cfg'].model.hidden_units} MLP, batch {s['batch_size']}, "
          f"{os.cpu_count()} CPUs; {args.rounds} interleaved rounds x {args.epochs} epochs (medians)")
    print("1. per epoch (first epoch excluded)")
    print(f"   A plain model.fit                    {a:8.1f} ms")
    print(f"   B + EpochLogger -> MlflowTracker     {b:8.1f} ms  B/A {b / a:.3f} (+{b - a:.1f} ms)  "
          f"target <= 1.01  {verdict(b / a <= 1.01)}")
    print(f"   C mlflow.keras.autolog(log_models=False) {c:4.1f} ms  C/A {c / a:.3f} (+{c - a:.1f} ms)")
    print("2. end of run without the model (_log_best, _log_results, run close)")
    print(f"   first (cold, as in one train.py) {cold:6.2f} s; later {warm:.2f} s  target <= 1 s  "
          f"{verdict(cold <= 1)}")
    print("3. model logging")
    print(f"   kerastrack log_keras_model       {kt:6.2f} s  target < 25% of autolog's: "
          f"{kt / auto:.0%}  {verdict(kt < auto / 4)}")
    print(f"   autolog (end of fit -> return)   {auto:6.2f} s  of which requirement-inference subprocess "
          f"{logged['autolog'][1]:.2f} s")
    print(f"   mlflow.keras.log_model, inferred requirements {logged['inferred'][0]:6.2f} s "
          f"(subprocess {logged['inferred'][1]:.2f} s); explicit pip_requirements {logged['explicit'][0]:.2f} s")
    print(f"   why: without pip_requirements MLflow infers them by loading the saved model in a fresh "
          f"Python (mlflow/utils/_capture_modules.py) that imports TensorFlow again: "
          f"{logged['autolog'][1] / auto:.0%} of autolog's model logging; a bare import tensorflow takes {bare:.2f} s")
    print("4. start-up (subprocesses)")
    print(f"   python -c 'import tensorflow'    {bare:6.2f} s")
    print(f"   python train.py to 'Epoch 1/2'   {first:6.2f} s  (+{first - bare:.2f} s, x{first / bare:.2f}); "
          f"to its end {first_end:.2f} s; whole epochs=2 run {total:.2f} s")


if __name__ == "__main__":
    main()
