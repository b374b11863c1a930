"""Direct convolution of a one-channel input (a network's first layer), vectorised over filters.

Prototype kernels for issue 14 (not wired into the layers yet). With one input channel the
im2col path multiplies (N*OH*OW, KH*KW) by (KH*KW, F): a product only KH*KW = 9 deep, which
BLAS runs far below its peak after copying every pixel nine times into ``cols``. Here each
output pixel's F filter values are computed straight from the image:

    forward  z[n, oh, ow, :] = sum_{i, j} x[n, oh + i, ow + j] * kernel[i, j, 0, :]
    kernel gradient  dkernel[i, j, 0, :] = sum_{n, oh, ow} x[n, oh + i, ow + j] * dz[n, oh, ow, :]

(x zero-padded by ``pads`` first; stride 1.) The innermost loop runs over the F filters,
contiguous in both the kernel and the NHWC output, so it compiles to SIMD multiply-adds; the
forward optionally adds the bias and applies ReLU in the same pass. The kernel gradient takes
four output pixels per pass over its (KH*KW, F) accumulator, so the accumulator is loaded and
stored once per four multiply-adds. No input gradient: nothing needs dL/d(images).

Compiled kernels (``@njit(cache=True, nogil=True)``, serial: parallelism is the batch split one
level up) write into buffers they are handed and allocate nothing; the Python wrappers check
shapes and dtypes first, so a mismatch raises instead of writing past a buffer.
"""

from __future__ import annotations

import numpy as np

from ._prototype import buffer as _buffer
from ._prototype import check_array
from .kernels import _jit

__all__ = ["conv2d_1ch_forward", "conv2d_1ch_backward_kernel"]


@_jit(nogil=True)
def _pad_1ch_into(x, top, left, xp):
    """x (N, H, W) -> xp (N, HP, WP), x at [top:top+H, left:left+W], zero elsewhere."""
    n_batch, h, w = x.shape
    hp, wp = xp.shape[1], xp.shape[2]
    for n in range(n_batch):
        for i in range(hp):
            hh = i - top
            for j in range(wp):
                ww = j - left
                xp[n, i, j] = x[n, hh, ww] if 0 <= hh < h and 0 <= ww < w else 0.0


@_jit(nogil=True)
def _conv1ch_forward_into(xp, kernel, bias, use_bias, relu, zero, z):
    """xp (N, HP, WP), kernel (KH*KW, F), bias (F,) -> z (N, OH, OW, F), OH = HP - KH + 1.

    zero: 0 in the arrays' dtype (keeps float32 math in float32)."""
    n_batch, out_h, out_w, f = z.shape
    taps = kernel.shape[0]
    kw = xp.shape[2] - out_w + 1
    if taps == 9 and kw == 3:
        # The common 3x3 case with the nine taps unrolled: per output pixel nine scalars of x,
        # then one pass over the filters with nine multiply-adds and one store each.
        for n in range(n_batch):
            for oh in range(out_h):
                for ow in range(out_w):
                    x0, x1, x2 = xp[n, oh, ow], xp[n, oh, ow + 1], xp[n, oh, ow + 2]
                    x3, x4, x5 = xp[n, oh + 1, ow], xp[n, oh + 1, ow + 1], xp[n, oh + 1, ow + 2]
                    x6, x7, x8 = xp[n, oh + 2, ow], xp[n, oh + 2, ow + 1], xp[n, oh + 2, ow + 2]
                    for k in range(f):
                        v = (x0 * kernel[0, k] + x1 * kernel[1, k] + x2 * kernel[2, k]
                             + x3 * kernel[3, k] + x4 * kernel[4, k] + x5 * kernel[5, k]
                             + x6 * kernel[6, k] + x7 * kernel[7, k] + x8 * kernel[8, k])
                        if use_bias:
                            v += bias[k]
                        if relu and v < zero:
                            v = zero
                        z[n, oh, ow, k] = v
        return
    kh = taps // kw
    for n in range(n_batch):
        for oh in range(out_h):
            for ow in range(out_w):
                for k in range(f):
                    z[n, oh, ow, k] = bias[k] if use_bias else zero
                for i in range(kh):
                    for j in range(kw):
                        xv = xp[n, oh + i, ow + j]
                        t = i * kw + j
                        for k in range(f):
                            z[n, oh, ow, k] += xv * kernel[t, k]
                if relu:
                    for k in range(f):
                        if z[n, oh, ow, k] < zero:
                            z[n, oh, ow, k] = zero


@_jit(nogil=True)
def _conv1ch_backward_kernel_into(xp, dz, kh, kw, dkernel):
    """xp (N, HP, WP), dz (N, OH, OW, F) -> dkernel (KH*KW, F), overwritten with
    sum_{n, oh, ow} xp[n, oh + i, ow + j] * dz[n, oh, ow, :] at row i*KW + j."""
    n_batch, out_h, out_w, f = dz.shape
    dkernel[...] = 0.0
    ow4 = out_w - out_w % 4
    for n in range(n_batch):
        for oh in range(out_h):
            # Four output pixels per pass over the accumulator row: one load and one store of
            # dkernel[t, k] per four multiply-adds.
            for ow in range(0, ow4, 4):
                for i in range(kh):
                    for j in range(kw):
                        t = i * kw + j
                        a0 = xp[n, oh + i, ow + j]
                        a1 = xp[n, oh + i, ow + j + 1]
                        a2 = xp[n, oh + i, ow + j + 2]
                        a3 = xp[n, oh + i, ow + j + 3]
                        for k in range(f):
                            dkernel[t, k] += (a0 * dz[n, oh, ow, k] + a1 * dz[n, oh, ow + 1, k]
                                              + a2 * dz[n, oh, ow + 2, k]
                                              + a3 * dz[n, oh, ow + 3, k])
            for ow in range(ow4, out_w):
                for i in range(kh):
                    for j in range(kw):
                        t = i * kw + j
                        a0 = xp[n, oh + i, ow + j]
                        for k in range(f):
                            dkernel[t, k] += a0 * dz[n, oh, ow, k]


# --------------------------------------------------------------------------- wrappers


def _check(name, array, ndim, dtype=None):
    check_array("conv2d_1ch", name, array, dtype, ndim)


def _padded(x, pads, kh, kw, workspace):
    """x (N, H, W, 1) -> (xp (N, HP, WP) zero-padded, OH, OW); checks pads and strides."""
    try:
        top, bottom, left, right = (int(p) for p in pads)
    except (TypeError, ValueError):
        raise TypeError(f"conv2d_1ch: pads must be (top, bottom, left, right) ints, got "
                        f"{pads!r}.") from None
    if min(top, bottom, left, right) < 0 or max(top, bottom) >= kh or max(left, right) >= kw:
        raise ValueError(f"conv2d_1ch: pads {tuple(pads)} must be >= 0 and smaller than the "
                         f"kernel ({kh}x{kw}).")
    n_batch, h, w, _ = x.shape
    hp, wp = h + top + bottom, w + left + right
    out_h, out_w = hp - kh + 1, wp - kw + 1
    if out_h < 1 or out_w < 1:
        raise ValueError(f"conv2d_1ch: a {kh}x{kw} kernel does not fit the {h}x{w} input with "
                         f"pads {tuple(pads)}.")
    x2 = np.ascontiguousarray(x).reshape(n_batch, h, w)
    if (top, bottom, left, right) == (0, 0, 0, 0):
        return x2, out_h, out_w
    xp = _buffer(workspace, "xp", (n_batch, hp, wp), x.dtype)
    _pad_1ch_into(x2, top, left, xp)
    return xp, out_h, out_w


def _check_strides(strides):
    if tuple(int(s) for s in strides) != (1, 1):
        raise ValueError(f"conv2d_1ch: the direct kernel is for stride 1, got strides "
                         f"{tuple(strides)}; use the im2col path for strided layers.")


def conv2d_1ch_forward(x, kernel, strides=(1, 1), pads=(0, 0, 0, 0), bias=None, relu=False,
                       workspace=None, out=None):
    """Convolution of a one-channel input, computed directly (no im2col).

    x: (N, H, W, 1); kernel: (KH, KW, 1, F), same float dtype; stride 1; pads (top, bottom,
    left, right), each smaller than the kernel ((0,0,0,0) = 'valid'; Keras's 'same' for 3x3 is
    (1,1,1,1)); bias (F,) or None; relu: max(., 0) after the bias.
    -> (z, cache): z (N, OH, OW, F), OH = H + top + bottom - KH + 1, written into ``out`` when
    given (shape and dtype checked); cache for conv2d_1ch_backward_kernel.
    """
    _check("x", x, 4)
    _check("kernel", kernel, 4, x.dtype)
    if x.shape[3] != 1 or kernel.shape[2] != 1:
        raise ValueError(f"conv2d_1ch: needs one input channel, got x {x.shape} and kernel "
                         f"{kernel.shape}; use the im2col path for more channels.")
    _check_strides(strides)
    kh, kw, _, n_filters = kernel.shape
    xp, out_h, out_w = _padded(x, pads, kh, kw, workspace)
    use_bias = bias is not None
    if use_bias:
        _check("bias", bias, 1, x.dtype)
        if bias.shape != (n_filters,):
            raise ValueError(f"conv2d_1ch: bias must have shape ({n_filters},), got "
                             f"{bias.shape}.")
        bias = np.ascontiguousarray(bias)
    else:
        bias = np.zeros(1, x.dtype)  # not read: a placeholder of the right type
    shape = (x.shape[0], out_h, out_w, n_filters)
    if out is None:
        out = _buffer(workspace, "z", shape, x.dtype)
    elif (not isinstance(out, np.ndarray) or out.shape != shape or out.dtype != x.dtype
          or not out.flags.c_contiguous):
        raise ValueError(f"conv2d_1ch: out must be a C-contiguous {x.dtype} array of shape "
                         f"{shape}, got {getattr(out, 'dtype', None)} "
                         f"{getattr(out, 'shape', None)}.")
    k2 = np.ascontiguousarray(kernel).reshape(kh * kw, n_filters)
    _conv1ch_forward_into(xp, k2, bias, use_bias, bool(relu), x.dtype.type(0), out)
    return out, {"xp": xp, "kernel_shape": kernel.shape, "out_shape": shape}


def conv2d_1ch_backward_kernel(dz, cache):
    """dL/dkernel of conv2d_1ch_forward (before any bias/ReLU: pass dL/dz).

    dz: (N, OH, OW, F) in the forward's dtype; cache from the forward call
    -> dkernel (KH, KW, 1, F), summed over the batch. The bias gradient is dz.sum(axis=(0,1,2)).
    """
    xp = cache["xp"]
    _check("dz", dz, 4, xp.dtype)
    if dz.shape != cache["out_shape"]:
        raise ValueError(f"conv2d_1ch: dz must have the forward output's shape "
                         f"{cache['out_shape']}, got {dz.shape}.")
    kh, kw, _, n_filters = cache["kernel_shape"]
    dkernel = np.empty((kh * kw, n_filters), xp.dtype)
    _conv1ch_backward_kernel_into(xp, np.ascontiguousarray(dz), kh, kw, dkernel)
    return dkernel.reshape(cache["kernel_shape"])

