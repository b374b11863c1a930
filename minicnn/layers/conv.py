"""Conv2D: shapes, parameters and the padding rule. The math itself is in minicnn/ops:
`ops/reference.py` (readable NumPy), `ops/kernels.py` (the Numba twins) and `ops/fused.py`
(bias + ReLU fused into one pass, used here).

Fast path, per batch (buffers reused between batches of the same shape, see Workspace):
forward  cols = im2col(x); z = cols @ K; y = relu(z + b)       (one BLAS call, one fused pass)
backward dz = dy * [y > 0], db = sum(dz)                        (one fused pass)
         dK = cols.T @ dz; dx = col2im(dz @ K.T)                (two BLAS calls, one scatter)
"""

import numpy as np

from .. import activations, ops
from ..ops import fused, kernels
from .base import ActivatedLayer, Workspace, normalize_padding, normalize_tuple


def fused_activation_code(activation):
    """fused.ACT_RELU / fused.ACT_LINEAR for activations the fused kernels know, else None."""
    if type(activation) is activations.ReLU:
        return fused.ACT_RELU
    if type(activation) is activations.Linear:
        return fused.ACT_LINEAR
    return None


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

    def weight_shapes(self, input_shape):
        super().weight_shapes(input_shape)
        shapes = {"kernel": (*self.kernel_size, int(input_shape[2]), int(self.filters))}
        if self.use_bias:
            shapes["bias"] = (int(self.filters),)
        return shapes

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
        self._workspace = Workspace()

    def _buffers(self, x):
        """The reusable arrays for inputs shaped like x: cols, z (the output), dz, dcols, dx."""
        ws, created = self._workspace.get((x.shape, x.dtype.str))
        if created:
            n = x.shape[0]
            out_h, out_w, filters = self.output_shape
            kh, kw = self.kernel_size
            rows, depth = n * out_h * out_w, kh * kw * x.shape[3]
            # One input channel: cols in Fortran order, so im2col fills each column with
            # contiguous copies (4x faster); BLAS takes either order at the same speed.
            ws["cols"] = (np.empty((depth, rows), x.dtype).T if x.shape[3] == 1
                          else np.empty((rows, depth), x.dtype))
            ws["z"] = np.empty((rows, filters), x.dtype)
            ws["geometry"] = (out_h, out_w)
        return ws

    def forward(self, x, training=False):
        x = np.ascontiguousarray(x)
        ws = self._buffers(x)
        kernel = self.params["kernel"]
        bias = self.params.get("bias")
        kh, kw, _, filters = kernel.shape
        (sh, sw), (top, _, left, _) = self.strides, self._pads
        out_h, out_w = ws["geometry"]
        cols, z = ws["cols"], ws["z"]
        kernels._im2col_into(x, kh, kw, sh, sw, top, left, out_h, out_w, cols)
        np.matmul(cols, kernel.reshape(-1, filters), out=z)
        act = fused_activation_code(self.activation)
        if act is not None:
            out = fused.bias_act_forward(z, bias, act)
        else:
            if bias is not None:
                z += bias
            out = self.activation.forward(z)
        self._ws = ws
        self._act = act
        self._x_shape = x.shape
        self._output = out.reshape(x.shape[0], out_h, out_w, filters)
        return self._output

    def backward(self, dy):
        if self._act is None:
            return super().backward(dy)
        filters = self.filters
        dy2 = np.ascontiguousarray(dy).reshape(-1, filters)
        ws = self._ws
        dz = ws.get("dz")
        if dz is None:
            dz = ws["dz"] = np.empty_like(ws["z"])
        dbias = fused.act_backward_bias(dy2, self._output.reshape(-1, filters), self._act, dz,
                                        want_bias=self.use_bias)
        return self._backward_from_dz(dz, dbias)

    def backward_preactivation(self, dz):
        dz2 = np.ascontiguousarray(dz).reshape(-1, self.filters)
        return self._backward_from_dz(dz2, dz2.sum(axis=0) if self.use_bias else None)

    def _backward_from_dz(self, dz2, dbias):
        """dz2 = dL/dz as (N*OH*OW, F) -> dL/dx (or None for the first layer); fills grads."""
        ws = self._ws
        kernel = self.params["kernel"]
        kh, kw, _, filters = kernel.shape
        grad_kernel = self.grads["kernel"]
        if grad_kernel.dtype == dz2.dtype and grad_kernel.flags.c_contiguous:
            np.matmul(ws["cols"].T, dz2, out=grad_kernel.reshape(-1, filters))
        else:
            self.grads["kernel"] = (ws["cols"].T @ dz2).reshape(kernel.shape)
        if self.use_bias:
            self.grads["bias"][...] = dbias
        if not self.compute_input_gradient:  # the first layer: nobody needs dL/d(input)
            return None
        if "dx" not in ws:
            ws["dcols"] = np.empty(ws["cols"].shape, dz2.dtype)  # C order for col2im
            ws["dx"] = np.empty(self._x_shape, dz2.dtype)
        np.matmul(dz2, kernel.reshape(-1, filters).T, out=ws["dcols"])
        (sh, sw), (top, _, left, _) = self.strides, self._pads
        out_h, out_w = ws["geometry"]
        kernels._col2im_into(ws["dcols"], kh, kw, sh, sw, top, left, out_h, out_w, ws["dx"])
        return ws["dx"]

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
