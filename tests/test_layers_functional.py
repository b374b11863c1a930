"""Issue 10's layers in functional graphs (a CIFAR ResNet's residual blocks): gradients through
BatchNormalization at a fork, the same training over two threads as on one, and the model in
real Keras and ONNX Runtime."""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras
import numpy as np
import onnxruntime as ort
import pytest
from conftest import distinct_values

import minicnn
from minicnn import export, gradcheck, layers, models, parallel
from minicnn.functional import Input
from minicnn.models import Model

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def resnet(dtype=None, dropout=0.0):
    """Two residual blocks (conv-BN-ReLU-conv-BN + shortcut, ReLU), as Keras's CIFAR examples
    build them, then average and global average pooling."""
    def conv_bn(x, filters, strides=1):
        x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                          dtype=dtype)(x)
        return layers.BatchNormalization(dtype=dtype)(x)

    inputs = Input(shape=(8, 8, 3), dtype=dtype)
    x = layers.Rescaling(1 / 255, dtype=dtype)(inputs)
    x = layers.Activation("relu", dtype=dtype)(conv_bn(x, 4))
    for _ in range(2):  # identity shortcuts
        y = layers.ReLU(dtype=dtype)(conv_bn(x, 4))
        y = conv_bn(y, 4)
        x = layers.Activation("relu", dtype=dtype)(layers.Add(dtype=dtype)([y, x]))
    x = layers.AveragePooling2D(2, dtype=dtype)(x)
    x = layers.GlobalAveragePooling2D(dtype=dtype)(x)
    if dropout:
        x = layers.Dropout(dropout, dtype=dtype)(x)
    outputs = layers.Dense(3, activation="softmax", dtype=dtype)(x)
    return Model(inputs, outputs, name="resnet")


def data(rng, n=48, dtype="float32"):
    y = rng.integers(0, 3, n)
    x = rng.random((n, 8, 8, 3)).astype(dtype) * 100
    for i, label in enumerate(y):
        x[i, :, :, label] += 150
    return x, y


def test_resnet_gradients_through_batchnorm_and_the_shortcuts(rng):
    # Seeded: with some initial weights the 1e-4 step below moves a pre-activation across
    # ReLU's kink after BatchNormalization, and the finite difference (not the gradient) is off.
    minicnn.set_random_seed(0)
    model = resnet("float64", dropout=0.3)
    model.compile(loss="sparse_categorical_crossentropy")
    x = distinct_values((4, 8, 8, 3), rng, 0, 255)
    # Pixel-sized inputs: a step of 1e-4 (not 1e-6) keeps the loss difference far above
    # float64 rounding (the loss moves by ~1e-3 per unit of x after Rescaling(1/255)).
    errors = gradcheck(model, x, y=np.array([0, 2, 1, 1]), num_checks=20, eps=1e-4)
    assert max(errors.values()) < 1e-6, errors


@pytest.mark.parametrize("dtype, rtol", [("float32", 2e-4), ("float64", 1e-10)])
def test_resnet_over_two_threads_trains_as_on_one(dtype, rtol, rng, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_FLOPS_PER_SHARD", 0)
    x, y = data(rng, dtype=dtype)
    runs = []
    for threads in (1, 2):
        minicnn.set_random_seed(2)
        model = resnet(dtype)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.strategy.threads = threads
        assert model.strategy.shards_for(16, model.flops()) == threads
        history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        runs.append((history.history, model.get_weights()))
    (h1, w1), (h2, w2) = runs
    np.testing.assert_allclose(h2["loss"], h1["loss"], rtol=rtol)
    for a, b in zip(w1, w2, strict=True):
        np.testing.assert_allclose(b, a, rtol=rtol, atol=rtol * float(np.abs(a).max()))


def test_resnet_in_keras_and_onnx_runtime_predicts_the_same(rng, tmp_path):
    x, y = data(rng)
    minicnn.set_random_seed(3)
    model = resnet(dropout=0.2)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=2, batch_size=16, verbose=0)
    ours = model.predict(x, verbose=0)
    model.save(tmp_path / "resnet.keras")
    theirs = keras.models.load_model(tmp_path / "resnet.keras")
    np.testing.assert_allclose(np.asarray(theirs.predict(x, verbose=0)), ours, rtol=1e-4,
                               atol=1e-6)
    session = ort.InferenceSession(str(export.to_onnx(model, tmp_path / "resnet.onnx")),
                                   providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input": x})[0], ours, rtol=1e-4, atol=1e-6)
    again = models.load_model(tmp_path / "resnet.keras")
    np.testing.assert_array_equal(again.predict(x, verbose=0), ours)
