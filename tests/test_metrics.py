"""Metrics: each against a NumPy version of Keras's formula and against real Keras (JAX) over
several batches with and without sample weights; 'accuracy' resolved from shapes as Keras's
compile does; log names as Keras's CompileMetrics writes them; several metrics at once."""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras
import numpy as np
import pytest
from keras.src.trainers import compile_utils

import minicnn
from minicnn import layers, losses, metrics, models


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def weighted_mean(per_sample, weights):
    return np.sum(per_sample * weights) / np.sum(weights)


def metric_cases(rng, n=10):
    k = 4
    probs = np_softmax(rng.normal(size=(n, k)))
    labels = rng.integers(0, k, n)
    onehot = np.eye(k)[labels]
    binary = rng.integers(0, 2, (n, 3)).astype(float)
    binary_probs = rng.uniform(0, 1, (n, 3))
    targets, outputs = rng.normal(size=(n, 2)), rng.normal(size=(n, 2))
    clip = np.clip(binary_probs, 1e-7, 1 - 1e-7)
    # (name, minicnn metric, Keras metric, y_true, y_pred, per-sample oracle)
    return [
        ("sparse_categorical_accuracy", metrics.SparseCategoricalAccuracy(),
         keras.metrics.SparseCategoricalAccuracy(), labels, probs,
         (probs.argmax(1) == labels).astype(float)),
        ("sparse_labels_column", metrics.SparseCategoricalAccuracy(),
         keras.metrics.SparseCategoricalAccuracy(), labels[:, None], probs,
         (probs.argmax(1) == labels).astype(float)),
        ("categorical_accuracy", metrics.CategoricalAccuracy(),
         keras.metrics.CategoricalAccuracy(), onehot, probs,
         (probs.argmax(1) == labels).astype(float)),
        ("binary_accuracy", metrics.BinaryAccuracy(), keras.metrics.BinaryAccuracy(), binary,
         binary_probs, np.mean(binary == (binary_probs > 0.5), axis=1)),
        ("binary_threshold", metrics.BinaryAccuracy(threshold=0.3),
         keras.metrics.BinaryAccuracy(threshold=0.3), binary, binary_probs,
         np.mean(binary == (binary_probs > 0.3), axis=1)),
        ("accuracy_exact", metrics.Accuracy(), keras.metrics.Accuracy(), labels,
         probs.argmax(1), (probs.argmax(1) == labels).astype(float)),
        ("mse", metrics.MeanSquaredError(), keras.metrics.MeanSquaredError(), targets, outputs,
         np.mean((outputs - targets) ** 2, axis=1)),
        ("mae", metrics.MeanAbsoluteError(), keras.metrics.MeanAbsoluteError(), targets,
         outputs, np.mean(np.abs(outputs - targets), axis=1)),
        ("bce", metrics.BinaryCrossentropy(), keras.metrics.BinaryCrossentropy(), binary,
         binary_probs, -np.mean(binary * np.log(clip) + (1 - binary) * np.log(1 - clip), 1)),
        ("cce", metrics.CategoricalCrossentropy(), keras.metrics.CategoricalCrossentropy(),
         onehot, probs, -np.log(np.clip(probs, 1e-7, 1)[np.arange(n), labels])),
        ("scce", metrics.SparseCategoricalCrossentropy(),
         keras.metrics.SparseCategoricalCrossentropy(), labels, probs,
         -np.log(np.clip(probs, 1e-7, 1)[np.arange(n), labels])),
    ]


CASES = [c[0] for c in metric_cases(np.random.default_rng(0))]


@pytest.mark.parametrize("name", CASES)
def test_running_values_match_numpy_and_keras_over_batches(name, rng):
    case = {c[0]: c for c in metric_cases(rng)}[name]
    _, ours, theirs, y_true, y_pred, per_sample = case
    weights = rng.uniform(0, 2, len(y_pred))
    for w in (None, weights):
        ours.reset_state()
        theirs.reset_state()
        for part in (slice(0, 4), slice(4, 10)):  # two batches: a running value
            ours.update_state(y_true[part], y_pred[part],
                              sample_weight=None if w is None else w[part])
            theirs.update_state(y_true[part], y_pred[part],
                                sample_weight=None if w is None else w[part])
        expected = weighted_mean(per_sample, np.ones(len(y_pred)) if w is None else w)
        assert float(ours.result()) == pytest.approx(expected, rel=1e-6)
        assert float(ours.result()) == pytest.approx(float(theirs.result()), rel=1e-5)
    ours.reset_state()
    assert float(ours.result()) == 0.0


def test_root_mean_squared_error_and_mean_and_sum(rng):
    t, p = rng.normal(size=(6, 3)), rng.normal(size=(6, 3))
    w = rng.uniform(0, 2, 6)
    ours, theirs = metrics.RootMeanSquaredError(), keras.metrics.RootMeanSquaredError()
    ours.update_state(t, p, w)
    theirs.update_state(t, p, w)
    expected = np.sqrt(np.sum(np.mean((p - t) ** 2, 1) * w) / w.sum())
    assert float(ours.result()) == pytest.approx(expected, rel=1e-9)
    assert float(ours.result()) == pytest.approx(float(theirs.result()), rel=1e-5)
    mean, keras_mean = metrics.Mean(), keras.metrics.Mean()
    total, keras_total = metrics.Sum(), keras.metrics.Sum()
    for m in (mean, keras_mean, total, keras_total):
        m.update_state([1.0, 3.0, 5.0, 7.0], sample_weight=[1, 1, 0, 0])
        m.update_state(np.ones((2, 3)))
    assert float(mean.result()) == pytest.approx(float(keras_mean.result()))  # (1+3+1+1)/4
    assert float(total.result()) == pytest.approx(float(keras_total.result()))
    assert mean(np.array([2.0])) == pytest.approx(8 / 5)  # __call__ updates and returns


@pytest.mark.parametrize("y_true_shape, y_pred_shape", [
    ((8,), (8, 1)), ((8, 1), (8, 1)), ((8,), (8, 5)), ((8, 1), (8, 5)), ((8, 5), (8, 5)),
    ((8, 3), (8, 3)),
])
def test_accuracy_is_resolved_from_shapes_as_keras_compile_does(y_true_shape, y_pred_shape,
                                                                 rng):
    y_true = rng.integers(0, 2, y_true_shape).astype(float)
    y_pred = rng.uniform(0, 1, y_pred_shape)
    for name in ("accuracy", "acc"):
        (log_name, ours, weighted), = metrics.compile_metrics([name])
        ours.update_state(y_true, y_pred)
        theirs = compile_utils.get_metric(name, y_true, y_pred)
        theirs.update_state(y_true, y_pred)
        assert log_name == name == ours.name and weighted is False
        assert ours._fn.__name__ == theirs._fn.__name__  # binary/sparse/categorical accuracy
        assert float(ours.result()) == pytest.approx(float(theirs.result()), rel=1e-6)


def test_log_names_and_duplicates_as_keras_compile_metrics(rng):
    given = ["accuracy", "acc", "mse", "MAE", metrics.BinaryAccuracy(name="ba"),
             metrics.mean_absolute_error, "accuracy"]
    weighted = ["accuracy", "mse", "accuracy"]
    keras_given = ["accuracy", "acc", "mse", "MAE", keras.metrics.BinaryAccuracy(name="ba"),
                   keras.metrics.mean_absolute_error, "accuracy"]
    y_true = rng.integers(0, 2, (6, 1)).astype(float)
    y_pred = rng.uniform(0, 1, (6, 1))
    w = rng.uniform(0, 2, 6)
    theirs = compile_utils.CompileMetrics(keras_given, weighted)
    theirs.update_state(y_true, y_pred, w)
    expected = {k: float(v) for k, v in theirs.result().items()}
    compiled = metrics.compile_metrics(given, weighted)
    for _, metric, is_weighted in compiled:
        metric.update_state(y_true, y_pred, w if is_weighted else None)
    ours = {name: float(metric.result()) for name, metric, _ in compiled}
    assert list(ours) == list(expected)
    for name, value in expected.items():
        assert ours[name] == pytest.approx(value, rel=1e-5), name


def test_compile_metrics_refuses_what_keras_refuses():
    with pytest.raises(ValueError, match=r"metrics must be a list, e.g. metrics=\['accuracy'\]"):
        metrics.compile_metrics("accuracy")
    with pytest.raises(ValueError, match=r"unknown metric 'acuracy'.*binary_accuracy"):
        metrics.compile_metrics(["acuracy"])
    with pytest.raises(ValueError, match="holds None"):
        metrics.compile_metrics([None])


def classifier():
    minicnn.set_random_seed(0)
    model = models.Sequential([layers.Dense(8, activation="relu", input_shape=(4,)),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["acc", "sparse_categorical_accuracy",
                           metrics.SparseCategoricalCrossentropy(name="ce")])
    return model


def test_several_metrics_in_history_logs_and_progress_bar(rng, capsys):
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = rng.integers(0, 3, 64)
    model = classifier()
    history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=2)
    assert list(history.history) == ["loss", "acc", "sparse_categorical_accuracy", "ce",
                                     "val_loss", "val_acc", "val_sparse_categorical_accuracy",
                                     "val_ce"]
    assert history.history["acc"] == history.history["sparse_categorical_accuracy"]
    # The cross-entropy metric is the loss itself (same formula, no sample weights).
    np.testing.assert_allclose(history.history["val_ce"], history.history["val_loss"],
                               rtol=1e-6)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "Epoch 1/2" and lines[2] == "Epoch 2/2"
    assert lines[1].startswith("3/3 - ") and " - acc: " in lines[1] and " - ce: " in lines[1]
    assert lines[1].index("val_acc") > lines[1].index("sparse_categorical_accuracy")
    values = model.evaluate(x, y, verbose=0)
    assert len(values) == 4 and model.metrics_names == ["loss", "acc",
                                                        "sparse_categorical_accuracy", "ce"]


def test_metric_objects_and_weighted_metrics_survive_model_files(rng, tmp_path):
    x = rng.normal(size=(16, 4)).astype(np.float32)
    y = rng.integers(0, 2, 16)
    minicnn.set_random_seed(1)
    model = models.Sequential([layers.Dense(1, activation="sigmoid", input_shape=(4,))])
    model.compile(optimizer="adam", loss="binary_crossentropy",
                  metrics=[metrics.BinaryAccuracy(threshold=0.7), "mae"],
                  weighted_metrics=["accuracy"])
    w = rng.uniform(0, 2, 16)
    expected = model.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    for name in ("m.npz", "m.keras"):
        model.save(tmp_path / name)
        loaded = models.load_model(tmp_path / name)
        assert loaded.metrics[0].threshold == 0.7
        assert loaded.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True) == expected
    theirs = keras.models.load_model(tmp_path / "m.keras")
    got = theirs.evaluate(x, y, sample_weight=w, verbose=0, return_dict=True)
    assert set(got) == set(expected)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-5), key


def test_a_metric_no_file_can_rebuild_is_refused_at_save(rng, tmp_path):
    def my_metric(y_true, y_pred):
        return np.abs(y_true - y_pred[:, 0])
    model = models.Sequential([layers.Dense(1, input_shape=(4,))])
    model.compile(optimizer="adam", loss="mse", metrics=[my_metric])
    x = rng.normal(size=(8, 4))
    logs = model.evaluate(x, np.zeros(8), verbose=0, return_dict=True)
    assert logs["my_metric"] == pytest.approx(np.mean(np.abs(model.predict(x, verbose=0))))
    with pytest.raises(ValueError, match=r"the metric 'my_metric' \(function\) is not "
                                         r"one of minicnn's.*save_weights"):
        model.save(tmp_path / "m.npz")
    assert not (tmp_path / "m.npz").exists()


def test_metrics_of_loss_functions_are_the_losses(rng):
    assert metrics.mean_squared_error is losses.mean_squared_error
    assert isinstance(metrics.get("mse"), metrics.MeanSquaredError)
    assert isinstance(metrics.get("RootMeanSquaredError"), metrics.RootMeanSquaredError)
    assert isinstance(metrics.get("root_mean_squared_error"), metrics.RootMeanSquaredError)
    assert metrics.get(metrics.binary_accuracy) is metrics.binary_accuracy


@pytest.mark.parametrize("metric, sparse", [
    (metrics.Accuracy(), False), (metrics.BinaryAccuracy(threshold=0.2), False),
    (metrics.CategoricalAccuracy(), False), (metrics.SparseCategoricalAccuracy(), True),
    (metrics.MeanSquaredError(), False), (metrics.MeanAbsoluteError(), False),
    (metrics.RootMeanSquaredError(), False), (metrics.BinaryCrossentropy(from_logits=True), False),
    (metrics.CategoricalCrossentropy(label_smoothing=0.1), False),
    (metrics.SparseCategoricalCrossentropy(name="scce"), True), ("binary_accuracy", False),
    ("mse", False), (metrics.sparse_categorical_accuracy, True),
], ids=lambda m: str(m) if isinstance(m, (str, bool)) else getattr(m, "name", None) or
    m.__name__)
def test_every_metric_survives_both_model_files(metric, sparse, rng, tmp_path):
    x = rng.normal(size=(12, 4)).astype(np.float32)
    labels = rng.integers(0, 3, 12)
    y = labels if sparse else np.eye(3, dtype=np.float32)[labels]
    minicnn.set_random_seed(2)
    model = models.Sequential([layers.Dense(3, activation="softmax", input_shape=(4,))])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy" if sparse else
                  "categorical_crossentropy", metrics=[metric])
    model.fit(x, y, epochs=1, verbose=0)
    expected = model.evaluate(x, y, verbose=0, return_dict=True)
    for name in ("m.npz", "m.keras"):
        model.save(tmp_path / name)
        loaded = models.load_model(tmp_path / name)
        assert loaded.metrics_names == model.metrics_names
        if isinstance(metric, metrics.Metric):
            assert type(loaded.metrics[0]) is type(metric)
            assert loaded.metrics[0].get_config() == metric.get_config()
        assert loaded.evaluate(x, y, verbose=0, return_dict=True) == expected
