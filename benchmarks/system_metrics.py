"""What ``tracking.system_metrics=true`` costs the default run, per epoch and per run.

One process, the default run on digits (``pipeline.train`` as ``python train.py`` runs it,
MLflow tracking into a temporary SQLite store), with and without MLflow's system-metrics
sampler (``tracking.system_metrics_interval``, default 1 s), in rotating order: off on, on
off, ... Per epoch: the median of the run's own ``epoch_time_s`` over epochs 1.. (epoch 0
traces the graphs); per run: ``train()``'s wall time. Then the sampler's own work per
sample, timed alone: what it reads (psutil), its check that the run is still RUNNING (a
``get_run``), and handing the sample to its batch logger.

Usage: python benchmarks/system_metrics.py [--rounds 3] [--epochs 20]
"""

import argparse
import logging
import os
import tempfile
import time
from pathlib import Path
from statistics import median

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]


def one_run(tmp, epochs, on, i):
    import mlflow
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from kerastrack.pipeline import train

    uri = f"sqlite:///{tmp}/mlflow.db"
    overrides = [
        f"trainer.epochs={epochs}",
        "trainer.verbose=0",
        f"paths.output_dir={tmp}/out{i}",
        f"tracking.tracking_uri={uri}",
        "tracking.experiment_name=system_metrics",
        f"tracking.system_metrics={str(on).lower()}",
    ]
    with initialize_config_dir(config_dir=str(ROOT / "src" / "kerastrack" / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    start = time.perf_counter()
    train(cfg)
    wall = time.perf_counter() - start
    client = mlflow.MlflowClient(uri)
    (run,) = client.search_runs(
        [client.get_experiment_by_name("system_metrics").experiment_id],
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    epochs_s = [
        m.value for m in sorted(client.get_metric_history(run.info.run_id, "epoch_time_s"), key=lambda m: m.step)
    ]
    samples = len(client.get_metric_history(run.info.run_id, "system/cpu_utilization_percentage"))
    return median(epochs_s[1:]) * 1000, wall, samples


def per_sample_ms(tmp, n=20):
    import mlflow
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    uri = f"sqlite:///{tmp}/mlflow.db"
    client = mlflow.MlflowClient(uri)
    run = client.create_run(client.get_experiment_by_name("system_metrics").experiment_id)
    monitor = SystemMetricsMonitor(run.info.run_id, tracking_uri=uri)
    times = []
    for _ in range(n):
        start = time.perf_counter()
        monitor.collect_metrics()
        mlflow.MlflowClient(uri).get_run(run.info.run_id)  # as its loop does, a new client each time
        monitor.publish_metrics(monitor.aggregate_metrics())
        times.append(time.perf_counter() - start)
    monitor.mlflow_logger.flush()
    return median(times) * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=20)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    found = {False: [], True: []}
    with tempfile.TemporaryDirectory() as tmp:
        one_run(tmp, 2, False, "warm-up")  # the first run in a process also loads what every run uses
        for r in range(args.rounds):
            for on in (False, True) if r % 2 == 0 else (True, False):
                found[on].append(one_run(tmp, args.epochs, on, f"{r}{on}"))
        sample_ms = per_sample_ms(tmp)
    print(f"default run on digits, {args.epochs} epochs, {args.rounds} rounds, medians:")
    for on, label in ((False, "off"), (True, "on ")):
        epoch, wall, samples = (median(v[k] for v in found[on]) for k in range(3))
        print(
            f"  system_metrics {label}: epoch {epoch:.1f} ms, run {wall:.2f} s, {samples:.0f} samples"
            f"  (epochs: {', '.join(f'{v[0]:.1f}' for v in found[on])})"
        )
    ratio = median(on[0] / off[0] for on, off in zip(found[True], found[False]))
    print(f"  per-epoch ratio on/off (paired by round): {ratio:.3f}")
    print(f"  the sampler's work per sample, alone: {sample_ms:.2f} ms")


if __name__ == "__main__":
    main()
