"""The Numba kernels: every compiled loop of minicnn, each behind a wrapper that checks its arrays.

Read ``reference.py`` for the math; :mod:`minicnn.ops.fast` composes these kernels with BLAS
into the fast backend's ops. Here:

- ``im2col_into`` / ``col2im_into``: unfold windows into rows and fold them back (the data
  movement around the convolution's matrix products).
- ``maxpool2d_into`` / ``maxpool2d_backward_into``: max pooling, any window, stride, padding;
  ``maxpool2d_tiled_into`` / ``maxpool2d_tiled_backward_into``: the common case (window ==
  stride, no padding), which writes each input cell exactly once.
- ``avgpool2d_into`` / ``avgpool2d_backward_into``: average pooling (padding not counted).
- ``dropout_into`` / ``dropout_backward_into``: inverted dropout's mask and scaling in one pass.
- ``channel_sums_into``, ``centered_square_sums_into``, ``scale_shift_into``,
  ``batchnorm_grad_sums_into``, ``batchnorm_dx_into``: the passes of batch normalization
  (its whole-batch sums are float64 per channel, added across threads by the layer).
- ``relu_into`` / ``relu_backward_into``: ReLU on its own (an Activation or ReLU layer, e.g.
  after BatchNormalization), one pass each way.
- ``gelu_into`` / ``gelu_backward_into``: GELU with math.erf (NumPy has no erf).
- ``bias_act_into`` / ``act_backward_bias_into``: bias + ReLU (or linear) in one pass over the
  output, and its backward with the bias gradient, in one pass.
- ``softmax_crossentropy_labels_into`` / ``softmax_crossentropy_labels_backward_into``: the
  loss of integer labels from logits and its gradient, one pass over the rows each.
- ``adam_update`` (Adam and AdamW), ``rmsprop_update``: Keras's optimizer steps on one
  parameter array, each in one pass.

Every compiled function is ``@njit(cache=True, nogil=True)`` and serial: parallelism is one
level up (``minicnn.parallel`` runs batch shards on threads; ``nogil`` lets them run these
kernels at the same time). Compiled code trusts its arguments and does no bounds checks, so
each public ``*_into`` wrapper checks shapes, dtypes and memory layout first and raises
ValueError on any mismatch: a wrong call can never write past a buffer. The checks cost a few
microseconds per call. Wrappers pass plain Python ints so Numba compiles one version per dtype.

Determinism: every reduction adds in a fixed order (the bias gradient: fixed blocks of rows, then
the blocks in order; batch normalization's sums: row by row), so results depend only on the
input, never on scheduling.

On-disk cache: Numba first tries ``__pycache__`` next to this file, then a user-wide directory
(``$XDG_CACHE_HOME/numba`` or ``~/.cache/numba``), or ``$NUMBA_CACHE_DIR`` when set, so a
read-only install still caches. If no location at all is writable, Numba refuses to decorate a
``cache=True`` function (RuntimeError at import); ``_jit`` then compiles without an on-disk
cache and warns once, instead of making the package unimportable.
"""

from __future__ import annotations

import math
import warnings

import numba
import numpy as np

from .padding import output_hw

__all__ = [
    "ACT_LINEAR", "ACT_RELU",
    "im2col_into", "col2im_into",
    "maxpool2d_into", "maxpool2d_backward_into",
    "maxpool2d_tiled_into", "maxpool2d_tiled_backward_into",
    "avgpool2d_into", "avgpool2d_backward_into",
    "dropout_into", "dropout_backward_into",
    "channel_sums_into", "centered_square_sums_into", "scale_shift_into",
    "batchnorm_grad_sums_into", "batchnorm_dx_into",
    "relu_into", "relu_backward_into", "gelu_into", "gelu_backward_into",
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
    # The common case in one expression: this runs about 90 times per training step.
    if (type(array) is np.ndarray and array.shape == shape and array.dtype == dtype
            and (array.flags.c_contiguous or (layout == "CF" and array.flags.f_contiguous))):
        return
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


_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _check_all(where, dtype, *checks):
    """_check for several arrays at once, each ``(name, array, shape)`` or ``(name, array,
    shape, layout)``: one call on the hot path (a wrapper checks two to four arrays)."""
    for check in checks:
        array = check[1]
        if not (type(array) is np.ndarray and array.shape == check[2] and array.dtype == dtype
                and (array.flags.c_contiguous
                     or (len(check) == 4 and check[3] == "CF" and array.flags.f_contiguous))):
            _check(where, check[0], array, check[2], dtype, *check[3:])


def _float_dtype(where, array):
    if not isinstance(array, np.ndarray) or array.dtype not in (np.float32, np.float64):
        got = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise ValueError(f"{where}: expected a float32 or float64 array, got {got}.")
    return array.dtype


def _ints(values, n, where, name):
    values = tuple(map(int, values))
    if len(values) != n or min(values) < 0:
        raise ValueError(f"{where}: {name} must be {n} ints >= 0, got {values}.")
    return values


def _memoized(check):
    """Cache a pure geometry check by its arguments: the same few shapes come back every step
    (about a dozen checks per step). Failed checks raise and are not cached;
    unhashable arguments (lists) skip the cache; at most 4096 entries are kept."""
    cache = {}

    def cached(*args):
        try:
            return cache[args]
        except KeyError:
            pass
        except TypeError:  # an unhashable argument
            return check(*args)
        result = check(*args)
        if len(cache) >= 4096:
            cache.clear()
        cache[args] = result
        return result

    cached.__doc__, cached.__name__ = check.__doc__, check.__name__
    return cached


# --------------------------------------------------------------------------- im2col / col2im


@_memoized
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
    _check_all(where, dtype, ("x", x, x.shape), ("cols", cols, cols_shape, "CF"))
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
    _check_all(where, dtype, ("dcols", dcols, cols_shape), ("dx", dx, dx.shape))
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


@_memoized
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


@_memoized
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
    _check_all(where, dtype, ("x", x, x.shape), ("y", y, out_shape))
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
    _check_all(where, dtype, ("dy", dy, out_shape), ("dx", dx, dx.shape))
    _check(where, "argmax", argmax, out_shape, _index_dtype(argmax))
    _maxpool2d_tiled_backward(dy, argmax, ph, pw, dx)
    return dx


# --------------------------------------------------------------------------- average pooling


@_jit(nogil=True)
def _avgpool2d(x, ph, pw, sh, sw, top, left, y):
    n_batch, h, w, c = x.shape
    out_h, out_w = y.shape[1], y.shape[2]
    for n in range(n_batch):
        for oh in range(out_h):
            h0 = oh * sh - top
            i_lo = max(0, -h0)
            i_hi = min(ph, h - h0)
            for ow in range(out_w):
                w0 = ow * sw - left
                j_lo = max(0, -w0)
                j_hi = min(pw, w - w0)
                # The mean of the real inputs only: padding is not counted (as Keras).
                count = (i_hi - i_lo) * (j_hi - j_lo)
                for ch in range(c):
                    y[n, oh, ow, ch] = 0.0
                for i in range(i_lo, i_hi):
                    for j in range(j_lo, j_hi):
                        for ch in range(c):
                            y[n, oh, ow, ch] += x[n, h0 + i, w0 + j, ch]
                for ch in range(c):
                    y[n, oh, ow, ch] /= count


def avgpool2d_into(x, pool_size, strides, pads, y):
    """x (N, H, W, C) -> writes y (N, OH, OW, C), the mean of each window's real inputs;
    see reference.avgpool2d_forward. Returns y."""
    where = "kernels.avgpool2d_into"
    dtype = _float_dtype(where, x)
    if x.ndim != 4:
        raise ValueError(f"{where}: x must be (N, H, W, C), got shape {x.shape}.")
    geometry, out_shape = _pool_geometry(where, x.shape, pool_size, strides, pads)
    _check(where, "x", x, x.shape, dtype)
    _check(where, "y", y, out_shape, dtype)
    _avgpool2d(x, *geometry, y)
    return y


@_jit(nogil=True)
def _avgpool2d_backward(dy, ph, pw, sh, sw, top, left, dx):
    n_batch, h, w, c = dx.shape
    out_h, out_w = dy.shape[1], dy.shape[2]
    # One sample per iteration: every write lands in dx[n].
    for n in range(n_batch):
        dx[n] = 0.0
        for oh in range(out_h):
            h0 = oh * sh - top
            i_lo = max(0, -h0)
            i_hi = min(ph, h - h0)
            for ow in range(out_w):
                w0 = ow * sw - left
                j_lo = max(0, -w0)
                j_hi = min(pw, w - w0)
                count = (i_hi - i_lo) * (j_hi - j_lo)
                for i in range(i_lo, i_hi):
                    for j in range(j_lo, j_hi):
                        for ch in range(c):
                            dx[n, h0 + i, w0 + j, ch] += dy[n, oh, ow, ch] / count


def avgpool2d_backward_into(dy, pool_size, strides, pads, dx):
    """dy (N, OH, OW, C) -> writes dx (N, H, W, C): each window's dy / count added to each of
    its real inputs; see reference.avgpool2d_backward. Returns dx."""
    where = "kernels.avgpool2d_backward_into"
    dtype = _float_dtype(where, dy)
    if not isinstance(dx, np.ndarray) or dx.ndim != 4:
        raise ValueError(f"{where}: dx must be a (N, H, W, C) array.")
    geometry, out_shape = _pool_geometry(where, dx.shape, pool_size, strides, pads)
    _check(where, "dy", dy, out_shape, dtype)
    _check(where, "dx", dx, dx.shape, dtype)
    _avgpool2d_backward(dy, *geometry, dx)
    return dx


# --------------------------------------------------------------------------- dropout


@_jit(nogil=True, error_model="numpy")
def _dropout(x, u, rate, keep_prob, y, keep):
    zero = rate - rate
    for i in range(x.size):
        kept = u[i] >= rate
        keep[i] = kept
        y[i] = x[i] / keep_prob if kept else zero


def dropout_into(x, u, rate, y, keep):
    """Inverted dropout in one pass over flat views: ``keep = u >= rate``,
    ``y = x / (1 - rate)`` where kept, else 0; u are the uniform draws (same shape as x).
    x, u, y: same shape and float dtype, keep: bool; all C-contiguous. 0 <= rate < 1.
    Returns (y, keep)."""
    where = "kernels.dropout_into"
    dtype = _float_dtype(where, x)
    for name, array in (("x", x), ("u", u), ("y", y)):
        _check(where, name, array, x.shape, dtype)
    _check(where, "keep", keep, x.shape, np.bool_)
    if not 0 <= rate < 1:
        raise ValueError(f"{where}: rate must be in [0, 1), got {rate!r}.")
    t = dtype.type
    _dropout(x.reshape(-1), u.reshape(-1), t(rate), t(1 - rate), y.reshape(-1), keep.reshape(-1))
    return y, keep


@_jit(nogil=True, error_model="numpy")
def _dropout_backward(dy, keep, keep_prob, dx):
    zero = keep_prob - keep_prob
    for i in range(dy.size):
        dx[i] = dy[i] / keep_prob if keep[i] else zero


def dropout_backward_into(dy, keep, keep_prob, dx):
    """``dx = dy / keep_prob`` where keep, else 0; dy, dx same float dtype and shape as keep
    (bool), all C-contiguous; 0 < keep_prob <= 1. Returns dx."""
    where = "kernels.dropout_backward_into"
    dtype = _float_dtype(where, dy)
    _check(where, "dy", dy, keep.shape, dtype)
    _check(where, "keep", keep, dy.shape, np.bool_)
    _check(where, "dx", dx, dy.shape, dtype)
    if not 0 < keep_prob <= 1:
        raise ValueError(f"{where}: keep_prob must be in (0, 1], got {keep_prob!r}.")
    _dropout_backward(dy.reshape(-1), keep.reshape(-1), dtype.type(keep_prob), dx.reshape(-1))
    return dx


# --------------------------------------------------------------------------- batch normalization
#
# All on (M, C) row-major views (M = every position of every sample, C channels): the inner
# loops run over channels, contiguous. Sums accumulate in float64, row by row in order.


@_jit(nogil=True)
def _channel_sums(rows, out):
    m, c = rows.shape
    for k in range(c):
        out[k] = 0.0
    for r in range(m):
        for k in range(c):
            out[k] += rows[r, k]


@_jit(nogil=True)
def _centered_square_sums(rows, mean, out):
    m, c = rows.shape
    for k in range(c):
        out[k] = 0.0
    for r in range(m):
        for k in range(c):
            d = rows[r, k] - mean[k]
            out[k] += d * d


def _check_rows(where, rows):
    dtype = _float_dtype(where, rows)
    if rows.ndim != 2:
        raise ValueError(f"{where}: rows must be 2-D (M, C), got shape {rows.shape}.")
    _check(where, "rows", rows, rows.shape, dtype)
    return dtype


def channel_sums_into(rows, out):
    """rows (M, C) -> out (C,) float64: ``out[k] = sum_r rows[r, k]``. Returns out."""
    where = "kernels.channel_sums_into"
    _check_rows(where, rows)
    _check(where, "out", out, (rows.shape[1],), np.float64)
    _channel_sums(rows, out)
    return out


def centered_square_sums_into(rows, mean, out):
    """rows (M, C), mean (C,) float64 -> out (C,) float64: ``sum_r (rows[r, k] - mean[k])^2``
    (computed in float64). Returns out."""
    where = "kernels.centered_square_sums_into"
    _check_rows(where, rows)
    _check(where, "mean", mean, (rows.shape[1],), np.float64)
    _check(where, "out", out, (rows.shape[1],), np.float64)
    _centered_square_sums(rows, mean, out)
    return out


@_jit(nogil=True)
def _scale_shift(rows, scale, shift, y):
    m, c = rows.shape
    for r in range(m):
        for k in range(c):
            y[r, k] = rows[r, k] * scale[k] + shift[k]


def scale_shift_into(rows, scale, shift, y):
    """``y[r, k] = rows[r, k] * scale[k] + shift[k]``: rows, y (M, C); scale, shift (C,); one
    float dtype, C-contiguous. Returns y."""
    where = "kernels.scale_shift_into"
    dtype = _check_rows(where, rows)
    c = rows.shape[1]
    _check(where, "scale", scale, (c,), dtype)
    _check(where, "shift", shift, (c,), dtype)
    _check(where, "y", y, rows.shape, dtype)
    _scale_shift(rows, scale, shift, y)
    return y


@_jit(nogil=True)
def _batchnorm_grad_sums(drows, rows, mean, inv, out):
    m, c = rows.shape
    for k in range(c):
        out[0, k] = 0.0
        out[1, k] = 0.0
    for r in range(m):
        for k in range(c):
            g = drows[r, k]
            xhat = (rows[r, k] - mean[k]) * inv[k]
            out[0, k] += g
            out[1, k] += g * xhat


def batchnorm_grad_sums_into(drows, rows, mean, inv, out):
    """drows, rows (M, C); mean, inv (C,) -> out (2, C) float64: ``out[0] = sum_r drows``,
    ``out[1] = sum_r drows * xhat`` with ``xhat = (rows - mean) * inv`` (in rows' dtype; the
    product too, summed in float64). Returns out."""
    where = "kernels.batchnorm_grad_sums_into"
    dtype = _check_rows(where, rows)
    c = rows.shape[1]
    _check(where, "drows", drows, rows.shape, dtype)
    _check(where, "mean", mean, (c,), dtype)
    _check(where, "inv", inv, (c,), dtype)
    _check(where, "out", out, (2, c), np.float64)
    _batchnorm_grad_sums(drows, rows, mean, inv, out)
    return out


@_jit(nogil=True)
def _batchnorm_dx(drows, rows, mean, inv, g, mean_dy, mean_dy_xhat, dx):
    m, c = rows.shape
    for r in range(m):
        for k in range(c):
            xhat = (rows[r, k] - mean[k]) * inv[k]
            dx[r, k] = g[k] * ((drows[r, k] - mean_dy[k]) - xhat * mean_dy_xhat[k])


def batchnorm_dx_into(drows, rows, mean, inv, g, mean_dy, mean_dy_xhat, dx):
    """Training-mode batch-norm input gradient: ``dx = g * (drows - mean_dy - xhat *
    mean_dy_xhat)``, ``xhat = (rows - mean) * inv``. drows, rows, dx (M, C); the rest (C,);
    one float dtype. Returns dx."""
    where = "kernels.batchnorm_dx_into"
    dtype = _check_rows(where, rows)
    c = rows.shape[1]
    _check(where, "drows", drows, rows.shape, dtype)
    for name, array in (("mean", mean), ("inv", inv), ("g", g), ("mean_dy", mean_dy),
                        ("mean_dy_xhat", mean_dy_xhat)):
        _check(where, name, array, (c,), dtype)
    _check(where, "dx", dx, rows.shape, dtype)
    _batchnorm_dx(drows, rows, mean, inv, g, mean_dy, mean_dy_xhat, dx)
    return dx


# --------------------------------------------------------------------------- ReLU and GELU


@_jit(nogil=True)
def _relu(z, y):
    for i in range(z.size):
        v = z[i]
        y[i] = v if v > 0 else 0.0


@_jit(nogil=True)
def _relu_backward(dy, z, dz):
    for i in range(z.size):
        dz[i] = dy[i] if z[i] > 0 else 0.0


def _elementwise(where, kernel, names, *arrays, like=0):
    """Check that every array has the shape and float dtype of arrays[like] (the input z) and
    is C-contiguous, run `kernel` on their flat views, and return the last array (the output)."""
    dtype = _float_dtype(where, arrays[like])
    shape = arrays[like].shape
    for name, array in zip(names, arrays, strict=True):
        _check(where, name, array, shape, dtype)
    kernel(*(array.reshape(-1) for array in arrays))
    return arrays[-1]


def relu_into(z, y):
    """``y = max(z, 0)`` elementwise (z, y same shape and float dtype, C-contiguous; y may be
    z itself). Returns y."""
    return _elementwise("kernels.relu_into", _relu, ("z", "y"), z, y)


def relu_backward_into(dy, z, dz):
    """``dz = dy where z > 0, else 0`` elementwise (same shapes and dtype). Returns dz."""
    return _elementwise("kernels.relu_backward_into", _relu_backward, ("dy", "z", "dz"),
                        dy, z, dz, like=1)


@_jit(nogil=True)
def _gelu(z, y):
    for i in range(z.size):
        v = z[i]
        y[i] = 0.5 * v * (1.0 + math.erf(v * 0.7071067811865476))


@_jit(nogil=True)
def _gelu_backward(dy, z, dz):
    for i in range(z.size):
        v = z[i]
        cdf = 0.5 * (1.0 + math.erf(v * 0.7071067811865476))
        pdf = math.exp(-0.5 * v * v) * 0.3989422804014327
        dz[i] = dy[i] * (cdf + v * pdf)


def gelu_into(z, y):
    """``y = 0.5 z (1 + erf(z / sqrt 2))`` elementwise (z, y same shape and float dtype,
    C-contiguous; computed in float64 per element). Returns y."""
    return _elementwise("kernels.gelu_into", _gelu, ("z", "y"), z, y)


def gelu_backward_into(dy, z, dz):
    """``dz = dy (Phi(z) + z phi(z))`` elementwise (same shapes and dtype). Returns dz."""
    return _elementwise("kernels.gelu_backward_into", _gelu_backward, ("dy", "z", "dz"),
                        dy, z, dz, like=1)


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
    _check_all(where, dtype, ("dy", dy, (rows, f)), ("y", y, (rows, f)), ("dz", dz, (rows, f)),
               ("partial", partial, (max(1, -(-rows // SUM_BLOCK)), f)))
    if act not in (ACT_LINEAR, ACT_RELU):
        raise ValueError(f"{where}: act must be ACT_LINEAR or ACT_RELU, got {act!r}.")
    _act_backward_bias(dy, y, act, dz, partial)
    return dz


# --------------------------------------------------------------- softmax + cross-entropy


@_jit(nogil=True)
def _softmax_crossentropy_labels(logits, labels, loss, probs):
    rows, k = logits.shape
    for n in range(rows):
        label = labels[n]
        if label < 0 or label >= k:
            return n  # before any read at that label: the wrapper raises
        top = logits[n, 0]
        for j in range(1, k):
            top = max(top, logits[n, j])
        total = logits[n, 0] - logits[n, 0]  # zero of the dtype
        for j in range(k):
            total += np.exp(logits[n, j] - top)
        log_total = np.log(total)
        for j in range(k):
            probs[n, j] = np.exp(logits[n, j] - top - log_total)
        loss[n] = -(logits[n, label] - top - log_total)
    return -1


def softmax_crossentropy_labels_into(logits, labels, loss, probs):
    """Per row n of logits (N, K): ``loss[n] = -log softmax(z_n)[labels[n]]`` and ``probs[n] =
    softmax(z_n)``, from the log-softmax ``z - max z - log sum exp(z - max z)`` (see
    reference.softmax_crossentropy_forward). labels (N,) integers in [0, K) (ValueError
    otherwise), loss (N,) and probs (N, K) of logits' dtype, all C-contiguous. Returns loss."""
    where = "kernels.softmax_crossentropy_labels_into"
    dtype, rows = _check_rows_and_labels(where, "logits", logits, labels)
    _check_all(where, dtype, ("logits", logits, logits.shape), ("loss", loss, (rows,)),
               ("probs", probs, logits.shape))
    _refuse_bad_label(where, "logits", labels, logits.shape[1],
                      _softmax_crossentropy_labels(logits, labels, loss, probs))
    return loss


def _check_rows_and_labels(where, name, matrix, labels):
    """-> (dtype, N) of a float (N, K) `matrix` and C-contiguous integer labels (N,)."""
    dtype = _float_dtype(where, matrix)
    if matrix.ndim != 2 or not isinstance(labels, np.ndarray) or labels.dtype.kind not in "iu":
        raise ValueError(f"{where}: expected {name} (N, K) and integer labels (N,), got "
                         f"{matrix.shape} and {getattr(labels, 'dtype', type(labels))}.")
    _check(where, "labels", labels, matrix.shape[:1], labels.dtype)
    return dtype, matrix.shape[0]


def _refuse_bad_label(where, name, labels, k, bad):
    """Raise ValueError for row `bad` (a kernel's answer; -1: every label was in [0, k))."""
    if bad >= 0:
        raise ValueError(f"{where}: label {int(labels[bad])} (row {bad}) is not a class of "
                         f"{k} {name}; labels must lie in [0, {k}).")


@_jit(nogil=True)
def _softmax_crossentropy_labels_backward(dloss, probs, labels, dlogits):
    rows, k = probs.shape
    for n in range(rows):
        label = labels[n]
        if label < 0 or label >= k:
            return n
        for j in range(k):
            dlogits[n, j] = dloss[n] * probs[n, j]
        dlogits[n, label] -= dloss[n]
    return -1


def softmax_crossentropy_labels_backward_into(dloss, probs, labels, dlogits):
    """``dlogits[n] = dloss[n] * (probs[n] - onehot(labels[n]))`` into dlogits (N, K): the
    backward of softmax_crossentropy_labels_into (labels as it checked them). Returns dlogits."""
    where = "kernels.softmax_crossentropy_labels_backward_into"
    dtype, rows = _check_rows_and_labels(where, "probs", probs, labels)
    _check_all(where, dtype, ("dloss", dloss, (rows,)), ("probs", probs, probs.shape),
               ("dlogits", dlogits, probs.shape))
    _refuse_bad_label(where, "probabilities", labels, probs.shape[1],
                      _softmax_crossentropy_labels_backward(dloss, probs, labels, dlogits))
    return dlogits


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


_TINY = {}


def _tiny(dtype):
    """np.finfo(dtype).tiny as a scalar of dtype (looked up once per dtype: finfo is slow)."""
    tiny = _TINY.get(dtype)
    if tiny is None:
        tiny = _TINY[dtype] = dtype.type(np.finfo(dtype).tiny)
    return tiny


def _check_update(where, param, **arrays):
    """The dtype of `param` after checking that every array has its shape and dtype and is
    C-contiguous (the kernels walk them flat and would run past a shorter one)."""
    dtype = _float_dtype(where, param)
    _check(where, "param", param, param.shape, dtype)
    for name, array in arrays.items():
        _check(where, name, array, param.shape, dtype)
    return dtype


def _fits(param, *arrays):
    """True when param is a C-contiguous float32/float64 ndarray and every array is an ndarray
    of its shape and dtype, C-contiguous (False: _check_update says which is not)."""
    if type(param) is not np.ndarray or not param.flags.c_contiguous or \
            param.dtype not in _FLOAT_DTYPES:
        return False
    shape, dtype = param.shape, param.dtype
    for array in arrays:
        if (type(array) is not np.ndarray or array.shape != shape or array.dtype != dtype
                or not array.flags.c_contiguous):
            return False
    return True


def adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon, decay=0.0):
    """In place, elementwise: Keras's Adam step on one parameter array (AdamW with decay > 0).

    ``param -= param decay`` (decoupled weight decay, decay = weight_decay * lr), then
    ``m += (1 - b1) (g - m); v += (1 - b2) (g^2 - v); param -= alpha m / (sqrt(v) + eps)``,
    alpha already bias-corrected; m and v below the dtype's smallest normal number
    (``np.finfo(dtype).tiny``) are flushed to 0. All four arrays must have the same shape and
    dtype and be C-contiguous (ValueError otherwise: the kernel would run past the shorter
    one); the scalars are cast to that dtype so a float32 model computes in float32.
    """
    # _fits first: the checks in one call (this runs for every weight every step).
    dtype = (param.dtype if _fits(param, grad, m, v)
             else _check_update("kernels.adam_update", param, grad=grad, m=m, v=v))
    t = dtype.type
    _adam(grad.reshape(-1), param.reshape(-1), m.reshape(-1), v.reshape(-1),
          t(1 - beta_1), t(1 - beta_2), t(alpha), t(epsilon), t(decay),
          _TINY.get(dtype) or _tiny(dtype))


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
