"""Data sets as train/validation/test NumPy arrays, from tables of named sets.

This module owns `Dataset`, the tables of sets, one function per family of sets
(`sklearn_set`, `keras_images`, `csv`) and the split, limit and scaling they share;
kerastrack.data.files reads the files. A YAML in conf/data/ names its family and its
set, e.g. `_target_: kerastrack.data.sets.sklearn_set` with `name: iris`.

Every function returns a `Dataset` whose splits are fixed by `seed`. Features are
float32: tabular sets standardized on the train split, images scaled to [0, 1]
with a channel axis. Classification labels are int64 class ids (not one-hot:
the pipeline encodes them to suit the loss); regression targets are float32.

TensorFlow is imported only inside the Keras downloader, so the scikit-learn
and CSV sets load in about a second.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn import datasets as skdatasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from kerastrack.data import files as datafiles
from kerastrack.errors import ConfigError

TASKS = ("multiclass", "binary", "regression")

# scikit-learn's bundled sets (offline). name: (loader, task, pixel_max); pixel_max marks
# the one image-shaped set, digits, whose pixel counts run from 0 to 16.
SKLEARN_SETS = {
    "digits": (skdatasets.load_digits, "multiclass", 16),
    "iris": (skdatasets.load_iris, "multiclass", None),
    "wine": (skdatasets.load_wine, "multiclass", None),
    "breast_cancer": (skdatasets.load_breast_cancer, "binary", None),
    "diabetes": (skdatasets.load_diabetes, "regression", None),
}


@dataclasses.dataclass(frozen=True)
class _ImageSet:
    """How one of Keras' image sets is read from data.path, or else had."""

    read: Callable  # data.path in the set's own format -> (x_train, y_train), (x_test, y_test)
    local_format: str  # what data.path may point at, for the message when a download fails
    class_names: tuple[str, ...]
    installed: Callable[[], Path | None] = lambda: None  # a system package's copy, if any
    install: str | None = None  # the command that installs that package


KERAS_IMAGE_SETS = {
    "mnist": _ImageSet(
        datafiles.read_mnist_npz,
        "a local mnist.npz (arrays x_train, y_train, x_test, y_test)",
        tuple(str(i) for i in range(10)),
    ),
    "fashion_mnist": _ImageSet(
        datafiles.read_fashion_mnist,
        "a directory with " + ", ".join(f + ".gz" for f in datafiles.FASHION_MNIST_FILES),
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        installed=datafiles.debian_fashion_mnist,
        install="apt-get install dataset-fashion-mnist",
    ),
    "cifar10": _ImageSet(
        datafiles.read_cifar10,
        "an extracted cifar-10-batches-py directory",
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
    ),
}

# Sets whose samples are feature vectors, not images (a model that needs images refuses them).
TABULAR_SETS = (*(n for n, (_, _, pixel_max) in SKLEARN_SETS.items() if pixel_max is None), "csv")


@dataclasses.dataclass
class Dataset:
    """Train/validation/test splits of one data set, ready for a Keras model."""

    name: str
    task: str  # "multiclass" | "binary" | "regression"
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] | None = None  # classification only, index = label id
    # Where the data came from, as the run records it: an absolute file path, or the
    # function that loads it (e.g. sklearn.datasets.load_digits); None: not known.
    source: str | None = None

    @property
    def num_classes(self) -> int | None:
        """Number of classes; None for regression."""
        return None if self.class_names is None else len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (64,) or (28, 28, 1)."""
        return tuple(self.x_train.shape[1:])


def sklearn_set(
    name: str, *, seed: int = 42, val_size: float = 0.2, test_size: float = 0.2, limit: int | None = None
) -> Dataset:
    """One of scikit-learn's bundled sets, offline.

    digits (1,797 8x8 images, 10 classes) comes as images of shape (8, 8, 1) in
    [0, 1]; iris (150 samples, 4 features, 3 classes), wine (178, 13, 3 classes),
    breast_cancer (569, 30, binary: 0 = malignant, 1 = benign) and diabetes (442,
    10, regression on a progression score of about 25 to 346) come as standardized
    feature vectors.

    Args:
        name: the set, a key of `SKLEARN_SETS`: digits, iris, wine, breast_cancer
            or diabetes.
        seed: fixes the train/validation/test split.
        val_size: share of all samples held out for validation, in (0, 1).
        test_size: share of all samples held out for testing, in (0, 1).
        limit: at most this many samples per split; None keeps all.

    Returns:
        A `Dataset` named `name`, with scikit-learn's target names as class names.
    """
    _check_args(limit, val_size=val_size, test_size=test_size)
    loader, task, pixel_max = _entry(SKLEARN_SETS, name)
    bunch = loader()
    return _build(
        name,
        task,
        bunch.data if pixel_max is None else bunch.images[..., None],
        bunch.target,
        seed=seed,
        val_size=val_size,
        test_size=test_size,
        limit=limit,
        class_names=None if task == "regression" else [str(c) for c in bunch.target_names],
        pixel_max=pixel_max,
        source=f"sklearn.datasets.{loader.__name__}",
    )


def keras_images(
    name: str, path: str | None = None, *, seed: int = 42, val_size: float = 0.1, limit: int | None = None
) -> Dataset:
    """One of Keras' image sets, 10 classes, pixels scaled to [0, 1] with a channel axis.

    mnist: 60,000 + 10,000 handwritten digits, (28, 28, 1). fashion_mnist: Zalando's
    60,000 + 10,000 clothing images, (28, 28, 1). cifar10: 50,000 + 10,000 colour
    images, (32, 32, 3). The set's own test split is kept; validation is carved from
    the training images.

    Args:
        name: the set, a key of `KERAS_IMAGE_SETS`: mnist, fashion_mnist or cifar10.
        path: local files in Keras' format. mnist: an .npz like Keras' mnist.npz
            (arrays x_train, y_train, x_test, y_test). fashion_mnist: a directory
            holding train-labels-idx1-ubyte, train-images-idx3-ubyte,
            t10k-labels-idx1-ubyte and t10k-images-idx3-ubyte (each gzipped as .gz,
            or plain). cifar10: an extracted `cifar-10-batches-py` directory (python
            pickles data_batch_1 to data_batch_5 and test_batch). None reads a system
            package's copy if installed (fashion_mnist: Debian's
            `dataset-fashion-mnist`, /usr/share/datasets/fashion-mnist), else
            downloads with `keras.datasets.<name>.load_data()`.
        seed: fixes the train/validation split.
        val_size: share of the training images held out for validation, in (0, 1).
        limit: at most this many samples per split; None keeps all.

    Returns:
        A multiclass `Dataset` named `name`, e.g. class names "0" to "9" for mnist.
    """
    _check_args(limit, val_size=val_size)
    image_set = _entry(KERAS_IMAGE_SETS, name)
    if path is None:
        path = image_set.installed()
    if path is None:
        train, test = datafiles.download(name, image_set.local_format, image_set.install)
        source = f"keras.datasets.{name}.load_data"  # Keras' own cache, wherever Keras keeps it
    else:
        train, test = image_set.read(path)
        source = str(datafiles.user_path(path))
    return _build(
        name,
        "multiclass",
        *train,
        test=test,
        seed=seed,
        val_size=val_size,
        limit=limit,
        class_names=list(image_set.class_names),
        pixel_max=255,
        source=source,
    )


def csv(
    path: str,
    target: str,
    task: str = "auto",
    *,
    seed: int = 42,
    val_size: float = 0.2,
    test_size: float = 0.2,
    limit: int | None = None,
) -> Dataset:
    """A CSV file with a header row: one target column, every other column a feature.

    Non-numeric feature columns are one-hot encoded and all features standardized
    on the train split. Class labels of any type become ids 0..C-1 in sorted order.
    Rows with missing values are an error: fill or drop them first.

    Args:
        path: the CSV file.
        target: name of the column to predict.
        task: "multiclass", "binary", "regression" or "auto": regression when the
            target is float with more than 20 distinct values, else binary for two
            classes and multiclass otherwise.
        seed: fixes the train/validation/test split.
        val_size: share of all rows held out for validation, in (0, 1).
        test_size: share of all rows held out for testing, in (0, 1).
        limit: at most this many rows per split; None keeps all.

    Returns:
        A `Dataset` named after the file.
    """
    _check_args(limit, val_size=val_size, test_size=test_size)
    if task not in ("auto", *TASKS):
        raise ConfigError(f"data.task must be one of auto, {', '.join(TASKS)}. Received: data.task={task}")
    path, task, x, y, class_names = datafiles.read_csv_table(path, target, task)
    return _build(
        path.stem,
        task,
        x,
        y,
        seed=seed,
        val_size=val_size,
        test_size=test_size,
        limit=limit,
        class_names=class_names,
        source=str(path),
    )


def _entry(table, name):
    """The table's row for the set `name`, or a ConfigError naming the sets there are."""
    if not isinstance(name, str) or name not in table:
        raise ConfigError(f"data.name must be one of {', '.join(table)}. Received: data.name={name}")
    return table[name]


# --- shared split, limit and scaling ------------------------------------------------


def _check_args(limit, **sizes) -> None:
    """Rejects bad split settings (val_size, test_size, limit) before any file is read."""
    for key, value in sizes.items():
        # bool is a number to Python but never a meaningful share or count.
        if not (isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < value < 1):
            raise ConfigError(f"data.{key} must be a share in (0, 1). Received: data.{key}={value}")
    if sum(sizes.values()) >= 1:
        raise ConfigError(
            "data.val_size + data.test_size must be < 1 to leave training data. "
            f"Received: data.val_size={sizes['val_size']}, data.test_size={sizes['test_size']}"
        )
    if limit is not None and not (isinstance(limit, numbers.Integral) and not isinstance(limit, bool) and limit >= 1):
        raise ConfigError(f"data.limit must be an integer >= 1, or null for all samples. Received: data.limit={limit}")


def _holdout(x, y, size, seed, classify, key, received):
    """Splits off a seeded share `size`, stratified by class for classification."""
    try:
        x_keep, x_out, y_keep, y_out = train_test_split(
            x, y, test_size=size, random_state=seed, stratify=y if classify else None
        )
    except ValueError as e:  # too few samples of some class to stratify
        raise ConfigError(
            f"{key}: cannot split {len(y)} samples keeping every class in each split: {e} Received: {key}={received}"
        ) from e
    return (x_keep, y_keep), (x_out, y_out)


def _subset(x, y, limit, seed, classify):
    """A seeded subset of at most `limit` samples, stratified when every class fits."""
    if limit is None or len(y) <= limit:
        return x, y
    stratify = None
    if classify:
        counts = np.unique(y, return_counts=True)[1]
        if min(limit, len(y) - limit) >= len(counts) and counts.min() >= 2:
            stratify = y
    keep = train_test_split(np.arange(len(y)), train_size=limit, random_state=seed, stratify=stratify)[0]
    return x[keep], y[keep]


def _build(
    name,
    task,
    x,
    y,
    *,
    seed,
    val_size,
    limit,
    class_names=None,
    test=None,
    test_size=None,
    pixel_max=None,
    source=None,
) -> Dataset:
    """Splits, limits and scales one data set.

    `test` is a set's own (x, y) test split; without one, `test_size` of the data
    is held out. `pixel_max` marks images (divided by it); else features are
    standardized with statistics of the train split only.
    """
    classify = task != "regression"
    y = np.asarray(y).reshape(-1)  # Keras' CIFAR-10 labels come as (n, 1)
    val_share = val_size
    if test is None:
        (x, y), test = _holdout(x, y, test_size, seed, classify, "data.test_size", test_size)
        # val_size is a share of all the data, so a larger share of what is left.
        val_share = val_size / (1 - test_size)
    train, val = _holdout(x, y, val_share, seed, classify, "data.val_size", val_size)
    test = (test[0], np.asarray(test[1]).reshape(-1))
    # Limit before converting to float: full CIFAR-10 in float32 is 600 MB.
    splits = [_subset(xs, ys, limit, seed, classify) for xs, ys in (train, val, test)]
    if pixel_max is None:
        scaler = StandardScaler().fit(splits[0][0])
        xs = [scaler.transform(x).astype(np.float32) for x, _ in splits]
    else:
        xs = [_image(x, pixel_max) for x, _ in splits]
    ys = [y.astype(np.int64 if classify else np.float32) for _, y in splits]
    return Dataset(name, task, xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], class_names=class_names, source=source)


def _image(x, pixel_max) -> np.ndarray:
    x = x.astype(np.float32) / np.float32(pixel_max)
    return x[..., None] if x.ndim == 3 else x  # grayscale gets its channel axis
