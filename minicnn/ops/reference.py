"""The reference backend: every op of minicnn as readable NumPy, the math as a textbook writes it.

This is the file to read (and to change) for the math. ``minicnn.ops.set_backend("reference")``
(or ``MINICNN_BACKEND=reference``) makes fit, evaluate and predict run on exactly these
functions; the default backend, :mod:`minicnn.ops.fast`, has the same names, arguments and
results, only faster, and the tests hold the two together.

The contract of every op pair::

    y, cache = <op>_forward(inputs..., params..., settings..., ws=None)
    dx, dparams... = <op>_backward(dy, cache, ...)

``cache`` is what backward needs (the forward pass returns it; nothing is stored anywhere
else, so one op can run in many threads at once). ``ws`` is a dict of reusable buffers the
fast backend may fill; the reference ignores it and allocates fresh arrays. Backward passes sum
over the batch and never divide by it: the loss does that, once.

Notation::

    x       (N, H, W, C)      input batch, channels last (NHWC, as Keras)
    kernel  (KH, KW, C, F)    Keras layout: kernel height, width, in channels, filters
    strides (SH, SW)
    pads    (top, bottom, left, right), ints >= 0
    OH = (H + top + bottom - KH) // SH + 1
    OW = (W + left + right - KW) // SW + 1

Convolution is cross-correlation, as in Keras (the kernel is not flipped)::

    z[n, oh, ow, f] = sum_{i, j, c} xp[n, oh*SH + i, ow*SW + j, c] * kernel[i, j, c, f]

where ``xp`` is ``x`` zero-padded by ``pads``. Output dtype equals input dtype (float32 or
float64); nothing is promoted.
"""

from __future__ import annotations

import math

import numpy as np

from .padding import check_pool_pads, output_hw

__all__ = [
    "conv2d_naive", "im2col", "col2im",
    "conv2d_forward", "conv2d_backward",
    "dense_forward", "dense_backward",
    "ACTIVATIONS", "activation_forward", "activation_backward", "activation_input",
    "bias_activation_forward", "bias_activation_backward",
    "maxpool2d_forward", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward",
    "relu_general_forward", "relu_general_backward",
    "global_avgpool2d_forward", "global_avgpool2d_backward",
    "global_maxpool2d_forward", "global_maxpool2d_backward",
    "batchnorm_moments", "batchnorm_forward", "batchnorm_backward",
    "dropout_forward", "dropout_backward",
    "rescale_forward", "rescale_backward",
    "softmax_crossentropy_forward", "softmax_crossentropy_backward",
    "merge_forward", "merge_backward", "concatenate_forward", "concatenate_backward",
    "sgd_update", "rmsprop_update", "adagrad_update", "adam_update", "adamw_update",
]


# --------------------------------------------------------------------------- convolution


def conv2d_naive(x, kernel, bias, strides, pads):
    """Convolution by plain loops over n, oh, ow, f: the oracle the other versions are tested on.

    x: (N, H, W, C), kernel: (KH, KW, C, F), bias: (F,) or None -> y: (N, OH, OW, F), x.dtype.
    ``y[n, oh, ow, f] = bias[f] + sum_{i,j,c} xp[n, oh*SH + i, ow*SW + j, c] * kernel[i, j, c, f]``.
    Slow (pure Python loops); use it on small shapes only.
    """
    n_batch, h, w, _ = x.shape
    kh, kw, _, n_filters = kernel.shape
    sh, sw = strides
    top, bottom, left, right = pads
    oh_max, ow_max = output_hw(h, w, kh, kw, strides, pads)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    y = np.zeros((n_batch, oh_max, ow_max, n_filters), dtype=x.dtype)
    for n in range(n_batch):
        for oh in range(oh_max):
            for ow in range(ow_max):
                window = xp[n, oh * sh : oh * sh + kh, ow * sw : ow * sw + kw, :]  # (KH, KW, C)
                for f in range(n_filters):
                    y[n, oh, ow, f] = np.sum(window * kernel[:, :, :, f])
                    if bias is not None:
                        y[n, oh, ow, f] += bias[f]
    return y


def im2col(x, kh, kw, strides, pads):
    """Unfold every convolution window of x into one row of a matrix.

    x: (N, H, W, C) -> cols: (N*OH*OW, KH*KW*C), x.dtype.
    Rows are ordered (n, oh, ow); columns (i, j, c), so that
    ``cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c] = xp[n, oh*SH + i, ow*SW + j, c]``
    (``xp`` = x zero-padded; padded positions give 0), and
    ``cols @ kernel.reshape(KH*KW*C, F)`` is the convolution.

    As Chainer's ``utils/conv.py``: pad once, then loop only over the KH*KW kernel positions,
    each copying a strided slice of the whole batch.
    """
    n_batch, h, w, c = x.shape
    sh, sw = strides
    top, bottom, left, right = pads
    oh, ow = output_hw(h, w, kh, kw, strides, pads)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    cols = np.empty((n_batch, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # Kernel offset (i, j) meets the input at rows i, i+SH, ..., i+(OH-1)*SH.
            cols[:, :, :, i, j, :] = xp[:, i : i + sh * oh : sh, j : j + sw * ow : sw, :]
    return cols.reshape(n_batch * oh * ow, kh * kw * c)


def col2im(dcols, x_shape, kh, kw, strides, pads):
    """Fold rows back into an image, summing overlaps: the adjoint (transpose) of im2col.

    dcols: (N*OH*OW, KH*KW*C) -> dx: (N, H, W, C), dcols.dtype.
    ``dx[n, h, w, c] = sum of dcols[(n, oh, ow), (i, j, c)] over all (oh, ow, i, j) with
    oh*SH + i - top == h and ow*SW + j - left == w``; entries that fall into the padding are
    dropped. Adjoint means ``<im2col(x), dcols> == <x, col2im(dcols)>`` for all x, dcols,
    which is exactly what backpropagation through im2col needs.
    """
    n_batch, h, w, c = x_shape
    sh, sw = strides
    top, bottom, left, right = pads
    oh, ow = output_hw(h, w, kh, kw, strides, pads)
    dcols = dcols.reshape(n_batch, oh, ow, kh, kw, c)
    dxp = np.zeros((n_batch, h + top + bottom, w + left + right, c), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            # += on a strided slice is safe: within one (i, j) the slice has no repeated cells.
            dxp[:, i : i + sh * oh : sh, j : j + sw * ow : sw, :] += dcols[:, :, :, i, j, :]
    return np.ascontiguousarray(dxp[:, top : top + h, left : left + w, :])


def conv2d_forward(x, kernel, strides, pads, ws=None):
    """Convolution (no bias: see bias_activation_forward) via im2col and one matrix product.

    x: (N, H, W, C), kernel: (KH, KW, C, F) -> (z, cache): z (N, OH, OW, F) in x.dtype.
    ``z = im2col(x) @ kernel.reshape(KH*KW*C, F)``; the cache keeps the unfolded input.
    """
    n_batch, h, w, _ = x.shape
    kh, kw, _, n_filters = kernel.shape
    oh, ow = output_hw(h, w, kh, kw, strides, pads)
    cols = im2col(x, kh, kw, strides, pads)
    z = cols @ kernel.reshape(-1, n_filters)
    return z.reshape(n_batch, oh, ow, n_filters), (cols, x.shape, kernel, strides, pads)


def conv2d_backward(dz, cache, need_dx=True):
    """Gradients of conv2d_forward, given dL/dz (N, OH, OW, F).

    -> (dx (N, H, W, C) or None when ``need_dx`` is False, dkernel (KH, KW, C, F)), dz.dtype.
    With ``dZ = dz.reshape(N*OH*OW, F)``::

        dkernel = (cols.T @ dZ).reshape(KH, KW, C, F)
        dx      = col2im(dZ @ kernel.reshape(KH*KW*C, F).T)

    A network's first layer passes need_dx=False: nobody needs dL/d(images).
    """
    cols, x_shape, kernel, strides, pads = cache
    kh, kw, _, n_filters = kernel.shape
    dz2 = dz.reshape(-1, n_filters)
    dkernel = (cols.T @ dz2).reshape(kernel.shape)
    if not need_dx:
        return None, dkernel
    dcols = dz2 @ kernel.reshape(-1, n_filters).T
    return col2im(dcols, x_shape, kh, kw, strides, pads), dkernel


# --------------------------------------------------------------------------- dense


def dense_forward(x, kernel, ws=None):
    """Fully connected map on the last axis (no bias: see bias_activation_forward).

    x: (N, ..., IN), kernel: (IN, UNITS) -> (z, cache): z (N, ..., UNITS) = x @ kernel.
    """
    return x @ kernel, (x, kernel)


def dense_backward(dz, cache, need_dx=True):
    """Gradients of dense_forward: dz (N, ..., UNITS) -> (dx (N, ..., IN) or None, dkernel).

    ``dkernel = X.T @ dZ`` with every leading axis folded into the rows; ``dx = dz @ kernel.T``.
    """
    x, kernel = cache
    dkernel = x.reshape(-1, x.shape[-1]).T @ dz.reshape(-1, dz.shape[-1])
    return (dz @ kernel.T if need_dx else None), dkernel


# --------------------------------------------------------------------------- activations
#
# Each activation is a pair: forward(z) -> y, and backward(dy, z, y) -> dz, the
# vector-Jacobian product (the backward may use the input z, the output y, or both).


def linear_forward(z):
    """y = z."""
    return z


def linear_backward(dy, z, y):
    return dy


def relu_forward(z):
    """y = max(z, 0)."""
    return np.maximum(z, 0)


def relu_backward(dy, z, y):
    """dz = dy where z > 0, else 0 (the subgradient at 0 is taken as 0, as Keras)."""
    return np.where(z > 0, dy, 0).astype(dy.dtype, copy=False)


def _sigmoid(z):
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def _softplus(z):
    """log(1 + exp(z)) without overflow: max(z, 0) + log1p(exp(-|z|))."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


def sigmoid_forward(z):
    """y = 1 / (1 + exp(-z)), computed without overflow for large |z|."""
    return _sigmoid(z)


def sigmoid_backward(dy, z, y):
    """dz = dy * y * (1 - y)."""
    return dy * y * (1 - y)


def tanh_forward(z):
    """y = tanh(z)."""
    return np.tanh(z)


def tanh_backward(dy, z, y):
    """dz = dy * (1 - y^2)."""
    return dy * (1 - y * y)


def softmax_forward(z):
    """Row-wise softmax over the last axis: y_k = exp(z_k - max z) / sum_j exp(z_j - max z).

    Subtracting the max keeps exp from overflowing and does not change the result.
    """
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(dy, z, y):
    """dz = y * (dy - sum_k dy_k y_k), the softmax Jacobian J = diag(y) - y y^T applied to dy."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


def elu_forward(z):
    """y = z for z > 0, exp(z) - 1 otherwise (Keras's elu with alpha = 1)."""
    return np.where(z > 0, z, np.expm1(np.minimum(z, 0)))


def elu_backward(dy, z, y):
    """dz = dy for z > 0, dy * exp(z) = dy * (y + 1) otherwise."""
    return np.where(z > 0, dy, dy * (y + 1))


# SELU's constants (Klambauer et al., 2017), at the precision JAX and Keras use.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946


def selu_forward(z):
    """y = scale * z for z > 0, scale * alpha * (exp(z) - 1) otherwise."""
    t = z.dtype.type
    return t(SELU_SCALE) * np.where(z > 0, z, t(SELU_ALPHA) * np.expm1(np.minimum(z, 0)))


def selu_backward(dy, z, y):
    """dz = dy * scale for z > 0, dy * (y + scale * alpha) otherwise."""
    t = z.dtype.type
    return np.where(z > 0, dy * t(SELU_SCALE), dy * (y + t(SELU_SCALE * SELU_ALPHA)))


def _erf(x):
    """The error function elementwise, from Python's math.erf (NumPy has none). Exact but slow
    (a Python call per element); the fast backend has a compiled gelu."""
    return np.frompyfunc(math.erf, 1, 1)(x).astype(x.dtype)


def gelu_forward(z):
    """y = z * Phi(z) = 0.5 z (1 + erf(z / sqrt 2)): Keras's gelu with approximate=False."""
    t = z.dtype.type
    return t(0.5) * z * (1 + _erf(z * t(1 / math.sqrt(2))))


def gelu_backward(dy, z, y):
    """dz = dy * (Phi(z) + z phi(z)), phi(z) = exp(-z^2 / 2) / sqrt(2 pi) the normal density."""
    t = z.dtype.type
    cdf = t(0.5) * (1 + _erf(z * t(1 / math.sqrt(2))))
    pdf = np.exp(t(-0.5) * z * z) * t(1 / math.sqrt(2 * math.pi))
    return dy * (cdf + z * pdf)


def softplus_forward(z):
    """y = log(1 + exp(z))."""
    return _softplus(z)


def softplus_backward(dy, z, y):
    """dz = dy * sigmoid(z)."""
    return dy * _sigmoid(z)


def softsign_forward(z):
    """y = z / (1 + |z|)."""
    return z / (1 + np.abs(z))


def softsign_backward(dy, z, y):
    """dz = dy / (1 + |z|)^2."""
    return dy / (1 + np.abs(z)) ** 2


def silu_forward(z):
    """y = z * sigmoid(z) (swish)."""
    return z * _sigmoid(z)


def silu_backward(dy, z, y):
    """dz = dy * s (1 + z (1 - s)), s = sigmoid(z)."""
    s = _sigmoid(z)
    return dy * s * (1 + z * (1 - s))


def relu6_forward(z):
    """y = min(max(z, 0), 6)."""
    return np.clip(z, 0, 6)


def relu6_backward(dy, z, y):
    """dz = dy where 0 < z < 6, else 0."""
    return np.where((z > 0) & (z < 6), dy, 0).astype(dy.dtype, copy=False)


def hard_sigmoid_forward(z):
    """y = relu6(z + 3) / 6: 0 below -3, 1 above 3, z / 6 + 1/2 between."""
    return np.clip(z + 3, 0, 6) / 6


def hard_sigmoid_backward(dy, z, y):
    """dz = dy / 6 where -3 < z < 3, else 0."""
    return np.where((z > -3) & (z < 3), dy / 6, 0).astype(dy.dtype, copy=False)


def hard_silu_forward(z):
    """y = z * hard_sigmoid(z) (hard swish)."""
    return z * (np.clip(z + 3, 0, 6) / 6)


def hard_silu_backward(dy, z, y):
    """dz = dy * (hard_sigmoid(z) + z / 6 where -3 < z < 3)."""
    inside = (z > -3) & (z < 3)
    return dy * (np.clip(z + 3, 0, 6) / 6 + np.where(inside, z / 6, 0))


def exponential_forward(z):
    """y = exp(z)."""
    return np.exp(z)


def exponential_backward(dy, z, y):
    """dz = dy * y."""
    return dy * y


def leaky_relu_forward(z):
    """y = z for z >= 0, 0.2 z otherwise (Keras's leaky_relu activation; the LeakyReLU layer
    takes any slope, see relu_general_forward)."""
    return np.where(z >= 0, z, z.dtype.type(0.2) * z)


def leaky_relu_backward(dy, z, y):
    """dz = dy for z >= 0, 0.2 dy otherwise."""
    return np.where(z >= 0, dy, dy.dtype.type(0.2) * dy)


def mish_forward(z):
    """y = z * tanh(softplus(z))."""
    return z * np.tanh(_softplus(z))


def mish_backward(dy, z, y):
    """dz = dy * (tanh(sp) + z * (1 - tanh(sp)^2) * sigmoid(z)), sp = softplus(z)."""
    t = np.tanh(_softplus(z))
    return dy * (t + z * (1 - t * t) * _sigmoid(z))


def log_sigmoid_forward(z):
    """y = log(sigmoid(z)) = -softplus(-z)."""
    return -_softplus(-z)


def log_sigmoid_backward(dy, z, y):
    """dz = dy * sigmoid(-z)."""
    return dy * _sigmoid(-z)


def hard_tanh_forward(z):
    """y = clip(z, -1, 1)."""
    return np.clip(z, -1, 1)


def hard_tanh_backward(dy, z, y):
    """dz = dy where -1 < z < 1, else 0."""
    return np.where((z > -1) & (z < 1), dy, 0).astype(dy.dtype, copy=False)


ACTIVATIONS = {
    "linear": (linear_forward, linear_backward),
    "relu": (relu_forward, relu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
    "softmax": (softmax_forward, softmax_backward),
    "elu": (elu_forward, elu_backward),
    "selu": (selu_forward, selu_backward),
    "gelu": (gelu_forward, gelu_backward),
    "softplus": (softplus_forward, softplus_backward),
    "softsign": (softsign_forward, softsign_backward),
    "silu": (silu_forward, silu_backward),
    "relu6": (relu6_forward, relu6_backward),
    "hard_sigmoid": (hard_sigmoid_forward, hard_sigmoid_backward),
    "hard_silu": (hard_silu_forward, hard_silu_backward),
    "exponential": (exponential_forward, exponential_backward),
    "leaky_relu": (leaky_relu_forward, leaky_relu_backward),
    "mish": (mish_forward, mish_backward),
    "log_sigmoid": (log_sigmoid_forward, log_sigmoid_backward),
    "hard_tanh": (hard_tanh_forward, hard_tanh_backward),
}


def activation_forward(x, activation, ws=None):
    """y = activation(x) by name ('relu', 'softmax', ...: the keys of ACTIVATIONS).

    x: any shape -> (y same shape and dtype, cache).
    """
    forward, _ = ACTIVATIONS[activation]
    y = forward(x)
    return y, (activation, x, y)


def activation_backward(dy, cache):
    """dy = dL/dy -> dL/dx, through the activation's vector-Jacobian product."""
    activation, x, y = cache
    _, backward = ACTIVATIONS[activation]
    return backward(dy, x, y)


def activation_input(cache):
    """The input z of the activation whose forward made `cache` (for softmax: the logits)."""
    return cache[1]


def bias_activation_forward(z, bias, activation, ws=None):
    """y = activation(z + bias): the end of every Conv2D and Dense layer.

    z: (..., F), bias: (F,) or None (use_bias=False) -> (y (..., F), cache).
    """
    if bias is not None:
        z = z + bias
    return activation_forward(z, activation)


def bias_activation_backward(dy, cache, need_dbias=True):
    """dy (..., F) -> (dz (..., F), dbias (F,) or None): dz through the activation, then
    ``dbias = dz`` summed over every axis but the last (the bias is added at every position)."""
    dz = activation_backward(dy, cache)
    return dz, (dz.reshape(-1, dz.shape[-1]).sum(axis=0) if need_dbias else None)


def relu_general_forward(x, negative_slope=0.0, max_value=None, threshold=0.0, ws=None):
    """Keras's relu(x, negative_slope, max_value, threshold): the ReLU and LeakyReLU layers.

    x: any shape -> (y same shape and dtype, cache)::

        y = min(x, max_value)                  where x > threshold   (no cap if max_value None)
        y = negative_slope * (x - threshold)   elsewhere

    The defaults give max(x, 0); negative_slope alone gives a leaky ReLU.
    """
    t = x.dtype.type
    above = x > t(threshold)
    top = x if max_value is None else np.minimum(x, t(max_value))
    y = np.where(above, top, t(negative_slope) * (x - t(threshold)))
    return y, (x, negative_slope, max_value, threshold)


def relu_general_backward(dy, cache):
    """dL/dy -> dL/dx: dy where threshold < x < max_value, negative_slope * dy where
    x < threshold, 0 elsewhere (above the cap, and at the kinks, as Keras's subgradient)."""
    x, negative_slope, max_value, threshold = cache
    t = x.dtype.type
    passes = x > t(threshold)
    if max_value is not None:
        passes &= x < t(max_value)
    below = x < t(threshold)
    return np.where(passes, dy, np.where(below, t(negative_slope) * dy, t(0)))


# --------------------------------------------------------------------------- pooling


def _windows(x, pool_size, strides, pads, fill):
    """windows[n, oh, ow, i*PW + j, c] = xp[n, oh*SH + i, ow*SW + j, c], xp padded with fill."""
    n_batch, h, w, c = x.shape
    ph, pw = pool_size
    sh, sw = strides
    top, bottom, left, right = pads
    oh, ow = output_hw(h, w, ph, pw, strides, pads)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    windows = np.empty((n_batch, oh, ow, ph * pw, c), dtype=x.dtype)
    for i in range(ph):
        for j in range(pw):
            windows[:, :, :, i * pw + j, :] = xp[:, i : i + sh * oh : sh, j : j + sw * ow : sw, :]
    return windows


def maxpool2d_forward(x, pool_size, strides, pads, ws=None):
    """Max over each window, channels independent; padding never wins (it acts as -inf).

    x: (N, H, W, C), pool_size (PH, PW) -> (y (N, OH, OW, C) x.dtype, cache). The cache holds
    ``argmax`` (N, OH, OW, C) int64: the flat position ``h*W + w`` in (unpadded) x of each
    window's maximum. Ties go to the first maximum in row-major (i, j) window order. Pads must
    be smaller than the pool size (ValueError otherwise).
    """
    check_pool_pads("maxpool2d_forward", pool_size, pads)
    _, _, w, _ = x.shape
    pw = pool_size[1]
    sh, sw = strides
    top, _, left, _ = pads
    windows = _windows(x, pool_size, strides, pads, -np.inf)
    k = np.argmax(windows, axis=3)  # first maximum wins ties, in (i, j) row-major order
    y = np.take_along_axis(windows, k[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    # Window position k = i*PW + j  ->  unpadded input coordinates (h, w).
    oh, ow = y.shape[1:3]
    rows = np.arange(oh)[None, :, None, None] * sh + k // pw - top
    cols = np.arange(ow)[None, None, :, None] * sw + k % pw - left
    return y, ((rows * w + cols).astype(np.int64), x.shape)


def maxpool2d_backward(dy, cache):
    """Route each output gradient to the input position that won the max.

    dy: (N, OH, OW, C) -> dx (N, H, W, C): ``dx[n, h, w, c] = sum of dy[n, oh, ow, c] over the
    windows whose argmax is h*W + w`` (overlapping windows can pick the same input).
    """
    argmax, x_shape = cache
    n_batch, h, w, c = x_shape
    dx = np.zeros((n_batch, h * w, c), dtype=dy.dtype)
    n_idx = np.arange(n_batch)[:, None, None, None]
    c_idx = np.arange(c)[None, None, None, :]
    np.add.at(dx, (n_idx, argmax, c_idx), dy)  # unbuffered: repeated indices accumulate
    return dx.reshape(x_shape)


def avgpool2d_forward(x, pool_size, strides, pads, ws=None):
    """Mean over each window of real inputs (padding is not counted, as Keras/TensorFlow).

    x: (N, H, W, C) -> (y (N, OH, OW, C) x.dtype, cache).
    ``y[n, oh, ow, c] = sum of the window's real inputs / count[oh, ow]``.
    """
    check_pool_pads("avgpool2d_forward", pool_size, pads)
    ones = np.ones((1, *x.shape[1:3], 1), dtype=x.dtype)
    count = _windows(ones, pool_size, strides, pads, 0).sum(axis=3)  # (1, OH, OW, 1)
    y = _windows(x, pool_size, strides, pads, 0).sum(axis=3) / count
    return y.astype(x.dtype, copy=False), (count, x.shape, pool_size, strides, pads)


def avgpool2d_backward(dy, cache):
    """Each window's dy / count spread evenly over its real inputs: col2im of the windows."""
    count, x_shape, pool_size, strides, pads = cache
    ph, pw = pool_size
    share = (dy / count).astype(dy.dtype, copy=False)  # (N, OH, OW, C)
    n_batch, oh, ow, c = dy.shape
    # A window's share goes to all its PH*PW cells; col2im adds them up and drops the padding.
    dcols = np.broadcast_to(share[:, :, :, None, None, :], (n_batch, oh, ow, ph, pw, c))
    return col2im(dcols.reshape(n_batch * oh * ow, ph * pw * c), x_shape, ph, pw, strides, pads)


def global_avgpool2d_forward(x, ws=None):
    """Mean over the spatial axes: x (N, H, W, C) -> (y (N, C), cache),
    ``y[n, c] = sum_{h, w} x[n, h, w, c] / (H * W)``."""
    n_batch, h, w, c = x.shape
    y = x.reshape(n_batch, h * w, c).sum(axis=1) / x.dtype.type(h * w)
    return y, x.shape


def global_avgpool2d_backward(dy, cache):
    """dy (N, C) -> dx (N, H, W, C): every position gets dy / (H * W)."""
    n_batch, h, w, c = cache
    share = dy / dy.dtype.type(h * w)
    return np.ascontiguousarray(np.broadcast_to(share[:, None, None, :], (n_batch, h, w, c)))


def global_maxpool2d_forward(x, ws=None):
    """Max over the spatial axes: x (N, H, W, C) -> (y (N, C), cache). The cache holds the flat
    position h*W + w of each maximum (the first in row-major order on ties), as max pooling."""
    n_batch, h, w, c = x.shape
    flat = x.reshape(n_batch, h * w, c)
    argmax = flat.argmax(axis=1)  # (N, C)
    y = np.take_along_axis(flat, argmax[:, None, :], axis=1)[:, 0, :]
    return y, (argmax, x.shape)


def global_maxpool2d_backward(dy, cache):
    """dy (N, C) -> dx (N, H, W, C): each gradient goes to the position that won the max."""
    argmax, (n_batch, h, w, c) = cache
    dx = np.zeros((n_batch, h * w, c), dtype=dy.dtype)
    np.put_along_axis(dx, argmax[:, None, :], dy[:, None, :], axis=1)
    return dx.reshape(n_batch, h, w, c)


# --------------------------------------------------------------------------- batch normalization
#
# Statistics are those of the whole batch even when it is split over threads (minicnn/parallel.py):
# a per-shard partial sum goes through ``allreduce(array) -> the sum of array over every shard``,
# which is the identity (None) for a batch that is not split. Sums are accumulated in float64
# (a float32 sum of 10^5 terms loses digits); the results come back in x's dtype.


def _alone(array):
    return array


def batchnorm_moments(x, allreduce=None):
    """Per-channel mean and (biased) variance of the whole batch, over every axis but the last.

    x: (..., C) -> (mean (C,), variance (C,)) in x.dtype, in two passes as NumPy's var::

        mean     = sum(x) / M                 M = number of rows (all positions of all samples)
        variance = sum((x - mean)^2) / M

    allreduce: see above (each sum is one allreduce, the count travels with the first).
    """
    allreduce = allreduce or _alone
    rows = x.reshape(-1, x.shape[-1])
    first = allreduce(np.append(rows.sum(axis=0, dtype=np.float64), rows.shape[0]))
    count = first[-1]
    mean = first[:-1] / count
    variance = allreduce(((rows - mean) ** 2).sum(axis=0)) / count
    return mean.astype(x.dtype), variance.astype(x.dtype)


def batchnorm_forward(x, mean, variance, gamma, beta, epsilon, ws=None):
    """Normalise every channel (last axis), then scale and shift it.

    x: (..., C); mean, variance: (C,) (the batch's in training, the moving ones in inference);
    gamma, beta: (C,) or None (scale=False / center=False) -> (y like x, cache)::

        y = gamma * (x - mean) / sqrt(variance + epsilon) + beta

    computed as Keras does: ``inv = gamma / sqrt(variance + epsilon)``, ``y = x * inv +
    (beta - mean * inv)``.
    """
    t = x.dtype.type
    inv = 1 / np.sqrt(variance + t(epsilon))
    scale = inv if gamma is None else inv * gamma
    shift = -mean * scale
    if beta is not None:
        shift = shift + beta
    return x * scale + shift, (x, mean, inv, gamma)


def batchnorm_backward(dy, cache, training, allreduce=None, need_dx=True):
    """Gradients of batchnorm_forward: dy (..., C) -> (dx or None, dgamma (C,), dbeta (C,)).

    With ``xhat = (x - mean) / sqrt(variance + epsilon)``, this shard's sums::

        dbeta  = sum(dy)          dgamma = sum(dy * xhat)

    training=False (mean and variance are constants): ``dx = dy * gamma * inv``.
    training=True (they are the batch's, so they depend on x): with the whole batch's sums
    (allreduce) and row count M,
    ``dx = gamma * inv * (dy - sum(dy) / M - xhat * sum(dy * xhat) / M)``.
    dgamma and dbeta are this shard's own sums (the model adds the shards' gradients).
    """
    x, mean, inv, gamma = cache
    c = x.shape[-1]
    rows, drows = x.reshape(-1, c), dy.reshape(-1, c)
    xhat = (rows - mean) * inv
    dbeta = drows.sum(axis=0, dtype=np.float64)
    dgamma = (drows * xhat).sum(axis=0, dtype=np.float64)
    grads = dgamma.astype(dy.dtype), dbeta.astype(dy.dtype)
    if not need_dx:
        return (None, *grads)
    g = inv if gamma is None else gamma * inv
    if not training:
        return dy * g, *grads
    totals = (allreduce or _alone)(np.concatenate([dbeta, dgamma, [rows.shape[0]]]))
    count = totals[-1]
    mean_dy = (totals[:c] / count).astype(dy.dtype)
    mean_dy_xhat = (totals[c:2 * c] / count).astype(dy.dtype)
    dx = g * (drows - mean_dy - xhat * mean_dy_xhat)
    return dx.reshape(dy.shape), *grads


# --------------------------------------------------------------------------- dropout


def dropout_forward(x, rate, noise_shape, rng, ws=None):
    """Inverted dropout: zero each entry with probability `rate`, scale the rest by 1/(1 - rate),
    so the expected output is x and inference needs no rescaling (Keras's formula).

    x: any shape; noise_shape: the mask's shape (x.shape, or with 1s where one draw is shared,
    e.g. (N, 1, 1, C) drops whole channels); rng: a numpy Generator (the layer's ctx.rng()).
    -> (y like x, cache)::

        u = rng.random(noise_shape)          uniform in [0, 1), one draw per mask entry
        keep = u >= rate                     P(keep) = 1 - rate
        y = x / (1 - rate) where keep, else 0
    """
    keep_prob = x.dtype.type(1 - rate)
    if rate >= 1:  # nothing kept (and no division by 0)
        return np.zeros_like(x), (np.zeros(noise_shape, bool), keep_prob)
    keep = rng.random(noise_shape, dtype=x.dtype) >= rate
    return np.where(keep, x / keep_prob, x.dtype.type(0)), (keep, keep_prob)


def dropout_backward(dy, cache):
    """dL/dy -> dL/dx = dy / (1 - rate) where the entry was kept, else 0."""
    keep, keep_prob = cache
    if keep_prob == 0:
        return np.zeros_like(dy)
    return np.where(keep, dy / keep_prob, dy.dtype.type(0))


# --------------------------------------------------------------------------- rescaling


def rescale_forward(x, scale, offset, ws=None):
    """y = x * scale + offset (Keras's Rescaling, e.g. scale=1/255 for pixels): x any shape."""
    t = x.dtype.type
    return x * t(scale) + t(offset), scale


def rescale_backward(dy, cache):
    """dL/dx = dy * scale."""
    return dy * dy.dtype.type(cache)


# ------------------------------------------------------------------- softmax + cross-entropy


def softmax_crossentropy_forward(logits, target, ws=None):
    """Cross-entropy of softmax(logits) against the target, per sample, computed from logits.

    logits: (N, K); target: (N,) integer class labels, or (N, K) probabilities (one-hot or soft)
    -> (loss (N,), cache). ``loss_n = -sum_k t_nk log softmax(z_n)_k`` with the log-softmax
    computed stably as ``z - max z - log sum exp(z - max z)``. This pair is one op, not a
    softmax followed by a log: fused, it never takes the log of a probability that rounded to 0.
    """
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    target = _dense_target(target, logits.shape[-1], logits.dtype)
    loss = -(target * log_probs).sum(axis=-1)
    return loss, (np.exp(log_probs), target)


def softmax_crossentropy_backward(dloss, cache):
    """dloss (N,) = dL/dloss_n (the loss's weights, e.g. 1/N) -> dL/dlogits (N, K).

    ``dlogits_n = dloss_n * (sum_k t_nk * softmax(z_n) - t_n)``, which is ``p - onehot`` for a
    one-hot target: the chain rule through log-softmax, in one step.
    """
    probs, target = cache
    scale = dloss.astype(probs.dtype, copy=False)[:, None]
    return scale * (probs * target.sum(axis=-1, keepdims=True) - target)


def _dense_target(target, num_classes, dtype):
    """(N,) labels -> one-hot (N, K); (N, K) probabilities pass through in `dtype`."""
    target = np.asarray(target)
    if target.ndim == 1:
        onehot = np.zeros((target.size, num_classes), dtype=dtype)
        onehot[np.arange(target.size), target.astype(np.intp)] = 1
        return onehot
    return target.astype(dtype, copy=False)


# --------------------------------------------------------------------------- merging tensors


def _unbroadcast(g, shape):
    """Sum g down to `shape`: the adjoint of NumPy broadcasting (the batch axis included)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


def merge_forward(xs, mode, ws=None):
    """Elementwise merge of several tensors (broadcast as NumPy does), as Keras's merge layers.

    xs: a list of arrays; mode: 'add' (sum), 'subtract' (x0 - x1, two inputs), 'multiply'
    (product), 'average' (sum / n), 'maximum' (the largest, first wins ties)
    -> (y, cache).
    """
    if mode == "add":
        y = xs[0] + sum(xs[1:])
    elif mode == "subtract":
        y = xs[0] - xs[1]
    elif mode == "multiply":
        y = xs[0]
        for x in xs[1:]:
            y = y * x
    elif mode == "average":
        y = (xs[0] + sum(xs[1:])) / xs[0].dtype.type(len(xs))
    elif mode == "maximum":
        y = xs[0]
        for x in xs[1:]:
            y = np.maximum(y, x)
    else:
        raise ValueError(f"merge_forward: unknown mode {mode!r}.")
    return y, (mode, xs, y)


def merge_backward(dy, cache):
    """dy -> one gradient per input (summed over the axes it was broadcast along).

    add: dy each; subtract: dy, -dy; multiply: dy times the product of the others; average:
    dy / n each; maximum: dy to the input that held the maximum (the first, on ties).
    """
    mode, xs, y = cache
    if mode == "add":
        grads = [dy for _ in xs]
    elif mode == "subtract":
        grads = [dy, -dy]
    elif mode == "multiply":
        grads = []
        for i in range(len(xs)):
            g = dy
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            grads.append(g)
    elif mode == "average":
        grads = [dy / dy.dtype.type(len(xs)) for _ in xs]
    else:  # maximum: route to the first input equal to the max
        taken = np.zeros(np.broadcast_shapes(*(x.shape for x in xs)), dtype=bool)
        grads = []
        for x in xs:
            wins = (x == y) & ~taken
            taken |= wins
            grads.append(np.where(wins, dy, 0).astype(dy.dtype, copy=False))
    return [_unbroadcast(g, x.shape) for g, x in zip(grads, xs, strict=True)]


def concatenate_forward(xs, axis=-1, ws=None):
    """Join arrays along `axis` (all other sizes equal) -> (y, cache)."""
    return np.concatenate(xs, axis=axis), ([x.shape[axis] for x in xs], axis)


def concatenate_backward(dy, cache):
    """dy -> the pieces of dy that came from each input."""
    sizes, axis = cache
    return np.split(dy, np.cumsum(sizes)[:-1], axis=axis)


# --------------------------------------------------------------------------- optimizer update


# Each update works in place on one parameter array and its slots (the optimizer's state for
# it, see minicnn/optimizers.py), in the parameter's dtype, with the scalars (learning rate,
# decay factors) given as Python floats. Slots that decay geometrically (moments, velocities)
# are set to 0 once they fall below the dtype's smallest normal number, as the flush-to-zero
# CPU kernels of TensorFlow and XLA do: a weight whose gradient stays 0 (a dead ReLU unit)
# would otherwise spend its slots in subnormal numbers, where arithmetic is ~10x slower.


def _flush_subnormals(slot):
    # slot *= (|slot| >= tiny): ~10x faster than the masked assignment slot[|slot| < tiny] = 0
    # when many entries are 0 (the dead units this is for).
    np.multiply(slot, np.abs(slot) >= np.finfo(slot.dtype).tiny, out=slot)


def sgd_update(grad, param, velocity, learning_rate, momentum, nesterov):
    """Keras's SGD step, in place. velocity: the momentum slot, or None without momentum.

    Plain: ``param -= lr g``. With momentum: ``velocity = momentum velocity - lr g``, then
    ``param += velocity``, or with nesterov ``param += momentum velocity - lr g``.
    """
    t = param.dtype.type
    lr = t(learning_rate)
    if velocity is None:
        param -= lr * grad
        return
    mu = t(momentum)
    velocity *= mu
    velocity -= lr * grad
    _flush_subnormals(velocity)
    if nesterov:
        param += mu * velocity - lr * grad
    else:
        param += velocity


def rmsprop_update(grad, param, velocity, momentum_buffer, average_grad, learning_rate, rho,
                   momentum, epsilon):
    """Keras's RMSprop step, in place (Hinton, 2012).

    ``velocity = rho velocity + (1 - rho) g^2``; centered (average_grad not None): also
    ``average_grad = rho average_grad + (1 - rho) g`` and the denominator is
    ``velocity - average_grad^2 + eps``, otherwise ``velocity + eps`` (epsilon inside the
    square root, as Keras). ``increment = lr g / sqrt(denominator)``; with a momentum slot
    (momentum_buffer not None) ``momentum_buffer = momentum momentum_buffer + increment`` and
    ``param -= momentum_buffer``, otherwise ``param -= increment``.
    """
    t = param.dtype.type
    velocity *= t(rho)
    velocity += t(1 - rho) * (grad * grad)
    _flush_subnormals(velocity)
    if average_grad is not None:
        average_grad *= t(rho)
        average_grad += t(1 - rho) * grad
        _flush_subnormals(average_grad)
        denominator = velocity - average_grad * average_grad + t(epsilon)
    else:
        denominator = velocity + t(epsilon)
    increment = t(learning_rate) * grad / np.sqrt(denominator)
    if momentum_buffer is None:
        param -= increment
        return
    momentum_buffer *= t(momentum)
    momentum_buffer += increment
    _flush_subnormals(momentum_buffer)
    param -= momentum_buffer


def adagrad_update(grad, param, accumulator, learning_rate, epsilon):
    """Keras's Adagrad step, in place (Duchi et al., 2011).

    ``accumulator += g^2``, ``param -= lr g / sqrt(accumulator + eps)``. The accumulator
    starts at initial_accumulator_value (0.1), not 0, and only grows.
    """
    t = param.dtype.type
    accumulator += grad * grad
    param -= t(learning_rate) * grad / np.sqrt(accumulator + t(epsilon))


def adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon):
    """Keras's Adam step on one parameter array, in place (param, m and v are updated).

    ``m += (1 - b1)(g - m)``, ``v += (1 - b2)(g^2 - v)``, ``param -= alpha m / (sqrt(v) + eps)``
    with alpha already bias-corrected (see optimizers.Adam). m and v are flushed to zero
    below the smallest normal number (see above).
    """
    t = param.dtype.type
    m += t(1 - beta_1) * (grad - m)
    v += t(1 - beta_2) * (grad * grad - v)
    _flush_subnormals(m)
    _flush_subnormals(v)
    param -= t(alpha) * m / (np.sqrt(v) + t(epsilon))


def adamw_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon, decay):
    """AdamW (Loshchilov & Hutter, 2019) as Keras does it: decoupled weight decay
    ``param -= param * decay`` (decay = weight_decay * learning rate), then the Adam step."""
    param -= param * param.dtype.type(decay)
    adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon)
