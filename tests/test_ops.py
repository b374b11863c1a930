"""The op contract, held in both backends (minicnn/ops/reference.py and minicnn/ops/fast.py).

What holds them together:
- the two backends export the same ops with identical signatures;
- the reference im2col convolution equals the plain-loop oracle conv2d_naive, and a one-hot
  kernel picks the pixel Keras would (cross-correlation, the odd 'same' pad at bottom/right);
- every fast op equals its reference twin, in float32 and float64, on contiguous and
  non-contiguous inputs, with and without reused buffers, and keeps the input dtype;
- col2im is the adjoint of im2col;
- every backward agrees with central finite differences (float64, distinct input values), in
  both backends.
"""

import inspect

import numpy as np
import pytest

from minicnn import ops
from minicnn.ops import fast, kernels, reference
from minicnn.ops.padding import conv_geometry, output_hw

DTYPES = [np.float32, np.float64]
LAYOUTS = ["contiguous", "sliced", "transposed"]
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}
BACKENDS = [pytest.param(reference, id="reference"), pytest.param(fast, id="fast")]

# x_shape, (KH, KW), filters, strides, padding ('valid', 'same' or explicit (t, b, l, r) pads)
CONV_CASES = [
    ((2, 7, 6, 3), (3, 3), 4, (1, 1), "valid"),
    ((2, 7, 6, 3), (3, 3), 4, (1, 1), "same"),
    ((3, 9, 8, 2), (3, 2), 5, (2, 2), "same"),  # odd sizes: extra pad at bottom/right
    ((1, 8, 9, 4), (4, 3), 3, (2, 2), "valid"),  # the last row/column is never reached
    ((2, 5, 7, 1), (2, 3), 2, (1, 2), "same"),  # one channel: Fortran-ordered cols
    ((3, 9, 8, 1), (3, 3), 4, (1, 1), "valid"),
    ((2, 6, 6, 2), (5, 5), 3, (3, 3), "same"),
    ((2, 5, 5, 3), (1, 1), 2, (1, 1), "valid"),
    ((2, 6, 5, 3), (3, 3), 2, (1, 2), (2, 0, 1, 3)),  # asymmetric explicit pads
]
CONV_IDS = [f"x{c[0]}-k{c[1]}-f{c[2]}-s{c[3]}-{c[4]}" for c in CONV_CASES]

# x_shape, pool_size, strides, padding
POOL_CASES = [
    ((2, 6, 6, 3), (2, 2), (2, 2), "valid"),  # tiled: window == stride, no padding
    ((2, 7, 5, 3), (2, 2), (2, 2), "valid"),  # tiled, odd sizes: the last row/col is dropped
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
    assert not a.flags.c_contiguous or a.ndim == 1
    return a


def distinct_values(rng, shape, low=-1.0, high=1.0):
    """float64 array whose values are all different (no ties in max pooling)."""
    size = int(np.prod(shape))
    values = np.linspace(low, high, size)
    values = np.where(np.abs(values) < 1e-3, 1e-3, values)  # no ReLU kink within eps
    return rng.permutation(values).reshape(shape)


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
                            inside = 0 <= r < h and 0 <= q < w
                            if inside and (best is None or x[n, r, q, ch] > best):
                                best = x[n, r, q, ch]
                                argmax[n, oh, ow, ch] = r * w + q
                    y[n, oh, ow, ch] = best
    return y, argmax


def avgpool_naive(x, pool_size, strides, pads):
    """Loop oracle: mean of the real elements of each window (padding not counted)."""
    n_batch, h, w, c = x.shape
    (ph, pw), (sh, sw), (top, _, left, _) = pool_size, strides, pads
    out_h, out_w = output_hw(h, w, ph, pw, strides, pads)
    y = np.zeros((n_batch, out_h, out_w, c))
    for oh in range(out_h):
        for ow in range(out_w):
            rows = [r for r in range(oh * sh - top, oh * sh - top + ph) if 0 <= r < h]
            cols = [q for q in range(ow * sw - left, ow * sw - left + pw) if 0 <= q < w]
            y[:, oh, ow, :] = x[:, rows][:, :, cols].mean(axis=(1, 2))
    return y


def conv_full(backend, x, kernel, strides, pads):
    return backend.conv2d_forward(x, kernel, strides, pads)[0]


# --------------------------------------------------------------------------- the contract


def test_backends_export_the_same_ops_with_the_same_signatures():
    assert set(fast.__all__) == set(reference.__all__)
    for name in ops.OPS:
        ref, quick = getattr(reference, name), getattr(fast, name)
        assert inspect.signature(ref) == inspect.signature(quick), name
        assert quick.__doc__ and ref.__doc__, name


def test_the_switch_dispatches_to_the_active_backend(monkeypatch):
    calls = []
    monkeypatch.setattr(reference, "dense_forward", lambda *a, **k: calls.append("ref") or 1)
    monkeypatch.setattr(fast, "dense_forward", lambda *a, **k: calls.append("fast") or 2)
    assert ops.get_backend() == "fast"
    with ops.backend("reference"):
        assert ops.get_backend() == "reference" and ops.backend_module() is reference
        assert ops.dense_forward(None, None) == 1
    assert ops.dense_forward(None, None) == 2
    assert calls == ["ref", "fast"]
    with pytest.raises(ValueError, match="unknown backend 'numba'"):
        ops.set_backend("numba")


# --------------------------------------------------------------------------- convolution


@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_reference_conv_matches_naive(case):
    x_shape, (kh, kw), filters, strides, padding = case
    rng = np.random.default_rng(0)
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    x = rng.standard_normal(x_shape)
    kernel = rng.standard_normal((kh, kw, x_shape[3], filters))
    z, _ = reference.conv2d_forward(x, kernel, strides, pads)
    expected = reference.conv2d_naive(x, kernel, None, strides, pads)
    out_h, out_w = output_hw(x_shape[1], x_shape[2], kh, kw, strides, pads)
    assert z.shape == (x_shape[0], out_h, out_w, filters)
    np.testing.assert_allclose(z, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
def test_one_hot_kernel_picks_the_keras_pixel(backend):
    """Cross-correlation (no flip), and 'same' puts the odd extra pad at the bottom/right."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 7, 5, 3))
    strides = (2, 2)
    _, _, pads = conv_geometry((7, 5), (4, 4), strides, "same")
    assert pads == (1, 2, 1, 2)  # total 3 on both axes: 1 before, 2 after
    i0, j0, c0 = 1, 3, 2
    kernel = np.zeros((4, 4, 3, 1))
    kernel[i0, j0, c0, 0] = 1.0
    z = conv_full(backend, x, kernel, strides, pads)
    xp = np.pad(x, ((0, 0), (1, 2), (1, 2), (0, 0)))
    for oh in range(z.shape[1]):
        for ow in range(z.shape[2]):
            np.testing.assert_array_equal(z[:, oh, ow, 0], xp[:, oh * 2 + i0, ow * 2 + j0, c0])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_fast_im2col_and_col2im_match_reference(case, dtype, layout):
    x_shape, (kh, kw), _, strides, padding = case
    rng = np.random.default_rng(2)
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    x = make_array(rng, x_shape, dtype, layout)
    cols = fast.im2col(x, kh, kw, strides, pads)
    assert cols.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(cols, reference.im2col(x, kh, kw, strides, pads))  # a copy
    dcols = make_array(rng, cols.shape, dtype, layout)
    assert_close(fast.col2im(dcols, x_shape, kh, kw, strides, pads),
                 reference.col2im(dcols, x_shape, kh, kw, strides, pads), dtype)


@pytest.mark.parametrize("reuse", [False, True], ids=["fresh", "buffers"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_fast_conv_matches_reference(case, dtype, layout, reuse):
    x_shape, (kh, kw), filters, strides, padding = case
    rng = np.random.default_rng(4)
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    ws = {} if reuse else None
    for _ in range(2 if reuse else 1):  # reused buffers must not leak values between calls
        x = make_array(rng, x_shape, dtype, layout)
        kernel = make_array(rng, (kh, kw, x_shape[3], filters), dtype, layout)
        z, cache = fast.conv2d_forward(x, kernel, strides, pads, ws=ws)
        z_ref, cache_ref = reference.conv2d_forward(x, kernel, strides, pads)
        assert_close(z, z_ref, dtype)
        dz = make_array(rng, z.shape, dtype, layout)
        for need_dx in (True, False):
            dx, dkernel = fast.conv2d_backward(dz, cache, need_dx=need_dx)
            dx_ref, dkernel_ref = reference.conv2d_backward(dz, cache_ref, need_dx=need_dx)
            assert_close(dkernel, dkernel_ref, dtype)
            if need_dx:
                assert_close(dx, dx_ref, dtype)
            else:
                assert dx is None and dx_ref is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", CONV_CASES, ids=CONV_IDS)
def test_col2im_is_adjoint_of_im2col(case, backend):
    x_shape, (kh, kw), _, strides, padding = case
    rng = np.random.default_rng(6)
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    x = rng.standard_normal(x_shape)
    cols = backend.im2col(x, kh, kw, strides, pads)
    c = rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, c)
    rhs = np.vdot(x, backend.col2im(c, x_shape, kh, kw, strides, pads))
    assert abs(lhs - rhs) <= 1e-12 * max(abs(lhs), 1.0)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [CONV_CASES[i] for i in (1, 2, 4, 8)],
                         ids=[CONV_IDS[i] for i in (1, 2, 4, 8)])
def test_conv_backward_matches_finite_differences(case, backend):
    x_shape, (kh, kw), filters, strides, padding = case
    rng = np.random.default_rng(7)
    pads = resolve_pads(x_shape, (kh, kw), strides, padding)
    x = distinct_values(rng, x_shape)
    kernel = distinct_values(rng, (kh, kw, x_shape[3], filters))
    z, cache = backend.conv2d_forward(x, kernel, strides, pads)
    g = rng.standard_normal(z.shape)  # loss = sum(z * g), so dL/dz = g

    def loss():
        return float(np.sum(backend.conv2d_forward(x, kernel, strides, pads)[0] * g))

    dx, dkernel = backend.conv2d_backward(g, cache)
    dx, dkernel = dx.copy(), dkernel.copy()
    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-6
    assert rel_error(dkernel, numerical_gradient(loss, kernel)) < 1e-6


def test_fast_conv_checks_that_kernel_and_input_fit():
    x = np.zeros((1, 5, 5, 3), np.float32)
    with pytest.raises(ValueError, match="channels and dtype must match"):
        fast.conv2d_forward(x, np.zeros((3, 3, 2, 4), np.float32), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match="channels and dtype must match"):
        fast.conv2d_forward(x, np.zeros((3, 3, 3, 4), np.float64), (1, 1), (0, 0, 0, 0))
    _, cache = fast.conv2d_forward(x, np.zeros((3, 3, 3, 4), np.float32), (1, 1), (0, 0, 0, 0))
    with pytest.raises(ValueError, match="does not match the forward pass"):
        fast.conv2d_backward(np.zeros((2, 3, 3, 4), np.float32), cache)


# --------------------------------------------------------------------------- dense


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("x_shape", [(4, 6), (2, 3, 6)], ids=["rank2", "rank3"])
def test_dense_matches_matmul_and_finite_differences(backend, x_shape):
    rng = np.random.default_rng(8)
    x = distinct_values(rng, x_shape)
    kernel = distinct_values(rng, (6, 5))
    z, cache = backend.dense_forward(x, kernel)
    np.testing.assert_allclose(z, np.einsum("...i,ij->...j", x, kernel), rtol=1e-12)
    g = rng.standard_normal(z.shape)

    def loss():
        return float(np.sum(backend.dense_forward(x, kernel)[0] * g))

    dx, dkernel = backend.dense_backward(g, cache)
    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-7
    assert rel_error(dkernel, numerical_gradient(loss, kernel)) < 1e-7
    assert backend.dense_backward(g, cache, need_dx=False)[0] is None


# --------------------------------------------------------------------------- activations


ACTIVATION_FORMULAS = {
    "linear": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "softmax": lambda z: np.exp(z) / np.exp(z).sum(axis=-1, keepdims=True),
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(ACTIVATION_FORMULAS))
def test_activation_values_and_gradients(backend, name):
    rng = np.random.default_rng(9)
    z = distinct_values(rng, (3, 5), -3, 3)
    y, cache = backend.activation_forward(z, name)
    np.testing.assert_allclose(y, ACTIVATION_FORMULAS[name](z), rtol=1e-12, atol=1e-15)
    g = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(backend.activation_forward(z, name)[0] * g))

    dz = backend.activation_backward(g, cache)
    assert rel_error(dz, numerical_gradient(loss, z)) < 1e-7


def test_sigmoid_does_not_overflow():
    y, _ = reference.activation_forward(np.array([-1000.0, 0.0, 1000.0]), "sigmoid")
    np.testing.assert_array_equal(y, [0.0, 0.5, 1.0])


@pytest.mark.parametrize("reuse", [False, True], ids=["fresh", "buffers"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 7, 1024, 1025, 5000])  # the blocks of the bias sum
@pytest.mark.parametrize("name", ["relu", "linear", "tanh", "softmax"])
@pytest.mark.parametrize("use_bias", [True, False])
def test_fast_bias_activation_matches_reference(name, dtype, rows, use_bias, reuse):
    rng = np.random.default_rng(rows)
    z = rng.standard_normal((rows, 6)).astype(dtype)
    bias = rng.standard_normal(6).astype(dtype) if use_bias else None
    ws = {} if reuse else None
    for _ in range(2 if reuse else 1):  # the second call replays the first one's checks
        y_ref, cache_ref = reference.bias_activation_forward(z, bias, name)
        y, cache = fast.bias_activation_forward(z.copy(), bias, name, ws=ws)
        assert_close(y, y_ref, dtype)
        dy = rng.standard_normal((rows, 6)).astype(dtype)
        dz, dbias = fast.bias_activation_backward(dy, cache)
        dz_ref, dbias_ref = reference.bias_activation_backward(dy, cache_ref)
        assert_close(dz, dz_ref, dtype)
        assert_close(dbias, dbias_ref, dtype)
        assert fast.bias_activation_backward(dy, cache, need_dbias=False)[1] is None
        z = rng.standard_normal((rows, 6)).astype(dtype)


def test_a_call_site_checks_again_when_an_argument_changes():
    """The fast ops skip the kernel wrappers' checks when a call repeats the shapes of the
    last checked call into the same buffers (fast._replay); any change must go through the
    checks again and raise, never reach a kernel that would write past a buffer."""
    rng = np.random.default_rng(0)
    f32 = np.float32
    x = rng.standard_normal((2, 6, 6, 3)).astype(f32)
    kernel = rng.standard_normal((3, 3, 3, 4)).astype(f32)
    conv_ws, act_ws, pool_ws = {}, {}, {}
    for _ in range(2):  # the second round replays
        z, conv_cache = fast.conv2d_forward(x, kernel, (1, 1), (0, 0, 0, 0), ws=conv_ws)
        y, act_cache = fast.bias_activation_forward(z, np.zeros(4, f32), "relu", ws=act_ws)
        p, pool_cache = fast.maxpool2d_forward(y, (2, 2), (2, 2), (0, 0, 0, 0), ws=pool_ws)
        dy = fast.maxpool2d_backward(np.ones_like(p), pool_cache)
        dz, _ = fast.bias_activation_backward(dy, act_cache)
        fast.conv2d_backward(dz, conv_cache)
    assert {"checked forward", "checked col2im"} <= set(conv_ws)
    assert {"checked forward", "checked backward"} <= set(act_ws)
    assert {"checked forward", "checked backward"} <= set(pool_ws)
    with pytest.raises(ValueError, match="conv2d_forward"):  # 2 channels against 3
        fast.conv2d_forward(x, kernel[:, :, :2], (1, 1), (0, 0, 0, 0), ws=conv_ws)
    with pytest.raises(ValueError, match="conv2d_forward"):  # a float64 kernel
        fast.conv2d_forward(x, kernel.astype(np.float64), (1, 1), (0, 0, 0, 0), ws=conv_ws)
    with pytest.raises(ValueError, match="bias"):  # 3 biases for 4 filters
        fast.bias_activation_forward(z, np.zeros(3, f32), "relu", ws=act_ws)
    with pytest.raises(ValueError, match="bias"):  # a non-contiguous bias
        fast.bias_activation_forward(z, np.zeros(8, f32)[::2], "relu", ws=act_ws)
    with pytest.raises(ValueError, match="act_backward_bias"):  # dy with other rows
        fast.bias_activation_backward(np.ones((2, 3, 4, 4), f32), act_cache)
    with pytest.raises(ValueError, match="maxpool2d"):  # dy with another pool's shape
        fast.maxpool2d_backward(np.ones((2, 1, 2, 4), f32), pool_cache)
    with pytest.raises(ValueError, match="conv2d_backward"):  # dz of another size
        fast.conv2d_backward(np.ones((2, 3, 4, 4), f32), conv_cache)
    # after the refusals, the call sites still give the reference's results
    z, conv_cache = fast.conv2d_forward(x, kernel, (1, 1), (0, 0, 0, 0), ws=conv_ws)
    assert_close(z, reference.conv2d_forward(x, kernel, (1, 1), (0, 0, 0, 0))[0], f32)
    dx, _ = fast.conv2d_backward(np.ones_like(z), conv_cache)
    _, ref_cache = reference.conv2d_forward(x, kernel, (1, 1), (0, 0, 0, 0))
    assert_close(dx, reference.conv2d_backward(np.ones_like(z), ref_cache)[0], f32)


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_activation_backward_matches_finite_differences(backend):
    rng = np.random.default_rng(10)
    z = distinct_values(rng, (2, 3, 4, 5))
    bias = distinct_values(rng, (5,), -0.01, 0.01)
    g = rng.standard_normal(z.shape)

    def loss():
        return float(np.sum(backend.bias_activation_forward(z.copy(), bias, "relu")[0] * g))

    _, cache = backend.bias_activation_forward(z.copy(), bias, "relu", ws={})
    dz, dbias = backend.bias_activation_backward(g, cache)
    dz, dbias = dz.copy(), dbias.copy()
    assert rel_error(dz, numerical_gradient(loss, z)) < 1e-7
    assert rel_error(dbias, numerical_gradient(loss, bias)) < 1e-7


def test_activation_input_is_the_softmax_logits():
    z = np.random.default_rng(0).standard_normal((3, 4))
    bias = np.arange(4.0)
    for backend in (reference, fast):
        _, cache = backend.bias_activation_forward(z, bias, "softmax", ws={})
        np.testing.assert_array_equal(backend.activation_input(cache), z + bias)


# --------------------------------------------------------------------------- max pooling


@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_reference_maxpool_matches_naive(case):
    x_shape, pool, strides, padding = case
    pads = resolve_pads(x_shape, pool, strides, padding)
    # Small integers make many ties, to check the first-maximum rule too.
    x = np.random.default_rng(8).integers(-3, 3, x_shape).astype(np.float64)
    y, (argmax, _) = reference.maxpool2d_forward(x, pool, strides, pads)
    y_naive, argmax_naive = maxpool_naive(x, pool, strides, pads)
    np.testing.assert_array_equal(y, y_naive)
    np.testing.assert_array_equal(argmax, argmax_naive)


@pytest.mark.parametrize("reuse", [False, True], ids=["fresh", "buffers"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_fast_maxpool_matches_reference(case, dtype, layout, ties, reuse):
    x_shape, pool, strides, padding = case
    rng = np.random.default_rng(9)
    pads = resolve_pads(x_shape, pool, strides, padding)
    ws = {} if reuse else None
    for _ in range(2 if reuse else 1):
        x = make_array(rng, x_shape, dtype, layout)
        if ties:
            x[...] = np.round(x)  # many equal values inside windows
        y, cache = fast.maxpool2d_forward(x, pool, strides, pads, ws=ws)
        y_ref, cache_ref = reference.maxpool2d_forward(x, pool, strides, pads)
        assert y.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(y, y_ref)
        dy = make_array(rng, y.shape, dtype, layout)
        dx = fast.maxpool2d_backward(dy, cache)
        assert_close(dx, reference.maxpool2d_backward(dy, cache_ref), dtype)
        # Every output gradient lands somewhere: the totals per sample and channel agree
        # (windows that miss the last row/column of an odd size drop nothing they cover).
        assert_close(dx.sum(axis=(1, 2)), dy.sum(axis=(1, 2)), dtype)


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxpool_ties_go_to_first_in_row_major_order(backend):
    x = np.zeros((1, 4, 4, 1))
    x[0, 1, 0, 0] = x[0, 0, 1, 0] = 5.0  # tie in window (0, 0): (0, 1) comes first
    x[0, 2, 2, 0] = x[0, 3, 3, 0] = 7.0  # tie in window (1, 1): (2, 2) comes first
    y, cache = backend.maxpool2d_forward(x, (2, 2), (2, 2), (0, 0, 0, 0))
    dx = backend.maxpool2d_backward(np.ones_like(y), cache)
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[0, 2] = expected[2, 0] = expected[2, 2] = 1
    np.testing.assert_array_equal(dx[0, :, :, 0], expected)


@pytest.mark.parametrize("backend", BACKENDS)
def test_maxpool_padding_never_wins(backend):
    """All inputs negative: a zero-padded max would return 0 at the borders; Keras does not."""
    x = -1.0 - np.random.default_rng(10).random((2, 5, 5, 3))
    _, _, pads = conv_geometry((5, 5), (3, 3), (2, 2), "same")
    assert pads == (1, 1, 1, 1)
    y, _ = backend.maxpool2d_forward(x, (3, 3), (2, 2), pads)
    y_naive, _ = maxpool_naive(x, (3, 3), (2, 2), pads)
    assert np.all(y < -1.0)
    np.testing.assert_array_equal(y, y_naive)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("pads", [(2, 0, 0, 0), (0, 0, 0, 2), (-1, 0, 0, 0)])
def test_maxpool_rejects_pads_as_large_as_the_pool(backend, pads):
    with pytest.raises(ValueError, match="maxpool2d_forward: pads"):
        backend.maxpool2d_forward(np.zeros((1, 4, 4, 1)), (2, 2), (2, 2), pads)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", [POOL_CASES[i] for i in (0, 2, 3, 4, 7)],
                         ids=[POOL_IDS[i] for i in (0, 2, 3, 4, 7)])
def test_maxpool_backward_matches_finite_differences(case, backend):
    x_shape, pool, strides, padding = case
    rng = np.random.default_rng(11)
    pads = resolve_pads(x_shape, pool, strides, padding)
    x = distinct_values(rng, x_shape)  # gaps ~1e-2 >> eps: no window changes its winner
    y, cache = backend.maxpool2d_forward(x, pool, strides, pads)
    g = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(backend.maxpool2d_forward(x, pool, strides, pads)[0] * g))

    dx = backend.maxpool2d_backward(g, cache).copy()
    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-6


# --------------------------------------------------------------------------- average pooling


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_avgpool_matches_naive_and_finite_differences(case, backend):
    x_shape, pool, strides, padding = case
    rng = np.random.default_rng(12)
    pads = resolve_pads(x_shape, pool, strides, padding)
    x = rng.standard_normal(x_shape)
    y, cache = backend.avgpool2d_forward(x, pool, strides, pads)
    np.testing.assert_allclose(y, avgpool_naive(x, pool, strides, pads), rtol=1e-12)
    g = rng.standard_normal(y.shape)

    def loss():
        return float(np.sum(backend.avgpool2d_forward(x, pool, strides, pads)[0] * g))

    dx = backend.avgpool2d_backward(g, cache)
    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-7


# --------------------------------------------------------------------------- softmax + CE


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("target_kind", ["labels", "onehot", "soft"])
def test_softmax_crossentropy_is_the_chain_rule_of_its_parts(backend, target_kind):
    """The fused op equals -sum t log softmax(z), and its gradient equals the composition
    softmax_backward(crossentropy gradient) of the unfused ops."""
    rng = np.random.default_rng(13)
    logits = rng.standard_normal((6, 4)) * 3
    labels = rng.integers(0, 4, 6)
    target = {"labels": labels, "onehot": np.eye(4)[labels],
              "soft": rng.dirichlet(np.ones(4), 6)}[target_kind]
    dense_target = np.eye(4)[labels] if target_kind == "labels" else target
    loss, cache = backend.softmax_crossentropy_forward(logits, target)
    probs, softmax_cache = reference.activation_forward(logits, "softmax")
    np.testing.assert_allclose(loss, -(dense_target * np.log(probs)).sum(axis=1), rtol=1e-12)
    weights = rng.random(6)
    dlogits = backend.softmax_crossentropy_backward(weights, cache)
    dprobs = -dense_target / probs * weights[:, None]  # d(-sum t log p)/dp, weighted
    chained = reference.activation_backward(dprobs, softmax_cache)
    np.testing.assert_allclose(dlogits, chained, rtol=1e-9, atol=1e-12)

    def total():
        return float(np.sum(backend.softmax_crossentropy_forward(logits, target)[0] * weights))

    assert rel_error(dlogits, numerical_gradient(total, logits)) < 1e-7


def test_softmax_crossentropy_stays_finite_for_extreme_logits():
    logits = np.array([[1000.0, -1000.0, 0.0]])
    loss, cache = reference.softmax_crossentropy_forward(logits, np.array([1]))
    assert np.isfinite(loss).all() and loss[0] == pytest.approx(2000.0)
    np.testing.assert_allclose(reference.softmax_crossentropy_backward(np.ones(1), cache),
                               [[1.0, -1.0, 0.0]], atol=1e-12)


# --------------------------------------------------------------------------- Adam


@pytest.mark.parametrize("dtype", DTYPES)
def test_fast_adam_update_matches_reference(dtype):
    rng = np.random.default_rng(14)
    shape = (3, 3, 4, 5)
    grad, param, m, v = (rng.standard_normal(shape).astype(dtype) for _ in range(4))
    v = np.abs(v)
    args = (0.9, 0.999, 1e-3 * np.sqrt(1 - 0.999**3) / (1 - 0.9**3), 1e-7)
    ref = [a.copy() for a in (param, m, v)]
    reference.adam_update(grad, ref[0], ref[1], ref[2], *args)
    fast.adam_update(grad, param, m, v, *args)
    for got, want in zip((param, m, v), ref, strict=True):
        assert_close(got, want, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_flushes_subnormal_moments_to_zero(backend, dtype):
    """A weight whose gradient stays 0 sees m shrink towards the subnormal range, where every
    operation is slow; both backends flush such moments to 0 (as TensorFlow's flush-to-zero)."""
    tiny = np.finfo(dtype).tiny
    grad = np.array([0.0, 0.0, 0.0, 1e-3], dtype)
    param = np.ones(4, dtype)
    m = np.array([tiny * 2, tiny * 0.5, 1e-3, 0.0], dtype)
    v = np.array([tiny * 0.5, tiny * 4, 1e-6, 0.0], dtype)
    backend.adam_update(grad, param, m, v, 0.9, 0.999, 1e-3, 1e-7)
    assert m[1] == 0 and v[0] == 0  # 0.45 tiny and 0.4995 tiny: subnormal, flushed
    np.testing.assert_allclose([m[0], v[1]], [1.8 * tiny, 3.996 * tiny], rtol=1e-6)  # kept
    np.testing.assert_allclose(m[2:], [0.9e-3, 1e-4], rtol=1e-6)
    np.testing.assert_allclose(v[2:], [0.999e-6, 1e-9], rtol=1e-6)
    assert np.all(np.isfinite(param))


def test_fast_adam_on_a_non_contiguous_parameter_takes_the_reference_path():
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    grad = rng.standard_normal((6, 4)).astype(np.float32)
    strided, contiguous = base[:, ::2], np.ascontiguousarray(base[:, ::2])
    slots = [np.zeros_like(contiguous) for _ in range(4)]
    fast.adam_update(grad, strided, slots[0], slots[1], 0.9, 0.999, 1e-3, 1e-7)
    fast.adam_update(grad, contiguous, slots[2], slots[3], 0.9, 0.999, 1e-3, 1e-7)
    np.testing.assert_allclose(strided, contiguous, rtol=1e-6)
    assert np.shares_memory(strided, base)  # updated in place, through the view


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("label_dtype", [np.int32, np.int64, np.uint8])
def test_fast_softmax_crossentropy_of_labels_matches_reference(dtype, label_dtype):
    """The compiled pass for integer labels (no one-hot matrix) against the reference."""
    rng = np.random.default_rng(21)
    logits = (rng.standard_normal((9, 5)) * 4).astype(dtype)
    labels = rng.integers(0, 5, 9).astype(label_dtype)
    loss, cache = fast.softmax_crossentropy_forward(logits, labels)
    loss_ref, cache_ref = reference.softmax_crossentropy_forward(logits, labels)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    assert loss.dtype == dtype
    np.testing.assert_allclose(loss, loss_ref, rtol=rtol)
    weights = rng.random(9).astype(dtype)
    dlogits = fast.softmax_crossentropy_backward(weights, cache)
    assert dlogits.dtype == dtype
    np.testing.assert_allclose(dlogits, reference.softmax_crossentropy_backward(weights, cache_ref),
                               rtol=rtol, atol=rtol * 1e-3)


def test_fast_softmax_crossentropy_refuses_labels_outside_the_classes():
    logits = np.zeros((3, 4), np.float32)
    for bad in (4, -1):
        with pytest.raises(ValueError, match=rf"label {bad} \(row 1\) is not a class of 4"):
            fast.softmax_crossentropy_forward(logits, np.array([0, bad, 1]))
    _, (probs, labels, _) = fast.softmax_crossentropy_forward(logits, np.array([0, 3, 1]))
    with pytest.raises(ValueError, match=r"label 7 \(row 2\)"):
        kernels.softmax_crossentropy_labels_backward_into(
            np.ones(3, np.float32), probs, np.array([0, 3, 7]), np.empty_like(probs))
    with pytest.raises(ValueError, match=r"dlogits has shape \(2, 4\), expected \(3, 4\)"):
        kernels.softmax_crossentropy_labels_backward_into(
            np.ones(3, np.float32), probs, labels, np.empty((2, 4), np.float32))
