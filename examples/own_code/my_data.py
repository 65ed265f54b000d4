"""A data set of your own: a function that returns kerastrack's ``Dataset`` (train,
validation and test arrays, the task, the class names). conf/data/moons.yaml names it with
``_target_: my_data.moons``; ``seed: ${seed}`` makes the splits follow the run's seed."""

import numpy as np
from sklearn.datasets import make_moons
from sklearn.model_selection import train_test_split

from kerastrack.data.sets import Dataset


def moons(n=600, noise=0.2, seed=0):
    """Two interleaved half circles, two classes: a problem a linear model cannot solve.

    Args:
        n: Samples in all (60% train, 20% validation, 20% test).
        noise: Standard deviation of the Gaussian noise added to the points.
        seed: Fixes the points and the splits.
    """
    x, y = make_moons(n_samples=n, noise=noise, random_state=seed)
    x, y = x.astype(np.float32), y.astype(np.int64)
    x_train, x_rest, y_train, y_rest = train_test_split(x, y, test_size=0.4, random_state=seed, stratify=y)
    x_val, x_test, y_val, y_test = train_test_split(x_rest, y_rest, test_size=0.5, random_state=seed, stratify=y_rest)
    splits = dict(x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val, x_test=x_test, y_test=y_test)
    return Dataset(name="moons", task="multiclass", **splits, class_names=["upper", "lower"], source="my_data.moons")
