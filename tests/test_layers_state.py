"""State across calls for issue 10's layers: BatchNormalization over two threads trains as on
one, Dropout's masks repeat per seed and differ per shard, fit twice, freeze and unfreeze a
BatchNormalization layer (Keras 3: frozen means inference mode), save then continue, layers
reused in a new model, summary() rows, and keras.io's MNIST convnet as published.
"""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras
import numpy as np
import pytest

import minicnn
from minicnn import graph, layers, models, optimizers, parallel

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(autouse=True)
def split_small_models(monkeypatch):
    """These small models are below the work a split pays off for; split them anyway."""
    monkeypatch.setattr(parallel, "MIN_FLOPS_PER_SHARD", 0)


def bn_model(dtype=None, dropout=0.0, threads=1):
    model = models.Sequential([
        layers.Input(shape=(10, 10, 2), dtype=dtype),
        layers.Conv2D(6, 3, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.AveragePooling2D(2),
        layers.Conv2D(8, 3),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
        layers.GlobalAveragePooling2D(),
        *([layers.Dropout(dropout)] if dropout else []),
        layers.Dense(12),
        layers.BatchNormalization(),
        layers.LeakyReLU(),
        layers.Dense(3, activation="softmax"),
    ], dtype=dtype)
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.strategy.threads = threads
    return model


def data(rng, n=96, dtype="float32"):
    y = rng.integers(0, 3, n)
    x = rng.random((n, 10, 10, 2)).astype(dtype) * 0.5
    for i, label in enumerate(y):
        x[i, label * 3:label * 3 + 3, :, label % 2] += 1.5
    return x, y


def train(seed, x, y, epochs=2, **model_args):
    minicnn.set_random_seed(seed)
    model = bn_model(**model_args)
    history = model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    return model, history.history


def bn_layers(model):
    return [layer for layer in model.layers if isinstance(layer, layers.BatchNormalization)]


# --------------------------------------------------------------------------- threads


@pytest.mark.parametrize("dtype, rtol", [("float32", 2e-4), ("float64", 1e-10)])
def test_batchnorm_split_over_two_threads_trains_as_on_one(dtype, rtol, rng):
    x, y = data(rng, dtype=dtype)
    one, h1 = train(3, x, y, dtype=dtype, threads=1)
    two, h2 = train(3, x, y, dtype=dtype, threads=2)
    assert two.strategy.shards_for(32, two.flops()) == 2  # the batches really were split
    np.testing.assert_allclose(h2["loss"], h1["loss"], rtol=rtol)
    assert h2["accuracy"] == h1["accuracy"]
    for w1, w2 in zip(one.get_weights(), two.get_weights(), strict=True):  # moving stats too
        np.testing.assert_allclose(w2, w1, rtol=rtol, atol=rtol * float(np.abs(w1).max()))
    np.testing.assert_allclose(two.predict(x, verbose=0), one.predict(x, verbose=0),
                               rtol=rtol, atol=rtol)


def test_per_shard_statistics_would_train_differently(rng, monkeypatch):
    """The control for the test above: without the allreduce each shard normalises with its
    own half-batch statistics, and the same comparison fails by far more than rounding."""
    x, y = data(rng, dtype="float64")
    one, _ = train(3, x, y, dtype="float64", threads=1)
    monkeypatch.setattr(graph.Context, "allreduce", lambda self, array: array)
    two, _ = train(3, x, y, dtype="float64", threads=2)
    differences = [float(np.abs(a - b).max()) for a, b in zip(one.get_weights(),
                                                               two.get_weights(), strict=True)]
    assert max(differences) > 1e-4


def test_moving_statistics_are_updated_once_per_step(rng):
    """Two shards, one update: after one step the moving mean is momentum-blended once with
    the whole batch's mean (an update per shard would blend twice)."""
    layer = layers.BatchNormalization(momentum=0.5, dtype="float64")
    model = models.Sequential([layers.Input(shape=(4,), dtype="float64"), layer,
                               layers.Dense(2, dtype="float64")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    model.strategy.threads = 2
    x = rng.standard_normal((32, 4)) * 2 + 3
    y_pred, tape = model.forward(x, training=True)
    assert len(tape.tapes) == 2
    tape.release()
    np.testing.assert_allclose(layer.params["moving_mean"], 0.5 * x.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(layer.params["moving_variance"], 0.5 + 0.5 * x.var(axis=0),
                               rtol=1e-12)


# --------------------------------------------------------------------------- Dropout's masks


def test_dropout_masks_repeat_per_seed_and_change_with_it(rng):
    x, y = data(rng)
    runs = [train(seed, x, y, dropout=0.5, threads=threads)
            for seed, threads in ((7, 1), (7, 1), (8, 1), (7, 2), (7, 2))]
    (a, ha), (b, hb), (c, hc), (d, hd), (e, he) = runs
    assert ha == hb and hd == he
    for w1, w2 in zip(a.get_weights(), b.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)
    for w1, w2 in zip(d.get_weights(), e.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)
    assert hc["loss"] != ha["loss"]


def test_dropout_shards_of_a_batch_draw_different_masks():
    model = models.Sequential([layers.Input(shape=(64,)), layers.Dropout(0.5)])
    model.strategy.threads = 2
    x = np.ones((16, 64), np.float32)
    minicnn.set_random_seed(1)
    y, tape = model.forward(x, training=True)
    assert len(tape.tapes) == 2
    tape.release()
    halves = y[:8] != 0, y[8:] != 0
    assert not np.array_equal(*halves)
    assert all(abs(h.mean() - 0.5) < 0.1 for h in halves)
    assert (y[~(y == 0)] == 2.0).all()
    model.strategy.threads = 1
    np.testing.assert_array_equal(model.predict(x, verbose=0), x)  # identity at inference


def test_dropout_seed_argument_changes_the_masks():
    outputs = {}
    for seed in (None, 1, 2):
        minicnn.set_random_seed(0)
        model = models.Sequential([layers.Input(shape=(200,)), layers.Dropout(0.5, seed=seed)])
        y, tape = model.forward(np.ones((4, 200), np.float32), training=True)
        tape.release()
        outputs[seed] = y.copy()
    assert not np.array_equal(outputs[1], outputs[2])
    assert not np.array_equal(outputs[None], outputs[1])
    minicnn.set_random_seed(0)
    again = models.Sequential([layers.Input(shape=(200,)), layers.Dropout(0.5, seed=1)])
    y, tape = again.forward(np.ones((4, 200), np.float32), training=True)
    tape.release()
    np.testing.assert_array_equal(y, outputs[1])


# --------------------------------------------------------------------------- fit twice, freeze


def test_fit_twice_continues_as_one_fit(rng):
    x, y = data(rng)
    once, _ = train(5, x, y, epochs=2, dropout=0.3)
    minicnn.set_random_seed(5)
    twice = bn_model(dropout=0.3)
    twice.fit(x, y, epochs=1, batch_size=32, verbose=0)
    twice.fit(x, y, epochs=1, batch_size=32, verbose=0)
    for w1, w2 in zip(once.get_weights(), twice.get_weights(), strict=True):
        np.testing.assert_array_equal(w1, w2)


def test_frozen_batchnorm_runs_in_inference_mode_and_keeps_its_state(rng):
    x, y = data(rng)
    model, _ = train(6, x, y, epochs=1)
    frozen = bn_layers(model)[0]
    frozen.trainable = False
    kept = frozen.get_weights()
    assert len(model.non_trainable_weights) == 2 + 4 + 2  # the other layers' moving stats
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    for got, want in zip(frozen.get_weights(), kept, strict=True):
        np.testing.assert_array_equal(got, want)  # gamma, beta and the moving statistics
    # In a training pass the frozen layer normalises with its moving statistics, as Keras 3.
    probe = models.Sequential([layers.Input(shape=(10, 10, 6)), frozen])
    sample = rng.standard_normal((8, 10, 10, 6)).astype(np.float32)
    y_train, tape = probe.forward(sample, training=True)
    y_train = y_train.copy()
    tape.release()
    np.testing.assert_array_equal(y_train, probe.predict(sample, verbose=0))
    frozen.trainable = True  # unfrozen: it learns and tracks the batches again
    model.fit(x, y, epochs=1, batch_size=32, verbose=0)
    assert not np.array_equal(frozen.get_weights()[2], kept[2])
    assert not np.array_equal(frozen.get_weights()[0], kept[0])


def test_keras_3_also_runs_a_frozen_batchnorm_in_inference_mode(rng):
    x = (rng.standard_normal((16, 5)) * 2 + 1).astype(np.float32)
    theirs, ours = keras.layers.BatchNormalization(), layers.BatchNormalization()
    theirs.build((None, 5))
    ours.build((None, 5))
    theirs.trainable = ours.trainable = False
    for layer in (theirs, ours):
        trained = np.asarray(layer(x, training=True))
        np.testing.assert_allclose(trained, np.asarray(layer(x, training=False)), rtol=1e-6)
        np.testing.assert_allclose(trained, x / np.sqrt(1 + 1e-3), rtol=1e-6)
        assert (np.asarray(layer.get_weights()[2]) == 0).all()  # moving mean untouched


# --------------------------------------------------------------------------- save, reuse


def test_save_then_continue_equals_uninterrupted(rng, tmp_path):
    x, y = data(rng)
    results = []
    for save in (False, True):
        model, _ = train(9, x, y, epochs=1, dropout=0.25)
        if save:
            model.save(tmp_path / "bn.npz")
            model = models.load_model(tmp_path / "bn.npz")
            expected = bn_model(dropout=0.25).layers
            assert [type(a) for a in model.layers] == [type(b) for b in expected]
        minicnn.set_random_seed(10)
        model.fit(x, y, epochs=1, batch_size=32, verbose=0)
        results.append((model.get_weights(), model.predict(x, verbose=0)))
    (w1, p1), (w2, p2) = results
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(p1, p2)


def test_every_new_layer_saves_and_loads_with_its_configuration(rng, tmp_path):
    model = models.Sequential([
        layers.InputLayer(shape=(8, 8, 3), name="pixels"),
        layers.Rescaling(1 / 255, offset=-0.5),
        layers.Conv2D(4, 3, padding="same"),
        layers.BatchNormalization(momentum=0.8, epsilon=1e-4, center=False),
        layers.ReLU(max_value=6.0, negative_slope=0.1, threshold=0.2),
        layers.AvgPool2D(pool_size=3, strides=1, padding="same"),
        layers.MaxPool2D(),
        layers.Dropout(0.3, noise_shape=(None, 1, 1, 4), seed=3),
        layers.GlobalMaxPooling2D(keepdims=True),
        layers.Reshape((-1,)),
        layers.Dense(6, activation="gelu"),
        layers.LeakyReLU(negative_slope=0.05),
        layers.Reshape((2, 3)),
        layers.Softmax(axis=1),
        layers.Flatten(),
        layers.Dense(4, activation="swish"),
        layers.Activation("hard_swish"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = rng.integers(0, 256, (12, 8, 8, 3)).astype(np.float32)
    minicnn.set_random_seed(0)
    model.fit(x, rng.integers(0, 4, 12), epochs=1, batch_size=4, verbose=0)
    model.save(tmp_path / "all.npz")
    loaded = models.load_model(tmp_path / "all.npz")
    assert [layer.get_config() for layer in loaded.layers] == [
        layer.get_config() for layer in model.layers]
    for a, b in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_a_trained_batchnorm_reused_in_a_new_model_keeps_its_statistics(rng):
    x, y = data(rng)
    model, _ = train(11, x, y, epochs=1)
    conv, bn = model.layers[0], model.layers[1]
    kept = bn.get_weights()
    reuse = models.Sequential([layers.Input(shape=(10, 10, 2)), conv, bn, layers.Flatten()])
    for a, b in zip(bn.get_weights(), kept, strict=True):
        np.testing.assert_array_equal(a, b)  # not re-initialised
    np.testing.assert_allclose(reuse.predict(x[:4], verbose=0).reshape(4, 10, 10, 6),
                               bn(conv(x[:4])), rtol=1e-6)


# --------------------------------------------------------------------------- summary


def test_summary_shows_parameters_and_flops_of_the_new_layers():
    lines = []
    bn_model(dropout=0.5).summary(print_fn=lines.append)
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:5]]
            for line in lines if line.startswith("│")}
    assert rows["batch_normalization (BatchNormalization)"] == ["(None, 10, 10, 6)", "24",
                                                                "1,200"]
    assert rows["average_pooling2d (AveragePooling2D)"] == ["(None, 5, 5, 6)", "0", "600"]
    assert rows["global_average_pooling2d (GlobalAveragePooling2D)"] == ["(None, 8)", "0", "72"]
    assert rows["dropout (Dropout)"] == ["(None, 8)", "0", "0"]
    assert rows["leaky_re_lu (LeakyReLU)"][:2] == ["(None, 12)", "0"]
    assert any(line.strip() == "Non-trainable params: 52" for line in lines)  # moving stats


@pytest.fixture(autouse=True)
def fresh_names(monkeypatch):
    """Automatic layer names start from 0 in every test (summary rows above name them)."""
    from minicnn.layers import base
    monkeypatch.setattr(base, "_name_counts", type(base._name_counts)(int))


# --------------------------------------------------------------------------- keras.io


def test_keras_io_mnist_convnet_as_published_trains(mnist_subset):
    """keras.io's "Simple MNIST convnet" model and compile call, with only the import changed
    (keras.utils.to_categorical comes with the namespace work; one-hot by hand here)."""
    (x_train, y_train), _ = mnist_subset
    keras_ns = minicnn  # `import minicnn as keras` (the namespace is issue 10 item 1)
    model = keras_ns.models.Sequential([
        keras_ns.layers.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(10, activation="softmax"),
    ])
    assert model.count_params() == 34826  # keras.io's summary: Total params: 34,826
    model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
    minicnn.set_random_seed(0)
    history = model.fit(x_train, np.eye(10, dtype=np.float32)[y_train], batch_size=128,
                        epochs=3, validation_split=0.1, verbose=0)
    assert history.history["val_accuracy"][-1] > 0.8
