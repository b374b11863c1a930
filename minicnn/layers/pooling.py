"""MaxPooling2D. The math is ops.maxpool2d_forward/backward (readable in ops/reference.py)."""

from .. import arguments, ops
from .base import Layer, SlidingWindow, normalize_padding


class MaxPooling2D(SlidingWindow, Layer):
    """Max over pool_size windows, channels last.

    x: (N, H, W, C) -> (N, OH, OW, C); 'valid': OH = (H - PH) // SH + 1, 'same': ceil(H / SH),
    padding never wins a max. strides default to pool_size (non-overlapping windows), as Keras.
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = arguments.int_tuple(pool_size, 2, "pool_size", self.where)
        self.strides = (self.pool_size if strides is None
                        else arguments.int_tuple(strides, 2, "strides", self.where))
        self.padding = normalize_padding(padding, self.where)

    def _window(self):
        return self.pool_size

    def _validate_input_shape(self, input_shape):
        self._check_image_input(input_shape)

    def compute_output_shape(self, input_shape):
        out_h, out_w, _ = self._geometry(input_shape)
        return (input_shape[0], out_h, out_w, input_shape[-1])

    def forward(self, x, ctx):
        y, cache = ops.maxpool2d_forward(x, self.pool_size, self.strides, self._pads,
                                         ws=ctx.workspace("maxpool2d"))
        ctx.save(cache)
        return y

    def backward(self, dy, ctx):
        (cache,) = ctx.saved
        return ops.maxpool2d_backward(dy, cache)

    def get_config(self):
        return {
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding,
            **super().get_config(),
        }
