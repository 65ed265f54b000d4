"""The fixed groups' schema: the top-level keys, ``trainer``, ``paths`` and ``tracking`` as OmegaConf
structured configs, and the one adapter from OmegaConf's errors to the ``Received:`` line.

kerastrack itself reads these groups, so their keys and types are fixed: a key that no
field names, or a value of the wrong type, is refused by OmegaConf when the group is merged
into its dataclass. The open groups (optimizer, loss, model, ...) are a Keras object's
arguments, checked by argument name (``checks.RANGES``).

They are not stored in Hydra's ConfigStore for conf/'s YAMLs to extend (Hydra's "Structured
Config schema"): Hydra would then merge them while composing and print a value it refuses
there in its own several lines, ending with a hint at HYDRA_FULL_ERROR, before any
kerastrack code runs. ``check_schema`` merges them in ``check_config`` instead, where the
same OmegaConf check is said in one line.
"""

import difflib
import math
from dataclasses import dataclass, field, fields
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException

from kerastrack.config.monitors import MONITOR_MODES
from kerastrack.errors import ConfigError, shown
from kerastrack.utils.secrets import is_secret_key

SEED_MAX = 2**32 - 1  # NumPy's and scikit-learn's seeds are 32-bit
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")  # Keras dtype policy names


def _key(allowed, check=None):
    """A field: no default (conf/'s YAML has it, with its comment), what a value must be
    (the error's words) and the check of its range, beyond the type OmegaConf checks."""
    return field(default=MISSING, metadata={"allowed": allowed, "check": check})


def _is_integer(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _at_least(lo, finite=False):
    return lambda v: v >= lo and (not finite or math.isfinite(v))


def _optional(check):
    return lambda v: v is None or check(v)


def _one_of(choices):
    return f"one of {', '.join(choices)}"


@dataclass
class TopLevelSchema:
    """The top-level keys of conf/train.yaml (the groups are checked on their own)."""

    seed: int = _key(f"an integer in [0, {SEED_MAX}]", lambda v: 0 <= v <= SEED_MAX)
    deterministic: bool = _key("true or false")
    resume: Any = _key("a run id or an output dir")  # checked by resume.check_target
    threads: Optional[int] = _key("null (TensorFlow's default) or an integer >= 1", _optional(_at_least(1)))
    logical_cpus: Optional[int] = _key("null (one CPU device) or an integer >= 1", _optional(_at_least(1)))
    tags: Any = _key("a list of tag names")  # checked by checks.check_labels (MLflow's rules for names)
    notes: Any = _key("null or a text")  # checked by checks.check_labels


@dataclass
class TrainerSchema:
    """``trainer``: the arguments of keras.Model.fit / compile that kerastrack passes on."""

    epochs: int = _key("an integer >= 1", _at_least(1))
    # OmegaConf 2.3 has no Union: these take a number or a word, checked here.
    batch_size: Any = _key("an integer >= 1 or full", lambda v: v == "full" or _is_integer(v) and v >= 1)
    steps_per_execution: Any = _key(
        "auto or an integer >= 1 (1: Keras' default)", lambda v: v == "auto" or _is_integer(v) and v >= 1
    )
    jit_compile: Any = _key("auto, true or false", lambda v: isinstance(v, bool) or v == "auto")
    validation_split: Optional[float] = _key(
        "null (the data set's validation split) or a number in (0, 1)", _optional(lambda v: 0 < v < 1)
    )
    # A list of lists would pass OmegaConf's List[str] (it converts only the items it can).
    metrics: Optional[List[str]] = _key(
        "null or a list of Keras metric names, e.g. [accuracy]", _optional(lambda v: all(isinstance(m, str) for m in v))
    )
    monitor: str = _key("the name of a value the run logs, e.g. val_loss")
    monitor_mode: str = _key(_one_of(MONITOR_MODES), lambda v: v in MONITOR_MODES)
    verbose: int = _key("0, 1 or 2", lambda v: v in (0, 1, 2))
    shuffle: bool = _key("true or false")
    precision: str = _key(_one_of(PRECISIONS), lambda v: v in PRECISIONS)
    state_every_s: float = _key("a number of seconds >= 0 (0: after every epoch)", _at_least(0))


@dataclass
class PathsSchema:
    """``paths``: where a run writes its files."""

    output_dir: str = _key("a directory path (Hydra's run dir by default)")


@dataclass
class MlflowTrackingSchema:
    """``tracking=mlflow``: the arguments of ``kerastrack.tracking.MlflowTracker``."""

    _target_: str = _key("kerastrack.tracking.MlflowTracker")
    tracking_uri: Optional[str] = _key("null or an MLflow tracking URI, e.g. sqlite:///mlflow.db")
    experiment_name: Optional[str] = _key("a name, or null for $MLFLOW_EXPERIMENT_NAME, else kerastrack")
    run_name: Optional[str] = _key("a name, or null to build one from the choices")
    log_model: bool = _key("true or false")
    log_every_n_steps: int = _key("an integer >= 0 (0: off)", _at_least(0))
    offline: bool = _key("true or false")
    system_metrics: bool = _key("true or false")
    system_metrics_interval: float = _key("a number of seconds > 0, e.g. 1", lambda v: v > 0 and math.isfinite(v))
    store_wait: float = _key("a number of seconds >= 0 (0: do not wait for a locked store)", _at_least(0))


@dataclass
class NullTrackingSchema:
    """``tracking=none``: ``kerastrack.tracking.NullTracker`` takes no arguments."""

    _target_: str = _key("kerastrack.tracking.NullTracker")


GROUPS = {"trainer": TrainerSchema, "paths": PathsSchema}
# tracking's schema is its target's: a tracker of one's own takes its own arguments.
TRACKERS = {
    "kerastrack.tracking.MlflowTracker": MlflowTrackingSchema,
    "kerastrack.tracking.mlflow_tracker.MlflowTracker": MlflowTrackingSchema,
    "kerastrack.tracking.NullTracker": NullTrackingSchema,
    "kerastrack.tracking.tracker.NullTracker": NullTrackingSchema,
}


def check_schema(cfg):
    """Checks the top-level keys, ``trainer``, ``paths`` and ``tracking`` against their schema.

    An integer for a float, or a number for a name, is written back into ``cfg`` as the
    schema's type, so that the run records what it used.

    Args:
        cfg: The composed config.

    Raises:
        ConfigError: The first key the schema does not have, or value it refuses.
    """
    # The groups are the nodes (data, model, ... and any group of one's own).
    top = [k for k in cfg if k != "hydra" and not _is_node(cfg, k)]
    check_node(cfg, top, TopLevelSchema, "", "a top-level key")
    for group, schema in GROUPS.items():
        node = OmegaConf.select(cfg, group)
        if isinstance(node, DictConfig):
            check_node(node, list(node), schema, f"{group}.", f"a key of {group}")
    tracking = OmegaConf.select(cfg, "tracking")
    if isinstance(tracking, DictConfig) and str(tracking.get("_target_")) in TRACKERS:
        schema = TRACKERS[str(tracking._target_)]
        check_node(tracking, list(tracking), schema, "tracking.", f"an argument of {tracking._target_}")


def check_node(node, names, schema, prefix, where):
    """Merges ``node``'s keys ``names`` into ``schema`` and checks each value's range.

    Args:
        node: A DictConfig (its values are resolved where they are, interpolations too).
        names: Its keys to check.
        schema: The dataclass.
        prefix: The keys' prefix in the config, e.g. ``trainer.``.
        where: What the keys are, for an unknown key's message, e.g. ``a key of trainer``.
    """
    values = {}
    for name in names:
        if is_secret_key(name):
            continue  # a credential may be added anywhere, for interpolations (${trainer.db_password})
        try:
            value = node[name]
        except OmegaConfBaseException:
            continue  # ??? (refused before) or an interpolation that fails where it is used
        values[str(name)] = OmegaConf.to_container(value, resolve=True) if _is_container(value) else value
    try:
        typed = OmegaConf.merge(OmegaConf.structured(schema), values)
    except OmegaConfBaseException as exc:
        raise explain(exc, schema, values, prefix, where) from None
    rules = {f.name: f.metadata for f in fields(schema)}
    for name, given in values.items():
        value = typed[name]
        value = OmegaConf.to_container(value) if _is_container(value) else value
        if not _same_types(given, value):
            # OmegaConf took '3' for 3 and 2 for true: a guess, refused; an integer for a
            # float, or a number for a name, is what was meant.
            if not _kept(given, value):
                _refuse(prefix + name, given, rules[name]["allowed"])
            if not OmegaConf.is_interpolation(node, name):
                node[name] = value
        check = rules[name]["check"]  # None reaches only Optional fields' checks, and Any's
        if check is not None and not check(value):
            _refuse(prefix + name, given, rules[name]["allowed"])


def explain(error, schema, values, prefix, where):
    """The adapter: an OmegaConf error of merging ``values`` into ``schema`` as the one
    ``Error:`` line, naming the key, the value received and what works.

    Args:
        error: OmegaConf's ConfigKeyError or ConfigAttributeError (a key the schema does
            not have), or ValidationError (a value it cannot convert to the field's type).
        schema: The dataclass.
        values: What was merged, ``{name: value}``.
        prefix: The keys' prefix in the config, e.g. ``trainer.``.
        where: What the keys are, e.g. ``a key of trainer``.

    Returns:
        The ConfigError to raise.
    """
    name = str(error.full_key or error.key).split(".")[0].split("[")[0]  # metrics[0]: trainer.metrics
    key, value = prefix + name, shown(values.get(name))
    known = [f.name for f in fields(schema) if not f.name.startswith("_")]
    if isinstance(error, (ConfigKeyError, ConfigAttributeError)) or name not in known:
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = (
            f"did you mean {prefix}{close[0]}?"
            if close
            else f"it has {', '.join(known)}."
            if known
            else "it takes none."
        )
        return ConfigError(f"{key} is not {where}; {hint} Received: {key}={value}")
    allowed = next(f.metadata["allowed"] for f in fields(schema) if f.name == name)
    return ConfigError(f"{key} must be {allowed}. Received: {key}={value}")


def _refuse(key, value, allowed):
    raise ConfigError(f"{key} must be {allowed}. Received: {key}={shown(value)}")


def _is_node(cfg, key):
    try:
        return isinstance(cfg[key], DictConfig)
    except OmegaConfBaseException:
        return False  # an interpolation that fails: a value, not a group


def _is_container(value):
    return isinstance(value, (DictConfig, ListConfig))


def _same_types(given, value):
    if isinstance(given, list) and isinstance(value, list):
        return len(given) == len(value) and all(_same_types(a, b) for a, b in zip(given, value))
    return type(given) is type(value)


def _kept(given, value):
    """Whether OmegaConf's conversion of ``given`` to ``value`` is what the user meant."""
    if isinstance(given, list) and isinstance(value, list):
        return all(_same_types(a, b) or _kept(a, b) for a, b in zip(given, value))
    if isinstance(given, bool) or isinstance(given, str):
        return False
    return (isinstance(given, int) and isinstance(value, float)) or (
        isinstance(given, (int, float)) and isinstance(value, str)
    )
