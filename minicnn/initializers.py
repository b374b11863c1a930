"""Weight initialisers with Keras's names and formulas (fans as Keras computes them)."""

import math

import numpy as np

from .backend import get_rng


def compute_fans(shape):
    """(fan_in, fan_out) of a kernel shape, as Keras does.

    Dense kernel (in, out): (in, out). Conv kernel (kh, kw, in, out): receptive field kh*kw
    times in and out channels.
    """
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def glorot_uniform(shape, dtype):
    """U(-limit, limit) with limit = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010)."""
    fan_in, fan_out = compute_fans(shape)
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return get_rng().uniform(-limit, limit, size=shape).astype(dtype)


def he_normal(shape, dtype):
    """Truncated-free normal with std sqrt(2 / fan_in) (He et al., 2015); suits ReLU nets."""
    fan_in, _ = compute_fans(shape)
    return (get_rng().standard_normal(size=shape) * math.sqrt(2.0 / fan_in)).astype(dtype)


def zeros(shape, dtype):
    """All zeros (Keras's default bias initialiser)."""
    return np.zeros(shape, dtype=dtype)


def ones(shape, dtype):
    """All ones."""
    return np.ones(shape, dtype=dtype)


_BY_NAME = {f.__name__: f for f in (glorot_uniform, he_normal, zeros, ones)}


def get(identifier, where="initializer"):
    """Resolve a name ('glorot_uniform', 'he_normal', 'zeros', 'ones') or a callable
    (shape, dtype) -> array."""
    if callable(identifier):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]
    raise ValueError(
        f"{where}: unknown initializer {identifier!r}. Known: {', '.join(sorted(_BY_NAME))}, "
        "or a function (shape, dtype) -> array."
    )


def serialize(initializer):
    """The name of a built-in initialiser (custom callables cannot be saved by name)."""
    name = getattr(initializer, "__name__", None)
    if name in _BY_NAME:
        return name
    raise ValueError(
        f"initializer {initializer!r} is not a built-in one and cannot be saved by name; "
        f"use one of {', '.join(sorted(_BY_NAME))}."
    )
