"""Layer forward values against independent NumPy math, Keras's shapes, config and weights."""

import re

import numpy as np
import pytest

from minicnn import layers
from minicnn.ops import reference


def keras_same_pads(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def test_conv2d_forward_matches_naive_convolution_and_keras_same_rule(rng):
    layer = layers.Conv2D(5, (3, 4), strides=(2, 1), padding="same", activation="relu",
                          dtype="float64")
    x = rng.normal(size=(2, 7, 8, 3))
    y = layer(x)
    top, bottom = keras_same_pads(7, 3, 2)
    left, right = keras_same_pads(8, 4, 1)
    assert (top, bottom, left, right) == (1, 1, 1, 2)  # extra column on the right
    kernel, bias = layer.get_weights()
    pads = (top, bottom, left, right)
    expected = np.maximum(reference.conv2d_naive(x, kernel, bias, (2, 1), pads), 0)
    assert y.shape == (2, 4, 8, 5) and layer.output_shape == (None, 4, 8, 5)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)


def test_conv2d_is_cross_correlation_in_keras_kernel_layout():
    # One 2x2 kernel with distinct taps on a 1-channel 3x3 image, checked by hand.
    layer = layers.Conv2D(1, 2, dtype="float64")
    layer.build((None, 3, 3, 1))
    taps = np.array([[1.0, 2.0], [3.0, 4.0]])
    layer.set_weights([taps.reshape(2, 2, 1, 1), np.array([0.5])])
    image = np.arange(9.0).reshape(1, 3, 3, 1)
    y = layer(image)[0, :, :, 0]
    expected = np.array([[0 * 1 + 1 * 2 + 3 * 3 + 4 * 4, 1 * 1 + 2 * 2 + 4 * 3 + 5 * 4],
                         [3 * 1 + 4 * 2 + 6 * 3 + 7 * 4, 4 * 1 + 5 * 2 + 7 * 3 + 8 * 4]]) + 0.5
    np.testing.assert_allclose(y, expected)


def test_maxpool_forward_values_and_default_strides(rng):
    layer = layers.MaxPooling2D(2, dtype="float64")
    assert layer.strides == (2, 2)
    x = rng.normal(size=(2, 5, 7, 3))
    y = layer(x)
    assert y.shape == (2, 2, 3, 3)
    expected = x[:, :4, :6].reshape(2, 2, 2, 3, 2, 3).max(axis=(2, 4))
    np.testing.assert_array_equal(y, expected)


def test_maxpool_same_padding_never_takes_the_padding(rng):
    layer = layers.MaxPooling2D(2, padding="same", dtype="float64")
    x = -1.0 - rng.random((1, 3, 3, 1))  # all negative: a zero pad would win a max
    y = layer(x)
    assert y.shape == (1, 2, 2, 1)
    assert y[0, 1, 1, 0] == x[0, 2, 2, 0]
    assert np.all(y < 0)


def test_dense_and_flatten_use_channels_last_order(rng):
    x = rng.normal(size=(2, 2, 3, 4))
    flat = layers.Flatten()(x.astype("float32"))
    np.testing.assert_array_equal(flat, x.reshape(2, -1).astype("float32"))
    assert flat[0, 1] == np.float32(x[0, 0, 0, 1])  # the channel index runs fastest, as Keras
    dense = layers.Dense(3, activation="softmax", dtype="float64")
    out = dense(flat.astype("float64"))
    kernel, bias = dense.get_weights()
    z = flat.astype("float64") @ kernel + bias
    np.testing.assert_allclose(out, np.exp(z) / np.exp(z).sum(1, keepdims=True), rtol=1e-12)


def test_parameter_shapes_initialisers_and_dtype():
    conv = layers.Conv2D(25, (3, 3))
    conv.build((None, 28, 28, 1))
    kernel, bias = conv.get_weights()
    assert kernel.shape == (3, 3, 1, 25) and bias.shape == (25,)
    assert kernel.dtype == np.float32 and not bias.any()
    limit = np.sqrt(6 / (9 * 1 + 9 * 25))  # glorot_uniform with Keras's fans
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.8 * limit
    dense = layers.Dense(64)
    dense.build((None, 576))
    assert dense.params["kernel"].shape == (576, 64) and dense.params["bias"].shape == (64,)


@pytest.mark.parametrize("layer", [
    layers.Conv2D(8, (3, 5), strides=2, padding="same", activation="relu", use_bias=False),
    layers.MaxPooling2D((3, 3), strides=(1, 2), padding="same"),
    layers.Dense(7, activation="softmax"),
    layers.Flatten(),
    layers.Activation("tanh"),
    layers.ReLU(),
    layers.Softmax(),
])
def test_get_config_round_trip(layer):
    config = layer.get_config()
    clone = type(layer).from_config(config)
    assert clone.get_config() == config


def test_set_weights_copies_and_get_weights_returns_copies():
    layer = layers.Dense(2)
    layer.build((None, 3))
    new = [np.ones((3, 2), "float32"), np.full(2, 0.5, "float32")]
    layer.set_weights(new)
    new[0][:] = 7  # later edits of the caller's arrays must not leak in
    got = layer.get_weights()
    assert np.all(got[0] == 1) and np.all(got[1] == 0.5)
    got[0][:] = 9
    assert np.all(layer.params["kernel"] == 1)


def test_compute_output_shape_tutorial_chain():
    shapes = []
    shape = (None, 28, 28, 1)
    for layer in [layers.Conv2D(25, 3), layers.MaxPooling2D(2), layers.Conv2D(64, 3),
                  layers.MaxPooling2D(2), layers.Conv2D(64, 3), layers.MaxPooling2D(2),
                  layers.Flatten(), layers.Dense(64), layers.Dense(10)]:
        shape = layer.compute_output_shape(shape)
        shapes.append(shape)
    assert shapes == [(None, 26, 26, 25), (None, 13, 13, 25), (None, 11, 11, 64),
                      (None, 5, 5, 64), (None, 3, 3, 64), (None, 1, 1, 64), (None, 64),
                      (None, 64), (None, 10)]


def test_dense_applies_to_the_last_axis_of_any_rank(rng):
    """As Keras: Dense on (N, T, F) maps every position's F features."""
    dense = layers.Dense(3, dtype="float64")
    x = rng.normal(size=(2, 4, 5))
    y = dense(x)
    kernel, bias = dense.get_weights()
    assert y.shape == (2, 4, 3) and dense.output_shape == (None, 4, 3)
    np.testing.assert_allclose(y, x @ kernel + bias, rtol=1e-12)


def test_layer_call_returns_a_new_array_and_never_a_buffer(rng):
    layer = layers.Conv2D(2, 3, activation="relu")
    first = layer(rng.standard_normal((2, 5, 5, 1)))
    kept = first.copy()
    layer(rng.standard_normal((2, 5, 5, 1)))
    np.testing.assert_array_equal(first, kept)


def test_kernel_and_bias_attributes_are_the_parameters():
    layer = layers.Conv2D(2, 3)
    layer.build((None, 5, 5, 1))
    assert layer.kernel is layer.params["kernel"] and layer.bias is layer.params["bias"]
    assert layer.weights == [layer.kernel, layer.bias]
    layer.trainable = False
    assert layer.trainable_weights == [] and len(layer.non_trainable_weights) == 2


def test_numpy_integers_and_floats_are_accepted_and_configs_stay_json():
    """Regression: np.int64 filters made save() fail ('int64 is not JSON serializable')."""
    import json
    layer = layers.Conv2D(np.int64(4), np.int32(3), strides=(np.int64(1), 1))
    config = layer.get_config()
    assert json.loads(json.dumps(config)) == config
    assert type(config["filters"]) is int and config["kernel_size"] == [3, 3]
    pool = layers.MaxPooling2D(np.int16(2))
    assert pool.pool_size == (2, 2) and type(pool.pool_size[0]) is int


@pytest.mark.parametrize("make,exc,fragment", [
    (lambda: layers.Conv2D(True, 3), TypeError, "filters must be an int >= 1, got bool True"),
    (lambda: layers.Dense(4.0), TypeError, "units must be an int >= 1, got float 4.0"),
    (lambda: layers.Conv2D(4, (3, True)), TypeError, "kernel_size must be an int >= 1"),
    (lambda: layers.Dense(4, use_bias=1), TypeError, "use_bias must be True or False"),
    (lambda: layers.Dense(4, unitz=3), TypeError, "unknown keyword argument(s) unitz"),
])
def test_bool_and_wrong_types_are_refused(make, exc, fragment):
    with pytest.raises(exc, match=re.escape(fragment)):
        make()
