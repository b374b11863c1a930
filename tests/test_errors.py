"""Bad input gets a clear error naming the layer or argument, what it got, what was expected
and the fix -- never a NumPy traceback from deep inside."""

import re

import numpy as np
import pytest

from minicnn import layers, models


def tutorial_like():
    model = models.Sequential([
        layers.Conv2D(8, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.fixture
def model():
    return tutorial_like()


@pytest.fixture
def data(rng):
    return rng.random((20, 28, 28, 1)).astype(np.float32), rng.integers(0, 10, 20)


def raises(exc_type, *fragments):
    """pytest.raises whose message must contain every fragment (regex-escaped)."""
    pattern = "".join(f"(?=.*{re.escape(fragment)})" for fragment in fragments)
    return pytest.raises(exc_type, match="(?s)" + pattern)


def test_missing_channel_axis_says_to_reshape(model, data):
    x, y = data
    with raises(ValueError, "fit", "(20, 28, 28)", "(N, 28, 28, 1)", "reshape(-1, 28, 28, 1)"):
        model.fit(x[..., 0], y, verbose=0)


def test_conv2d_built_on_rank_2_input_says_to_add_channels():
    with raises(ValueError, "Conv2D 'c1'", "(28, 28)", "(N, height, width, channels)",
                "reshape(-1, 28, 28, 1)"):
        models.Sequential([layers.Conv2D(4, 3, input_shape=(28, 28), name="c1")])


def test_wrong_spatial_size_for_a_built_model(model, rng):
    with raises(ValueError, "predict", "(3, 32, 32, 1)", "(N, 28, 28, 1)", "Resize"):
        model.predict(rng.random((3, 32, 32, 1)))


def test_wrong_channel_count(model, rng):
    with raises(ValueError, "evaluate", "(4, 28, 28, 3)", "(N, 28, 28, 1)", "channel count"):
        model.evaluate(rng.random((4, 28, 28, 3)), np.zeros(4, int), verbose=0)


def test_kernel_bigger_than_input():
    with raises(ValueError, "Conv2D 'big'", "kernel_size (5, 5)", "height 4", "padding='same'"):
        models.Sequential([layers.Conv2D(2, 5, input_shape=(4, 9, 1), name="big")])


def test_pool_bigger_than_input():
    with raises(ValueError, "MaxPooling2D 'p'", "pool_size (3, 3)", "width 2"):
        models.Sequential([layers.MaxPooling2D(3, input_shape=(6, 2, 1), name="p")])


def test_too_many_poolings_shrink_the_image_away():
    with raises(ValueError, "Conv2D", "bigger than the input", "fewer pooling layers"):
        models.Sequential([layers.Conv2D(2, 3, input_shape=(8, 8, 1)), layers.MaxPooling2D(2),
                           layers.MaxPooling2D(2), layers.Conv2D(2, 3)])


def test_labels_out_of_range(model, data):
    x, y = data
    y = y.copy()
    y[3] = 10
    with raises(ValueError, "labels must be in [0, 9]", "10 outputs", "got 10 at index 3"):
        model.fit(x, y, verbose=0)
    y[3] = -1
    with raises(ValueError, "got -1 at index 3", "range from -1"):
        model.fit(x, y, verbose=0)


def test_non_integer_labels_for_sparse_loss(model, data):
    x, y = data
    with raises(ValueError, "integer class labels", "float64", "astype(int)"):
        model.fit(x, y + 0.5, verbose=0)
    model.fit(x, y.astype(np.float64), epochs=1, verbose=0)  # integral floats are fine, as Keras


def test_one_hot_labels_given_to_sparse_loss(model, data):
    x, y = data
    with raises(ValueError, "one-hot", "(20, 10)", "categorical_crossentropy", "argmax"):
        model.fit(x, np.eye(10)[y], verbose=0)


def test_one_hot_labels_of_the_wrong_width(data):
    x, y = data
    model = tutorial_like()
    model.compile(optimizer="adam", loss="categorical_crossentropy")
    with raises(ValueError, "categorical_crossentropy", "(N, 10)", "(20, 9)"):
        model.fit(x, np.eye(9)[y % 9], verbose=0)
    with raises(ValueError, "integers", "sparse_categorical_crossentropy"):
        model.fit(x, y, verbose=0)


def test_x_y_length_mismatch(model, data):
    x, y = data
    with raises(ValueError, "x has 20 samples", "y has 19 samples", "same length"):
        model.fit(x, y[:19], verbose=0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_nan_or_inf_in_input(model, data, bad):
    x, y = data
    x = x.copy()
    x[2, 5, 5, 0] = bad
    with raises(ValueError, "fit", "x contains 1 NaN or inf", "nan_to_num"):
        model.fit(x, y, verbose=0)


@pytest.mark.parametrize("value", [0, -3, 2.5, True])
def test_batch_size_below_one_or_not_int(model, data, value):
    x, y = data
    with raises(ValueError, "batch_size must be an int >= 1", repr(value)):
        model.fit(x, y, batch_size=value, verbose=0)


def test_negative_epochs(model, data):
    x, y = data
    with raises(ValueError, "epochs must be an int >= 0", "-1"):
        model.fit(x, y, epochs=-1, verbose=0)
    assert model.fit(x, y, epochs=0, verbose=0).history == {}


def test_empty_data(model):
    with raises(ValueError, "fit", "x is empty", "(0, 28, 28, 1)"):
        model.fit(np.zeros((0, 28, 28, 1)), np.zeros(0, int), verbose=0)


def test_fit_and_evaluate_before_compile(data):
    x, y = data
    model = models.Sequential([layers.Flatten(input_shape=(28, 28, 1)), layers.Dense(10)])
    for call in (lambda: model.fit(x, y, verbose=0), lambda: model.evaluate(x, y, verbose=0)):
        with raises(ValueError, "not compiled", "model.compile(optimizer='adam'"):
            call()


def test_unknown_activation_loss_optimizer(model):
    with raises(ValueError, "Dense", "unknown activation 'rellu'", "relu", "softmax"):
        layers.Dense(3, activation="rellu")
    with raises(ValueError, "unknown loss 'crossentropy'", "sparse_categorical_crossentropy"):
        model.compile(loss="crossentropy")
    with raises(ValueError, "unknown optimizer 'nadam'",
                "'adam', 'adamw', 'adagrad', 'rmsprop', 'sgd'"):
        model.compile(optimizer="nadam", loss="sparse_categorical_crossentropy")


def test_set_weights_wrong_count_or_shape(model):
    weights = model.get_weights()
    with raises(ValueError, "set_weights", "4 weight arrays", "got 3"):
        model.set_weights(weights[:3])
    weights[2] = np.zeros((100, 10), np.float32)
    with raises(ValueError, "Dense", "kernel must have shape (1352, 10)", "(100, 10)"):
        model.set_weights(weights)


@pytest.mark.parametrize("make,fragments", [
    (lambda: layers.Conv2D(0, 3), ("filters must be an int >= 1", "got 0")),
    (lambda: layers.Conv2D(4, (3, 3, 3)), ("kernel_size must have 2 entries", "(3, 3, 3)")),
    (lambda: layers.Conv2D(4, 3, padding="full"), ("padding must be 'valid' or 'same'",)),
    (lambda: layers.MaxPooling2D(strides=0), ("strides",)),
    (lambda: layers.Dense(-2), ("units must be an int >= 1", "got -2")),
])
def test_bad_layer_arguments(make, fragments):
    with raises(ValueError, *fragments):
        make()


def test_dense_on_images_then_a_classification_loss_says_to_flatten(rng):
    """Dense on images is legal (it maps the last axis, as Keras), but a classifier whose
    output still has spatial axes gets a message pointing at the missing Flatten."""
    model = models.Sequential([layers.Dense(4, activation="softmax", input_shape=(5, 5, 3))])
    model.compile(loss="sparse_categorical_crossentropy")
    with raises(ValueError, "fit", "(None, 5, 5, 4)", "Flatten()"):
        model.fit(rng.random((3, 5, 5, 3)), np.zeros(3, int), verbose=0)


def test_non_numeric_input(model):
    with raises(TypeError, "x must hold numbers", "<U"):
        model.predict(np.array([["a"] * 28] * 28).reshape(1, 28, 28, 1))


def test_invalid_validation_split(model, data):
    x, y = data
    with raises(ValueError, "validation_split must be a float in [0, 1)", "1.5"):
        model.fit(x, y, validation_split=1.5, verbose=0)


def test_adding_a_non_layer():
    with raises(TypeError, "Sequential.add", "expected a minicnn layer", "str"):
        models.Sequential(["dense"])
