"""minicnn: a small convolutional-network framework in NumPy and Numba with Keras's API.

    from minicnn import layers, models
    model = models.Sequential([layers.Conv2D(25, (3, 3), activation='relu',
                                             input_shape=(28, 28, 1)), ...])

Where things live (ARCHITECTURE.md draws the map): ops/reference.py (the math, readable NumPy,
and a backend you can switch to: ops.set_backend('reference')), ops/fast.py and ops/kernels.py
(the fast backend: BLAS + Numba), layers/ (parameters and shapes), graph.py (running layers
forward and backward), models.py (the steps and the training loop), losses.py, optimizers.py,
metrics.py, callbacks.py, saving.py, gradcheck.py.

The core imports only NumPy and Numba. The applications -- datasets (requests), plot
(matplotlib), preprocessing, the server and the command line (Pillow) -- are loaded on first
use: ``minicnn.datasets``, ``minicnn.plot``, ``minicnn.preprocess_digit``.
"""

import importlib

__version__ = "0.1.0"

from . import (  # noqa: E402  (after __version__, which saving reads)
    activations,
    callbacks,
    initializers,
    layers,
    losses,
    metrics,
    models,
    ops,
    optimizers,
)
from .backend import set_random_seed  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402

_LAZY_MODULES = {"datasets", "plot", "preprocessing", "server", "cli", "saving", "profiling",
                 "parallel", "graph", "inputs", "arguments", "backend"}

__all__ = ["activations", "callbacks", "datasets", "initializers", "layers", "losses", "metrics",
           "models", "ops", "optimizers", "gradcheck", "preprocess_digit", "set_random_seed",
           "__version__"]


def __getattr__(name):
    """Load the application modules (and preprocess_digit) on first use."""
    if name in _LAZY_MODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name == "preprocess_digit":
        return importlib.import_module(f"{__name__}.preprocessing").preprocess_digit
    raise AttributeError(f"module 'minicnn' has no attribute {name!r}")
