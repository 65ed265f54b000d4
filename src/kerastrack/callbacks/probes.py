"""Probes: measurements of the model taken at the end of every epoch, logged with it.

A probe is chosen like a callback (``callbacks=[default,gradient_norms]``), but it only
measures: kerastrack's EpochLogger calls it and logs what it returns at the epoch's step,
so its values line up with the loss curves. Probes that need data get a fixed, seeded
sample of the training set.
"""

import numpy as np
from omegaconf import OmegaConf

from kerastrack.errors import ConfigError
from kerastrack.utils.hydra_job import group_choices


class Probe:
    """Base class: ``measure`` returns {metric name: value} for the epoch that just ended."""

    def start(self, model):
        """Called when training begins: reset state, take a reference."""

    def measure(self, model, x, y):
        raise NotImplementedError

    def figures(self, epochs):
        """{file name: matplotlib Figure} of the whole run, logged under ``plots/`` when
        training ends; ``epochs``: one dict of logged values per epoch."""
        return {}


def _kernels(model):
    """(layer name, kernel variable) for every layer with a kernel (Dense, Conv...)."""
    return [(layer.name, layer.kernel) for layer in model.layers if getattr(layer, "kernel", None) is not None]


class GradientNorms(Probe):
    """L2 norm of the loss gradient for each layer's kernel, on a fixed training sample.

    Vanishing gradients show as norms that shrink layer by layer towards the input.
    Logged as ``grad_norm/<layer>``.
    """

    def measure(self, model, x, y):
        import keras
        import tensorflow as tf

        names, kernels = zip(*_kernels(model))
        loss_fn = keras.losses.get(model.loss)  # the compiled loss, also when given by name
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=False))
        grads = tape.gradient(loss, list(kernels))
        return {f"grad_norm/{n}": float(tf.norm(g)) for n, g in zip(names, grads) if g is not None}


class WeightStats(Probe):
    """Share of near-zero weights and the weights' L1/L2 norms, over all kernels.

    L1 penalties drive many weights to (near) zero; L2 shrinks all of them evenly.
    Logged as ``near_zero_share``, ``weight_l1``, ``weight_l2``.

    Args:
        threshold: |w| below this counts as near zero.
    """

    def __init__(self, threshold=1e-3):
        self.threshold = threshold

    def measure(self, model, x, y):
        weights = np.concatenate([np.ravel(k.numpy()) for _, k in _kernels(model)])
        return {
            "near_zero_share": float(np.mean(np.abs(weights) < self.threshold)),
            "weight_l1": float(np.abs(weights).sum()),
            "weight_l2": float(np.sqrt((weights**2).sum())),
        }


class UpdateSize(Probe):
    """How far the weights moved during the epoch, per optimizer step.

    ``update_per_step`` = ||W_end - W_start|| / steps, the effective step actually taken
    (for AdaGrad it shrinks as its squared-gradient sum grows; RMSprop's does not).
    """

    def start(self, model):
        self._previous = self._state(model)

    def measure(self, model, x, y):
        (before, steps_before), (after, steps) = self._previous, self._state(model)
        self._previous = (after, steps)
        if steps == steps_before:
            return {}
        return {"update_per_step": float(np.linalg.norm(after - before) / (steps - steps_before))}

    @staticmethod
    def _state(model):
        weights = np.concatenate([np.ravel(k.numpy()) for _, k in _kernels(model)])
        return weights, int(model.optimizer.iterations.numpy())


class Parameters(Probe):
    """The model's trainable weights themselves, flattened in order, one metric per weight:
    for models of a few weights (the optimizer lab's problems), their position.

    Args:
        names: One metric name per weight, e.g. ``["x"]``.
    """

    def __init__(self, names=("x",)):
        self.names = list(names)

    def start(self, model):
        count = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        if count != len(self.names):
            raise ConfigError(
                f"callbacks.parameters.names must name each of the model's {count} trainable weights. "
                f"Received: callbacks.parameters.names={self.names}"
            )

    def measure(self, model, x, y):
        values = np.concatenate([np.ravel(w.numpy()) for w in model.trainable_weights])
        return {name: float(v) for name, v in zip(self.names, values)}


class Trajectory(Parameters):
    """The position on a 2-D surface (``model=point``, ``loss=rosenbrock`` ...), logged as
    ``x`` and ``y`` every epoch like ``Parameters``; at the end of training, its path over
    the surface's contours (``figures``), which the run logs as ``plots/trajectory.png``.

    Args:
        names: The two metric names, e.g. ``["x", "y"]``.
    """

    def __init__(self, names=("x", "y")):
        super().__init__(names)
        self.model = self.surface = self.origin = None

    def start(self, model):
        super().start(model)
        self.model = model
        self.surface = model.loss if hasattr(getattr(model, "loss", None), "value") else None
        # The model's own start (model=point), also when a resumed run restarts the probe mid-way.
        self.origin = next((list(layer.start) for layer in model.layers if hasattr(layer, "start")), None)
        if self.origin is None:
            self.origin = [float(v) for v in np.concatenate([np.ravel(w.numpy()) for w in model.trainable_weights])]

    def figures(self, epochs):
        """{file name: Figure} to log once training ends; none without a surface to draw."""
        from kerastrack.figures.trajectories import Walk, trajectory_figure  # matplotlib: only when drawn

        if self.surface is None or not epochs:
            return {}
        xs = [self.origin[0], *(e.get(self.names[0], np.nan) for e in epochs)]
        ys = [self.origin[1], *(e.get(self.names[1], np.nan) for e in epochs)]
        final = epochs[-1].get("val_loss", np.nan)  # the value at the last position
        optimizer = self.model.optimizer
        choices = group_choices(OmegaConf.create())  # gd, momentum: not all "SGD"; saddle: not "polynomial"
        name = choices.get("optimizer", optimizer.name)
        title = (
            f"{choices.get('loss', self.surface.name)}, {name} at rate {epochs[0].get('learning_rate', np.nan):g}: "
            f"{int(optimizer.iterations.numpy()):,} steps,\nf = {final:.4g} at ({xs[-1]:.3g}, {ys[-1]:.3g})"
        )
        return {"trajectory.png": trajectory_figure(self.surface, Walk(name, xs, ys, final), self.origin, title)}
