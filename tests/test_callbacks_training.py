"""ReduceLROnPlateau, LearningRateScheduler, CSVLogger and TerminateOnNaN against Keras 3's
own callbacks where they can be driven side by side, and in fit: learning-rate changes reach
the optimizer and survive saving; schedules continue across fits and across save/load; a
non-finite loss stops training quietly with TerminateOnNaN and loudly without it."""

import csv
import os

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras
import numpy as np
import pytest
from test_models import small_model, toy_data

import minicnn
from minicnn import callbacks, layers, losses, models, optimizers

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def keras_model(learning_rate):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss="categorical_crossentropy")
    return model


def ours_model(learning_rate):
    model = models.Sequential([layers.Dense(2, activation="softmax", input_shape=(3,))])
    model.compile(optimizer=optimizers.SGD(learning_rate), loss="categorical_crossentropy")
    return model


# --------------------------------------------------------------------------------------------
# ReduceLROnPlateau
# --------------------------------------------------------------------------------------------

SEQUENCE = [1.0, 0.9, 0.95, 0.9, 0.92, 0.91, 0.89995, 0.93, 0.94, 0.5, 0.6, 0.7, 0.8, 0.9]


@pytest.mark.parametrize("settings, monitor, values", [
    ({}, "val_loss", SEQUENCE),
    ({"patience": 2, "factor": 0.5}, "val_loss", SEQUENCE),
    ({"patience": 1, "factor": 0.5, "cooldown": 2}, "val_loss", SEQUENCE),
    ({"patience": 0, "factor": 0.2, "min_lr": 0.003}, "loss", SEQUENCE),
    ({"patience": 1, "min_delta": 0.05, "factor": 0.5}, "val_loss", SEQUENCE),
    ({"patience": 1, "mode": "max", "factor": 0.5}, "val_accuracy", SEQUENCE[::-1]),
], ids=["defaults", "patience", "cooldown", "min_lr", "min_delta", "max"])
def test_reduce_lr_on_plateau_changes_the_rate_as_keras_s_does(settings, monitor, values):
    ours, theirs = ours_model(0.1), keras_model(0.1)
    ours_cb = callbacks.ReduceLROnPlateau(monitor=monitor, **settings)
    keras_cb = keras.callbacks.ReduceLROnPlateau(monitor=monitor, **settings)
    ours_cb.set_model(ours)
    keras_cb.set_model(theirs)
    for cb in (ours_cb, keras_cb):
        cb.on_train_begin({})
    ours_rates, keras_rates = [], []
    for epoch, value in enumerate(values):
        ours_logs, keras_logs = {monitor: value}, {monitor: value}
        ours_cb.on_epoch_end(epoch, ours_logs)
        keras_cb.on_epoch_end(epoch, keras_logs)
        assert ours_logs["learning_rate"] == pytest.approx(keras_logs["learning_rate"], rel=1e-6)
        ours_rates.append(ours.optimizer.learning_rate)
        keras_rates.append(float(theirs.optimizer.learning_rate))
    np.testing.assert_allclose(ours_rates, keras_rates, rtol=1e-6)
    assert len(set(ours_rates)) > 1 or settings == {}  # the settings really reduce


def test_reduce_lr_on_plateau_in_fit_reaches_the_optimizer_and_survives_saving(rng, tmp_path,
                                                                               capsys):
    x, y = toy_data(rng, 32)
    minicnn.set_random_seed(0)
    model = small_model(optimizer=optimizers.SGD(0.1))
    # min_delta 10: no epoch after the first counts as an improvement.
    reduce = callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1, min_delta=10,
                                         verbose=1)
    history = model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[reduce])
    assert history.history["learning_rate"] == pytest.approx([0.1, 0.1, 0.05])
    assert model.optimizer.learning_rate == pytest.approx(0.025)
    assert "Epoch 2: ReduceLROnPlateau reducing learning rate to 0.05." in capsys.readouterr().out
    for name in ("m.npz", "m.keras"):
        model.save(tmp_path / name)
        assert models.load_model(tmp_path / name).optimizer.learning_rate == pytest.approx(
            0.025, rel=1e-7)
    assert float(keras.models.load_model(tmp_path / "m.keras").optimizer.learning_rate) == \
        pytest.approx(0.025)


def test_reduce_lr_on_plateau_refuses_a_scheduled_optimizer_and_a_missing_monitor(rng):
    x, y = toy_data(rng, 16)
    model = small_model(optimizer=optimizers.SGD(
        optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)))
    reduce = callbacks.ReduceLROnPlateau(monitor="loss", patience=0, min_delta=10)
    with pytest.raises(TypeError, match="created with a LearningRateSchedule"):
        model.fit(x, y, epochs=3, verbose=0, callbacks=[reduce])
    with pytest.raises(ValueError, match="monitor 'val_loss' is not among the epoch metrics"):
        small_model().fit(x, y, epochs=1, verbose=0, callbacks=[callbacks.ReduceLROnPlateau()])
    with pytest.raises(ValueError, match="factor must be a number >= 0 and < 1.0"):
        callbacks.ReduceLROnPlateau(factor=1.0)


# --------------------------------------------------------------------------------------------
# LearningRateScheduler
# --------------------------------------------------------------------------------------------


class WeightsPerEpoch(callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.kept = [self.model.get_weights()]

    def on_epoch_end(self, epoch, logs=None):
        self.kept.append(self.model.get_weights())


def test_learning_rate_scheduler_sets_the_rate_each_epoch_and_it_is_used(rng, capsys):
    x, y = toy_data(rng, 32)
    model = small_model(optimizer=optimizers.SGD(0.1))
    seen = []

    def schedule(epoch, lr):
        seen.append((epoch, lr))
        return 0.0 if epoch == 1 else lr * 0.5

    weights = WeightsPerEpoch()
    history = model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[
        callbacks.LearningRateScheduler(schedule, verbose=1), weights])
    assert seen == [(0, 0.1), (1, 0.05), (2, 0.0), (3, 0.0)]
    assert history.history["learning_rate"] == [0.05, 0.0, 0.0, 0.0]
    # A zero rate in epoch 1: the weights did not move (plain SGD).
    for before, after in zip(weights.kept[1], weights.kept[2], strict=True):
        np.testing.assert_array_equal(before, after)
    assert not np.array_equal(weights.kept[0][0], weights.kept[1][0])
    assert "Epoch 1: LearningRateScheduler setting learning rate to 0.05." in \
        capsys.readouterr().out


def test_learning_rate_scheduler_takes_a_one_argument_function_and_checks_its_output(rng):
    x, y = toy_data(rng, 16)
    model = small_model(optimizer=optimizers.Adam(0.01))
    history = model.fit(x, y, epochs=3, verbose=0, callbacks=[
        callbacks.LearningRateScheduler(lambda epoch: 0.01 / (1 + epoch))])
    assert history.history["learning_rate"] == pytest.approx([0.01, 0.005, 0.01 / 3])
    assert model.optimizer.get_config()["learning_rate"] == pytest.approx(0.01 / 3)
    with pytest.raises(ValueError, match="output of the schedule function should be a float"):
        model.fit(x, y, epochs=1, verbose=0, callbacks=[
            callbacks.LearningRateScheduler(lambda epoch, lr: "fast")])
    scheduled = small_model(optimizer=optimizers.SGD(
        optimizers.schedules.PiecewiseConstantDecay([5], [0.1, 0.01])))
    with pytest.raises(TypeError, match="learning rate is not settable"):
        scheduled.fit(x, y, epochs=1, verbose=0, callbacks=[
            callbacks.LearningRateScheduler(lambda epoch, lr: lr)])


# --------------------------------------------------------------------------------------------
# CSVLogger
# --------------------------------------------------------------------------------------------

TRAIN_ONLY = [{"loss": 0.5, "accuracy": 0.75}, {"loss": 0.25, "accuracy": 0.8125}]
WITH_VALIDATION = [{"loss": 1.5, "accuracy": 0.3, "val_loss": 1.25, "val_accuracy": 0.5,
                    "learning_rate": 0.001},
                   {"loss": 0.75, "accuracy": 0.625, "val_loss": 1.0, "val_accuracy": 0.5,
                    "learning_rate": 0.0005}]


def drive(callback, epochs_logs, start=0):
    callback.on_train_begin({})
    for epoch, logs in enumerate(epochs_logs, start=start):
        callback.on_epoch_end(epoch, dict(logs))
    callback.on_train_end({})


@pytest.mark.parametrize("runs, separator", [
    ([(TRAIN_ONLY, False)], ","),
    ([(WITH_VALIDATION, False)], ","),
    ([(WITH_VALIDATION, False)], ";"),
    ([(TRAIN_ONLY, False), (TRAIN_ONLY, True)], ","),
    ([(TRAIN_ONLY, True), (WITH_VALIDATION, False)], "\t"),
], ids=["train only", "validation", "separator", "append", "overwrite"])
def test_csv_logger_writes_the_bytes_keras_s_writes(tmp_path, runs, separator):
    for i, (epochs_logs, append) in enumerate(runs):
        drive(callbacks.CSVLogger(tmp_path / "ours.csv", separator=separator, append=append),
              epochs_logs, start=2 * i)
        drive(keras.callbacks.CSVLogger(str(tmp_path / "keras.csv"), separator=separator,
                                        append=append), epochs_logs, start=2 * i)
    assert (tmp_path / "ours.csv").read_bytes() == (tmp_path / "keras.csv").read_bytes()


def test_csv_logger_file_is_complete_after_every_epoch_and_nothing_is_left_behind(rng,
                                                                                   tmp_path):
    x, y = toy_data(rng, 32)
    path = tmp_path / "log.csv"
    path.write_text("an old log\n")

    class ReadBack(callbacks.Callback):
        rows = []

        def on_epoch_end(self, epoch, logs=None):
            with open(path, newline="") as f:
                self.rows.append(list(csv.reader(f)))

    history = small_model().fit(x, y, epochs=3, batch_size=8, verbose=0,
                                validation_split=0.25,
                                callbacks=[callbacks.CSVLogger(path), ReadBack()])
    assert [len(rows) for rows in ReadBack.rows] == [2, 3, 4]  # header + the epochs so far
    header, *rows = ReadBack.rows[-1]
    assert header == ["epoch", "accuracy", "loss", "val_accuracy", "val_loss"]
    assert [float(r[2]) for r in rows] == pytest.approx(history.history["loss"], rel=1e-12)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.csv"]
    with pytest.raises(FileNotFoundError, match="CSVLogger: cannot write .* does not exist"):
        small_model().fit(x, y, epochs=1, verbose=0, callbacks=[
            callbacks.CSVLogger(tmp_path / "missing" / "log.csv")])


# --------------------------------------------------------------------------------------------
# TerminateOnNaN and the fit loop
# --------------------------------------------------------------------------------------------


def exploding_model():
    # A learning rate of 1e38 overflows float32 weights after one step; the next loss is nan.
    model = models.Sequential([layers.Flatten(input_shape=(8, 8, 1)), layers.Dense(3)])
    model.compile(optimizer=optimizers.SGD(learning_rate=1e38),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def test_terminate_on_nan_stops_fit_quietly_after_the_batch(rng, capsys):
    x, y = toy_data(rng, 32)
    minicnn.set_random_seed(0)
    model = exploding_model()
    minicnn.set_random_seed(0)
    one_step = exploding_model()
    with np.errstate(all="ignore"):
        one_step.train_on_batch(x[:4], y[:4])
        history = model.fit(x, y, epochs=3, batch_size=4, verbose=0, shuffle=False,
                            validation_data=(x, y), callbacks=[callbacks.TerminateOnNaN()])
    assert "Batch 1: Invalid loss, terminating training" in capsys.readouterr().out
    assert history.epoch == [0]  # the epoch ended (validation and on_epoch_end ran) and fit
    assert np.isnan(history.history["loss"][0])
    assert "val_loss" in history.history
    # No update from the non-finite batch: the weights are those after the one finite step.
    assert model.optimizer.iterations == 1
    for ours, expected in zip(model.get_weights(), one_step.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, expected)
    assert np.isfinite(model.get_weights()[0]).all()


def test_terminate_on_nan_can_raise_and_without_it_minicnn_s_error_stays(rng):
    x, y = toy_data(rng, 32)
    with np.errstate(all="ignore"), pytest.raises(RuntimeError,
                                                  match="NaN or Inf loss encountered at batch 1"):
        exploding_model().fit(x, y, epochs=2, batch_size=4, verbose=0, shuffle=False,
                              callbacks=[callbacks.TerminateOnNaN(raise_error=True)])
    with np.errstate(all="ignore"), pytest.raises(models.LossNotFiniteError,
                                                  match="loss became nan at epoch 1, batch 2"):
        exploding_model().fit(x, y, epochs=2, batch_size=4, verbose=0, shuffle=False)


def test_stop_training_in_a_batch_hook_stops_after_that_batch(rng):
    x, y = toy_data(rng, 40)
    model = small_model()

    class StopAtThree(callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if batch == 2:
                self.model.stop_training = True

    history = model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[StopAtThree()])
    assert model.optimizer.iterations == 3 and history.epoch == [0]


# --------------------------------------------------------------------------------------------
# Schedules across fits and files
# --------------------------------------------------------------------------------------------


def scheduled_model():
    minicnn.set_random_seed(0)
    return small_model(optimizer=optimizers.RMSprop(
        optimizers.schedules.ExponentialDecay(0.05, decay_steps=3, decay_rate=0.5),
        momentum=0.5))


def test_a_second_fit_continues_the_schedule(rng):
    x, y = toy_data(rng, 32)
    once, twice = scheduled_model(), scheduled_model()
    once.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    twice.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert twice.optimizer.learning_rate == pytest.approx(0.05 * 0.5 ** (4 / 3))
    twice.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    assert twice.optimizer.iterations == once.optimizer.iterations == 8
    for a, b in zip(once.get_weights(), twice.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("suffix", [".npz", ".keras"])
def test_save_and_load_mid_schedule_continues_it(rng, tmp_path, suffix):
    x, y = toy_data(rng, 32)
    uninterrupted, interrupted = scheduled_model(), scheduled_model()
    uninterrupted.fit(x, y, epochs=3, batch_size=8, verbose=0, shuffle=False)
    interrupted.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    interrupted.save(tmp_path / f"m{suffix}")
    loaded = models.load_model(tmp_path / f"m{suffix}")
    assert loaded.optimizer.get_config() == interrupted.optimizer.get_config()
    assert loaded.optimizer.iterations == 4
    assert loaded.optimizer.learning_rate == interrupted.optimizer.learning_rate
    loaded.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    for a, b in zip(uninterrupted.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
