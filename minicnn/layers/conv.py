"""Conv2D: shapes, parameters and the padding rule. The math itself is in minicnn/ops:
`ops/reference.py` (readable NumPy) and `ops/kernels.py` (the Numba twin used here).
"""

import numpy as np

from .. import ops
from .base import ActivatedLayer, normalize_padding, normalize_tuple


class Conv2D(ActivatedLayer):
    """2-D convolution (cross-correlation, as Keras), channels last.

    x: (N, H, W, C) -> y: (N, OH, OW, filters) with, per spatial axis,
    'valid': OH = (H - KH) // SH + 1;  'same': OH = ceil(H / SH), the extra padding row/column
    going to the bottom/right (Keras's rule). kernel: (KH, KW, C, filters), bias: (filters,).
    """

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 **kwargs):
        super().__init__(activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer, **kwargs)
        if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 1:
            raise ValueError(f"{self.where}: filters must be a positive int, got {filters!r}.")
        self.filters = filters
        self.kernel_size = normalize_tuple(kernel_size, 2, "kernel_size", self.where)
        self.strides = normalize_tuple(strides, 2, "strides", self.where)
        self.padding = normalize_padding(padding, self.where)

    def _validate_input_shape(self, input_shape):
        if len(input_shape) != 3:
            hint = ""
            if len(input_shape) == 2:
                h, w = input_shape
                hint = (f" For grayscale images add a channel axis: "
                        f"x.reshape(-1, {h}, {w}, 1) and input_shape=({h}, {w}, 1).")
            raise ValueError(
                f"{self.where}: expects inputs of shape (N, height, width, channels), got "
                f"per-sample shape {input_shape}.{hint}"
            )
        sizes = zip(("height", "width"), input_shape[:2], self.kernel_size, strict=True)
        for axis, size, k in sizes:
            if self.padding == "valid" and k > size:
                raise ValueError(
                    f"{self.where}: kernel_size {self.kernel_size} is bigger than the input "
                    f"{axis} {size} (input shape {input_shape}). Use padding='same', a smaller "
                    "kernel, or fewer pooling layers before this one."
                )

    def _create_params(self, input_shape):
        kernel_shape = (*self.kernel_size, input_shape[2], self.filters)
        self.params["kernel"] = self.kernel_initializer(kernel_shape, self.dtype)
        if self.use_bias:
            self.params["bias"] = self.bias_initializer((self.filters,), self.dtype)

    def _geometry(self, input_shape):
        return ops.conv_geometry(input_shape[:2], self.kernel_size, self.strides, self.padding)

    def compute_output_shape(self, input_shape):
        out_h, out_w, _ = self._geometry(input_shape)
        return (out_h, out_w, self.filters)

    def build(self, input_shape):
        super().build(input_shape)
        self._pads = self._geometry(self.input_shape)[2]

    def forward(self, x, training=False):
        z, self._cols = ops.conv2d_forward(x, self.params["kernel"], self.params.get("bias"),
                                           self.strides, self._pads)
        self._x_shape = x.shape
        self._output = self.activation.forward(z)
        return self._output

    def backward_preactivation(self, dz):
        dx, dkernel, dbias = ops.conv2d_backward(
            dz, self._x_shape, self._cols, self.params["kernel"], self.strides, self._pads,
            use_bias=self.use_bias, compute_dx=self.compute_input_gradient)
        self.grads["kernel"] = dkernel
        if self.use_bias:
            self.grads["bias"] = dbias
        return dx

    def flops(self):
        out_h, out_w, filters = self.output_shape
        kh, kw = self.kernel_size
        return 2 * out_h * out_w * filters * kh * kw * self.input_shape[2]

    def get_config(self):
        return {
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            **super().get_config(),
        }
