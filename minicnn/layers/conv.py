"""Conv2D: shapes, parameters and Keras's padding rule. The math is in minicnn/ops:
ops.conv2d_forward/backward (im2col + one matrix product) and ops.bias_activation_forward/
backward (y = activation(z + bias)), readable in ops/reference.py.
"""

from .. import arguments, ops
from .base import ActivatedLayer, SlidingWindow, normalize_padding


class Conv2D(SlidingWindow, ActivatedLayer):
    """2-D convolution (cross-correlation, as Keras), channels last.

    x: (N, H, W, C) -> y: (N, OH, OW, filters) with, per spatial axis,
    'valid': OH = (H - KH) // SH + 1;  'same': OH = ceil(H / SH), the extra padding row/column
    going to the bottom/right (Keras's rule). kernel: (KH, KW, C, filters), bias: (filters,).
    """

    _window_arg = "kernel_size"
    _too_big_fix = "a smaller kernel, or fewer pooling layers before this one"

    def __init__(self, filters, kernel_size, strides=(1, 1), padding="valid", activation=None,
                 use_bias=True, kernel_initializer="glorot_uniform", bias_initializer="zeros",
                 kernel_regularizer=None, bias_regularizer=None, **kwargs):
        super().__init__(activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer,
                         bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer,
                         bias_regularizer=bias_regularizer, **kwargs)
        self.filters = arguments.integer(filters, "filters", self.where, minimum=1)
        self.kernel_size = arguments.int_tuple(kernel_size, 2, "kernel_size", self.where)
        self.strides = arguments.int_tuple(strides, 2, "strides", self.where)
        self.padding = normalize_padding(padding, self.where)

    def _window(self):
        return self.kernel_size

    def _validate_input_shape(self, input_shape):
        hint = ""
        if len(input_shape) == 3:
            h, w = input_shape[1:]
            hint = (f" For grayscale images add a channel axis: "
                    f"x.reshape(-1, {h}, {w}, 1) and input_shape=({h}, {w}, 1).")
        self._check_image_input(input_shape, hint)

    def weight_shapes(self, input_shape):
        self._validate_input_shape(input_shape)  # as build: a file is checked against these
        shapes = {"kernel": (*self.kernel_size, input_shape[-1], self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def compute_output_shape(self, input_shape):
        out_h, out_w, _ = self._geometry(input_shape)
        return (input_shape[0], out_h, out_w, self.filters)

    def forward(self, x, ctx):
        # z = conv(x, kernel); y = activation(z + bias)
        z, conv_cache = ops.active.conv2d_forward(x, self.params["kernel"], self.strides,
                                                  self._pads, ws=ctx.workspace("conv2d"))
        y, act_cache = ops.active.bias_activation_forward(
            z, self.params.get("bias"), self.activation, ws=ctx.workspace("bias_activation"))
        ctx.save(conv_cache, act_cache)
        return y

    def _affine_backward(self, dz, ctx):
        conv_cache, _ = ctx.saved
        return ops.active.conv2d_backward(dz, conv_cache, need_dx=ctx.need_input_grad)

    def flops(self):
        _, out_h, out_w, filters = self.output_shape
        kh, kw = self.kernel_size
        return 2 * out_h * out_w * filters * kh * kw * self.input_shape[-1]

    def get_config(self):
        return {
            "filters": self.filters,
            "kernel_size": list(self.kernel_size),
            "strides": list(self.strides),
            "padding": self.padding,
            **super().get_config(),
        }
