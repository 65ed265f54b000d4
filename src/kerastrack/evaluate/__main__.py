"""``python -m kerastrack.evaluate`` (the command line is ``kerastrack.evaluate.cli``)."""

from kerastrack.evaluate.cli import run

run()
