"""How fast kerastrack trains by default, against plain Keras, and what the hardware allows.

One process, variants interleaved in rotating order, so that machine noise hits them alike:

1. the default run's epoch (``pipeline.train`` as ``python train.py`` runs it: MLflow tracking,
   training state, early stopping, ``trainer.steps_per_execution=auto``, the feed) against a
   plain ``model.fit`` with Keras' defaults (one step per call, no callbacks) on the same model,
   data and batch size, and the same default run with ``trainer.steps_per_execution=1``;
2. the studies' MLP (784 -> 128 -> 10, 10,000 samples, batch 32): its epoch at 1 and at 32 steps
   a call, from the arrays and through kerastrack's feed (kerastrack/data/feed.py), beside its
   compute bound, its floating-point operations / this CPU's measured matmul rate.

Epochs are timed from one epoch's start to the next one's (everything done at an epoch's end
counts); each fit's first epoch (tracing) is left out.

Usage: python benchmarks/speed.py [--rounds 4] [--epochs 8]
"""

import argparse
import contextlib
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from statistics import median

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.utils import instantiate  # noqa: E402

from kerastrack import pipeline  # noqa: E402
from kerastrack.data import feed  # noqa: E402
from kerastrack.models.heads import resolve_head, resolve_metrics  # noqa: E402

TARGET, AIM = 1.5, 2.0


class EpochStarts(keras.callbacks.Callback):
    """Stamps every epoch's start and the end of training: begin-to-begin durations include
    all the work every callback does at an epoch's end."""

    marks = []

    def on_epoch_begin(self, epoch, logs=None):
        EpochStarts.marks.append(time.perf_counter())

    def on_train_end(self, logs=None):
        EpochStarts.marks.append(time.perf_counter())


def epoch_times():
    """Seconds per epoch of the last fit, its first epoch (tracing) left out."""
    marks, EpochStarts.marks = EpochStarts.marks, []
    return list(np.diff(marks)[1:])


def compose_default(run_dir, *overrides):
    """The default config, output in ``run_dir``, runs in one store in the working directory."""
    with initialize_config_dir(config_dir=str(ROOT / "src" / "kerastrack" / "conf"), version_base="1.3"):
        cfg = compose(
            "train",
            overrides=[
                f"paths.output_dir={run_dir}/out",
                "trainer.verbose=0",
                f"tracking.tracking_uri=sqlite:///{Path.cwd()}/mlflow.db",
                "tracking.experiment_name=speed",
                "tracking.log_model=false",
                "+callbacks.zz_clock._target_=__main__.EpochStarts",
                *overrides,
            ],
            return_hydra_config=True,
        )
    HydraConfig.instance().set_config(cfg)
    return cfg


def default_run(workdir, epochs, *overrides):
    """The default run, in this process, as train.py runs it; its epoch times."""
    pipeline.train(compose_default(workdir, f"trainer.epochs={epochs}", *overrides))
    return epoch_times()


def plain_fit(cfg, epochs):
    """model.fit with Keras' defaults on the default run's model, data and batch size."""
    data = instantiate(cfg.data)
    head = resolve_head(cfg.loss, data.task, data.num_classes)
    keras.utils.set_random_seed(cfg.seed)
    model = instantiate(cfg.model)(input_shape=data.input_shape, head=head)
    model.compile(
        optimizer=instantiate(cfg.optimizer),
        loss=instantiate(cfg.loss.fn),
        metrics=resolve_metrics(cfg.trainer.metrics, head),
    )
    model.fit(
        data.x_train,
        head.encode(data.y_train),
        validation_data=(data.x_val, head.encode(data.y_val)),
        epochs=epochs,
        batch_size=cfg.trainer.batch_size,
        callbacks=[EpochStarts()],
        verbose=0,
    )
    return epoch_times()


def matmul_rate(n=1024, repeats=30):
    """This CPU's float32 matmul rate in FLOP/s (the best of a few timed batches)."""
    a = tf.random.uniform((n, n))
    b = tf.random.uniform((n, n))
    run = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    run(a, b).numpy()
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(repeats):
            run(a, b).numpy()
        best = max(best, 2 * n**3 * repeats / (time.perf_counter() - start))
    return best


def studies_mlp(steps_per_execution, epochs, rng, fed=False):
    """Epoch times of the studies' MLP on data of Fashion-MNIST's shape (random: the time
    depends on shapes only), from the arrays as Keras reads them, or through kerastrack's
    feed (``fed``)."""
    x = rng.random((10_000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 10_000)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((784,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    if fed:
        training = feed.TrainingFeed(x, y, 32, shuffle=True, seed=0)
        model.fit(training.dataset, epochs=epochs, callbacks=[training, EpochStarts()], verbose=0)
    else:
        model.fit(x, y, epochs=epochs, batch_size=32, callbacks=[EpochStarts()], verbose=0)
    return epoch_times()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=4, help="interleaved rounds of every variant")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per fit; the first is not counted")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    for name in ("mlflow", "alembic", "tensorflow", "kerastrack", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    rng = np.random.default_rng(0)
    variants = {
        "keras": lambda w: plain_fit(compose_default(w), args.epochs),
        "kerastrack": lambda w: default_run(w, args.epochs),
        "kerastrack_n1": lambda w: default_run(w, args.epochs, "trainer.steps_per_execution=1"),
        "mlp_n1": lambda w: studies_mlp(1, max(3, args.epochs // 2), rng),
        "mlp_n32": lambda w: studies_mlp(32, max(3, args.epochs // 2), rng),
        "mlp_fed": lambda w: studies_mlp(32, max(3, args.epochs // 2), rng, fed=True),
    }
    times = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as workdir, contextlib.chdir(workdir):
        for r in range(args.rounds + 1):  # round 0 warms up (first graphs, the store's creation)
            names = list(variants)[r % len(variants) :] + list(variants)[: r % len(variants)]
            for name in names:
                with tempfile.TemporaryDirectory(dir=workdir) as run_dir:
                    epochs = variants[name](run_dir)
                if r:
                    times[name].append(median(epochs))
        rate = matmul_rate()
    ms = {name: 1e3 * median(t) for name, t in times.items()}
    # Paired by round: drifts in machine load cancel out.
    speedup = median(k / d for k, d in zip(times["keras"], times["kerastrack"]))
    lever = median(n1 / d for n1, d in zip(times["kerastrack_n1"], times["kerastrack"]))
    # The studies' MLP: 2 FLOPs a multiply-add; training ~3x the forward pass (forward, and two
    # matmuls back); validation forward only (6,000 samples in the studies).
    forward = 2 * (784 * 128 + 128 * 10)
    flops = 10_000 * 3 * forward
    bound = 1e3 * flops / rate

    def row(label, value, note=""):
        print(f"   {label:<50}{value:>10}   {note}".rstrip())

    print(
        f"\nkerastrack speed: {os.cpu_count()} CPUs, load average {os.getloadavg()[1]:.1f} (5 min); "
        f"medians of {args.rounds} interleaved rounds, epochs begin to begin, first epoch of each fit left out"
    )
    print("1. the default run (digits, MLP [128], Adam, batch 32) against plain Keras")
    row("plain model.fit, Keras' defaults (1 step a call)", f"{ms['keras']:.1f} ms")
    row(
        "python train.py's epoch, tracking on (steps_per_execution=auto)",
        f"{ms['kerastrack']:.1f} ms",
        f"{speedup:.2f}x faster   target >= {TARGET}x (aim {AIM}x)  {'PASS' if speedup >= TARGET else 'FAIL'}",
    )
    row(
        "  the same with trainer.steps_per_execution=1",
        f"{ms['kerastrack_n1']:.1f} ms",
        f"auto is {lever:.2f}x faster than 1 (per-epoch metrics bit-identical: tests/test_devices.py)",
    )
    print("2. the studies' MLP (784 -> 128 -> 10, 10,000 samples, batch 32), training pass only")
    row(f"compute bound: {flops / 1e9:.2f} GFLOP at {rate / 1e9:.0f} GFLOP/s (matmul)", f"{bound:.1f} ms")
    row("measured, 1 step a call", f"{ms['mlp_n1']:.1f} ms", f"{ms['mlp_n1'] / bound:.0f}x the bound")
    row("measured, 32 steps a call", f"{ms['mlp_n32']:.1f} ms", f"{ms['mlp_n32'] / bound:.0f}x the bound")
    row(
        "measured, 32 steps a call, kerastrack's feed",
        f"{ms['mlp_fed']:.1f} ms",
        f"{ms['mlp_fed'] / bound:.0f}x the bound",
    )


if __name__ == "__main__":
    main()
