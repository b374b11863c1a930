"""Layers with Keras's names and arguments. See base.py for the interface they share."""

from .base import Layer
from .conv import Conv2D
from .core import Activation, Dense, Flatten, ReLU, Softmax
from .pooling import MaxPooling2D

__all__ = ["Layer", "Conv2D", "MaxPooling2D", "Dense", "Flatten", "Activation", "ReLU", "Softmax"]

_BY_CLASS_NAME = {name: globals()[name] for name in __all__ if name != "Layer"}


def get_class(class_name):
    """The layer class for a saved class name, e.g. 'Conv2D' (used when loading models)."""
    if class_name not in _BY_CLASS_NAME:
        raise ValueError(
            f"unknown layer class {class_name!r}; known: {', '.join(sorted(_BY_CLASS_NAME))}."
        )
    return _BY_CLASS_NAME[class_name]
