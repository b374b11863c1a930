"""The Numba kernels: every compiled loop of minicnn, each behind a wrapper that checks its arrays.

Read ``reference.py`` for the math; :mod:`minicnn.ops.fast` composes these kernels with BLAS
into the fast backend's ops. Here:

- ``im2col_into`` / ``col2im_into``: unfold windows into rows and fold them back (the data
  movement around the convolution's matrix products).
- ``maxpool2d_into`` / ``maxpool2d_backward_into``: max pooling, any window, stride, padding;
  ``maxpool2d_tiled_into`` / ``maxpool2d_tiled_backward_into``: the common case (window ==
  stride, no padding), which writes each input cell exactly once.
- ``bias_act_into`` / ``act_backward_bias_into``: bias + ReLU (or linear) in one pass over the
  output, and its backward with the bias gradient, in one pass.
- ``adam_update`` (Adam and AdamW), ``rmsprop_update``: Keras's optimizer steps on one
  parameter array, each in one pass.

Every compiled function is ``@njit(cache=True, nogil=True)`` and serial: parallelism is one
level up (``minicnn.parallel`` runs batch shards on threads; ``nogil`` lets them run these
kernels at the same time). Compiled code trusts its arguments and does no bounds checks, so
each public ``*_into`` wrapper checks shapes, dtypes and memory layout first and raises
ValueError on any mismatch: a wrong call can never write past a buffer. The checks cost a few
microseconds per call. Wrappers pass plain Python ints so Numba compiles one version per dtype.

Determinism: the one reduction (the bias gradient) adds fixed blocks of rows, then the blocks
in order, so results depend only on the input, never on scheduling.

On-disk cache: Numba first tries ``__pycache__`` next to this file, then a user-wide directory
(``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``), or ``$NUMBA_CACHE_DIR`` when set, so a
read-only install still caches. If no location at all is writable, Numba refuses to decorate a
``cache=True`` function (RuntimeError at import); ``_jit`` then compiles without an on-disk
cache and warns once, instead of making the package unimportable.
"""

from __future__ import annotations

import warnings

import numba
import numpy as np

from .padding import output_hw

__all__ = [
    "ACT_LINEAR", "ACT_RELU",
    "im2col_into", "col2im_into",
    "maxpool2d_into", "maxpool2d_backward_into",
    "maxpool2d_tiled_into", "maxpool2d_tiled_backward_into",
    "bias_act_into", "act_backward_bias_into", "SUM_BLOCK",
    "adam_update", "rmsprop_update",
]

ACT_LINEAR = 0
ACT_RELU = 1

# Rows per block in the blocked column sums (dbias): fixed, so sums never depend on threads.
SUM_BLOCK = 1024

_cache_warning_shown = False


def _jit(**options):
    """``numba.njit(cache=True, **options)``; without disk cache if no cache dir is writable."""

    def decorate(func):
        global _cache_warning_shown
        try:
            return numba.njit(cache=True, **options)(func)
        except RuntimeError as exc:
            if "cannot cache" not in str(exc):
                raise
            if not _cache_warning_shown:
                _cache_warning_shown = True
                warnings.warn(
                    f"minicnn.ops.kernels: Numba found no writable cache directory ({exc}); "
                    "kernels are compiled on every start. Set NUMBA_CACHE_DIR to a writable "
                    "directory to keep compiled kernels between runs.",
                    RuntimeWarning,
                    stacklevel=2,
                )
            return numba.njit(cache=False, **options)(func)

    return decorate


# --------------------------------------------------------------------------- argument checks


def _check(where, name, array, shape, dtype, layout="C"):
    """Raise ValueError unless `array` is an ndarray of `shape` and `dtype` in `layout`
    ('C': C-contiguous; 'CF': C- or Fortran-contiguous)."""
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{where}: {name} must be a NumPy array, got {type(array).__name__}.")
    if array.shape != tuple(shape):
        raise ValueError(f"{where}: {name} has shape {array.shape}, expected {tuple(shape)}.")
    if array.dtype != dtype:
        raise ValueError(f"{where}: {name} is {array.dtype}, expected {np.dtype(dtype)}.")
    contiguous = array.flags.c_contiguous or (layout == "CF" and array.flags.f_contiguous)
    if not contiguous:
        kind = "C- or Fortran-" if layout == "CF" else "C-"
        raise ValueError(f"{where}: {name} must be {kind}contiguous; pass "
                         f"np.ascontiguousarray({name}).")


def _float_dtype(where, array):
    if not isinstance(array, np.ndarray) or array.dtype not in (np.float32, np.float64):
        got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise ValueError(f"{where}: expected a float32 or float64 array, got {got}.")
    return array.dtype


def _ints(values, n, where, name):
    values = tuple(int(v) for v in values)
    if len(values) != n or min(values) < 0:
        raise ValueError(f"{where}: {name} must be {n} ints >= 0, got {values}.")
    return values


# --------------------------------------------------------------------------- im2col / col2im


def _unfold_geometry(where, x_shape, kh, kw, strides, pads):
    """-> ((kh, kw, sh, sw, top, left, out_h, out_w), shape of the unfolded matrix), checked."""
    kh, kw = _ints((kh, kw), 2, where, "kernel size")
    sh, sw = _ints(strides, 2, where, "strides")
    top, bottom, left, right = _ints(pads, 4, where, "pads")
    n_batch, h, w, c = x_shape
    out_h, out_w = output_hw(h, w, kh, kw, (sh, sw), (top, bottom, left, right))
    if min(kh, kw, sh, sw, out_h, out_w) < 1:
        raise ValueError(f"{where}: empty output ({out_h}, {out_w}) for an image {x_shape}.")
    return (kh, kw, sh, sw, top, left, out_h, out_w), (n_batch * out_h * out_w, kh * kw * c)


@_jit(nogil=True)
def _im2col(x, kh, kw, sh, sw, top, left, out_h, out_w, cols):
    n_batch, h, w, c = x.shape
    if c == 1:
        # One channel (a network's first layer): copying channel by channel would run an
        # inner loop of length 1 per (row, i, j). Loop over output positions innermost
        # instead: one column of cols per (i, j), filled from input rows; contiguous (and
        # vectorised) when cols is Fortran-ordered. 4x faster than the generic order.
        for n in range(n_batch):
            for i in range(kh):
                for j in range(kw):
                    col = i * kw + j
                    for oh in range(out_h):
                        hh = oh * sh + i - top
                        base = (n * out_h + oh) * out_w
                        if hh < 0 or hh >= h:
                            for ow in range(out_w):
                                cols[base + ow, col] = 0.0
                            continue
                        for ow in range(out_w):
                            ww = ow * sw + j - left
                            cols[base + ow, col] = x[n, hh, ww, 0] if 0 <= ww < w else 0.0
        return
    for n in range(n_batch):
        for oh in range(out_h):
            for ow in range(out_w):
                row = (n * out_h + oh) * out_w + ow
                for i in range(kh):
                    hh = oh * sh + i - top
                    for j in range(kw):
                        ww = ow * sw + j - left
                        base = (i * kw + j) * c
                        # Innermost loop over channels: contiguous in both x and cols (NHWC).
                        if 0 <= hh < h and 0 <= ww < w:
                            for ch in range(c):
                                cols[row, base + ch] = x[n, hh, ww, ch]
                        else:
                            for ch in range(c):
                                cols[row, base + ch] = 0.0


def im2col_into(x, kh, kw, strides, pads, cols):
    """x (N, H, W, C) C-contiguous -> writes cols (N*OH*OW, KH*KW*C) in place (C or Fortran
    order, same dtype); see reference.im2col. Returns cols."""
    where = "kernels.im2col_into"
    dtype = _float_dtype(where, x)
    if x.ndim != 4:
        raise ValueError(f"{where}: x must be (N, H, W, C), got shape {x.shape}.")
    geometry, cols_shape = _unfold_geometry(where, x.shape, kh, kw, strides, pads)
    _check(where, "x", x, x.shape, dtype)
    _check(where, "cols", cols, cols_shape, dtype, "CF")
    _im2col(x, *geometry, cols)
    return cols


@_jit(nogil=True)
def _col2im(dcols, kh, kw, sh, sw, top, left, out_h, out_w, dx):
    n_batch, h, w, c = dx.shape
    # One sample per iteration: every write lands in dx[n] (batch shards never race).
    for n in range(n_batch):
        dx[n] = 0.0
        for oh in range(out_h):
            for ow in range(out_w):
                row = (n * out_h + oh) * out_w + ow
                for i in range(kh):
                    hh = oh * sh + i - top
                    if hh < 0 or hh >= h:
                        continue  # this kernel row lies in the padding: dropped
                    for j in range(kw):
                        ww = ow * sw + j - left
                        if ww < 0 or ww >= w:
                            continue
                        base = (i * kw + j) * c
                        for ch in range(c):
                            dx[n, hh, ww, ch] += dcols[row, base + ch]


def col2im_into(dcols, kh, kw, strides, pads, dx):
    """dcols (N*OH*OW, KH*KW*C) C-contiguous -> writes dx (N, H, W, C) in place, summing
    overlaps and dropping padding; see reference.col2im. Returns dx."""
    where = "kernels.col2im_into"
    dtype = _float_dtype(where, dcols)
    if not isinstance(dx, np.ndarray) or dx.ndim != 4:
        raise ValueError(f"{where}: dx must be a (N, H, W, C) array.")
    geometry, cols_shape = _unfold_geometry(where, dx.shape, kh, kw, strides, pads)
    _check(where, "dcols", dcols, cols_shape, dtype)
    _check(where, "dx", dx, dx.shape, dtype)
    _col2im(dcols, *geometry, dx)
    return dx


# --------------------------------------------------------------------------- max pooling


@_jit(nogil=True)
def _maxpool2d(x, ph, pw, sh, sw, top, left, y, argmax):
    n_batch, h, w, c = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for n in range(n_batch):
        for oh in range(out_h):
            h0 = oh * sh - top
            # Clip the window to the real input: padding never takes part.
            i_lo = max(0, -h0)
            i_hi = min(ph, h - h0)
            for ow in range(out_w):
                w0 = ow * sw - left
                j_lo = max(0, -w0)
                j_hi = min(pw, w - w0)
                # Start from the first real element (not -inf) so argmax is always a real index.
                hh = h0 + i_lo
                ww = w0 + j_lo
                for ch in range(c):
                    y[n, oh, ow, ch] = x[n, hh, ww, ch]
                    argmax[n, oh, ow, ch] = hh * w + ww
                for i in range(i_lo, i_hi):
                    hh = h0 + i
                    for j in range(j_lo, j_hi):
                        ww = w0 + j
                        for ch in range(c):
                            v = x[n, hh, ww, ch]
                            # Strict '>' keeps the first maximum in row-major (i, j) order.
                            if v > y[n, oh, ow, ch]:
                                y[n, oh, ow, ch] = v
                                argmax[n, oh, ow, ch] = hh * w + ww


def _pool_geometry(where, x_shape, pool_size, strides, pads):
    ph, pw = _ints(pool_size, 2, where, "pool_size")
    sh, sw = _ints(strides, 2, where, "strides")
    top, bottom, left, right = _ints(pads, 4, where, "pads")
    if min(ph, pw, sh, sw) < 1 or max(top, bottom) >= ph or max(left, right) >= pw:
        raise ValueError(f"{where}: pads {pads} must be smaller than the pool size "
                         f"{pool_size}, strides {strides} >= 1.")
    n_batch, h, w, c = x_shape
    out_h, out_w = output_hw(h, w, ph, pw, (sh, sw), (top, bottom, left, right))
    if out_h < 1 or out_w < 1:
        raise ValueError(f"{where}: empty output for input {x_shape} and pool {pool_size}.")
    return (ph, pw, sh, sw, top, left), (n_batch, out_h, out_w, c)


def maxpool2d_into(x, pool_size, strides, pads, y, argmax):
    """x (N, H, W, C) -> writes y (N, OH, OW, C) and argmax (same shape, int64: flat h*W + w of
    each window's maximum); see reference.maxpool2d_forward. Returns (y, argmax)."""
    where = "kernels.maxpool2d_into"
    dtype = _float_dtype(where, x)
    if x.ndim != 4:
        raise ValueError(f"{where}: x must be (N, H, W, C), got shape {x.shape}.")
    geometry, out_shape = _pool_geometry(where, x.shape, pool_size, strides, pads)
    _check(where, "x", x, x.shape, dtype)
    _check(where, "y", y, out_shape, dtype)
    _check(where, "argmax", argmax, out_shape, np.int64)
    _maxpool2d(x, *geometry, y, argmax)
    return y, argmax


@_jit(nogil=True)
def _maxpool2d_backward(dy, argmax, dx):
    n_batch, out_h, out_w, c = dy.shape
    for n in range(n_batch):
        dx[n] = 0.0
        for oh in range(out_h):
            for ow in range(out_w):
                for ch in range(c):
                    dx[n, argmax[n, oh, ow, ch], ch] += dy[n, oh, ow, ch]


def maxpool2d_backward_into(dy, argmax, dx):
    """dy, argmax (N, OH, OW, C) -> writes dx (N, H, W, C), each dy added at its argmax.

    Every argmax entry must lie in [0, H*W): checked here, since the kernel writes there."""
    where = "kernels.maxpool2d_backward_into"
    dtype = _float_dtype(where, dy)
    if not isinstance(dx, np.ndarray) or dx.ndim != 4 or dy.ndim != 4:
        raise ValueError(f"{where}: dy and dx must be (N, H, W, C) arrays.")
    n_batch, h, w, c = dx.shape
    _check(where, "dy", dy, (n_batch, *dy.shape[1:3], c), dtype)
    _check(where, "argmax", argmax, dy.shape, np.int64)
    _check(where, "dx", dx, dx.shape, dtype)
    if argmax.size and (argmax.min() < 0 or argmax.max() >= h * w):
        raise ValueError(f"{where}: argmax holds positions outside [0, {h * w}).")
    _maxpool2d_backward(dy, argmax, dx.reshape(n_batch, h * w, c))
    return dx


@_jit(nogil=True)
def _maxpool2d_tiled(x, ph, pw, y, argmax):
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
def _maxpool2d_tiled_backward(dy, argmax, ph, pw, dx):
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


def _index_dtype(argmax):
    """int32 or int64, whichever argmax is (anything else fails the check against int64)."""
    return argmax.dtype if getattr(argmax, "dtype", None) in (np.int32, np.int64) else np.int64


def _tiled_shapes(where, x_shape, pool_size):
    ph, pw = _ints(pool_size, 2, where, "pool_size")
    n_batch, h, w, c = x_shape
    if min(ph, pw) < 1 or h < ph or w < pw:
        raise ValueError(f"{where}: pool {pool_size} does not fit input {x_shape}.")
    return ph, pw, (n_batch, h // ph, w // pw, c)


def maxpool2d_tiled_into(x, pool_size, y, argmax):
    """Max pooling with stride == pool size and no padding (Keras's default 'valid').

    x (N, H, W, C) -> writes y (N, H//PH, W//PW, C) and argmax (same shape, int32 or int64,
    flat h*W + w as maxpool2d_into). Returns (y, argmax)."""
    where = "kernels.maxpool2d_tiled_into"
    dtype = _float_dtype(where, x)
    if x.ndim != 4:
        raise ValueError(f"{where}: x must be (N, H, W, C), got shape {x.shape}.")
    ph, pw, out_shape = _tiled_shapes(where, x.shape, pool_size)
    _check(where, "x", x, x.shape, dtype)
    _check(where, "y", y, out_shape, dtype)
    _check(where, "argmax", argmax, out_shape, _index_dtype(argmax))
    _maxpool2d_tiled(x, ph, pw, y, argmax)
    return y, argmax


def maxpool2d_tiled_backward_into(dy, argmax, pool_size, dx):
    """Backward of maxpool2d_tiled_into: writes every cell of dx (N, H, W, C) once. Returns dx."""
    where = "kernels.maxpool2d_tiled_backward_into"
    dtype = _float_dtype(where, dy)
    if not isinstance(dx, np.ndarray) or dx.ndim != 4:
        raise ValueError(f"{where}: dx must be a (N, H, W, C) array.")
    ph, pw, out_shape = _tiled_shapes(where, dx.shape, pool_size)
    _check(where, "dy", dy, out_shape, dtype)
    _check(where, "argmax", argmax, out_shape, _index_dtype(argmax))
    _check(where, "dx", dx, dx.shape, dtype)
    _maxpool2d_tiled_backward(dy, argmax, ph, pw, dx)
    return dx


# --------------------------------------------------------------------------- bias + activation


@_jit(nogil=True)
def _bias_act(z, bias, use_bias, act):
    rows, f = z.shape
    for r in range(rows):
        for k in range(f):
            v = z[r, k] + bias[k] if use_bias else z[r, k]
            if act == ACT_RELU and v < 0:
                v = 0
            z[r, k] = v


def bias_act_into(z, bias, act):
    """In place on z (M, F) C-contiguous: ``z = act(z + bias)``; bias (F,) or None; act is
    ACT_LINEAR or ACT_RELU. Returns z."""
    where = "kernels.bias_act_into"
    dtype = _float_dtype(where, z)
    if z.ndim != 2:
        raise ValueError(f"{where}: z must be 2-D (M, F), got shape {z.shape}.")
    _check(where, "z", z, z.shape, dtype)
    if act not in (ACT_LINEAR, ACT_RELU):
        raise ValueError(f"{where}: act must be ACT_LINEAR or ACT_RELU, got {act!r}.")
    if bias is None:
        if act == ACT_LINEAR:
            return z
        _bias_act(z, z[0], False, act)  # z[0]: a placeholder of the right type, never read
        return z
    _check(where, "bias", bias, (z.shape[1],), dtype)
    _bias_act(z, bias, True, act)
    return z


@_jit(nogil=True)
def _act_backward_bias(dy, y, act, dz, partial):
    rows, f = dy.shape
    n_blocks = partial.shape[0]
    for blk in range(n_blocks):
        for k in range(f):
            partial[blk, k] = 0
        for r in range(blk * SUM_BLOCK, min(rows, (blk + 1) * SUM_BLOCK)):
            for k in range(f):
                g = dy[r, k]
                if act == ACT_RELU and not y[r, k] > 0:
                    g = 0
                dz[r, k] = g
                partial[blk, k] += g


def act_backward_bias_into(dy, y, act, dz, partial):
    """``dz = dy * act'(y)`` into dz (M, F), and per-block column sums into partial
    (ceil(M / SUM_BLOCK), F); ``partial.sum(axis=0)`` is dbias, deterministic. dz may be dy
    itself (in place). ACT_RELU takes its gradient from the output: 1 where y > 0."""
    where = "kernels.act_backward_bias_into"
    dtype = _float_dtype(where, dy)
    if dy.ndim != 2:
        raise ValueError(f"{where}: dy must be 2-D (M, F), got shape {dy.shape}.")
    rows, f = dy.shape
    for name, array in (("dy", dy), ("y", y), ("dz", dz)):
        _check(where, name, array, (rows, f), dtype)
    _check(where, "partial", partial, (max(1, -(-rows // SUM_BLOCK)), f), dtype)
    if act not in (ACT_LINEAR, ACT_RELU):
        raise ValueError(f"{where}: act must be ACT_LINEAR or ACT_RELU, got {act!r}.")
    _act_backward_bias(dy, y, act, dz, partial)
    return dz


# --------------------------------------------------------------------------- optimizers
# Flush subnormal slots to zero (TensorFlow's and XLA's CPU kernels run with flush-to-zero): a
# weight whose gradient stays 0 (a dead ReLU unit) sees its moments shrink geometrically into
# the subnormal range within ~800 steps, and every arithmetic operation on a subnormal takes a
# slow microcode path: Adam took 606 us instead of ~70 us per MNIST step after one epoch.


# error_model="numpy": a division by zero gives inf like NumPy instead of raising; without it
# Numba guards every division with a branch and the loop does not vectorise (5x slower).
@_jit(nogil=True, error_model="numpy")
def _adam(grad, param, m, v, one_minus_b1, one_minus_b2, alpha, epsilon, decay, tiny):
    zero = tiny - tiny
    for i in range(grad.size):
        g = grad[i]
        mi = m[i] + one_minus_b1 * (g - m[i])
        vi = v[i] + one_minus_b2 * (g * g - v[i])
        mi = mi if abs(mi) >= tiny else zero
        vi = vi if vi >= tiny else zero
        m[i] = mi
        v[i] = vi
        # decay = 0 (Adam) leaves a finite weight exactly as it is.
        p = param[i] - param[i] * decay
        param[i] = p - alpha * mi / (np.sqrt(vi) + epsilon)


def _check_update(where, param, **arrays):
    """The dtype of `param` after checking that every array has its shape and dtype and is
    C-contiguous (the kernels walk them flat and would run past a shorter one)."""
    dtype = _float_dtype(where, param)
    _check(where, "param", param, param.shape, dtype)
    for name, array in arrays.items():
        _check(where, name, array, param.shape, dtype)
    return dtype


def adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon, decay=0.0):
    """In place, elementwise: Keras's Adam step on one parameter array (AdamW with decay > 0).

    ``param -= param decay`` (decoupled weight decay, decay = weight_decay * lr), then
    ``m += (1 - b1) (g - m); v += (1 - b2) (g^2 - v); param -= alpha m / (sqrt(v) + eps)``,
    alpha already bias-corrected; m and v below the dtype's smallest normal number
    (``np.finfo(dtype).tiny``) are flushed to 0. All four arrays must have the same shape and
    dtype and be C-contiguous (ValueError otherwise: the kernel would run past the shorter
    one); the scalars are cast to that dtype so a float32 model computes in float32.
    """
    dtype = _check_update("kernels.adam_update", param, grad=grad, m=m, v=v)
    t = dtype.type
    _adam(grad.reshape(-1), param.reshape(-1), m.reshape(-1), v.reshape(-1),
          t(1 - beta_1), t(1 - beta_2), t(alpha), t(epsilon), t(decay), t(np.finfo(dtype).tiny))


@_jit(nogil=True, error_model="numpy")
def _rmsprop(grad, param, velocity, momentum_buffer, average_grad, rho, one_minus_rho, lr,
             momentum, epsilon, tiny, use_momentum, centered):
    zero = tiny - tiny
    for i in range(grad.size):
        g = grad[i]
        vel = rho * velocity[i] + one_minus_rho * (g * g)
        vel = vel if vel >= tiny else zero
        velocity[i] = vel
        if centered:
            avg = rho * average_grad[i] + one_minus_rho * g
            avg = avg if abs(avg) >= tiny else zero
            average_grad[i] = avg
            increment = lr * g / np.sqrt(vel - avg * avg + epsilon)
        else:
            increment = lr * g / np.sqrt(vel + epsilon)
        if use_momentum:
            mom = momentum * momentum_buffer[i] + increment
            mom = mom if abs(mom) >= tiny else zero
            momentum_buffer[i] = mom
            param[i] -= mom
        else:
            param[i] -= increment


def rmsprop_update(grad, param, velocity, momentum_buffer, average_grad, learning_rate, rho,
                   momentum, epsilon):
    """In place, elementwise: Keras's RMSprop step (see reference.rmsprop_update for the
    formula). momentum_buffer / average_grad may be None (no momentum / not centered). Every
    array given must have param's shape and dtype and be C-contiguous (ValueError otherwise).
    """
    slots = {"grad": grad, "velocity": velocity}
    if momentum_buffer is not None:
        slots["momentum_buffer"] = momentum_buffer
    if average_grad is not None:
        slots["average_grad"] = average_grad
    dtype = _check_update("kernels.rmsprop_update", param, **slots)
    t = dtype.type
    unused = np.zeros(1, dtype)  # never read: the flags below skip it
    flat = {name: array.reshape(-1) for name, array in slots.items()}
    _rmsprop(flat["grad"], param.reshape(-1), flat["velocity"],
             flat.get("momentum_buffer", unused), flat.get("average_grad", unused),
             t(rho), t(1 - rho), t(learning_rate), t(momentum), t(epsilon),
             t(np.finfo(dtype).tiny), momentum_buffer is not None, average_grad is not None)
