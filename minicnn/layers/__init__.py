"""Layers with Keras's names and arguments. See base.py for the interface they share."""

from .base import Layer
from .conv import Conv2D
from .core import Activation, Dense, Flatten, ReLU, Softmax
from .merging import Add, Average, Concatenate, Maximum, Multiply, Subtract
from .pooling import MaxPooling2D

__all__ = ["Layer", "Conv2D", "MaxPooling2D", "Dense", "Flatten", "Activation", "ReLU", "Softmax",
           "Add", "Subtract", "Multiply", "Average", "Maximum", "Concatenate", "Input",
           "InputLayer"]

_BY_CLASS_NAME = {name: globals()[name] for name in __all__
                  if name not in ("Layer", "Input", "InputLayer")}
_MODEL_CLASSES = ("Sequential", "Functional")


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
