"""Pieces every layer may use, none of which imports another layer of kerastrack: files written
whole, the background worker, signals, secrets, a quiet start, what Hydra knows about the job, and TensorFlow's set-up for a run (``runtime``,
imported only by what trains)."""
