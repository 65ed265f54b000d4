"""The real config: every option of every group composes and builds; bad values are refused."""

import pytest
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from kerastrack.config.checks import BOOLEANS, RANGES, check_config
from kerastrack.errors import ConfigError
from kerastrack.models.heads import resolve_head
from kerastrack.optimizers.schedules import in_steps
from kerastrack.pipeline import _instantiate, train
from tests.helpers import CONF, options

GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
ALL_OPTIONS = [(g, p.stem) for g in GROUPS for p in sorted((CONF / g).glob("*.yaml"))]
NEEDS_DOWNLOAD = {"mnist", "cifar10"}  # keras.datasets download; their readers are tested on small files
# Options that need a part outside requirements.txt (EXTRAS in tests/conftest.py).
OPTION_EXTRAS = {("launcher", "ray"): "ray", ("data", "fashion_mnist"): "fashion_mnist"}
OPTION_PARAMS = [
    pytest.param(g, o, id=f"{g}={o}", marks=[pytest.mark.extra(OPTION_EXTRAS[g, o])] if (g, o) in OPTION_EXTRAS else [])
    for g, o in ALL_OPTIONS
]


def _build(group, cfg, tmp_path):
    """Instantiates the option the way the pipeline does."""
    if group == "optimizer":
        return instantiate(cfg.optimizer)
    if group == "scheduler":
        return _instantiate(in_steps(cfg.scheduler, steps_per_epoch=10), "scheduler", {})
    if group == "loss":
        task = cfg.loss.tasks[0]
        return instantiate(cfg.loss.fn), resolve_head(cfg.loss, task, {"multiclass": 3, "binary": 2}.get(task))
    if group == "model":
        task = cfg.loss.tasks[0]  # multiclass but for a surface's position (regression)
        head = resolve_head(cfg.loss, task, 10 if task == "multiclass" else None)
        return instantiate(cfg.model)(input_shape=(8, 8, 1), head=head)
    if group == "data":
        return instantiate(cfg.data)
    if group == "callbacks":
        return [instantiate(cb) for cb in cfg.callbacks.values()]
    if group == "tracking":
        return instantiate(cfg.tracking)
    if group == "distribute":  # none: TensorFlow's default strategy
        return instantiate(cfg.distribute) if "_target_" in cfg.distribute else cfg.distribute
    if group == "launcher":  # a global preset: it picks Hydra's launcher
        return cfg.hydra.launcher._target_
    if group == "hparams_search":  # a global preset: it picks Hydra's sweeper
        return cfg.hydra.sweeper._target_
    if group == "experiment":  # a global preset: a study's sweep
        return cfg.hydra.sweeper.params
    return cfg[group]


@pytest.mark.parametrize("group, option", OPTION_PARAMS)
def test_every_option_composes_checks_and_builds(group, option, make_cfg, tmp_path):
    overrides = [f"{group}={option}"]
    if group == "data":
        if option in NEEDS_DOWNLOAD:
            pytest.skip(
                f"data={option} downloads with keras.datasets (no network here); its reader is tested in test_data.py"
            )
        if "limit" in OmegaConf.load(CONF / "data" / f"{option}.yaml"):  # the lab's problems have no samples to limit
            overrides.append("data.limit=60")
        if option == "csv":
            path = tmp_path / "toy.csv"
            path.write_text("a,b,label\n" + "".join(f"{i},{i % 7},{'xy'[i % 2]}\n" for i in range(40)))
            overrides += [f"data.path={path}", "data.target=label"]
    if group == "scheduler":
        overrides.append("trainer.epochs=5")  # warm-up schedules need more epochs than warm-up
    if (group, option) == ("model", "point"):  # a position and a surface go together
        overrides += ["loss=rosenbrock", "data=surface_steps"]
    if group == "loss" and "start" in OmegaConf.load(CONF / "loss" / f"{option}.yaml"):
        overrides += ["model=point", "data=surface_steps"]
    if group == "callbacks" and option == "reduce_lr_on_plateau":
        overrides = ["callbacks=[default,reduce_lr_on_plateau]"]
    cfg = make_cfg(*overrides)
    check_config(cfg)
    built = _build(group, cfg, tmp_path)
    if group == "scheduler":  # constant rates (constant, plateau) have no schedule object
        assert (built is None) == ("_target_" not in cfg.scheduler)
    else:
        assert built is not None


def test_every_option_file_says_where_its_docs_are():
    for group, option in ALL_OPTIONS:
        text = (CONF / group / f"{option}.yaml").read_text()
        assert text.startswith("#"), f"{group}/{option}.yaml must start with a comment"
        if group in ("optimizer", "scheduler", "loss", "callbacks", "data", "model") and option not in (
            "constant",
            "none",
            "default",
        ):
            assert "https://" in text, f"{group}/{option}.yaml must link its documentation"


def test_every_optimizer_exposes_learning_rate(make_cfg):
    for option in sorted(p.stem for p in (CONF / "optimizer").glob("*.yaml")):
        assert make_cfg(f"optimizer={option}").optimizer.learning_rate > 0


def test_optimizers_tuned_runs_every_optimizer_of_the_study_over_one_grid_that_holds_each_default(make_cfg):
    tuned, study = make_cfg("experiment=optimizers_tuned"), make_cfg("experiment=optimizers")
    params = tuned.hydra.sweeper.params
    assert params.optimizer == study.hydra.sweeper.params.optimizer and params.seed == "0,1,2"
    grid = [float(v) for v in params["optimizer.learning_rate"].split(",")]
    assert len(grid) == 5 and len({round(b / a, 9) for a, b in zip(grid, grid[1:])}) == 1  # log-spaced
    for option in params.optimizer.split(","):
        assert make_cfg(f"optimizer={option}").optimizer.learning_rate in grid, option
    for key in ("data", "model", "callbacks", "trainer"):
        assert tuned[key] == study[key], key
    callback = instantiate(tuned.hydra.callbacks.mlflow_sweep)
    assert callback.best_over == "optimizer.learning_rate" and callback.report
    assert instantiate(study.hydra.callbacks.mlflow_sweep).best_over is None


def test_gd_is_full_batch_unless_overridden(make_cfg):
    assert make_cfg("optimizer=gd").trainer.batch_size == "full"
    assert make_cfg("optimizer=gd", "trainer.batch_size=64").trainer.batch_size == 64


def test_parallel_launcher_preset_limits_threads(make_cfg):
    cfg = make_cfg("launcher=parallel")
    assert "joblib" in cfg.hydra.launcher._target_ and cfg.hydra.launcher.n_jobs == 2 and cfg.threads == 1
    assert make_cfg().threads is None


def test_schedule_lengths_are_in_epochs(make_cfg):
    cfg = make_cfg("scheduler=cosine_warmup", "trainer.epochs=10", "optimizer.learning_rate=0.1")
    schedule = instantiate(in_steps(cfg.scheduler, steps_per_epoch=7))
    assert (schedule.warmup_steps, schedule.decay_steps) == (14, 56)
    assert float(schedule(14)) == pytest.approx(0.1)
    piecewise = instantiate(in_steps(make_cfg("scheduler=piecewise", "optimizer.learning_rate=0.5").scheduler, 3))
    assert list(piecewise.boundaries) == [30, 45]
    assert [float(piecewise(s)) for s in (0, 31, 46)] == pytest.approx([0.5, 0.05, 0.005])


BAD = [
    (
        ["trainer.steps_per_execution=0"],
        "trainer.steps_per_execution must be auto or an integer >= 1 (1: Keras' default). Received: trainer.steps_per_execution=0",
    ),
    (["trainer.steps_per_execution=fast"], "Received: trainer.steps_per_execution=fast"),
    (
        ["distribute=mirrored", "trainer.steps_per_execution=8"],
        "trainer.steps_per_execution must be auto or 1 under distribute",
    ),
    (
        ["optimizer.learning_rate=-1"],
        "optimizer.learning_rate must be a number > 0. Received: optimizer.learning_rate=-1",
    ),
    (["optimizer.learning_rate=0"], "optimizer.learning_rate must be a number > 0"),
    (
        ["optimizer=momentum", "optimizer.momentum=1.5"],
        "optimizer.momentum must be a number in [0, 1]. Received: optimizer.momentum=1.5",
    ),
    (["optimizer.beta_1=1.0"], "optimizer.beta_1 must be a number in [0, 1)"),
    (["optimizer=rmsprop", "optimizer.rho=-0.1"], "optimizer.rho must be a number in [0, 1)"),
    (["optimizer.amsgrad=maybe"], "optimizer.amsgrad must be true or false"),
    (["trainer.epochs=0"], "trainer.epochs must be an integer >= 1. Received: trainer.epochs=0"),
    (["trainer.epochs=abc"], "trainer.epochs must be an integer >= 1. Received: trainer.epochs=abc"),
    (["trainer.batch_size=0"], "trainer.batch_size must be an integer >= 1 or full"),
    (
        ["trainer.batch_size=half"],
        "trainer.batch_size must be an integer >= 1 or full. Received: trainer.batch_size=half",
    ),
    (["trainer.validation_split=1.5"], "trainer.validation_split must be"),
    (["scheduler=exponential", "scheduler.decay_rate=0"], "scheduler.decay_rate must be a number > 0"),
    (["scheduler=cosine", "scheduler.alpha=2"], "scheduler.alpha must be a number in [0, 1]"),
    (["scheduler=step", "scheduler.decay_epochs=-3"], "scheduler.decay_epochs must be a number > 0"),
    (["scheduler=piecewise", "scheduler.values=[0.1]"], "scheduler: "),
    (["model.dropout=1"], "model.dropout must be a number in [0, 1)"),
    (["model.activation=relux"], "model.activation must be a Keras activation such as relu"),
    (
        ["model=linear", "model.kernel_initializer=nothing"],
        "model.kernel_initializer must be a Keras initializer such as glorot_uniform, he_normal, zeros",
    ),
    (["model=linear", "model.max_norm=0"], "model.max_norm must be a number > 0. Received: model.max_norm=0"),
    (["model=linear", "model.use_bias=no"], "model.use_bias must be true or false"),
    (
        ["scheduler=cosine_warmup", "trainer.epochs=2"],
        (
            "scheduler.decay_epochs must be a number > 0; it is ${kt.sub:${trainer.epochs},${.warmup_epochs}} here, which "
            "is 0: change trainer.epochs or scheduler.warmup_epochs. Received: trainer.epochs=2, scheduler.warmup_epochs=2"
        ),
    ),
    (
        ["scheduler=cosine_warmup", "scheduler.warmup_epochs=50", "trainer.epochs=3"],
        "which is -47: change trainer.epochs or scheduler.warmup_epochs. Received: trainer.epochs=3, scheduler.warmup_epochs=50",
    ),
    (["loss=huber", "loss.fn.delta=0"], "loss.fn.delta must be a number > 0"),
    (["trainer.metrics=[acuracy]"], "trainer.metrics: unknown metric 'acuracy'"),
    (
        ["trainer.monitor=val_acc"],
        "trainer.monitor is never logged by this run; it logs loss, accuracy, val_loss, val_accuracy. Received: trainer.monitor=val_acc",
    ),
    (["callbacks.early_stopping.monitor=val_f1"], "callbacks.early_stopping.monitor is never logged"),
    (["loss=binary_crossentropy"], "loss=binary_crossentropy does not fit data=digits, a multiclass task"),
    (["data=diabetes"], "loss=categorical_crossentropy does not fit data=diabetes, a regression task"),
    (["data=diabetes", "loss=mse", "trainer.metrics=[accuracy]"], "accuracy needs a classification data set"),
    (
        ["scheduler=cosine", "callbacks=[default,reduce_lr_on_plateau]"],
        "ReduceLROnPlateau) cannot change the learning rate of a schedule",
    ),
    (
        ["data=csv", "data.path=/no/such.csv", "data.target=y"],
        "data.path: no such file. Received: data.path=/no/such.csv",
    ),
    (["tracking.tracking_uri=foo://bar"], "tracking.tracking_uri has an unknown scheme 'foo'"),
    (["seed=-1"], "seed must be an integer in [0, 4294967295]. Received: seed=-1"),
    (["+optimizer.lr=0.1"], "optimizer: "),
    (["paths.output_dir=/dev/null/out"], "the output dir cannot be written (Not a directory)"),
    (["resume=0123abcd"], "resume: no run 0123abcd in sqlite:///"),
    # Gaps found by trying train.py as a new user would; {tmp} holds the CSVs of csv_files.
    (
        ["model.hidden_units=64"],
        "model.hidden_units must be a list of integers >= 1, one per layer, e.g. [128] or [256, 128]. Received: model.hidden_units=64",
    ),
    (["model.hidden_units=[0]"], "Received: model.hidden_units=[0]"),
    (["model.hidden_units=[-5]"], "model.hidden_units must be a list of integers >= 1"),
    (["model.hidden_units=[64.5]"], "model.hidden_units must be a list of integers >= 1"),
    (["model.hidden_units=[a]"], "Received: model.hidden_units=['a']"),
    (["model.hidden_units=null"], "model.hidden_units must be a list of integers >= 1"),
    (["model=cnn", "model.kernel_size=0"], "model.kernel_size must be an integer > 0. Received: model.kernel_size=0"),
    (["model=cnn", "model.filters=[0]"], "model.filters must be a list of integers >= 1"),
    (["model=cnn", "model.dense_units=-1"], "model.dense_units must be an integer > 0"),
    (
        ["+model.foo=1"],
        "model.foo is not an argument of model=mlp; it takes hidden_units, activation, dropout, l1, l2. Received: model.foo=1",
    ),
    (["data=iris", "model=cnn"], "model=cnn needs image data of shape (height, width, channels); data=iris is tabular"),
    (
        ["data=csv", "data.path={tmp}/three.csv", "data.target=y", "model=cnn"],
        "model=cnn needs image data of shape (height, width, channels); data=csv is tabular",
    ),
    (
        ["data=iris", "data.name=irsi"],
        "data.name must be one of digits, iris, wine, breast_cancer, diabetes. Received: data.name=irsi",
    ),
    (
        ["data=csv"],
        "data.path must be given: data=csv has no default for it (see conf/data/csv.yaml). Received: data.path=???",
    ),
    (["data=csv", "data.path={tmp}/inf.csv"], "data.target must be given"),
    (
        ["data=iris", "trainer.validation_split=0.999"],
        "trainer.validation_split leaves no sample to train on: 0 of the 90 training samples to train on, 90 to validate on. Use a share in between, or null for the data set's own validation split. Received: trainer.validation_split=0.999",
    ),
    (
        ["data=iris", "trainer.validation_split=0.999", "trainer.batch_size=full"],
        "trainer.validation_split leaves no sample to train on",
    ),
    (["seed=99999999999999999999"], "seed must be an integer in [0, 4294967295]. Received: seed=99999999999999999999"),
    (["data.seed=abc"], "data.seed must be an integer in [0, 4294967295]. Received: data.seed=abc"),
    (
        ["scheduler=piecewise", "scheduler.boundary_epochs=[15,10]"],
        "scheduler.boundary_epochs must be a non-empty list of increasing epochs > 0, e.g. [10, 15]. Received: scheduler.boundary_epochs=[15, 10]",
    ),
    (
        ["scheduler=piecewise", "scheduler.boundary_epochs=[]", "scheduler.values=[0.1]"],
        "scheduler.boundary_epochs must be a non-empty list",
    ),
    (
        ["scheduler=piecewise", "scheduler.boundary_epochs=[0,5]"],
        "scheduler.boundary_epochs must be a non-empty list of increasing epochs > 0",
    ),
    (
        ["scheduler=step", "scheduler.decay_epochs=0.01"],
        "scheduler.decay_epochs is less than one optimizer step (34 steps per epoch); use at least 0.0294 epochs. Received: scheduler.decay_epochs=0.01",
    ),
    (
        ["callbacks.early_stopping.mode=maxx"],
        "callbacks.early_stopping.mode must be one of auto, min, max. Received: callbacks.early_stopping.mode=maxx",
    ),
    (["callbacks.early_stopping.patience=1.5"], "callbacks.early_stopping.patience must be an integer >= 0"),
    (["trainer.shuffle=maybe"], "trainer.shuffle must be true or false. Received: trainer.shuffle=maybe"),
    (
        ["tracking.system_metrics=maybe"],
        "tracking.system_metrics must be true or false. Received: tracking.system_metrics=maybe",
    ),
    (
        ["tracking.system_metrics_interval=0"],
        "tracking.system_metrics_interval must be a number of seconds > 0, e.g. 1. Received: tracking.system_metrics_interval=0",
    ),
    (["trainer.verbose=true"], "trainer.verbose must be 0, 1 or 2"),
    (
        ["loss=sparse_categorical_crossentropy", "trainer.metrics=[top_k_categorical_accuracy]"],
        "trainer.metrics: top_k_categorical_accuracy does not fit this loss's targets (integer, 10 outputs)",
    ),
    (
        ["data=diabetes", "loss=mse", "trainer.metrics=[precision]"],
        "trainer.metrics: precision needs a classification data set",
    ),
    (["data=csv", "data.path={tmp}", "data.target=y"], "data.path: csvs is not a file. Received: data.path="),
    (
        ["data=csv", "data.path={tmp}/one_class.csv", "data.target=y"],
        "data.target: column 'y' holds a single class (1); classification needs at least 2. Received: data.target=y",
    ),
    (["data=csv", "data.path={tmp}/inf.csv", "data.target=y"], "data.path: column b of "),
    (
        ["data=csv", "data.path={tmp}/inf_target.csv", "data.target=y", "data.task=regression", "loss=mse"],
        "data.path: column y of ",
    ),
    (["data=csv", "data.path={tmp}/only_target.csv", "data.target=y"], "has no feature columns besides the target"),
    (
        ["data=csv", "data.path={tmp}/three.csv", "data.target=y", "data.task=binary"],
        "data.task: binary needs exactly 2 classes; column 'y' has 3",
    ),
    (
        ["data=csv", "data.path={tmp}/text.csv", "data.target=y", "data.task=regression", "loss=mse"],
        "data.task: regression needs a numeric target",
    ),
    (["data=fashion_mnist", "data.path={tmp}/inf.csv"], "data.path: inf.csv is not a directory"),
    (
        ["data=csv", "data.path={tmp}/header_only.csv", "data.target=y"],
        "header_only.csv has no rows, only its header (a, b, y); a CSV needs one row per sample under it. Received: data.path=",
    ),
    (
        ["tracking.experiment_name=" + "e" * 600],
        "tracking.experiment_name must be at most 500 characters (MLflow's limit); it has 600. Received: tracking.experiment_name=eeee",
    ),
    (
        ["tracking.experiment_name="],
        "tracking.experiment_name must be a name, or null for $MLFLOW_EXPERIMENT_NAME, else kerastrack. Received: tracking.experiment_name=''",
    ),
    (
        ['optimizer.learning_rate="1e-3"'],
        "optimizer.learning_rate must be a number > 0. Received: optimizer.learning_rate='1e-3' (a string: give it without quotes)",
    ),
    (['trainer.shuffle="true"'], "Received: trainer.shuffle='true' (a string: give it without quotes)"),
    # Keys added where kerastrack reads a fixed set (Hydra suggests +trainer.epoch=3 after the typo), or removed.
    (
        ["+trainer.epoch=3"],
        "trainer.epoch is not a key of trainer: nothing would read it (and its default would be used); did you mean trainer.epochs? Received: +trainer.epoch=3",
    ),
    (["++trainer.epoch=3"], "did you mean trainer.epochs? Received: ++trainer.epoch=3"),
    (["+paths.ouput_dir=x"], "did you mean paths.output_dir? Received: +paths.ouput_dir=x"),
    (
        ["+sede=1"],
        "sede is not a top-level key: nothing would read it (and its default would be used); did you mean seed? Received: +sede=1",
    ),
    (
        ["+foo=1"],
        "foo is not a top-level key: nothing would read it (and its default would be used); it has seed, deterministic, resume,",
    ),
    (["~seed"], "seed cannot be removed: kerastrack reads it; set it instead: seed=<value>. Received: ~seed"),
    (
        ["~deterministic"],
        "deterministic cannot be removed: kerastrack reads it; set it instead: deterministic=<value>. Received: ~deterministic",
    ),
    (["~trainer.epochs"], "trainer.epochs cannot be removed"),
    (
        ["~data"],
        "data cannot be removed: kerastrack reads it; choose one of its options instead (conf/data/). Received: ~data",
    ),
    # The fixed groups' schema (config/schema.py): a key it lacks, a value of the wrong type.
    (
        ["++trainer.warmup=3"],
        "trainer.warmup is not a key of trainer; it has epochs, batch_size, steps_per_execution, jit_compile, "
        "validation_split, metrics, monitor, monitor_mode, verbose, shuffle, precision, state_every_s. "
        "Received: trainer.warmup=3",
    ),
    (["++paths.logs=x"], "paths.logs is not a key of paths; it has output_dir. Received: paths.logs=x"),
    (
        ["++learning_rate=0.1"],
        "learning_rate is not a top-level key; it has seed, deterministic, resume, threads, logical_cpus, tags, notes. "
        "Received: learning_rate=0.1",
    ),
    (
        ["+tracking.log_modle=false"],
        "tracking.log_modle is not an argument of kerastrack.tracking.MlflowTracker; did you mean "
        "tracking.log_model? Received: tracking.log_modle=False",
    ),
    (
        ["tracking.log_model=maybe"],
        "tracking.log_model must be true or false. Received: tracking.log_model=maybe",
    ),
    (["tracking.offline=1"], "tracking.offline must be true or false. Received: tracking.offline=1"),
    (
        ["trainer.monitor=[a,b]"],
        "trainer.monitor must be the name of a value the run logs, e.g. val_loss. Received: trainer.monitor=['a', 'b']",
    ),
    (
        ["trainer.state_every_s=nan"],
        "trainer.state_every_s must be a number of seconds >= 0 (0: after every epoch). "
        "Received: trainer.state_every_s=nan",
    ),
    (
        ["tracking.store_wait=-1"],
        "tracking.store_wait must be a number of seconds >= 0 (0: do not wait for a locked store). "
        "Received: tracking.store_wait=-1",
    ),
    # The optimizer lab's surfaces (experiment=surfaces).
    (
        ["experiment=surfaces", "data.steps_per_epoch=0"],
        "data.steps_per_epoch must be an integer >= 1: the optimizer steps per epoch. Received: data.steps_per_epoch=0",
    ),
    (
        ["experiment=surfaces", "model.start=[1]"],
        "model.start must be a list of two numbers [x, y] (the surface's loss.start by default), e.g. [-2, 2]. Received: model.start=[1]",
    ),
    (["experiment=surfaces", "loss.start=[0,nan]"], "Received: model.start=[0, nan]"),
    (
        ["experiment=surfaces", "loss=saddle", "loss.fn.terms=[[1,2]]"],
        "loss.fn.terms must be a non-empty list of [coefficient, power of x, power of y] with integer powers >= 0, e.g. [[1, 2, 0], [-1, 0, 2]] for x^2 - y^2. Received: loss.fn.terms=[[1, 2]]",
    ),
    (["experiment=surfaces", "loss.fn.b=abc"], "loss.fn.b must be a finite number. Received: loss.fn.b=abc"),
    (
        ["loss=rosenbrock"],
        "a 2-D surface's loss (rosenbrock, saddle, two_minima, rastrigin) scores a position, which model=point is, and model=point needs one. Received: loss=rosenbrock, model=mlp",
    ),
    (["model=point"], "Received: loss=categorical_crossentropy, model=point"),
]


@pytest.fixture
def csv_files(tmp_path):
    """Small CSVs that are wrong in one way each, in a folder of their own."""
    folder = tmp_path / "csvs"
    folder.mkdir()
    rows = range(40)
    files = {
        "one_class.csv": "a,b,y\n" + "".join(f"{i},{i % 3},1\n" for i in rows),
        "inf.csv": "a,b,y\n" + "".join(f"{i},{'inf' if i == 5 else i % 3},{i % 2}\n" for i in rows),
        "inf_target.csv": "a,b,y\n" + "".join(f"{i},{i % 3},{'-inf' if i == 4 else i * 0.37}\n" for i in rows),
        "only_target.csv": "y\n" + "".join(f"{i % 2}\n" for i in rows),
        "three.csv": "a,b,y\n" + "".join(f"{i},{i % 5},{'abc'[i % 3]}\n" for i in rows),
        "text.csv": "a,b,y\n" + "".join(f"{i},{i % 5},v{i}\n" for i in rows),
        "header_only.csv": "a,b,y\n",
    }
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize("overrides, message", BAD, ids=[" ".join(o)[:100] for o, _ in BAD])
def test_bad_input_is_refused_before_any_run(overrides, message, make_cfg, runs, csv_files):
    with pytest.raises(ConfigError) as error:
        train(make_cfg(*(o.format(tmp=csv_files) for o in overrides)))
    assert message in str(error.value)
    assert "\n" not in str(error.value) and "ConfigError(" not in str(error.value)
    assert runs() == [], "bad input must not leave a run in the store"


def _out_of_range(key):
    """A value the check of ``key`` refuses: out of range, or not a boolean."""
    if key in BOOLEANS:
        return "maybe"
    check, _ = RANGES[key]
    return next(v for v in (-1.0, 1.5, 0.0, 1.0) if not check(v))


OUT_OF_RANGE = [
    (group, option, key)
    for group in ("optimizer", "scheduler")
    for option in options(group)
    for key, value in (yaml.safe_load((CONF / group / f"{option}.yaml").read_text()) or {}).items()
    if key in RANGES or key in BOOLEANS
]


@pytest.mark.parametrize("group, option, key", OUT_OF_RANGE, ids=[f"{g}={o}-{k}" for g, o, k in OUT_OF_RANGE])
def test_every_optimizer_and_schedule_argument_is_range_checked(group, option, key, make_cfg, runs):
    bad = _out_of_range(key)
    with pytest.raises(ConfigError, match=rf"{group}\.{key} must be .*Received: {group}\.{key}={bad}"):
        train(make_cfg("trainer.epochs=20", f"{group}={option}", f"{group}.{key}={bad}"))  # cosine_warmup needs > 1
    assert runs() == []


@pytest.mark.parametrize(
    "content", ["a,b,y\n1,2,0\n3,4,5,6,7\n", "", "\xff\xfe\x00garbage\n"], ids=["ragged", "empty", "binary"]
)
def test_a_malformed_csv_is_refused(content, make_cfg, tmp_path, runs):
    path = tmp_path / "bad.csv"
    path.write_bytes(content.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"data.path: .*bad.csv is not a readable CSV \(.+\)\. Received: data.path="):
        train(make_cfg("data=csv", f"data.path={path}", "data.target=y"))
    assert runs() == []


def test_csv_without_the_target_column_lists_the_columns(make_cfg, tmp_path, runs):
    path = tmp_path / "t.csv"
    path.write_text("a,b,label\n1,2,x\n3,4,y\n")
    with pytest.raises(ConfigError, match=r"data.target: no column 'y'.*a, b, label"):
        train(make_cfg("data=csv", f"data.path={path}", "data.target=y"))
    assert runs() == []


@pytest.mark.parametrize(
    "override, key",
    [
        ("optimizer.learning_rate=1", "optimizer.learning_rate"),
        ("optimizer=momentum optimizer.momentum=0", "optimizer.momentum"),
    ],
)
def test_an_integer_for_a_float_argument_is_taken_as_the_float(override, key, make_cfg, runs):
    # Keras refuses Adam(learning_rate=1) and SGD(momentum=0); the user meant 1.0 and 0.0.
    train(make_cfg(*override.split(), "callbacks=none"))
    (run,) = runs()
    assert run.info.status == "FINISHED"
    assert run.data.params[key] == str(float(override.rsplit("=", 1)[1]))


def test_the_schema_writes_back_what_it_converts_and_refuses_keys_a_yaml_adds(make_cfg):
    cfg = make_cfg("trainer.state_every_s=1", "tracking.experiment_name=2024", "trainer.metrics=[1]")
    check_config(cfg)  # "1" then fails as an unknown metric, when the run builds its metrics
    assert cfg.trainer.state_every_s == 1.0 and isinstance(cfg.trainer.state_every_s, float)
    assert cfg.tracking.experiment_name == "2024" and list(cfg.trainer.metrics) == ["1"]
    # A key a preset or an option of one's own adds (no override says it) is refused too.
    for node, key in (("trainer", "epoch"), (None, "sede")):
        cfg = make_cfg()
        with open_dict(cfg):
            OmegaConf.update(cfg, f"{node}.{key}" if node else key, 3, force_add=True)
        with pytest.raises(ConfigError, match=rf"{key} is not .*; did you mean \S+\? Received: .*{key}=3$"):
            check_config(cfg)
