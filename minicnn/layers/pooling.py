"""Pooling: MaxPooling2D, AveragePooling2D and the global poolings, with Keras's aliases
(MaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D are the same classes, as in Keras).
The math is ops.maxpool2d_*, ops.avgpool2d_*, ops.global_avgpool2d_*, ops.global_maxpool2d_*
(readable in ops/reference.py).
"""

import math

from .. import arguments, ops
from .base import Layer, SlidingWindow, normalize_padding


class _Pooling2D(SlidingWindow, Layer):
    """A pool_size window slid over (N, H, W, C) images, each channel on its own.

    x: (N, H, W, C) -> (N, OH, OW, C); 'valid': OH = (H - PH) // SH + 1, 'same': ceil(H / SH)
    with the extra padding row/column at the bottom/right. strides default to pool_size
    (non-overlapping windows), as Keras.
    """

    _op = None  # "maxpool2d" or "avgpool2d": the ops pair this layer calls

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
        forward = getattr(ops.active, self._op + "_forward")
        y, cache = forward(x, self.pool_size, self.strides, self._pads,
                           ws=ctx.workspace(self._op))
        ctx.save(cache)
        return y

    def backward(self, dy, ctx):
        (cache,) = ctx.saved
        return getattr(ops.active, self._op + "_backward")(dy, cache)

    def get_config(self):
        return {
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding,
            **super().get_config(),
        }


class MaxPooling2D(_Pooling2D):
    """Max over pool_size windows, channels last; padding never wins a max (as Keras).

    x: (N, H, W, C) -> (N, OH, OW, C), see _Pooling2D for the sizes.
    """

    _op = "maxpool2d"


class AveragePooling2D(_Pooling2D):
    """Mean over pool_size windows, channels last. With padding='same' a border window
    averages only its real inputs (padding is not counted), as Keras.

    x: (N, H, W, C) -> (N, OH, OW, C), see _Pooling2D for the sizes.
    """

    _op = "avgpool2d"

    def flops(self):
        # One add per window cell (the last one is the division).
        _, out_h, out_w, c = self.output_shape
        return out_h * out_w * c * math.prod(self.pool_size)


class _GlobalPooling2D(Layer):
    """Reduce the spatial axes: (N, H, W, C) -> (N, C), or (N, 1, 1, C) with keepdims=True."""

    _op = None  # "global_avgpool2d" or "global_maxpool2d"

    def __init__(self, keepdims=False, **kwargs):
        super().__init__(**kwargs)
        self.keepdims = arguments.boolean(keepdims, "keepdims", self.where)

    def _validate_input_shape(self, input_shape):
        if len(input_shape) != 4:
            raise ValueError(f"{self.where}: expects inputs of shape (N, height, width, "
                             f"channels), got per-sample shape {input_shape[1:]}.")

    def compute_output_shape(self, input_shape):
        channels = input_shape[-1]
        return (input_shape[0], 1, 1, channels) if self.keepdims else (input_shape[0], channels)

    def forward(self, x, ctx):
        y, cache = getattr(ops, f"{self._op}_forward")(x)
        ctx.save(cache)
        return y.reshape(len(x), 1, 1, -1) if self.keepdims else y

    def backward(self, dy, ctx):
        (cache,) = ctx.saved
        return getattr(ops, f"{self._op}_backward")(dy.reshape(len(dy), -1), cache)

    def get_config(self):
        return {"keepdims": self.keepdims, **super().get_config()}


class GlobalAveragePooling2D(_GlobalPooling2D):
    """Mean over height and width: y[n, c] = mean of x[n, :, :, c]."""

    _op = "global_avgpool2d"

    def flops(self):
        return math.prod(self.input_shape[1:])


class GlobalMaxPooling2D(_GlobalPooling2D):
    """Max over height and width: y[n, c] = max of x[n, :, :, c] (the gradient goes to the
    first maximum in row-major order)."""

    _op = "global_maxpool2d"


# Keras's other names for the same classes.
MaxPool2D = MaxPooling2D
AvgPool2D = AveragePooling2D
GlobalAvgPool2D = GlobalAveragePooling2D
GlobalMaxPool2D = GlobalMaxPooling2D
