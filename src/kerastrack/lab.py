"""The optimizer lab's problems as data sets: small constructions from the papers whose
claims about optimizers show on them (the settings: experiments/ and conf/experiment/).

Each is an ordinary ``Dataset``, so it trains, is tracked and is compared like any other.
"""

import numpy as np

from kerastrack.data import Dataset
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
        raise ConfigError(f"data.steps_per_epoch must be a multiple of data.period ({period}), so that every epoch "
                          f"ends at the same point of the cycle. Received: data.steps_per_epoch={steps_per_epoch}")

    def steps(n):
        t = np.arange(1, n + 1)
        gradients = np.where(t % period == 1, big, small).astype(np.float32)
        return np.ones((n, 1), np.float32), gradients

    x_train, y_train = steps(steps_per_epoch)
    x_period, y_period = steps(period)
    return Dataset("reddi_online", "regression", x_train, y_train, x_period, y_period, x_period, y_period,
                   source="kerastrack.lab.reddi_online")
