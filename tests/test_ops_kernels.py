"""Convolution and max-pooling ops (minicnn/ops/reference.py and minicnn/ops/kernels.py).

What holds them together:
- the reference im2col convolution equals the plain-loop oracle conv2d_naive;
- a one-hot kernel picks the input pixel Keras would (cross-correlation, pads top/left first);
- every Numba kernel equals its reference twin, in float32 and float64, on contiguous and
  non-contiguous inputs, and keeps the input dtype;
- col2im is the adjoint of im2col;
- backward passes agree with central finite differences (float64, distinct input values).
"""

import inspect

import numpy as np
import pytest

from minicnn import ops
from minicnn.ops import kernels, reference
from minicnn.ops.padding import conv_geometry, output_hw

DTYPES = [np.float32, np.float64]
LAYOUTS = ["contiguous", "sliced", "transposed"]
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
MODULES = [pytest.param(reference, id="reference"), pytest.param(kernels, id="kernels")]

# x_shape, (KH, KW), filters, strides, padding ('valid', 'same' or explicit (t, b, l, r) pads)
CONV_CASES = [
    ((2, 7, 6, 3), (3, 3), 4, (1, 1), "valid"),
    ((2, 7, 6, 3), (3, 3), 4, (1, 1), "same"),
    ((3, 9, 8, 2), (3, 2), 5, (2, 2), "same"),  # odd sizes: extra pad at bottom/right
    ((1, 8, 9, 4), (4, 3), 3, (2, 2), "valid"),  # the last row/column is never reached
    ((2, 5, 7, 1), (2, 3), 2, (1, 2), "same"),
    ((2, 6, 6, 2), (5, 5), 3, (3, 3), "same"),
    ((2, 5, 5, 3), (1, 1), 2, (1, 1), "valid"),
    ((2, 6, 5, 3), (3, 3), 2, (1, 2), (2, 0, 1, 3)),  # asymmetric explicit pads
]
CONV_IDS = [f"x{c[0]}-k{c[1]}-f{c[2]}-s{c[3]}-{c[4]}" for c in CONV_CASES]

# x_shape, pool_size, strides, padding
POOL_CASES = [
    ((2, 6, 6, 3), (2, 2), (2, 2), "valid"),
    ((2, 7, 5, 3), (2, 2), (2, 2), "same"),  # odd sizes: -inf pad at bottom/right
    ((2, 7, 7, 2), (3, 3), (2, 2), "valid"),  # overlapping windows
    ((1, 8, 6, 4), (3, 3), (1, 1), "same"),  # overlapping, padded on every side
    ((2, 9, 8, 1), (3, 2), (2, 3), "same"),
    ((3, 5, 5, 2), (2, 3), (1, 2), "valid"),
    ((2, 5, 6, 2), (3, 3), (2, 2), (1, 2, 2, 0)),  # asymmetric explicit pads
]
POOL_IDS = [f"x{c[0]}-p{c[1]}-s{c[2]}-{c[3]}" for c in POOL_CASES]


# --------------------------------------------------------------------------- helpers


def make_array(rng, shape, dtype, layout="contiguous"):
    """Standard-normal array of `shape` and `dtype`, C-contiguous or a non-contiguous view."""
    if layout == "contiguous":
        return rng.standard_normal(shape).astype(dtype)
    if layout == "sliced":
        big = rng.standard_normal(tuple(d + 2 for d in shape)).astype(dtype)
        a = big[tuple(slice(1, 1 + d) for d in shape)]
    elif layout == "transposed":
        a = rng.standard_normal(shape[::-1]).astype(dtype).T  # Fortran-ordered view
    else:
        raise ValueError(layout)
    assert not a.flags.c_contiguous
    return a


def distinct_values(rng, shape, low=-1.0, high=1.0):
    """float64 array whose values are all different (no ties in max pooling)."""
    size = int(np.prod(shape))
    return rng.permutation(np.linspace(low, high, size)).reshape(shape)


def resolve_pads(x_shape, window, strides, padding):
    if isinstance(padding, tuple):
        return padding
    return conv_geometry(x_shape[1:3], window, strides, padding)[2]


def assert_close(actual, expected, dtype):
    """Same dtype as the input, same shape, values equal up to the dtype's tolerance."""
    assert actual.dtype == np.dtype(dtype)
    assert actual.shape == expected.shape
    rtol = RTOL[np.dtype(dtype)]
    atol = rtol * float(np.max(np.abs(expected), initial=1.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def rel_error(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300)


def numerical_gradient(f, a, eps=1e-6):
    """Central differences of scalar f() with respect to every element of a (modified in place)."""
    grad = np.zeros_like(a)
    flat, gflat = a.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        orig = flat[i]
        flat[i] = orig + eps
        f_plus = f()
        flat[i] = orig - eps
        f_minus = f()
        flat[i] = orig
        gflat[i] = (f_plus - f_minus) / (2 * eps)
    return grad


def maxpool_naive(x, pool_size, strides, pads):
    """Loop oracle: first maximum among the real (unpadded) elements of each window."""
    n_batch, h, w, c = x.shape
    (ph, pw), (sh, sw), (top, _, left, _) = pool_size, strides, pads
    out_h, out_w = output_hw(h, w, ph, pw, strides, pads)
    y = np.zeros((n_batch, out_h, out_w, c), x.dtype)
    argmax = np.zeros((n_batch, out_h, out_w, c), np.int64)
    for n in range(n_batch):
        for oh in range(out_h):
            for ow in range(out_w):
                for ch in range(c):
                    best = None
                    for i in range(ph):
                        for j in range(pw):
                            r, q = oh * sh + i - top, ow * sw + j - left
                            if (
                                0 <= r < h
                                and 0 <= q < w
                                and (best is None or x[n, r, q, ch] > best)
                            ):
                                best = x[n, r, q, ch]
                                argmax[n, oh, ow, ch] = r * w + q
                    y[n, oh, ow, ch] = best
    return y, argmax


# --------------------------------------------------------------------------- API contract


def test_package_exports_kernels_and_reference():
    for name in kernels.__all__:
        assert getattr(ops, name) is getattr(kernels, name)
    assert ops.reference is reference
    assert ops.conv_geometry is conv_geometry


def test_twins_have_identical_signatures():
    assert set(reference.__all__) - set(kernels.__all__) == {"conv2d_naive"}
    for name in kernels.__all__:
        assert inspect.signature(getattr(kernels, name)) == inspect.signature(
            getattr(reference, name)
        ), name


# --------------------------------------------------------------------------- convolution


@pytest.mark.parametrize("use_bias", [True, False])
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_reference_conv_matches_naive(case, use_bias):
    x_shape, (kh, kw), filters, strides, padding = case
    rng = np.random.default_rng(0)
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    x = rng.standard_normal(x_shape)
    kernel = rng.standard_normal((kh, kw, x_shape[3], filters))
    bias = rng.standard_normal(filters) if use_bias else None
    y, cols = reference.conv2d_forward(x, kernel, bias, strides, pads)
    expected = reference.conv2d_naive(x, kernel, bias, strides, pads)
    out_h = (x_shape[1] + pads[0] + pads[1] - kh) // strides[0] + 1
    out_w = (x_shape[2] + pads[2] + pads[3] - kw) // strides[1] + 1
    assert y.shape == (x_shape[0], out_h, out_w, filters)
    assert cols.shape == (x_shape[0] * out_h * out_w, kh * kw * x_shape[3])
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("conv", [reference.conv2d_naive, kernels.conv2d_forward])
def test_one_hot_kernel_picks_the_keras_pixel(conv):
    """Cross-correlation (no flip), and 'same' puts the odd extra pad at the bottom/right."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 7, 5, 3))
    strides = (2, 2)
    _, _, pads = conv_geometry((7, 5), (4, 4), strides, "same")
    assert pads == (1, 2, 1, 2)  # total 3 on both axes: 1 before, 2 after
    i0, j0, c0 = 1, 3, 2
    kernel = np.zeros((4, 4, 3, 1))
    kernel[i0, j0, c0, 0] = 1.0
    y = conv(x, kernel, None, strides, pads)
    y = y[0] if isinstance(y, tuple) else y
    xp = np.pad(x, ((0, 0), (1, 2), (1, 2), (0, 0)))
    for oh in range(y.shape[1]):
        for ow in range(y.shape[2]):
            want = xp[:, oh * 2 + i0, ow * 2 + j0, c0]
            np.testing.assert_array_equal(y[:, oh, ow, 0], want)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_im2col_kernel_matches_reference(case, dtype, layout):
    x_shape, (kh, kw), _, strides, padding = case
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    x = make_array(np.random.default_rng(2), x_shape, dtype, layout)
    got = kernels.im2col(x, kh, kw, strides, pads)
    want = reference.im2col(x, kh, kw, strides, pads)
    assert got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, want)  # a pure copy: exactly equal


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_col2im_kernel_matches_reference(case, dtype, layout):
    x_shape, (kh, kw), _, strides, padding = case
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    out_h, out_w = output_hw(x_shape[1], x_shape[2], kh, kw, strides, pads)
    dcols_shape = (x_shape[0] * out_h * out_w, kh * kw * x_shape[3])
    dcols = make_array(np.random.default_rng(3), dcols_shape, dtype, layout)
    got = kernels.col2im(dcols, x_shape, kh, kw, strides, pads)
    want = reference.col2im(dcols, x_shape, kh, kw, strides, pads)
    assert_close(got, want, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_forward_kernel_matches_reference(case, dtype, layout):
    x_shape, (kh, kw), filters, strides, padding = case
    rng = np.random.default_rng(4)
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    x = make_array(rng, x_shape, dtype, layout)
    kernel = make_array(rng, (kh, kw, x_shape[3], filters), dtype, layout)
    bias = make_array(rng, (filters,), dtype)
    for b in (bias, None):
        y, cols = kernels.conv2d_forward(x, kernel, b, strides, pads)
        y_ref, cols_ref = reference.conv2d_forward(x, kernel, b, strides, pads)
        assert_close(y, y_ref, dtype)
        assert_close(cols, cols_ref, dtype)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_conv_backward_kernel_matches_reference(case, dtype, layout):
    x_shape, (kh, kw), filters, strides, padding = case
    rng = np.random.default_rng(5)
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    x = make_array(rng, x_shape, dtype)
    kernel = make_array(rng, (kh, kw, x_shape[3], filters), dtype, layout)
    _, cols = reference.conv2d_forward(x, kernel, None, strides, pads)
    out_h, out_w = output_hw(x_shape[1], x_shape[2], kh, kw, strides, pads)
    dy = make_array(rng, (x_shape[0], out_h, out_w, filters), dtype, layout)
    got = kernels.conv2d_backward(dy, x_shape, cols, kernel, strides, pads)
    want = reference.conv2d_backward(dy, x_shape, cols, kernel, strides, pads)
    for g, w, name in zip(got, want, ("dx", "dkernel", "dbias"), strict=True):
        assert g.shape == w.shape, name
        assert_close(g, w, dtype)
    # dbias is the plain sum over batch and positions (no division by the batch size).
    assert_close(got[2], dy.sum(axis=(0, 1, 2)), dtype)
    for module in (kernels, reference):
        dx, dkernel, dbias = module.conv2d_backward(
            dy, x_shape, cols, kernel, strides, pads, use_bias=False
        )
        assert dbias is None
        assert_close(dx, want[0], dtype)
        assert_close(dkernel, want[1], dtype)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_col2im_is_adjoint_of_im2col(case, module):
    x_shape, (kh, kw), _, strides, padding = case
    rng = np.random.default_rng(6)
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    x = rng.standard_normal(x_shape)
    cols = module.im2col(x, kh, kw, strides, pads)
    c = rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, c)
    rhs = np.vdot(x, module.col2im(c, x_shape, kh, kw, strides, pads))
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(
    "case", [CONV_CASES[i] for i in (1, 2, 4, 7)], ids=[CONV_IDS[i] for i in (1, 2, 4, 7)]
)
def test_conv_backward_matches_finite_differences(case, module):
    x_shape, (kh, kw), filters, strides, padding = case
    rng = np.random.default_rng(7)
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    x = distinct_values(rng, x_shape)
    kernel = distinct_values(rng, (kh, kw, x_shape[3], filters))
    bias = distinct_values(rng, (filters,))
    y, cols = module.conv2d_forward(x, kernel, bias, strides, pads)
    g = rng.standard_normal(y.shape)  # loss = sum(y * g), so dL/dy = g

    def loss():
        return float(np.sum(module.conv2d_forward(x, kernel, bias, strides, pads)[0] * g))

    dx, dkernel, dbias = module.conv2d_backward(g, x.shape, cols, kernel, strides, pads)
    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-6
    assert rel_error(dkernel, numerical_gradient(loss, kernel)) < 1e-6
    assert rel_error(dbias, numerical_gradient(loss, bias)) < 1e-6


# --------------------------------------------------------------------------- max pooling


@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_reference_maxpool_matches_naive(case):
    x_shape, pool, strides, padding = case
    pads = resolve_pads(x_shape, pool, strides, padding)
    # Small integers make many ties, to check the first-maximum rule too.
    x = np.random.default_rng(8).integers(-3, 3, x_shape).astype(np.float64)
    y, argmax = reference.maxpool2d_forward(x, pool, strides, pads)
    y_naive, argmax_naive = maxpool_naive(x, pool, strides, pads)
    np.testing.assert_array_equal(y, y_naive)
    np.testing.assert_array_equal(argmax, argmax_naive)


@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_maxpool_kernel_matches_reference(case, dtype, layout, ties):
    x_shape, pool, strides, padding = case
    rng = np.random.default_rng(9)
    pads = resolve_pads(x_shape, pool, strides, padding)
    x = make_array(rng, x_shape, dtype, layout)
    if ties:
        x[...] = np.round(x)  # many equal values inside windows
    y, argmax = kernels.maxpool2d_forward(x, pool, strides, pads)
    y_ref, argmax_ref = reference.maxpool2d_forward(x, pool, strides, pads)
    assert y.dtype == np.dtype(dtype) and argmax.dtype == np.int64
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    # argmax really points at the maximum: x[n, h, w, c] with h*W + w = argmax.
    flat = x.reshape(x_shape[0], -1, x_shape[3])
    picked = np.take_along_axis(flat, argmax.reshape(x_shape[0], -1, x_shape[3]), axis=1)
    np.testing.assert_array_equal(picked.reshape(y.shape), y)

    dy = make_array(rng, y.shape, dtype, layout)
    dx = kernels.maxpool2d_backward(dy, argmax, x_shape)
    assert_close(dx, reference.maxpool2d_backward(dy, argmax_ref, x_shape), dtype)
    # Every output gradient lands somewhere: the totals per sample and channel agree.
    assert_close(dx.sum(axis=(1, 2)), dy.sum(axis=(1, 2)), dtype)


@pytest.mark.parametrize("module", MODULES)
def test_maxpool_ties_go_to_first_in_row_major_order(module):
    x = np.zeros((1, 4, 4, 1))
    x[0, 1, 0, 0] = x[0, 0, 1, 0] = 5.0  # tie in window (0, 0): (0, 1) comes first
    x[0, 2, 2, 0] = x[0, 3, 3, 0] = 7.0  # tie in window (1, 1): (2, 2) comes first
    _, argmax = module.maxpool2d_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    # Windows (0, 1) and (1, 0) are all zeros: their top-left element wins.
    np.testing.assert_array_equal(
        argmax[0, :, :, 0], [[0 * 4 + 1, 0 * 4 + 2], [2 * 4 + 0, 2 * 4 + 2]]
    )


@pytest.mark.parametrize("module", MODULES)
def test_maxpool_padding_never_wins(module):
    """All inputs negative: a zero-padded max would return 0 at the borders; Keras does not."""
    x = -1.0 - np.random.default_rng(10).random((2, 5, 5, 3))
    _, _, pads = conv_geometry((5, 5), (3, 3), (2, 2), "same")
    assert pads == (1, 1, 1, 1)
    y, _ = module.maxpool2d_forward(x, (3, 3), (2, 2), pads)
    y_naive, _ = maxpool_naive(x, (3, 3), (2, 2), pads)
    assert np.all(y < -1.0)
    np.testing.assert_array_equal(y, y_naive)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize("pads", [(2, 0, 0, 0), (0, 0, 0, 2), (-1, 0, 0, 0)])
def test_maxpool_rejects_pads_as_large_as_the_pool(module, pads):
    with pytest.raises(ValueError, match="maxpool2d_forward: pads"):
        module.maxpool2d_forward(np.zeros((1, 4, 4, 1)), (2, 2), (2, 2), pads)


@pytest.mark.parametrize("module", MODULES)
@pytest.mark.parametrize(
    "case", [POOL_CASES[i] for i in (1, 2, 3, 6)], ids=[POOL_IDS[i] for i in (1, 2, 3, 6)]
)
def test_maxpool_backward_matches_finite_differences(case, module):
    x_shape, pool, strides, padding = case
    rng = np.random.default_rng(11)
    pads = resolve_pads(x_shape, pool, strides, padding)
    x = distinct_values(rng, x_shape)  # gaps ~1e-2 >> eps: no window changes its winner
    y, argmax = module.maxpool2d_forward(x, pool, strides, pads)
    g = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(module.maxpool2d_forward(x, pool, strides, pads)[0] * g))

    dx = module.maxpool2d_backward(g, argmax, x_shape)
    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-6


# --------------------------------------------------------------------------- threading


def test_compiled_kernels_are_serial_and_release_the_gil():
    """minicnn.parallel runs batch shards in threads: every compiled kernel must release the
    GIL (nogil) and none may start Numba's own thread pool (parallel=True), whose workers
    would fight the shards for the cores (and which must not be entered from two threads)."""
    import numba

    from minicnn.ops import fused

    compiled = [obj for module in (kernels, fused) for obj in vars(module).values()
                if isinstance(obj, numba.core.registry.CPUDispatcher)]
    assert len(compiled) >= 9
    for dispatcher in compiled:
        assert dispatcher.targetoptions.get("nogil") is True, dispatcher
        assert not dispatcher.targetoptions.get("parallel"), dispatcher


@pytest.mark.parametrize("module", [reference, kernels], ids=["reference", "kernels"])
def test_conv_backward_without_dx_gives_the_same_parameter_gradients(module):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 6, 5, 3))
    kernel = rng.normal(size=(3, 3, 3, 4))
    y, cols = module.conv2d_forward(x, kernel, None, (1, 2), (1, 1, 1, 1))
    dy = rng.normal(size=y.shape)
    full = module.conv2d_backward(dy, x.shape, cols, kernel, (1, 2), (1, 1, 1, 1))
    skipped = module.conv2d_backward(dy, x.shape, cols, kernel, (1, 2), (1, 1, 1, 1),
                                     compute_dx=False)
    assert skipped[0] is None
    np.testing.assert_array_equal(skipped[1], full[1])
    np.testing.assert_array_equal(skipped[2], full[2])
