"""Conv2D: shapes, parameters and Keras's padding rule. The math is in minicnn/ops:
ops.conv2d_forward/backward (im2col + one matrix product) and ops.bias_activation_forward/
backward (y = activation(z + bias)), readable in ops/reference.py.
"""

from .. import arguments, ops
from .base import ActivatedLayer, normalize_padding


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
        self.filters = arguments.integer(filters, "filters", self.where, minimum=1)
        self.kernel_size = arguments.int_tuple(kernel_size, 2, "kernel_size", self.where)
        self.strides = arguments.int_tuple(strides, 2, "strides", self.where)
        self.padding = normalize_padding(padding, self.where)

    def _validate_input_shape(self, input_shape):
        sample = input_shape[1:]
        if len(sample) != 3:
            hint = ""
            if len(sample) == 2:
                h, w = sample
                hint = (f" For grayscale images add a channel axis: "
                        f"x.reshape(-1, {h}, {w}, 1) and input_shape=({h}, {w}, 1).")
            raise ValueError(
                f"{self.where}: expects inputs of shape (N, height, width, channels), got "
                f"per-sample shape {sample}.{hint}"
            )
        sizes = zip(("height", "width"), sample[:2], self.kernel_size, strict=True)
        for axis, size, k in sizes:
            if self.padding == "valid" and k > size:
                raise ValueError(
                    f"{self.where}: kernel_size {self.kernel_size} is bigger than the input "
                    f"{axis} {size} (input shape {sample}). Use padding='same', a smaller "
                    "kernel, or fewer pooling layers before this one."
                )

    def weight_shapes(self, input_shape):
        shapes = {"kernel": (*self.kernel_size, input_shape[-1], self.filters)}
        if self.use_bias:
            shapes["bias"] = (self.filters,)
        return shapes

    def _geometry(self, input_shape):
        return ops.conv_geometry(tuple(input_shape[1:3]), self.kernel_size, self.strides,
                                 self.padding)

    def compute_output_shape(self, input_shape):
        out_h, out_w, _ = self._geometry(input_shape)
        return (input_shape[0], out_h, out_w, self.filters)

    def build(self, input_shape):
        super().build(input_shape)
        self._pads = self._geometry(self.input_shape)[2]

    def forward(self, x, ctx):
        # z = conv(x, kernel); y = activation(z + bias)
        z, conv_cache = ops.conv2d_forward(x, self.params["kernel"], self.strides, self._pads,
                                           ws=ctx.workspace("conv2d"))
        y, act_cache = ops.bias_activation_forward(z, self.params.get("bias"), self.activation,
                                                   ws=ctx.workspace("bias_activation"))
        ctx.save(conv_cache, act_cache)
        return y

    def backward(self, dy, ctx):
        _, act_cache = ctx.saved
        dz, dbias = ops.bias_activation_backward(
            dy, act_cache, need_dbias=self.use_bias and ctx.need_param_grads)
        return self._affine_backward(dz, dbias, ctx)

    def _affine_backward(self, dz, dbias, ctx):
        conv_cache, _ = ctx.saved
        dx, dkernel = ops.conv2d_backward(dz, conv_cache, need_dx=ctx.need_input_grad)
        if ctx.need_param_grads:
            ctx.grads["kernel"] = dkernel
            if self.use_bias:
                ctx.grads["bias"] = dbias
        return dx

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
