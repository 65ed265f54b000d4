"""Pieces every layer may use, none of which imports another layer of kerastrack: files written
whole, the background worker, signals, secrets, a quiet start and what Hydra knows about the job."""
