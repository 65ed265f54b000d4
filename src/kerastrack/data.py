"""Data sets as train/validation/test NumPy arrays, one public function per set.

Every function returns a `Dataset` whose splits are fixed by `seed`. Features are
float32: tabular sets standardized on the train split, images scaled to [0, 1]
with a channel axis. Classification labels are int64 class ids (not one-hot:
the pipeline encodes them to suit the loss); regression targets are float32.

TensorFlow is imported only inside the Keras downloaders, so the scikit-learn
and CSV sets load in about a second.
"""

from __future__ import annotations

import dataclasses
import gzip
import numbers
import pickle
import socket
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import datasets as skdatasets
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from kerastrack.errors import ConfigError, DataUnavailable

TASKS = ("multiclass", "binary", "regression")

# Where Debian's `dataset-fashion-mnist` package installs the four gzipped IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_FILES = (
    "train-labels-idx1-ubyte",
    "train-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
)
FASHION_MNIST_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
CIFAR10_CLASSES = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
]
MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")

# Sets whose samples are feature vectors, not images (a model that needs images refuses them).
TABULAR_SETS = ("iris", "wine", "breast_cancer", "diabetes", "csv")

# `task="auto"` calls a float CSV target with more distinct values than this regression.
AUTO_MAX_CLASSES = 20


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

    @property
    def num_classes(self) -> int | None:
        """Number of classes; None for regression."""
        return None if self.class_names is None else len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, ...]:
        """Shape of one sample, e.g. (64,) or (28, 28, 1)."""
        return tuple(self.x_train.shape[1:])


# --- scikit-learn's bundled sets (offline) ---------------------------------------


def digits(
    *, seed: int = 42, val_size: float = 0.2, test_size: float = 0.2, limit: int | None = None
) -> Dataset:
    """scikit-learn's 8x8 handwritten digits as images of shape (8, 8, 1) in [0, 1].

    Args:
        seed: fixes the train/validation/test split.
        val_size: share of all samples held out for validation, in (0, 1).
        test_size: share of all samples held out for testing, in (0, 1).
        limit: at most this many samples per split; None keeps all.

    Returns:
        A 10-class `Dataset` with class names "0" to "9".
    """
    _check_args(limit, val_size=val_size, test_size=test_size)
    bunch = skdatasets.load_digits()
    # Pixel counts run from 0 to 16.
    return _build(
        "digits",
        "multiclass",
        bunch.images[..., None],
        bunch.target,
        seed=seed,
        val_size=val_size,
        test_size=test_size,
        limit=limit,
        class_names=[str(c) for c in bunch.target_names],
        pixel_max=16,
    )


def iris(
    *, seed: int = 42, val_size: float = 0.2, test_size: float = 0.2, limit: int | None = None
) -> Dataset:
    """scikit-learn's iris flowers: 150 samples, 4 features, 3 classes.

    Args:
        seed: fixes the train/validation/test split.
        val_size: share of all samples held out for validation, in (0, 1).
        test_size: share of all samples held out for testing, in (0, 1).
        limit: at most this many samples per split; None keeps all.

    Returns:
        A multiclass `Dataset` with standardized features.
    """
    return _sklearn_tabular(
        "iris", skdatasets.load_iris, "multiclass", seed, val_size, test_size, limit
    )


def wine(
    *, seed: int = 42, val_size: float = 0.2, test_size: float = 0.2, limit: int | None = None
) -> Dataset:
    """scikit-learn's wine recognition set: 178 samples, 13 features, 3 classes.

    Args:
        seed: fixes the train/validation/test split.
        val_size: share of all samples held out for validation, in (0, 1).
        test_size: share of all samples held out for testing, in (0, 1).
        limit: at most this many samples per split; None keeps all.

    Returns:
        A multiclass `Dataset` with standardized features.
    """
    return _sklearn_tabular(
        "wine", skdatasets.load_wine, "multiclass", seed, val_size, test_size, limit
    )


def breast_cancer(
    *, seed: int = 42, val_size: float = 0.2, test_size: float = 0.2, limit: int | None = None
) -> Dataset:
    """scikit-learn's Wisconsin breast cancer set: 569 samples, 30 features, 2 classes.

    Args:
        seed: fixes the train/validation/test split.
        val_size: share of all samples held out for validation, in (0, 1).
        test_size: share of all samples held out for testing, in (0, 1).
        limit: at most this many samples per split; None keeps all.

    Returns:
        A binary `Dataset` (0 = malignant, 1 = benign) with standardized features.
    """
    return _sklearn_tabular(
        "breast_cancer", skdatasets.load_breast_cancer, "binary", seed, val_size, test_size, limit
    )


def diabetes(
    *, seed: int = 42, val_size: float = 0.2, test_size: float = 0.2, limit: int | None = None
) -> Dataset:
    """scikit-learn's diabetes progression set: 442 samples, 10 features, regression.

    Args:
        seed: fixes the train/validation/test split.
        val_size: share of all samples held out for validation, in (0, 1).
        test_size: share of all samples held out for testing, in (0, 1).
        limit: at most this many samples per split; None keeps all.

    Returns:
        A regression `Dataset` with standardized features and the raw target
        (a disease progression score, about 25 to 346).
    """
    return _sklearn_tabular(
        "diabetes", skdatasets.load_diabetes, "regression", seed, val_size, test_size, limit
    )


def _sklearn_tabular(name, loader, task, seed, val_size, test_size, limit) -> Dataset:
    _check_args(limit, val_size=val_size, test_size=test_size)
    bunch = loader()
    class_names = None if task == "regression" else [str(c) for c in bunch.target_names]
    return _build(
        name,
        task,
        bunch.data,
        bunch.target,
        seed=seed,
        val_size=val_size,
        test_size=test_size,
        limit=limit,
        class_names=class_names,
    )


# --- Keras' image sets (own test split; validation is carved from train) ---------


def mnist(
    path: str | None = None, *, seed: int = 42, val_size: float = 0.1, limit: int | None = None
) -> Dataset:
    """MNIST handwritten digits: 60,000 + 10,000 images of shape (28, 28, 1) in [0, 1].

    Args:
        path: an .npz in Keras' mnist.npz format (arrays x_train, y_train, x_test,
            y_test); None downloads it with `keras.datasets.mnist.load_data()`.
        seed: fixes the train/validation split.
        val_size: share of the training images held out for validation, in (0, 1).
        limit: at most this many samples per split; None keeps all.

    Returns:
        A 10-class `Dataset` with class names "0" to "9".
    """
    _check_args(limit, val_size=val_size)
    if path is None:
        from keras.datasets import mnist as keras_mnist

        train, test = _download("mnist", keras_mnist.load_data, "a local mnist.npz (arrays x_train, y_train, x_test, y_test)")
    else:
        train, test = _read_mnist_npz(path)
    return _build(
        "mnist",
        "multiclass",
        *train,
        test=test,
        seed=seed,
        val_size=val_size,
        limit=limit,
        class_names=[str(i) for i in range(10)],
        pixel_max=255,
    )


def fashion_mnist(
    path: str | None = None, *, seed: int = 42, val_size: float = 0.1, limit: int | None = None
) -> Dataset:
    """Zalando's Fashion-MNIST: 60,000 + 10,000 clothing images, shape (28, 28, 1).

    Args:
        path: a directory holding train-labels-idx1-ubyte, train-images-idx3-ubyte,
            t10k-labels-idx1-ubyte and t10k-images-idx3-ubyte (each gzipped as
            .gz, or plain). None reads /usr/share/datasets/fashion-mnist (Debian's
            `dataset-fashion-mnist` package) when it exists, else downloads with
            `keras.datasets.fashion_mnist.load_data()`.
        seed: fixes the train/validation split.
        val_size: share of the training images held out for validation, in (0, 1).
        limit: at most this many samples per split; None keeps all.

    Returns:
        A 10-class `Dataset` (T-shirt/top, Trouser, ..., Ankle boot), pixels in [0, 1].
    """
    _check_args(limit, val_size=val_size)
    if path is None and DEBIAN_FASHION_MNIST.is_dir():
        path = DEBIAN_FASHION_MNIST
    if path is None:
        from keras.datasets import fashion_mnist as keras_fashion_mnist

        train, test = _download(
            "fashion_mnist", keras_fashion_mnist.load_data,
            "a directory with " + ", ".join(f + ".gz" for f in FASHION_MNIST_FILES),
            install="apt-get install dataset-fashion-mnist",
        )
    else:
        train, test = _read_fashion_mnist(path)
    return _build(
        "fashion_mnist",
        "multiclass",
        *train,
        test=test,
        seed=seed,
        val_size=val_size,
        limit=limit,
        class_names=list(FASHION_MNIST_CLASSES),
        pixel_max=255,
    )


def cifar10(
    path: str | None = None, *, seed: int = 42, val_size: float = 0.1, limit: int | None = None
) -> Dataset:
    """CIFAR-10: 50,000 + 10,000 colour images of shape (32, 32, 3) in [0, 1].

    Args:
        path: an extracted `cifar-10-batches-py` directory (python pickles
            data_batch_1 to data_batch_5 and test_batch); None downloads it with
            `keras.datasets.cifar10.load_data()`.
        seed: fixes the train/validation split.
        val_size: share of the training images held out for validation, in (0, 1).
        limit: at most this many samples per split; None keeps all.

    Returns:
        A 10-class `Dataset` (airplane, automobile, ..., truck).
    """
    _check_args(limit, val_size=val_size)
    if path is None:
        from keras.datasets import cifar10 as keras_cifar10

        train, test = _download("cifar10", keras_cifar10.load_data, "an extracted cifar-10-batches-py directory")
    else:
        train, test = _read_cifar10(path)
    return _build(
        "cifar10",
        "multiclass",
        *train,
        test=test,
        seed=seed,
        val_size=val_size,
        limit=limit,
        class_names=list(CIFAR10_CLASSES),
        pixel_max=255,
    )


# Seconds one network operation of a download may block. Keras' downloader (urlretrieve)
# sets no timeout and does not retry: on a network that drops packets it would hang.
DOWNLOAD_TIMEOUT = 20


def _download(name, load, local_format, install=None):
    """Calls a keras.datasets loader, which uses its cache or downloads.

    Args:
        name: The data option, for the message.
        load: The loader, e.g. ``keras.datasets.mnist.load_data``.
        local_format: What ``data.path`` may point at instead.
        install: A command that installs the data, if the system has a package.

    Raises:
        DataUnavailable: Not cached and the download failed (no network, a proxy, ...).
    """
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
    try:
        return load()
    except Exception as exc:  # Keras re-raises any download failure as a bare Exception
        if not isinstance(exc, OSError) and "URL fetch failure" not in str(exc):
            raise
        reason = " ".join(str(exc).split()).rsplit(" -- ", 1)[-1][:120]
        how = f"install it with `{install}`, or give" if install else "give"
        raise DataUnavailable(
            f"data={name} is not on this machine and cannot be downloaded ({reason}): {how} "
            f"local files in Keras' format with data.path=... ({local_format}). Received: data.path=null"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)


def _user_path(path) -> Path:
    # Relative to where `python train.py` was started, also under hydra.job.chdir=true.
    from hydra.utils import to_absolute_path

    return Path(to_absolute_path(str(Path(path).expanduser())))


def _existing(path, kind: str, expected: str) -> Path:
    path = _user_path(path)
    if not (path.is_dir() if kind == "directory" else path.is_file()):
        what = f"no such {kind}" if not path.exists() else f"{path.name} is not a {kind}"
        raise ConfigError(f"data.path: {what}. Received: data.path={path}; expected {expected}")
    return path


def _read_mnist_npz(path):
    path = _existing(path, "file", "an .npz with arrays " + ", ".join(MNIST_KEYS))
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in MNIST_KEYS if k not in npz.files]
        if missing:
            raise ConfigError(
                f"data.path: {path} lacks arrays {', '.join(missing)}. "
                f"Received: data.path={path}; arrays: {', '.join(npz.files)}"
            )
        return (npz["x_train"], npz["y_train"]), (npz["x_test"], npz["y_test"])


def _read_fashion_mnist(path):
    """Reads the four IDX files the way keras.datasets.fashion_mnist does."""
    expected = "a directory with " + ", ".join(f + "[.gz]" for f in FASHION_MNIST_FILES)
    path = _existing(path, "directory", expected)
    arrays = []
    for name in FASHION_MNIST_FILES:
        # Debian ships the .gz files; a user may have unpacked them.
        file = next((f for f in (path / (name + ".gz"), path / name) if f.is_file()), None)
        if file is None:
            raise ConfigError(
                f"data.path: no {name}[.gz] in {path}. "
                f"Received: data.path={path}; expected {expected}"
            )
        arrays.append(_read_idx(file))
    y_train, x_train, y_test, x_test = arrays
    return (x_train, y_train), (x_test, y_test)


def _read_idx(file: Path) -> np.ndarray:
    with (gzip.open if file.suffix == ".gz" else open)(file, "rb") as f:
        raw = f.read()
    # Header: big-endian magic 0x0000_08_<ndim> (08 = uint8), then ndim uint32 sizes.
    # For labels (2049) and images (2051) the data starts at byte 8 and 16,
    # the offsets Keras' loader uses.
    magic = int.from_bytes(raw[:4], "big")
    ndim = magic - 0x800
    if not 1 <= ndim <= 3:
        raise ConfigError(
            f"data.path: {file} is not a uint8 IDX file (magic number "
            f"{magic}, expected 2049 or 2051). Received: data.path={file.parent}"
        )
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles NumPy arrays and plain containers only: a pickle can run code."""

    ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
    }

    def find_class(self, module, name):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
        return super().find_class(module, name)


def _read_cifar10(path):
    """Reads the python batches the way keras.datasets.cifar10 does, channels last."""
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    path = _existing(
        path, "directory", "an extracted cifar-10-batches-py directory with " + ", ".join(files)
    )
    batches = []
    for name in files:
        if not (path / name).is_file():
            raise ConfigError(
                f"data.path: no {name} in {path}. Received: data.path={path}; "
                f"expected an extracted cifar-10-batches-py directory"
            )
        with open(path / name, "rb") as f:
            # The official batches were pickled by Python 2, with bytes keys.
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        x = np.asarray(batch[b"data"], np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        batches.append((x, np.asarray(batch[b"labels"])))
    x_train = np.concatenate([x for x, _ in batches[:5]])
    y_train = np.concatenate([y for _, y in batches[:5]])
    return (x_train, y_train), batches[5]


# --- a user's own CSV ---------------------------------------------------------------


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
        raise ConfigError(
            f"data.task must be one of auto, {', '.join(TASKS)}. Received: data.task={task}"
        )
    path = _existing(path, "file", "a CSV file with a header row")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        reason = " ".join(str(exc).split())
        raise ConfigError(f"data.path: {path} is not a readable CSV ({reason}). Received: data.path={path}") from None
    if target not in frame.columns:
        raise ConfigError(
            f"data.target: no column '{target}' in {path}. Received: "
            f"data.target={target}; columns: {', '.join(map(str, frame.columns))}"
        )
    if len(frame.columns) < 2:
        raise ConfigError(
            f"data.path: {path} has no feature columns besides the "
            f"target. Received: data.path={path}"
        )
    gaps = frame.isna()
    if gaps.any(axis=None):
        columns = ", ".join(map(str, frame.columns[gaps.any()]))
        raise ConfigError(
            f"data.path: {int(gaps.any(axis=1).sum())} of {len(frame)} rows "
            f"have missing values (columns: {columns}); fill or drop them "
            f"first. Received: data.path={path}"
        )

    labels = frame.pop(target)
    # read_csv yields numbers, bools and strings; the strings become one-hot columns.
    features = pd.get_dummies(frame, dtype=np.float32)
    # read_csv reads inf as a number; an inf feature makes the scaler fail, an inf target NaN losses.
    columns = {**{c: features[c] for c in features.columns}, target: labels}
    infinite = [str(c) for c, column in columns.items()
                if pd.api.types.is_numeric_dtype(column) and np.isinf(column.to_numpy(np.float64)).any()]
    if infinite:
        raise ConfigError(
            f"data.path: column {', '.join(map(str, infinite))} of {path} holds inf or -inf; "
            f"replace those cells with finite numbers or drop the rows. Received: data.path={path}"
        )

    distinct = labels.nunique()
    if task == "auto":
        if pd.api.types.is_float_dtype(labels) and distinct > AUTO_MAX_CLASSES:
            task = "regression"
        else:
            task = "binary" if distinct == 2 else "multiclass"
    class_names = None
    if task == "regression":
        if not pd.api.types.is_numeric_dtype(labels):
            raise ConfigError(
                f"data.task: regression needs a numeric target; column '{target}' holds "
                f"{labels.dtype}. Received: data.task={task}"
            )
        y = labels.to_numpy(np.float32)
    else:
        if distinct < 2:
            raise ConfigError(
                f"data.target: column '{target}' holds a single class ({labels.iloc[0]}); "
                f"classification needs at least 2. Received: data.target={target}"
            )
        if task == "binary" and distinct != 2:
            raise ConfigError(
                f"data.task: binary needs exactly 2 classes; column '{target}' has "
                f"{distinct}. Received: data.task={task}"
            )
        classes, y = np.unique(labels.to_numpy(), return_inverse=True)
        class_names = [str(c) for c in classes]
    x = features.to_numpy(np.float32)
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
    )


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
    if limit is not None and not (
        isinstance(limit, numbers.Integral) and not isinstance(limit, bool) and limit >= 1
    ):
        raise ConfigError(
            "data.limit must be an integer >= 1, or null for all samples. "
            f"Received: data.limit={limit}"
        )


def _holdout(x, y, size, seed, classify, key, received):
    """Splits off a seeded share `size`, stratified by class for classification."""
    try:
        x_keep, x_out, y_keep, y_out = train_test_split(
            x, y, test_size=size, random_state=seed, stratify=y if classify else None
        )
    except ValueError as e:  # too few samples of some class to stratify
        raise ConfigError(
            f"{key}: cannot split {len(y)} samples keeping every class in "
            f"each split: {e} Received: {key}={received}"
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
    keep = train_test_split(
        np.arange(len(y)), train_size=limit, random_state=seed, stratify=stratify
    )[0]
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
    return Dataset(name, task, xs[0], ys[0], xs[1], ys[1], xs[2], ys[2], class_names=class_names)


def _image(x, pixel_max) -> np.ndarray:
    x = x.astype(np.float32) / np.float32(pixel_max)
    return x[..., None] if x.ndim == 3 else x  # grayscale gets its channel axis
