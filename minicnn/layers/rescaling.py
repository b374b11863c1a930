"""Rescaling. The math is ops.rescale_forward/backward (readable in ops/reference.py)."""

import math

from .. import arguments, ops
from .base import Layer


class Rescaling(Layer):
    """y = x * scale + offset, e.g. Rescaling(1 / 255) for pixels in [0, 255] -> [0, 1], or
    Rescaling(1 / 127.5, offset=-1) -> [-1, 1]. x: any shape -> y like x, in the layer's dtype.
    """

    def __init__(self, scale, offset=0.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = arguments.real(scale, "scale", self.where)
        self.offset = arguments.real(offset, "offset", self.where)

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, ctx):
        y, cache = ops.active.rescale_forward(x, self.scale, self.offset)
        ctx.save(cache)
        return y

    def backward(self, dy, ctx):
        (cache,) = ctx.saved
        return ops.active.rescale_backward(dy, cache)

    def flops(self):
        return 2 * math.prod(self.input_shape[1:])

    def get_config(self):
        return {"scale": self.scale, "offset": self.offset, **super().get_config()}
