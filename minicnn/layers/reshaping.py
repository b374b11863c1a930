"""Reshape (Flatten is in core.py): a view of the same numbers in another shape, no math."""

import math

from .. import arguments
from .base import Layer


class Reshape(Layer):
    """(N, *input) -> (N, *target_shape), C order (as NumPy and Keras); one entry of
    target_shape may be -1, meaning whatever size makes the total fit.

    Reshape((7, 7, 1)) after Dense(49); Reshape((-1,)) flattens.
    """

    def __init__(self, target_shape, **kwargs):
        super().__init__(**kwargs)
        if isinstance(target_shape, (int, str, bytes)) or not hasattr(target_shape, "__iter__"):
            raise ValueError(f"{self.where}: target_shape must be a tuple of ints without the "
                             f"batch axis, e.g. (7, 7, 1); got {target_shape!r}.")
        shape = tuple(-1 if d == -1 and not isinstance(d, bool) else
                      arguments.integer(d, "target_shape", self.where, minimum=1)
                      for d in target_shape)
        if not shape or shape.count(-1) > 1:
            raise ValueError(f"{self.where}: target_shape must have at least one entry and at "
                             f"most one -1, got {target_shape!r}.")
        self.target_shape = shape
        self._resolved = None

    def _resolve(self, input_shape):
        total = math.prod(input_shape[1:])
        known = math.prod(d for d in self.target_shape if d != -1)
        if -1 in self.target_shape:
            if total % known:
                raise ValueError(f"{self.where}: cannot reshape inputs of shape "
                                 f"{input_shape[1:]} ({total} values) to {self.target_shape}: "
                                 f"{total} is not a multiple of {known}.")
            return tuple(total // known if d == -1 else d for d in self.target_shape)
        if known != total:
            raise ValueError(f"{self.where}: cannot reshape inputs of shape {input_shape[1:]} "
                             f"({total} values) to {self.target_shape} ({known} values).")
        return self.target_shape

    def _validate_input_shape(self, input_shape):
        self._resolve(input_shape)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], *self._resolve(input_shape))

    def build(self, input_shape):
        super().build(input_shape)
        self._resolved = self.output_shape[1:]

    def forward(self, x, ctx):
        ctx.save(x.shape)
        return x.reshape(x.shape[0], *self._resolved)

    def backward(self, dy, ctx):
        (x_shape,) = ctx.saved
        return dy.reshape(x_shape)

    def get_config(self):
        return {"target_shape": list(self.target_shape), **super().get_config()}
