"""Dense, Flatten and the activation layers (Activation, ReLU, Softmax)."""

import math

import numpy as np

from .. import activations
from .base import ActivatedLayer, Layer


class Dense(ActivatedLayer):
    """Fully connected layer: y = activation(x @ kernel + bias).

    x: (N, in) -> y: (N, units). kernel: (in, units), bias: (units,), as Keras.
    """

    def __init__(self, units, activation=None, use_bias=True, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        if isinstance(units, bool) or not isinstance(units, (int, np.integer)) or units < 1:
            raise ValueError(f"{self.where}: units must be a positive int, got {units!r}.")
        self.units = int(units)
        self._x = None

    def _validate_input_shape(self, input_shape):
        if len(input_shape) != 1:
            raise ValueError(
                f"{self.where}: expects flat inputs (N, features), got per-sample shape "
                f"{input_shape}. Add layers.Flatten() before this Dense layer."
            )

    def weight_shapes(self, input_shape):
        super().weight_shapes(input_shape)
        shapes = {"kernel": (int(input_shape[0]), self.units)}
        if self.use_bias:
            shapes["bias"] = (self.units,)
        return shapes

    def _create_params(self, input_shape):
        shape = (input_shape[0], self.units)
        self.params["kernel"] = self.kernel_initializer(shape, self.dtype)
        if self.use_bias:
            self.params["bias"] = self.bias_initializer((self.units,), self.dtype)

    def compute_output_shape(self, input_shape):
        return (self.units,)

    def forward(self, x, training=False):
        self._x = x
        z = x @ self.params["kernel"]
        if self.use_bias:
            z += self.params["bias"]
        self._output = self.activation.forward(z)
        return self._output

    def backward_preactivation(self, dz):
        self.grads["kernel"] = self._x.T @ dz
        if self.use_bias:
            self.grads["bias"] = dz.sum(axis=0)
        if not self.compute_input_gradient:
            return None
        return dz @ self.params["kernel"].T

    def flops(self):
        return 2 * self.input_shape[0] * self.units

    def get_config(self):
        return {"units": self.units, **super().get_config()}


class Flatten(Layer):
    """(N, d1, d2, ...) -> (N, d1*d2*...), in channels-last (C) order, as Keras.

    The order matters: Keras Dense weights after a Flatten only fit this order.
    """

    def compute_output_shape(self, input_shape):
        return (math.prod(input_shape),)

    def forward(self, x, training=False):
        self._x_shape = x.shape
        return x.reshape(x.shape[0], -1)

    def backward(self, dy):
        return dy.reshape(self._x_shape)


class Activation(Layer):
    """Applies an activation by name: Activation('relu'), Activation('softmax'), ..."""

    def __init__(self, activation, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation, f"{self.where}: activation")

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, training=False):
        # Copy so in-place activations never overwrite the previous layer's cached output.
        self._output = self.activation.forward(x.copy())
        return self._output

    def backward(self, dy):
        return self.activation.backward(dy, self._output)

    def get_config(self):
        return {"activation": activations.serialize(self.activation), **super().get_config()}


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
