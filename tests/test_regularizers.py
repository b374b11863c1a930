"""Weight regularizers: the penalties and their gradients against NumPy and finite
differences; in training, the loss fit and evaluate report includes them and the updates
follow their gradients (a gradient check of a regularized model, and the same loss and
weights as real Keras after a step); frozen layers carry none; configs round-trip through
.npz and .keras in both directions."""

import json
import os

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras
import numpy as np
import pytest
from conftest import distinct_values

import minicnn
from minicnn import gradcheck, initializers, layers, losses, models, optimizers, regularizers

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_penalties_and_keras_s_defaults(rng):
    w = rng.normal(size=(4, 3))
    assert regularizers.L1()(w) == pytest.approx(0.01 * np.abs(w).sum())
    assert regularizers.L2()(w) == pytest.approx(0.01 * (w**2).sum())
    assert regularizers.L1L2(l1=0.1, l2=0.2)(w) == pytest.approx(
        0.1 * np.abs(w).sum() + 0.2 * (w**2).sum())
    assert regularizers.L1L2()(w) == 0.0  # Keras: l1_l2 defaults to 0 and 0
    assert regularizers.l1_l2 is regularizers.L1L2 and regularizers.l2 is regularizers.L2
    assert regularizers.l2(1e-4).get_config() == {"l2": 1e-4}
    assert regularizers.L1L2(l1=0.3).get_config() == {"l1": 0.3, "l2": 0.0}


@pytest.mark.parametrize("regularizer", [regularizers.L1(0.3), regularizers.L2(0.7),
                                         regularizers.L1L2(l1=0.2, l2=0.5)])
def test_gradients_against_finite_differences(regularizer, rng):
    w = distinct_values((5, 4), rng)  # no entry at 0, where |w| has its kink
    grad = regularizer.gradient(w)
    assert grad.shape == w.shape and grad.dtype == w.dtype
    numeric = np.empty_like(w)
    eps = 1e-6
    for index in np.ndindex(w.shape):
        plus, minus = w.copy(), w.copy()
        plus[index] += eps
        minus[index] -= eps
        numeric[index] = (regularizer(plus) - regularizer(minus)) / (2 * eps)
    np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-9)


def test_names_resolve_as_keras_s_and_mistakes_are_explained():
    assert regularizers.get("l2") == regularizers.L2(0.01)
    assert regularizers.get("L1") == regularizers.L1(0.01)
    assert regularizers.get("l1l2") == regularizers.L1L2()
    assert regularizers.get(regularizers.L2) == regularizers.L2()
    assert regularizers.get(None) is None
    with pytest.raises(ValueError, match="unknown regularizer 'l1_l2'.*L1L2\\(l1=..., l2=...\\)"):
        regularizers.get("l1_l2")
    with pytest.raises(TypeError, match="plain function; minicnn needs the penalty's gradient"):
        layers.Dense(3, kernel_regularizer=lambda w: 0.01 * np.sum(w**2))
    with pytest.raises(ValueError, match="Dense .*kernel_regularizer: unknown regularizer"):
        layers.Dense(3, kernel_regularizer="l3")
    with pytest.raises(ValueError, match="l2 must be a number >= 0"):
        regularizers.L2(-1.0)


def regularized_model(dtype=None, optimizer="sgd"):
    model = models.Sequential([
        layers.Conv2D(3, 3, activation="relu", input_shape=(6, 6, 2),
                      kernel_regularizer=regularizers.L2(0.05),
                      bias_regularizer=regularizers.L1(0.02)),
        layers.Flatten(),
        layers.Dense(5, activation="tanh", kernel_regularizer=regularizers.L1L2(0.01, 0.03)),
        layers.Dense(3, activation="softmax", bias_regularizer="l2"),
    ], dtype=dtype)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return model


def data(rng, n=16, dtype=np.float32):
    return rng.random((n, 6, 6, 2)).astype(dtype), rng.integers(0, 3, n)


def penalty_by_hand(model):
    conv, _, dense, out = model.layers
    return (0.05 * (conv.kernel**2).sum() + 0.02 * np.abs(conv.bias).sum()
            + 0.01 * np.abs(dense.kernel).sum() + 0.03 * (dense.kernel**2).sum()
            + 0.01 * (out.bias**2).sum())


def test_model_losses_are_the_penalties_and_join_the_reported_loss(rng):
    minicnn.set_random_seed(0)
    model = regularized_model()
    x, y = data(rng)
    assert len(model.losses) == 4
    assert sum(model.losses) == pytest.approx(penalty_by_hand(model), rel=1e-6)
    plain = losses.SparseCategoricalCrossentropy()(y, model.predict(x, verbose=0))
    expected = plain + penalty_by_hand(model)
    assert model.evaluate(x, y, verbose=0) == pytest.approx(expected, rel=1e-5)
    # train_on_batch reports the loss before its update, as Keras.
    assert model.train_on_batch(x, y) == pytest.approx(expected, rel=1e-5)


def test_a_regularized_model_passes_the_gradient_check(rng):
    minicnn.set_random_seed(1)
    model = regularized_model("float64")
    x = distinct_values((4, 6, 6, 2), rng)
    errors = gradcheck(model, x, y=np.array([0, 2, 1, 2]))
    assert max(errors.values()) < 1e-6, errors


def test_the_update_follows_the_penalty_gradient(rng):
    """With the data gradient switched off (a zero learning rate would hide everything, so
    compare two models that differ only in their regularizer), SGD's step difference is
    lr * the penalty gradient."""
    x, y = data(rng)
    minicnn.set_random_seed(2)
    plain = models.Sequential([layers.Flatten(input_shape=(6, 6, 2)), layers.Dense(3)])
    minicnn.set_random_seed(2)
    penalized = models.Sequential([layers.Flatten(input_shape=(6, 6, 2)),
                                   layers.Dense(3, kernel_regularizer=regularizers.L2(0.5))])
    for model in (plain, penalized):
        model.compile(optimizer=optimizers.SGD(0.1),
                      loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    kernel = penalized.layers[1].kernel.copy()
    plain.train_on_batch(x, y)
    penalized.train_on_batch(x, y)
    np.testing.assert_allclose(plain.layers[1].kernel - penalized.layers[1].kernel,
                               0.1 * 2 * 0.5 * kernel, rtol=1e-5, atol=1e-7)


def test_a_frozen_layer_has_no_penalty_and_keeps_its_weights(rng):
    minicnn.set_random_seed(3)
    model = regularized_model(optimizer=optimizers.SGD(0.1))
    x, y = data(rng)
    conv = model.layers[0]
    conv.trainable = False
    kept = conv.get_weights()
    assert len(model.losses) == 2  # the two Dense penalties
    model.fit(x, y, epochs=2, batch_size=4, verbose=0)
    for got, want in zip(conv.get_weights(), kept, strict=True):
        np.testing.assert_array_equal(got, want)
    assert id(conv.kernel) not in model.regularization_gradients()
    conv.trainable = True  # unfrozen, its penalty counts again
    assert len(model.losses) == 4


def test_a_penalty_still_applies_where_the_loss_does_not_reach(rng):
    """A weight with zero data gradient (a dead ReLU layer's kernel entries) still decays."""
    model = models.Sequential([layers.Dense(2, activation="relu", input_shape=(3,),
                                            kernel_initializer="zeros",
                                            bias_initializer=initializers.Constant(-5.0),
                                            kernel_regularizer=regularizers.L1(0.1)),
                               layers.Dense(2, activation="softmax")])
    model.compile(optimizer=optimizers.SGD(1.0), loss="sparse_categorical_crossentropy")
    model.layers[0].kernel[...] = 0.5  # relu(0.5 * x - 5) = 0 for x in [0, 1): dead
    model.train_on_batch(rng.random((4, 3), dtype=np.float32), np.array([0, 1, 0, 1]))
    np.testing.assert_allclose(model.layers[0].kernel, 0.5 - 0.1, rtol=1e-6)


# --------------------------------------------------------------------------------------------
# Against real Keras
# --------------------------------------------------------------------------------------------


def test_l1_s_gradient_at_zero_is_zero():
    """sign(0) = 0, as TensorFlow's and PyTorch's gradient of |w|: a weight L1 has brought to
    exactly 0 stays there. (JAX differentiates |w| at 0 as 1, so Keras on JAX differs there
    and only there; the comparisons with Keras below keep every weight away from 0.)"""
    w = np.array([0.0, -0.0, 2.0, -3.0])
    np.testing.assert_array_equal(regularizers.L1(0.5).gradient(w), [0.0, 0.0, 0.5, -0.5])


def keras_twin(model, optimizer):
    """The same architecture, regularizers and weights in Keras."""
    r = keras.regularizers
    theirs = keras.Sequential([
        keras.Input((6, 6, 2)),
        keras.layers.Conv2D(3, 3, activation="relu", kernel_regularizer=r.L2(0.05),
                            bias_regularizer=r.L1(0.02)),
        keras.layers.Flatten(),
        keras.layers.Dense(5, activation="tanh", kernel_regularizer=r.L1L2(0.01, 0.03)),
        keras.layers.Dense(3, activation="softmax", bias_regularizer="l2"),
    ])
    theirs.set_weights(model.get_weights())
    theirs.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return theirs


@pytest.mark.parametrize("ours_optimizer, keras_optimizer", [
    (lambda: optimizers.SGD(0.1), lambda: keras.optimizers.SGD(0.1)),
    (lambda: optimizers.Adam(0.01), lambda: keras.optimizers.Adam(0.01)),
], ids=["sgd", "adam"])
def test_same_reported_loss_and_updated_weights_as_keras(rng, ours_optimizer, keras_optimizer):
    minicnn.set_random_seed(4)
    model = regularized_model(optimizer=ours_optimizer())
    # Biases away from 0, where JAX's and TensorFlow's gradients of |w| differ (see above).
    model.set_weights([w if w.ndim > 1 else rng.normal(0.0, 0.1, w.shape)
                       for w in model.get_weights()])
    theirs = keras_twin(model, keras_optimizer())
    x, y = data(rng, 16)
    assert sum(model.losses) == pytest.approx(float(sum(theirs.losses)), rel=1e-5)
    for _ in range(3):
        ours_loss = model.train_on_batch(x, y)
        keras_loss = float(theirs.train_on_batch(x, y))
        assert ours_loss == pytest.approx(keras_loss, rel=1e-5)
    for a, b in zip(model.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    ours_eval = model.evaluate(x, y, verbose=0)
    assert ours_eval == pytest.approx(theirs.evaluate(x, y, verbose=0), rel=1e-5)


def regularizer_configs(model):
    return [(regularizers.serialize(layer.kernel_regularizer),
             regularizers.serialize(layer.bias_regularizer))
            for layer in model.layers if hasattr(layer, "kernel_regularizer")]


def test_regularizers_round_trip_through_json_and_npz_and_training_continues(rng, tmp_path):
    minicnn.set_random_seed(5)
    model = regularized_model(optimizer=optimizers.Adam(0.01))
    x, y = data(rng)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    rebuilt = models.Sequential.from_config(json.loads(json.dumps(model.get_config())))
    assert regularizer_configs(rebuilt) == regularizer_configs(model)
    model.save(tmp_path / "m.npz")
    loaded = models.load_model(tmp_path / "m.npz")
    assert regularizer_configs(loaded) == regularizer_configs(model)
    assert loaded.losses == pytest.approx(model.losses)
    a = model.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False).history
    b = loaded.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False).history
    assert a == b


def test_keras_reads_our_regularizers_and_we_read_keras_s(rng, tmp_path):
    minicnn.set_random_seed(6)
    model = regularized_model()
    model.save(tmp_path / "ours.keras")
    theirs = keras.models.load_model(tmp_path / "ours.keras")
    assert theirs.layers[0].kernel_regularizer.get_config() == {"l2": 0.05}
    assert theirs.layers[0].bias_regularizer.get_config() == pytest.approx({"l1": 0.02})
    assert theirs.layers[2].kernel_regularizer.get_config() == {"l1": 0.01, "l2": 0.03}
    assert theirs.layers[3].kernel_regularizer is None
    assert float(sum(theirs.losses)) == pytest.approx(sum(model.losses), rel=1e-5)
    theirs.save(tmp_path / "theirs.keras")
    again = models.load_model(tmp_path / "theirs.keras")
    assert [type(r).__name__ if r else None for pair in (
        (layer.kernel_regularizer, layer.bias_regularizer) for layer in again.layers
        if hasattr(layer, "kernel_regularizer")) for r in pair] == [
        "L2", "L1", "L1L2", None, None, "L2"]
    assert again.losses == pytest.approx(model.losses, rel=1e-6)
