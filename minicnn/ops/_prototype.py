"""Helpers shared by the kernel prototypes (direct.py, winograd.py): reusable buffers and the
checks their wrappers run before any compiled code (which trusts its inputs)."""

import numpy as np


def buffer(workspace, name, shape, dtype):
    """workspace[name] when it has this shape and dtype, else a new array (stored there when
    workspace is a dict; None means allocate every call)."""
    if workspace is None:
        return np.empty(shape, dtype)
    buf = workspace.get(name)
    if buf is None or buf.shape != tuple(shape) or buf.dtype != dtype:
        buf = workspace[name] = np.empty(shape, dtype)
    return buf


def check_array(where, name, array, dtype=None, ndim=None):
    """TypeError/ValueError naming `where` and `name` unless `array` is a float32/float64
    ndarray (of `dtype` when given: no silent promotion) with `ndim` axes (when given)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"{where}: {name} must be a NumPy array, got {type(array).__name__}.")
    if array.dtype not in (np.float32, np.float64):
        raise TypeError(f"{where}: {name} must be float32 or float64, got {array.dtype}.")
    if dtype is not None and array.dtype != dtype:
        raise TypeError(f"{where}: {name} is {array.dtype} but x is {dtype}; pass both in one "
                        "dtype (no silent promotion).")
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{where}: {name} must have {ndim} axes, got shape {array.shape}.")
