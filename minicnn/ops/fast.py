"""The fast backend: the ops of :mod:`minicnn.ops.reference`, same names, arguments and
results, built from Numba kernels (:mod:`minicnn.ops.kernels`) and BLAS matrix products.

What makes it fast, op by op:

- conv2d: im2col (compiled) + one BLAS product, into buffers reused from call to call; for one
  input channel the unfolded matrix is Fortran-ordered so im2col writes it contiguously.
- bias_activation with 'relu' or 'linear': one compiled pass in place over the product's
  output (instead of a pass for the bias and one for the ReLU), and one pass backward that
  also sums the bias gradient.
- maxpool2d: compiled; the common window == stride case writes each cell once.
- adam_update / adamw_update and rmsprop_update: one compiled pass over a parameter and its
  slots instead of NumPy's many (2-3x faster on the tutorial model, see
  benchmarks/bench_optimizers.py).
- Everything else (dense, the other activations, average pooling, merging, softmax +
  cross-entropy, the SGD and Adagrad updates) is already one or two vectorised NumPy calls, or
  as fast as the compiled pass would be, so this backend uses the reference code as it is.

Buffers: an op given ``ws`` (a dict that the caller keeps between calls with inputs of the same
shape, see minicnn/graph.py) keeps its output and scratch arrays there and overwrites them on
the next call, instead of asking the OS for fresh pages each batch (page faults cost as much as
the arithmetic for MNIST-sized layers). So an output is valid until the next call with the same
``ws``; callers that keep results copy them. With ``ws=None`` every array is fresh. With ``ws``,
``bias_activation_forward`` also writes its result over its input z: the caller hands z over.
"""

from __future__ import annotations

import numpy as np

from . import kernels, reference
from .padding import check_pool_pads, output_hw
from .reference import (  # noqa: F401  (the ops whose reference is already vectorised)
    ACTIVATIONS,
    activation_backward,
    activation_forward,
    adagrad_update,
    avgpool2d_backward,
    avgpool2d_forward,
    concatenate_backward,
    concatenate_forward,
    dense_backward,
    dense_forward,
    merge_backward,
    merge_forward,
    sgd_update,
    softmax_crossentropy_backward,
    softmax_crossentropy_forward,
)

__all__ = list(reference.__all__)

_FUSED_ACTIVATIONS = {"linear": kernels.ACT_LINEAR, "relu": kernels.ACT_RELU}


def _buffer(ws, name, shape, dtype, order="C"):
    """ws[name] if it has this shape, dtype and order, else a new array stored there."""
    if ws is None:
        return np.empty(shape, dtype, order=order)
    array = ws.get(name)
    if (array is None or array.shape != shape or array.dtype != dtype
            or (order == "F") != (array.flags.f_contiguous and not array.flags.c_contiguous)):
        array = ws[name] = np.empty(shape, dtype, order=order)
    return array


def conv2d_naive(x, kernel, bias, strides, pads):
    """The loop oracle; the same in both backends (see reference.conv2d_naive)."""
    return reference.conv2d_naive(x, kernel, bias, strides, pads)


def im2col(x, kh, kw, strides, pads):
    """Compiled twin of reference.im2col: x (N, H, W, C) -> cols (N*OH*OW, KH*KW*C)."""
    x = np.ascontiguousarray(x)
    n_batch, h, w, c = x.shape
    out_h, out_w = output_hw(h, w, kh, kw, strides, pads)
    cols = np.empty((n_batch * out_h * out_w, kh * kw * c), x.dtype)
    return kernels.im2col_into(x, kh, kw, strides, pads, cols)


def col2im(dcols, x_shape, kh, kw, strides, pads):
    """Compiled twin of reference.col2im: dcols (N*OH*OW, KH*KW*C) -> dx (N, H, W, C)."""
    dcols = np.ascontiguousarray(dcols)
    dx = np.empty(tuple(int(d) for d in x_shape), dcols.dtype)
    return kernels.col2im_into(dcols, kh, kw, strides, pads, dx)


def conv2d_forward(x, kernel, strides, pads, ws=None):
    """im2col + one BLAS product (twin of reference.conv2d_forward).

    x: (N, H, W, C), kernel: (KH, KW, C, F) -> (z (N, OH, OW, F), cache).
    """
    x = np.ascontiguousarray(x)
    n_batch, h, w, c = x.shape
    kh, kw, kc, n_filters = kernel.shape
    if kc != c or kernel.dtype != x.dtype:
        raise ValueError(f"conv2d_forward: kernel {kernel.shape} {kernel.dtype} does not fit "
                         f"input {x.shape} {x.dtype} (channels and dtype must match).")
    out_h, out_w = output_hw(h, w, kh, kw, strides, pads)
    rows, depth = n_batch * out_h * out_w, kh * kw * c
    # One input channel: cols in Fortran order, so im2col fills each column with contiguous
    # copies (4x faster); BLAS takes either order at the same speed.
    cols = _buffer(ws, "cols", (rows, depth), x.dtype, "F" if c == 1 else "C")
    kernels.im2col_into(x, kh, kw, strides, pads, cols)
    z = _buffer(ws, "z", (rows, n_filters), x.dtype)
    np.matmul(cols, kernel.reshape(depth, n_filters), out=z)
    return z.reshape(n_batch, out_h, out_w, n_filters), (cols, x.shape, kernel, strides, pads, ws)


def conv2d_backward(dz, cache, need_dx=True):
    """Twin of reference.conv2d_backward: dz (N, OH, OW, F) -> (dx or None, dkernel)."""
    cols, x_shape, kernel, strides, pads, ws = cache
    kh, kw, _, n_filters = kernel.shape
    dz2 = np.ascontiguousarray(dz).reshape(-1, n_filters)
    if dz2.shape[0] != cols.shape[0] or dz2.dtype != cols.dtype:
        raise ValueError(f"conv2d_backward: dz {dz.shape} {dz.dtype} does not match the forward "
                         f"pass ({cols.shape[0]} output positions, {cols.dtype}).")
    dkernel = _buffer(ws, "dkernel", kernel.shape, dz2.dtype)
    np.matmul(cols.T, dz2, out=dkernel.reshape(-1, n_filters))
    if not need_dx:
        return None, dkernel
    dcols = _buffer(ws, "dcols", cols.shape, dz2.dtype)  # C order, as col2im reads it
    np.matmul(dz2, kernel.reshape(-1, n_filters).T, out=dcols)
    dx = _buffer(ws, "dx", tuple(x_shape), dz2.dtype)
    kernels.col2im_into(dcols, kh, kw, strides, pads, dx)
    return dx, dkernel


def bias_activation_forward(z, bias, activation, ws=None):
    """Twin of reference.bias_activation_forward: y = activation(z + bias).

    'relu' and 'linear' on a buffer the caller hands over (ws given) run as one compiled
    pass in place over z; the others use the reference.
    """
    code = _FUSED_ACTIVATIONS.get(activation)
    if code is None or ws is None or not z.flags.c_contiguous:
        y, cache = reference.bias_activation_forward(z, bias, activation)
        return y, (cache, None)
    kernels.bias_act_into(z.reshape(-1, z.shape[-1]), bias, code)
    return z, (None, (code, z, ws))


def bias_activation_backward(dy, cache, need_dbias=True):
    """Twin of reference.bias_activation_backward: dy -> (dz, dbias or None)."""
    reference_cache, fused = cache
    if fused is None:
        return reference.bias_activation_backward(dy, reference_cache, need_dbias)
    code, y, ws = fused
    f = y.shape[-1]
    dy2 = np.ascontiguousarray(dy).reshape(-1, f)
    dz = _buffer(ws, "dz", dy2.shape, dy2.dtype)
    partial = _buffer(ws, "dbias_blocks", (max(1, -(-dy2.shape[0] // kernels.SUM_BLOCK)), f),
                      dy2.dtype)
    kernels.act_backward_bias_into(dy2, y.reshape(-1, f), code, dz, partial)
    return dz.reshape(dy.shape), (partial.sum(axis=0) if need_dbias else None)


def activation_input(cache):
    """Twin of reference.activation_input, for caches of either activation op."""
    if len(cache) == 2:  # bias_activation_forward's (reference cache, fused part)
        reference_cache, fused = cache
        if fused is not None:
            raise ValueError("activation_input: a fused ReLU/linear pass keeps only its output.")
        return reference_cache[1]
    return reference.activation_input(cache)


def maxpool2d_forward(x, pool_size, strides, pads, ws=None):
    """Twin of reference.maxpool2d_forward: x (N, H, W, C) -> (y (N, OH, OW, C), cache)."""
    check_pool_pads("maxpool2d_forward", pool_size, pads)
    x = np.ascontiguousarray(x)
    n_batch, h, w, c = x.shape
    ph, pw = pool_size
    out_h, out_w = output_hw(h, w, ph, pw, strides, pads)
    out_shape = (n_batch, out_h, out_w, c)
    y = _buffer(ws, "y", out_shape, x.dtype)
    tiled = tuple(strides) == tuple(pool_size) and not any(pads)
    if tiled:
        # int32 positions halve the argmax traffic of the common case.
        argmax = _buffer(ws, "argmax32", out_shape, np.int32)
        kernels.maxpool2d_tiled_into(x, pool_size, y, argmax)
    else:
        argmax = _buffer(ws, "argmax", out_shape, np.int64)
        kernels.maxpool2d_into(x, pool_size, strides, pads, y, argmax)
    return y, (argmax, x.shape, pool_size if tiled else None, ws)


def maxpool2d_backward(dy, cache):
    """Twin of reference.maxpool2d_backward: dy (N, OH, OW, C) -> dx (N, H, W, C)."""
    argmax, x_shape, tiled_pool, ws = cache
    dy = np.ascontiguousarray(dy)
    dx = _buffer(ws, "dx", tuple(x_shape), dy.dtype)
    if tiled_pool is not None:
        return kernels.maxpool2d_tiled_backward_into(dy, argmax, tiled_pool, dx)
    return kernels.maxpool2d_backward_into(dy, argmax, dx)


def _contiguous(*arrays):
    return all(a is None or a.flags.c_contiguous for a in arrays)


def adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon):
    """Twin of reference.adam_update: one compiled pass over the four arrays (a parameter that
    is a non-contiguous view cannot be walked flat, so it takes the reference)."""
    if not _contiguous(param, m, v):
        return reference.adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon)
    kernels.adam_update(np.ascontiguousarray(grad), param, m, v, beta_1, beta_2, alpha, epsilon)
    return None


def adamw_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon, decay):
    """Twin of reference.adamw_update: the weight decay folded into Adam's compiled pass."""
    if not _contiguous(param, m, v):
        return reference.adamw_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon, decay)
    kernels.adam_update(np.ascontiguousarray(grad), param, m, v, beta_1, beta_2, alpha, epsilon,
                        decay)
    return None


def rmsprop_update(grad, param, velocity, momentum_buffer, average_grad, learning_rate, rho,
                   momentum, epsilon):
    """Twin of reference.rmsprop_update: one compiled pass (non-contiguous: the reference)."""
    if not _contiguous(param, velocity, momentum_buffer, average_grad):
        return reference.rmsprop_update(grad, param, velocity, momentum_buffer, average_grad,
                                        learning_rate, rho, momentum, epsilon)
    kernels.rmsprop_update(np.ascontiguousarray(grad), param, velocity, momentum_buffer,
                           average_grad, learning_rate, rho, momentum, epsilon)
    return None
