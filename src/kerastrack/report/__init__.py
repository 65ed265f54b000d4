"""Comparing the runs of a sweep or of an experiment without the MLflow UI:
``python -m kerastrack.report``.

- ``cli``: the command line (arguments, which runs, what it prints).
- ``build``: the Report, its per-run and per-group tables, and writing it out.
- ``grouping``: which runs belong together (the swept values other than seed).
- ``stats``: each group against the best, with a 95% interval over the seeds.
- ``best_over``: each group at its best value of a swept key.
- ``page``: the text tables and the HTML page (``templates/report.html.j2``).
"""
