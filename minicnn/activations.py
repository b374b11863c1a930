"""Activation functions by name, as Keras's `activation=` argument and `keras.activations`.

The math of each (forward and its vector-Jacobian product) is in ops/reference.py
(`ACTIVATIONS`); here are the names layers accept and plain functions on arrays:
``activations.relu(x)`` returns an array, as ``keras.activations.relu(x)`` returns a tensor.
"""

import numpy as np

from . import ops

__all__ = ["get", "serialize", "names", "linear", "relu", "sigmoid", "tanh", "softmax"]


def names():
    """The activation names minicnn knows."""
    return sorted(ops.reference.ACTIVATIONS)


def get(identifier, where="activation"):
    """None, a name ('relu', 'softmax', ...) or one of this module's functions -> its name."""
    if identifier is None:
        return "linear"
    if callable(identifier) and getattr(identifier, "__module__", None) == __name__:
        identifier = identifier.__name__
    if isinstance(identifier, str) and identifier.lower() in ops.reference.ACTIVATIONS:
        return identifier.lower()
    raise ValueError(
        f"{where}: unknown activation {identifier!r}. "
        f"Known activations: {', '.join(names())} (or None for linear)."
    )


def serialize(activation):
    """The name under which `get` finds this activation again."""
    return get(activation)


def _apply(name, x):
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return ops.activation_forward(x, name)[0]


def linear(x):
    """x unchanged."""
    return _apply("linear", x)


def relu(x):
    """max(x, 0), elementwise."""
    return _apply("relu", x)


def sigmoid(x):
    """1 / (1 + exp(-x)), elementwise."""
    return _apply("sigmoid", x)


def tanh(x):
    """tanh(x), elementwise."""
    return _apply("tanh", x)


def softmax(x):
    """Softmax over the last axis: exp(x - max) / sum(exp(x - max))."""
    return _apply("softmax", x)
