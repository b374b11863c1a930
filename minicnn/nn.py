"""The few ``tf.nn`` functions TensorFlow's Keras tutorials call, on arrays.

    import minicnn as tf
    tf.nn.softmax(predictions).numpy()     # TensorFlow's beginner quickstart

Each returns a ``minicnn.tensor.Tensor`` (an ndarray with ``.numpy()``), computed by the same
activation ops the layers run (minicnn/ops). Integer inputs are computed in float32.
"""

import numpy as np

from . import ops
from .activations import _array  # array-like -> float ndarray (integers: float32)
from .tensor import as_tensor

__all__ = ["softmax", "log_softmax", "relu", "sigmoid", "tanh"]


def _activation(name, x):
    return as_tensor(ops.activation_forward(np.ascontiguousarray(_array(x)), name)[0])


def softmax(logits, axis=-1, name=None):
    """exp(z - max z) / sum exp(z - max z) along `axis` (the last by default): same shape."""
    z = np.moveaxis(_array(logits), axis, -1)
    return as_tensor(np.moveaxis(np.asarray(_activation("softmax", z)), -1, axis))


def log_softmax(logits, axis=-1, name=None):
    """z - max z - log sum exp(z - max z) along `axis`: the log of softmax, computed stably."""
    z = _array(logits)
    shifted = z - z.max(axis=axis, keepdims=True)
    return as_tensor(shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True)))


def relu(features, name=None):
    """max(x, 0), elementwise."""
    return _activation("relu", features)


def sigmoid(x, name=None):
    """1 / (1 + exp(-x)), elementwise, without overflow."""
    return _activation("sigmoid", x)


def tanh(x, name=None):
    """tanh(x), elementwise."""
    return _activation("tanh", x)
