"""What ``kerastrack.Tracker()`` costs a plain Keras script, beside ``mlflow.keras.autolog``.

One process, a plain script's fit (scikit-learn's digits as arrays, ``validation_split=0.2``,
an MLP [128] with Adam, batch 32, Keras' defaults otherwise), variants interleaved in rotating
order (A T L D, T L D A, ...) so that machine noise hits them alike: A plain fit; T with
``kerastrack.Tracker(log_model=False)``; L under ``mlflow.keras.autolog(log_models=False)``; D plain
again (the noise alone). Per epoch: from one epoch's start to the next (each fit's first epoch,
which traces graphs, not counted), ratios paired by round. Then the end of a run with the
model logged: from fit's last epoch to fit's return, Tracker (``log_model=True``) and autolog
(``log_models=True``). Both record into one SQLite store in a temporary directory.

Usage: python benchmarks/tracker_vs_autolog.py [--rounds 12] [--epochs 10] [--model-rounds 3]
"""

import argparse
import contextlib
import logging
import os
import tempfile
import time
import warnings
from statistics import median

from common import EpochClock, quiet_fd2  # first: it sets TF_CPP_MIN_LOG_LEVEL

with quiet_fd2():  # TensorFlow 2.21's absl start-up lines ignore TF_CPP_MIN_LOG_LEVEL
    import keras
    import mlflow
    import mlflow.keras
    from sklearn.datasets import load_digits

    import kerastrack


def data():
    digits = load_digits()
    return (digits.images[..., None] / 16).astype("float32"), keras.utils.to_categorical(digits.target, 10)


def fit(x, y, epochs, callbacks, seed=0):
    """A plain script's fit of a fresh model, the same initial weights every time."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input(x.shape[1:]),
            keras.layers.Flatten(),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    model.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=32, epochs=epochs, validation_split=0.2, callbacks=callbacks, verbose=0)


def per_epoch(x, y, uri, rounds, epochs):
    """Every variant's epoch times, one list per fit."""
    times = {v: [] for v in "ATLD"}
    for r in range(rounds + 1):  # round 0 warms up: the first fits in a process are slower
        for variant in "ATLD"[r % 4 :] + "ATLD"[: r % 4]:
            mlflow.keras.autolog(disable=variant != "L", log_models=False, silent=True)
            clock = EpochClock()
            extra = (
                [kerastrack.Tracker(tracking_uri=uri, experiment_name="T", log_model=False)] if variant == "T" else []
            )
            fit(x, y, epochs, [clock, *extra])
            if r:
                times[variant].append(clock.epoch_times())
    mlflow.keras.autolog(disable=True)
    return times


def end_of_run(x, y, uri, rounds):
    """Seconds from the last epoch's end to fit's return, with the model logged, per way."""
    found = {"T": [], "L": []}
    for _ in range(rounds):
        for variant in found:
            mlflow.keras.autolog(disable=variant != "L", log_models=True, silent=True)
            clock = EpochClock()
            extra = [kerastrack.Tracker(tracking_uri=uri, experiment_name="T-model")] if variant == "T" else []
            fit(x, y, 2, [clock, *extra])
            found[variant].append(time.perf_counter() - clock.marks[-1])
    mlflow.keras.autolog(disable=True)
    return {k: median(v) for k, v in found.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=12, help="timed A T L D rounds")
    parser.add_argument("--epochs", type=int, default=10, help="epochs per fit; the first is not counted")
    parser.add_argument("--model-rounds", type=int, default=3, help="end-of-run rounds with the model")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "tensorflow", "kerastrack"):
        logging.getLogger(name).setLevel(logging.ERROR)

    x, y = data()
    # In workdir: autolog's runs go to the active tracking URI, their artifacts beside the store.
    with tempfile.TemporaryDirectory() as workdir, contextlib.chdir(workdir):
        uri = f"sqlite:///{workdir}/mlflow.db"
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment("L")
        times = per_epoch(x, y, uri, args.rounds, args.epochs)
        ends = end_of_run(x, y, uri, args.model_rounds)

    ms = {k: 1e3 * median(t for one_fit in v for t in one_fit) for k, v in times.items()}
    ratio = {k: median(median(t) / median(a) for t, a in zip(times[k], times["A"])) for k in "TLD"}
    print(
        f"\nTracker vs mlflow.keras.autolog: digits as arrays, MLP [128], Adam, batch 32, validation_split=0.2; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[1]:.1f} (5 min); medians"
    )
    print(f"1. per epoch: {args.rounds} interleaved rounds x {args.epochs - 1} epochs (each fit's first not counted)")
    rows = [
        ("A plain model.fit", "A", ""),
        ("T + kerastrack.Tracker(log_model=False)", "T", f"T/A {ratio['T']:.3f}"),
        ("L under mlflow.keras.autolog(log_models=False)", "L", f"L/A {ratio['L']:.3f}"),
        ("D plain model.fit again (the noise)", "D", f"D/A {ratio['D']:.3f}"),
    ]
    for label, key, note in rows:
        print(f"   {label:<50}{ms[key]:>8.1f} ms   {note}".rstrip())
    print(f"   {'Tracker against autolog per epoch':<50}{ratio['T'] / ratio['L']:>8.3f}      T/L")
    print(f"2. end of a run with the model logged ({args.model_rounds} rounds): last epoch's end to fit's return")
    print(f"   {'Tracker (summary, logged model, FINISHED)':<50}{ends['T']:>8.2f} s")
    print(f"   {'autolog (logged model, run closed)':<50}{ends['L']:>8.2f} s   T/L {ends['T'] / ends['L']:.2f}")


if __name__ == "__main__":
    main()
