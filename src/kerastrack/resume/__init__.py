"""Resuming runs. Its modules, from the bottom up: ``identity`` (what a run's results depend
on, its config hash, and the files ``resume=`` finds it by), ``lock`` (one process at a time
trains in an output dir), ``state`` (a run's state dir as read, and what a resumed run needs
of it), ``plan`` (the facts, fetched once, and the decision new / skip / continue as a
``Plan``), ``stopped`` (what a run that a full disk stopped may still do)."""
