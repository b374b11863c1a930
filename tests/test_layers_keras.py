"""Issue 10's layers, one by one: against real Keras 3 (JAX backend) built with the same
configuration and weights, in inference and (where it differs) training mode; against a small
independent NumPy version of Keras's formula; float64 gradient checks; shapes, configs and the
errors for bad arguments.
"""

import math
import os
import warnings

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras
import numpy as np
import pytest
from conftest import distinct_values

from minicnn import activations, gradcheck, layers, models
from minicnn.ops import reference

KL = keras.layers
TOLERANCE = 1e-6  # gradient checks (float64)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def keras_call(layer, x, training=False):
    return np.asarray(layer(x, training=training))


def keras_twin(ours, keras_class=None):
    """The Keras layer with our layer's configuration (Keras's own from_config)."""
    config = {k: v for k, v in ours.get_config().items() if k not in ("dtype", "input_shape")}
    return getattr(KL, keras_class or type(ours).__name__).from_config(config)


def check_gradients(layer, x_shape, rng, training=True):
    """Float64 finite differences for the input and, in training, every parameter (moving
    averages included: the training output does not depend on them, so both sides are 0).
    In inference mode gradcheck computes no parameter gradients, so only x is checked."""
    errors = gradcheck(layer, distinct_values(x_shape, rng), num_checks=60, seed=1,
                       training=training)
    assert set(errors) == {"x", *layer.params}
    checked = errors if training else {"x": errors["x"]}
    assert max(checked.values()) < TOLERANCE, errors
    return errors


# --------------------------------------------------------------------------- keras.Input


def test_input_starts_a_sequential_model_as_in_keras_io():
    """keras.Input is the functional API's (minicnn/functional.py); here only that the new
    layers build after it as keras.io's examples write them."""
    model = models.Sequential([layers.Input(shape=(28, 28, 1)), layers.Rescaling(1 / 255),
                               layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
                               layers.BatchNormalization(), layers.AvgPool2D(pool_size=(2, 2)),
                               layers.GlobalMaxPooling2D(), layers.Dropout(0.5),
                               layers.Dense(10, activation="softmax")])
    assert model.input_shape == (None, 28, 28, 1) and model.built
    assert [layer.output_shape for layer in model.layers][2:5] == [
        (None, 26, 26, 32), (None, 13, 13, 32), (None, 32)]
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    assert model.predict(x, verbose=0).shape == (3, 10)


# --------------------------------------------------------------------------- activations


@pytest.mark.parametrize("name", sorted(set(reference.ACTIVATIONS)))
def test_every_activation_equals_keras(name, rng):
    x = (rng.standard_normal((4, 3, 5)) * 3).astype(np.float32)
    expected = np.asarray(keras.activations.get(name)(x))
    np.testing.assert_allclose(layers.Activation(name)(x), expected, rtol=2e-6, atol=2e-7)
    np.testing.assert_allclose(getattr(activations, name)(x), expected, rtol=2e-6, atol=2e-7)
    dense = layers.Dense(4, activation=name)  # Keras on JAX computes in float32 (no x64)
    dense.build((None, 3, 5))
    twin = KL.Dense(4, activation=name)
    twin.build((None, 3, 5))
    twin.set_weights(dense.get_weights())
    np.testing.assert_allclose(dense(x), keras_call(twin, x), rtol=2e-6, atol=2e-6)
    assert twin.get_config()["activation"] == dense.get_config()["activation"] == name


def test_activation_aliases_and_functions_resolve_as_keras_serialises_them():
    for alias, name in (("swish", "silu"), ("hard_swish", "hard_silu")):
        assert activations.get(alias) == name
        assert keras.activations.serialize(keras.activations.get(alias)) == name
        assert layers.Dense(2, activation=getattr(activations, alias)).activation == name
    with pytest.raises(ValueError, match=r"unknown activation 'swoosh'.*Known activations: .*gelu"):
        layers.Dense(2, activation="swoosh")


@pytest.mark.parametrize("name", sorted(set(reference.ACTIVATIONS) - {"softmax"}))
def test_every_activation_gradient_in_a_layer(name, rng):
    layer = layers.Activation(name, dtype="float64")
    x = distinct_values((4, 7), rng, -4, 4) + 1e-3 * math.pi  # away from every kink
    errors = gradcheck(layer, x, num_checks=28, seed=1)
    assert errors["x"] < TOLERANCE, errors


def test_activation_functions_take_keras_arguments():
    x = np.array([-3.0, -0.5, 0.5, 2.0, 9.0])
    np.testing.assert_allclose(activations.relu(x, negative_slope=0.1, max_value=5, threshold=1),
                               np.asarray(keras.activations.relu(x, negative_slope=0.1,
                                                                 max_value=5, threshold=1)))
    np.testing.assert_allclose(activations.leaky_relu(x, 0.3),
                               np.asarray(keras.activations.leaky_relu(x, 0.3)))
    np.testing.assert_allclose(activations.softmax(x.reshape(1, 5), axis=0), np.ones((1, 5)))
    with pytest.raises(ValueError, match="only approximate=False is supported"):
        activations.gelu(x, approximate=True)


# --------------------------------------------------------------------------- ReLU, LeakyReLU


@pytest.mark.parametrize("config", [
    {}, {"max_value": 6.0}, {"negative_slope": 0.1}, {"threshold": 0.5},
    {"max_value": 2.0, "negative_slope": 0.2, "threshold": 0.5},
], ids=str)
def test_relu_layer_equals_keras(config, rng):
    x = (rng.standard_normal((3, 4, 6)) * 3).astype(np.float32)
    ours = layers.ReLU(**config)
    np.testing.assert_array_equal(ours(x), keras_call(KL.ReLU(**config), x))
    errors = gradcheck(layers.ReLU(**config, dtype="float64"),
                       distinct_values((3, 8), rng, -3, 3) + 1e-3 * math.pi)
    assert errors["x"] < TOLERANCE
    assert ours.get_config() == {**{"max_value": None, "negative_slope": 0.0,
                                    "threshold": 0.0}, **config, "name": ours.name,
                                 "dtype": "float32", "trainable": True}


def test_leaky_relu_default_slope_and_keras_2_alpha(rng):
    x = rng.standard_normal((5, 7)).astype(np.float32)
    ours = layers.LeakyReLU()
    assert ours.negative_slope == KL.LeakyReLU().negative_slope == 0.3
    np.testing.assert_array_equal(ours(x), keras_call(KL.LeakyReLU(), x))
    np.testing.assert_array_equal(ours(x), np.where(x >= 0, x, np.float32(0.3) * x))
    with pytest.warns(DeprecationWarning, match="`alpha` is deprecated.*use `negative_slope`"):
        old = layers.LeakyReLU(alpha=0.1)
    assert old.negative_slope == 0.1
    assert set(old.get_config()) == {"negative_slope", "name", "dtype", "trainable"}
    assert gradcheck(layers.LeakyReLU(dtype="float64"), distinct_values((3, 5), rng))["x"] < 1e-6


@pytest.mark.parametrize("make, message", [
    (lambda: layers.ReLU(max_value=-1), "max_value must be a number >= 0"),
    (lambda: layers.ReLU(negative_slope=-0.1), "negative_slope must be a number >= 0"),
    (lambda: layers.ReLU(threshold="0"), "threshold must be a number"),
    (lambda: layers.LeakyReLU(negative_slope=None), "negative_slope must be a number"),
    (lambda: layers.LeakyReLU(max_value=6), "unknown keyword argument max_value; use layers.ReLU"),
])
def test_relu_errors(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


# --------------------------------------------------------------------------- Softmax


@pytest.mark.parametrize("axis", [-1, 1, 2, [-1]])
def test_softmax_layer_axis_equals_keras(axis, rng):
    x = (rng.standard_normal((2, 3, 4)) * 2).astype(np.float32)
    ours = layers.Softmax(axis=axis)
    expected = keras_call(KL.Softmax(axis=axis), x)
    np.testing.assert_allclose(ours(x), expected, rtol=1e-6, atol=1e-7)
    last = ours.axis in (-1, 2)
    assert ours.output_activation == ("softmax" if last else None)
    errors = gradcheck(layers.Softmax(axis=axis, dtype="float64"), distinct_values((2, 3, 4), rng))
    assert errors["x"] < TOLERANCE


def test_softmax_refuses_the_batch_axis():
    with pytest.raises(ValueError, match="axis 0 does not name a feature axis"):
        layers.Softmax(axis=0).build((None, 4))


# --------------------------------------------------------------------------- pooling


@pytest.mark.parametrize("pool_size, strides, padding", [
    ((2, 2), None, "valid"), ((3, 3), (2, 2), "same"), ((2, 3), (1, 2), "valid"),
    ((3, 3), (1, 1), "same"), (2, None, "same"),
])
def test_average_pooling_equals_keras(pool_size, strides, padding, rng):
    x = rng.standard_normal((2, 7, 9, 3)).astype(np.float32)
    ours = layers.AveragePooling2D(pool_size, strides=strides, padding=padding)
    theirs = KL.AveragePooling2D(pool_size, strides=strides, padding=padding)
    y = ours(x)
    np.testing.assert_allclose(y, keras_call(theirs, x), rtol=1e-6, atol=1e-6)
    assert ours.output_shape == theirs.compute_output_shape((None, 7, 9, 3))
    check_gradients(layers.AveragePooling2D(pool_size, strides=strides, padding=padding,
                                            dtype="float64"), (2, 7, 9, 3), rng)


def test_average_pooling_numpy_formula_and_flops(rng):
    x = rng.standard_normal((2, 4, 6, 3))
    layer = layers.AveragePooling2D(2, dtype="float64")
    np.testing.assert_allclose(layer(x), x.reshape(2, 2, 2, 3, 2, 3).mean(axis=(2, 4)),
                               rtol=1e-14)
    assert layer.flops() == 2 * 3 * 3 * 4  # output cells x window size


@pytest.mark.parametrize("cls", ["GlobalAveragePooling2D", "GlobalMaxPooling2D"])
@pytest.mark.parametrize("keepdims", [False, True])
def test_global_pooling_equals_keras(cls, keepdims, rng):
    x = rng.standard_normal((3, 5, 4, 6)).astype(np.float32)
    ours, theirs = getattr(layers, cls)(keepdims=keepdims), getattr(KL, cls)(keepdims=keepdims)
    y = ours(x)
    np.testing.assert_allclose(y, keras_call(theirs, x), rtol=1e-6, atol=1e-7)
    reduce = np.mean if "Average" in cls else np.max
    np.testing.assert_allclose(y, reduce(x, axis=(1, 2), keepdims=keepdims), rtol=1e-6)
    assert ours.output_shape == theirs.compute_output_shape((None, 5, 4, 6))
    check_gradients(getattr(layers, cls)(keepdims=keepdims, dtype="float64"), (3, 5, 4, 6), rng)


def test_pooling_aliases_are_the_keras_classes():
    assert layers.MaxPool2D is layers.MaxPooling2D and layers.AvgPool2D is layers.AveragePooling2D
    assert layers.GlobalAvgPool2D is layers.GlobalAveragePooling2D
    assert layers.GlobalMaxPool2D is layers.GlobalMaxPooling2D
    assert KL.MaxPool2D is KL.MaxPooling2D and KL.GlobalAvgPool2D is KL.GlobalAveragePooling2D
    assert layers.get_class("AvgPool2D") is layers.AveragePooling2D
    assert type(layers.MaxPool2D(2)).__name__ == "MaxPooling2D"


def test_global_pooling_needs_images():
    with pytest.raises(ValueError, match=r"expects inputs of shape \(N, height, width, channels"):
        layers.GlobalAveragePooling2D().build((None, 5, 3))


# --------------------------------------------------------------------------- Rescaling, Reshape


def test_rescaling_equals_keras(rng):
    x = rng.integers(0, 256, (2, 5, 5, 3)).astype(np.float32)
    for scale, offset in ((1 / 255, 0.0), (1 / 127.5, -1.0)):
        ours = layers.Rescaling(scale, offset=offset)
        np.testing.assert_allclose(ours(x), keras_call(KL.Rescaling(scale, offset=offset), x),
                                   rtol=1e-7, atol=1e-7)
        np.testing.assert_allclose(ours(x), x * np.float32(scale) + np.float32(offset))
    check_gradients(layers.Rescaling(0.5, offset=2.0, dtype="float64"), (3, 4), rng)
    with pytest.raises(TypeError, match="scale must be a number"):
        layers.Rescaling("1/255")


@pytest.mark.parametrize("target, x_shape", [((7, 7, 1), (2, 49)), ((-1,), (2, 3, 4)),
                                             ((3, -1), (2, 12)), ((2, 2, 3), (2, 4, 3))])
def test_reshape_equals_keras(target, x_shape, rng):
    x = rng.standard_normal(x_shape).astype(np.float32)
    ours, theirs = layers.Reshape(target), KL.Reshape(target)
    y = ours(x)
    np.testing.assert_array_equal(y, keras_call(theirs, x))
    np.testing.assert_array_equal(y, x.reshape(len(x), *ours.output_shape[1:]))
    assert ours.output_shape == theirs.compute_output_shape((None, *x_shape[1:]))
    check_gradients(layers.Reshape(target, dtype="float64"), x_shape, rng)


@pytest.mark.parametrize("target, message", [
    ((5, 5), r"cannot reshape inputs of shape \(49,\) \(49 values\) to \(5, 5\) \(25 values\)"),
    ((-1, 5), "49 is not a multiple of 5"),
    ((-1, -1), "at most one -1"),
    ((0, 49), "target_shape must be an int >= 1"),
])
def test_reshape_errors(target, message):
    with pytest.raises(ValueError, match=message):
        layers.Reshape(target).build((None, 49))


# --------------------------------------------------------------------------- BatchNormalization


def batchnorm_pair(config, shape, rng):
    """Our BatchNormalization and Keras's, with the same random non-trivial weights."""
    ours = layers.BatchNormalization(**config)
    ours.build(shape)
    for name, value in ours.params.items():
        value[...] = (rng.random(value.shape) + 0.5 if name in ("gamma", "moving_variance")
                      else rng.standard_normal(value.shape))
    theirs = KL.BatchNormalization(**config)
    theirs.build(shape)
    theirs.set_weights(ours.get_weights())
    return ours, theirs


@pytest.mark.parametrize("config, shape", [
    ({}, (None, 5, 6, 4)),
    ({}, (None, 7)),
    ({"momentum": 0.9, "epsilon": 1e-5}, (None, 3, 5)),
    ({"center": False}, (None, 4, 4, 3)),
    ({"scale": False, "center": False}, (None, 6)),
    ({"axis": 1}, (None, 4, 5, 3)),
    ({"axis": -2}, (None, 3, 5)),
], ids=str)
def test_batchnorm_equals_keras_in_inference_and_training(config, shape, rng):
    ours, theirs = batchnorm_pair(config, shape, rng)
    assert [w.path.split("/")[-1] for w in theirs.weights] == list(ours.params)
    x = (rng.standard_normal((16, *shape[1:])) * 3 + 2).astype(np.float32)
    np.testing.assert_allclose(ours(x), keras_call(theirs, x), rtol=1e-5, atol=1e-5)
    for _ in range(2):  # training: the batch's statistics, and the moving ones updated
        y_theirs = keras_call(theirs, x, training=True)
        np.testing.assert_allclose(ours(x, training=True), y_theirs, rtol=1e-5, atol=1e-5)
        for got, want in zip(ours.get_weights(), theirs.get_weights(), strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ours(x), keras_call(theirs, x), rtol=1e-5, atol=1e-5)


def test_batchnorm_numpy_formula_and_moving_average_update(rng):
    layer = layers.BatchNormalization(momentum=0.9, dtype="float64")
    x = rng.standard_normal((10, 3, 4)) * 2 + 5
    layer.build((None, 3, 4))
    gamma, beta = rng.random(4) + 0.5, rng.standard_normal(4)
    layer.set_weights([gamma, beta, np.zeros(4), np.ones(4)])
    y = layer(x, training=True)
    mean, var = x.mean(axis=(0, 1)), x.var(axis=(0, 1))  # biased variance, as Keras
    np.testing.assert_allclose(y, gamma * (x - mean) / np.sqrt(var + 1e-3) + beta, rtol=1e-12)
    np.testing.assert_allclose(layer.params["moving_mean"], 0.1 * mean, rtol=1e-12)
    np.testing.assert_allclose(layer.params["moving_variance"], 0.9 + 0.1 * var, rtol=1e-12)
    inference = layer(x)  # the moving statistics
    np.testing.assert_allclose(inference, gamma * (x - 0.1 * mean) / np.sqrt(
        0.9 + 0.1 * var + 1e-3) + beta, rtol=1e-12)


def test_batchnorm_weights_defaults_and_config():
    layer = layers.BatchNormalization()
    assert (layer.axis, layer.momentum, layer.epsilon) == (-1, 0.99, 1e-3)
    layer.build((None, 8, 8, 16))
    assert list(layer.params) == ["gamma", "beta", "moving_mean", "moving_variance"]
    gamma, beta, mean, var = layer.get_weights()
    assert (gamma == 1).all() and (beta == 0).all() and (mean == 0).all() and (var == 1).all()
    assert len(layer.trainable_weights) == 2 and len(layer.non_trainable_weights) == 2
    assert layer.trainable_weights[0] is layer.params["gamma"]
    assert layer.count_params() == 64 and layer.flops() == 2 * 8 * 8 * 16
    config = layer.get_config()
    assert layers.BatchNormalization.from_config(config).get_config() == config
    keras_config = KL.BatchNormalization().get_config()
    for key in ("axis", "momentum", "epsilon", "center", "scale"):
        assert config[key] == keras_config[key], key


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("config, shape", [
    ({}, (6, 3, 2, 4)), ({}, (7, 5)), ({"center": False, "axis": 1}, (5, 3, 4)),
], ids=str)
def test_batchnorm_gradients(config, shape, training, rng):
    layer = layers.BatchNormalization(dtype="float64", **config)
    layer.build((None, *shape[1:]))
    for value in layer.params.values():
        value[...] = rng.random(value.shape) + 0.5
    errors = check_gradients(layer, shape, rng, training=training)
    assert "gamma" in errors


@pytest.mark.parametrize("make, message", [
    (lambda: layers.BatchNormalization(momentum=1.5), "momentum must be a number >= 0 and <= 1"),
    (lambda: layers.BatchNormalization(epsilon=0), "epsilon must be a number > 0"),
    (lambda: layers.BatchNormalization(axis=1.0), "axis must be an int"),
    (lambda: layers.BatchNormalization(center=1), "center must be True or False"),
    (lambda: layers.BatchNormalization(gamma_initializer="pi"), "unknown initializer 'pi'"),
    (lambda: layers.BatchNormalization(renorm=True), r"unknown keyword argument\(s\) renorm"),
    (lambda: layers.BatchNormalization(axis=0).build((None, 3)), "axis 0 does not name a feature"),
    (lambda: layers.BatchNormalization(axis=3).build((None, 3)), "axis 3 does not name a feature"),
])
def test_batchnorm_errors(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


# --------------------------------------------------------------------------- Dropout


def test_dropout_is_the_identity_at_inference_and_scales_as_keras_in_training(rng):
    x = rng.random((400, 50), dtype=np.float32) + 0.5
    ours, theirs = layers.Dropout(0.4), KL.Dropout(0.4, seed=0)
    np.testing.assert_array_equal(ours(x), x)
    np.testing.assert_array_equal(keras_call(theirs, x), x)
    for y in (ours(x, training=True), keras_call(theirs, x, training=True)):
        kept = y != 0
        assert abs(kept.mean() - 0.6) < 0.01  # 20,000 draws: over 5 standard deviations
        # Keras/XLA multiplies by 1/0.6 where minicnn divides by 0.6: 1 ulp apart at most.
        np.testing.assert_allclose(y[kept], x[kept] / np.float32(0.6), rtol=2.5e-7)


def test_dropout_noise_shape_as_keras(rng):
    x = np.ones((4, 6, 6, 8), np.float32)
    for layer in (layers.Dropout(0.5, noise_shape=(None, 1, 1, 8)),
                  KL.Dropout(0.5, noise_shape=(None, 1, 1, 8), seed=1)):
        y = np.asarray(layer(x, training=True)).reshape(4, 36, 8)
        assert (y == y[:, :1]).all() and set(np.unique(y)) == {0.0, 2.0}


def test_dropout_gradient_uses_the_training_mask(rng):
    errors = gradcheck(layers.Dropout(0.5, dtype="float64"), distinct_values((6, 10), rng),
                       num_checks=60)
    assert errors["x"] < TOLERANCE
    errors = gradcheck(layers.Dropout(0.5, noise_shape=(None, 1, 4), dtype="float64"),
                       distinct_values((3, 5, 4), rng), num_checks=60)
    assert errors["x"] < TOLERANCE


def test_dropout_config_matches_keras():
    ours = layers.Dropout(0.25, noise_shape=(None, 1, 1, 3), seed=7)
    theirs = KL.Dropout(0.25, noise_shape=(None, 1, 1, 3), seed=7).get_config()
    config = ours.get_config()
    assert (config["rate"], config["seed"]) == (theirs["rate"], theirs["seed"])
    assert tuple(config["noise_shape"]) == tuple(theirs["noise_shape"])
    assert layers.Dropout.from_config(config).get_config() == config


@pytest.mark.parametrize("make, message", [
    (lambda: layers.Dropout(1.5), "rate must be a number >= 0 and <= 1"),
    (lambda: layers.Dropout("0.5"), "rate must be a number"),
    (lambda: layers.Dropout(0.5, noise_shape="all"), "noise_shape must be a tuple of ints"),
    (lambda: layers.Dropout(0.5, noise_shape=(None, 0)), "noise_shape must be an int >= 1"),
    (lambda: layers.Dropout(0.5, seed=-1), "seed must be an int >= 0"),
    (lambda: layers.Dropout(0.5, noise_shape=(None, 2)).build((None, 3)), "does not broadcast"),
    (lambda: layers.Dropout(0.5, noise_shape=(None, 1)).build((None, 3, 2)), "has 2 entries"),
])
def test_dropout_errors(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_dropout_noise_shape_with_a_fixed_batch_size_must_fit():
    layer = layers.Dropout(0.5, noise_shape=(3, 4))
    with pytest.raises(ValueError, match="fixes the batch axis to 3, but the batch has 5"):
        layer(np.ones((5, 4), np.float32), training=True)


# --------------------------------------------------------------------------- Dense on rank > 2


def test_dense_on_rank_3_and_4_inputs_equals_keras(rng):
    for shape in ((None, 5, 6), (None, 3, 4, 6)):
        ours = layers.Dense(3, activation="tanh")
        ours.build(shape)
        theirs = KL.Dense(3, activation="tanh")
        theirs.build(shape)
        theirs.set_weights(ours.get_weights())
        x = rng.standard_normal((2, *shape[1:])).astype(np.float32)
        np.testing.assert_allclose(ours(x), keras_call(theirs, x), rtol=1e-6, atol=1e-7)
        assert ours.output_shape == theirs.compute_output_shape(shape)
        check_gradients(layers.Dense(3, activation="tanh", dtype="float64"), (2, *shape[1:]),
                        rng)


def test_layers_warn_nothing_on_ordinary_use(rng):
    x = rng.standard_normal((4, 6, 6, 2)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for layer in (layers.BatchNormalization(), layers.Dropout(0.5), layers.ReLU(),
                      layers.AveragePooling2D(), layers.GlobalMaxPooling2D(),
                      layers.LeakyReLU(), layers.Rescaling(2.0), layers.Activation("gelu")):
            layer(x, training=True)
            layer(x)
