"""Readable NumPy reference for the convolution and max-pooling ops (NHWC).

This is the file to read for the math; :mod:`minicnn.ops.kernels` has fast Numba twins with the
same names, argument order and return values, and the tests hold the two together.

Notation (used in every docstring below)::

    x       (N, H, W, C)      input batch, channels last
    kernel  (KH, KW, C, F)    Keras layout: kernel height, width, in channels, filters
    bias    (F,)
    strides (SH, SW)
    pads    (top, bottom, left, right), ints >= 0
    OH = (H + top + bottom - KH) // SH + 1
    OW = (W + left + right - KW) // SW + 1

Convolution is cross-correlation, as in Keras (the kernel is not flipped)::

    y[n, oh, ow, f] = bias[f] + sum_{i, j, c} xp[n, oh*SH + i, ow*SW + j, c] * kernel[i, j, c, f]

where ``xp`` is ``x`` zero-padded by ``pads``. Output dtype equals input dtype (float32 or
float64); nothing is promoted. Nothing divides by the batch size: the loss does that.
"""

from __future__ import annotations

import numpy as np

from .padding import check_pool_pads, output_hw

__all__ = [
    "conv2d_naive",
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward",
    "maxpool2d_forward",
    "maxpool2d_backward",
]


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


def conv2d_forward(x, kernel, bias, strides, pads):
    """Convolution via im2col and one matrix product.

    x: (N, H, W, C), kernel: (KH, KW, C, F), bias: (F,) or None (use_bias=False)
    -> (y, cols): y (N, OH, OW, F) x.dtype; cols (N*OH*OW, KH*KW*C), kept for the backward pass.
    ``y = cols @ kernel.reshape(KH*KW*C, F) + bias``.
    """
    n_batch, h, w, _ = x.shape
    kh, kw, _, n_filters = kernel.shape
    oh, ow = output_hw(h, w, kh, kw, strides, pads)
    cols = im2col(x, kh, kw, strides, pads)
    y = cols @ kernel.reshape(-1, n_filters)
    if bias is not None:
        y += bias  # in place, so y keeps x's dtype
    return y.reshape(n_batch, oh, ow, n_filters), cols


def conv2d_backward(dy, x_shape, cols, kernel, strides, pads, *, use_bias=True,
                    compute_dx=True):
    """Gradients of conv2d_forward, given dL/dy.

    dy: (N, OH, OW, F), x_shape (N, H, W, C), cols from conv2d_forward, kernel (KH, KW, C, F)
    -> (dx, dkernel, dbias): dx (N, H, W, C), dkernel (KH, KW, C, F), dbias (F,), or None
    when ``use_bias=False``. All in dy.dtype. With ``dY = dy.reshape(N*OH*OW, F)``::

        dkernel = (cols.T @ dY).reshape(KH, KW, C, F)
        dbias   = dY.sum(axis=0)
        dx      = col2im(dY @ kernel.reshape(KH*KW*C, F).T)

    Sums over the batch, never averages (the loss divides by the batch size).
    ``compute_dx=False`` returns dx as None (for a network's first layer).
    """
    kh, kw, _, n_filters = kernel.shape
    dy2 = dy.reshape(-1, n_filters)
    dkernel = (cols.T @ dy2).reshape(kernel.shape)
    dbias = dy2.sum(axis=0) if use_bias else None
    if not compute_dx:  # the first layer: nobody needs dL/d(input), skip the scatter
        return None, dkernel, dbias
    dcols = dy2 @ kernel.reshape(-1, n_filters).T
    dx = col2im(dcols, x_shape, kh, kw, strides, pads)
    return dx, dkernel, dbias


def maxpool2d_forward(x, pool_size, strides, pads):
    """Max pooling, channels independent; padding never wins (it acts as -inf, like Keras 'same').

    x: (N, H, W, C), pool_size (PH, PW) -> (y, argmax): y (N, OH, OW, C) x.dtype;
    argmax (N, OH, OW, C) int64 holding the flat spatial index ``h*W + w`` (unpadded
    coordinates in x) of the maximum of each window, for that sample and channel.
    ``OH = (H + top + bottom - PH) // SH + 1``. Ties go to the first maximum in row-major
    (i, j) window order. Pads must be smaller than the pool size (ValueError otherwise).
    Inputs are assumed finite (a window of -inf or NaN values may pick a different index than
    the Numba kernel).
    """
    check_pool_pads("maxpool2d_forward", pool_size, pads)
    n_batch, h, w, c = x.shape
    ph, pw = pool_size
    sh, sw = strides
    top, bottom, left, right = pads
    oh, ow = output_hw(h, w, ph, pw, strides, pads)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=-np.inf)
    # windows[n, oh, ow, i*PW + j, c] = xp[n, oh*SH + i, ow*SW + j, c], as in im2col.
    windows = np.empty((n_batch, oh, ow, ph * pw, c), dtype=x.dtype)
    for i in range(ph):
        for j in range(pw):
            windows[:, :, :, i * pw + j, :] = xp[:, i : i + sh * oh : sh, j : j + sw * ow : sw, :]
    k = np.argmax(windows, axis=3)  # first maximum wins ties, in (i, j) row-major order
    y = np.take_along_axis(windows, k[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    # Window position k = i*PW + j  ->  unpadded input coordinates (h, w).
    rows = np.arange(oh)[None, :, None, None] * sh + k // pw - top
    cols = np.arange(ow)[None, None, :, None] * sw + k % pw - left
    argmax = (rows * w + cols).astype(np.int64)
    return y, argmax


def maxpool2d_backward(dy, argmax, x_shape):
    """Route each output gradient to the input position that won the max.

    dy: (N, OH, OW, C), argmax from maxpool2d_forward, x_shape (N, H, W, C) -> dx (N, H, W, C)
    dy.dtype. ``dx[n, h, w, c] = sum of dy[n, oh, ow, c] over outputs whose argmax is h*W + w``
    (overlapping windows can pick the same input, so contributions add up).
    """
    n_batch, h, w, c = x_shape
    dx = np.zeros((n_batch, h * w, c), dtype=dy.dtype)
    n_idx = np.arange(n_batch)[:, None, None, None]
    c_idx = np.arange(c)[None, None, None, :]
    np.add.at(dx, (n_idx, argmax, c_idx), dy)  # unbuffered: repeated indices accumulate
    return dx.reshape(x_shape)
