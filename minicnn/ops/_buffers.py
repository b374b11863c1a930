"""Reusable output and scratch arrays for the kernel prototypes (direct.py, winograd.py)."""

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
