"""The one place where constructor and call arguments are checked and normalised.

Every layer, optimizer, callback and loop argument that must be a number goes through
`integer`, `real`, `int_tuple` or `boolean`, so they all agree: Python and NumPy integers and
floats are accepted (``np.int64(4)``, ``np.float32(0.9)``), ``True``/``False`` are refused where a
number is meant, and the value comes back as a plain Python ``int``/``float``/``tuple`` so that
configs are plain JSON types. Each error names the caller, the argument, what it got and what
it expected.
"""

import math
import numbers

import numpy as np

__all__ = ["ArgumentTypeError", "integer", "real", "int_tuple", "boolean", "choice",
           "json_value"]


class ArgumentTypeError(TypeError, ValueError):
    """An argument of the wrong type. Both a TypeError and a ValueError, so code written for
    Keras (which raises ValueError for bad arguments) catches it either way."""


def _describe(value):
    return f"{type(value).__name__} {value!r}"


def integer(value, arg, where, minimum=None, maximum=None):
    """An integral number (int, np.int64, ...; not bool, not 2.0) in [minimum, maximum] -> int."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        bounds = _bounds_text(minimum, maximum)
        raise ArgumentTypeError(f"{where}: {arg} must be an int{bounds}, got {_describe(value)}.")
    value = int(value)
    _check_bounds(value, arg, where, minimum, maximum, "an int")
    return value


def real(value, arg, where, minimum=None, maximum=None, min_open=False, max_open=False):
    """A finite real number (int, float, np.float32, ...; not bool) within the bounds -> float.

    min_open/max_open make the bound strict: real(lr, ..., minimum=0, min_open=True) is lr > 0.
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        bounds = _bounds_text(minimum, maximum, min_open, max_open)
        raise ArgumentTypeError(f"{where}: {arg} must be a number{bounds}, got {_describe(value)}.")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{where}: {arg} must be a finite number, got {value!r}.")
    _check_bounds(value, arg, where, minimum, maximum, "a number", min_open, max_open)
    return value


def int_tuple(value, n, arg, where, minimum=1):
    """An int or a sequence of n ints (each >= minimum), as Keras accepts for kernel_size,
    strides, pool_size -> a tuple of n Python ints. ``3`` means ``(3, 3)`` for n = 2."""
    example = f"Example: {arg}=({', '.join(['3'] * n)}) or {arg}=3."
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        items = (value,) * n
    elif isinstance(value, (str, bytes)) or not _iterable(value):
        raise ArgumentTypeError(f"{where}: {arg} must be an int or a tuple of {n} ints, got "
                        f"{_describe(value)}. {example}")
    else:
        items = tuple(value)
        if len(items) != n:
            raise ValueError(f"{where}: {arg} must have {n} entries, got {len(items)}: "
                             f"{value!r}. {example}")
    return tuple(integer(v, arg, where, minimum=minimum) for v in items)


def boolean(value, arg, where):
    """True/False (or np.bool_) -> bool. Numbers and strings are refused: 'False' is truthy."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise ArgumentTypeError(f"{where}: {arg} must be True or False, got {_describe(value)}.")


def choice(value, options, arg, where):
    """One of `options` (strings compared case-insensitively) -> the option as written there."""
    if isinstance(value, str):
        for option in options:
            if isinstance(option, str) and option.lower() == value.lower():
                return option
    elif value in options and not isinstance(value, bool):
        return value
    raise ValueError(f"{where}: {arg} must be one of {', '.join(map(repr, options))}, "
                     f"got {value!r}.")


def json_value(value):
    """A config value as plain JSON types: NumPy scalars -> int/float/bool, tuples -> lists."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_value(value.tolist())
    return value


def _iterable(value):
    try:
        iter(value)
    except TypeError:
        return False
    return True


def _bounds_text(minimum, maximum, min_open=False, max_open=False):
    parts = []
    if minimum is not None:
        parts.append(f"{'>' if min_open else '>='} {minimum}")
    if maximum is not None:
        parts.append(f"{'<' if max_open else '<='} {maximum}")
    return (" " + " and ".join(parts)) if parts else ""


def _check_bounds(value, arg, where, minimum, maximum, kind, min_open=False, max_open=False):
    low_bad = minimum is not None and (value <= minimum if min_open else value < minimum)
    high_bad = maximum is not None and (value >= maximum if max_open else value > maximum)
    if low_bad or high_bad:
        raise ValueError(f"{where}: {arg} must be {kind}"
                         f"{_bounds_text(minimum, maximum, min_open, max_open)}, got {value!r}.")
