"""Runs per hour of a sweep, serial (basic launcher) vs parallel (launcher=parallel).

The same 6-job sweep on the default model (digits, MLP, early stopping) is run with each
launcher, alternating, `--rounds` times, each in a fresh working directory with a fresh
store. Prints the median runs/hour of each and their ratio: the machine is shared and
noisy, so only figures from one invocation are comparable.

    python benchmarks/sweep_throughput.py [--rounds 2] [--epochs 20]
"""

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = ["-m", "optimizer=sgd,momentum,nesterov,rmsprop,adam,amsgrad", "tracking.log_model=false",
         "trainer.verbose=0", "hydra.callbacks.mlflow_sweep.report=false"]
LAUNCHERS = {"serial": [], "parallel": ["launcher=parallel"]}


def run_sweep(extra, epochs):
    """Wall time in seconds of one sweep in a fresh directory."""
    with tempfile.TemporaryDirectory() as cwd:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, str(ROOT / "train.py"), *SWEEP, f"trainer.epochs={epochs}", *extra],
                                cwd=cwd, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(extra) or 'serial'}):\n{result.stderr[-2000:]}")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    jobs = len(SWEEP[1].split(","))
    times = {name: [] for name in LAUNCHERS}
    for round_ in range(args.rounds):
        for name, extra in LAUNCHERS.items():
            times[name].append(run_sweep(extra, args.epochs))
            print(f"round {round_ + 1}: {name:8s} {times[name][-1]:6.1f} s", flush=True)
    rate = {name: jobs * 3600 / statistics.median(t) for name, t in times.items()}
    print(f"\n{jobs}-job sweep, default model, {args.epochs} epochs max, median of {args.rounds}:")
    for name in LAUNCHERS:
        print(f"  {name:8s} {statistics.median(times[name]):6.1f} s  {rate[name]:6.0f} runs/hour")
    print(f"  parallel / serial throughput: {rate['parallel'] / rate['serial']:.2f}x")


if __name__ == "__main__":
    main()
