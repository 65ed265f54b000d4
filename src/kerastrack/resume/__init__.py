"""Resuming runs: what a run saves to be resumed, the decision new / skip / continue (``plan``),
and what a run that a full disk stopped may still do (``stopped``)."""
