"""Stateless array ops, NHWC, in two backends with one contract, and the switch between them.

    from minicnn import ops
    z, cache = ops.conv2d_forward(x, kernel, strides, pads)
    dx, dkernel = ops.conv2d_backward(dz, cache)

Every op name below calls the active backend (looked up at each call, so a function patched
into a backend module takes effect at once). ``ops.active`` is the active backend's module
itself: the layers, losses and optimizers call ``ops.active.conv2d_forward(...)``, the same
function without the dispatching call (dozens per training step).

The backends:

- ``"fast"`` (the default): :mod:`minicnn.ops.fast`, Numba kernels + BLAS + reused buffers;
- ``"reference"``: :mod:`minicnn.ops.reference`, readable NumPy, the math to read and edit.

``ops.set_backend("reference")``, the ``ops.backend("reference")`` context manager, or
``MINICNN_BACKEND=reference`` in the environment choose; the layers call only the ops, so
fit, evaluate and predict of any model run on the chosen backend. The switch is process-wide;
change it between calls, not while another thread trains (a backward pass checks that it runs
on the backend of its forward pass).
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading

from . import fast, reference
from .padding import conv_geometry, conv_output_length, output_hw, padding_amounts

BACKENDS = {"fast": fast, "reference": reference}

# The op names are the reference module's: one list, so a new op is added in one place.
OPS = [name for name in reference.__all__ if name != "ACTIVATIONS"]

__all__ = ["BACKENDS", "OPS", "active", "set_backend", "get_backend", "backend", "backend_module",
           "conv_geometry", "conv_output_length", "output_hw", "padding_amounts",
           "reference", "fast", *OPS]

_lock = threading.Lock()
_active = {"name": "fast", "module": fast, "generation": 0}
active = fast  # the active backend's module (set_backend rebinds it)


def _resolve(name, where):
    if not isinstance(name, str) or name.lower() not in BACKENDS:
        raise ValueError(f"{where}: unknown backend {name!r}; choose one of "
                         f"{', '.join(map(repr, BACKENDS))}.")
    return name.lower()


def set_backend(name):
    """Make `name` ('fast' or 'reference') the backend every op call runs on."""
    global active
    name = _resolve(name, "set_backend")
    with _lock:
        if name != _active["name"]:
            _active.update(name=name, module=BACKENDS[name], generation=_active["generation"] + 1)
            active = BACKENDS[name]


def get_backend():
    """The active backend's name: 'fast' or 'reference'."""
    return _active["name"]


def backend_module():
    """The active backend's module (minicnn.ops.fast or minicnn.ops.reference)."""
    return _active["module"]


def generation():
    """A counter that changes whenever the backend changes (backward passes compare it)."""
    return _active["generation"]


@contextlib.contextmanager
def backend(name):
    """Run the block on backend `name`, then restore the previous one."""
    previous = get_backend()
    set_backend(name)
    try:
        yield
    finally:
        set_backend(previous)


def _dispatching(name):
    implementation = getattr(reference, name)

    @functools.wraps(implementation)
    def op(*args, **kwargs):
        return getattr(_active["module"], name)(*args, **kwargs)

    return op


for _name in OPS:
    globals()[_name] = _dispatching(_name)
del _name

if os.environ.get("MINICNN_BACKEND", "").strip():
    set_backend(_resolve(os.environ["MINICNN_BACKEND"].strip(), "MINICNN_BACKEND"))
    _active["generation"] = 0
