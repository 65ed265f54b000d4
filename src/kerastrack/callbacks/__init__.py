"""Keras callbacks that record training: the per-epoch and per-batch loggers and the training
state a run keeps for ``resume=`` (``recording``), the probes measured every epoch (``probes``)
and the search's pruning callback (``pruning``); and the run's summary once fit returns
(``summary``: its best and test metrics, figures and model)."""
