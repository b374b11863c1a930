"""Load the real MNIST through the user-facing MINICNN_DATA_DIR mechanism, with no network.

The data is found via $MINICNN_DATA_DIR if set, else ``<repo>/../shared/data`` if it has
``mnist/``. Without either the test fails under CI (CI is set) and skips elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from minicnn.datasets import download as dl
from minicnn.datasets import mnist

REPO_ROOT = Path(__file__).resolve().parents[1]

# Published per-digit counts of MNIST (digits 0..9).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def find_data_dir() -> Path | None:
    env = os.environ.get("MINICNN_DATA_DIR")
    if env and (Path(env) / "mnist").is_dir():
        return Path(env)
    shared = (REPO_ROOT.parent / "shared" / "data").resolve()
    if (shared / "mnist").is_dir():
        return shared
    return None


@pytest.fixture
def mnist_data_dir(monkeypatch):
    found = find_data_dir()
    if found is None:
        msg = ("real MNIST not found: set MINICNN_DATA_DIR to a folder holding mnist/, or put "
               f"it in {REPO_ROOT.parent / 'shared' / 'data'}")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    monkeypatch.setenv("MINICNN_DATA_DIR", str(found))
    return found


def test_real_mnist_loads_from_data_dir_without_network(mnist_data_dir, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("a valid cache must not touch the network")

    monkeypatch.setattr(dl, "_make_session", no_network)
    before = sorted(os.listdir(mnist_data_dir / "mnist"))

    (x_train, y_train), (x_test, y_test) = mnist.load_data(verbose=0)

    assert x_train.shape == (60000, 28, 28) and x_train.dtype == np.uint8
    assert y_train.shape == (60000,) and y_train.dtype == np.uint8
    assert x_test.shape == (10000, 28, 28) and x_test.dtype == np.uint8
    assert y_test.shape == (10000,) and y_test.dtype == np.uint8
    assert np.bincount(y_train, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(y_test, minlength=10).tolist() == TEST_COUNTS
    assert y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert x_train.min() == 0 and x_train.max() == 255
    # Digits are white on black: the border is background, the centre is ink.
    assert x_train[:, 0, :].mean() < 0.1 and x_train[:, :, 0].mean() < 0.1
    assert x_train[:, 10:18, 10:18].mean() > x_train.mean() > 20
    assert sorted(os.listdir(mnist_data_dir / "mnist")) == before  # nothing written there
