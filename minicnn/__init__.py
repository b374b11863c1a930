"""minicnn: a small convolutional-network framework in NumPy and Numba with Keras's API.

    import minicnn as keras                     # keras.io's examples, with only the import changed
    from minicnn import layers
    model = keras.Sequential([layers.Conv2D(25, (3, 3), activation='relu',
                                            input_shape=(28, 28, 1)), ...])

    import minicnn as tf                        # TensorFlow's Keras tutorials: tf.keras.*,
    tf.keras.layers.Dense(10); tf.nn.softmax(logits).numpy()

The Keras namespace: Sequential, Model, Input, layers, models, optimizers, losses, metrics,
callbacks, initializers, regularizers, activations, datasets, utils; ``minicnn.keras`` is this
package itself (``from minicnn.keras.layers import Dense`` works too). A Keras name minicnn does
not have yet raises ``NotInMinicnnError`` saying so and listing what the module has
(minicnn/_namespace.py); the README's compatibility table lists what is supported.

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
import importlib.util
import sys

__version__ = "0.1.0"

from . import (  # noqa: E402  (after __version__, which saving reads)
    activations,
    callbacks,
    initializers,
    layers,
    losses,
    metrics,
    models,
    nn,
    ops,
    optimizers,
    utils,
)
from ._namespace import (  # noqa: E402
    NotInMinicnnError,
    install_keras_alias,
    install_missing_names,
    missing_name_error,
)
from .backend import set_random_seed  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402
from .layers import Layer  # noqa: E402
from .losses import Loss  # noqa: E402
from .metrics import Metric  # noqa: E402
from .models import Model, Sequential  # noqa: E402

_LAZY_MODULES = {"datasets", "plot", "preprocessing", "server", "cli", "saving", "profiling",
                 "parallel", "graph", "inputs", "arguments", "backend", "regularizers"}
# Keras names that other modules provide once they exist (layers.Input, optimizers.Optimizer).
_LAZY_NAMES = {"Input": "layers", "InputLayer": "layers", "Optimizer": "optimizers",
               "Regularizer": "regularizers", "Initializer": "initializers"}
# Keras's namespace of each public module, for the "not in minicnn yet" errors.
_NAMESPACES = {"": sys.modules[__name__], "layers": layers, "losses": losses,
               "metrics": metrics, "models": models, "optimizers": optimizers,
               "callbacks": callbacks, "initializers": initializers,
               "activations": activations, "utils": utils, "nn": nn}
_LAZY_NAMESPACES = {"datasets": "datasets", "regularizers": "regularizers", "saving": "saving",
                    "schedules": "optimizers.schedules"}

__all__ = ["Layer", "Loss", "Metric", "Model", "NotInMinicnnError", "Sequential",
           "activations", "callbacks", "datasets", "gradcheck", "initializers", "keras",
           "layers", "losses", "metrics", "models", "nn", "ops", "optimizers",
           "preprocess_digit", "set_random_seed", "utils", "version", "__version__"]
# Listed once they exist (the layers and training-extras work of issue 10 adds them).
__all__ += [name for name, module in _LAZY_NAMES.items()
            if f"{__name__}.{module}" in sys.modules
            and (name in vars(sys.modules[f"{__name__}.{module}"])
                 or name in vars(sys.modules[f"{__name__}.{module}"]).get("__all__", ()))]
if importlib.util.find_spec(f"{__name__}.regularizers") is not None:
    __all__.append("regularizers")


def version():
    """minicnn's version, as keras.version()."""
    return __version__


def _load_module(name):
    module = importlib.import_module(f"{__name__}.{name}")
    if name in _LAZY_NAMESPACES:
        install_missing_names(module, _LAZY_NAMESPACES[name])
    return module


def __getattr__(name):
    """Load the application modules (and preprocess_digit) on first use; name what minicnn
    lacks."""
    if name in _LAZY_MODULES:
        try:
            return _load_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
    elif name == "preprocess_digit":
        return _load_module("preprocessing").preprocess_digit
    elif name in _LAZY_NAMES:
        try:
            return getattr(_load_module(_LAZY_NAMES[name]), name)
        except (ModuleNotFoundError, AttributeError):
            pass
    raise missing_name_error("", name, sorted(n for n in __all__ if not n.startswith("_")))


for _namespace, _module in _NAMESPACES.items():
    if _namespace:
        install_missing_names(_module, _namespace)
for _name, _namespace in _LAZY_NAMESPACES.items():
    if f"{__name__}.{_name}" in sys.modules:  # imported by a core module already
        install_missing_names(sys.modules[f"{__name__}.{_name}"], _namespace)
del _namespace, _module, _name

# `import minicnn as tf`: tf.keras is this package; `from minicnn.keras.layers import Dense`.
install_keras_alias(sys.modules[__name__])
