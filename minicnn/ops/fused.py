"""Fused and direct Numba kernels for the layers' fast path (training and inference).

The math is the same as :mod:`minicnn.ops.reference` (read it first); these kernels only merge
passes over memory that the reference does one after the other, and the tests
(``tests/test_ops_fused.py``) hold each one to a composition of reference ops:

- ``bias_act_forward``: ``z += bias; z = max(z, 0)`` in one pass over the convolution output
  (instead of one pass for the bias and one for the ReLU).
- ``act_backward_bias``: ``dz = dy * (y > 0)`` and ``dbias = sum(dz)`` in one pass.
- ``conv2d_direct_forward`` / ``conv2d_direct_backward``: convolution without im2col, for
  layers with few input channels (the first layer of an image network, C = 1 or 3). With
  ``KH*KW*C = 9`` the im2col matrix is 9 columns wide, BLAS runs far below peak on it and
  building it costs more than the products; a direct loop whose innermost axis is the
  filters (contiguous in NHWC and in the Keras kernel layout) vectorises well instead.
- ``maxpool2d_*``: the pooling kernels of ``kernels.py`` specialised for the common
  non-overlapping, unpadded case (window == stride), writing each input cell exactly once.
- ``adam_update``: one pass per parameter array for Keras's Adam update.

Determinism: parallel loops (``prange``) only ever write disjoint slices. Reductions over the
batch (dkernel, dbias) go through per-sample or per-block partial sums in fixed blocks, added
up afterwards in a fixed order, so results do not depend on the number of threads or on
scheduling: training stays bit-identical per seed.

Each ``*_into`` function writes into arrays it is handed and allocates nothing. Activation
codes: ``ACT_LINEAR = 0``, ``ACT_RELU = 1`` (other activations run unfused, in NumPy).
"""

from __future__ import annotations

import numba
import numpy as np

from .kernels import _jit

ACT_LINEAR = 0
ACT_RELU = 1

# Rows per block in the blocked column sums (dbias): fixed, so sums never depend on threads.
_SUM_BLOCK = 1024


# --------------------------------------------------------------------------- bias + activation


@_jit(parallel=True)
def _bias_act_forward_parallel(z, bias, use_bias, act):
    rows, f = z.shape
    n_blocks = (rows + _SUM_BLOCK - 1) // _SUM_BLOCK
    for blk in numba.prange(n_blocks):
        for r in range(blk * _SUM_BLOCK, min(rows, (blk + 1) * _SUM_BLOCK)):
            for k in range(f):
                v = z[r, k] + bias[k] if use_bias else z[r, k]
                if act == ACT_RELU and v < 0:
                    v = 0
                z[r, k] = v


@_jit()
def _bias_act_forward_serial(z, bias, use_bias, act):
    rows, f = z.shape
    for r in range(rows):
        for k in range(f):
            v = z[r, k] + bias[k] if use_bias else z[r, k]
            if act == ACT_RELU and v < 0:
                v = 0
            z[r, k] = v


# Below this many elements a parallel loop costs more to start (waking the OpenMP threads)
# than it saves; measured on 2 cores, the break-even is near 100k float32 elements.
_PARALLEL_MIN = 1 << 17


def bias_act_forward(z, bias, act):
    """In place: ``z = act(z + bias)`` on a (M, F) C-contiguous array; bias (F,) or None.

    act: ACT_LINEAR or ACT_RELU. Same result as ``reference`` ``y += bias; max(y, 0)``.
    """
    use_bias = bias is not None
    if not use_bias:
        if act == ACT_LINEAR:
            return z
        bias = z[0]  # unused placeholder of the right type
    if z.size >= _PARALLEL_MIN:
        _bias_act_forward_parallel(z, bias, use_bias, act)
    else:
        _bias_act_forward_serial(z, bias, use_bias, act)
    return z


@_jit(parallel=True)
def _act_backward_bias_into(dy, y, act, dz, partial):
    rows, f = dy.shape
    n_blocks = partial.shape[0]
    for blk in numba.prange(n_blocks):
        for k in range(f):
            partial[blk, k] = 0
        for r in range(blk * _SUM_BLOCK, min(rows, (blk + 1) * _SUM_BLOCK)):
            for k in range(f):
                g = dy[r, k]
                if act == ACT_RELU and not y[r, k] > 0:
                    g = 0
                dz[r, k] = g
                partial[blk, k] += g


def act_backward_bias(dy, y, act, dz, want_bias=True):
    """``dz = dy * act'(y)`` into dz, and ``dbias = dz.sum(axis=0)`` (or None).

    dy, y, dz: (M, F) C-contiguous, same dtype (dz may be dy itself: in place). act:
    ACT_LINEAR or ACT_RELU (the ReLU gradient is taken from the output: 1 where y > 0).
    The column sum goes through fixed blocks of rows, so it is deterministic.
    """
    rows, f = dy.shape
    n_blocks = max(1, (rows + _SUM_BLOCK - 1) // _SUM_BLOCK)
    partial = np.empty((n_blocks, f), dtype=dy.dtype)
    _act_backward_bias_into(dy, y, act, dz, partial)
    return partial.sum(axis=0) if want_bias else None


# --------------------------------------------------------------------------- direct convolution


@_jit(parallel=True)
def _conv2d_direct_forward_into(x, kernel, bias, use_bias, act, sh, sw, top, left, y):
    n_batch, h, w, c = x.shape
    kh, kw, _, f = kernel.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for n in numba.prange(n_batch):
        acc = np.empty(f, dtype=y.dtype)
        for oh in range(out_h):
            for ow in range(out_w):
                for k in range(f):
                    acc[k] = bias[k] if use_bias else 0
                for i in range(kh):
                    hh = oh * sh + i - top
                    if hh < 0 or hh >= h:
                        continue  # zero padding contributes nothing
                    for j in range(kw):
                        ww = ow * sw + j - left
                        if ww < 0 or ww >= w:
                            continue
                        for ch in range(c):
                            xv = x[n, hh, ww, ch]
                            # Innermost over filters: contiguous in kernel and y, vectorised.
                            for k in range(f):
                                acc[k] += xv * kernel[i, j, ch, k]
                for k in range(f):
                    v = acc[k]
                    if act == ACT_RELU and v < 0:
                        v = 0
                    y[n, oh, ow, k] = v


def conv2d_direct_forward(x, kernel, bias, strides, pads, act, y):
    """Direct convolution with fused bias and activation, no im2col.

    x: (N, H, W, C) C-contiguous, kernel (KH, KW, C, F), bias (F,) or None, act ACT_LINEAR or
    ACT_RELU -> writes y (N, OH, OW, F) (x.dtype) and returns it. ``y = act(conv2d(x) + b)``,
    conv2d as reference.conv2d_forward. Parallel over the batch.
    """
    use_bias = bias is not None
    if not use_bias:
        bias = kernel.reshape(-1)[:1]  # unused placeholder of the right type
    sh, sw = strides
    top, _, left, _ = pads
    _conv2d_direct_forward_into(x, kernel, bias, use_bias, act, int(sh), int(sw), int(top),
                                int(left), y)
    return y


@_jit(parallel=True)
def _conv2d_direct_backward_into(x, dy, y, act, kernel, sh, sw, top, left, compute_dx,
                                 dz, dk_partial, db_partial, dx):
    n_batch, h, w, c = x.shape
    kh, kw, _, f = dk_partial.shape[1:]
    out_h, out_w = dy.shape[1], dy.shape[2]
    # One sample per iteration: dz[n], dk_partial[n], db_partial[n] and dx[n] belong to it alone.
    for n in numba.prange(n_batch):
        dk_partial[n] = 0
        for k in range(f):
            db_partial[n, k] = 0
        if compute_dx:
            dx[n] = 0
        for oh in range(out_h):
            for ow in range(out_w):
                for k in range(f):
                    g = dy[n, oh, ow, k]
                    if act == ACT_RELU and not y[n, oh, ow, k] > 0:
                        g = 0
                    dz[n, oh, ow, k] = g
                    db_partial[n, k] += g
                for i in range(kh):
                    hh = oh * sh + i - top
                    if hh < 0 or hh >= h:
                        continue
                    for j in range(kw):
                        ww = ow * sw + j - left
                        if ww < 0 or ww >= w:
                            continue
                        for ch in range(c):
                            xv = x[n, hh, ww, ch]
                            for k in range(f):
                                dk_partial[n, i, j, ch, k] += xv * dz[n, oh, ow, k]
                            if compute_dx:
                                s = dx[n, hh, ww, ch]
                                for k in range(f):
                                    s += dz[n, oh, ow, k] * kernel[i, j, ch, k]
                                dx[n, hh, ww, ch] = s


def conv2d_direct_backward(x, dy, y, act, kernel, strides, pads, *, use_bias=True,
                           compute_dx=True, workspace=None):
    """Gradients of conv2d_direct_forward, with the activation's gradient fused in.

    x (N, H, W, C), dy = dL/d(output) and y = the forward output (N, OH, OW, F), act as in the
    forward, kernel (KH, KW, C, F) -> (dx (N, H, W, C) or None, dkernel (KH, KW, C, F),
    dbias (F,) or None), all x.dtype, summed over the batch. Per-sample partial sums,
    added in sample order: deterministic. workspace: optional dict the caller keeps between
    batches, so the scratch arrays are allocated once per batch shape.
    """
    dtype = x.dtype
    n_batch = x.shape[0]
    kh, kw, c, f = kernel.shape
    ws = {} if workspace is None else workspace
    key = (x.shape, dy.shape, dtype, compute_dx)
    if ws.get("key") != key:
        ws.clear()
        ws["key"] = key
        ws["dz"] = np.empty(dy.shape, dtype)
        ws["dk"] = np.empty((n_batch, kh, kw, c, f), dtype)
        ws["db"] = np.empty((n_batch, f), dtype)
        ws["dx"] = np.empty(x.shape, dtype) if compute_dx else np.empty((1, 1, 1, 1), dtype)
    sh, sw = strides
    top, _, left, _ = pads
    _conv2d_direct_backward_into(x, dy, y, act, kernel, int(sh), int(sw), int(top), int(left),
                                 compute_dx, ws["dz"], ws["dk"], ws["db"], ws["dx"])
    dkernel = ws["dk"].sum(axis=0)
    dbias = ws["db"].sum(axis=0) if use_bias else None
    return (ws["dx"] if compute_dx else None), dkernel, dbias


# --------------------------------------------------------------------------- max pooling


@_jit(parallel=True)
def _maxpool2d_tiled_forward_into(x, ph, pw, y, argmax):
    n_batch, _, w, c = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for n in numba.prange(n_batch):
        for oh in range(out_h):
            for ow in range(out_w):
                h0 = oh * ph
                w0 = ow * pw
                for ch in range(c):
                    y[n, oh, ow, ch] = x[n, h0, w0, ch]
                    argmax[n, oh, ow, ch] = h0 * w + w0
                for i in range(ph):
                    for j in range(pw):
                        for ch in range(c):
                            v = x[n, h0 + i, w0 + j, ch]
                            # Strict '>' keeps the first maximum in row-major (i, j) order.
                            if v > y[n, oh, ow, ch]:
                                y[n, oh, ow, ch] = v
                                argmax[n, oh, ow, ch] = (h0 + i) * w + w0 + j


@_jit(parallel=True)
def _maxpool2d_tiled_backward_into(dy, argmax, ph, pw, dx):
    n_batch, out_h, out_w, c = dy.shape
    h, w = dx.shape[1], dx.shape[2]
    for n in numba.prange(n_batch):
        # Rows/columns past the last full window (odd sizes) get no gradient.
        for hh in range(out_h * ph, h):
            dx[n, hh] = 0
        for oh in range(out_h):
            for ow in range(out_w):
                h0 = oh * ph
                w0 = ow * pw
                for i in range(ph):
                    for j in range(pw):
                        pos = (h0 + i) * w + w0 + j
                        for ch in range(c):
                            # Each input cell lies in one window only: a write, not a scatter.
                            if argmax[n, oh, ow, ch] == pos:
                                dx[n, h0 + i, w0 + j, ch] = dy[n, oh, ow, ch]
                            else:
                                dx[n, h0 + i, w0 + j, ch] = 0
            for ww in range(out_w * pw, w):
                for i in range(ph):
                    for ch in range(c):
                        dx[n, oh * ph + i, ww, ch] = 0


def maxpool2d_tiled_forward(x, pool_size, y, argmax):
    """Max pooling with stride == pool size and no padding ('valid', Keras's default).

    x: (N, H, W, C) C-contiguous -> writes y (N, H//PH, W//PW, C) and argmax (int64, flat
    ``h*W + w`` as kernels.maxpool2d_forward) and returns (y, argmax).
    """
    _maxpool2d_tiled_forward_into(x, int(pool_size[0]), int(pool_size[1]), y, argmax)
    return y, argmax


def maxpool2d_tiled_backward(dy, argmax, pool_size, dx):
    """Backward of maxpool2d_tiled_forward: writes every cell of dx (N, H, W, C) once."""
    _maxpool2d_tiled_backward_into(dy, argmax, int(pool_size[0]), int(pool_size[1]), dx)
    return dx


# --------------------------------------------------------------------------- Adam


@_jit()
def _adam_update_into(grad, param, m, v, one_minus_b1, one_minus_b2, alpha, epsilon):
    for i in range(grad.size):
        g = grad[i]
        mi = m[i] + one_minus_b1 * (g - m[i])
        vi = v[i] + one_minus_b2 * (g * g - v[i])
        m[i] = mi
        v[i] = vi
        param[i] -= alpha * mi / (np.sqrt(vi) + epsilon)


def adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon):
    """In place, elementwise: Keras's Adam step on one parameter array.

    ``m += (1 - b1) (g - m); v += (1 - b2) (g^2 - v); param -= alpha m / (sqrt(v) + eps)``,
    alpha already bias-corrected. All arrays C-contiguous, same shape and dtype; the scalars
    are cast to that dtype so a float32 model computes in float32, as the NumPy version does.
    """
    t = param.dtype.type
    _adam_update_into(grad.reshape(-1), param.reshape(-1), m.reshape(-1), v.reshape(-1),
                      t(1 - beta_1), t(1 - beta_2), t(alpha), t(epsilon))
