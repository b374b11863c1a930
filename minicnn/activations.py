"""Activation functions by name, as Keras's `activation=` argument and `keras.activations`.

The math of each (forward and its vector-Jacobian product) is in ops/reference.py
(`ACTIVATIONS`); here are the names layers accept and plain functions on arrays:
``activations.relu(x)`` returns an array, as ``keras.activations.relu(x)`` returns a tensor.
Names as Keras serialises them: 'swish' is 'silu' and 'hard_swish' is 'hard_silu', as in
Keras (the same functions under a second name).
"""

import numpy as np

from . import ops

__all__ = ["get", "serialize", "names", "linear", "relu", "sigmoid", "tanh", "softmax", "elu",
           "selu", "gelu", "softplus", "softsign", "silu", "swish", "relu6", "hard_sigmoid",
           "hard_silu", "hard_swish", "exponential", "leaky_relu", "mish", "log_sigmoid",
           "hard_tanh"]

# Keras's second names for the same functions.
ALIASES = {"swish": "silu", "hard_swish": "hard_silu"}


def names():
    """The activation names minicnn knows (aliases included)."""
    return sorted([*ops.reference.ACTIVATIONS, *ALIASES])


def get(identifier, where="activation"):
    """None, a name ('relu', 'softmax', ...) or one of this module's functions -> its name."""
    if identifier is None:
        return "linear"
    if callable(identifier) and getattr(identifier, "__module__", None) == __name__:
        identifier = identifier.__name__
    if isinstance(identifier, str):
        name = ALIASES.get(identifier.lower(), identifier.lower())
        if name in ops.reference.ACTIVATIONS:
            return name
    raise ValueError(
        f"{where}: unknown activation {identifier!r}. "
        f"Known activations: {', '.join(names())} (or None for linear)."
    )


def serialize(activation):
    """The name under which `get` finds this activation again."""
    return get(activation)


def _array(x):
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float32)
    return x


def _apply(name, x):
    return ops.activation_forward(_array(x), name)[0]


def _only_default(function, **options):
    for arg, (value, default) in options.items():
        if value != default:
            raise ValueError(f"activations.{function}: only {arg}={default!r} is supported "
                             f"(got {value!r}).")


def linear(x):
    """x unchanged."""
    return _apply("linear", x)


def relu(x, negative_slope=0.0, max_value=None, threshold=0.0):
    """max(x, 0) elementwise; with Keras's options: min(x, max_value) where x > threshold,
    negative_slope * (x - threshold) elsewhere."""
    if negative_slope == 0 and max_value is None and threshold == 0:
        return _apply("relu", x)
    return ops.relu_general_forward(_array(x), negative_slope, max_value, threshold)[0]


def leaky_relu(x, negative_slope=0.2):
    """x for x >= 0, negative_slope * x otherwise (default 0.2, as keras.activations)."""
    return ops.relu_general_forward(_array(x), negative_slope)[0]


def sigmoid(x):
    """1 / (1 + exp(-x)), elementwise."""
    return _apply("sigmoid", x)


def tanh(x):
    """tanh(x), elementwise."""
    return _apply("tanh", x)


def softmax(x, axis=-1):
    """Softmax over `axis` (default the last): exp(x - max) / sum(exp(x - max))."""
    x = _array(x)
    moved = np.moveaxis(x, axis, -1)
    return np.moveaxis(_apply("softmax", moved), -1, axis)


def elu(x, alpha=1.0):
    """x for x > 0, exp(x) - 1 otherwise (alpha = 1)."""
    _only_default("elu", alpha=(alpha, 1.0))
    return _apply("elu", x)


def selu(x):
    """scale * elu(x) with alpha 1.6732632..., scale 1.0507009... (Klambauer et al., 2017)."""
    return _apply("selu", x)


def gelu(x, approximate=False):
    """x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), Keras's default (approximate=False)."""
    _only_default("gelu", approximate=(approximate, False))
    return _apply("gelu", x)


def softplus(x):
    """log(1 + exp(x))."""
    return _apply("softplus", x)


def softsign(x):
    """x / (1 + |x|)."""
    return _apply("softsign", x)


def silu(x):
    """x * sigmoid(x), also called swish."""
    return _apply("silu", x)


swish = silu


def relu6(x):
    """min(max(x, 0), 6)."""
    return _apply("relu6", x)


def hard_sigmoid(x):
    """relu6(x + 3) / 6: 0 below -3, 1 above 3, linear between."""
    return _apply("hard_sigmoid", x)


def hard_silu(x):
    """x * hard_sigmoid(x), also called hard swish."""
    return _apply("hard_silu", x)


hard_swish = hard_silu


def exponential(x):
    """exp(x)."""
    return _apply("exponential", x)


def mish(x):
    """x * tanh(softplus(x))."""
    return _apply("mish", x)


def log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x)."""
    return _apply("log_sigmoid", x)


def hard_tanh(x):
    """clip(x, -1, 1)."""
    return _apply("hard_tanh", x)
