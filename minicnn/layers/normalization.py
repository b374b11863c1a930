"""BatchNormalization. The math is ops.batchnorm_moments / batchnorm_forward / batchnorm_backward
(readable in ops/reference.py); this file holds the parameters, the moving averages and the rule
of which statistics a call uses.
"""

import math

import numpy as np

from .. import arguments, initializers, ops
from .base import Layer


class BatchNormalization(Layer):
    """Normalise each feature (channel) with the batch's statistics in training and with moving
    averages of them in inference, then scale by gamma and shift by beta (Keras 3's layer).

    x: (N, ..., C) -> y like x, ``y = gamma * (x - mean) / sqrt(variance + epsilon) + beta``
    per index of `axis` (default -1, the channels of NHWC images or the features of Dense).

    - Training (fit, or ``layer(x, training=True)``): mean and (biased) variance over every
      other axis of the WHOLE batch, also when the batch is split over threads (the shards add
      their sums with ctx.allreduce); each step also updates, once,
      ``moving = moving * momentum + batch_statistic * (1 - momentum)``.
    - Inference (evaluate, predict): the moving mean and variance.
    - ``trainable = False`` freezes gamma and beta AND runs the layer in inference mode, even
      inside fit, as Keras 3 does (fine-tuning a pretrained network keeps its statistics).

    Weights, in Keras's order: gamma (scale=True), beta (center=True), moving_mean,
    moving_variance, each of shape (C,); the moving ones are not trainable.
    """

    non_trainable_names = frozenset({"moving_mean", "moving_variance"})

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True,
                 beta_initializer="zeros", gamma_initializer="ones",
                 moving_mean_initializer="zeros", moving_variance_initializer="ones", **kwargs):
        super().__init__(**kwargs)
        where = self.where
        self.axis = arguments.integer(axis, "axis", where)
        self.momentum = arguments.real(momentum, "momentum", where, minimum=0, maximum=1)
        self.epsilon = arguments.real(epsilon, "epsilon", where, minimum=0, min_open=True)
        self.center = arguments.boolean(center, "center", where)
        self.scale = arguments.boolean(scale, "scale", where)
        self.initializers = {
            name: initializers.get(value, f"{where}: {name}_initializer")
            for name, value in (("gamma", gamma_initializer), ("beta", beta_initializer),
                                ("moving_mean", moving_mean_initializer),
                                ("moving_variance", moving_variance_initializer))}
        self._axis = None  # the axis as a positive index, fixed at build

    # -- shapes and parameters -------------------------------------------------------------
    def _validate_input_shape(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(
                f"{self.where}: axis {self.axis} does not name a feature axis of inputs of "
                f"shape {input_shape} (axis 0 is the batch); use axis=-1 for the channels.")

    def build(self, input_shape):
        super().build(input_shape)
        self._axis = self.axis % len(self.input_shape)

    def weight_shapes(self, input_shape):
        features = (input_shape[self.axis],)
        names = ([*(["gamma"] if self.scale else []), *(["beta"] if self.center else []),
                  "moving_mean", "moving_variance"])
        return {name: features for name in names}

    def initializer_for(self, name):
        return self.initializers[name]

    def compute_output_shape(self, input_shape):
        return input_shape

    # -- computation -----------------------------------------------------------------------
    def _to_last(self, x):
        """x with the normalised axis last (a contiguous copy unless it already is)."""
        if self._axis == x.ndim - 1:
            return x
        return np.ascontiguousarray(np.moveaxis(x, self._axis, -1))

    def _from_last(self, y):
        if self._axis == y.ndim - 1:
            return y
        return np.ascontiguousarray(np.moveaxis(y, -1, self._axis))

    def forward(self, x, ctx):
        # A frozen layer runs in inference mode even in training (Keras 3's rule).
        training = ctx.training and self.trainable
        x = self._to_last(x)
        params = self.params
        if training:
            mean, variance = ops.active.batchnorm_moments(x, ctx.allreduce)
            if ctx.shard_index == 0:  # once per step, by one shard: all have the same values
                self._update_moving_averages(mean, variance)
        else:
            # Copies: the cache must not change if the layer trains meanwhile elsewhere.
            mean = params["moving_mean"].copy()
            variance = params["moving_variance"].copy()
        y, cache = ops.active.batchnorm_forward(x, mean, variance, params.get("gamma"),
                                                params.get("beta"), self.epsilon,
                                                ws=ctx.workspace("batchnorm"))
        ctx.save(cache, training)
        return self._from_last(y)

    def _update_moving_averages(self, mean, variance):
        t = self.dtype.type
        momentum, rest = t(self.momentum), t(1.0 - self.momentum)
        for name, batch_value in (("moving_mean", mean), ("moving_variance", variance)):
            moving = self.params[name]
            moving[...] = moving * momentum + batch_value * rest  # in place: same arrays

    def backward(self, dy, ctx):
        cache, training = ctx.saved
        dx, dgamma, dbeta = ops.active.batchnorm_backward(self._to_last(dy), cache, training,
                                                          ctx.allreduce,
                                                          need_dx=ctx.need_input_grad)
        if ctx.need_param_grads:
            if self.scale:
                ctx.grads["gamma"] = dgamma
            if self.center:
                ctx.grads["beta"] = dbeta
        return None if dx is None else self._from_last(dx)

    def flops(self):
        return 2 * math.prod(self.input_shape[1:])  # one multiply-add per element

    def get_config(self):
        config = {
            "axis": self.axis,
            "momentum": self.momentum,
            "epsilon": self.epsilon,
            "center": self.center,
            "scale": self.scale,
            **{f"{name}_initializer": initializers.serialize(self.initializers[name])
               for name in ("beta", "gamma", "moving_mean", "moving_variance")},
        }
        return {**config, **super().get_config()}
