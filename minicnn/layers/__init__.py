"""Layers with Keras's names and arguments. See base.py for the interface they share."""

from .base import Layer
from .conv import Conv2D
from .core import Activation, Dense, Flatten, LeakyReLU, ReLU, Softmax
from .merging import Add, Average, Concatenate, Maximum, Multiply, Subtract
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

# The layer classes, each under its class name (InputLayer lives with the functional API).
_CLASSES = [
    Conv2D, MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D,
    Dense, Flatten, Reshape, Activation, ReLU, LeakyReLU, Softmax, BatchNormalization, Dropout,
    Rescaling, Add, Subtract, Multiply, Average, Maximum, Concatenate,
]
# Keras's other names for some of them (the same classes, as in Keras).
ALIASES = {"MaxPool2D": MaxPool2D, "AvgPool2D": AvgPool2D, "GlobalAvgPool2D": GlobalAvgPool2D,
           "GlobalMaxPool2D": GlobalMaxPool2D}

__all__ = ["Layer", *(cls.__name__ for cls in _CLASSES), *ALIASES, "Input", "InputLayer"]

_BY_CLASS_NAME = {**{cls.__name__: cls for cls in _CLASSES}, **ALIASES}
_MODEL_CLASSES = ("Sequential", "Functional")


def layer_classes():
    """Every layer class of minicnn (each once, aliases not repeated; InputLayer not, it is
    the functional API's)."""
    return list(_CLASSES)


def __getattr__(name):
    # Input and InputLayer live with the functional API (which imports this package).
    if name in ("Input", "InputLayer"):
        from .. import functional
        return getattr(functional, name)
    raise AttributeError(f"module 'minicnn.layers' has no attribute {name!r}")


def get_class(class_name):
    """The layer class for a saved class name, e.g. 'Conv2D' (used when loading models)."""
    if class_name == "InputLayer":
        from ..functional import InputLayer
        return InputLayer
    if class_name not in _BY_CLASS_NAME:
        raise ValueError(
            f"unknown layer class {class_name!r}; known: {', '.join(sorted(_BY_CLASS_NAME))}."
        )
    return _BY_CLASS_NAME[class_name]


def serialize(layer):
    """{'class_name', 'config'} of a layer; a model used as a layer gives its model's class."""
    from ..functional import ModelLayer
    if isinstance(layer, ModelLayer):
        return {"class_name": type(layer.model).__name__, "config": layer.model.get_config()}
    return {"class_name": type(layer).__name__, "config": layer.get_config()}


def deserialize(spec):
    """Inverse of serialize: a layer (a model spec gives the model as a layer)."""
    class_name = spec["class_name"]
    if class_name in _MODEL_CLASSES:
        from .. import models
        cls = models.Sequential if class_name == "Sequential" else models.Functional
        return cls.from_config(spec["config"]).as_layer()
    return get_class(class_name).from_config(spec["config"])
