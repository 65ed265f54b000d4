"""The optimizer lab's problems as data sets: small constructions from the papers whose
claims about optimizers show on them (the settings: experiments/ and conf/experiment/).

Each is an ordinary ``Dataset``, so it trains, is tracked and is compared like any other.
"""

import numpy as np

from kerastrack.data.sets import Dataset
from kerastrack.errors import ConfigError


def reddi_online(steps_per_epoch=1010, period=101, big=1010.0, small=-10.0) -> Dataset:
    """Reddi, Kale and Kumar's online problem (ICLR 2018, section 3), on which Adam fails.

    Step t (from 1) has the loss ``f_t(x) = c_t * x`` with ``c_t = big`` when
    ``t mod period = 1`` and ``small`` otherwise, for x in [-1, 1]. With the defaults each
    period's gradients sum to +10, so the optimum is x = -1; Adam's second moment forgets
    the rare large gradient and it drifts to +1, AMSGrad's running maximum does not.

    As a data set: every sample's input is 1 and its target is ``c_t``, so a linear model
    without bias (``model=linear model.use_bias=false model.kernel_initializer=zeros
    model.max_norm=1``) with ``loss=online_linear`` has x as its one weight, projected onto
    [-1, 1] after every step. Train on it in order, one sample a step
    (``trainer.batch_size=1 trainer.shuffle=false``). Validation and test are one period:
    their mean loss, ``(big + (period - 1) * small) / period * x``, is the average regret's
    slope times x, least at x = -1.

    Args:
        steps_per_epoch: Steps (samples) per epoch: a multiple of ``period``, so that
            every epoch ends at the same point of the cycle.
        period: Steps between two large gradients.
        big: The gradient of the first step of each period.
        small: The gradient of every other step.
    """
    if not (isinstance(period, int) and period >= 2):
        raise ConfigError(f"data.period must be an integer >= 2. Received: data.period={period}")
    if not (isinstance(steps_per_epoch, int) and steps_per_epoch >= period and steps_per_epoch % period == 0):
        raise ConfigError(
            f"data.steps_per_epoch must be a multiple of data.period ({period}), so that every epoch "
            f"ends at the same point of the cycle. Received: data.steps_per_epoch={steps_per_epoch}"
        )

    def steps(n):
        t = np.arange(1, n + 1)
        gradients = np.where(t % period == 1, big, small).astype(np.float32)
        return np.ones((n, 1), np.float32), gradients

    x_train, y_train = steps(steps_per_epoch)
    x_period, y_period = steps(period)
    return Dataset(
        "reddi_online",
        "regression",
        x_train,
        y_train,
        x_period,
        y_period,
        x_period,
        y_period,
        source="kerastrack.data.lab.reddi_online",
    )


def wilson_separable(n=100, p=0.6, n_val=200, n_test=200, seed=42) -> Dataset:
    """Wilson, Roelofs, Stern, Srebro and Recht's linearly separable construction (NeurIPS
    2017, section 3.3), on which adaptive methods generalize badly.

    Labels y are -1 or +1, +1 with probability ``p``. Each point's feature 1 is its label,
    features 2 and 3 are 1, and it has unique features of its own (5 a point): one of them
    is 1 when y = +1, all five when y = -1; every other feature is 0. Validation and test
    points are drawn the same way, with unique features unseen in training (their weights
    stay at 0). With a linear model without bias starting at 0 and the squared loss
    (``loss=least_squares``), gradient methods reach the minimum-norm solution, which
    classifies every new point right; AdaGrad, RMSprop and Adam reach one proportional to
    sign(X^T y), which calls every new point +1: test error 1 - p.

    Args:
        n: Training points (the features are 3 + 5 * (n + n_val + n_test)).
        p: The share of +1 labels, in (0.5, 1).
        n_val: Validation points.
        n_test: Test points.
        seed: Draws the labels.
    """
    if not (isinstance(n, int) and n >= 1):
        raise ConfigError(f"data.n must be an integer >= 1. Received: data.n={n}")
    if not 0.5 < p < 1:
        raise ConfigError(
            f"data.p must be a number in (0.5, 1): more positive than negative labels. Received: data.p={p}"
        )
    rng = np.random.default_rng(seed)
    total = n + n_val + n_test
    y = np.where(rng.random(total) < p, 1, -1)
    x = np.zeros((total, 3 + 5 * total), np.float32)
    x[:, 0] = y
    x[:, 1:3] = 1
    for i, label in enumerate(y):
        x[i, 3 + 5 * i : 3 + 5 * i + (1 if label == 1 else 5)] = 1
    classes = (y == 1).astype(np.int64)  # class ids: 0 is -1, 1 is +1
    split = [slice(0, n), slice(n, n + n_val), slice(n + n_val, total)]
    xs, ys = [x[s] for s in split], [classes[s] for s in split]
    return Dataset(
        "wilson_separable",
        "binary",
        xs[0],
        ys[0],
        xs[1],
        ys[1],
        xs[2],
        ys[2],
        class_names=["-1", "+1"],
        source="kerastrack.data.lab.wilson_separable",
    )


def surface_steps(steps_per_epoch=10) -> Dataset:
    """The pace of a walk on a 2-D surface (``loss=rosenbrock``, ``saddle``, ...): every
    sample is the same input, 1, so with ``model=point`` (the position is the model's one
    weight) and ``trainer.batch_size=1`` each sample is one full gradient step on the
    surface and an epoch is ``steps_per_epoch`` of them. The targets (0) are unused: the
    surface alone scores a position. Validation and test are one sample: their loss is the
    surface's value where the epoch ended.

    Args:
        steps_per_epoch: Optimizer steps per epoch (>= 1).
    """
    if not (isinstance(steps_per_epoch, int) and not isinstance(steps_per_epoch, bool) and steps_per_epoch >= 1):
        raise ConfigError(
            f"data.steps_per_epoch must be an integer >= 1: the optimizer steps per epoch. "
            f"Received: data.steps_per_epoch={steps_per_epoch}"
        )
    ones, zeros = np.ones((steps_per_epoch, 1), np.float32), np.zeros(steps_per_epoch, np.float32)
    return Dataset(
        "surface_steps",
        "regression",
        ones,
        zeros,
        ones[:1],
        zeros[:1],
        ones[:1],
        zeros[:1],
        source="kerastrack.data.lab.surface_steps",
    )
