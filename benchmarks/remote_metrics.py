"""What synchronous metric logging costs against a real ``mlflow server``, per epoch.

kerastrack logs metrics synchronously when the tracking URI is http(s): an asynchronous
call returns before the server answers, so an outage would go unseen and the metrics be
lost (MLflow's queue is in memory). This measures one epoch's log_metrics call (8 values)
both ways against a server on 127.0.0.1, interleaved, and prints the ratio; the async
figure includes the final flush, spread over the calls.

Usage: python benchmarks/remote_metrics.py [--calls 100] [--rounds 3]
"""

import argparse
import tempfile
import time
from pathlib import Path
from statistics import median

import mlflow

from kerastrack.tracking.server import MlflowServer, sqlite_uri


def per_call_ms(calls, synchronous):
    metrics = {f"m{i}": 0.5 for i in range(8)}
    with mlflow.start_run():
        start = time.perf_counter()
        for step in range(calls):
            mlflow.log_metrics(metrics, step=step, synchronous=synchronous)
        if not synchronous:
            mlflow.flush_async_logging()
        return (time.perf_counter() - start) / calls * 1000


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, MlflowServer(sqlite_uri(Path(tmp) / "m.db"), cwd=tmp) as server:
        mlflow.set_tracking_uri(server.url)
        mlflow.set_experiment("remote_metrics")
        sync, async_ = [], []
        for _ in range(args.rounds):
            sync.append(per_call_ms(args.calls, True))
            async_.append(per_call_ms(args.calls, False))
        s, a = median(sync), median(async_)
        print(f"log_metrics per epoch (8 values), {args.calls} calls x {args.rounds} rounds, median:")
        print(f"  synchronous {s:.2f} ms, async {a:.2f} ms (incl. flush): ratio {s / a:.2f}")


if __name__ == "__main__":
    main()
