"""MNIST handwritten digits: 60,000 training and 10,000 test images, 28x28 grayscale.

``load_data()`` mirrors ``keras.datasets.mnist.load_data()``; the files are fetched and
verified by the shared machinery in :mod:`minicnn.datasets.download`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .download import Dataset, images_file, labels_file, load_dataset

__all__ = ["MNIST", "load_data"]

MNIST = Dataset(
    name="MNIST",
    subdir="mnist",
    files=(
        images_file("train-images-idx3-ubyte.gz",
                    "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db", 60000),
        labels_file("train-labels-idx1-ubyte.gz",
                    "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", 60000),
        images_file("t10k-images-idx3-ubyte.gz",
                    "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", 10000),
        labels_file("t10k-labels-idx1-ubyte.gz",
                    "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", 10000),
    ),
    mirrors=(
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
    ),
    mirrors_env="MINICNN_MNIST_MIRRORS",
)


def load_data(data_dir: str | os.PathLike | None = None,
              mirrors: str | Sequence[str] | None = None, verbose: int = 1):
    """Load MNIST as ``(x_train, y_train), (x_test, y_test)``, like Keras.

    Returns uint8 arrays: x_train ``(60000, 28, 28)``, y_train ``(60000,)`` with digits 0-9,
    x_test ``(10000, 28, 28)``, y_test ``(10000,)``; pixels 0 (background) to 255.
    data_dir: root cache folder (files go in ``<data_dir>/mnist/``); default
    ``$MINICNN_DATA_DIR``, else ``$XDG_CACHE_HOME/minicnn``, else ``~/.cache/minicnn``.
    mirrors: base URLs to download from, replacing the defaults and
    ``$MINICNN_MNIST_MIRRORS``. verbose: 0 silent, 1 progress bars on a terminal.
    Raises minicnn.datasets.DatasetDownloadError if the files are missing and no mirror works.
    """
    return load_dataset(MNIST, data_dir=data_dir, mirrors=mirrors, verbose=verbose)
