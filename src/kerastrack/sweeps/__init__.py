"""Sweeps: the launching process's Hydra callback around a multirun (``callback``), each
job's part in it and its failure policy (``job``), what a sweep dir may hold (``sweep_dir``)
and a worker's watch over its launcher (``watchdog``)."""

from kerastrack.sweeps.callback import MlflowSweepCallback

__all__ = ["MlflowSweepCallback"]
