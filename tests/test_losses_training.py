"""Training with each Keras loss: whole-model float64 gradient checks (through the softmax and
sigmoid shortcuts), the same loss and metrics as real Keras on the same weights with sample
weights, class_weight as Keras maps it, model files (.npz and .keras both ways), learning, and
the target checks with their messages."""

import os
import warnings

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras
import numpy as np
import pytest
from keras.src.trainers.data_adapters.data_adapter_utils import class_weight_to_sample_weights

import minicnn
from minicnn import gradcheck, layers, losses, metrics, models
from minicnn.inputs import check_sample_weights


def dense_model(units, activation=None, dtype=None, inputs=4):
    return models.Sequential([layers.Dense(6, activation="tanh", input_shape=(inputs,)),
                              layers.Dense(units, activation=activation)], dtype=dtype)


def image_model(dtype=None):
    """A (None, 4, 4, 1) output: a per-pixel regression."""
    return models.Sequential([layers.Conv2D(3, 3, padding="same", activation="tanh",
                                            input_shape=(4, 4, 2)),
                              layers.Conv2D(1, 3, padding="same")], dtype=dtype)


def data(case, rng, n=12):
    """(model maker, loss, metrics, x, y) for a named case."""
    labels = rng.integers(0, 3, n)
    x = rng.normal(size=(n, 4))
    binary = rng.integers(0, 2, n).astype(np.float64)
    cases = {
        "scce": (lambda d: dense_model(3, "softmax", d), "sparse_categorical_crossentropy",
                 ["accuracy"], labels),
        "scce_logits": (lambda d: dense_model(3, None, d),
                        losses.SparseCategoricalCrossentropy(from_logits=True), ["acc"], labels),
        "cce": (lambda d: dense_model(3, "softmax", d), "categorical_crossentropy",
                ["accuracy"], np.eye(3)[labels]),
        "bce_sigmoid": (lambda d: dense_model(1, "sigmoid", d), "binary_crossentropy",
                        ["accuracy"], binary),
        "bce_multilabel": (lambda d: dense_model(3, "sigmoid", d), "binary_crossentropy",
                           ["binary_accuracy"], rng.integers(0, 2, (n, 3)).astype(float)),
        "bce_logits": (lambda d: dense_model(1, None, d),
                       losses.BinaryCrossentropy(from_logits=True), ["mae"], binary[:, None]),
        "bce_smoothing": (lambda d: dense_model(1, "sigmoid", d),
                          losses.BinaryCrossentropy(label_smoothing=0.1), ["accuracy"], binary),
        "mse": (lambda d: dense_model(2, None, d), "mse", ["mae"], rng.normal(size=(n, 2))),
        "mse_column": (lambda d: dense_model(1, None, d), "mean_squared_error", ["mse"],
                       rng.normal(size=n)),
        "mae": (lambda d: dense_model(2, None, d), "mae", ["mse"], rng.normal(size=(n, 2))),
        "huber": (lambda d: dense_model(2, None, d), losses.Huber(delta=0.5), ["mae"],
                  rng.normal(size=(n, 2)) * 2),
        "mse_image": (image_model, "mse", ["mae"], rng.normal(size=(n, 4, 4, 1))),
    }
    make, loss, metric_names, y = cases[case]
    if case == "mse_image":
        x = rng.normal(size=(n, 4, 4, 2))
    return make, loss, metric_names, x, y


CASES = ["scce", "scce_logits", "cce", "bce_sigmoid", "bce_multilabel", "bce_logits",
         "bce_smoothing", "mse", "mse_column", "mae", "huber", "mse_image"]


@pytest.mark.parametrize("case", CASES)
def test_whole_model_gradient_matches_finite_differences(case, rng):
    minicnn.set_random_seed(3)
    make, loss, metric_names, x, y = data(case, rng)
    model = make("float64")
    model.compile(optimizer="sgd", loss=loss, metrics=metric_names)
    errors = gradcheck(model, x, y)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("case", CASES)
def test_loss_and_metrics_equal_keras_on_the_same_weights(case, rng, tmp_path):
    """Keras (JAX) opens our .keras file, compile settings included, and evaluates the same
    loss and metrics with the same sample weights."""
    minicnn.set_random_seed(4)
    make, loss, metric_names, x, y = data(case, rng, n=40)
    x = x.astype(np.float32)
    model = make(None)
    model.compile(optimizer="adam", loss=loss, metrics=metric_names)
    model.fit(x, y, epochs=2, batch_size=8, verbose=0)
    model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    weights = None if case == "mse_image" else rng.uniform(0, 2, len(x))  # see losses.py
    ours = model.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    expected = theirs.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    assert set(ours) == set(expected)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=1e-5, abs=1e-6), name


@pytest.mark.parametrize("case", CASES)
def test_model_files_keep_the_loss_and_metrics(case, rng, tmp_path):
    make, loss, metric_names, x, y = data(case, rng)
    model = make(None)
    model.compile(optimizer="adam", loss=loss, metrics=metric_names)
    model.fit(x, y, epochs=1, batch_size=4, verbose=0)
    for name in ("m.npz", "m.keras"):
        model.save(tmp_path / name)
        loaded = models.load_model(tmp_path / name)
        assert type(loaded.loss) is type(model.loss)
        assert loaded.loss.get_config() == model.loss.get_config()
        assert loaded.metrics_names == model.metrics_names
        assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("keras_loss, expected", [
    ("mse", losses.MeanSquaredError()),
    (lambda: keras.losses.mean_absolute_error, losses.MeanAbsoluteError()),
    (lambda: keras.losses.BinaryCrossentropy(label_smoothing=0.2, from_logits=True),
     losses.BinaryCrossentropy(label_smoothing=0.2, from_logits=True)),
    (lambda: keras.losses.Huber(), losses.Huber()),
    (lambda: keras.losses.CategoricalCrossentropy(label_smoothing=0.1),
     losses.CategoricalCrossentropy(label_smoothing=0.1)),
], ids=["mse-string", "mae-function", "bce-object", "huber-object", "cce-smoothing"])
def test_keras_written_losses_load_compiled(keras_loss, expected, tmp_path, rng):
    theirs = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="sigmoid")])
    theirs.compile(optimizer="adam", loss=keras_loss if isinstance(keras_loss, str) else
                   keras_loss(), metrics=["mae", keras.metrics.BinaryAccuracy(threshold=0.3)])
    theirs.save(tmp_path / "k.keras")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # compiled: no "loaded uncompiled" warning
        ours = models.load_model(tmp_path / "k.keras")
    assert type(ours.loss) is type(expected)
    assert ours.loss.get_config() == {**expected.get_config(), "name": ours.loss.name}
    assert ours.metrics_names == ["loss", "mae", "binary_accuracy"]
    assert ours.metrics[1].threshold == pytest.approx(0.3)
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 2, (16, 3)).astype(np.float32)
    if isinstance(expected, losses.CategoricalCrossentropy):
        y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 16)]
    got = ours.evaluate(x, y, verbose=0, return_dict=True)
    want = theirs.evaluate(x, y, verbose=0, return_dict=True)
    for name, value in want.items():
        assert got[name] == pytest.approx(value, rel=1e-5), name


@pytest.mark.parametrize("y", [
    np.array([0, 2, 1, 1, 0]),                                     # sparse labels
    np.eye(3)[[0, 2, 1, 1, 0]],                                    # one-hot
    np.array([[0.0], [1.0], [1.0], [0.0], [1.0]]),                 # binary (N, 1)
    np.array([0.2, 0.9, 0.6, 0.4, 0.5]),                           # soft binary labels, rounded
], ids=["sparse", "one-hot", "binary-column", "soft"])
def test_class_weight_maps_to_the_sample_weights_keras_uses(y):
    class_weight = {0: 2.0, 1: 0.5, 2: 3.0}
    ours = check_sample_weights(None, class_weight, y, len(y), "fit")
    np.testing.assert_allclose(ours, class_weight_to_sample_weights(y, class_weight))


def test_class_weight_trains_as_those_sample_weights_and_not_the_validation(rng):
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.float32)
    class_weight = {0: 3.0, 1: 0.5}
    histories, models_ = [], []
    for kwargs in ({"class_weight": class_weight},
                   {"sample_weight": np.where(y == 1, 0.5, 3.0)}):
        minicnn.set_random_seed(2)
        model = dense_model(1, "sigmoid")
        model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
        histories.append(model.fit(x, y, epochs=2, batch_size=8, verbose=0,
                                   validation_split=0.25, **kwargs).history)
        models_.append(model)
    # Training differs only by the validation weights: class weights never weight it, sample
    # weights do (as in Keras). The training histories are the same.
    assert histories[0]["loss"] == histories[1]["loss"]
    unweighted_val = models_[0].evaluate(x[30:], y[30:], verbose=0)[0]
    assert histories[0]["val_loss"][-1] == pytest.approx(unweighted_val, rel=1e-6)
    assert histories[1]["val_loss"][-1] != pytest.approx(unweighted_val, rel=1e-3)
    with pytest.raises(ValueError, match="sample_weight or class_weight, not both"):
        models_[0].fit(x, y, class_weight=class_weight, sample_weight=np.ones(40), verbose=0)


def test_metrics_ignore_sample_weights_and_weighted_metrics_use_them(rng):
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 3, 16)
    model = dense_model(3, "softmax")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"], weighted_metrics=["accuracy"])
    weights = np.where(np.arange(16) < 8, 1.0, 0.0)
    logs = model.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    right = (model.predict(x, verbose=0).argmax(1) == y).astype(float)
    assert logs["accuracy"] == pytest.approx(right.mean())
    assert logs["weighted_accuracy"] == pytest.approx(right[:8].mean())


def test_each_loss_learns_its_task(rng):
    x = rng.normal(size=(256, 4)).astype(np.float32)
    minicnn.set_random_seed(0)
    classifier = dense_model(1, "sigmoid")
    classifier.compile(optimizer=minicnn.optimizers.Adam(0.05), loss="binary_crossentropy",
                       metrics=["accuracy"])
    history = classifier.fit(x, (x[:, 0] - x[:, 1] > 0), epochs=15, batch_size=32, verbose=0)
    assert history.history["accuracy"][-1] > 0.9
    targets = x @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.3
    for loss in ("mse", "mae", "huber"):
        minicnn.set_random_seed(0)
        regressor = models.Sequential([layers.Dense(1, input_shape=(4,))])
        regressor.compile(optimizer=minicnn.optimizers.Adam(0.05), loss=loss)
        history = regressor.fit(x, targets, epochs=20, batch_size=32, verbose=0).history["loss"]
        assert history[-1] < 0.1 * history[0], loss


# -- targets checked against the loss, with messages ------------------------------------------
def compiled(model, loss):
    model.compile(optimizer="adam", loss=loss)
    return model


@pytest.mark.parametrize("model, loss, y, pattern", [
    (dense_model(10, "sigmoid"), "binary_crossentropy", np.arange(8) % 10,
     r"binary_crossentropy compares y with the model's output \(None, 10\), so y must have "
     r"shape \(N, 10\); got \(8,\)\. For one label per sample among 10 classes use "
     r"loss='sparse_categorical_crossentropy'"),
    (dense_model(1, "sigmoid"), "binary_crossentropy", np.eye(2)[np.arange(8) % 2],
     r"These labels look one-hot over 2 classes: pass y\[:, 1\]"),
    (dense_model(1, "sigmoid"), "binary_crossentropy", np.arange(8) % 3,
     r"labels in \[0, 1\].*got 2.*sparse_categorical_crossentropy"),
    (dense_model(1, "sigmoid"), "binary_crossentropy", np.full(8, np.nan),
     r"y contains NaN or inf"),
    (dense_model(2), "mse", np.zeros((8, 3)), r"mean_squared_error compares y with the "
     r"model's output \(None, 2\), so y must have shape \(N, 2\); got \(8, 3\)"),
    (dense_model(10), "mae", np.arange(8) % 10, r"These look like class labels: for "
     r"classification among 10 classes use loss='sparse_categorical_crossentropy'"),
    (image_model(), "mse", np.zeros((8, 4, 4)), None),  # (N, 4, 4) fits (None, 4, 4, 1)
    (image_model(), "huber", np.zeros((8, 16)), r"huber_loss compares y with the model's "
     r"output \(None, 4, 4, 1\), so y must have shape \(N, 4, 4, 1\)"),
    (dense_model(1, "sigmoid"), "sparse_categorical_crossentropy", np.arange(8) % 2,
     r"labels must be in \[0, 0\].*A single output unit is a binary classifier: use "
     r"loss='binary_crossentropy'"),
], ids=["bce-class-labels", "bce-one-hot", "bce-not-binary", "bce-nan", "mse-shape",
        "mae-class-labels", "image-target-fits", "image-target-shape", "scce-one-unit"])
def test_targets_are_checked_against_the_loss(model, loss, y, pattern):
    model = compiled(model, loss)
    x = np.zeros((8, *model.input_shape[1:]), np.float32)
    if pattern is None:
        model.evaluate(x, y, verbose=0)
        return
    with pytest.raises(ValueError, match=pattern):
        model.fit(x, y, verbose=0)


@pytest.mark.parametrize("model, loss, pattern", [
    (dense_model(10), "sparse_categorical_crossentropy",
     r"output layer's activation is 'linear', but the loss sparse_categorical_crossentropy "
     r"expects probabilities.*SparseCategoricalCrossentropy\(from_logits=True\)"),
    (dense_model(1, "relu"), "binary_crossentropy", r"activation='sigmoid' on the last layer"),
    (dense_model(1, "softmax"), "binary_crossentropy", r"softmax over one unit, which always "
     r"outputs 1.0"),
    (dense_model(10, "softmax"), "sparse_categorical_crossentropy", None),
    (dense_model(10), losses.SparseCategoricalCrossentropy(from_logits=True), None),
    (dense_model(1, "sigmoid"), "binary_crossentropy", None),
], ids=["linear-scce", "relu-bce", "softmax-one-unit", "softmax-ok", "logits-ok", "sigmoid-ok"])
def test_a_probability_loss_behind_a_non_probability_output_warns(model, loss, pattern):
    model = compiled(model, loss)
    x = np.zeros((4, 4), np.float32)
    y = np.zeros(4, int)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.evaluate(x, y, verbose=0)
    messages = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if pattern is None:
        assert messages == []
    else:
        assert len(messages) == 1 and __import__("re").search(pattern, messages[0]), messages


def test_binary_accuracy_on_logits_warns_as_keras_counts_at_half(rng):
    model = compiled(dense_model(1), losses.BinaryCrossentropy(from_logits=True))
    model.compile(optimizer="adam", loss=losses.BinaryCrossentropy(from_logits=True),
                  metrics=["accuracy", metrics.BinaryAccuracy(threshold=0.0)])
    with pytest.warns(UserWarning, match=r"BinaryAccuracy\(threshold=0.0\)"):
        model.evaluate(rng.normal(size=(4, 4)), np.array([0, 1, 1, 0]), verbose=0)
