"""minicnn: a small convolutional-network framework in NumPy and Numba with Keras's API.

    from minicnn import layers, models
    model = models.Sequential([layers.Conv2D(25, (3, 3), activation='relu',
                                             input_shape=(28, 28, 1)), ...])

Where things live: ops/reference.py (the math, readable NumPy), ops/kernels.py (the Numba
twins), layers/ (parameters and shapes), models.py (the training loop), losses.py,
optimizers.py, callbacks.py, saving.py, gradcheck.py, datasets/.
"""

__version__ = "0.1.0"

from . import activations, callbacks, datasets, initializers, layers, losses, models, optimizers
from .backend import set_random_seed
from .gradcheck import gradcheck
from .preprocessing import preprocess_digit

__all__ = ["activations", "callbacks", "datasets", "initializers", "layers", "losses", "models",
           "optimizers", "gradcheck", "preprocess_digit", "set_random_seed", "__version__"]
