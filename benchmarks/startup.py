"""``python train.py`` to its first epoch, against a bare ``python -c "import tensorflow"``.

Three variants of a subprocess, interleaved in rotating order round after round so that
machine noise hits them alike, each in a fresh temporary directory:

- bare: ``python -c "import tensorflow"``, start to exit;
- fresh store: ``python train.py`` with no mlflow.db yet (the store is created: MLflow's
  migrations), start to its ``Epoch 1/2`` line;
- existing store: the same with a copy of an mlflow.db that already holds a run.

``train.py`` runs the default config with ``trainer.epochs=2`` (Keras prints ``Epoch 1/N``
as an epoch begins only when N > 1) and is killed at that line: what follows is not start-up.
The target: both train.py medians at most 1.2 times the bare import's.

Usage: python benchmarks/startup.py [--rounds 5]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
TARGET = 1.2
TRAIN = [sys.executable, str(ROOT / "train.py"), "trainer.epochs=2"]
BARE = [sys.executable, "-c", "import tensorflow"]
MARK = "Epoch 1/"


def environment():
    """This checkout's kerastrack, unbuffered output, and none of the caller's MLflow settings:
    the store is the one in the working directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def bare(cwd, env):
    start = time.perf_counter()
    subprocess.run(BARE, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def to_first_epoch(cwd, env):
    """Seconds from starting ``python train.py`` to its ``Epoch 1/2`` line; the process is
    killed there."""
    with open(Path(cwd) / "stderr.txt", "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(TRAIN, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err, text=True)
        try:
            for line in proc.stdout:
                if line.startswith(MARK):
                    return time.perf_counter() - start
        finally:
            proc.kill()
            proc.wait()
    raise RuntimeError(f"{' '.join(TRAIN)} ended without an epoch:\n{(Path(cwd) / 'stderr.txt').read_text()[-3000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the three variants")
    args = parser.parse_args()
    env = environment()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        # One whole run makes the store the "existing" variant copies, and warms the caches.
        subprocess.run(
            [*TRAIN[:-1], "trainer.epochs=1", "tracking.log_model=false"],
            cwd=work,
            env=env,
            check=True,
            capture_output=True,
        )
        template = work / "mlflow.db"

        def existing(cwd, env):
            shutil.copy(template, Path(cwd) / "mlflow.db")
            return to_first_epoch(cwd, env)

        variants = {"bare": bare, "fresh": to_first_epoch, "existing": existing}
        found = {name: [] for name in variants}
        for r in range(args.rounds):
            names = list(variants)[r % 3 :] + list(variants)[: r % 3]
            for name in names:
                cwd = Path(tempfile.mkdtemp(dir=work))
                found[name].append(variants[name](cwd, env))
                shutil.rmtree(cwd, ignore_errors=True)
            print(
                f"round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {found[n][-1]:.2f} s" for n in variants), flush=True
            )

    base = median(found["bare"])
    print(
        f"\nstart-up: {args.rounds} interleaved rounds, medians (min-max); {os.cpu_count()} CPUs, "
        f"load average {load:.1f} before, {os.getloadavg()[0]:.1f} after"
    )
    ratios = {}
    for name, label in (
        ("bare", 'python -c "import tensorflow"'),
        ("fresh", "train.py to epoch 1, fresh mlflow.db"),
        ("existing", "train.py to epoch 1, existing mlflow.db"),
    ):
        t = median(found[name])
        ratios[name] = t / base
        print(
            f"   {label:<42}{t:>6.2f} s   ({min(found[name]):.2f}-{max(found[name]):.2f})"
            + (f"   x{ratios[name]:.2f}, {t - base:+.2f} s" if name != "bare" else "")
        )
    del ratios["bare"]
    worst = max(ratios.values())
    print(f"   ratio (the larger) x{worst:.2f}, target <= x{TARGET}: {'PASS' if worst <= TARGET else 'FAIL'}")
    return 0 if worst <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
