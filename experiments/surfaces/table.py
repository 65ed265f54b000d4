"""The tables of experiments/surfaces/README.md, from the latest surfaces sweep in a store.

    python experiments/surfaces/table.py --tracking-uri sqlite:///mlflow.db [--parent <id>]

Per surface: each optimizer's final value f (and where it ended) at every rate of the grid,
"diverged" where the run did, and its pick (the lowest final value, as in report/surfaces.png).
"""

import argparse
import math

from kerastrack.figures.trajectories import RATE_KEY, best_paths, final_value, literal
from kerastrack.tracking.query import fetch_runs

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--tracking-uri", default="sqlite:///mlflow.db")
parser.add_argument("--parent", default="latest")
args = parser.parse_args()

records = fetch_runs(args.tracking_uri, parent=args.parent, history_keys=["x", "y", "val_loss"])
rates = sorted({float(literal(r.params[RATE_KEY])) for r in records})
best = best_paths(records)
for surface, chosen in best.items():
    print(f"\n### {surface}\n")
    print("| optimizer | " + " | ".join(f"rate {v:g}" for v in rates) + " | picked: rate, f, (x, y) |")
    print("|---|" + "---|" * (len(rates) + 1))
    optimizers = dict.fromkeys(r.tags["optimizer"] for r in records if r.tags["loss"] == surface)
    for optimizer in optimizers:
        cells = []
        for rate in rates:
            run = next(
                (
                    r
                    for r in records
                    if r.tags["loss"] == surface
                    and r.tags["optimizer"] == optimizer
                    and float(literal(r.params[RATE_KEY])) == rate
                ),
                None,
            )
            f = final_value(run) if run else math.nan
            cells.append("–" if run is None else "diverged" if not math.isfinite(f) else f"{f:.3g}")
        pick = chosen.get(optimizer)
        where = (
            (
                f"{float(literal(pick.params[RATE_KEY])):g}, **{final_value(pick):.3g}**, "
                f"({pick.history['x'][-1][1]:.2f}, {pick.history['y'][-1][1]:.2f})"
            )
            if pick
            else "none (all diverged)"
        )
        print(f"| {optimizer} | " + " | ".join(cells) + f" | {where} |")
