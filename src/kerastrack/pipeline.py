"""The training pipeline: one plain function, ``train(cfg)``, that train.py and tests call.

``train`` settles what this invocation does (a ``resume.plan.Plan``: a new run, a finished
sweep job skipped, or an earlier run continued) and is the harness around the recipe,
``_train``, which builds everything, opens the run, fits, evaluates and records.

It imports TensorFlow (seconds): train.py imports it only in the process that trains."""

import contextlib
import logging

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf

from kerastrack.callbacks.probes import Probe
from kerastrack.callbacks.recording import BatchLogger, EpochLogger, TrainingState
from kerastrack.callbacks.summary import Summary
from kerastrack.callbacks.tensorboard import log_tensorboard
from kerastrack.config import debug
from kerastrack.config.checks import check_config, check_monitors, monitor_mode
from kerastrack.data import feed
from kerastrack.errors import ConfigError, DiskFull, DivergedError, disk_full
from kerastrack.models.heads import resolve_head, resolve_metrics
from kerastrack.optimizers.schedules import in_steps, steps_per_epoch
from kerastrack.resume import stopped
from kerastrack.resume.identity import LABEL_KEYS, STATE_DIR, config_hash, save_run_info
from kerastrack.resume.lock import claim
from kerastrack.resume.plan import check_target, gather, plan
from kerastrack.tracking import flatten_config, git_state, library_versions
from kerastrack.tracking.labels import label_tags
from kerastrack.utils import runtime, secrets
from kerastrack.utils.files import writable_dir
from kerastrack.utils.hydra_job import code_dir, group_choices, in_multirun, task_overrides
from kerastrack.utils.signals import Interrupted, forget_interrupts, interrupted, sigterm_as_interrupt

log = logging.getLogger(__name__)
PROBE_SAMPLES = 256  # training samples that probes measure on (gradient norms)


def train(cfg, opened=None):
    """Trains and evaluates one model as the config says, recording it with the tracker.

    Everything that can be checked is checked before a run is recorded; from the moment
    the run opens, any failure closes it as FAILED and Ctrl-C/SIGTERM as KILLED.

    Args:
        cfg: The composed config (conf/train.yaml).
        opened: Called once the run is open, with ``run_id``, ``tracking_uri`` (None
            when nothing can read it back: tracking=none, offline) and ``output_dir``:
            how the Python API learns which run its call recorded.

    Returns:
        The best value of ``trainer.monitor`` over the epochs (what a sweeper optimizes).

    Raises:
        ConfigError: A config value that cannot work (before any run is recorded).
        RunHeld: Another process trains this run, or in this output dir, now.
        DivergedError: The loss became NaN or infinite.
        DiskFull: The disk filled up during the run: the message says what is kept and
            how to continue.
        Interrupted: Ctrl-C or SIGTERM, with the run's final status, run id and output dir
            (a KeyboardInterrupt).
    """
    forget_interrupts()
    check_config(cfg)  # the invocation's config, once: a continued run's own was checked when it started
    check_target(cfg.get("resume"))
    choices = group_choices(cfg)
    _say_debug(cfg, choices)
    # First: a tracking server that is down is reported before any time goes into data.
    tracker = _instantiate(cfg.tracking, "tracking", choices)
    decided = plan(cfg, choices, task_overrides(), gather(cfg, tracker))
    if decided.action == "skip":  # a re-launched sweep's finished job
        return decided.best
    tracker.prepare(decided.run_id)  # the store and a new run's experiment, before any time goes into data
    output_dir = _output_dir(decided.config.paths.output_dir)
    progress = stopped.Progress(decided.config.trainer.epochs)
    with _harness(decided, tracker, output_dir, progress):
        best = _train(decided, tracker, output_dir, progress, opened)
    if not in_multirun():  # a sweep says where its runs went once, at its end
        log.info("Output dir (plots, config, log): %s", output_dir)
        if link := tracker.ui_link():
            log.info("In the MLflow UI: %s", link)
    return best


@contextlib.contextmanager
def _harness(decided, tracker, output_dir, progress):
    """What the recipe runs inside: the output dir's lock, TensorFlow set up, the run's
    dtype policy and tf.distribute strategy scope; an interrupt or a full disk comes out as
    the one line train.py prints (how far the run got: ``progress``)."""
    cfg = decided.config
    try:
        with claim(output_dir, decided):
            runtime.configure_tensorflow(cfg.seed, cfg.deterministic, cfg.get("threads"), cfg.get("logical_cpus"))
            with runtime.devices(cfg.trainer.precision, _strategy(cfg, decided.choices)):
                yield
    except BaseException as exc:
        if interrupted(exc):  # what became of the run, for the one line train.py prints
            raise Interrupted(tracker.status, tracker.run_id, output_dir) from None
        if disk_full(exc):
            raise DiskFull(stopped.disk_full_message(tracker, output_dir, progress)) from None
        raise


def _train(decided, tracker, output_dir, progress, opened=None):
    """The recipe: build everything, open the run (a continued one reopened), fit from
    where the plan says, record the results."""
    cfg, choices = decided.config, decided.choices
    data = _instantiate(cfg.data, "data", choices)
    log.info(
        "data=%s: %s, %s classes, input %s, train/val/test %d/%d/%d",
        choices.get("data", "?"),
        data.task,
        data.num_classes,
        data.input_shape,
        len(data.x_train),
        len(data.x_val),
        len(data.x_test),
    )
    head = resolve_head(cfg.loss, data.task, data.num_classes, choices.get("loss", "?"), choices.get("data", "?"))
    metrics = resolve_metrics(cfg.trainer.metrics, head)
    names = ["loss", *(m.name for m in metrics)]
    check_monitors(cfg, names + [f"val_{n}" for n in names])

    trainer = cfg.trainer
    splits = feed.used_splits(data, trainer.validation_split)
    fit_split, val_split = ((x, head.encode(y)) for x, y in (splits["training"], splits["validation"]))
    fit_size = len(fit_split[0])
    _check_split(trainer.validation_split, fit_size, len(data.x_train))
    batch_size = fit_size if trainer.batch_size == "full" else trainer.batch_size
    schedule = _instantiate(in_steps(cfg.scheduler, steps_per_epoch(fit_size, batch_size)), "scheduler", choices)
    optimizer = _instantiate(cfg.optimizer, "optimizer", choices, **({"learning_rate": schedule} if schedule else {}))
    loss = _instantiate(cfg.loss.fn, "loss", choices)
    callbacks = [_instantiate(cb, f"callbacks.{name}", choices) for name, cb in cfg.callbacks.items()]
    probes = [c for c in callbacks if isinstance(c, Probe)]
    callbacks = [c for c in callbacks if not isinstance(c, Probe)]
    if tracker.log_every_n_steps:
        callbacks.insert(0, BatchLogger(tracker, tracker.log_every_n_steps))
    sample = (data.x_train[:PROBE_SAMPLES], head.encode(data.y_train[:PROBE_SAMPLES]))  # the split already shuffled
    epoch_logger = progress.logger = EpochLogger(tracker, probes, sample)
    epoch_logger.on_record = {key: list(steps) for key, steps in decided.on_record.items()}
    # Repeated epochs match the recorded ones only under op determinism: otherwise every epoch is saved.
    state = TrainingState(
        output_dir / STATE_DIR,
        callbacks,
        epoch_logger,
        decided.saved,
        every_s=trainer.state_every_s if cfg.deterministic else 0,
    )

    run = tracker.run(_run_name(choices), tags=_tags(choices, cfg), run_id=decided.run_id, output_dir=output_dir)
    try:
        with sigterm_as_interrupt(), run:
            if opened is not None:
                opened(run_id=tracker.run_id, tracking_uri=tracker.readable_uri, output_dir=output_dir)
            _log_missing_epochs(tracker, decided.saved, epoch_logger.on_record)
            tracker.at_first_start(_log_setup, tracker, cfg, data, splits)
            state.beside = save_run_info(output_dir, cfg, choices, tracker.run_id)
            model = _instantiate(cfg.model, "model", choices)(input_shape=data.input_shape, head=head)
            model.compile(
                optimizer=optimizer,
                loss=loss,
                metrics=metrics,
                jit_compile=runtime.jit_compile(
                    trainer.jit_compile, model, cfg.model.get("_target_"), cfg.deterministic
                ),
                steps_per_execution=runtime.steps_per_execution(trainer.steps_per_execution),
            )
            used = {"model.num_params": model.count_params(), "trainer.jit_compile.used": model.jit_compile}
            tracker.at_first_start(tracker.log_params, used)
            training = feed.TrainingFeed(*fit_split, batch_size, trainer.shuffle, cfg.seed)
            try:
                model.fit(
                    training.dataset,
                    validation_data=feed.validation_data(*val_split, batch_size),
                    epochs=trainer.epochs,
                    shuffle=False,  # the feed orders each epoch (see there)
                    # The logger goes first: a finished epoch is on record before any other
                    # callback can stop or break the run. The state goes last (see there).
                    callbacks=[training, state.opening, epoch_logger, *callbacks, state],
                    verbose=trainer.verbose,
                )
            except BaseException:  # stopped: the state of the last epoch on record, so resume repeats none
                state.keep_last()
                raise
            progress.trained = True
            log_tensorboard(tracker, callbacks)
            summary = Summary(tracker, epoch_logger.on_record, epoch_logger.epochs)
            best = summary.log_best(trainer.monitor, monitor_mode(trainer.monitor, trainer.monitor_mode))
            if (epoch := epoch_logger.diverged_epoch) is not None:
                tracker.set_tags({"diverged": "true", "diverged_epoch": str(epoch)})
                raise DivergedError(
                    f"the loss became {epoch_logger.epochs[epoch]['loss']} at epoch {epoch}: training diverged. "
                    f"Try a smaller optimizer.learning_rate. Received: optimizer.learning_rate={cfg.optimizer.learning_rate}"
                )
            summary.log_results(model, data, head, names[1:], batch_size, output_dir)
    finally:
        state.close()
        if tracker.status == "FINISHED":  # a FINISHED run is not resumed: its state is dead weight
            state.discard()
    return best


def _say_debug(cfg, choices):
    """A debugging preset (debug=fast, conf/debug/) says what it changed, and may show the config."""
    if line := debug.start_line(cfg, choices):
        log.info("%s", line)
    if tree := debug.config_tree(cfg):
        log.info("config:\n%s", tree)


def _strategy(cfg, choices):
    """The run's tf.distribute strategy (``distribute``), or None: the default."""
    spec = cfg.get("distribute") or {}
    if "_target_" not in spec:
        return None
    return _instantiate(spec, "distribute", choices, **runtime.default_devices(spec))


def _instantiate(node, key, choices, **runtime_args):
    """``hydra.utils.instantiate`` with the values known only at run time, turning a
    library's complaint about a config value into a ConfigError naming the option.

    Args:
        node: The config node (``_target_`` ...); None gives None (a constant learning rate).
        key: Its key in the config, for the message, e.g. ``callbacks.early_stopping``.
        choices: The config-group choices, for the message (``Received: optimizer=adam``).
        **runtime_args: Arguments known only now (``_partial_`` options take them later).
    """
    if node is None:
        return None
    try:
        # Plain lists and dicts: what is built is saved with the model (checkpoints, the
        # logged model), and Keras cannot serialize OmegaConf containers.
        return instantiate(node, _convert_="all", **runtime_args)
    except ConfigError:
        raise
    except (InstantiationException, TypeError, ValueError) as exc:
        if isinstance(exc.__cause__, ConfigError):  # ours, raised inside a target Hydra called
            raise exc.__cause__ from None
        reason = " ".join(str(exc).split())
        group = key.split(".")[0]
        raise ConfigError(f"{key}: {reason}. Received: {group}={choices.get(group, '?')}") from exc


def _check_split(validation_split, fit_size, n):
    # Keras keeps at least one sample for validation (it floors the training share).
    if validation_split and fit_size < 1:
        raise ConfigError(
            f"trainer.validation_split leaves no sample to train on: {fit_size} of the {n} training samples to "
            f"train on, {n - fit_size} to validate on. Use a share in between, or null for the data set's own "
            f"validation split. Received: trainer.validation_split={validation_split}"
        )


def _log_missing_epochs(tracker, saved, on_record):
    """Logs what the store lacks of a resumed run's saved epochs: those still in MLflow's
    asynchronous queue when the process was killed hard are not on record, but the saved
    state knows them."""
    for step, record in enumerate(saved.epochs if saved else []):
        missing = {k: v for k, v in record.items() if step not in on_record.get(k, ())}
        if missing:
            tracker.log_metrics(missing, step=step)
            for key in missing:
                on_record.setdefault(key, []).append(step)
        if missing and step == len(saved.epochs) - 1:
            log.info("logged what the store lacked of epochs 0..%d (lost when the run was killed)", step)


def _output_dir(path):
    try:
        return writable_dir(path)
    except OSError as exc:
        raise ConfigError(
            f"the output dir cannot be written ({exc.strerror}): checkpoints, plots and the "
            f"training state go there. Choose another with paths.output_dir=... or "
            f"hydra.run.dir=... Received: paths.output_dir={path}"
        ) from None


def _run_name(choices):
    name = "-".join(choices.get(g, "?") for g in ("data", "model", "loss", "optimizer"))
    scheduler = choices.get("scheduler", "constant")
    return name if scheduler == "constant" else f"{name}-{scheduler}"


def _tags(choices, cfg):
    """One tag per config-group choice (optimizer=adam, ...), the library versions, the
    config's hash (a re-launched sweep finds its finished jobs by it), and the user's
    ``tags`` and ``notes`` (checked: none overwrites one of these)."""
    tags = label_tags(cfg.get("tags"), cfg.get("notes"))
    tags.update({group: choice for group, choice in choices.items() if group not in ("paths", "trainer")})
    tags.update({f"version.{name}": v for name, v in library_versions().items()})
    tags["config.hash"] = config_hash(cfg)
    return tags


def _log_setup(tracker, cfg, data, splits):
    """What the run's numbers depend on: the config (credentials masked), the data set as
    loaded and the ``splits`` used (MLflow dataset inputs), the command line's overrides and
    the code's git state."""
    plain = OmegaConf.create({k: cfg[k] for k in cfg if k != "hydra"})
    masked = secrets.mask_secrets(OmegaConf.to_container(plain, resolve=True))
    if masked.get("notes"):  # free text: masked as the description is (a password=... in it)
        masked["notes"] = secrets.mask_text(masked["notes"])
    plain = OmegaConf.create(masked)
    # tags and notes label the run (its tags and description): they are not its parameters.
    tracker.log_params(flatten_config({k: v for k, v in masked.items() if k not in LABEL_KEYS}))
    tracker.log_params(
        {
            "dataset.task": data.task,
            "dataset.num_classes": data.num_classes,
            "dataset.input_shape": data.input_shape,
            "dataset.sizes": f"train={len(data.x_train)} val={len(data.x_val)} test={len(data.x_test)}",
            "distribute.num_replicas": runtime.num_replicas(),
            "trainer.steps_per_execution.used": runtime.steps_per_execution(cfg.trainer.steps_per_execution),
        }
    )
    # A data function of the user's own may not say where its data came from: its name does.
    tracker.log_datasets(data.name, data.source or cfg.data.get("_target_"), splits)
    tracker.log_text(OmegaConf.to_yaml(plain, resolve=True), "config/config.yaml")
    tracker.log_text(OmegaConf.to_yaml([secrets.mask_override(o) for o in task_overrides()]), "config/overrides.yaml")
    git = git_state(code_dir())
    if git:
        tracker.set_tags({"git.commit": git["commit"], "git.dirty": str(git["dirty"]).lower()})
        if git["dirty"]:
            tracker.log_text(git["diff"], "git/diff.patch")
