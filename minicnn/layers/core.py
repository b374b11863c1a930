"""Dense, Flatten and the activation layers (Activation, ReLU, LeakyReLU, Softmax)."""

import math
import warnings

import numpy as np

from .. import activations, arguments, ops
from .base import ActivatedLayer, Layer


class Dense(ActivatedLayer):
    """Fully connected layer on the last axis: y = activation(x @ kernel + bias).

    x: (N, ..., in) -> y: (N, ..., units). kernel: (in, units), bias: (units,), as Keras.
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None,
                 **kwargs):
        super().__init__(activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, **kwargs)
        self.units = arguments.integer(units, "units", self.where, minimum=1)

    def weight_shapes(self, input_shape):
        self._validate_input_shape(input_shape)  # as build: a file is checked against these
        shapes = {"kernel": (input_shape[-1], self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def forward(self, x, ctx):
        # z = x @ kernel; y = activation(z + bias)
        z, dense_cache = ops.active.dense_forward(x, self.params["kernel"])
        y, act_cache = ops.active.bias_activation_forward(
            z, self.params.get("bias"), self.activation, ws=ctx.workspace("bias_activation"))
        ctx.save(dense_cache, act_cache)
        return y

    def _affine_backward(self, dz, ctx):
        dense_cache, _ = ctx.saved
        return ops.active.dense_backward(dz, dense_cache, need_dx=ctx.need_input_grad)

    def flops(self):
        positions = math.prod(self.input_shape[1:-1])
        return 2 * positions * self.input_shape[-1] * self.units

    def get_config(self):
        return {"units": self.units, **super().get_config()}


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), in channels-last (C) order, as Keras.

    The order matters: Keras Dense weights after a Flatten only fit this order.
    """

    def compute_output_shape(self, input_shape):
        return (input_shape[0], math.prod(input_shape[1:]))

    def forward(self, x, ctx):
        ctx.save(x.shape)
        return x.reshape(x.shape[0], -1)

    def backward(self, dy, ctx):
        (x_shape,) = ctx.saved
        return dy.reshape(x_shape)


class Activation(Layer):
    """Applies an activation by name: Activation('relu'), Activation('softmax'), ..."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation, f"{self.where}: activation")

    @property
    def output_activation(self):
        return self.activation

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, ctx):
        y, cache = ops.active.activation_forward(x, self.activation, ws=ctx.workspace("activation"))
        ctx.save(cache)
        return y

    def backward(self, dy, ctx):
        (cache,) = ctx.saved
        return ops.active.activation_backward(dy, cache)

    def output_logits(self, ctx):
        return ops.active.activation_input(ctx.saved[0])

    def backward_from_logits(self, dz, ctx):
        return dz  # nothing before the activation in this layer

    def get_config(self):
        return {"activation": self.activation, **super().get_config()}


class ReLU(Layer):
    """Keras's ReLU layer: ``y = min(x, max_value)`` where ``x > threshold``,
    ``negative_slope * (x - threshold)`` elsewhere. The defaults give max(x, 0).

    max_value: None (no cap) or a number >= 0; negative_slope, threshold: numbers >= 0.
    The math is ops.relu_general_forward/backward.
    """

    def __init__(self, max_value=None, negative_slope=0.0, threshold=0.0, **kwargs):
        super().__init__(**kwargs)
        self.max_value = (None if max_value is None else
                          arguments.real(max_value, "max_value", self.where, minimum=0))
        self.negative_slope = arguments.real(negative_slope, "negative_slope", self.where,
                                             minimum=0)
        self.threshold = arguments.real(threshold, "threshold", self.where, minimum=0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, ctx):
        y, cache = ops.active.relu_general_forward(x, self.negative_slope, self.max_value,
                                                   self.threshold, ws=ctx.workspace("relu"))
        ctx.save(cache)
        return y

    def backward(self, dy, ctx):
        (cache,) = ctx.saved
        return ops.active.relu_general_backward(dy, cache)

    def get_config(self):
        return {"max_value": self.max_value, "negative_slope": self.negative_slope,
                "threshold": self.threshold, **super().get_config()}


class LeakyReLU(ReLU):
    """``y = x`` for x >= 0, ``negative_slope * x`` otherwise (Keras 3: default 0.3).

    Keras 2's argument name `alpha` is still read, with a DeprecationWarning, as Keras 3 does.
    """

    def __init__(self, negative_slope=0.3, **kwargs):
        if "alpha" in kwargs:
            warnings.warn("LeakyReLU: argument `alpha` is deprecated (Keras 2's name); use "
                          "`negative_slope` instead.", DeprecationWarning, stacklevel=2)
            negative_slope = kwargs.pop("alpha")
        for name in ("max_value", "threshold"):  # ReLU's options, not LeakyReLU's (as Keras)
            if name in kwargs:
                raise TypeError(f"LeakyReLU: unknown keyword argument {name}; use "
                                f"layers.ReLU(negative_slope=..., {name}=...) for it.")
        super().__init__(negative_slope=negative_slope, **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["max_value"], config["threshold"]
        return config


class Softmax(Activation):
    """Softmax over `axis` (default -1, the last) as a layer:
    ``y = exp(x - max) / sum(exp(x - max))`` along that axis."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__("softmax", **kwargs)
        if isinstance(axis, (list, tuple)) and len(axis) == 1:
            axis = axis[0]  # Keras also takes a list of one axis
        self.axis = arguments.integer(axis, "axis", self.where)

    def _validate_input_shape(self, input_shape):
        rank = len(input_shape)
        if not -rank <= self.axis < rank or self.axis % rank == 0:
            raise ValueError(f"{self.where}: axis {self.axis} does not name a feature axis of "
                             f"inputs of shape {input_shape} (axis 0 is the batch).")

    def _last(self):
        return not self.built or self.axis % len(self.input_shape) == len(self.input_shape) - 1

    @property
    def output_activation(self):
        # The loss's logits shortcut applies to a softmax over the classes (the last axis).
        return "softmax" if self._last() else None

    def forward(self, x, ctx):
        if self._last():
            return super().forward(x, ctx)
        moved = np.ascontiguousarray(np.moveaxis(x, self.axis, -1))
        y, cache = ops.active.activation_forward(moved, "softmax")
        ctx.save(cache)
        return np.ascontiguousarray(np.moveaxis(y, -1, self.axis))

    def backward(self, dy, ctx):
        if self._last():
            return super().backward(dy, ctx)
        (cache,) = ctx.saved
        dx = ops.active.activation_backward(np.ascontiguousarray(np.moveaxis(dy, self.axis, -1)),
                                            cache)
        return np.ascontiguousarray(np.moveaxis(dx, -1, self.axis))

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return {"axis": self.axis, **config}
