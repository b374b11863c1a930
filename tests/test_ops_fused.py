"""Fused kernels (minicnn/ops/fused.py) and the layers' fast path, held to the reference ops.

Each fused kernel must give what the readable composition of reference steps gives, in
float32 and float64, on several shapes; the layer-level tests compare a Conv2D/MaxPooling2D
forward and backward (which use the fused kernels and reused buffers) with reference.py.
"""

import numpy as np
import pytest

from minicnn import layers, optimizers
from minicnn.ops import fused, kernels, reference
from minicnn.ops.padding import conv_geometry

DTYPES = [np.float32, np.float64]
RTOL = {np.dtype(np.float32): 1e-5, np.dtype(np.float64): 1e-12}


def close(actual, expected, dtype):
    assert actual.dtype == np.dtype(dtype) and actual.shape == expected.shape
    rtol = RTOL[np.dtype(dtype)]
    atol = rtol * float(np.max(np.abs(expected), initial=1.0))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 7, 2000, 40000])
@pytest.mark.parametrize("act", [fused.ACT_LINEAR, fused.ACT_RELU])
@pytest.mark.parametrize("use_bias", [True, False])
def test_bias_act_forward(dtype, rows, act, use_bias):
    rng = np.random.default_rng(rows)
    z = rng.standard_normal((rows, 5)).astype(dtype)
    bias = rng.standard_normal(5).astype(dtype) if use_bias else None
    expected = z + bias if use_bias else z.copy()
    if act == fused.ACT_RELU:
        expected = np.maximum(expected, 0)
    out = fused.bias_act_forward(z, bias, act)
    assert out is z  # in place
    np.testing.assert_array_equal(out, expected)  # one add and a max: exactly equal


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rows", [1, 5, 1024, 1025, 5000])  # block boundaries of the sum
@pytest.mark.parametrize("act", [fused.ACT_LINEAR, fused.ACT_RELU])
def test_act_backward_bias(dtype, rows, act):
    rng = np.random.default_rng(rows)
    dy = rng.standard_normal((rows, 6)).astype(dtype)
    y = np.maximum(rng.standard_normal((rows, 6)), 0).astype(dtype)  # ReLU outputs, many 0
    dz = np.empty_like(dy)
    dbias = fused.act_backward_bias(dy, y, act, dz)
    expected = np.where(y > 0, dy, 0).astype(dtype) if act == fused.ACT_RELU else dy
    np.testing.assert_array_equal(dz, expected)
    close(dbias, expected.sum(axis=0), dtype)
    assert fused.act_backward_bias(dy, y, act, dz, want_bias=False) is None


def test_act_backward_bias_is_deterministic_and_thread_independent():
    rng = np.random.default_rng(0)
    dy = rng.standard_normal((9000, 4)).astype(np.float32)
    y = np.abs(rng.standard_normal((9000, 4))).astype(np.float32)
    runs = [fused.act_backward_bias(dy, y, fused.ACT_RELU, np.empty_like(dy)) for _ in range(5)]
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])
    # The same blocked sum written in NumPy: fixed blocks of 1024 rows, then added in order.
    blocks = [dy[i:i + 1024].sum(axis=0, dtype=np.float32) for i in range(0, 9000, 1024)]
    np.testing.assert_allclose(runs[0], np.sum(blocks, axis=0), rtol=1e-5)


POOL_SHAPES = [(2, 6, 6, 3), (2, 7, 5, 3), (1, 9, 8, 4), (3, 4, 4, 1)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index_dtype", [np.int64, np.int32])
@pytest.mark.parametrize("x_shape", POOL_SHAPES)
@pytest.mark.parametrize("pool", [(2, 2), (3, 2)])
@pytest.mark.parametrize("ties", [False, True])
def test_tiled_maxpool_matches_reference(dtype, index_dtype, x_shape, pool, ties):
    rng = np.random.default_rng(1)
    x = rng.standard_normal(x_shape).astype(dtype)
    if ties:
        x = np.round(x)  # many equal values: the first maximum must win, as in reference
    pads = (0, 0, 0, 0)
    y_ref, argmax_ref = reference.maxpool2d_forward(x, pool, pool, pads)
    y = np.empty(y_ref.shape, dtype)
    argmax = np.empty(y_ref.shape, index_dtype)
    fused.maxpool2d_tiled_forward(x, pool, y, argmax)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(argmax, argmax_ref)
    dy = rng.standard_normal(y.shape).astype(dtype)
    dx = np.full(x_shape, np.nan, dtype)  # every cell must be written
    fused.maxpool2d_tiled_backward(dy, argmax, pool, dx)
    np.testing.assert_array_equal(dx, reference.maxpool2d_backward(dy, argmax_ref, x_shape))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_matches_the_numpy_formula(dtype):
    rng = np.random.default_rng(2)
    shape = (3, 3, 4, 5)
    grad, param, m, v = (rng.standard_normal(shape).astype(dtype) for _ in range(4))
    v = np.abs(v)
    b1, b2, alpha, eps = 0.9, 0.999, 1e-3 * np.sqrt(1 - 0.999**3) / (1 - 0.9**3), 1e-7
    m_ref, v_ref, p_ref = m.copy(), v.copy(), param.copy()
    m_ref += (1 - b1) * (grad - m_ref)
    v_ref += (1 - b2) * (grad * grad - v_ref)
    p_ref -= alpha * m_ref / (np.sqrt(v_ref) + eps)
    fused.adam_update(grad, param, m, v, b1, b2, alpha, eps)
    for got, want in ((m, m_ref), (v, v_ref), (param, p_ref)):
        close(got, want, dtype)


def test_adam_optimizer_uses_numpy_for_non_contiguous_arrays():
    """Non-contiguous parameters cannot be updated in place by the flat kernel: the NumPy
    path takes them, and both paths agree."""
    rng = np.random.default_rng(3)
    base = rng.standard_normal((6, 8)).astype(np.float32)
    grad = rng.standard_normal((6, 4)).astype(np.float32)
    strided, contiguous = base[:, ::2], np.ascontiguousarray(base[:, ::2])
    a, b = optimizers.Adam(), optimizers.Adam()
    for _ in range(3):
        a.apply_gradients([(grad, strided)])
        b.apply_gradients([(grad, contiguous)])
    np.testing.assert_allclose(strided, contiguous, rtol=1e-6)
    assert not np.array_equal(strided, np.ascontiguousarray(base[:, ::2]) * 0 + 1)
    assert np.shares_memory(strided, base)  # updated in place, through the view


# --------------------------------------------------------------------------- layers' fast path


CONV_CASES = [((3, 9, 8, 1), 4, (3, 3), (1, 1), "valid"),
              ((2, 7, 6, 3), 5, (3, 3), (1, 1), "same"),
              ((2, 9, 8, 2), 3, (3, 2), (2, 2), "same"),
              ((2, 8, 9, 4), 3, (4, 3), (2, 1), "valid")]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", None, "tanh"])
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv_layer_fast_path_matches_reference(case, activation, dtype):
    x_shape, filters, ksize, strides, padding = case
    rng = np.random.default_rng(4)
    layer = layers.Conv2D(filters, ksize, strides=strides, padding=padding,
                          activation=activation, dtype=dtype)
    layer.build(x_shape[1:])
    layer.params["bias"][:] = rng.standard_normal(filters)
    layer.compute_input_gradient = True
    pads = conv_geometry(x_shape[1:3], ksize, strides, padding)[2]
    kernel, bias = layer.params["kernel"], layer.params["bias"]
    for _ in range(3):  # reused buffers must not leak values between batches
        x = rng.standard_normal(x_shape).astype(dtype)
        z, cols = reference.conv2d_forward(x, kernel, bias, strides, pads)
        y_ref = {"relu": np.maximum(z, 0), None: z, "tanh": np.tanh(z)}[activation]
        y = layer.forward(x, training=True)
        close(y, y_ref, dtype)
        dy = rng.standard_normal(y.shape).astype(dtype)
        dz = {"relu": dy * (y_ref > 0), None: dy, "tanh": dy * (1 - y_ref**2)}[activation]
        dx_ref, dk_ref, db_ref = reference.conv2d_backward(dz.astype(dtype), x_shape, cols,
                                                           kernel, strides, pads)
        dx = layer.backward(dy)
        close(dx, dx_ref, dtype)
        close(layer.grads["kernel"], dk_ref, dtype)
        close(layer.grads["bias"], db_ref, dtype)


def test_first_conv_layer_returns_no_input_gradient_but_the_same_weight_gradients(rng):
    x = rng.standard_normal((4, 8, 8, 1)).astype(np.float32)
    a = layers.Conv2D(3, 3, activation="relu")
    a.build((8, 8, 1))
    b = layers.Conv2D(3, 3, activation="relu")
    b.build((8, 8, 1))
    b.set_weights(a.get_weights())
    b.compute_input_gradient = False
    dy = rng.standard_normal((4, 6, 6, 3)).astype(np.float32)
    a.forward(x, training=True)
    b.forward(x, training=True)
    assert a.backward(dy) is not None and b.backward(dy) is None
    np.testing.assert_array_equal(a.grads["kernel"], b.grads["kernel"])
    np.testing.assert_array_equal(a.grads["bias"], b.grads["bias"])


@pytest.mark.parametrize("pool,strides,padding", [((2, 2), None, "valid"),
                                                  ((2, 2), None, "same"),
                                                  ((3, 3), (2, 2), "valid")])
def test_pool_layer_fast_and_generic_paths_match_reference(pool, strides, padding, rng):
    layer = layers.MaxPooling2D(pool, strides=strides, padding=padding)
    x_shape = (3, 7, 9, 4)
    layer.build(x_shape[1:])
    pads = conv_geometry(x_shape[1:3], pool, layer.strides, padding)[2]
    for _ in range(2):
        x = rng.standard_normal(x_shape).astype(np.float32)
        y_ref, argmax = reference.maxpool2d_forward(x, pool, layer.strides, pads)
        np.testing.assert_array_equal(layer.forward(x, training=True), y_ref)
        dy = rng.standard_normal(y_ref.shape).astype(np.float32)
        np.testing.assert_array_equal(layer.backward(dy),
                                      reference.maxpool2d_backward(dy, argmax, x_shape))


def test_layer_call_returns_a_private_copy(rng):
    """forward reuses its output buffer between batches; layer(x) must not hand that out."""
    layer = layers.Conv2D(2, 3, activation="relu")
    first = layer(rng.standard_normal((2, 5, 5, 1)))
    kept = first.copy()
    layer(rng.standard_normal((2, 5, 5, 1)))
    np.testing.assert_array_equal(first, kept)


def test_im2col_single_channel_fast_copy_matches_reference():
    """One input channel takes a separate copy loop in kernels.im2col (with and without
    padding, strides)."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 9, 7, 1))
    for strides, padding in (((1, 1), "valid"), ((1, 1), "same"), ((2, 1), "same")):
        pads = conv_geometry((9, 7), (3, 3), strides, padding)[2]
        np.testing.assert_array_equal(kernels.im2col(x, 3, 3, strides, pads),
                                      reference.im2col(x, 3, 3, strides, pads))


def test_im2col_single_channel_into_fortran_ordered_cols():
    """The first conv layer keeps cols in Fortran order (contiguous columns); the kernel must
    fill it exactly as the reference, with padding and strides."""
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 9, 7, 1)).astype(np.float32)
    for strides, padding in (((1, 1), "valid"), ((1, 1), "same"), ((2, 3), "same")):
        out_h, out_w, pads = conv_geometry((9, 7), (3, 3), strides, padding)
        cols = np.full((9, 3 * out_h * out_w), np.nan, np.float32).T
        assert cols.flags.f_contiguous and not cols.flags.c_contiguous
        kernels._im2col_into(x, 3, 3, *strides, pads[0], pads[2], out_h, out_w, cols)
        np.testing.assert_array_equal(cols, reference.im2col(x, 3, 3, strides, pads))


@pytest.mark.parametrize("dtype", DTYPES)
def test_adam_update_flushes_subnormal_moments_to_zero(dtype):
    """A weight whose gradient stays 0 sees m shrink towards the subnormal range, where every
    operation is slow; the kernel flushes such moments to 0 (as TensorFlow's flush-to-zero)."""
    tiny = np.finfo(dtype).tiny
    grad = np.array([0.0, 0.0, 0.0, 1e-3], dtype)
    param = np.ones(4, dtype)
    m = np.array([tiny * 2, tiny * 0.5, 1e-3, 0.0], dtype)
    v = np.array([tiny * 0.5, tiny * 4, 1e-6, 0.0], dtype)
    fused.adam_update(grad, param, m, v, 0.9, 0.999, 1e-3, 1e-7)
    assert m[1] == 0 and v[0] == 0  # 0.45 tiny and 0.4995 tiny: subnormal, flushed
    np.testing.assert_allclose([m[0], v[1]], [1.8 * tiny, 3.996 * tiny], rtol=1e-6)  # kept
    np.testing.assert_allclose(m[2:], [0.9e-3, 1e-4], rtol=1e-6)
    np.testing.assert_allclose(v[2:], [0.999e-6, 1e-9], rtol=1e-6)
    assert np.all(np.isfinite(param))
