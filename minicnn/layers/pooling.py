"""MaxPooling2D. The math is ops.maxpool2d_forward/backward (readable in ops/reference.py)."""

from .. import arguments, ops
from .base import Layer, normalize_padding


class MaxPooling2D(Layer):
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

    def _validate_input_shape(self, input_shape):
        sample = input_shape[1:]
        if len(sample) != 3:
            raise ValueError(
                f"{self.where}: expects inputs of shape (N, height, width, channels), got "
                f"per-sample shape {sample}."
            )
        for axis, size, p in zip(("height", "width"), sample[:2], self.pool_size, strict=True):
            if self.padding == "valid" and p > size:
                raise ValueError(
                    f"{self.where}: pool_size {self.pool_size} is bigger than the input {axis} "
                    f"{size} (input shape {sample}). Use padding='same', a smaller "
                    "pool_size, or fewer layers that shrink the image before this one."
                )

    def _geometry(self, input_shape):
        return ops.conv_geometry(tuple(input_shape[1:3]), self.pool_size, self.strides,
                                 self.padding)

    def compute_output_shape(self, input_shape):
        out_h, out_w, _ = self._geometry(input_shape)
        return (input_shape[0], out_h, out_w, input_shape[-1])

    def build(self, input_shape):
        super().build(input_shape)
        self._pads = self._geometry(self.input_shape)[2]

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
