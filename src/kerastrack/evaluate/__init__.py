"""``python -m kerastrack.evaluate``: a finished run's logged model evaluated on a data set's test
split, the result recorded in the run or in a new run linked to it. ``data`` builds the data
set and checks that it fits the model; ``cli`` is the command line."""
