"""The ops of issue 10's layers, held in both backends (as tests/test_ops.py holds the core's):
average pooling, global pooling, batch normalization, dropout, the ReLU variants, rescaling
and the new activations.

- each op equals an independent NumPy (or math-module) formula of Keras's definition;
- every fast op equals its reference twin in float32 and float64, on contiguous and
  non-contiguous inputs, with and without reused buffers, and keeps the input dtype;
- every backward agrees with central finite differences (float64), in both backends;
- batch normalization split over shards (real threads meeting in parallel.ShardGroup) gives
  the statistics and gradients of the whole batch;
- the compiled kernels' wrappers refuse arrays that do not fit.
"""

import math
import threading

import numpy as np
import pytest
from test_ops import (
    BACKENDS,
    DTYPES,
    LAYOUTS,
    POOL_CASES,
    POOL_IDS,
    assert_close,
    avgpool_naive,
    distinct_values,
    make_array,
    numerical_gradient,
    rel_error,
    resolve_pads,
)

from minicnn import parallel
from minicnn.ops import fast, kernels, reference

# --------------------------------------------------------------------------- helpers


def check_backward(forward, backward, inputs, g, tolerance=1e-7):
    """Finite differences of sum(forward(*inputs) * g) against backward(g) for each input."""
    analytic = backward(g)
    for array, grad in zip(inputs, analytic, strict=True):
        def loss():
            return float(np.sum(forward() * g))
        assert rel_error(np.array(grad, copy=True), numerical_gradient(loss, array)) < tolerance


# --------------------------------------------------------------------------- average pooling


@pytest.mark.parametrize("reuse", [False, True], ids=["fresh", "buffers"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", POOL_CASES, ids=POOL_IDS)
def test_fast_avgpool_matches_reference(case, dtype, layout, reuse):
    x_shape, pool, strides, padding = case
    rng = np.random.default_rng(20)
    pads = resolve_pads(x_shape, pool, strides, padding)
    ws = {} if reuse else None
    for _ in range(2 if reuse else 1):  # reused buffers must not leak values between calls
        x = make_array(rng, x_shape, dtype, layout)
        y, cache = fast.avgpool2d_forward(x, pool, strides, pads, ws=ws)
        y_ref, cache_ref = reference.avgpool2d_forward(x, pool, strides, pads)
        assert_close(y, y_ref, dtype)
        assert_close(y, avgpool_naive(x, pool, strides, pads).astype(dtype), dtype)
        dy = make_array(rng, y.shape, dtype, layout)
        assert_close(fast.avgpool2d_backward(dy, cache),
                     reference.avgpool2d_backward(dy, cache_ref), dtype)


def test_avgpool_kernels_refuse_arrays_that_do_not_fit():
    x = np.zeros((2, 6, 6, 3), np.float32)
    with pytest.raises(ValueError, match="y has shape"):
        kernels.avgpool2d_into(x, (2, 2), (2, 2), (0, 0, 0, 0), np.zeros((2, 3, 3, 2), np.float32))
    with pytest.raises(ValueError, match="y is float64"):
        kernels.avgpool2d_into(x, (2, 2), (2, 2), (0, 0, 0, 0), np.zeros((2, 3, 3, 3)))
    with pytest.raises(ValueError, match="pads .* must be smaller than the pool size"):
        kernels.avgpool2d_into(x, (2, 2), (2, 2), (2, 0, 0, 0), np.zeros((2, 4, 3, 3), np.float32))
    with pytest.raises(ValueError, match="dy has shape"):
        kernels.avgpool2d_backward_into(np.zeros((2, 2, 3, 3), np.float32), (2, 2), (2, 2),
                                        (0, 0, 0, 0), np.zeros_like(x))
    for backend in (reference, fast):
        with pytest.raises(ValueError, match="avgpool2d_forward: pads"):
            backend.avgpool2d_forward(x, (2, 2), (2, 2), (0, 2, 0, 0))


# --------------------------------------------------------------------------- global pooling


@pytest.mark.parametrize("backend", BACKENDS)
def test_global_pooling_values_and_gradients(backend, rng):
    x = distinct_values(rng, (3, 4, 5, 2))
    y, cache = backend.global_avgpool2d_forward(x)
    np.testing.assert_allclose(y, x.mean(axis=(1, 2)), rtol=1e-13)
    g = rng.standard_normal(y.shape)
    check_backward(lambda: backend.global_avgpool2d_forward(x)[0],
                   lambda g: [backend.global_avgpool2d_backward(g, cache)], [x], g)
    y, cache = backend.global_maxpool2d_forward(x)
    np.testing.assert_array_equal(y, x.max(axis=(1, 2)))
    check_backward(lambda: backend.global_maxpool2d_forward(x)[0],
                   lambda g: [backend.global_maxpool2d_backward(g, cache)], [x], g)


def test_global_maxpool_gradient_goes_to_the_first_maximum():
    x = np.zeros((1, 2, 2, 1))
    x[0, 0, 1, 0] = x[0, 1, 0, 0] = 3.0
    y, cache = reference.global_maxpool2d_forward(x)
    dx = reference.global_maxpool2d_backward(np.array([[2.0]]), cache)
    assert y[0, 0] == 3.0
    np.testing.assert_array_equal(dx[0, :, :, 0], [[0.0, 2.0], [0.0, 0.0]])


@pytest.mark.parametrize("dtype", DTYPES)
def test_global_pooling_keeps_the_dtype(dtype, rng):
    x = rng.standard_normal((2, 3, 3, 4)).astype(dtype)
    for name in ("global_avgpool2d", "global_maxpool2d"):
        y, cache = getattr(fast, f"{name}_forward")(x)
        dx = getattr(fast, f"{name}_backward")(y, cache)
        assert y.dtype == dx.dtype == np.dtype(dtype) and dx.shape == x.shape


# --------------------------------------------------------------------------- ReLU variants


RELU_OPTIONS = [
    (0.0, None, 0.0), (0.3, None, 0.0), (0.0, 6.0, 0.0), (0.2, 1.5, 0.0), (0.0, None, 0.5),
    (0.1, 2.0, 0.5),
]


def keras_relu(x, negative_slope, max_value, threshold):
    """Keras's ReLU layer formula, case by case as its docstring states it."""
    out = np.empty_like(x)
    for i, v in np.ndenumerate(x):
        if max_value is not None and v >= max_value:
            out[i] = max_value
        elif v > threshold:  # threshold <= x < max_value (x == threshold gives 0 either way)
            out[i] = v
        else:
            out[i] = negative_slope * (v - threshold)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("options", RELU_OPTIONS, ids=str)
def test_relu_general_values_and_gradient(backend, options, rng):
    x = distinct_values(rng, (4, 9), -3, 3)
    y, cache = backend.relu_general_forward(x, *options)
    np.testing.assert_allclose(y, keras_relu(x, *options), rtol=1e-14)
    g = rng.standard_normal(x.shape)
    check_backward(lambda: backend.relu_general_forward(x, *options)[0],
                   lambda g: [backend.relu_general_backward(g, cache)], [x], g)


@pytest.mark.parametrize("dtype", DTYPES)
def test_relu_general_keeps_the_dtype(dtype, rng):
    x = rng.standard_normal((3, 4)).astype(dtype)
    y, cache = fast.relu_general_forward(x, 0.1, 1.0, 0.5)
    assert y.dtype == reference.relu_general_backward(y, cache).dtype == np.dtype(dtype)


# --------------------------------------------------------------------------- rescaling


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_rescale(backend, dtype, rng):
    x = rng.standard_normal((2, 3, 4)).astype(dtype)
    y, cache = backend.rescale_forward(x, 1 / 127.5, -1.0)
    assert y.dtype == np.dtype(dtype)
    assert_close(y, (x * (1 / 127.5) - 1).astype(dtype), dtype)
    assert_close(backend.rescale_backward(x, cache), (x / 127.5).astype(dtype), dtype)


# --------------------------------------------------------------------------- activations


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


_erf = np.vectorize(math.erf)
# Independent formulas of Keras 3's definitions (keras/src/activations/activations.py).
NEW_ACTIVATIONS = {
    "elu": lambda z: np.where(z > 0, z, np.exp(z) - 1),
    "selu": lambda z: 1.0507009873554805 * np.where(z > 0, z, 1.6732632423543772 * (np.exp(z) - 1)),
    "gelu": lambda z: z * 0.5 * (1 + _erf(z / np.sqrt(2))),
    "softplus": lambda z: np.log(1 + np.exp(z)),
    "softsign": lambda z: z / (np.abs(z) + 1),
    "silu": lambda z: z * _sigmoid(z),
    "relu6": lambda z: np.minimum(np.maximum(z, 0), 6),
    "hard_sigmoid": lambda z: np.where(z <= -3, 0, np.where(z >= 3, 1, z / 6 + 0.5)),
    "hard_silu": lambda z: np.where(z < -3, 0, np.where(z > 3, z, z * (z + 3) / 6)),
    "exponential": np.exp,
    "leaky_relu": lambda z: np.where(z >= 0, z, 0.2 * z),
    "mish": lambda z: z * np.tanh(np.log(1 + np.exp(z))),
    "log_sigmoid": lambda z: np.log(_sigmoid(z)),
    "hard_tanh": lambda z: np.clip(z, -1, 1),
}


def test_every_activation_has_a_formula_test():
    tested = {"linear", "relu", "sigmoid", "tanh", "softmax"} | set(NEW_ACTIVATIONS)  # test_ops
    assert set(reference.ACTIVATIONS) == tested


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(NEW_ACTIVATIONS))
def test_new_activation_values_and_gradients(backend, name, rng):
    # -7..7 crosses every piece (relu6's 6, hard_sigmoid's -3 and 3) away from the kinks.
    z = distinct_values(rng, (6, 7), -7, 7) + 1e-3 * np.pi
    y, cache = backend.activation_forward(z, name)
    np.testing.assert_allclose(y, NEW_ACTIVATIONS[name](z), rtol=1e-12, atol=1e-14)
    g = rng.standard_normal(y.shape)
    check_backward(lambda: backend.activation_forward(z, name)[0],
                   lambda g: [backend.activation_backward(g, cache)], [z], g)


@pytest.mark.parametrize("reuse", [False, True], ids=["fresh", "buffers"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", sorted({"relu", *NEW_ACTIVATIONS}))
def test_fast_activations_match_reference_and_keep_the_dtype(name, dtype, layout, reuse):
    rng = np.random.default_rng(22)
    ws = {} if reuse else None
    for _ in range(2 if reuse else 1):  # reused buffers must not leak values between calls
        z = make_array(rng, (5, 8), dtype, layout) * 3
        g = make_array(rng, (5, 8), dtype, layout)
        y, cache = fast.activation_forward(z, name, ws=ws)
        y_ref, cache_ref = reference.activation_forward(z, name)
        assert_close(y, y_ref, dtype)
        assert_close(fast.activation_backward(g, cache),
                     reference.activation_backward(g, cache_ref), dtype)
        np.testing.assert_array_equal(fast.activation_input(cache), z)
    bias = rng.standard_normal(8).astype(dtype)
    y, cache = fast.bias_activation_forward(z.copy(), bias, name, ws={})
    assert_close(y, reference.bias_activation_forward(z, bias, name)[0], dtype)
    dz, dbias = fast.bias_activation_backward(g, cache)
    assert dz.dtype == dbias.dtype == np.dtype(dtype)


@pytest.mark.parametrize("options", RELU_OPTIONS, ids=str)
def test_fast_relu_general_matches_reference_with_buffers(options):
    rng = np.random.default_rng(23)
    ws = {}
    for _ in range(2):
        x = make_array(rng, (4, 3, 5), np.float32, "sliced")
        g = make_array(rng, (4, 3, 5), np.float32, "transposed")
        y, cache = fast.relu_general_forward(x, *options, ws=ws)
        y_ref, cache_ref = reference.relu_general_forward(x, *options)
        np.testing.assert_array_equal(y, y_ref)
        np.testing.assert_array_equal(fast.relu_general_backward(g, cache),
                                      reference.relu_general_backward(g, cache_ref))


def test_relu_kernels_refuse_arrays_that_do_not_fit():
    z = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="y has shape"):
        kernels.relu_into(z, np.zeros(12, np.float32))
    with pytest.raises(ValueError, match="dy is float64"):
        kernels.relu_backward_into(np.zeros((3, 4)), z, np.zeros_like(z))


def test_activations_stay_finite_for_large_inputs():
    z = np.array([-800.0, -50.0, 0.5, 50.0, 800.0])
    for name in ("elu", "selu", "softplus", "silu", "mish", "log_sigmoid", "gelu", "softsign"):
        y, _ = reference.activation_forward(z, name)
        assert np.isfinite(y).all(), name
    np.testing.assert_allclose(reference.activation_forward(z, "softplus")[0][-1], 800.0)


def test_gelu_kernels_refuse_arrays_that_do_not_fit():
    z = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="y has shape"):
        kernels.gelu_into(z, np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="expected a float32 or float64 array"):
        kernels.gelu_into(z.astype(np.int32), np.zeros((3, 4), np.int32))
    with pytest.raises(ValueError, match="dz is float64"):
        kernels.gelu_backward_into(z, z, np.zeros((3, 4)))


# --------------------------------------------------------------------------- batch normalization


def split_run(function, parts):
    """function(part, allreduce) on each part in its own thread, meeting in a ShardGroup as
    the shards of a split batch do -> the results in part order."""
    group = parallel.ShardGroup(len(parts))
    results = [None] * len(parts)

    def run(i):
        results[i] = function(parts[i], lambda a, i=i: group.allreduce(i, a))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(parts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(6, 5), (4, 3, 5, 6), (3, 7, 4)], ids=str)
def test_batchnorm_moments_are_numpys_mean_and_biased_variance(backend, dtype, shape, rng):
    x = (rng.standard_normal(shape) * 3 + 5).astype(dtype)
    mean, variance = backend.batchnorm_moments(x)
    axes = tuple(range(len(shape) - 1))
    assert mean.dtype == variance.dtype == np.dtype(dtype)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=axes), rtol=1e-6 if dtype == np.float32
                               else 1e-14)
    np.testing.assert_allclose(variance, x64.var(axis=axes), rtol=1e-6 if dtype == np.float32
                               else 1e-13)


@pytest.mark.parametrize("backend", BACKENDS)
def test_batchnorm_forward_is_keras_formula(backend, rng):
    x = rng.standard_normal((5, 3, 3, 4))
    mean, variance = rng.standard_normal(4), rng.random(4) + 0.1
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    y, _ = backend.batchnorm_forward(x, mean, variance, gamma, beta, 1e-3)
    np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(variance + 1e-3) + beta,
                               rtol=1e-12, atol=1e-12)
    y, _ = backend.batchnorm_forward(x, mean, variance, None, None, 1e-3)  # scale, center off
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(variance + 1e-3), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("affine", [True, False], ids=["gamma-beta", "plain"])
def test_batchnorm_backward_matches_finite_differences(backend, training, affine, rng):
    x = distinct_values(rng, (4, 3, 2, 3), -2, 2)
    gamma = distinct_values(rng, (3,), 0.5, 2) if affine else None
    beta = distinct_values(rng, (3,), -1, 1) if affine else None
    moving = rng.standard_normal(3), rng.random(3) + 0.5

    def forward():
        mean, variance = backend.batchnorm_moments(x) if training else moving
        return backend.batchnorm_forward(x, mean, variance, gamma, beta, 1e-3)

    y, cache = forward()
    y = y.copy()
    g = rng.standard_normal(y.shape)
    dx, dgamma, dbeta = (np.array(a, copy=True) for a in backend.batchnorm_backward(g, cache,
                                                                                  training))

    def loss():
        return float(np.sum(forward()[0] * g))

    assert rel_error(dx, numerical_gradient(loss, x)) < 1e-7
    xhat = (x - (x.mean(axis=(0, 1, 2)) if training else moving[0])) / np.sqrt(
        (x.var(axis=(0, 1, 2)) if training else moving[1]) + 1e-3)
    np.testing.assert_allclose(dbeta, g.sum(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(dgamma, (g * xhat).sum(axis=(0, 1, 2)), rtol=1e-10)
    if affine:
        assert rel_error(dgamma, numerical_gradient(loss, gamma)) < 1e-7
        assert rel_error(dbeta, numerical_gradient(loss, beta)) < 1e-7
    none, dgamma2, _ = backend.batchnorm_backward(g, cache, training, need_dx=False)
    assert none is None
    np.testing.assert_array_equal(dgamma2, dgamma)


@pytest.mark.parametrize("reuse", [False, True], ids=["fresh", "buffers"])
@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(8, 5, 5, 6), (37, 16), (2, 3, 1, 1)], ids=str)
def test_fast_batchnorm_matches_reference(shape, dtype, layout, reuse):
    rng = np.random.default_rng(21)
    ws = {} if reuse else None
    for _ in range(2 if reuse else 1):
        x = make_array(rng, shape, dtype, layout) * 2 + 3
        gamma = (rng.random(shape[-1]) + 0.5).astype(dtype)
        beta = rng.standard_normal(shape[-1]).astype(dtype)
        dy = make_array(rng, shape, dtype, layout)
        results = []
        for backend in (reference, fast):
            mean, variance = backend.batchnorm_moments(x)
            y, cache = backend.batchnorm_forward(x, mean, variance, gamma, beta, 1e-3,
                                                 **({"ws": ws} if backend is fast else {}))
            run = [mean, variance, y.copy()]
            for training in (True, False):
                run += [np.array(a, copy=True) for a in backend.batchnorm_backward(dy, cache,
                                                                                  training)]
            results.append(run)
        for got, want in zip(results[1], results[0], strict=True):
            assert_close(got, want, dtype)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("sizes", [(5, 5), (3, 8, 2)], ids=str)
def test_batchnorm_over_shards_uses_the_whole_batch(backend, sizes, rng):
    """Shards of different sizes, in threads, get the whole batch's statistics and the
    whole-batch input gradient; their parameter gradients add up to the whole batch's."""
    x = rng.standard_normal((sum(sizes), 3, 2, 4)) * 2 + 1
    g = rng.standard_normal(x.shape)
    gamma, beta = rng.random(4) + 0.5, rng.standard_normal(4)
    bounds = np.cumsum((0, *sizes))
    parts = [(x[a:b], g[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]

    def step(part, allreduce):
        xs, gs = part
        mean, variance = backend.batchnorm_moments(xs, allreduce)
        y, cache = backend.batchnorm_forward(xs, mean, variance, gamma, beta, 1e-3)
        y = y.copy()
        return (mean, variance, y, *(np.array(a, copy=True) for a in backend.batchnorm_backward(
            gs, cache, True, allreduce)))

    whole = step((x, g), None)
    shards = split_run(step, parts)
    for mean, variance, *_ in shards:
        np.testing.assert_allclose(mean, whole[0], rtol=1e-12)
        np.testing.assert_allclose(variance, whole[1], rtol=1e-12)
    np.testing.assert_allclose(np.concatenate([s[2] for s in shards]), whole[2], rtol=1e-12,
                               atol=1e-12)
    np.testing.assert_allclose(np.concatenate([s[3] for s in shards]), whole[3], rtol=1e-10,
                               atol=1e-12)
    np.testing.assert_allclose(sum(s[4] for s in shards), whole[4], rtol=1e-12)
    np.testing.assert_allclose(sum(s[5] for s in shards), whole[5], rtol=1e-12)


def test_batchnorm_kernels_refuse_arrays_that_do_not_fit():
    rows = np.zeros((6, 4), np.float32)
    with pytest.raises(ValueError, match="out has shape"):
        kernels.channel_sums_into(rows, np.zeros(3))
    with pytest.raises(ValueError, match="out is float32"):
        kernels.channel_sums_into(rows, np.zeros(4, np.float32))
    with pytest.raises(ValueError, match="rows must be 2-D"):
        kernels.channel_sums_into(np.zeros((2, 3, 4), np.float32), np.zeros(4))
    with pytest.raises(ValueError, match="mean has shape"):
        kernels.centered_square_sums_into(rows, np.zeros(5), np.zeros(4))
    with pytest.raises(ValueError, match="shift is float64"):
        kernels.scale_shift_into(rows, np.zeros(4, np.float32), np.zeros(4), np.zeros_like(rows))
    with pytest.raises(ValueError, match="y must be C-contiguous"):
        kernels.scale_shift_into(rows, np.zeros(4, np.float32), np.zeros(4, np.float32),
                                 np.zeros((4, 6), np.float32).T)
    with pytest.raises(ValueError, match="drows has shape"):
        kernels.batchnorm_grad_sums_into(rows[:5], rows, np.zeros(4, np.float32),
                                         np.zeros(4, np.float32), np.zeros((2, 4)))
    c4 = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match="mean_dy_xhat has shape"):
        kernels.batchnorm_dx_into(rows, rows, c4, c4, c4, c4, np.zeros(3, np.float32),
                                  np.zeros_like(rows))
    _, cache = fast.batchnorm_forward(rows, c4, c4 + 1, None, None, 1e-3)
    with pytest.raises(ValueError, match="does not match the forward pass"):
        fast.batchnorm_backward(rows[:3], cache, True)


# --------------------------------------------------------------------------- dropout


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_dropout_zeroes_rate_of_the_entries_and_scales_the_rest(backend, dtype, rate):
    x = np.random.default_rng(0).random((200, 50)).astype(dtype) + 0.5  # no zeros of its own
    y, cache = backend.dropout_forward(x, rate, x.shape, np.random.default_rng(1))
    assert y.dtype == np.dtype(dtype) and y.shape == x.shape
    kept = y != 0
    assert abs(kept.mean() - (1 - rate)) < 0.02  # 10,000 draws: 4 standard deviations
    np.testing.assert_array_equal(y[kept], x[kept] / dtype(1 - rate))  # Keras: x / keep_prob
    dy = np.random.default_rng(2).standard_normal(x.shape).astype(dtype)
    dx = backend.dropout_backward(dy, cache)
    np.testing.assert_array_equal(dx, np.where(kept, dy / dtype(1 - rate), 0))


def test_dropout_backends_draw_the_same_mask():
    x = np.random.default_rng(0).standard_normal((16, 7, 3)).astype(np.float32)
    ws = {}
    for seed in (1, 2):  # twice with the same buffers
        y_ref, _ = reference.dropout_forward(x, 0.4, x.shape, np.random.default_rng(seed))
        y_fast, _ = fast.dropout_forward(x[:, ::1], 0.4, x.shape, np.random.default_rng(seed),
                                         ws=ws)
        np.testing.assert_array_equal(y_fast, y_ref)
    y_other, _ = reference.dropout_forward(x, 0.4, x.shape, np.random.default_rng(3))
    assert not np.array_equal(y_other, y_ref)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_noise_shape_shares_one_draw_along_its_unit_axes(backend):
    x = np.ones((6, 4, 4, 5))
    y, cache = backend.dropout_forward(x, 0.5, (6, 1, 1, 5), np.random.default_rng(0))
    per_map = y.reshape(6, 16, 5)
    assert (per_map == per_map[:, :1]).all()  # a whole feature map is kept or dropped
    assert set(np.unique(y)) == {0.0, 2.0}
    dx = backend.dropout_backward(np.ones_like(x), cache)
    np.testing.assert_array_equal(dx, y)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_rate_one_drops_everything_and_rate_zero_nothing(backend):
    x = np.arange(12.0).reshape(3, 4) + 1
    y, cache = backend.dropout_forward(x, 1.0, x.shape, np.random.default_rng(0))
    assert not y.any() and not backend.dropout_backward(x, cache).any()
    y, cache = backend.dropout_forward(x, 0.0, x.shape, np.random.default_rng(0))
    np.testing.assert_array_equal(y, x)


@pytest.mark.parametrize("backend", BACKENDS)
def test_dropout_backward_matches_finite_differences(backend, rng):
    x = distinct_values(rng, (5, 6))
    _, cache = backend.dropout_forward(x, 0.3, x.shape, np.random.default_rng(4))
    g = rng.standard_normal(x.shape)
    check_backward(lambda: backend.dropout_forward(x, 0.3, x.shape, np.random.default_rng(4))[0],
                   lambda g: [backend.dropout_backward(g, cache)], [x], g)


def test_dropout_kernels_refuse_arrays_that_do_not_fit():
    x = np.zeros((4, 5), np.float32)
    keep = np.zeros((4, 5), bool)
    with pytest.raises(ValueError, match="u has shape"):
        kernels.dropout_into(x, np.zeros((5, 4), np.float32), 0.5, np.zeros_like(x), keep)
    with pytest.raises(ValueError, match="keep is uint8"):
        kernels.dropout_into(x, x, 0.5, np.zeros_like(x), keep.astype(np.uint8))
    with pytest.raises(ValueError, match=r"rate must be in \[0, 1\)"):
        kernels.dropout_into(x, x, 1.0, np.zeros_like(x), keep)
    with pytest.raises(ValueError, match="keep_prob must be in"):
        kernels.dropout_backward_into(x, keep, 0.0, np.zeros_like(x))
    with pytest.raises(ValueError, match="dx is float64"):
        kernels.dropout_backward_into(x, keep, 0.5, np.zeros((4, 5)))
