"""Shared fixtures: a seeded generator, distinct-valued float64 inputs, the real MNIST folder."""

import os
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def rng():
    """A NumPy generator with a fixed seed, fresh for each test."""
    return np.random.default_rng(1234)


def distinct_values(shape, rng, low=-1.0, high=1.0):
    """float64 array of `shape` whose entries are all different and well separated, so max
    pooling has no ties and ReLU meets no kink within a finite-difference step."""
    size = int(np.prod(shape))
    values = np.linspace(low, high, size)
    # Keep every value >= 1e-3 away from 0 so ReLU(x) is smooth around each entry.
    values = np.where(np.abs(values) < 1e-3, 1e-3 * np.sign(values + 1e-12), values)
    return rng.permutation(values).reshape(shape)


def mnist_data_dir():
    """The data directory holding mnist/, as a user would set it (MINICNN_DATA_DIR).

    Order: $MINICNN_DATA_DIR, then ../shared/data next to the repository. Where neither has
    the files the test fails under CI (the data must be there) and skips elsewhere.
    """
    candidates = []
    if os.environ.get("MINICNN_DATA_DIR"):
        candidates.append(Path(os.environ["MINICNN_DATA_DIR"]))
    candidates.append(REPO_ROOT.parent / "shared" / "data")
    for candidate in candidates:
        if (candidate / "mnist" / "train-images-idx3-ubyte.gz").is_file():
            return candidate
    message = f"real MNIST not found in any of {[str(c) for c in candidates]}"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must provide it)")
    pytest.skip(message + "; set MINICNN_DATA_DIR to a folder holding mnist/")


@pytest.fixture
def mnist_dir(monkeypatch):
    """Points MINICNN_DATA_DIR at the real MNIST data and returns that directory."""
    directory = mnist_data_dir()
    monkeypatch.setenv("MINICNN_DATA_DIR", str(directory))
    return directory


@pytest.fixture(scope="session")
def mnist_subset():
    """(2,000 training images, their labels), 1,000 test images: real MNIST, scaled, NHWC."""
    from minicnn.datasets import mnist

    (x_train, y_train), (x_test, _) = mnist.load_data(data_dir=mnist_data_dir(), verbose=0)

    def scale(x):
        return (x.astype("float32") / 255).reshape(-1, 28, 28, 1)
    return (scale(x_train[:2000]), y_train[:2000]), scale(x_test[:1000])


@pytest.fixture(scope="session")
def trained_tutorial(mnist_subset):
    """The tutorial's model (seed 0) after one epoch on mnist_subset's 2,000 training images.
    Shared by several test files: load a copy (save/load_model) before training it further."""
    from test_models import tutorial_model

    import minicnn

    (x, y), _ = mnist_subset
    minicnn.set_random_seed(0)
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, verbose=0)
    return model
