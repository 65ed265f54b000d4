"""``python -m kerastrack.report``."""

from kerastrack.report.build import main

raise SystemExit(main())
