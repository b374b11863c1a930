"""Winograd F(2x2, 3x3) convolution for 3x3, stride-1 layers: forward, input and kernel gradient.

Prototype kernels for issue 14 (not wired into the layers yet). The math (Lavin & Gray, "Fast
Algorithms for Convolutional Neural Networks", 2016): split the output into 2x2 tiles; each
needs a 4x4 patch ``d`` of the (padded) input, and for a 3x3 kernel ``g``

    y_tile = A^T [ (G g G^T) * (B^T d B) ] A          (* is elementwise, 4x4)

    B^T = [[1, 0, -1,  0],     G = [[1,    0,   0],     A^T = [[1, 1,  1,  0],
           [0, 1,  1,  0],          [1/2, 1/2, 1/2],           [0, 1, -1, -1]]
           [0, -1, 1,  0],          [1/2,-1/2, 1/2],
           [0, 1,  0, -1]]          [0,    0,   1]]

which is exactly the cross-correlation Keras computes, with 16 multiplies per tile and channel
pair instead of 36 (2.25x fewer). Summed over the input channels, the 16 elementwise products
become 16 matrix products, one per position k of the 4x4 transform:

    U[k] (C, F) = kernel transform;  V[k] (T, C) = input transform of the T = N*TH*TW tiles
    M[k] (T, F) = V[k] @ U[k]                               (BLAS, through NumPy)
    y = output transform of M

Backward is the adjoint of each linear step, in reverse (so it is the exact gradient of the
forward, and with it of the convolution):

    dM = A dY A^T (per tile);   dV[k] = dM[k] @ U[k]^T;   dU[k] = V[k]^T @ dM[k]
    dx = B dV B^T, added up over the overlapping tiles;     dkernel = G^T dU G

Layout: NHWC input, Keras kernels (3, 3, C, F); V (16, T, C), U (16, C, F), M (16, T, F), each
matrix C-contiguous, so every transform loops over the channel axis innermost (vectorised) and
every product is one BLAS call. The 16 matrices of a stack sit an odd number of cache lines
apart (see _stack_stride): 4 KiB apart, as T*F floats often are, they collide in the L1 cache.
Padding ('valid', 'same' or any pads) and the partial tiles at the
bottom/right of an odd output are handled by copying the input once into a zero-bordered
buffer of the tiles' extent. float32 transforms round differently from im2col + BLAS: results
agree to about 1e-6 relative in float32, 1e-14 in float64.

Compiled kernels (``@njit(cache=True, nogil=True)``, serial: parallelism is the batch split
one level up) write into buffers they are handed and allocate nothing; the Python wrappers
check shapes and dtypes first, so a mismatch raises instead of writing past a buffer. Pass a
dict as ``workspace`` to reuse the buffers between calls of the same shape.
"""

from __future__ import annotations

import numpy as np

from ._prototype import buffer as _buffer
from ._prototype import check_array
from .kernels import _jit

__all__ = ["winograd_conv2d_forward", "winograd_conv2d_backward", "tile_counts"]

TILE = 2  # output tile side (m); input patch side m + r - 1 = 4


def tile_counts(out_h, out_w):
    """(TH, TW): 2x2 output tiles covering an OH x OW output, ceil(OH / 2) x ceil(OW / 2)."""
    return (out_h + 1) // 2, (out_w + 1) // 2


# --------------------------------------------------------------------------- compiled steps


@_jit(nogil=True)
def _pad_into(x, top, left, xp):
    """xp[:, top:top+H, left:left+W, :] = x, zero elsewhere. xp (N, HP, WP, C)."""
    n_batch, h, w, c = x.shape
    hp, wp = xp.shape[1], xp.shape[2]
    for n in range(n_batch):
        for i in range(hp):
            hh = i - top
            for j in range(wp):
                ww = j - left
                if 0 <= hh < h and 0 <= ww < w:
                    for ch in range(c):
                        xp[n, i, j, ch] = x[n, hh, ww, ch]
                else:
                    for ch in range(c):
                        xp[n, i, j, ch] = 0.0


@_jit(nogil=True, inline="always")
def _g(g0, g1, g2, half):
    """G (g0, g1, g2): the kernel transform of one row or column, 3 -> 4 values."""
    return g0, half * (g0 + g1 + g2), half * (g0 - g1 + g2), g2


@_jit(nogil=True, inline="always")
def _g_adjoint(u0, u1, u2, u3, half):
    """G^T (u0, u1, u2, u3), 4 -> 3 values: the adjoint of _g."""
    return u0 + half * (u1 + u2), half * (u1 - u2), half * (u1 + u2) + u3


@_jit(nogil=True)
def _kernel_transform_into(kernel, half, u):
    """kernel (3, 3, C, F) -> u (16, >= C*F): u[4a + b, c*F + f] = (G g G^T)[a, b].

    half: 0.5 in the arrays' dtype (a float64 literal would make float32 math run in float64)."""
    _, _, c, f = kernel.shape
    g = kernel
    for ch in range(c):
        cf = ch * f
        for k in range(f):
            # q = G g (4 x 3): each column j of g transformed
            q00, q10, q20, q30 = _g(g[0, 0, ch, k], g[1, 0, ch, k], g[2, 0, ch, k], half)
            q01, q11, q21, q31 = _g(g[0, 1, ch, k], g[1, 1, ch, k], g[2, 1, ch, k], half)
            q02, q12, q22, q32 = _g(g[0, 2, ch, k], g[1, 2, ch, k], g[2, 2, ch, k], half)
            # u = q G^T: each row a of q transformed
            u[0, cf + k], u[1, cf + k], u[2, cf + k], u[3, cf + k] = _g(q00, q01, q02, half)
            u[4, cf + k], u[5, cf + k], u[6, cf + k], u[7, cf + k] = _g(q10, q11, q12, half)
            u[8, cf + k], u[9, cf + k], u[10, cf + k], u[11, cf + k] = _g(q20, q21, q22, half)
            u[12, cf + k], u[13, cf + k], u[14, cf + k], u[15, cf + k] = _g(q30, q31, q32, half)


@_jit(nogil=True)
def _kernel_transform_adjoint_into(du, half, dkernel):
    """du (16, >= C*F) -> dkernel (3, 3, C, F) = G^T dU G (the adjoint of the kernel transform)."""
    _, _, c, f = dkernel.shape
    for ch in range(c):
        cf = ch * f
        for k in range(f):
            # h = G^T dU (3 x 4): each column b of dU
            h00, h10, h20 = _g_adjoint(
                du[0, cf + k], du[4, cf + k], du[8, cf + k], du[12, cf + k], half)
            h01, h11, h21 = _g_adjoint(
                du[1, cf + k], du[5, cf + k], du[9, cf + k], du[13, cf + k], half)
            h02, h12, h22 = _g_adjoint(
                du[2, cf + k], du[6, cf + k], du[10, cf + k], du[14, cf + k], half)
            h03, h13, h23 = _g_adjoint(
                du[3, cf + k], du[7, cf + k], du[11, cf + k], du[15, cf + k], half)
            # dkernel = h G: each row i of h
            dkernel[0, 0, ch, k], dkernel[0, 1, ch, k], dkernel[0, 2, ch, k] = _g_adjoint(
                h00, h01, h02, h03, half)
            dkernel[1, 0, ch, k], dkernel[1, 1, ch, k], dkernel[1, 2, ch, k] = _g_adjoint(
                h10, h11, h12, h13, half)
            dkernel[2, 0, ch, k], dkernel[2, 1, ch, k], dkernel[2, 2, ch, k] = _g_adjoint(
                h20, h21, h22, h23, half)


# Each transform is one loop over the channels per tile that reads the tile's 16 values and
# writes its 16 results. LLVM leaves these loops scalar: the 16 matrices of a stack are one
# array at a stride it cannot see at compile time, so it cannot prove the stores independent
# ("unsafe dependent memory operations"). Split into one loop per stored matrix they
# vectorise, but then run 2-3x slower: 64 loops of 25-64 iterations per tile cost more in
# loop overhead than SIMD saves (measured on the tutorial's conv2, see benchmarks/README.md).


@_jit(nogil=True)
def _input_transform_into(xp, tiles_h, tiles_w, v):
    """xp (N, HP, WP, C), zero-bordered to cover every tile -> v (16, >= T*C): v[k, t*C + c] =
    (B^T d B)[k] for tile t = (n*TH + i)*TW + j, whose 4x4 patch d starts at xp[n, 2i, 2j]."""
    n_batch = xp.shape[0]
    c = xp.shape[3]
    for n in range(n_batch):
        for ti in range(tiles_h):
            h0 = 2 * ti
            for tj in range(tiles_w):
                w0 = 2 * tj
                tc = ((n * tiles_h + ti) * tiles_w + tj) * c
                for ch in range(c):
                    # r = B^T d: rows (d0 - d2, d1 + d2, d2 - d1, d1 - d3), per column b
                    d0, d1 = xp[n, h0, w0, ch], xp[n, h0 + 1, w0, ch]
                    d2, d3 = xp[n, h0 + 2, w0, ch], xp[n, h0 + 3, w0, ch]
                    r00, r10, r20, r30 = d0 - d2, d1 + d2, d2 - d1, d1 - d3
                    d0, d1 = xp[n, h0, w0 + 1, ch], xp[n, h0 + 1, w0 + 1, ch]
                    d2, d3 = xp[n, h0 + 2, w0 + 1, ch], xp[n, h0 + 3, w0 + 1, ch]
                    r01, r11, r21, r31 = d0 - d2, d1 + d2, d2 - d1, d1 - d3
                    d0, d1 = xp[n, h0, w0 + 2, ch], xp[n, h0 + 1, w0 + 2, ch]
                    d2, d3 = xp[n, h0 + 2, w0 + 2, ch], xp[n, h0 + 3, w0 + 2, ch]
                    r02, r12, r22, r32 = d0 - d2, d1 + d2, d2 - d1, d1 - d3
                    d0, d1 = xp[n, h0, w0 + 3, ch], xp[n, h0 + 1, w0 + 3, ch]
                    d2, d3 = xp[n, h0 + 2, w0 + 3, ch], xp[n, h0 + 3, w0 + 3, ch]
                    r03, r13, r23, r33 = d0 - d2, d1 + d2, d2 - d1, d1 - d3
                    # v = r B: the same combination of columns
                    i = tc + ch
                    v[0, i], v[1, i], v[2, i], v[3, i] = r00 - r02, r01 + r02, r02 - r01, r01 - r03
                    v[4, i], v[5, i], v[6, i], v[7, i] = r10 - r12, r11 + r12, r12 - r11, r11 - r13
                    v[8, i], v[9, i], v[10, i], v[11, i] = (r20 - r22, r21 + r22, r22 - r21,
                                                            r21 - r23)
                    v[12, i], v[13, i], v[14, i], v[15, i] = (r30 - r32, r31 + r32, r32 - r31,
                                                              r31 - r33)


@_jit(nogil=True, inline="always")
def _b(v0, v1, v2, v3):
    """B (v0, v1, v2, v3) = (v0, v1 - v2 + v3, v1 + v2 - v0, -v3): the adjoint of the rows
    (d0 - d2, d1 + d2, d2 - d1, d1 - d3) of B^T."""
    return v0, v1 - v2 + v3, v1 + v2 - v0, -v3


@_jit(nogil=True)
def _input_transform_adjoint_into(dv, tiles_h, tiles_w, dxp):
    """dv (16, >= T*C) -> dxp (N, HP, WP, C): zeroed, then every tile's B dV B^T added at its
    patch (tiles overlap by 2 rows/columns, so contributions add up; serial, no races)."""
    n_batch = dxp.shape[0]
    c = dxp.shape[3]
    dxp[...] = 0.0
    for n in range(n_batch):
        for ti in range(tiles_h):
            h0 = 2 * ti
            for tj in range(tiles_w):
                w0 = 2 * tj
                tc = ((n * tiles_h + ti) * tiles_w + tj) * c
                for ch in range(c):
                    i = tc + ch
                    # p = B dV, per column b
                    p00, p10, p20, p30 = _b(dv[0, i], dv[4, i], dv[8, i], dv[12, i])
                    p01, p11, p21, p31 = _b(dv[1, i], dv[5, i], dv[9, i], dv[13, i])
                    p02, p12, p22, p32 = _b(dv[2, i], dv[6, i], dv[10, i], dv[14, i])
                    p03, p13, p23, p33 = _b(dv[3, i], dv[7, i], dv[11, i], dv[15, i])
                    # dd = p B^T, along each row a, added into the patch
                    q0, q1, q2, q3 = _b(p00, p01, p02, p03)
                    dxp[n, h0, w0, ch] += q0
                    dxp[n, h0, w0 + 1, ch] += q1
                    dxp[n, h0, w0 + 2, ch] += q2
                    dxp[n, h0, w0 + 3, ch] += q3
                    q0, q1, q2, q3 = _b(p10, p11, p12, p13)
                    dxp[n, h0 + 1, w0, ch] += q0
                    dxp[n, h0 + 1, w0 + 1, ch] += q1
                    dxp[n, h0 + 1, w0 + 2, ch] += q2
                    dxp[n, h0 + 1, w0 + 3, ch] += q3
                    q0, q1, q2, q3 = _b(p20, p21, p22, p23)
                    dxp[n, h0 + 2, w0, ch] += q0
                    dxp[n, h0 + 2, w0 + 1, ch] += q1
                    dxp[n, h0 + 2, w0 + 2, ch] += q2
                    dxp[n, h0 + 2, w0 + 3, ch] += q3
                    q0, q1, q2, q3 = _b(p30, p31, p32, p33)
                    dxp[n, h0 + 3, w0, ch] += q0
                    dxp[n, h0 + 3, w0 + 1, ch] += q1
                    dxp[n, h0 + 3, w0 + 2, ch] += q2
                    dxp[n, h0 + 3, w0 + 3, ch] += q3


@_jit(nogil=True)
def _crop_into(xp, top, left, x):
    """x = xp[:, top:top+H, left:left+W, :] (the adjoint of _pad_into)."""
    n_batch, h, w, c = x.shape
    for n in range(n_batch):
        for i in range(h):
            for j in range(w):
                for ch in range(c):
                    x[n, i, j, ch] = xp[n, i + top, j + left, ch]


@_jit(nogil=True, inline="always")
def _a_t(m0, m1, m2, m3):
    """A^T (m0, m1, m2, m3) = (m0 + m1 + m2, m1 - m2 - m3)."""
    return m0 + m1 + m2, m1 - m2 - m3


@_jit(nogil=True, inline="always")
def _tile_output(m, i, bias_k, floor):
    """The 2x2 outputs max(A^T M A + bias, floor) of the tile whose M sits at m[:, i]."""
    s00, s10 = _a_t(m[0, i], m[4, i], m[8, i], m[12, i])
    s01, s11 = _a_t(m[1, i], m[5, i], m[9, i], m[13, i])
    s02, s12 = _a_t(m[2, i], m[6, i], m[10, i], m[14, i])
    s03, s13 = _a_t(m[3, i], m[7, i], m[11, i], m[15, i])
    y00, y01 = _a_t(s00, s01, s02, s03)
    y10, y11 = _a_t(s10, s11, s12, s13)
    return (max(y00 + bias_k, floor), max(y01 + bias_k, floor), max(y10 + bias_k, floor),
            max(y11 + bias_k, floor))


@_jit(nogil=True)
def _output_transform_into(m, tiles_h, tiles_w, bias, floor, z):
    """m (16, >= T*F), m[k, t*F + f] -> z (N, OH, OW, F) = max(A^T M A + bias, floor) per
    tile, cut at the output's edge. bias (F,) (zeros for none); floor: 0 for ReLU, -inf for
    none, in the arrays' dtype (so float32 stays float32)."""
    n_batch, out_h, out_w, f = z.shape
    for n in range(n_batch):
        for ti in range(tiles_h):
            oh = 2 * ti
            for tj in range(tiles_w):
                ow = 2 * tj
                tf = ((n * tiles_h + ti) * tiles_w + tj) * f
                # A whole tile, without a test per value (the loop below is the same with
                # the tests, for the tiles the bottom or right edge cuts).
                if oh + 1 < out_h and ow + 1 < out_w:
                    for k in range(f):
                        y00, y01, y10, y11 = _tile_output(m, tf + k, bias[k], floor)
                        z[n, oh, ow, k] = y00
                        z[n, oh, ow + 1, k] = y01
                        z[n, oh + 1, ow, k] = y10
                        z[n, oh + 1, ow + 1, k] = y11
                    continue
                for k in range(f):  # a tile cut by the bottom or right edge
                    y00, y01, y10, y11 = _tile_output(m, tf + k, bias[k], floor)
                    z[n, oh, ow, k] = y00
                    if ow + 1 < out_w:
                        z[n, oh, ow + 1, k] = y01
                    if oh + 1 < out_h:
                        z[n, oh + 1, ow, k] = y10
                        if ow + 1 < out_w:
                            z[n, oh + 1, ow + 1, k] = y11


@_jit(nogil=True, inline="always")
def _a(y0, y1):
    """A (y0, y1) = (y0, y0 + y1, y0 - y1, -y1): the adjoint of _a_t."""
    return y0, y0 + y1, y0 - y1, -y1


@_jit(nogil=True, inline="always")
def _tile_output_adjoint(dm, i, y00, y01, y10, y11):
    """dm[:, i] = A dY A^T for the 2x2 output gradient dY of one tile."""
    e00, e10, e20, e30 = _a(y00, y10)  # A dY, column 0
    e01, e11, e21, e31 = _a(y01, y11)  # column 1
    dm[0, i], dm[1, i], dm[2, i], dm[3, i] = _a(e00, e01)
    dm[4, i], dm[5, i], dm[6, i], dm[7, i] = _a(e10, e11)
    dm[8, i], dm[9, i], dm[10, i], dm[11, i] = _a(e20, e21)
    dm[12, i], dm[13, i], dm[14, i], dm[15, i] = _a(e30, e31)


@_jit(nogil=True)
def _output_transform_adjoint_into(dz, tiles_h, tiles_w, zero, dm):
    """dz (N, OH, OW, F) -> dm (16, >= T*F) = A dY A^T per tile (dY = zero past the output's
    edge; zero: 0 in the arrays' dtype)."""
    n_batch, out_h, out_w, f = dz.shape
    for n in range(n_batch):
        for ti in range(tiles_h):
            oh = 2 * ti
            for tj in range(tiles_w):
                ow = 2 * tj
                tf = ((n * tiles_h + ti) * tiles_w + tj) * f
                if oh + 1 < out_h and ow + 1 < out_w:  # a whole tile: no test per value
                    for k in range(f):
                        _tile_output_adjoint(dm, tf + k, dz[n, oh, ow, k], dz[n, oh, ow + 1, k],
                                             dz[n, oh + 1, ow, k], dz[n, oh + 1, ow + 1, k])
                    continue
                two_rows, two_cols = oh + 1 < out_h, ow + 1 < out_w
                for k in range(f):
                    y01 = dz[n, oh, ow + 1, k] if two_cols else zero
                    y10 = dz[n, oh + 1, ow, k] if two_rows else zero
                    y11 = dz[n, oh + 1, ow + 1, k] if two_rows and two_cols else zero
                    _tile_output_adjoint(dm, tf + k, dz[n, oh, ow, k], y01, y10, y11)


# --------------------------------------------------------------------------- wrappers


def _stack_stride(elements, itemsize):
    """Elements between the 16 matrices of a stack: at least `elements`, a whole number of
    64-byte cache lines, and an odd number of them. With a stride that is a multiple of 4 KiB
    (T*F = 576*64 floats for the tutorial's conv2 is one) all 16 matrices' rows fall into the
    same L1 cache set, and the transforms, which touch all 16 at once, ran 10-30x slower."""
    per_line = 64 // itemsize
    lines = -(-elements // per_line)
    if lines % 2 == 0:
        lines += 1
    return lines * per_line


def _stack(workspace, name, rows, cols, dtype):
    """(flat (16, LD) for the compiled transforms, view (16, rows, cols) for np.matmul) of one
    stack of 16 matrices; LD from _stack_stride."""
    ld = _stack_stride(rows * cols, np.dtype(dtype).itemsize)
    flat = _buffer(workspace, name, (16, ld), dtype)
    return flat, flat[:, :rows * cols].reshape(16, rows, cols)


def _check_float(name, array, dtype=None):
    check_array("winograd", name, array, dtype)


def _geometry(x_shape, pads):
    """(OH, OW, TH, TW, HP, WP) for a 3x3 stride-1 convolution with these pads."""
    _, h, w, _ = x_shape
    top, bottom, left, right = pads
    out_h, out_w = h + top + bottom - 2, w + left + right - 2
    if out_h < 1 or out_w < 1:
        raise ValueError(f"winograd: a 3x3 kernel does not fit the {h}x{w} input with pads "
                         f"{tuple(pads)}; use 'same' padding or a larger input.")
    tiles_h, tiles_w = tile_counts(out_h, out_w)
    return out_h, out_w, tiles_h, tiles_w, 2 * tiles_h + 2, 2 * tiles_w + 2


def _check_pads(pads):
    try:
        pads = tuple(int(p) for p in pads)
    except TypeError:
        raise TypeError(f"winograd: pads must be (top, bottom, left, right), got "
                        f"{pads!r}.") from None
    if len(pads) != 4 or min(pads) < 0 or max(pads) > 2:
        raise ValueError(f"winograd: pads must be 4 ints in 0..2 (top, bottom, left, right) for "
                         f"a 3x3 kernel, got {pads}.")
    return pads


def winograd_conv2d_forward(x, kernel, strides=(1, 1), pads=(0, 0, 0, 0), bias=None,
                            relu=False, workspace=None):
    """3x3 stride-1 convolution by Winograd F(2x2, 3x3).

    x: (N, H, W, C), kernel: (3, 3, C, F), same float dtype; pads (top, bottom, left, right)
    each 0..2 ((0, 0, 0, 0) = 'valid', (1, 1, 1, 1) = 'same'); bias: (F,) or None; relu: apply
    max(., 0) after the bias. -> (z, cache): z (N, OH, OW, F) with OH = H + top + bottom - 2;
    cache for winograd_conv2d_backward (holds V, U and the geometry).
    Raises ValueError/TypeError for any other kernel size, stride, shape or dtype.
    """
    _check_float("x", x)
    _check_float("kernel", kernel, x.dtype)
    if x.ndim != 4 or kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
        raise ValueError(f"winograd: needs x (N, H, W, C) and a (3, 3, C, F) kernel, got x "
                         f"{x.shape} and kernel {kernel.shape}.")
    if kernel.shape[2] != x.shape[3]:
        raise ValueError(f"winograd: kernel {kernel.shape} expects {kernel.shape[2]} input "
                         f"channels, x has {x.shape[3]}.")
    if tuple(int(s) for s in strides) != (1, 1):
        raise ValueError(f"winograd: F(2x2, 3x3) is for stride 1, got strides {tuple(strides)}.")
    pads = _check_pads(pads)
    n_filters = kernel.shape[3]
    use_bias = bias is not None
    if use_bias:
        _check_float("bias", bias, x.dtype)
        if bias.shape != (n_filters,):
            raise ValueError(f"winograd: bias must have shape ({n_filters},), got {bias.shape}.")
        bias = np.ascontiguousarray(bias)
    else:
        bias = np.zeros(kernel.shape[3], x.dtype)
    x = np.ascontiguousarray(x)
    kernel = np.ascontiguousarray(kernel)
    n_batch, _, _, channels = x.shape
    out_h, out_w, tiles_h, tiles_w, hp, wp = _geometry(x.shape, pads)
    tiles = n_batch * tiles_h * tiles_w
    dtype = x.dtype
    xp = _buffer(workspace, "xp", (n_batch, hp, wp, channels), dtype)
    _pad_into(x, pads[0], pads[2], xp)
    u, u3 = _stack(workspace, "u", channels, n_filters, dtype)
    _kernel_transform_into(kernel, dtype.type(0.5), u)
    v, v3 = _stack(workspace, "v", tiles, channels, dtype)
    _input_transform_into(xp, tiles_h, tiles_w, v)
    m, m3 = _stack(workspace, "m", tiles, n_filters, dtype)
    np.matmul(v3, u3, out=m3)
    z = _buffer(workspace, "z", (n_batch, out_h, out_w, n_filters), dtype)
    floor = dtype.type(0) if relu else dtype.type(-np.inf)
    _output_transform_into(m, tiles_h, tiles_w, bias, floor, z)
    cache = {"v": v3, "u": u3, "x_shape": x.shape, "pads": pads,
             "tiles": (tiles_h, tiles_w), "padded": (hp, wp), "kernel_shape": kernel.shape}
    return z, cache


def winograd_conv2d_backward(dz, cache, compute_dx=True, workspace=None):
    """Gradients of winograd_conv2d_forward's convolution (before any bias/ReLU: pass dL/dz).

    dz: (N, OH, OW, F), the forward's dtype; cache from the forward call
    -> (dx (N, H, W, C) or None when compute_dx=False, dkernel (3, 3, C, F)), summed over the
    batch. Apply the ReLU mask and take the bias gradient (dz.sum over N, OH, OW) beforehand.
    """
    v, u = cache["v"], cache["u"]
    _check_float("dz", dz, v.dtype)
    n_batch, h, w, channels = cache["x_shape"]
    n_filters = u.shape[2]
    top, _, left, _ = cache["pads"]
    out_h, out_w, tiles_h, tiles_w, hp, wp = _geometry(cache["x_shape"], cache["pads"])
    if dz.shape != (n_batch, out_h, out_w, n_filters):
        raise ValueError(f"winograd: dz must have the forward output's shape "
                         f"{(n_batch, out_h, out_w, n_filters)}, got {dz.shape}.")
    dz = np.ascontiguousarray(dz)
    dtype = v.dtype
    tiles = n_batch * tiles_h * tiles_w
    dm, dm3 = _stack(workspace, "dm", tiles, n_filters, dtype)
    _output_transform_adjoint_into(dz, tiles_h, tiles_w, dtype.type(0), dm)
    du, du3 = _stack(workspace, "du", channels, n_filters, dtype)
    np.matmul(v.transpose(0, 2, 1), dm3, out=du3)
    dkernel = np.empty(cache["kernel_shape"], dtype)
    _kernel_transform_adjoint_into(du, dtype.type(0.5), dkernel)
    if not compute_dx:
        return None, dkernel
    dv, dv3 = _stack(workspace, "dv", tiles, channels, dtype)
    np.matmul(dm3, u.transpose(0, 2, 1), out=dv3)
    dxp = _buffer(workspace, "dxp", (n_batch, hp, wp, channels), dtype)
    _input_transform_adjoint_into(dv, tiles_h, tiles_w, dxp)
    dx = _buffer(workspace, "dx", (n_batch, h, w, channels), dtype)
    _crop_into(dxp, top, left, dx)
    return dx, dkernel
