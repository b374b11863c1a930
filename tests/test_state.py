"""State across calls: fit twice, freeze then fit, unfreeze, save then continue, layers reused in
a new model, numbers of NumPy types in every argument. The regressions of issue 9's three bugs
are here: the freeze-after-fit heap corruption, re-initialised reused layers, np.int64 configs.
"""

import json

import numpy as np
import pytest

import minicnn
from minicnn import callbacks, layers, models, optimizers


def conv_model(optimizer="adam"):
    model = models.Sequential([
        layers.Conv2D(5, 5, activation="relu", input_shape=(12, 12, 1)),
        layers.MaxPooling2D(2),
        layers.Conv2D(8, 3, activation="relu"),
        layers.Flatten(),
        layers.Dense(16, activation="relu"),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    return model


def data(rng, n=64):
    y = rng.integers(0, 3, n)
    x = rng.random((n, 12, 12, 1)).astype(np.float32) * 0.3
    for i, label in enumerate(y):
        x[i, label * 4:label * 4 + 3] += 1.0
    return x, y


@pytest.mark.parametrize("frozen", [[0], [2], [0, 4], [5]])
def test_freeze_after_fit_then_fit_again(frozen, rng):
    """Regression: freezing a layer after training made the fused Adam kernel update a slot of
    another shape past its end (segfault / 'corrupted size vs. prev_size'), or zip() fail."""
    x, y = data(rng)
    minicnn.set_random_seed(0)
    model = conv_model()
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    slots_before = {id(w): [s.copy() for s in model.optimizer.get_slots(w)]
                    for w in model.weights}
    for i in frozen:
        model.layers[i].trainable = False
    kept = [model.layers[i].get_weights() for i in frozen]
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    for i, weights in zip(frozen, kept, strict=True):
        for got, want in zip(model.layers[i].get_weights(), weights, strict=True):
            np.testing.assert_array_equal(got, want)  # frozen: untouched
        for w in model.layers[i].weights:  # and so are their moments
            for got, want in zip(model.optimizer.get_slots(w), slots_before[id(w)],
                                 strict=True):
                np.testing.assert_array_equal(got, want)
    trained = [w for w in model.trainable_weights]
    assert trained and all(model.optimizer.get_slots(w) is not None for w in trained)
    for i in frozen:  # unfreeze: training continues with each layer's own moments
        model.layers[i].trainable = True
    model.fit(x, y, epochs=1, batch_size=16, verbose=0)
    for w in model.weights:
        m, v = model.optimizer.get_slots(w)
        assert m.shape == v.shape == w.shape


def test_frozen_layers_save_load_and_continue_as_uninterrupted(rng, tmp_path):
    x, y = data(rng)
    runs = []
    for save in (False, True):
        minicnn.set_random_seed(1)
        model = conv_model()
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        model.layers[2].trainable = False
        minicnn.set_random_seed(2)
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        if save:
            model.save(tmp_path / "frozen.npz")
            model = models.load_model(tmp_path / "frozen.npz")
            model.layers[2].trainable = False  # as in Keras, trainable is the user's to set
        model.layers[2].trainable = True
        minicnn.set_random_seed(3)
        model.fit(x, y, epochs=1, batch_size=16, verbose=0)
        runs.append(model.get_weights())
    for a, b in zip(*runs, strict=True):
        np.testing.assert_array_equal(a, b)


def test_trainable_false_at_construction_and_summary_counts(rng):
    model = models.Sequential([layers.Conv2D(4, 3, input_shape=(8, 8, 1), trainable=False),
                               layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy")
    kernel = model.layers[0].kernel.copy()
    model.fit(rng.random((16, 8, 8, 1)), rng.integers(0, 2, 16), verbose=0)
    np.testing.assert_array_equal(model.layers[0].kernel, kernel)
    lines = []
    model.summary(print_fn=lines.append)
    assert " Non-trainable params: 40" in lines and " Trainable params: 290" in lines


def test_fit_twice_continues_from_where_it_stopped(rng):
    x, y = data(rng)
    minicnn.set_random_seed(4)
    once = conv_model()
    once.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    minicnn.set_random_seed(4)
    twice = conv_model()
    twice.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    twice.fit(x, y, epochs=1, batch_size=16, verbose=0, shuffle=False)
    assert twice.optimizer.iterations == once.optimizer.iterations == 8
    for a, b in zip(once.get_weights(), twice.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_model_from_trained_layers_keeps_their_weights(rng):
    """Regression: Sequential(trained.layers[:-1] + [Dense(10)]) re-initialised the trained
    layers (accuracy 0.81 -> 0.26). As in Keras, built layers are shared, weights and all."""
    x, y = data(rng)
    minicnn.set_random_seed(5)
    trained = conv_model()
    trained.fit(x, y, epochs=3, batch_size=16, verbose=0)
    before = trained.get_weights()
    features = models.Sequential(trained.layers[:-1])
    head = models.Sequential(trained.layers[:-1] + [layers.Dense(4, activation="softmax")])
    for new in (features, head):
        for layer, old in zip(new.layers[:5], trained.layers[:5], strict=True):
            assert layer is old
    np.testing.assert_array_equal(head.layers[-2].kernel, before[-4])
    expected = trained.layer_outputs(x, [trained.layers[-2].name])[trained.layers[-2].name]
    np.testing.assert_array_equal(features.predict(x, verbose=0), expected)
    head.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    head.fit(x, np.minimum(y, 3), epochs=1, verbose=0)  # shared: training moves trained's too
    assert not np.array_equal(trained.layers[0].kernel, before[0])


def test_add_a_trained_layer_keeps_its_weights_and_checks_its_shape(rng):
    x, y = data(rng)
    trained = conv_model()
    trained.fit(x, y, epochs=1, verbose=0)
    model = models.Sequential()
    for layer in trained.layers:
        model.add(layer)
    assert model.built and model.input_shape == (None, 12, 12, 1)
    np.testing.assert_array_equal(model.predict(x, verbose=0), trained.predict(x, verbose=0))
    other = models.Sequential([layers.Flatten(input_shape=(5, 5, 1))])
    with pytest.raises(ValueError, match=r"was built for inputs \(None, 16\) but is called on "
                                         r"\(None, 25\)"):
        other.add(trained.layers[-1])
    with pytest.raises(ValueError, match="already in this model"):
        model.add(model.layers[0])


def test_duplicate_layer_names_are_refused():
    with pytest.raises(ValueError, match="already has a layer named 'same'"):
        models.Sequential([layers.Flatten(name="same", input_shape=(3,)),
                           layers.Dense(2, name="same")])


def test_pop_and_get_layer(rng):
    model = conv_model()
    last = model.pop()
    assert last.name not in [layer.name for layer in model.layers]
    assert model.output_shape == (None, 16)
    assert model.get_layer(index=0) is model.layers[0]
    assert model.get_layer(model.layers[1].name) is model.layers[1]
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        model.get_layer("nope")


def test_numpy_numbers_everywhere_and_configs_that_save(rng, tmp_path):
    """Regression: Conv2D(np.int64(4), 3) then save failed ('int64 is not JSON
    serializable'); EarlyStopping(patience=np.int64(2)), Adam(beta_1=np.float32(0.9)) and
    SGD(learning_rate=np.int64(1)) were refused."""
    model = models.Sequential([
        layers.Conv2D(np.int64(4), np.int32(3), strides=np.int64(1), input_shape=(8, 8, 1),
                      activation="relu"),
        layers.MaxPooling2D(np.int64(2)),
        layers.Flatten(),
        layers.Dense(np.int16(3), activation="softmax"),
    ])
    model.compile(optimizer=optimizers.Adam(learning_rate=np.float32(1e-3),
                                            beta_1=np.float32(0.9)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    stop = callbacks.EarlyStopping(monitor="loss", patience=np.int64(2))
    model.fit(rng.random((16, 8, 8, 1)), rng.integers(0, 3, 16), epochs=np.int64(2),
              batch_size=np.int64(8), verbose=0, callbacks=[stop])
    model.save(tmp_path / "np.npz")
    loaded = models.load_model(tmp_path / "np.npz")
    assert loaded.get_config() == model.get_config()
    json.dumps(model.get_config())
    sgd = optimizers.SGD(learning_rate=np.int64(1))
    assert sgd.learning_rate == 1.0
    for bad in (lambda: callbacks.EarlyStopping(patience=True),
                lambda: model.fit(np.ones((2, 8, 8, 1)), np.ones(2), epochs=True)):
        with pytest.raises((TypeError, ValueError), match="got bool True"):
            bad()
