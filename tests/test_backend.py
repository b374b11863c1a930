"""The backend switch: the readable NumPy ops are the math that runs.

- Training the tutorial model from the same weights on both backends gives the same losses
  and weights (float64: relative 1e-9; float32: 1e-4).
- On the reference backend no compiled kernel runs at all: a fresh process that trains,
  evaluates and predicts with MINICNN_BACKEND=reference leaves every Numba dispatcher
  uncompiled (Numba compiles on the first call, so an uncompiled kernel was never called).
- Editing the reference changes training: a changed reference.relu_forward shows in fit.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

import minicnn
from minicnn import layers, models, ops
from minicnn.ops import reference


def tutorial_model(dtype):
    model = models.Sequential([
        layers.Conv2D(25, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(64, (3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ], dtype=dtype)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def train(backend, dtype, weights, x, y):
    minicnn.set_random_seed(21)
    model = tutorial_model(dtype)
    model.set_weights(weights)
    with ops.backend(backend):
        history = model.fit(x, y, epochs=2, batch_size=32, verbose=0)
        predictions = model.predict(x[:50], verbose=0)
    return history.history, model.get_weights(), predictions


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 1e-4)])
def test_both_backends_train_the_tutorial_model_alike(dtype, rtol, rng):
    x = rng.random((96, 28, 28, 1)).astype(dtype)
    y = rng.integers(0, 10, 96)
    minicnn.set_random_seed(20)
    weights = tutorial_model(dtype).get_weights()
    fast_history, fast_weights, fast_pred = train("fast", dtype, weights, x, y)
    ref_history, ref_weights, ref_pred = train("reference", dtype, weights, x, y)
    np.testing.assert_allclose(ref_history["loss"], fast_history["loss"], rtol=rtol)
    assert ref_history["accuracy"] == fast_history["accuracy"]
    moved = False
    for w_ref, w_fast, w0 in zip(ref_weights, fast_weights, weights, strict=True):
        scale = float(np.max(np.abs(w_fast)))
        np.testing.assert_allclose(w_ref, w_fast, rtol=rtol, atol=rtol * scale)
        moved |= not np.allclose(w_fast, w0)
    assert moved  # six steps of Adam really changed the weights
    np.testing.assert_allclose(ref_pred, fast_pred, rtol=rtol, atol=rtol * 1e-3)


NEW_LAYERS_MODEL = """[
    layers.Rescaling(1 / 0.9, offset=-0.1, input_shape=(12, 12, 1)),
    layers.Conv2D(6, 3, use_bias=False),  # a bias before BatchNormalization gets no gradient
    layers.BatchNormalization(),
    layers.Activation("relu"),
    layers.MaxPooling2D(2),
    layers.Conv2D(8, 3, padding="same", activation="gelu"),
    layers.AveragePooling2D(2, padding="same"),
    layers.Dropout(0.25),
    layers.LeakyReLU(),
    layers.GlobalMaxPooling2D(keepdims=True),
    layers.GlobalAveragePooling2D(),
    layers.BatchNormalization(),
    layers.ReLU(max_value=6.0),
    layers.Dense(6, activation="selu"),
    layers.Reshape((2, 3)),
    layers.Flatten(),
    layers.Dense(5, activation="softmax"),
]"""

def new_layers_model(dtype):
    model = models.Sequential(eval(NEW_LAYERS_MODEL, {"layers": layers}), dtype=dtype)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-9), ("float32", 1e-4)])
def test_both_backends_train_the_new_layers_alike(dtype, rtol, rng):
    """Issue 10's layers (batch norm, dropout, average pooling, gelu: compiled on the fast
    backend) train the same on both backends, Dropout drawing the same masks."""
    x = rng.random((48, 12, 12, 1)).astype(dtype)
    y = rng.integers(0, 5, 48)
    minicnn.set_random_seed(30)
    weights = new_layers_model(dtype).get_weights()
    runs = []
    for backend in ("fast", "reference"):
        minicnn.set_random_seed(31)
        model = new_layers_model(dtype)
        model.set_weights(weights)
        with ops.backend(backend):
            history = model.fit(x, y, epochs=2, batch_size=16, verbose=0)
            runs.append((history.history, model.get_weights(), model.predict(x, verbose=0)))
    (fast_history, fast_weights, fast_pred), (ref_history, ref_weights, ref_pred) = runs
    np.testing.assert_allclose(ref_history["loss"], fast_history["loss"], rtol=rtol)
    for w_ref, w_fast in zip(ref_weights, fast_weights, strict=True):
        scale = float(np.max(np.abs(w_fast)))
        np.testing.assert_allclose(w_ref, w_fast, rtol=rtol, atol=rtol * scale)
    np.testing.assert_allclose(ref_pred, fast_pred, rtol=rtol, atol=rtol * 1e-3)


CHILD = r"""
import json, os, sys
import numba
import numpy as np
import minicnn
from minicnn import layers, models, ops, optimizers
from minicnn.ops import kernels

model = models.Sequential([
    layers.Conv2D(6, 3, activation="relu", input_shape=(12, 12, 1)),
    layers.MaxPooling2D(2),
    layers.Conv2D(8, 3, padding="same", activation="relu"),
    layers.MaxPooling2D(2, padding="same"),
    layers.Flatten(),
    layers.Dense(5, activation="softmax"),
])
# Issue 10's layers, each with its compiled kernels on the fast backend.
new_layers = models.Sequential(NEW_LAYERS_MODEL)
rng = np.random.default_rng(0)
x, y = rng.random((64, 12, 12, 1)).astype("float32"), rng.integers(0, 5, 64)
for m in (model, new_layers):
    m.compile(optimizer=optimizers.Adam(), loss="sparse_categorical_crossentropy",
              metrics=["accuracy"])
    m.fit(x, y, epochs=1, batch_size=16, verbose=0)
    m.evaluate(x, y, verbose=0)
    m.predict(x, verbose=0)
dispatchers = [obj for obj in vars(kernels).values()
               if isinstance(obj, numba.core.registry.CPUDispatcher)]
print(json.dumps({"backend": ops.get_backend(), "dispatchers": len(dispatchers),
                  "compiled": {d.__name__: len(d.signatures) for d in dispatchers
                               if d.signatures}}))
"""


def run_child(backend):
    env = {**os.environ, "MINICNN_BACKEND": backend, "PYTHONPATH": str(REPO_ROOT)}
    program = CHILD.replace("NEW_LAYERS_MODEL", NEW_LAYERS_MODEL)
    proc = subprocess.run([sys.executable, "-c", program], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_reference_backend_calls_no_compiled_kernel():
    report = run_child("reference")
    assert report["backend"] == "reference" and report["dispatchers"] >= 9
    assert report["compiled"] == {}
    # Control: the same program on the fast backend does compile (call) the kernels.
    fast = run_child("fast")
    assert {"_im2col", "_col2im", "_maxpool2d_tiled", "_bias_act", "_adam", "_avgpool2d",
            "_avgpool2d_backward", "_dropout", "_dropout_backward", "_channel_sums",
            "_centered_square_sums", "_scale_shift", "_batchnorm_grad_sums", "_batchnorm_dx",
            "_relu", "_relu_backward", "_gelu", "_gelu_backward"} <= set(fast["compiled"])


def test_a_bad_backend_name_in_the_environment_is_a_clear_error():
    env = {**os.environ, "MINICNN_BACKEND": "gpu", "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run([sys.executable, "-c", "import minicnn"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert "MINICNN_BACKEND: unknown backend 'gpu'; choose one of 'fast', 'reference'" in \
        proc.stderr


def test_editing_the_reference_changes_training(rng, monkeypatch):
    """A learner's edit of reference.py is what runs: here ReLU becomes a leaky ReLU."""
    x = rng.random((32, 28, 28, 1)).astype("float64")
    y = rng.integers(0, 10, 32)
    minicnn.set_random_seed(2)
    weights = tutorial_model("float64").get_weights()
    _, plain, _ = train("reference", "float64", weights, x, y)
    relu_forward, relu_backward = reference.ACTIVATIONS["relu"]
    monkeypatch.setitem(reference.ACTIVATIONS, "relu", (
        lambda z: np.where(z > 0, z, 0.1 * z),
        lambda dy, z, y: np.where(z > 0, dy, 0.1 * dy)))
    _, leaky, _ = train("reference", "float64", weights, x, y)
    assert not np.allclose(leaky[0], plain[0])
    monkeypatch.setitem(reference.ACTIVATIONS, "relu", (relu_forward, relu_backward))
    _, again, _ = train("reference", "float64", weights, x, y)
    for a, b in zip(again, plain, strict=True):
        np.testing.assert_array_equal(a, b)


def test_switching_backend_between_forward_and_backward_is_refused(rng):
    model = tutorial_model("float32")
    x = rng.random((4, 28, 28, 1)).astype("float32")
    y_pred, tape = model.forward(x, training=True)
    with ops.backend("reference"), pytest.raises(RuntimeError, match="backend was changed"):
        model.backward(np.ones_like(y_pred), tape)
