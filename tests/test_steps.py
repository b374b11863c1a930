"""The public, Keras-named steps and the callback hooks that drive them.

- train_step / test_step / predict_step are what fit / evaluate / predict call, and a subclass
  can override them (as keras.io's "Customizing what happens in fit()").
- The pieces of a step (forward, compute_loss_and_gradient, backward) compose to the step.
- Every Keras hook fires, in Keras's order, with the logs Keras gives.
- EarlyStopping(restore_best_weights=True) restores the best weights at the end of training
  even when it never stopped training (Keras 3).
- Profiling subscribes to the model's timing events: nothing on the layers is patched.
"""

import numpy as np
import pytest

import minicnn
from minicnn import callbacks, layers, models


def small_model():
    model = models.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def toy(rng, n=48):
    y = rng.integers(0, 3, n)
    x = rng.random((n, 8, 8, 1)).astype(np.float32) * 0.3
    for i, label in enumerate(y):
        x[i, label * 3:label * 3 + 2] += 1.0
    return x, y


def test_fit_calls_train_step_and_an_override_replaces_it(rng):
    x, y = toy(rng)

    class Counting(models.Sequential):
        def train_step(self, data):
            self.seen = getattr(self, "seen", 0) + len(data[0])
            return super().train_step(data)

        def test_step(self, data):
            self.tested = getattr(self, "tested", 0) + len(data[0])
            return super().test_step(data)

        def predict_step(self, data):
            self.predicted = getattr(self, "predicted", 0) + len(data[0])
            return super().predict_step(data)

    model = Counting(small_model().layers)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    assert model.seen == 2 * 36 and model.tested == 2 * 12
    model.evaluate(x, y, verbose=0)
    assert model.tested == 2 * 12 + 48
    model.predict(x, verbose=0)
    assert model.predicted == 48


def test_a_custom_train_step_from_the_public_pieces(rng):
    """keras.io's custom-training pattern, in minicnn's terms: the same as the built-in step."""
    x, y = toy(rng)

    class Manual(models.Sequential):
        def train_step(self, data):
            x, y = data
            y_pred, tape = self.forward(x, training=True)
            loss, dy, from_logits = self.compute_loss_and_gradient(y, y_pred, None, tape)
            grads = self.backward(dy, tape, from_logits)
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
            return self.compute_metrics(x, y, y_pred, loss=loss)

    histories, weights = [], []
    for cls in (models.Sequential, Manual):
        minicnn.set_random_seed(8)
        model = cls(small_model().layers)
        minicnn.set_random_seed(9)
        for layer, fresh in zip(model.layers, small_model().layers, strict=True):
            layer.set_weights(fresh.get_weights())
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        minicnn.set_random_seed(10)
        histories.append(model.fit(x, y, epochs=2, batch_size=16, verbose=0).history)
        weights.append(model.get_weights())
    assert histories[0] == histories[1]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_custom_step_with_its_own_loss_and_metric(rng):
    """Overriding train_step to add an L2 penalty by hand: the weights shrink accordingly."""
    x, y = toy(rng)

    class Penalised(models.Sequential):
        def train_step(self, data):
            x, y = data
            y_pred, tape = self.forward(x, training=True)
            loss, dy, from_logits = self.compute_loss_and_gradient(y, y_pred, None, tape)
            grads = self.backward(dy, tape, from_logits)
            grads = [g + 0.5 * w for g, w in zip(grads, self.trainable_weights, strict=True)]
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
            logs = self.compute_metrics(x, y, y_pred, loss=loss)
            logs["l2"] = float(sum(np.sum(w * w) for w in self.trainable_weights))
            return logs

    minicnn.set_random_seed(3)
    plain = small_model()
    minicnn.set_random_seed(3)
    penalised = Penalised(small_model().layers)
    penalised.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    for model in (plain, penalised):
        minicnn.set_random_seed(4)
        history = model.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert "l2" in history.history
    norm = [sum(np.sum(w * w) for w in m.trainable_weights) for m in (plain, penalised)]
    assert norm[1] < norm[0]


def test_hooks_fire_in_keras_order_with_logs():
    rng = np.random.default_rng(0)
    x, y = toy(rng, 40)
    events = []

    class Recorder(callbacks.Callback):
        pass

    for hook in callbacks.HOOKS:
        def record(self, *args, _hook=hook):
            logs = args[-1] if args else None
            events.append((_hook, *args[:-1], tuple(sorted(logs or {}))))
        setattr(Recorder, hook, record)

    model = small_model()
    recorder = Recorder()
    model.fit(x, y, epochs=1, batch_size=16, validation_data=(x[:16], y[:16]), verbose=0,
              callbacks=[recorder])
    assert recorder.params == {"epochs": 1, "steps": 3, "verbose": 0}
    names = [e[0] for e in events]
    assert names == ["on_train_begin", "on_epoch_begin",
                     "on_train_batch_begin", "on_train_batch_end",
                     "on_train_batch_begin", "on_train_batch_end",
                     "on_train_batch_begin", "on_train_batch_end",
                     "on_test_begin", "on_test_batch_begin", "on_test_batch_end", "on_test_end",
                     "on_epoch_end", "on_train_end"]
    assert events[3] == ("on_train_batch_end", 0, ("accuracy", "loss"))
    assert events[-2] == ("on_epoch_end", 0, ("accuracy", "loss", "val_accuracy", "val_loss"))
    events.clear()
    model.evaluate(x, y, batch_size=20, verbose=0, callbacks=[recorder])
    assert [e[0] for e in events] == ["on_test_begin", "on_test_batch_begin",
                                      "on_test_batch_end", "on_test_batch_begin",
                                      "on_test_batch_end", "on_test_end"]
    events.clear()
    model.predict(x, batch_size=25, verbose=0, callbacks=[recorder])
    assert [e[0] for e in events] == ["on_predict_begin", "on_predict_batch_begin",
                                      "on_predict_batch_end", "on_predict_batch_begin",
                                      "on_predict_batch_end", "on_predict_end"]
    assert events[2] == ("on_predict_batch_end", 0, ("outputs",))


def test_logs_are_running_means_over_the_epoch(rng):
    """As Keras 3: the loss in the batch logs is the mean of the epoch's batches so far,
    weighted by batch size; the epoch's value is that mean at the end."""
    x, y = toy(rng, 40)
    model = small_model()
    batch_logs = []

    class Keep(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            batch_logs.append(dict(logs))

    minicnn.set_random_seed(6)
    history = model.fit(x, y, epochs=1, batch_size=16, shuffle=False, verbose=0,
                        callbacks=[Keep()])
    assert history.history["loss"] == [batch_logs[-1]["loss"]]
    assert len(batch_logs) == 3


def test_evaluate_return_dict_and_metrics_names(rng):
    x, y = toy(rng)
    model = small_model()
    assert model.metrics_names == ["loss", "accuracy"]
    values = model.evaluate(x, y, verbose=0)
    as_dict = model.evaluate(x, y, verbose=0, return_dict=True)
    assert as_dict == dict(zip(model.metrics_names, values, strict=True))


def test_acc_keeps_the_name_the_user_wrote(rng):
    x, y = toy(rng)
    model = small_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["acc"])
    history = model.fit(x, y, epochs=1, validation_split=0.25, verbose=0)
    assert set(history.history) == {"loss", "acc", "val_loss", "val_acc"}


def test_early_stopping_restores_best_weights_even_without_stopping(rng):
    """Keras 3 restores the best epoch's weights at the end of training whether or not the
    patience ran out."""
    x, y = toy(rng)
    minicnn.set_random_seed(2)
    model = small_model()
    kept = {}

    class Keep(callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            kept[epoch] = (logs["loss"], self.model.get_weights())

    stopper = callbacks.EarlyStopping(monitor="loss", patience=100, restore_best_weights=True)

    class Worsen(callbacks.Callback):
        """Make the last epoch worse than every earlier one: its loss is the largest."""

        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                for w in self.model.trainable_weights:
                    w *= 3.0

    model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[Worsen(), Keep(), stopper])
    assert stopper.stopped_epoch == 0  # it never stopped training
    losses = {epoch: loss for epoch, (loss, _) in kept.items()}
    best = min(losses, key=losses.get)
    assert best != 3
    for got, want in zip(model.get_weights(), kept[best][1], strict=True):
        np.testing.assert_array_equal(got, want)


def test_sample_and_class_weights_weight_the_loss_as_keras(rng):
    x, y = toy(rng, 32)
    model = small_model()
    unweighted = model.evaluate(x, y, verbose=0, return_dict=True)["loss"]
    weights = np.where(y == 0, 2.0, 0.0)
    weighted = model.evaluate(x, y, sample_weight=weights, verbose=0, return_dict=True)
    probs = model.predict(x, verbose=0)
    per_sample = -np.log(probs[np.arange(32), y])
    assert weighted["loss"] == pytest.approx(np.sum(per_sample * weights) / 32, rel=1e-5)
    assert unweighted == pytest.approx(per_sample.mean(), rel=1e-5)
    # class_weight {0: 2} is the same as those sample weights in training.
    runs = []
    for kwargs in ({"sample_weight": weights}, {"class_weight": {0: 2.0, 1: 0.0, 2: 0}}):
        minicnn.set_random_seed(1)
        m = small_model()
        runs.append(m.fit(x, y, epochs=2, batch_size=8, verbose=0, **kwargs).history["loss"])
    assert runs[0] == runs[1]
    with pytest.raises(ValueError, match="sample_weight must be 32 finite weights"):
        model.fit(x, y, sample_weight=np.ones(31), verbose=0)


def test_profile_subscribes_to_events_and_patches_nothing(rng):
    x, y = toy(rng, 64)
    model = small_model()
    before = [dict(vars(layer)) for layer in model.layers]
    optimizer_attrs = dict(vars(model.optimizer))
    prof = model.fit(x, y, epochs=1, batch_size=16, verbose=0, profile=True).profile
    assert prof.seconds[f"{model.layers[0].name} forward"] > 0
    assert prof.seconds[f"{model.layers[-1].name} backward"] > 0
    for layer, attrs in zip(model.layers, before, strict=True):
        assert set(vars(layer)) == set(attrs)  # no wrapper was ever set on an instance
    assert set(vars(model.optimizer)) == set(optimizer_attrs)
    assert model.strategy.profiler is None and model._profile is None


def test_train_on_batch_and_test_on_batch(rng):
    x, y = toy(rng, 16)
    model = small_model()
    loss, accuracy = model.train_on_batch(x, y)
    assert np.isfinite(loss) and 0 <= accuracy <= 1 and model.optimizer.iterations == 1
    logs = model.test_on_batch(x, y, return_dict=True)
    assert set(logs) == {"loss", "accuracy"}
    out = model.predict_on_batch(x)
    np.testing.assert_array_equal(out, model(x))
    assert out.shape == (16, 3)
