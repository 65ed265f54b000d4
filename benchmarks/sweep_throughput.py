"""Runs per hour of a sweep, serial (basic launcher) vs parallel (launcher=parallel).

The same 6-job sweep on the default model (digits, MLP, early stopping) is run with each
launcher, alternating, `--rounds` times, each in a fresh working directory with a fresh
store. Prints the median runs/hour of each and their ratio: the machine is shared and
noisy, so only figures from one invocation are comparable.

It also prints the bound on that ratio this machine sets: the CPU time each sweep used
(its processes', waited for: the launcher, its workers, their threads) against its wall
time. No launcher can finish a sweep faster than its CPU time / the machine's cores, so
parallel can beat serial by at most serial wall time / (parallel CPU time / cores); and a
serial sweep that already keeps U cores busy leaves at most cores / U to gain.

    python benchmarks/sweep_throughput.py [--rounds 2] [--epochs 20]
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SWEEP = [
    "-m",
    "optimizer=sgd,momentum,nesterov,rmsprop,adam,amsgrad",
    "tracking.log_model=false",
    "trainer.verbose=0",
    "hydra.callbacks.mlflow_sweep.report=false",
]
LAUNCHERS = {"serial": [], "parallel": ["launcher=parallel"]}


TARGET = 1.6


def cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_sweep(extra, epochs):
    """Wall time and CPU time in seconds of one sweep in a fresh directory."""
    with tempfile.TemporaryDirectory() as cwd:
        cpu = cpu_seconds()
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(ROOT / "train.py"), *SWEEP, f"trainer.epochs={epochs}", *extra],
            cwd=cwd,
            capture_output=True,
            text=True,
        )
        elapsed = time.perf_counter() - start
        cpu = cpu_seconds() - cpu
    if result.returncode != 0:
        sys.exit(f"sweep failed ({' '.join(extra) or 'serial'}):\n{result.stderr[-2000:]}")
    return elapsed, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    jobs = len(SWEEP[1].split(","))
    cores = os.cpu_count()
    times = {name: [] for name in LAUNCHERS}
    cpus = {name: [] for name in LAUNCHERS}
    for round_ in range(args.rounds):
        for name, extra in LAUNCHERS.items():
            wall, cpu = run_sweep(extra, args.epochs)
            times[name].append(wall)
            cpus[name].append(cpu)
            print(f"round {round_ + 1}: {name:8s} {wall:6.1f} s, {cpu:6.1f} CPU s", flush=True)
    wall = {name: statistics.median(t) for name, t in times.items()}
    cpu = {name: statistics.median(t) for name, t in cpus.items()}
    rate = {name: jobs * 3600 / w for name, w in wall.items()}
    ratio = rate["parallel"] / rate["serial"]
    print(f"\n{jobs}-job sweep, default model, {args.epochs} epochs max, median of {args.rounds}, {cores} cores:")
    for name in LAUNCHERS:
        print(
            f"  {name:8s} {wall[name]:6.1f} s  {rate[name]:6.0f} runs/hour  {cpu[name]:6.1f} CPU s "
            f"({cpu[name] / wall[name]:.2f} cores busy on average)"
        )
    bound = wall["serial"] / (cpu["parallel"] / cores)
    print(
        f"  parallel / serial throughput: {ratio:.2f}x   target >= {TARGET}x  {'PASS' if ratio >= TARGET else 'FAIL'}"
    )
    print(
        f"  this machine's bound: serial wall / (parallel CPU s / {cores} cores) = {bound:.2f}x; "
        f"the serial sweep alone keeps {cpu['serial'] / wall['serial']:.2f} of {cores} cores busy "
        f"(at most {cores / (cpu['serial'] / wall['serial']):.2f}x to gain)"
    )


if __name__ == "__main__":
    main()
