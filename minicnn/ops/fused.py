"""Fused Numba kernels for the layers' fast path (training and inference).

The math is the same as :mod:`minicnn.ops.reference` (read it first); these kernels only merge
passes over memory that the reference does one after the other, and the tests
(``tests/test_ops_fused.py``) hold each one to a composition of reference ops:

- ``bias_act_forward``: ``z += bias; z = max(z, 0)`` in one pass over the convolution output
  (instead of one pass for the bias and one for the ReLU).
- ``act_backward_bias``: ``dz = dy * (y > 0)`` and ``dbias = sum(dz)`` in one pass.
- ``maxpool2d_*``: the pooling kernels of ``kernels.py`` specialised for the common
  non-overlapping, unpadded case (window == stride), writing each input cell exactly once.
- ``adam_update``: one pass per parameter array for Keras's Adam update.

Threads: every kernel runs serially in the calling thread with the GIL released
(``nogil=True``), so the batch shards of ``minicnn.parallel`` run them side by side.
Determinism: the one reduction (dbias) goes through per-block partial sums over fixed blocks
of rows, added up afterwards in a fixed order, so a result depends only on the input, never
on scheduling: training stays bit-identical per seed (for a given number of batch shards).

Each ``*_into`` function writes into arrays it is handed and allocates nothing. Activation
codes: ``ACT_LINEAR = 0``, ``ACT_RELU = 1`` (other activations run unfused, in NumPy).
"""

from __future__ import annotations

import numpy as np

from .kernels import _jit

ACT_LINEAR = 0
ACT_RELU = 1

# Rows per block in the blocked column sums (dbias): fixed, so sums never depend on threads.
_SUM_BLOCK = 1024


# --------------------------------------------------------------------------- bias + activation


@_jit(nogil=True)
def _bias_act_forward_into(z, bias, use_bias, act):
    rows, f = z.shape
    for r in range(rows):
        for k in range(f):
            v = z[r, k] + bias[k] if use_bias else z[r, k]
            if act == ACT_RELU and v < 0:
                v = 0
            z[r, k] = v


def bias_act_forward(z, bias, act):
    """In place: ``z = act(z + bias)`` on a (M, F) C-contiguous array; bias (F,) or None.

    act: ACT_LINEAR or ACT_RELU. Same result as ``reference`` ``y += bias; max(y, 0)``.
    """
    use_bias = bias is not None
    if not use_bias:
        if act == ACT_LINEAR:
            return z
        bias = z[0]  # unused placeholder of the right type
    _bias_act_forward_into(z, bias, use_bias, act)
    return z


@_jit(nogil=True)
def _act_backward_bias_into(dy, y, act, dz, partial):
    rows, f = dy.shape
    n_blocks = partial.shape[0]
    for blk in range(n_blocks):
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


# --------------------------------------------------------------------------- max pooling


@_jit(nogil=True)
def _maxpool2d_tiled_forward_into(x, ph, pw, y, argmax):
    n_batch, _, w, c = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for n in range(n_batch):
        for oh in range(out_h):
            for ow in range(out_w):
                h0 = oh * ph
                w0 = ow * pw
                for ch in range(c):
                    y[n, oh, ow, ch] = x[n, h0, w0, ch]
                    argmax[n, oh, ow, ch] = h0 * w + w0
                for i in range(ph):
                    for j in range(pw):
                        pos = (h0 + i) * w + w0 + j
                        for ch in range(c):
                            v = x[n, h0 + i, w0 + j, ch]
                            best = y[n, oh, ow, ch]
                            # Strict '>' keeps the first maximum in row-major (i, j) order.
                            # Unconditional stores of a select: the channel loop vectorises.
                            take = v > best
                            y[n, oh, ow, ch] = v if take else best
                            argmax[n, oh, ow, ch] = pos if take else argmax[n, oh, ow, ch]


@_jit(nogil=True)
def _maxpool2d_tiled_backward_into(dy, argmax, ph, pw, dx):
    n_batch, out_h, out_w, c = dy.shape
    h, w = dx.shape[1], dx.shape[2]
    for n in range(n_batch):
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
                            g = dy[n, oh, ow, ch]
                            dx[n, h0 + i, w0 + j, ch] = g if argmax[n, oh, ow, ch] == pos else 0
            for ww in range(out_w * pw, w):
                for i in range(ph):
                    for ch in range(c):
                        dx[n, oh * ph + i, ww, ch] = 0


def maxpool2d_tiled_forward(x, pool_size, y, argmax):
    """Max pooling with stride == pool size and no padding ('valid', Keras's default).

    x: (N, H, W, C) C-contiguous -> writes y (N, H//PH, W//PW, C) and argmax (flat ``h*W + w``
    as kernels.maxpool2d_forward; int64, or int32 to halve its memory traffic) and returns
    (y, argmax).
    """
    _maxpool2d_tiled_forward_into(x, int(pool_size[0]), int(pool_size[1]), y, argmax)
    return y, argmax


def maxpool2d_tiled_backward(dy, argmax, pool_size, dx):
    """Backward of maxpool2d_tiled_forward: writes every cell of dx (N, H, W, C) once."""
    _maxpool2d_tiled_backward_into(dy, argmax, int(pool_size[0]), int(pool_size[1]), dx)
    return dx


# --------------------------------------------------------------------------- Adam


# error_model="numpy": a division by zero gives inf like NumPy instead of raising; without it
# Numba guards every division with a branch and the loop does not vectorise (5x slower).
@_jit(nogil=True, error_model="numpy")
def _adam_update_into(grad, param, m, v, one_minus_b1, one_minus_b2, alpha, epsilon, tiny):
    zero = tiny - tiny
    for i in range(grad.size):
        g = grad[i]
        mi = m[i] + one_minus_b1 * (g - m[i])
        vi = v[i] + one_minus_b2 * (g * g - v[i])
        # Flush subnormal moments to zero (TensorFlow's CPU kernels run with flush-to-zero):
        # a weight whose gradient stays 0 (a dead ReLU unit) sees m shrink by beta_1 per
        # step into the subnormal range within ~800 steps, and every arithmetic operation on
        # a subnormal takes a slow microcode path: Adam took 606 us instead of ~70 us per
        # MNIST step after one epoch.
        mi = mi if abs(mi) >= tiny else zero
        vi = vi if vi >= tiny else zero
        m[i] = mi
        v[i] = vi
        param[i] -= alpha * mi / (np.sqrt(vi) + epsilon)


def adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon):
    """In place, elementwise: Keras's Adam step on one parameter array.

    ``m += (1 - b1) (g - m); v += (1 - b2) (g^2 - v); param -= alpha m / (sqrt(v) + eps)``,
    alpha already bias-corrected; m and v below the dtype's smallest normal number
    (``np.finfo(dtype).tiny``) are flushed to 0. All arrays C-contiguous, same shape and
    dtype; the scalars are cast to that dtype so a float32 model computes in float32, as the
    NumPy version does.
    """
    t = param.dtype.type
    _adam_update_into(grad.reshape(-1), param.reshape(-1), m.reshape(-1), v.reshape(-1),
                      t(1 - beta_1), t(1 - beta_2), t(alpha), t(epsilon),
                      t(np.finfo(param.dtype).tiny))
