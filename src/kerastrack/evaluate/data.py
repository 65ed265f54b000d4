"""The data set an evaluation runs on, and whether it fits the model.

By default it is the data set the run was trained on, as its recorded config says (its
``data`` node, seed included: the same test split); ``data=<option>`` composes another option
of the package's ``data`` group the way ``python train.py data=<option>`` would, and
``data.<key>=<value>`` changes a key of either.
"""

from importlib import resources

from hydra.errors import HydraException, InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from kerastrack.errors import ConfigError


def options():
    """The options of the package's ``data`` group (conf/data/*.yaml)."""
    group = resources.files("kerastrack.conf") / "data"
    return sorted(p.name.removesuffix(".yaml") for p in group.iterdir() if p.name.endswith(".yaml"))


def split_overrides(overrides):
    """``data=<option>`` and ``data.<key>=<value>`` from the command line.

    Returns:
        ``(option or None, [key=value, ...])``.

    Raises:
        ConfigError: Anything else.
    """
    option, keys = None, []
    for item in overrides:
        key, sep, value = item.partition("=")
        if sep and key == "data" and value:
            option = value
        elif sep and key.startswith("data.") and len(key) > 5:
            keys.append(item)
        else:
            raise ConfigError(
                "evaluate takes data=<option> (one of "
                f"{', '.join(options())}) and data.<key>=<value> overrides. Received: {item}"
            )
    return option, keys


def data_config(run_config, option, keys):
    """The data node to build: the run's own, or ``option`` composed; ``keys`` applied.

    Args:
        run_config: The run's recorded config (a dict), or None.
        option: A ``data`` option, or None: the run's data set.
        keys: ``data.<key>=<value>`` overrides.

    Returns:
        A plain dict (``_target_`` ...), resolved.

    Raises:
        ConfigError: An unknown option or key; no option and no recorded config.
    """
    seed = (run_config or {}).get("seed", 42)
    if option is None:
        if not run_config or "data" not in run_config:
            raise ConfigError(
                "the run records no config/config.yaml (it was not trained by the kerastrack command), so "
                f"its data set is not known: pass data=<option>, one of {', '.join(options())}. Received: data=None"
            )
        node = OmegaConf.create({"seed": seed, "data": run_config["data"]})
        try:
            OmegaConf.set_struct(node, True)  # an unknown key is refused, as Hydra refuses it
            node.merge_with_dotlist(keys)
        except OmegaConfBaseException as exc:
            raise ConfigError(f"{_reason(exc)}. Received: {', '.join(keys)}") from None
    else:
        node = _compose(option, seed, keys)
    try:
        return OmegaConf.to_container(node.data, resolve=True, throw_on_missing=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"{_reason(exc)}: set it with data.<key>=<value>. Received: data={option}") from None


def _compose(option, seed, keys):
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    if option not in options():
        raise ConfigError(
            f"there is no data option '{option}'; choose one of {', '.join(options())}. Received: data={option}"
        )
    GlobalHydra.instance().clear()
    try:
        with initialize_config_module("kerastrack.conf", version_base="1.3"):
            return compose("train", overrides=[f"data={option}", f"seed={seed}", *keys])
    except HydraException as exc:
        raise ConfigError(f"{_reason(exc)}. Received: {', '.join([f'data={option}', *keys])}") from None
    finally:
        GlobalHydra.instance().clear()


def _reason(exc):
    return " ".join(str(exc).split("\n")[0].split())


def build(node, name):
    """The data set of ``node`` (its ``_target_``), a library's complaint as a ConfigError."""
    try:
        return instantiate(node, _convert_="all")
    except ConfigError:
        raise
    except (InstantiationException, TypeError, ValueError) as exc:
        if isinstance(exc.__cause__, ConfigError):
            raise exc.__cause__ from None
        raise ConfigError(f"data: {_reason(exc)}. Received: data={name}") from None


def check_fits(model, data, loss_config, name, run_id):
    """The head that encodes ``data``'s labels for ``model``, once the data fits it.

    Args:
        model: The loaded Keras model.
        data: The ``Dataset``.
        loss_config: The run's ``loss`` node (its targets and output: how labels are encoded).
        name: The data option, for the message.
        run_id: The run, for the message.

    Raises:
        ConfigError: Another input shape, task or number of classes than the model's.
    """
    # Here, not above: kerastrack.models imports Keras (seconds), which a refusal before the model does without.
    from kerastrack.models.heads import resolve_head

    expected = tuple(model.input_shape[1:])
    if tuple(data.input_shape) != expected:
        raise ConfigError(
            f"data={name} does not fit the model of run {run_id}: its samples have shape {data.input_shape}, "
            f"the model takes {expected}; pass a data set of that shape (the run's own when data= is left out). "
            f"Received: data={name}"
        )
    head = resolve_head(loss_config or {}, data.task, data.num_classes, (loss_config or {}).get("name", "?"), name)
    units = model.output_shape[-1]
    if head.units != units:
        raise ConfigError(
            f"data={name} does not fit the model of run {run_id}: it has {data.num_classes} classes, the model "
            f"predicts {units}; pass a data set with as many classes. Received: data={name}"
        )
    return head
