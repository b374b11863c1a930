"""Sequential: the Keras-style API, determinism, Keras weight layout, whole-model gradients."""

import io
import re

import numpy as np
import pytest
from conftest import distinct_values

import minicnn
from minicnn import callbacks, gradcheck, layers, losses, models, optimizers


def tutorial_model(dtype=None):
    return models.Sequential([
        layers.Conv2D(filters=25, kernel_size=(3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(filters=64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(filters=64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], dtype=dtype)


def small_model(dtype=None, loss="sparse_categorical_crossentropy", optimizer=None):
    model = models.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ], dtype=dtype)
    model.compile(optimizer=optimizer or optimizers.Adam(learning_rate=0.01), loss=loss,
                  metrics=["accuracy"])
    return model


def toy_data(rng, n=96):
    """Three classes that a tiny CNN can separate: bright top, bright middle, bright bottom."""
    y = rng.integers(0, 3, n)
    x = rng.random((n, 8, 8, 1)).astype(np.float32) * 0.3
    for i, label in enumerate(y):
        x[i, label * 3:label * 3 + 2] += 1.0
    return x, y


def test_tutorial_summary_counts_parameters_and_flops():
    model = tutorial_model()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert model.count_params() == 56_452
    assert "Total params: 56,452" in text
    assert "(None, 26, 26, 25)" in text and "(None, 1, 1, 64)" in text
    assert "4,462,024" in text  # 2 * multiply-adds per image, conv2 = 3,484,800 of it
    assert "3,484,800" in text


def test_fit_learns_and_history_has_keras_keys(rng):
    minicnn.set_random_seed(3)
    x, y = toy_data(rng)
    model = small_model()
    history = model.fit(x, y, epochs=8, batch_size=16, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(v) == 8 for v in history.history.values())
    assert history.epoch == list(range(8))
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]
    loss, accuracy = model.evaluate(x, y, verbose=0)
    assert accuracy > 0.9
    probs = model.predict(x)
    assert probs.dtype == np.float32 and probs.shape == (len(x), 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1, rtol=1e-5)
    manual = -np.mean(np.log(np.clip(probs[np.arange(len(y)), y], 1e-7, 1)))
    assert loss == pytest.approx(manual, rel=1e-4)
    assert accuracy == pytest.approx(np.mean(probs.argmax(1) == y))


def test_validation_split_takes_the_last_fraction_before_shuffling(rng):
    x, y = toy_data(rng, 40)
    results = []
    for kwargs in ({"validation_split": 0.25}, {"validation_data": (x[30:], y[30:])}):
        minicnn.set_random_seed(5)
        model = small_model()
        train = (x, y) if "validation_split" in kwargs else (x[:30], y[:30])
        results.append(model.fit(*train, epochs=2, batch_size=8, verbose=0, **kwargs).history)
    assert results[0] == results[1]


def test_same_seed_gives_bit_identical_training(rng):
    x, y = toy_data(rng)
    weights = []
    for _ in range(2):
        minicnn.set_random_seed(11)
        model = small_model()
        model.fit(x, y, epochs=2, batch_size=10, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
    minicnn.set_random_seed(12)
    other = small_model()
    other.fit(x, y, epochs=2, batch_size=10, verbose=0)
    assert not np.array_equal(other.get_weights()[0], weights[0][0])


def keras_semantics_forward(weights, x):
    """The tutorial model written independently with plain loops in Keras's conventions:
    kernel[i, j, c, f] multiplies x[n, oh + i, ow + j, c]; Flatten in (h, w, c) order."""
    def conv_relu(x, kernel, bias):
        kh, kw, _, filters = kernel.shape
        n, h, w, _ = x.shape
        out = np.zeros((n, h - kh + 1, w - kw + 1, filters))
        for i in range(kh):
            for j in range(kw):
                out += np.einsum("nhwc,cf->nhwf", x[:, i:i + out.shape[1], j:j + out.shape[2]],
                                 kernel[i, j])
        return np.maximum(out + bias, 0)

    def pool(x):
        n, h, w, c = x.shape
        h2, w2 = h // 2, w // 2
        return x[:, :2 * h2, :2 * w2].reshape(n, h2, 2, w2, 2, c).max(axis=(2, 4))

    w = [np.asarray(a, np.float64) for a in weights]
    x = pool(conv_relu(x, w[0], w[1]))
    x = pool(conv_relu(x, w[2], w[3]))
    x = pool(conv_relu(x, w[4], w[5]))
    x = x.reshape(len(x), -1)
    x = np.maximum(x @ w[6] + w[7], 0)
    z = x @ w[8] + w[9]
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_weights_in_keras_layout_give_keras_predictions(rng):
    model = tutorial_model()
    # Keras's get_weights order and shapes for this architecture.
    shapes = [(3, 3, 1, 25), (25,), (3, 3, 25, 64), (64,), (3, 3, 64, 64), (64,),
              (64, 64), (64,), (64, 10), (10,)]
    foreign = [rng.normal(scale=0.3, size=s).astype(np.float32) for s in shapes]
    model.set_weights(foreign)
    assert [w.shape for w in model.get_weights()] == shapes
    x = rng.random((6, 28, 28, 1)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x), keras_semantics_forward(foreign, x),
                               rtol=2e-4, atol=1e-6)


def test_whole_tutorial_model_gradcheck_through_the_loss(rng):
    model = tutorial_model(dtype="float64")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = distinct_values((2, 28, 28, 1), rng, 0.0, 1.0)
    errors = gradcheck(model, x, y=np.array([3, 7]), num_checks=25)
    assert len(errors) == 11  # the input and ten weight arrays
    assert max(errors.values()) < 1e-6, errors


def test_whole_model_gradcheck_strided_same_padding_categorical(rng):
    model = models.Sequential([
        layers.Conv2D(3, 3, strides=2, padding="same", activation="relu", input_shape=(9, 7, 2)),
        layers.MaxPooling2D(2, padding="same"),
        layers.Conv2D(4, (2, 3), padding="same", activation="tanh"),
        layers.Flatten(),
        layers.Dense(5),
        layers.Softmax(),
    ], dtype="float64")
    model.compile(loss="categorical_crossentropy")
    x = distinct_values((3, 9, 7, 2), rng)
    errors = gradcheck(model, x, y=np.eye(5)[[0, 2, 4]], num_checks=30)
    assert max(errors.values()) < 1e-6, errors


def test_float64_model_runs_in_float64_and_uint8_input_is_accepted(rng):
    model = small_model(dtype="float64")
    x = (rng.random((12, 8, 8, 1)) * 255).astype(np.uint8)
    assert model.predict(x).dtype == np.float64
    model32 = small_model()
    out = model32.predict(x)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, model32.predict(x.astype(np.float32)))


def test_predict_does_not_depend_on_batch_size(rng):
    model = small_model()
    x, _ = toy_data(rng, 37)
    np.testing.assert_allclose(model.predict(x, batch_size=5), model.predict(x, batch_size=37),
                               rtol=1e-6, atol=1e-7)


def test_set_weights_copies_a_model_exactly(rng):
    a, b = small_model(), small_model()
    b.set_weights(a.get_weights())
    x, _ = toy_data(rng, 10)
    np.testing.assert_array_equal(a.predict(x), b.predict(x))


def test_unbuilt_model_builds_from_data(rng):
    model = models.Sequential([layers.Flatten(), layers.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = toy_data(rng, 20)
    model.fit(x, y, verbose=0)
    assert model.input_shape == (None, 8, 8, 1) and model.count_params() == 64 * 3 + 3
    assert model.output_shape == (None, 3)


def test_sgd_and_categorical_train(rng):
    x, y = toy_data(rng)
    minicnn.set_random_seed(0)
    model = small_model(loss="categorical_crossentropy",
                        optimizer=optimizers.SGD(learning_rate=0.1, momentum=0.9))
    history = model.fit(x, np.eye(3)[y], epochs=6, batch_size=8, verbose=0)
    assert history.history["loss"][-1] < 0.5 * history.history["loss"][0]


def test_early_stopping_restores_best_weights(rng):
    x, y = toy_data(rng)
    minicnn.set_random_seed(1)
    model = small_model(optimizer=optimizers.SGD(learning_rate=3.0))  # erratic on purpose

    class Recorder(callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.weights = []

        def on_epoch_end(self, epoch, logs=None):
            self.weights.append(self.model.get_weights())

    stopper = callbacks.EarlyStopping(monitor="loss", patience=1, restore_best_weights=True)
    recorder = Recorder()
    history = model.fit(x, y, epochs=30, batch_size=8, verbose=0,
                        callbacks=[recorder, stopper])
    losses = history.history["loss"]
    assert stopper.stopped_epoch > 0 and len(losses) < 30
    best = int(np.argmin(losses))
    assert losses[-1] >= losses[best] and len(losses) == best + 2
    for got, want in zip(model.get_weights(), recorder.weights[best], strict=True):
        np.testing.assert_array_equal(got, want)


def test_model_checkpoint_writes_loadable_files(rng, tmp_path):
    x, y = toy_data(rng, 32)
    model = small_model()
    model.fit(x, y, epochs=2, verbose=0, callbacks=[
        callbacks.ModelCheckpoint(str(tmp_path / "ckpt-{epoch:02d}.npz"), monitor="loss")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-01.npz", "ckpt-02.npz"]
    loaded = models.load_model(tmp_path / "ckpt-02.npz")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_nan_loss_stops_training_with_a_clear_message(rng):
    x, y = toy_data(rng, 32)
    # A learning rate of 1e38 overflows float32 weights after one step; the next loss is nan.
    model = models.Sequential([layers.Flatten(input_shape=(8, 8, 1)), layers.Dense(3)])
    model.compile(optimizer=optimizers.SGD(learning_rate=1e38),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    before = model.get_weights()
    with np.errstate(all="ignore"), pytest.raises(
            models.LossNotFiniteError, match=r"loss became nan at epoch 1, batch 2") as info:
        model.fit(x, y, epochs=3, batch_size=4, verbose=0, shuffle=False)
    assert "learning rate" in str(info.value) and "restored" in str(info.value)
    assert info.value.history.history == {}  # no epoch finished
    # The weights (finite but huge after the one update) are put back to the epoch's start.
    for got, want in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(got, want)
    assert model.optimizer.iterations == 0
    assert np.isfinite(model.predict(x, verbose=0)).all()


def test_nan_in_a_later_epoch_leaves_the_model_as_the_last_finished_epoch(rng):
    x, y = toy_data(rng, 32)
    model = small_model()

    class Sabotage(callbacks.Callback):
        """Keeps the weights at each epoch's end; in epoch 3, after batch 1, blows them up."""

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_epoch_end(self, epoch, logs=None):
            self.kept = self.model.get_weights()

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 2 and batch == 0:
                self.model.layers[-1].params["kernel"][...] = np.inf

    saboteur = Sabotage()
    with np.errstate(all="ignore"), pytest.raises(models.LossNotFiniteError,
                                                  match="epoch 3, batch 2") as info:
        model.fit(x, y, epochs=5, batch_size=8, verbose=0, callbacks=[saboteur])
    assert len(info.value.history.history["loss"]) == 2
    for got, want in zip(model.get_weights(), saboteur.kept, strict=True):
        np.testing.assert_array_equal(got, want)  # the state at the end of epoch 2
    assert model.optimizer.iterations == 2 * 4
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)  # and training can go on from there


def test_progress_bar_keras_format_one_line_per_epoch(rng, capsys):
    x, y = toy_data(rng, 40)
    model = small_model()
    model.fit(x, y, epochs=2, batch_size=32, verbose=1)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Epoch 1/2" and out[2] == "Epoch 2/2" and len(out) == 4
    pattern = (r"^2/2 ━{20} \d+s \d+(ms|us|s)/step - accuracy: \d\.\d{4}(e[+-]\d+)? - "
               r"loss: \d\.\d{4}$")
    assert re.match(pattern, out[1]), out[1]
    model.fit(x, y, epochs=1, verbose=0)
    model.evaluate(x, y, verbose=0)
    assert capsys.readouterr().out == ""


def test_progress_bar_redraws_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = callbacks.Progbar(10, verbose=1, stream=stream, interval=0)
    for step in range(1, 10):
        bar.update(step, {"loss": 1.0 / step})
    bar.update(10, {"loss": 0.1}, finished=True)
    text = stream.getvalue()
    assert text.count("\r") == 10 and text.endswith("\n")
    assert "10/10" in text and "loss: 0.1000" in text


def test_train_on_batch_returns_loss_and_accuracy(rng):
    x, y = toy_data(rng, 16)
    model = small_model()
    loss, accuracy = model.train_on_batch(x, y)
    assert np.isfinite(loss) and 0 <= accuracy <= 1
    assert model.optimizer.iterations == 1


def test_first_layer_skips_the_input_gradient(rng):
    x, y = toy_data(rng, 8)
    model = small_model()
    y_pred, tape = model.forward(x.astype(np.float32), training=True)
    assert tape.contexts[0].need_input_grad is False  # nobody needs dL/d(images)
    assert tape.contexts[1].need_input_grad is True
    grads, dx = model.backward(np.ones_like(y_pred), tape, return_input_grads=True)
    assert dx is None and all(g is not None for g in grads)
