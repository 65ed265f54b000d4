"""Errors that kerastrack reports to the user as one line, before any training."""


class ConfigError(ValueError):
    """A config value that cannot work, found before training starts.

    The message names the key, the received value and what is allowed, e.g.
    ``optimizer.learning_rate must be > 0. Received: optimizer.learning_rate=-1``.
    """


class DataUnavailable(ConfigError):
    """A data set that is neither on this machine nor downloadable now (no network).

    Every job of a sweep would fail the same way, so a sweep stops at the first one. The
    message says how to get the data, e.g. ``apt-get install dataset-fashion-mnist``.
    """
