"""Layers with Keras's names and arguments. See base.py for the interface they share."""

from .base import Layer
from .conv import Conv2D
from .core import Activation, Dense, Flatten, LeakyReLU, ReLU, Softmax
from .input_layer import Input, InputLayer
from .normalization import BatchNormalization
from .pooling import (
    AveragePooling2D,
    AvgPool2D,
    GlobalAveragePooling2D,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    GlobalMaxPooling2D,
    MaxPool2D,
    MaxPooling2D,
)
from .regularization import Dropout
from .rescaling import Rescaling
from .reshaping import Reshape

# The layer classes, each under its class name.
_CLASSES = [
    Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
    Dense, Flatten, Reshape, Activation, ReLU, LeakyReLU, Softmax, BatchNormalization, Dropout,
    Rescaling, InputLayer,
]
# Keras's other names for some of them (the same classes, as in Keras).
ALIASES = {"MaxPool2D": MaxPool2D, "AvgPool2D": AvgPool2D, "GlobalAvgPool2D": GlobalAvgPool2D,
           "GlobalMaxPool2D": GlobalMaxPool2D}

__all__ = ["Layer", "Input", *(cls.__name__ for cls in _CLASSES), *ALIASES]

_BY_CLASS_NAME = {**{cls.__name__: cls for cls in _CLASSES}, **ALIASES}


def layer_classes():
    """Every layer class of minicnn (each once, aliases not repeated)."""
    return list(_CLASSES)


def get_class(class_name):
    """The layer class for a saved class name, e.g. 'Conv2D' (used when loading models)."""
    if class_name not in _BY_CLASS_NAME:
        raise ValueError(
            f"unknown layer class {class_name!r}; known: {', '.join(sorted(_BY_CLASS_NAME))}."
        )
    return _BY_CLASS_NAME[class_name]
