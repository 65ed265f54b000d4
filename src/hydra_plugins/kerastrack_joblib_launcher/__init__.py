"""Hydra's joblib launcher, whose sweep goes on when a worker is killed (``resilient_launcher``)."""
