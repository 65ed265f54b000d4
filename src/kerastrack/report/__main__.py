"""``python -m kerastrack.report`` (the command line is ``kerastrack.report.cli``)."""

from kerastrack.report.cli import main

raise SystemExit(main())
