"""Comparing the runs of a sweep or of an experiment without the MLflow UI:
``python -m kerastrack.report``."""
