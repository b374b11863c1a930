"""InputLayer and Input: a model's declared input, as keras.Input(shape=(28, 28, 1)) starts a
keras.io model: ``Sequential([keras.Input(shape=(28, 28, 1)), layers.Conv2D(32, 3), ...])``.
"""

import warnings

from .. import arguments
from .base import Layer, sample_shape


class InputLayer(Layer):
    """The identity, holding the shape (and dtype) of a model's input.

    shape: per-sample shape without the batch axis, e.g. (28, 28, 1); or batch_shape with it,
    e.g. (None, 28, 28, 1). batch_size is recorded as Keras records it, but a minicnn model
    takes batches of any size. ``layer.shape`` is the batch shape, as a Keras tensor's.
    """

    def __init__(self, shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None,
                 name=None, **kwargs):
        where = f"InputLayer '{name}'" if name else "InputLayer"
        for old, new in (("input_shape", "shape"), ("batch_input_shape", "batch_shape")):
            if old in kwargs:  # Keras 2's names, which Keras 3 still reads (with a warning)
                warnings.warn(f"{where}: argument `{old}` is deprecated; use `{new}` instead.",
                              DeprecationWarning, stacklevel=2)
                value = kwargs.pop(old)
                shape, batch_shape = (value, batch_shape) if new == "shape" else (shape, value)
        if sparse:
            raise ValueError(f"{where}: sparse inputs are not supported; minicnn computes on "
                             "dense NumPy arrays.")
        if shape is not None and batch_shape is not None:
            raise ValueError(f"{where}: give shape or batch_shape, not both.")
        if batch_shape is not None:
            if batch_size is not None:
                raise ValueError(f"{where}: give batch_size or batch_shape, not both.")
            try:
                batch_size, *shape = tuple(batch_shape)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: batch_shape must be a tuple with the batch axis "
                                 f"first, e.g. (None, 28, 28, 1); got {batch_shape!r}.") from None
        if shape is None:
            raise ValueError(f"{where}: pass the per-sample input shape, e.g. "
                             "Input(shape=(28, 28, 1)).")
        shape = sample_shape(shape, where, "shape")
        super().__init__(name=name, input_shape=shape, dtype=dtype, **kwargs)
        self.batch_size = (None if batch_size is None else
                           arguments.integer(batch_size, "batch_size", self.where, minimum=1))

    @property
    def batch_shape(self):
        """(batch_size or None, *shape), as Keras's InputLayer.batch_shape."""
        return (self.batch_size, *self.declared_input_shape)

    @property
    def shape(self):
        """The shape with the batch axis, as a Keras tensor's: (None, 28, 28, 1)."""
        return self.batch_shape

    def _validate_input_shape(self, input_shape):
        if tuple(input_shape[1:]) != self.declared_input_shape:
            raise ValueError(f"{self.where}: declared for inputs of shape "
                             f"{self.declared_input_shape}, got {input_shape[1:]}.")

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, ctx):
        return x

    def backward(self, dy, ctx):
        return dy

    def get_config(self):
        """Keras's keys: name, dtype, batch_shape, sparse."""
        return {"name": self.name, "dtype": self.dtype.name,
                "batch_shape": list(self.batch_shape), "sparse": False}


def Input(shape=None, batch_size=None, dtype=None, sparse=None, batch_shape=None, name=None,
          tensor=None, optional=False):  # noqa: N802 (Keras's name)
    """A model's input, as keras.Input: ``Sequential([Input(shape=(28, 28, 1)), ...])``.

    Returns an InputLayer, which carries ``.shape`` (with the batch axis), ``.dtype`` and
    ``.name`` as a Keras tensor does, and which Sequential takes as its first element.
    """
    if tensor is not None:
        raise ValueError("Input: tensor= (wrapping an existing tensor) is not supported.")
    if optional:
        raise ValueError("Input: optional inputs are not supported.")
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, sparse=sparse,
                      batch_shape=batch_shape, name=name)
