"""Mixed precision and XLA on this machine: epoch time against float32 without XLA.

One process; per model, the variants (float32, mixed_float16, mixed_bfloat16, float32 + XLA)
are fitted in interleaved rounds so that machine noise hits them alike. Reported: the median
epoch time after the first epoch (the first one traces and, with XLA, compiles), its ratio to
float32, and the first epoch's extra time (tracing/compiling). Op determinism is off for all
variants: Keras turns XLA off under it.

Usage: python benchmarks/precision_xla.py [--rounds 3] [--epochs 6] [--batch-size 64]
"""

import argparse
import os
import time
from statistics import median

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

from kerastrack.data.sets import sklearn_set  # noqa: E402
from kerastrack.models import builders as models  # noqa: E402
from kerastrack.models.heads import Head  # noqa: E402

VARIANTS = {  # name: (dtype policy, jit_compile)
    "float32": ("float32", False),
    "mixed_float16": ("mixed_float16", False),
    "mixed_bfloat16": ("mixed_bfloat16", False),
    "float32 + XLA": ("float32", True),
}
MODELS = {
    "mlp 2x512": lambda shape, head: models.mlp(shape, head, hidden_units=(512, 512)),
    "cnn 32-64": lambda shape, head: models.cnn(shape, head, filters=(32, 64), dense_units=128),
}


class EpochTimes(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.times = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def fit_once(build, data, head, policy, jit_compile, epochs, batch_size):
    keras.mixed_precision.set_global_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = build(data.input_shape, head)
        model.compile(optimizer="adam", loss="categorical_crossentropy", jit_compile=jit_compile)
        clock = EpochTimes()
        model.fit(
            data.x_train, head.encode(data.y_train), epochs=epochs, batch_size=batch_size, callbacks=[clock], verbose=0
        )
        return clock.times
    finally:
        keras.mixed_precision.set_global_policy("float32")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    data = sklearn_set("digits", seed=0)
    head = Head("multiclass", data.num_classes, "softmax", "one_hot")
    print(
        f"digits: {len(data.x_train)} training samples, batch {args.batch_size}, "
        f"{args.rounds} rounds x {args.epochs} epochs, {os.cpu_count()} cores"
    )
    for model_name, build in MODELS.items():
        steady = {v: [] for v in VARIANTS}
        first = {v: [] for v in VARIANTS}
        for _ in range(args.rounds):
            for variant, (policy, jit) in VARIANTS.items():
                times = fit_once(build, data, head, policy, jit, args.epochs, args.batch_size)
                steady[variant].append(median(times[1:]))
                first[variant].append(times[0] - median(times[1:]))
        base = median(steady["float32"])
        print(f"\n{model_name}: {'variant':<16} {'epoch ms':>9} {'vs float32':>11} {'1st epoch extra s':>18}")
        for variant in VARIANTS:
            t = median(steady[variant])
            print(
                f"{'':<{len(model_name) + 1}} {variant:<16} {t * 1e3:9.1f} {t / base:10.2f}x {median(first[variant]):18.2f}"
            )


if __name__ == "__main__":
    main()
