"""Activation functions, each with its gradient written in terms of its *output*.

Writing the backward pass from y = f(z) (instead of z) means a layer only has to keep its
output for backward: relu'(z) = [y > 0], softmax's Jacobian-vector product needs only y.
"""

import numpy as np


class Activation:
    """Base class: `forward(z) -> y` elementwise (or per row), `backward(dy, y) -> dz`."""

    name = "activation"

    def forward(self, z):
        raise NotImplementedError

    def backward(self, dy, y):
        raise NotImplementedError

    def __repr__(self):
        return f"{type(self).__name__}()"


class Linear(Activation):
    """Identity: y = z."""

    name = "linear"

    def forward(self, z):
        return z

    def backward(self, dy, y):
        return dy


class ReLU(Activation):
    """y = max(z, 0); dz = dy where y > 0 (the subgradient at 0 is taken as 0, as Keras)."""

    name = "relu"

    def forward(self, z):
        # In place: z is a fresh buffer owned by the calling layer.
        return np.maximum(z, 0, out=z)

    def backward(self, dy, y):
        return np.where(y > 0, dy, dy.dtype.type(0))


class Softmax(Activation):
    """Row-wise softmax over the last axis: y_i = exp(z_i - max z) / sum_j exp(z_j - max z).

    backward: dz = y * (dy - sum(dy * y)), the Jacobian-vector product of softmax.
    """

    name = "softmax"

    def forward(self, z):
        # Subtracting the max keeps exp from overflowing.
        shifted = z - z.max(axis=-1, keepdims=True)
        e = np.exp(shifted, out=shifted)
        e /= e.sum(axis=-1, keepdims=True)
        return e

    def backward(self, dy, y):
        return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


class Sigmoid(Activation):
    """y = 1 / (1 + exp(-z)); dz = dy * y * (1 - y)."""

    name = "sigmoid"

    def forward(self, z):
        out = np.empty_like(z)
        positive = z >= 0
        # Two branches so exp never sees a large positive argument.
        out[positive] = 1.0 / (1.0 + np.exp(-z[positive]))
        ez = np.exp(z[~positive])
        out[~positive] = ez / (1.0 + ez)
        return out

    def backward(self, dy, y):
        return dy * y * (1 - y)


class Tanh(Activation):
    """y = tanh(z); dz = dy * (1 - y^2)."""

    name = "tanh"

    def forward(self, z):
        return np.tanh(z)

    def backward(self, dy, y):
        return dy * (1 - y * y)


_BY_NAME = {cls.name: cls for cls in (Linear, ReLU, Softmax, Sigmoid, Tanh)}


def get(identifier, where="activation"):
    """Resolve None, a name ('relu', 'softmax', 'linear', 'sigmoid', 'tanh') or an Activation."""
    if identifier is None:
        return Linear()
    if isinstance(identifier, Activation):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(
        f"{where}: unknown activation {identifier!r}. "
        f"Known activations: {', '.join(sorted(_BY_NAME))} (or None for linear)."
    )


def serialize(activation):
    """The name under which `get` finds this activation again."""
    return activation.name
