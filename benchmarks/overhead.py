"""What kerastrack's tracking costs, against plain Keras and ``mlflow.keras.autolog``.

One process, the default config's model on digits, variants interleaved (A B C D B C D A ...) so
that machine noise hits them alike: 1. per-epoch time of a plain fit (A), with kerastrack's
EpochLogger and TrainingState (B), under autolog (C), and a plain fit again (D: the noise alone); 2. kerastrack's end-of-run cost without the model; 3. model logging,
kerastrack's and autolog's; 4. ``python train.py``'s time to its first epoch.

Usage: python benchmarks/overhead.py [--rounds 24] [--epochs 12] [--model-rounds 3] [--startup-rounds 3]
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

from common import EpochClock, quiet_fd2  # first: it sets TF_CPP_MIN_LOG_LEVEL

ROOT = Path(__file__).resolve().parents[1]


with quiet_fd2():  # TensorFlow 2.21's absl start-up lines ignore TF_CPP_MIN_LOG_LEVEL
    import keras
    import mlflow
    import mlflow.keras
    import tensorflow as tf
    from hydra import compose, initialize_config_dir
    from hydra.utils import instantiate
    from mlflow.keras.utils import get_model_signature
    from mlflow.utils import requirements_utils

    from kerastrack.callbacks.recording import EpochLogger, TrainingState
    from kerastrack.callbacks.summary import Summary
    from kerastrack.config.checks import monitor_mode
    from kerastrack.data import feed
    from kerastrack.models.heads import resolve_head, resolve_metrics
    from kerastrack.tracking import MlflowTracker, library_versions
    from kerastrack.utils.runtime import AUTO_STEPS_PER_EXECUTION


class TimedEpochLogger(EpochLogger):
    """kerastrack's EpochLogger, also summing per epoch the time spent in its own hooks."""

    def _timed(self, hook, *args):
        start = time.perf_counter()
        hook(*args)
        self.spent[-1] += time.perf_counter() - start

    def on_epoch_begin(self, epoch, logs=None):
        self.spent = [*getattr(self, "spent", []), 0.0]
        self._timed(super().on_epoch_begin, epoch, logs)

    def on_epoch_end(self, epoch, logs=None):
        self._timed(super().on_epoch_end, epoch, logs)


class TimedTrainingState(TrainingState):
    """kerastrack's per-epoch training state (for resume), its hook time added to the logger's."""

    def __init__(self, timer, *args):
        super().__init__(*args)
        self.timer = timer

    def on_epoch_end(self, epoch, logs=None):
        self.timer._timed(super().on_epoch_end, epoch, logs)


def setup(seed, workdir):
    """The default config (digits, mlp, adam) composed as train.py does, and what fit needs."""
    with initialize_config_dir(config_dir=str(ROOT / "src" / "kerastrack" / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"seed={seed}", "data=digits"])
    data = instantiate(cfg.data)  # kerastrack.data.sets.sklearn_set("digits", seed=seed)
    head = resolve_head(cfg.loss, data.task, data.num_classes)
    tf.config.experimental.enable_op_determinism()  # as train.py's default deterministic=true
    (Path(workdir) / "outputs").mkdir()  # train() creates its output dir before the run
    return SimpleNamespace(
        cfg=cfg,
        data=data,
        head=head,
        y_train=head.encode(data.y_train),
        y_val=head.encode(data.y_val),
        batch_size=cfg.trainer.batch_size,
        monitor=cfg.trainer.monitor,
        outdir=Path(workdir) / "outputs",
        mode=monitor_mode(cfg.trainer.monitor, cfg.trainer.monitor_mode),
        uri=f"sqlite:///{workdir}/mlflow.db",
        metric_names=[m.name for m in resolve_metrics(cfg.trainer.metrics, head)],
    )


def fit(s, epochs, callbacks):
    """Fits a fresh model, with the same initial weights and shuffles every time; returns it."""
    keras.backend.clear_session()  # no build-up of earlier models' graphs from fit to fit
    keras.utils.set_random_seed(s.cfg.seed)
    model = instantiate(s.cfg.model)(input_shape=s.data.input_shape, head=s.head)
    model.compile(
        optimizer=instantiate(s.cfg.optimizer),
        loss=instantiate(s.cfg.loss.fn),
        metrics=resolve_metrics(s.cfg.trainer.metrics, s.head),
        steps_per_execution=AUTO_STEPS_PER_EXECUTION,
    )  # as the default run
    # Fed as the default run is (kerastrack.data.feed): the epochs the tracking cost is set against.
    training = feed.TrainingFeed(s.data.x_train, s.y_train, s.batch_size, shuffle=True, seed=s.cfg.seed)
    model.fit(
        training.dataset,
        validation_data=feed.validation_data(s.data.x_val, s.y_val, s.batch_size),
        epochs=epochs,
        shuffle=False,
        callbacks=[training, *callbacks],
        verbose=0,
    )
    return model


def fit_b(s, epochs, clock):
    """B, then what train() does after fit minus the model; returns (hook times, end-of-run s)."""
    tracker = MlflowTracker(tracking_uri=s.uri, experiment_name="overhead", log_model=False)
    logger = TimedEpochLogger(tracker)
    state = TimedTrainingState(logger, s.outdir / "state", [], logger, None, s.cfg.trainer.state_every_s)
    with tracker.run("B-epoch-logger"):
        model = fit(s, epochs, [clock, logger, state])
        state.discard()  # the next fit starts afresh
        start = time.perf_counter()
        summary = Summary(tracker, {}, logger.epochs)
        summary.log_best(s.monitor, s.mode)
        summary.log_results(model, s.data, s.head, s.metric_names, s.batch_size, s.outdir)
    return logger.spent[1:], time.perf_counter() - start  # the latter includes closing the run


def per_epoch(s, rounds, warmup, epochs):
    """Parts 1 and 2: A, B and C's epoch times per fit, B's hook times and end-of-run costs."""
    times, hooks, end_of_run = {"A": [], "B": [], "C": [], "D": []}, [], []
    for r in range(warmup + rounds):
        # Rotate the order (ABCD, BCDA, ...): a variant that always ran later in a round
        # would also pay for any drift within rounds. D is A again: the noise alone.
        for variant in "ABCD"[r % 4 :] + "ABCD"[: r % 4]:
            # Autolog for C only (it opens and closes a run per fit); log_models=False: epochs only.
            mlflow.keras.autolog(disable=variant != "C", log_models=False, silent=True)
            clock = EpochClock()
            if variant == "B":
                spent, seconds = fit_b(s, epochs, clock)
                hooks += spent if r >= warmup else []
                end_of_run.append(seconds)
            else:
                fit(s, epochs, [clock])
            if r >= warmup:  # the first fits in a process are slower, whatever the variant
                times[variant].append(clock.epoch_times())
    mlflow.keras.autolog(disable=True)
    return times, median(hooks), end_of_run


def model_logging(s, rounds):
    """Part 3: median (seconds to log the model, seconds of them in MLflow's subprocess) per way."""
    in_subprocess, run_command = [], requirements_utils._run_command  # runs _capture_modules.py

    def timed_run_command(*args, **kwargs):
        start = time.perf_counter()
        result = run_command(*args, **kwargs)
        in_subprocess.append(time.perf_counter() - start)
        return result

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
        model = fit(s, 1, [])
        with tracker.run("model-logging"):
            found["kerastrack"].append(clocked(lambda: tracker.log_keras_model(model, s.data.x_test[:5])))
            # autolog's own call (mlflow/keras/autologging.py): a signature, no input example
            found["inferred"].append(
                clocked(lambda: mlflow.keras.log_model(model, name="model", signature=get_model_signature(model)))
            )
            found["explicit"].append(
                clocked(
                    lambda: mlflow.keras.log_model(
                        model, name="model", signature=get_model_signature(model), pip_requirements=pinned
                    )
                )
            )
        clock = EpochClock()  # autolog's real path: after Keras' fit, it logs the model and closes its run
        mlflow.keras.autolog(log_models=True, silent=True)
        _, spent = clocked(lambda: fit(s, 1, [clock]))
        found["autolog"].append((time.perf_counter() - clock.marks[-1], spent))
        mlflow.keras.autolog(disable=True)
    requirements_utils._run_command = run_command
    return {k: [median(column) for column in zip(*v)] for k, v in found.items()}


def startup(rounds, uri):
    """Part 4: median seconds to a bare ``import tensorflow``; to train.py's epoch 1 start, end, exit.

    Runs ``epochs=2``: Keras prints "Epoch 1/N" as an epoch begins only when N > 1.
    """
    env = {
        **os.environ,
        "TF_CPP_MIN_LOG_LEVEL": "3",
        "PYTHONUNBUFFERED": "1",
        "PYTHONHASHSEED": "0",
        "MLFLOW_TRACKING_URI": uri,
    }  # an existing store: creating one is a one-off cost
    command = [
        sys.executable,
        str(ROOT / "train.py"),
        "trainer.epochs=2",
        "tracking.log_model=false",
        "trainer.verbose=2",
    ]
    found = []
    with tempfile.TemporaryDirectory() as cwd:  # Hydra's outputs/ go there, not into the repo
        for _ in range(rounds):
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-c", "import tensorflow"], env=env, cwd=cwd, check=True, capture_output=True
            )
            marks, start = [time.perf_counter() - start], time.perf_counter()
            with subprocess.Popen(
                command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            ) as proc:
                for line in proc.stdout:  # "Epoch 1/2" as epoch 1 begins, "34/34 - 1s - ..." as it ends
                    if len(marks) < 3 and re.match(r"Epoch 1/|\d+/\d+ - ", line):
                        marks.append(time.perf_counter() - start)
            if proc.returncode or len(marks) < 3:
                raise RuntimeError(f"{' '.join(command)}: exit {proc.returncode}, or no epoch lines")
            found.append([*marks, time.perf_counter() - start])
    return [median(column) for column in zip(*found)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--rounds",
        type=int,
        default=24,
        help="timed A B C rounds (parts 1, 2); fewer than ~24 leave the ratios +-2%% noisy",
    )
    parser.add_argument("--warmup", type=int, default=1, help="untimed A B C rounds before them")
    parser.add_argument("--epochs", type=int, default=12, help="epochs per fit; the first is not counted")
    parser.add_argument("--model-rounds", type=int, default=3, help="model logging rounds (part 3)")
    parser.add_argument("--startup-rounds", type=int, default=3, help="subprocess pairs (part 4)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "tensorflow"):  # tensorflow: retracing warnings, new models
        logging.getLogger(name).setLevel(logging.ERROR)

    # In workdir: MLflow puts a new experiment's artifacts under ./mlruns of the current directory.
    with tempfile.TemporaryDirectory() as workdir, contextlib.chdir(workdir):
        s = setup(args.seed, workdir)
        MlflowTracker(tracking_uri=s.uri, experiment_name="overhead")._set_experiment()  # the store, once
        times, hooks, end_of_run = per_epoch(s, args.rounds, args.warmup, args.epochs)
        logged = model_logging(s, args.model_rounds)
        bare, begun, ended, total = startup(args.startup_rounds, s.uri)

    ms = {k: 1e3 * median(t for fit_times in v for t in fit_times) for k, v in times.items()}
    # Ratios are paired by round (median over rounds of B_r/A_r): drifts in machine load cancel out.
    ratio = {k: median(median(x) / median(a) for x, a in zip(times[k], times["A"])) for k in "BCD"}
    cold, warm, hooks = end_of_run[0], median(end_of_run[1:] or end_of_run), hooks * 1e3
    spread = [1e3 * median(fit_times) for fit_times in times["A"]]
    # The hooks run on the training thread, so 1 + hooks/A bounds B/A from below whatever the noise.
    b_over_a = max(ratio["B"], 1 + hooks / ms["A"])
    (kt, _), (auto, sub), (inferred, inferred_sub), (explicit, _) = logged.values()

    def row(label, value, note=""):
        print(f"   {label:<44}{value:>9}   {note}".rstrip())

    def ok(passed):
        return "PASS" if passed else "FAIL"

    print(
        f"\nkerastrack overhead: digits, MLP {list(s.cfg.model.hidden_units)}, {s.cfg.optimizer._target_}, "
        f"batch {s.batch_size}; {os.cpu_count()} CPUs, load average {os.getloadavg()[1]:.1f} (5 min); medians"
    )
    print(
        f"1. per epoch: {args.rounds} interleaved rounds x {args.epochs - 1} epochs (each fit's first not counted), "
        f"{AUTO_STEPS_PER_EXECUTION} steps a call as the default run"
    )
    row("A plain model.fit", f"{ms['A']:.1f} ms", f"rounds' medians {min(spread):.0f}-{max(spread):.0f} ms (noise)")
    row("B + EpochLogger, TrainingState (SQLite)", f"{ms['B']:.1f} ms", f"B/A {ratio['B']:.3f} (paired by round)")
    row(
        "  of which in their own hooks",
        f"{hooks:.2f} ms",
        f"target <= 0.5 ms on the training thread  {ok(hooks <= 0.5)}",
    )
    row(
        "  B/A, the larger of the two estimates",
        f"{b_over_a:.3f}",
        f"1 + hooks/A = {1 + hooks / ms['A']:.3f}   target <= 1.01  {ok(b_over_a <= 1.01)}",
    )
    row(
        "C mlflow.keras.autolog(log_models=False)",
        f"{ms['C']:.1f} ms",
        f"C/A {ratio['C']:.3f}   target B/A below it  {ok(b_over_a < ratio['C'])}",
    )
    row(
        "D plain model.fit again (noise control)",
        f"{ms['D']:.1f} ms",
        f"D/A {ratio['D']:.3f}: what noise alone makes of two identical fits",
    )
    print("2. end of run without the model: best and test metrics, plots, closing the run")
    row("first in the process, as in train.py", f"{cold:.2f} s", f"target <= 1 s  {ok(cold <= 1)}")
    row("later ones", f"{warm:.2f} s")
    print(f"3. model logging: {args.model_rounds} rounds")
    row(
        "kerastrack MlflowTracker.log_keras_model",
        f"{kt:.2f} s",
        f"{kt / auto:.0%} of autolog's   target < 25%  {ok(kt < auto / 4)}",
    )
    row("autolog: end of training -> fit returns", f"{auto:.2f} s", f"in requirement-inference subprocess {sub:.2f} s")
    row("mlflow.keras.log_model as autolog calls it", f"{inferred:.2f} s", f"in the subprocess {inferred_sub:.2f} s")
    row("  the same with explicit pip_requirements", f"{explicit:.2f} s")
    print(
        f"   why: given no pip_requirements, MLflow infers them in a fresh Python (mlflow/utils/_capture_modules.py)\n"
        f"   that imports MLflow, then loads the model with mlflow.pyfunc, importing TensorFlow again: {sub / auto:.0%} "
        f"of autolog's\n   model logging; a bare import tensorflow alone takes {bare:.2f} s"
    )
    print(f"4. start-up: {args.startup_rounds} interleaved pairs of subprocesses")
    row("python -c 'import tensorflow'", f"{bare:.2f} s")
    row("python train.py to its 'Epoch 1/2' line", f"{begun:.2f} s", f"+{begun - bare:.2f} s, x{begun / bare:.2f}")
    row("  to the end of epoch 1; whole run", f"{ended:.2f} s", f"{total:.2f} s")


if __name__ == "__main__":
    main()
