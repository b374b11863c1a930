"""MaxPooling2D. The math is in minicnn/ops (maxpool2d_forward / maxpool2d_backward); the
common case (window == stride, no padding) runs the specialised kernels of ops/fused.py."""

import numpy as np

from .. import ops
from ..ops import fused, kernels
from .base import Layer, Workspace, normalize_padding, normalize_tuple


class MaxPooling2D(Layer):
    """Max over pool_size windows, channels last.

    x: (N, H, W, C) -> (N, OH, OW, C); 'valid': OH = (H - PH) // SH + 1, 'same': ceil(H / SH),
    padding never wins a max. strides default to pool_size (non-overlapping windows), as Keras.
    """

    def __init__(self, pool_size=(2, 2), strides=None, padding="valid", **kwargs):
        super().__init__(**kwargs)
        self.pool_size = normalize_tuple(pool_size, 2, "pool_size", self.where)
        self.strides = (self.pool_size if strides is None
                        else normalize_tuple(strides, 2, "strides", self.where))
        self.padding = normalize_padding(padding, self.where)

    def _validate_input_shape(self, input_shape):
        if len(input_shape) != 3:
            raise ValueError(
                f"{self.where}: expects inputs of shape (N, height, width, channels), got "
                f"per-sample shape {input_shape}."
            )
        for axis, size, p in zip(("height", "width"), input_shape[:2], self.pool_size, strict=True):
            if self.padding == "valid" and p > size:
                raise ValueError(
                    f"{self.where}: pool_size {self.pool_size} is bigger than the input {axis} "
                    f"{size} (input shape {input_shape}). Use padding='same', a smaller "
                    "pool_size, or fewer layers that shrink the image before this one."
                )

    def _geometry(self, input_shape):
        return ops.conv_geometry(input_shape[:2], self.pool_size, self.strides, self.padding)

    def compute_output_shape(self, input_shape):
        out_h, out_w, _ = self._geometry(input_shape)
        return (out_h, out_w, input_shape[2])

    def build(self, input_shape):
        super().build(input_shape)
        self._pads = self._geometry(self.input_shape)[2]
        self._tiled = self.strides == self.pool_size and not any(self._pads)
        self._workspace = Workspace()

    def forward(self, x, training=False):
        x = np.ascontiguousarray(x)
        ws, created = self._workspace.get((x.shape, x.dtype.str))
        if created:
            out_shape = (x.shape[0], *self.output_shape)
            ws["y"] = np.empty(out_shape, x.dtype)
            # int32 halves the argmax traffic; the generic kernel's contract is int64.
            ws["argmax"] = np.empty(out_shape, np.int32 if self._tiled else np.int64)
        y, argmax = ws["y"], ws["argmax"]
        if self._tiled:
            fused.maxpool2d_tiled_forward(x, self.pool_size, y, argmax)
        else:
            (ph, pw), (sh, sw), (top, _, left, _) = self.pool_size, self.strides, self._pads
            kernels._maxpool2d_forward_into(x, ph, pw, sh, sw, top, left, y, argmax)
        self._ws = ws
        self._x_shape = x.shape
        return y

    def backward(self, dy):
        dy = np.ascontiguousarray(dy)
        ws = self._ws
        dx = ws.get("dx")
        if dx is None or dx.dtype != dy.dtype:
            dx = ws["dx"] = np.empty(self._x_shape, dy.dtype)
        if self._tiled:
            return fused.maxpool2d_tiled_backward(dy, ws["argmax"], self.pool_size, dx)
        n, h, w, c = self._x_shape
        kernels._maxpool2d_backward_into(dy, ws["argmax"], dx.reshape(n, h * w, c))
        return dx

    def get_config(self):
        return {
            "pool_size": list(self.pool_size),
            "strides": list(self.strides),
            "padding": self.padding,
            **super().get_config(),
        }
