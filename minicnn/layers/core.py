"""Dense, Flatten and the activation layers (Activation, ReLU, Softmax)."""

import math

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
        z, dense_cache = ops.dense_forward(x, self.params["kernel"])
        y, act_cache = ops.bias_activation_forward(z, self.params.get("bias"), self.activation,
                                                   ws=ctx.workspace("bias_activation"))
        ctx.save(dense_cache, act_cache)
        return y

    def _affine_backward(self, dz, ctx):
        dense_cache, _ = ctx.saved
        return ops.dense_backward(dz, dense_cache, need_dx=ctx.need_input_grad)

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
        y, cache = ops.activation_forward(x, self.activation)
        ctx.save(cache)
        return y

    def backward(self, dy, ctx):
        (cache,) = ctx.saved
        return ops.activation_backward(dy, cache)

    def output_logits(self, ctx):
        return ops.activation_input(ctx.saved[0])

    def backward_from_logits(self, dz, ctx):
        return dz  # nothing before the activation in this layer

    def get_config(self):
        return {"activation": self.activation, **super().get_config()}


class ReLU(Activation):
    """max(x, 0) as a layer."""

    def __init__(self, **kwargs):
        super().__init__("relu", **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return config


class Softmax(Activation):
    """Softmax over the last axis as a layer."""

    def __init__(self, **kwargs):
        super().__init__("softmax", **kwargs)

    def get_config(self):
        config = super().get_config()
        del config["activation"]
        return config
