"""Hydra's own refusals of a command line (an unknown option, a key the config lacks, an
override it cannot parse) as one line that names the key, the value received and what
works, as kerastrack's own refusals read. Hydra words them over several lines, with its
search path; the facts are taken from the exception (``options``, ``missing_cfg_file``,
``override``) where Hydra gives them, else from its first line."""

from hydra.errors import MissingConfigException, OverrideParseException


def one_line(exc, overrides):
    """One line for Hydra's error ``exc`` about the command line ``overrides``.

    Args:
        exc: A ``hydra.errors.HydraException``.
        overrides: The overrides of the command line it refused.
    """
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, MissingConfigException) and exc.options is not None and exc.missing_cfg_file:
        group, _, name = exc.missing_cfg_file.rpartition("/")
        received = _received(overrides, group) or f"{group}={name}"
        return (
            f"{group} has no option '{name}'; its options: {', '.join(exc.options)} "
            f"(or your own {group}/{name or 'NAME'}.yaml in a --config-dir folder). Received: {received}"
        )
    if isinstance(exc, OverrideParseException):
        return f"Hydra cannot read the override: {first} (https://hydra.cc/docs/advanced/override_grammar/basic/). Received: {exc.override}"
    if first.startswith("Could not override '"):
        key = first.split("'")[1]
        received = _received(overrides, key) or key
        return (
            f"{key} is not a key of the config (kerastrack --cfg job shows them; +{received} adds a new one). "
            f"Received: {received}"
        )
    lines = str(exc).split("Config search path:")[0].split()  # the search path is Hydra's, not the user's
    return f"{' '.join(lines) or type(exc).__name__}. Received: {' '.join(overrides) or 'no overrides'}"


def _received(overrides, key):
    """The override that set ``key``, as written (``model=nope``, ``+trainer.epoch=3``)."""
    for override in overrides:
        name = override.split("=", 1)[0].lstrip("+~").split("@", 1)[0]
        if name == key:
            return override.lstrip("+~")
    return None
