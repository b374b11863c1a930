"""Issue 10's layers leave for Keras and ONNX Runtime and come back: .keras files minicnn
writes open in Keras 3 (JAX) and predict the same; files Keras writes load in minicnn; ONNX
exports (Dropout as the identity, BatchNormalization in inference form) predict the same in
ONNX Runtime."""

import os

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras
import numpy as np
import onnx
import onnxruntime as ort
import pytest

import minicnn
from minicnn import export, layers, models

KL = keras.layers
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def image_model():
    """A CIFAR-style model using every new layer that works on images."""
    return models.Sequential([
        layers.Input(shape=(12, 12, 3), name="images"),
        layers.Rescaling(1 / 127.5, offset=-1.0),
        layers.Conv2D(8, 3, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.Activation("relu"),
        layers.AveragePooling2D(pool_size=(3, 3), strides=(2, 2), padding="same"),
        layers.Conv2D(12, 3, activation="elu"),
        layers.BatchNormalization(momentum=0.9, epsilon=1e-5, scale=False),
        layers.ReLU(max_value=6.0),
        layers.MaxPool2D(),
        layers.Dropout(0.4, noise_shape=(None, 1, 1, 12)),
        layers.GlobalAveragePooling2D(keepdims=True),
        layers.Reshape((12,)),
        layers.Dense(16, activation="gelu"),
        layers.BatchNormalization(),
        layers.LeakyReLU(negative_slope=0.1),
        layers.Dropout(0.2),
        layers.Dense(5, activation="softmax"),
    ])


def trained(model, x, rng):
    """A few training steps so that every BatchNormalization has moved its statistics."""
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    minicnn.set_random_seed(0)
    model.fit(x, rng.integers(0, model.output_shape[-1], len(x)), epochs=2, batch_size=8,
              verbose=0)
    return model


@pytest.fixture
def images(rng):
    return rng.integers(0, 256, (24, 12, 12, 3)).astype(np.float32)


def test_keras_opens_our_file_with_every_new_layer(images, rng, tmp_path):
    model = trained(image_model(), images, rng)
    model.save(tmp_path / "m.keras")
    theirs = keras.models.load_model(tmp_path / "m.keras")
    body = model.layers  # neither lists the InputLayer among a Sequential's layers
    assert [type(layer).__name__ for layer in theirs.layers] == [
        type(layer).__name__ for layer in body]
    assert [layer.name for layer in theirs.layers] == [layer.name for layer in body]
    for ours, keras_weight in zip(model.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, np.asarray(keras_weight))
    np.testing.assert_allclose(np.asarray(theirs.predict(images, verbose=0)),
                               model.predict(images, verbose=0), rtol=1e-4, atol=1e-5)
    again = models.load_model(tmp_path / "m.keras")  # and back: the same predictions
    np.testing.assert_array_equal(again.predict(images, verbose=0),
                                  model.predict(images, verbose=0))


def test_a_keras_model_with_the_new_layers_loads_in_minicnn(rng, tmp_path):
    theirs = keras.Sequential([
        keras.Input(shape=(10, 10, 2)),
        KL.Rescaling(0.5, offset=0.1),
        KL.Conv2D(6, 3, activation="swish"),
        KL.BatchNormalization(center=False),
        KL.LeakyReLU(),
        KL.AvgPool2D(2),
        KL.Dropout(0.3, seed=4),
        KL.GlobalMaxPooling2D(),
        KL.Dense(8, activation="hard_sigmoid"),
        KL.BatchNormalization(axis=-1, momentum=0.95),
        KL.ReLU(negative_slope=0.05, threshold=0.1),
        KL.Reshape((2, 4)),
        KL.Softmax(axis=1),
        KL.Flatten(),
        KL.Dense(3, activation="softmax"),
    ])
    for layer in theirs.layers:  # non-trivial moving statistics
        if isinstance(layer, KL.BatchNormalization):
            weights = layer.get_weights()
            layer.set_weights([w + rng.random(w.shape).astype(np.float32) for w in weights])
    theirs.save(tmp_path / "k.keras")
    ours = models.load_model(tmp_path / "k.keras")
    assert [type(layer).__name__ for layer in ours.layers] == [
        type(layer).__name__ for layer in theirs.layers]
    assert ours.layers[6].output_shape == (None, 6)
    assert ours.layers[1].activation == "silu" and not ours.layers[2].center
    assert (ours.layers[5].seed, ours.layers[8].momentum) == (4, 0.95)
    x = rng.random((6, 10, 10, 2), dtype=np.float32)
    np.testing.assert_allclose(ours.predict(x, verbose=0),
                               np.asarray(theirs.predict(x, verbose=0)), rtol=1e-4, atol=1e-6)


def test_a_keras_file_with_batchnorm_options_minicnn_lacks_is_refused(tmp_path):
    theirs = keras.Sequential([keras.Input(shape=(4,)), KL.BatchNormalization(synchronized=False,
                                                                              renorm=True)])
    theirs.save(tmp_path / "renorm.keras")
    with pytest.raises(ValueError, match="sets BatchNormalization renorm=True"):
        models.load_model(tmp_path / "renorm.keras")


def test_onnx_export_of_every_new_layer_predicts_the_same(images, rng, tmp_path):
    model = trained(image_model(), images, rng)
    path = export.to_onnx(model, tmp_path / "m.onnx")
    ops = {node.op_type for node in onnx.load(path).graph.node}
    assert {"BatchNormalization", "AveragePool", "GlobalAveragePool", "Erf", "LeakyRelu"} <= ops
    assert "Dropout" not in ops  # the identity at inference
    np.testing.assert_allclose(run_onnx(path, images), model.predict(images, verbose=0),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("build", [
    lambda: [layers.Input(shape=(6, 6, 4)), layers.BatchNormalization(axis=1),
             layers.GlobalMaxPooling2D()],
    lambda: [layers.Input(shape=(5, 7)), layers.BatchNormalization(), layers.Dense(3),
             layers.Softmax(axis=1)],
    lambda: [layers.Input(shape=(7, 7, 2)), layers.AvgPool2D(2, strides=1, padding="same"),
             layers.GlobalAvgPool2D()],
    lambda: [layers.Input(shape=(8, 8, 2)), layers.Conv2D(3, 3), layers.GlobalMaxPool2D(),
             layers.Reshape((3, 1)), layers.ReLU(threshold=0.3, negative_slope=0.2,
                                                  max_value=1.5)],
    lambda: [layers.Input(shape=(12,)), layers.Reshape((2, 2, 3)), layers.Conv2D(2, 1),
             layers.Flatten()],
    lambda: [layers.Input(shape=(9,)), layers.ReLU(max_value=0.5), layers.Dense(4),
             layers.ReLU(negative_slope=0.3)],
    lambda: [layers.Input(shape=(4, 4, 3)), layers.Conv2D(2, 2), layers.GlobalAveragePooling2D(
        keepdims=True), layers.Conv2D(3, 1), layers.Flatten()],
], ids=["bn axis 1 on images", "bn on sequences + softmax axis 1", "avgpool same",
        "relu options", "reshape into images", "clip and leaky", "keepdims then conv"])
def test_onnx_of_each_layer_variant(build, rng, tmp_path):
    model = models.Sequential(build())
    for layer in model.layers:
        for value in layer.params.values():
            value[...] = rng.random(value.shape) + 0.5
    x = rng.standard_normal((5, *model.input_shape[1:])).astype(np.float32)
    out = run_onnx(export.to_onnx(model, tmp_path / "m.onnx"), x)
    assert out.shape == (5, *model.output_shape[1:])
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", sorted(minicnn.ops.reference.ACTIVATIONS))
def test_onnx_of_every_activation(name, rng, tmp_path):
    model = models.Sequential([layers.Input(shape=(6,)), layers.Dense(5, activation=name),
                               layers.Activation(name)])
    x = (rng.standard_normal((7, 6)) * 0.5).astype(np.float32)  # exp(exp(x)) stays finite
    out = run_onnx(export.to_onnx(model, tmp_path / "m.onnx"), x)
    np.testing.assert_allclose(out, model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
