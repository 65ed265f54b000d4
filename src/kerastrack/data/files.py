"""Where data sets' files come from and how they are read, for kerastrack.data.sets.

This module owns the on-disk formats (Keras' mnist.npz, Fashion-MNIST's IDX files,
CIFAR-10's python pickles, a user's CSV), the Keras download with its timeout, and
every `data.path` error. Readers return raw arrays; splitting and scaling are
kerastrack.data.sets's.
"""

from __future__ import annotations

import gzip
import importlib
import pickle
import socket
from pathlib import Path

import numpy as np
import pandas as pd

from kerastrack.errors import ConfigError, DataUnavailable

# Where Debian's `dataset-fashion-mnist` package installs the four gzipped IDX files.
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

FASHION_MNIST_FILES = (
    "train-labels-idx1-ubyte",
    "train-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
)
MNIST_KEYS = ("x_train", "y_train", "x_test", "y_test")

# `task="auto"` calls a float CSV target with more distinct values than this regression.
AUTO_MAX_CLASSES = 20

# Seconds one network operation of a download may block. Keras' downloader (urlretrieve)
# sets no timeout and does not retry: on a network that drops packets it would hang.
DOWNLOAD_TIMEOUT = 20


def debian_fashion_mnist() -> Path | None:
    """Debian's copy of Fashion-MNIST, when its package is installed; else None."""
    return DEBIAN_FASHION_MNIST if DEBIAN_FASHION_MNIST.is_dir() else None


def download(name, local_format, install=None):
    """Calls ``keras.datasets.<name>.load_data()``, which uses its cache or downloads.

    Args:
        name: The data set, a module of keras.datasets; also named in the message.
        local_format: What ``data.path`` may point at instead.
        install: A command that installs the data, if the system has a package.

    Raises:
        DataUnavailable: Not cached and the download failed (no network, a proxy, ...).
    """
    # Imported here: TensorFlow takes seconds to import and only downloads need it.
    load = importlib.import_module(f"keras.datasets.{name}").load_data
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


def user_path(path) -> Path:
    """A ``data.path`` as an absolute path."""
    # Relative to where `python train.py` was started, also under hydra.job.chdir=true.
    from hydra.utils import to_absolute_path

    return Path(to_absolute_path(str(Path(path).expanduser())))


def _existing(path, kind: str, expected: str) -> Path:
    path = user_path(path)
    if not (path.is_dir() if kind == "directory" else path.is_file()):
        what = f"no such {kind}" if not path.exists() else f"{path.name} is not a {kind}"
        raise ConfigError(f"data.path: {what}. Received: data.path={path}; expected {expected}")
    return path


def read_mnist_npz(path):
    """Reads an .npz in Keras' mnist.npz format: ((x_train, y_train), (x_test, y_test))."""
    path = _existing(path, "file", "an .npz with arrays " + ", ".join(MNIST_KEYS))
    with np.load(path, allow_pickle=False) as npz:
        missing = [k for k in MNIST_KEYS if k not in npz.files]
        if missing:
            raise ConfigError(
                f"data.path: {path} lacks arrays {', '.join(missing)}. "
                f"Received: data.path={path}; arrays: {', '.join(npz.files)}"
            )
        return (npz["x_train"], npz["y_train"]), (npz["x_test"], npz["y_test"])


def read_fashion_mnist(path):
    """Reads the four IDX files the way keras.datasets.fashion_mnist does."""
    expected = "a directory with " + ", ".join(f + "[.gz]" for f in FASHION_MNIST_FILES)
    path = _existing(path, "directory", expected)
    arrays = []
    for name in FASHION_MNIST_FILES:
        # Debian ships the .gz files; a user may have unpacked them.
        file = next((f for f in (path / (name + ".gz"), path / name) if f.is_file()), None)
        if file is None:
            raise ConfigError(f"data.path: no {name}[.gz] in {path}. Received: data.path={path}; expected {expected}")
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


def read_cifar10(path):
    """Reads the python batches the way keras.datasets.cifar10 does, channels last."""
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    path = _existing(path, "directory", "an extracted cifar-10-batches-py directory with " + ", ".join(files))
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


def read_csv_table(path, target: str, task: str):
    """Reads a CSV with a header row into features and labels (see kerastrack.data.sets.csv).

    Returns:
        (path, task, x, y, class_names): the resolved path, the task with "auto"
        decided, float32 features, labels (class ids or float32 targets) and the
        class names (None for regression).
    """
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
    if frame.empty:  # a header alone: nothing to split, nor a class to count
        raise ConfigError(
            f"data.path: {path} has no rows, only its header ({', '.join(map(str, frame.columns))}); "
            f"a CSV needs one row per sample under it. Received: data.path={path}"
        )
    if len(frame.columns) < 2:
        raise ConfigError(f"data.path: {path} has no feature columns besides the target. Received: data.path={path}")
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
    infinite = [
        str(c)
        for c, column in columns.items()
        if pd.api.types.is_numeric_dtype(column) and np.isinf(column.to_numpy(np.float64)).any()
    ]
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
    return path, task, features.to_numpy(np.float32), y, class_names
