"""Helpers for the web-server tests: a quickly trained model file, a server on a free loopback
port, JSON requests, and MNIST digits drawn as canvas-like PNG data URLs.

Imported by tests/test_server.py, test_server_load.py and test_browser.py (not a conftest,
which the lead owns). The model is trained once per test session, whichever file asks first.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import json
import threading

import numpy as np
from PIL import Image
from test_models import tutorial_model

import minicnn
from minicnn.datasets import mnist
from minicnn.server import make_server

TRAIN_IMAGES = 10_000  # one epoch of the tutorial model on these: ~92 % test accuracy, ~10 s
SEED = 0
_CACHE: dict = {}


def mnist_arrays():
    """Real MNIST as the tutorial prepares it: ((x_train, y_train), (x_test, y_test)),
    x float32 (N, 28, 28, 1) in [0, 1], y int labels. Loaded once."""
    if "data" not in _CACHE:
        from conftest import mnist_data_dir

        (x_train, y_train), (x_test, y_test) = mnist.load_data(data_dir=mnist_data_dir(),
                                                               verbose=0)
        scale = np.float32(1 / 255)
        _CACHE["data"] = ((x_train[:TRAIN_IMAGES, :, :, None] * scale, y_train[:TRAIN_IMAGES]),
                          (x_test[:, :, :, None] * scale, y_test))
    return _CACHE["data"]


def trained_model_path(tmp_path_factory):
    """Train the tutorial model 1 epoch on the first TRAIN_IMAGES real MNIST digits (fixed
    seed), save it with model.save, and return the file's path. Done once per session."""
    if "model_path" not in _CACHE:
        (x_train, y_train), _ = mnist_arrays()
        minicnn.set_random_seed(SEED)
        model = tutorial_model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"])
        model.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0)
        path = tmp_path_factory.mktemp("model") / "mnist_cnn.npz"
        model.save(path)
        _CACHE["model_path"] = path
    return _CACHE["model_path"]


@contextlib.contextmanager
def running_server(model, **options):
    """Serve `model` (path, Sequential or DigitPredictor) on 127.0.0.1 at a free port in a
    background thread; yields the server (server.server_address, server.url); stops it after."""
    server = make_server(model, host="127.0.0.1", port=0, **options)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def request(server, method, path, body=None, headers=None, connection=None, timeout=30):
    """One HTTP request -> (status, parsed JSON or raw bytes, response headers). `body` may be
    bytes or a JSON-serialisable object."""
    own = connection is None
    if own:
        connection = http.client.HTTPConnection(*server.server_address[:2], timeout=timeout)
    headers = dict(headers or {})
    if body is not None and not isinstance(body, bytes):
        body = json.dumps(body).encode("utf-8")
        headers.setdefault("Content-Type", "application/json")
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        if response.getheader("Content-Type", "").startswith("application/json"):
            data = json.loads(data)
        return response.status, data, dict(response.getheaders())
    finally:
        if own:
            connection.close()


def digit_as_drawing(digit: np.ndarray, size: int = 280, margin: int = 40) -> np.ndarray:
    """An MNIST digit (28, 28[, 1]) float in [0, 1] -> (size, size) uint8 dark ink on white paper,
    enlarged (bicubic) into the box inside `margin`: what a canvas drawing looks like."""
    inner = size - 2 * margin
    ink = Image.fromarray(np.asarray(digit).reshape(28, 28).astype(np.float32) * 255)
    ink = np.asarray(ink.resize((inner, inner), Image.Resampling.BICUBIC)).clip(0, 255)
    paper = np.full((size, size), 255.0)
    paper[margin:margin + inner, margin:margin + inner] -= ink
    return paper.round().astype(np.uint8)


def png_data_url(gray_or_rgba: np.ndarray) -> str:
    """uint8 (H, W) gray or (H, W, 4) RGBA -> 'data:image/png;base64,...'."""
    buffer = io.BytesIO()
    Image.fromarray(gray_or_rgba).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
