"""The training pipeline: one plain function, ``train(cfg)``, that train.py and tests call.

It imports TensorFlow (seconds): train.py imports it only in the process that trains."""

import contextlib
import logging
import math

import keras
import tensorflow as tf
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from tensorflow.python.framework import config as tf_config  # disable_op_determinism: no public API

from kerastrack.callbacks.probes import Probe
from kerastrack.callbacks.recording import BatchLogger, EpochLogger, TrainingState
from kerastrack.config.checks import check_config, check_monitors, monitor_mode
from kerastrack.data import feed
from kerastrack.errors import ConfigError, DiskFull, DivergedError, disk_full
from kerastrack.figures import curves as plots
from kerastrack.models.heads import resolve_head, resolve_metrics
from kerastrack.optimizers.schedules import in_steps, steps_per_epoch
from kerastrack.resume import plan as resume
from kerastrack.resume import stopped
from kerastrack.tracking import flatten_config, git_state, library_versions
from kerastrack.utils import secrets
from kerastrack.utils.files import writable_dir
from kerastrack.utils.hydra_job import code_dir, group_choices, in_multirun, task_overrides
from kerastrack.utils.signals import Interrupted, forget_interrupts, interrupted, sigterm_as_interrupt

log = logging.getLogger(__name__)
PROBE_SAMPLES = 256  # training samples that probes measure on (gradient norms)
AUTO_STEPS_PER_EXECUTION = 32  # see benchmarks/speed.py


def train(cfg):
    """Trains and evaluates one model as the config says, recording it with the tracker.

    Everything that can be checked is checked before a run is recorded; from the moment
    the run opens, any failure closes it as FAILED and Ctrl-C/SIGTERM as KILLED.

    Args:
        cfg: The composed config (conf/train.yaml).

    Returns:
        The best value of ``trainer.monitor`` over the epochs (what a sweeper optimizes).

    Raises:
        ConfigError: A config value that cannot work (before any run is recorded).
        DivergedError: The loss became NaN or infinite.
        DiskFull: The disk filled up during the run (the message says how to continue).
        Interrupted: Ctrl-C or SIGTERM, with the run's final status, run id and output dir.
    """
    forget_interrupts()
    check_config(cfg)
    resume.check_target(cfg.get("resume"))
    # First: a tracking server that is down is reported before any time goes into data.
    tracker = _instantiate(cfg.tracking, "tracking", group_choices(cfg))
    resumed = resume.plan(cfg, tracker, task_overrides())
    if resumed and resumed.finished_best is not None:  # a re-launched sweep's finished job
        return resumed.finished_best
    if resumed:
        cfg = _resumed_config(resumed.config, cfg)
        check_config(cfg)
    else:
        tracker.prepare()  # the store and experiment, before any time goes into data
    choices = group_choices(cfg)
    output_dir = _output_dir(cfg.paths.output_dir)
    progress = stopped.Progress(cfg.trainer.epochs)
    try:
        with resume.claim(output_dir, tracker, resumed):
            _configure_tensorflow(cfg.seed, cfg.deterministic, cfg.get("threads"), cfg.get("logical_cpus"))
            with _devices(cfg, choices):
                best = _train(cfg, choices, tracker, resumed, output_dir, progress)
    except BaseException as exc:
        if interrupted(exc):  # what became of the run, for the one line train.py prints
            raise Interrupted(tracker.status, tracker.run_id, output_dir) from None
        if disk_full(exc):
            raise DiskFull(stopped.disk_full_message(tracker, output_dir, progress)) from None
        raise
    if not in_multirun():  # a sweep says where its runs went once, at its end
        log.info("Output dir (plots, config, log): %s", output_dir)
        if link := tracker.ui_link():
            log.info("In the MLflow UI: %s", link)
    return best


def _train(cfg, choices, tracker, resumed, output_dir, progress):
    """The recipe, under the run's dtype policy and tf.distribute strategy scope: build
    everything, open the run, fit, record the results (how far it got: ``progress``)."""
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
    # Repeated epochs match the recorded ones only under op determinism: otherwise every epoch is saved.
    state = TrainingState(
        output_dir / resume.STATE_DIR,
        callbacks,
        epoch_logger,
        resumed.saved if resumed else None,
        every_s=trainer.state_every_s if cfg.deterministic else 0,
    )

    run = tracker.run(
        _run_name(choices), tags=_tags(choices, cfg), run_id=resumed.run_id if resumed else None, output_dir=output_dir
    )
    try:
        with sigterm_as_interrupt(), run:
            if resumed:  # params, config and git state are on record since the first start
                epoch_logger.on_record = tracker.metric_steps(tracker.run_id)
                _log_missing_epochs(tracker, resumed.saved, epoch_logger.on_record)
            else:
                _log_setup(tracker, cfg, data, splits)
            state.beside = resume.save_run_info(output_dir, cfg, choices, tracker.run_id)
            model = _instantiate(cfg.model, "model", choices)(input_shape=data.input_shape, head=head)
            model.compile(
                optimizer=optimizer,
                loss=loss,
                metrics=metrics,
                jit_compile=trainer.jit_compile,
                steps_per_execution=_steps_per_execution(trainer.steps_per_execution),
            )
            if not resumed:
                tracker.log_params({"model.num_params": model.count_params()})
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
            summary = _Summary(tracker, epoch_logger.on_record, epoch_logger.epochs)
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


def _steps_per_execution(value):
    """trainer.steps_per_execution as Keras takes it: ``auto`` is 32 steps a call on one
    device (small models spend most of a step in dispatch), 1 under tf.distribute (Keras'
    multi-step loop fails there; an explicit N > 1 is refused by check_config)."""
    if value != "auto":
        return value
    return 1 if tf.distribute.has_strategy() else AUTO_STEPS_PER_EXECUTION


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


def _resumed_config(recorded, current):
    """The resumed run's own config, with this invocation's verbosity and threads."""
    cfg = recorded.copy()
    cfg.trainer.verbose = current.trainer.verbose
    cfg.threads = current.get("threads")
    cfg.resume = current.resume
    # Secrets: state/config.yaml keeps them masked; this invocation gives them again. The
    # tracker is this invocation's (a neutral key), so its config goes with it.
    cfg.tracking = current.tracking
    return secrets.unmask(cfg, current, f"{resume.STATE_DIR}/config.yaml")


def _output_dir(path):
    try:
        return writable_dir(path)
    except OSError as exc:
        raise ConfigError(
            f"the output dir cannot be written ({exc.strerror}): checkpoints, plots and the "
            f"training state go there. Choose another with paths.output_dir=... or "
            f"hydra.run.dir=... Received: paths.output_dir={path}"
        ) from None


def _configure_tensorflow(seed, deterministic, threads=None, logical_cpus=None):
    if logical_cpus:
        _split_cpu(logical_cpus)
    if threads and tf.config.threading.get_intra_op_parallelism_threads() != threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already started in this process: keep its pools
            log.warning("threads=%s ignored: TensorFlow is already initialized in this process", threads)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
    else:
        # TensorFlow has no public way back (tf.config.experimental only enables it), and it
        # is process-wide: a run after a deterministic one in the same process would stay so.
        tf_config.disable_op_determinism()


def _split_cpu(n):
    """Splits the CPU into ``n`` logical devices (logical_cpus), for MirroredStrategy on CPU."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:  # TensorFlow already started in this process: its devices are fixed
        have = len(tf.config.list_logical_devices("CPU"))
        if have != n:  # refused, not warned: the run would silently train on other devices
            raise ConfigError(
                f"logical_cpus={n} cannot be applied: TensorFlow already started in this process with "
                f"{have} logical CPU(s); set it in a fresh process (python train.py logical_cpus={n}). "
                f"Received: logical_cpus={n}"
            ) from None


@contextlib.contextmanager
def _devices(cfg, choices):
    """The run's dtype policy (trainer.precision) and tf.distribute strategy (distribute).

    The model, optimizer and metrics must be created under both: Keras reads the global
    policy when a layer is built and an optimizer binds to the strategy it was created
    under. The global policy is restored afterwards (it is process-wide state).
    """
    spec = cfg.get("distribute") or {}
    strategy = tf.distribute.get_strategy()  # the default: one device, its scope changes nothing
    if "_target_" in spec:
        devices = {}
        if "devices" in spec and spec.devices is None and not tf.config.list_logical_devices("GPU"):
            # MirroredStrategy's own default without GPUs is one CPU device; mirror over
            # the logical CPUs instead (logical_cpus), the only devices a CPU machine has.
            devices = {"devices": [d.name for d in tf.config.list_logical_devices("CPU")]}
        strategy = _instantiate(spec, "distribute", choices, **devices)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(cfg.trainer.precision)
    try:
        with strategy.scope():
            yield strategy
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _run_name(choices):
    name = "-".join(choices.get(g, "?") for g in ("data", "model", "loss", "optimizer"))
    scheduler = choices.get("scheduler", "constant")
    return name if scheduler == "constant" else f"{name}-{scheduler}"


def _tags(choices, cfg):
    """One tag per config-group choice (optimizer=adam, ...), the library versions, and the
    config's hash (a re-launched sweep finds its finished jobs by it)."""
    tags = {group: choice for group, choice in choices.items() if group not in ("paths", "trainer")}
    tags.update({f"version.{name}": v for name, v in library_versions().items()})
    tags["config.hash"] = resume.config_hash(cfg)
    return tags


def _log_setup(tracker, cfg, data, splits):
    """What the run's numbers depend on: the config (credentials masked), the data set as
    loaded and the ``splits`` used (MLflow dataset inputs), the command line's overrides and
    the code's git state."""
    plain = OmegaConf.create({k: cfg[k] for k in cfg if k != "hydra"})
    plain = OmegaConf.create(secrets.mask_secrets(OmegaConf.to_container(plain, resolve=True)))
    tracker.log_params(flatten_config(plain))
    tracker.log_params(
        {
            "dataset.task": data.task,
            "dataset.num_classes": data.num_classes,
            "dataset.input_shape": data.input_shape,
            "dataset.sizes": f"train={len(data.x_train)} val={len(data.x_val)} test={len(data.x_test)}",
            "distribute.num_replicas": _num_replicas(),
            "trainer.steps_per_execution.used": _steps_per_execution(cfg.trainer.steps_per_execution),
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


def _num_replicas():
    """Model copies training in step under the current strategy (1 without distribute)."""
    return tf.distribute.get_strategy().num_replicas_in_sync


class _Summary:
    """Logs a run's one-value metrics (best_*, test_*), figures and model once training is
    done; a resumed run that reached them before it was stopped does not log them again.

    Args:
        tracker: The run's tracker.
        on_record: What the store has of the run: key -> steps.
        epochs: One dict of logged values per epoch.
    """

    def __init__(self, tracker, on_record, epochs):
        self.tracker = tracker
        self.on_record = on_record
        self.epochs = epochs
        self.keys = []  # the one-value metrics, logged now or before a resume: linked to the model

    def log(self, metrics, step):
        self.keys += metrics
        metrics = {k: v for k, v in metrics.items() if k not in self.on_record}
        if metrics:
            self.tracker.log_metrics(metrics, step=step)

    def log_best(self, monitor, mode):
        values = [e[monitor] for e in self.epochs if math.isfinite(e.get(monitor, math.nan))]
        if not values:
            return math.nan
        best = max(values) if mode == "max" else min(values)
        best_epoch = next(i for i, e in enumerate(self.epochs) if e.get(monitor) == best)
        # One value a run, at step 0: the MLflow UI then compares runs on it in a bar chart
        # (a value at a later step makes a line chart of lone dots).
        self.log({f"best_{monitor}": best, "best_epoch": best_epoch}, step=0)
        return best

    def log_results(self, model, data, head, metric_names, batch_size, output_dir):
        """Test metrics, figures and the model, with the weights training ended with."""
        results = model.evaluate(
            data.x_test, head.encode(data.y_test), batch_size=batch_size, return_dict=True, verbose=0
        )
        self.log({f"test_{k}": float(v) for k, v in results.items()}, step=0)
        log.info("test: %s", ", ".join(f"{k}={float(v):.4f}" for k, v in results.items()))

        figures = {"learning_curves.png": plots.learning_curves(self.epochs, metric_names)}
        if data.task != "regression":
            predicted = head.predict_classes(model.predict(data.x_test, batch_size=batch_size, verbose=0))
            figures["confusion_matrix.png"] = plots.confusion_matrix(data.y_test, predicted, data.class_names)
        for name, fig in figures.items():
            fig.savefig(output_dir / name, dpi=100)
            self.tracker.log_artifact(output_dir / name, "plots")
        if self.tracker.log_model:
            self.tracker.log_keras_model(model, data.x_test[:5], step=len(self.epochs) - 1, metrics=self.keys)
