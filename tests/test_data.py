"""Tests for kerastrack.data.sets and kerastrack.data.files: real loaders on scikit-learn's sets and
on tiny files written here in the real MNIST (.npz), Fashion-MNIST (IDX) and CIFAR-10 (pickle)
formats."""

import gzip
import inspect
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from kerastrack.data import files as datafiles
from kerastrack.data import lab as lab_module
from kerastrack.data import sets as data
from kerastrack.errors import ConfigError
from tests.helpers import CONF

CONF_DIR = CONF / "data"

SKLEARN_SETS = [
    # name, task, num_classes, input_shape, samples
    ("digits", "multiclass", 10, (8, 8, 1), 1797),
    ("iris", "multiclass", 3, (4,), 150),
    ("wine", "multiclass", 3, (13,), 178),
    ("breast_cancer", "binary", 2, (30,), 569),
    ("diabetes", "regression", None, (10,), 442),
]
CLASSIFIERS = [s[0] for s in SKLEARN_SETS if s[1] != "regression"]
KERAS_IMAGE_SETS = ["mnist", "fashion_mnist", "cifar10"]


def splits(ds):
    return [(ds.x_train, ds.y_train), (ds.x_val, ds.y_val), (ds.x_test, ds.y_test)]


def assert_same(a, b):
    for (xa, ya), (xb, yb) in zip(splits(a), splits(b)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


# --- scikit-learn sets ------------------------------------------------------------


@pytest.mark.parametrize("name, task, num_classes, input_shape, n", SKLEARN_SETS)
def test_sklearn_set_shapes_dtypes_and_scaling(name, task, num_classes, input_shape, n):
    ds = data.sklearn_set(name, seed=0, val_size=0.2, test_size=0.2)
    assert (ds.name, ds.task, ds.num_classes, ds.input_shape) == (
        name,
        task,
        num_classes,
        input_shape,
    )
    assert len(ds.y_train) + len(ds.y_val) + len(ds.y_test) == n
    assert len(ds.y_test) == pytest.approx(0.2 * n, abs=1)
    assert len(ds.y_val) == pytest.approx(0.2 * n, abs=2)
    for x, y in splits(ds):
        assert x.dtype == np.float32 and x.shape[1:] == input_shape
        assert y.ndim == 1 and len(y) == len(x)
        assert y.dtype == (np.float32 if task == "regression" else np.int64)
    if task == "regression":
        assert ds.class_names is None
    else:
        assert len(ds.class_names) == num_classes
        assert set(np.unique(ds.y_train)) == set(range(num_classes))
    if len(input_shape) == 3:  # images: scaled, not standardized
        assert 0 <= ds.x_train.min() and ds.x_train.max() == 1.0
    else:  # standardized on the train split only
        np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)
        np.testing.assert_allclose(ds.x_train.std(axis=0), 1, atol=1e-3)
        assert not np.allclose(ds.x_test.mean(axis=0), 0, atol=1e-5)


def test_class_names_come_from_sklearn():
    assert data.sklearn_set("digits").class_names == [str(i) for i in range(10)]
    assert data.sklearn_set("iris").class_names == ["setosa", "versicolor", "virginica"]
    assert data.sklearn_set("breast_cancer").class_names == ["malignant", "benign"]


@pytest.mark.parametrize("name", [s[0] for s in SKLEARN_SETS])
def test_split_is_fixed_by_the_seed(name):
    assert_same(data.sklearn_set(name, seed=7), data.sklearn_set(name, seed=7))
    other = data.sklearn_set(name, seed=8)
    assert not np.array_equal(data.sklearn_set(name, seed=7).y_train, other.y_train)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_stratification_keeps_class_shares_in_every_split(name):
    ds = data.sklearn_set(name, seed=3)
    everything = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    share = np.bincount(everything) / len(everything)
    for _, y in splits(ds):
        assert set(np.unique(y)) == set(range(ds.num_classes))
        np.testing.assert_allclose(np.bincount(y) / len(y), share, atol=0.03)


def test_limit_takes_a_seeded_stratified_subset_of_each_split():
    ds = data.sklearn_set("digits", seed=1, limit=50)
    assert [len(y) for _, y in splits(ds)] == [50, 50, 50]
    for _, y in splits(ds):
        assert set(np.unique(y)) == set(range(10))
    assert_same(ds, data.sklearn_set("digits", seed=1, limit=50))
    big = data.sklearn_set("digits", seed=1, limit=1000)  # val and test have only 360 each
    assert [len(y) for _, y in splits(big)] == [1000, 360, 360]
    # Tiny limits cannot hold every class and fall back to a plain random subset.
    assert len(data.sklearn_set("iris", limit=2).y_train) == 2


def test_limited_tabular_train_split_is_standardized():
    ds = data.sklearn_set("wine", limit=40)
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"val_size": 0}, "data.val_size"),
        ({"val_size": 1}, "data.val_size"),
        ({"val_size": -0.1}, "data.val_size"),
        ({"val_size": "0.2"}, "data.val_size"),
        ({"val_size": True}, "data.val_size"),
        ({"test_size": 0.0}, "data.test_size"),
        ({"test_size": 1.5}, "data.test_size"),
        ({"val_size": 0.5, "test_size": 0.5}, "data.val_size + data.test_size"),
        ({"limit": 0}, "data.limit"),
        ({"limit": -3}, "data.limit"),
        ({"limit": 2.5}, "data.limit"),
        ({"limit": True}, "data.limit"),
    ],
)
def test_bad_split_settings_raise_config_error(kwargs, key):
    with pytest.raises(ConfigError, match="Received") as info:
        data.sklearn_set("iris", **kwargs)
    assert str(info.value).startswith(key)
    assert f"{key.split(' + ')[0]}=" in str(info.value)


def test_keras_sets_validate_before_loading_anything():
    # A bad value must fail fast, not start a download or read a file first.
    for name in KERAS_IMAGE_SETS:
        with pytest.raises(ConfigError, match="data.val_size"):
            data.keras_images(name, val_size=0)
        with pytest.raises(ConfigError, match="data.limit"):
            data.keras_images(name, limit=0)


def test_sklearn_sets_do_not_import_tensorflow():
    code = (
        "import sys; from kerastrack import data; data.sklearn_set('digits'); data.sklearn_set('iris'); "
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, "
        "sorted(m for m in sys.modules if m.startswith(('keras', 'tensorflow')))[:5]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# --- tiny files in the real Keras data set formats ----------------------------------


def write_idx(path, array):
    """IDX: big-endian magic 0x00000800 + ndim (2049 labels, 2051 images), then dims."""
    array = np.asarray(array, np.uint8)
    header = (0x800 + array.ndim).to_bytes(4, "big")
    header += b"".join(d.to_bytes(4, "big") for d in array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(header + array.tobytes())


def tiny_images(n, shape, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape), dtype=np.uint8), np.arange(n, dtype=np.uint8) % 10


@pytest.fixture
def fashion_dir(tmp_path):
    """Four gzipped IDX files in Keras' Fashion-MNIST layout: 100 train, 30 test."""
    folder = tmp_path / "fashion"
    folder.mkdir()
    (x_train, y_train), (x_test, y_test) = tiny_images(100, (28, 28), 0), tiny_images(30, (28, 28), 1)
    for name, array in zip(datafiles.FASHION_MNIST_FILES, (y_train, x_train, y_test, x_test)):
        write_idx(folder / f"{name}.gz", array)
    return folder, (x_train, y_train), (x_test, y_test)


def check_image_set(ds, raw_train, raw_test, shape, pixel_max=255):
    assert ds.task == "multiclass" and ds.num_classes == 10 and ds.input_shape == shape
    for x, y in splits(ds):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert 0 <= x.min() and x.max() <= 1
    # The own test split is kept as is (same order, only scaled); train is split in two.
    expected_test = raw_test[0] if raw_test[0].ndim == 4 else raw_test[0][..., None]
    np.testing.assert_array_equal(np.rint(ds.x_test * pixel_max), expected_test)
    np.testing.assert_array_equal(ds.y_test, raw_test[1])
    assert len(ds.y_train) + len(ds.y_val) == len(raw_train[1])
    np.testing.assert_array_equal(np.sort(np.concatenate([ds.y_train, ds.y_val])), np.sort(raw_train[1]))
    assert set(np.unique(ds.y_val)) == set(range(10))  # stratified


def test_fashion_mnist_reads_gzipped_idx_files(fashion_dir):
    folder, train, test = fashion_dir
    ds = data.keras_images("fashion_mnist", str(folder), seed=0, val_size=0.2)
    check_image_set(ds, train, test, (28, 28, 1))
    assert len(ds.y_val) == 20
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    assert_same(ds, data.keras_images("fashion_mnist", str(folder), seed=0, val_size=0.2))
    assert not np.array_equal(ds.y_train, data.keras_images("fashion_mnist", str(folder), seed=1, val_size=0.2).y_train)


def test_fashion_mnist_reads_plain_idx_files_and_the_debian_default(tmp_path, monkeypatch):
    train, test = tiny_images(100, (28, 28), 2), tiny_images(20, (28, 28), 3)
    for name, array in zip(datafiles.FASHION_MNIST_FILES, (train[1], train[0], test[1], test[0])):
        write_idx(tmp_path / name, array)
    monkeypatch.setattr(datafiles, "DEBIAN_FASHION_MNIST", tmp_path)
    check_image_set(data.keras_images("fashion_mnist", val_size=0.2), train, test, (28, 28, 1))


def test_our_idx_files_are_what_keras_own_fashion_mnist_loader_reads(fashion_dir, tmp_path, monkeypatch):
    keras = pytest.importorskip("keras")
    from keras.src.backend import config as keras_config

    folder, _, _ = fashion_dir
    # keras.datasets.fashion_mnist reads <keras home>/datasets/fashion-mnist/*.gz and,
    # with no file hash to check, never downloads when the files are there.
    home = tmp_path / "keras_home"
    (home / "datasets").mkdir(parents=True)
    (home / "datasets" / "fashion-mnist").symlink_to(folder)
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))
    theirs = keras.datasets.fashion_mnist.load_data()
    ours = datafiles.read_fashion_mnist(folder)
    for (x_theirs, y_theirs), (x_ours, y_ours) in zip(theirs, ours):
        np.testing.assert_array_equal(x_theirs, x_ours)
        np.testing.assert_array_equal(y_theirs, y_ours)


@pytest.mark.extra("fashion_mnist")
def test_fashion_mnist_loads_debians_copy():
    (x_train, y_train), (x_test, y_test) = datafiles.read_fashion_mnist(datafiles.DEBIAN_FASHION_MNIST)
    assert x_train.shape == (60000, 28, 28) and y_train.shape == (60000,)
    assert x_test.shape == (10000, 28, 28) and y_test.shape == (10000,)
    ds = data.keras_images("fashion_mnist", limit=200)  # path=None picks the Debian copy
    assert [len(y) for _, y in splits(ds)] == [200, 200, 200]
    assert ds.input_shape == (28, 28, 1) and ds.x_train.max() <= 1
    assert set(np.unique(ds.y_train)) == set(range(10))


def test_mnist_reads_a_keras_format_npz(tmp_path):
    train, test = tiny_images(100, (28, 28), 4), tiny_images(30, (28, 28), 5)
    path = tmp_path / "mnist.npz"
    np.savez(path, x_train=train[0], y_train=train[1], x_test=test[0], y_test=test[1])
    ds = data.keras_images("mnist", str(path), seed=0, val_size=0.2)
    check_image_set(ds, train, test, (28, 28, 1))
    assert ds.class_names == [str(i) for i in range(10)]
    assert [len(y) for _, y in splits(data.keras_images("mnist", str(path), val_size=0.2, limit=15))] == [
        15,
        15,
        15,
    ]


def write_cifar(folder, seed=6, per_batch=20):
    """Python pickles like cifar-10-batches-py: {b"data": (n, 3072) uint8, b"labels": list}."""
    folder.mkdir()
    rng = np.random.default_rng(seed)
    raw = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        pixels = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [i % 10 for i in range(per_batch)]
        with open(folder / name, "wb") as f:
            # Protocol 4, not 2: Python 3 writes protocol-2 bytes via _codecs.encode, which
            # no safe unpickler (Keras' or ours) accepts; Python 2's originals need no call.
            pickle.dump({b"batch_label": name.encode(), b"data": pixels, b"labels": labels}, f, 4)
        raw[name] = (pixels, labels)
    return raw


def test_cifar10_reads_python_batches_channels_last(tmp_path):
    raw = write_cifar(tmp_path / "cifar-10-batches-py")
    ds = data.keras_images("cifar10", str(tmp_path / "cifar-10-batches-py"), seed=0, val_size=0.2)
    # Each row is 1024 red, then 1024 green, then 1024 blue values, row-major.
    to_image = lambda rows: rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)  # noqa: E731
    train = (
        to_image(np.concatenate([raw[f"data_batch_{i}"][0] for i in range(1, 6)])),
        np.concatenate([raw[f"data_batch_{i}"][1] for i in range(1, 6)]),
    )
    test = (to_image(raw["test_batch"][0]), np.array(raw["test_batch"][1]))
    check_image_set(ds, train, test, (32, 32, 3))
    assert ds.x_test[0, 0, 1, 2] == raw["test_batch"][0][0, 2048 + 1] / np.float32(255)
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"


def test_cifar10_reader_matches_keras_load_batch(tmp_path):
    pytest.importorskip("keras")
    from keras.src.datasets.cifar import load_batch

    write_cifar(tmp_path / "c")
    x_theirs, y_theirs = load_batch(str(tmp_path / "c" / "test_batch"))
    x_ours, y_ours = datafiles.read_cifar10(tmp_path / "c")[1]
    np.testing.assert_array_equal(x_theirs.transpose(0, 2, 3, 1), x_ours)
    np.testing.assert_array_equal(y_theirs, y_ours)


def test_cifar10_refuses_pickles_that_would_run_code(tmp_path):
    write_cifar(tmp_path / "c")
    with open(tmp_path / "c" / "data_batch_3", "wb") as f:
        pickle.dump({b"data": Path("x"), b"labels": []}, f)
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.keras_images("cifar10", str(tmp_path / "c"))


def test_missing_or_incomplete_paths_raise_config_error(tmp_path, fashion_dir):
    cases = [
        ("mnist", tmp_path / "nope.npz", ".npz with arrays x_train"),
        ("fashion_mnist", tmp_path / "nope", "train-labels-idx1-ubyte"),
        ("cifar10", tmp_path / "nope", "cifar-10-batches-py"),
    ]
    for name, path, expected in cases:
        with pytest.raises(ConfigError, match="data.path") as info:
            data.keras_images(name, str(path))
        assert f"Received: data.path={path}" in str(info.value) and expected in str(info.value)

    folder = fashion_dir[0]
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(ConfigError, match="no t10k-images-idx3-ubyte"):
        data.keras_images("fashion_mnist", str(folder))

    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 28, 28), np.uint8))
    with pytest.raises(ConfigError, match="lacks arrays y_train, x_test, y_test"):
        data.keras_images("mnist", str(tmp_path / "partial.npz"))


# --- CSV ----------------------------------------------------------------------------


def write_csv(tmp_path, frame, name="table.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def animals(n_per_class=(10, 20, 30), seed=0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(["cat", "bird", "dog"], n_per_class)  # deliberately unsorted
    return pd.DataFrame(
        {
            "weight": rng.normal(5, 2, len(labels)),
            "legs": rng.integers(0, 5, len(labels)),
            "species": labels,
        }
    )


def test_csv_classification_with_string_labels(tmp_path):
    path = write_csv(tmp_path, animals(), "zoo.csv")
    ds = data.csv(path, "species", seed=0)
    assert (ds.name, ds.task, ds.num_classes, ds.input_shape) == ("zoo", "multiclass", 3, (2,))
    assert ds.class_names == ["bird", "cat", "dog"]  # sorted; ids index this list
    everything = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    np.testing.assert_array_equal(np.bincount(everything), [20, 10, 30])
    for x, y in splits(ds):
        assert x.dtype == np.float32 and y.dtype == np.int64
        assert set(np.unique(y)) == {0, 1, 2}
    np.testing.assert_allclose(ds.x_train.mean(axis=0), 0, atol=1e-5)
    assert_same(ds, data.csv(path, "species", seed=0))
    assert not np.array_equal(ds.y_train, data.csv(path, "species", seed=1).y_train)


def test_csv_regression_and_auto_task_detection(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"x": rng.normal(size=80), "price": rng.uniform(10, 500, 80)})
    frame["flag"] = (frame.x > 0).astype(float)  # float, but only 2 values
    frame["grade"] = np.arange(80) % 3 + 1  # integers 1, 2, 3
    path = write_csv(tmp_path, frame)

    ds = data.csv(path, "price")
    assert ds.task == "regression" and ds.num_classes is None and ds.class_names is None
    assert ds.y_train.dtype == np.float32 and ds.input_shape == (3,)
    np.testing.assert_allclose(
        np.sort(np.concatenate([ds.y_train, ds.y_val, ds.y_test])),
        np.sort(frame.price.to_numpy(np.float32)),
    )
    flag = data.csv(path, "flag")
    assert (flag.task, flag.class_names) == ("binary", ["0.0", "1.0"])
    grade = data.csv(path, "grade")
    assert (grade.task, grade.class_names) == ("multiclass", ["1", "2", "3"])
    assert set(np.unique(grade.y_train)) == {0, 1, 2}
    # An explicit task wins over the guess.
    assert data.csv(path, "grade", task="regression").task == "regression"
    assert data.csv(path, "flag", task="multiclass").task == "multiclass"


def test_csv_one_hot_encodes_categorical_features(tmp_path):
    frame = animals()
    frame["color"] = np.resize(["red", "green", "blue"], len(frame))
    ds = data.csv(write_csv(tmp_path, frame), "species")
    assert ds.input_shape == (2 + 3,)
    np.testing.assert_allclose(ds.x_train.std(axis=0), 1, atol=1e-3)


def test_csv_errors_name_the_key_and_value(tmp_path):
    path = write_csv(tmp_path, animals())
    with pytest.raises(ConfigError, match=r"data.path: no such file. Received: data.path=.*nope.csv"):
        data.csv(str(tmp_path / "nope.csv"), "species")
    with pytest.raises(ConfigError) as info:
        data.csv(path, "kind")
    assert str(info.value) == (
        f"data.target: no column 'kind' in {path}. Received: data.target=kind; columns: weight, legs, species"
    )
    with pytest.raises(ConfigError, match="multiclass, binary, regression. Received: data.task=classes"):
        data.csv(path, "species", task="classes")
    with pytest.raises(ConfigError, match="binary needs exactly 2 classes.*has 3"):
        data.csv(path, "species", task="binary")
    with pytest.raises(ConfigError, match="regression needs a numeric target"):
        data.csv(path, "species", task="regression")


def test_csv_rows_with_missing_values_are_an_error(tmp_path):
    frame = animals()
    frame.loc[[3, 7], "weight"] = np.nan
    frame.loc[7, "species"] = None
    with pytest.raises(ConfigError, match=r"2 of 60 rows have missing values \(columns: weight, species\)"):
        data.csv(write_csv(tmp_path, frame), "species")


def test_csv_class_too_small_to_stratify(tmp_path):
    frame = animals((1, 20, 30))
    with pytest.raises(ConfigError, match="data.test_size: cannot split 51 samples"):
        data.csv(write_csv(tmp_path, frame), "species")


# --- conf/data/*.yaml ---------------------------------------------------------------


# Each family function and the table of the sets it loads (None: the family is one set).
FAMILIES = {"sklearn_set": data.SKLEARN_SETS, "keras_images": data.KERAS_IMAGE_SETS, "csv": None}


def test_every_data_config_names_its_set_and_a_family_that_has_it():
    configs = {p.stem: OmegaConf.load(p) for p in CONF_DIR.glob("*.yaml")}
    # The optimizer lab's problems (kerastrack.data.lab) are constructions, not sets: their
    # options are their function's arguments.
    lab = {name for name, cfg in configs.items() if cfg._target_.startswith("kerastrack.data.lab.")}
    for name in lab:
        function = getattr(lab_module, configs[name]._target_.removeprefix("kerastrack.data.lab."))
        assert set(configs[name]) - {"_target_"} == set(inspect.signature(function).parameters), name
    names = sorted(set(configs) - lab)
    assert names == sorted([*data.SKLEARN_SETS, *data.KERAS_IMAGE_SETS, "csv"])
    for name in names:
        cfg = OmegaConf.load(CONF_DIR / f"{name}.yaml")
        family = cfg._target_.removeprefix("kerastrack.data.sets.")
        assert family in FAMILIES, (name, cfg._target_)
        if FAMILIES[family] is None:
            assert family == name and "name" not in cfg
        else:
            assert cfg.name == name and name in FAMILIES[family]
        params = inspect.signature(getattr(data, family)).parameters
        assert set(cfg) - {"_target_"} == set(params), name
        assert OmegaConf.to_container(cfg)["seed"] == "${seed}"
    for family in FAMILIES:
        assert inspect.getdoc(getattr(data, family)).count("Args:") == 1
    csv_cfg = OmegaConf.load(CONF_DIR / "csv.yaml")
    assert OmegaConf.is_missing(csv_cfg, "path") and OmegaConf.is_missing(csv_cfg, "target")


def test_tabular_sets_are_the_feature_vector_sets():
    assert data.TABULAR_SETS == ("iris", "wine", "breast_cancer", "diabetes", "csv")


@pytest.mark.parametrize(
    "family, known",
    [
        (data.sklearn_set, "digits, iris, wine, breast_cancer, diabetes"),
        (data.keras_images, "mnist, fashion_mnist, cifar10"),
    ],
)
def test_a_set_name_its_family_lacks_names_the_sets_it_has(family, known):
    with pytest.raises(ConfigError) as info:
        family("irsi")
    assert str(info.value) == f"data.name must be one of {known}. Received: data.name=irsi"


@pytest.mark.parametrize("name", ["digits", "iris", "wine", "breast_cancer", "diabetes"])
def test_sklearn_configs_instantiate(name):
    from hydra.utils import instantiate

    cfg = OmegaConf.create({"seed": 5, "data": OmegaConf.load(CONF_DIR / f"{name}.yaml")})
    ds = instantiate(cfg.data)
    assert isinstance(ds, data.Dataset)
    assert_same(ds, data.sklearn_set(name, seed=5))


@pytest.mark.parametrize(
    "name, how",
    [
        (
            "fashion_mnist",
            "install it with `apt-get install dataset-fashion-mnist`, or give local files in Keras' format with data.path=",
        ),
        ("mnist", "give local files in Keras' format with data.path=... (a local mnist.npz"),
        ("cifar10", "give local files in Keras' format with data.path=... (an extracted cifar-10-batches-py"),
    ],
    ids=["fashion_mnist", "mnist", "cifar10"],
)
def test_a_keras_data_set_that_cannot_be_had_says_how_to_get_it(name, how, make_cfg, runs, tmp_path, monkeypatch):
    import socket
    import time

    import keras.src.backend.config as keras_config  # where keras.utils.get_file caches

    from kerastrack.errors import DataUnavailable
    from kerastrack.pipeline import train

    monkeypatch.setattr(keras_config, "keras_home", lambda: str(tmp_path / "keras-home"))  # nothing cached
    monkeypatch.setattr(datafiles, "DEBIAN_FASHION_MNIST", tmp_path / "not-installed")

    def offline(*args, **kwargs):  # the test must not download 30-170 MB where there is a network
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    start = time.monotonic()
    with pytest.raises(DataUnavailable) as error:
        train(make_cfg(f"data={name}"))
    message = str(error.value)
    assert f"data={name} is not on this machine and cannot be downloaded (" in message and how in message
    assert message.endswith("Received: data.path=null") and "\n" not in message and len(message) < 400
    assert time.monotonic() - start < 30
    assert runs() == []
