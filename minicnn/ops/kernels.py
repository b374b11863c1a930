"""Fast Numba twins of :mod:`minicnn.ops.reference` (same names, argument order and results).

Read ``reference.py`` for the math and the notation; this file only makes it fast:

- The loops that move data (im2col, col2im, max pooling) are compiled with Numba
  (``@njit(cache=True, nogil=True)``) and run serially in the calling thread. Parallelism is
  one level up: ``minicnn.parallel`` splits each batch across worker threads, and ``nogil``
  lets those threads run these kernels at the same time. (Numba's own ``parallel=True`` loops
  were dropped: its thread pool and the batch-split threads fought for the same cores, and a
  ``parallel=True`` function must not be entered from two threads at once.)
- Matrix products go to BLAS through NumPy (``cols @ W``, ``cols.T @ dy``, ``dy @ W.T``) in the
  plain-Python wrappers; Numba would be slower at them.
- Each compiled ``_*_into`` function writes into arrays it is handed and allocates nothing; the
  public wrapper allocates the outputs. A layer can call the ``_into`` functions directly to reuse
  workspace buffers between batches.
- Wrappers call ``np.ascontiguousarray`` (free when already contiguous), and pass plain Python
  ints, so Numba compiles exactly one version per dtype (float32 and float64); output dtype is
  the input dtype.

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

from .padding import check_pool_pads, output_hw

__all__ = [
    "im2col",
    "col2im",
    "conv2d_forward",
    "conv2d_backward",
    "maxpool2d_forward",
    "maxpool2d_backward",
]

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


# --------------------------------------------------------------------------- compiled loops


@_jit(nogil=True)
def _im2col_into(x, kh, kw, sh, sw, top, left, out_h, out_w, cols):
    """x (N, H, W, C) -> writes cols (N*OH*OW, KH*KW*C) in place; see reference.im2col.

    cols may be C- or Fortran-ordered (a network's first layer uses Fortran order, see
    layers/conv.py); each layout gets its own compiled version."""
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


@_jit(nogil=True)
def _col2im_into(dcols, kh, kw, sh, sw, top, left, out_h, out_w, dx):
    """dcols (N*OH*OW, KH*KW*C) -> writes dx (N, H, W, C) in place; see reference.col2im."""
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


@_jit(nogil=True)
def _maxpool2d_forward_into(x, ph, pw, sh, sw, top, left, y, argmax):
    """x (N, H, W, C) -> writes y and argmax (N, OH, OW, C); see reference.maxpool2d_forward."""
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


@_jit(nogil=True)
def _maxpool2d_backward_into(dy, argmax, dx):
    """dy, argmax (N, OH, OW, C) -> writes dx (N, H*W, C) in place (flat spatial axis)."""
    n_batch, out_h, out_w, c = dy.shape
    for n in range(n_batch):
        dx[n] = 0.0
        for oh in range(out_h):
            for ow in range(out_w):
                for ch in range(c):
                    dx[n, argmax[n, oh, ow, ch], ch] += dy[n, oh, ow, ch]


# --------------------------------------------------------------------------- public wrappers


def _ints(values):
    # Python ints keep one compiled signature per dtype, whatever integer types the caller used.
    return tuple(int(v) for v in values)


def im2col(x, kh, kw, strides, pads):
    """Unfold convolution windows into rows (fast twin of reference.im2col).

    x: (N, H, W, C) -> cols: (N*OH*OW, KH*KW*C), x.dtype; rows (n, oh, ow), columns (i, j, c);
    padded positions are 0.
    """
    x = np.ascontiguousarray(x)
    kh, kw = int(kh), int(kw)
    sh, sw = _ints(strides)
    top, bottom, left, right = _ints(pads)
    n_batch, h, w, c = x.shape
    out_h, out_w = output_hw(h, w, kh, kw, (sh, sw), (top, bottom, left, right))
    cols = np.empty((n_batch * out_h * out_w, kh * kw * c), dtype=x.dtype)
    _im2col_into(x, kh, kw, sh, sw, top, left, out_h, out_w, cols)
    return cols


def col2im(dcols, x_shape, kh, kw, strides, pads):
    """Fold rows back into an image, summing overlaps (fast twin of reference.col2im).

    dcols: (N*OH*OW, KH*KW*C) -> dx: (N, H, W, C), dcols.dtype; padding entries are dropped.
    """
    dcols = np.ascontiguousarray(dcols)
    kh, kw = int(kh), int(kw)
    sh, sw = _ints(strides)
    top, bottom, left, right = _ints(pads)
    n_batch, h, w, c = _ints(x_shape)
    out_h, out_w = output_hw(h, w, kh, kw, (sh, sw), (top, bottom, left, right))
    dx = np.empty((n_batch, h, w, c), dtype=dcols.dtype)
    _col2im_into(dcols, kh, kw, sh, sw, top, left, out_h, out_w, dx)
    return dx


def conv2d_forward(x, kernel, bias, strides, pads):
    """Convolution = im2col + one BLAS product (fast twin of reference.conv2d_forward).

    x: (N, H, W, C), kernel: (KH, KW, C, F), bias: (F,) or None
    -> (y, cols): y (N, OH, OW, F) x.dtype; cols (N*OH*OW, KH*KW*C) for the backward pass.
    """
    kh, kw, _, n_filters = kernel.shape
    cols = im2col(x, kh, kw, strides, pads)
    y = cols @ kernel.reshape(-1, n_filters)
    if bias is not None:
        y += bias
    n_batch, h, w, _ = x.shape
    out_h, out_w = output_hw(h, w, kh, kw, strides, pads)
    return y.reshape(n_batch, out_h, out_w, n_filters), cols


def conv2d_backward(dy, x_shape, cols, kernel, strides, pads, *, use_bias=True,
                    compute_dx=True):
    """Gradients of conv2d_forward (fast twin of reference.conv2d_backward).

    dy: (N, OH, OW, F) -> (dx (N, H, W, C), dkernel (KH, KW, C, F), dbias (F,) or None when
    ``use_bias=False``), all dy.dtype; summed over the batch, never averaged.
    ``compute_dx=False`` returns dx as None (for a network's first layer).
    """
    kh, kw, _, n_filters = kernel.shape
    dy2 = np.ascontiguousarray(dy).reshape(-1, n_filters)
    dkernel = (cols.T @ dy2).reshape(kernel.shape)
    dbias = dy2.sum(axis=0) if use_bias else None
    if not compute_dx:  # the first layer: nobody needs dL/d(input), skip the scatter
        return None, dkernel, dbias
    dcols = dy2 @ kernel.reshape(-1, n_filters).T
    dx = col2im(dcols, x_shape, kh, kw, strides, pads)
    return dx, dkernel, dbias


def maxpool2d_forward(x, pool_size, strides, pads):
    """Max pooling with -inf padding (fast twin of reference.maxpool2d_forward).

    x: (N, H, W, C) -> (y (N, OH, OW, C) x.dtype, argmax (N, OH, OW, C) int64 = h*W + w of the
    window maximum in unpadded x). Ties go to the first maximum in row-major (i, j) order.
    Pads must be smaller than the pool size (ValueError otherwise).
    """
    check_pool_pads("maxpool2d_forward", pool_size, pads)
    x = np.ascontiguousarray(x)
    ph, pw = _ints(pool_size)
    sh, sw = _ints(strides)
    top, bottom, left, right = _ints(pads)
    n_batch, h, w, c = x.shape
    out_h, out_w = output_hw(h, w, ph, pw, (sh, sw), (top, bottom, left, right))
    y = np.empty((n_batch, out_h, out_w, c), dtype=x.dtype)
    argmax = np.empty((n_batch, out_h, out_w, c), dtype=np.int64)
    _maxpool2d_forward_into(x, ph, pw, sh, sw, top, left, y, argmax)
    return y, argmax


def maxpool2d_backward(dy, argmax, x_shape):
    """Route each dy to its argmax position, accumulating (fast twin of reference version).

    dy: (N, OH, OW, C), argmax from maxpool2d_forward -> dx (N, H, W, C) dy.dtype.
    """
    dy = np.ascontiguousarray(dy)
    argmax = np.ascontiguousarray(argmax, dtype=np.int64)
    n_batch, h, w, c = _ints(x_shape)
    dx = np.empty((n_batch, h * w, c), dtype=dy.dtype)
    _maxpool2d_backward_into(dy, argmax, dx)
    return dx.reshape(n_batch, h, w, c)
