"""Every layer's backward against central finite differences, in float64 (error < 1e-6)."""

import pytest
from conftest import distinct_values

from minicnn import gradcheck, layers

TOLERANCE = 1e-6


def check(layer, x_shape, rng):
    x = distinct_values(x_shape, rng)
    errors = gradcheck(layer, x, num_checks=60, seed=1)
    assert set(errors) == {"x", *layer.params}
    worst = max(errors.values())
    assert worst < TOLERANCE, errors
    return errors


@pytest.mark.parametrize("strides", [(1, 1), (2, 2), (1, 2), (3, 2)])
@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("activation", [None, "relu"])
def test_conv2d(strides, padding, activation, rng):
    layer = layers.Conv2D(4, (3, 2), strides=strides, padding=padding, activation=activation,
                          dtype="float64")
    layer.build((None, 7, 6, 3))
    layer.params["bias"][:] = rng.normal(size=4)  # non-zero so the bias path is exercised
    check(layer, (2, 7, 6, 3), rng)


def test_conv2d_even_kernel_same_padding_odd_input(rng):
    # 4x4 kernel with 'same' on an odd size: asymmetric padding (extra at bottom/right).
    layer = layers.Conv2D(3, 4, strides=2, padding="same", dtype="float64")
    check(layer, (2, 9, 7, 2), rng)


def test_conv2d_without_bias(rng):
    layer = layers.Conv2D(3, 3, use_bias=False, dtype="float64")
    errors = check(layer, (2, 5, 5, 2), rng)
    assert set(errors) == {"x", "kernel"}


@pytest.mark.parametrize("pool_size,strides,padding", [
    ((2, 2), None, "valid"), ((2, 2), None, "same"), ((3, 3), (2, 2), "valid"),
    ((3, 3), (2, 2), "same"), ((2, 3), (1, 2), "valid"), ((3, 3), (1, 1), "same"),
])
def test_maxpool(pool_size, strides, padding, rng):
    layer = layers.MaxPooling2D(pool_size, strides=strides, padding=padding, dtype="float64")
    check(layer, (2, 7, 9, 3), rng)


@pytest.mark.parametrize("activation", [None, "relu", "softmax", "sigmoid", "tanh"])
def test_dense(activation, rng):
    layer = layers.Dense(5, activation=activation, dtype="float64")
    layer.build((None, 7))
    layer.params["bias"][:] = rng.normal(size=5)
    check(layer, (3, 7), rng)


def test_flatten(rng):
    check(layers.Flatten(dtype="float64"), (2, 3, 4, 5), rng)


@pytest.mark.parametrize("layer_factory", [
    lambda: layers.ReLU(dtype="float64"),
    lambda: layers.Softmax(dtype="float64"),
    lambda: layers.Activation("tanh", dtype="float64"),
    lambda: layers.Activation("linear", dtype="float64"),
])
def test_activation_layers(layer_factory, rng):
    check(layer_factory(), (3, 6), rng)


def test_gradcheck_detects_a_wrong_backward(rng):
    """The checker itself must fail on a broken layer, or the tests above prove nothing."""

    class BrokenDense(layers.Dense):
        def _affine_backward(self, dz, ctx):
            dx, dkernel = super()._affine_backward(dz, ctx)
            return dx, dkernel * 1.01

    errors = gradcheck(BrokenDense(4, dtype="float64"), distinct_values((3, 5), rng))
    assert errors["kernel"] > 1e-3
    assert errors["x"] < TOLERANCE


def test_gradcheck_refuses_float32(rng):
    with pytest.raises(ValueError, match="float64"):
        gradcheck(layers.Dense(3), rng.normal(size=(2, 4)))
