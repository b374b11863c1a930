"""Fashion-MNIST: 60,000 training and 10,000 test images of clothing, 28x28 grayscale.

Same format as MNIST; labels: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat,
5 Sandal, 6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot (see ``CLASS_NAMES``).
``load_data()`` mirrors ``keras.datasets.fashion_mnist.load_data()``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from .download import Dataset, images_file, labels_file, load_dataset

__all__ = ["CLASS_NAMES", "FASHION_MNIST", "load_data"]

CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")

FASHION_MNIST = Dataset(
    name="Fashion-MNIST",
    subdir="fashion-mnist",
    files=(
        images_file("train-images-idx3-ubyte.gz",
                    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", 60000),
        labels_file("train-labels-idx1-ubyte.gz",
                    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", 60000),
        images_file("t10k-images-idx3-ubyte.gz",
                    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", 10000),
        labels_file("t10k-labels-idx1-ubyte.gz",
                    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", 10000),
    ),
    mirrors=(
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    mirrors_env="MINICNN_FASHION_MNIST_MIRRORS",
)


def load_data(data_dir: str | os.PathLike | None = None,
              mirrors: str | Sequence[str] | None = None, verbose: int = 1):
    """Load Fashion-MNIST as ``(x_train, y_train), (x_test, y_test)``, like Keras.

    Returns uint8 arrays: x_train ``(60000, 28, 28)``, y_train ``(60000,)`` with classes 0-9
    (names in ``CLASS_NAMES``), x_test ``(10000, 28, 28)``, y_test ``(10000,)``.
    data_dir: root cache folder (files go in ``<data_dir>/fashion-mnist/``); default
    ``$MINICNN_DATA_DIR``, else ``$XDG_CACHE_HOME/minicnn``, else ``~/.cache/minicnn``.
    mirrors: base URLs to download from, replacing the defaults and
    ``$MINICNN_FASHION_MNIST_MIRRORS``. verbose: 0 silent, 1 progress bars on a terminal.
    Raises minicnn.datasets.DatasetDownloadError if the files are missing and no mirror works.
    """
    return load_dataset(FASHION_MNIST, data_dir=data_dir, mirrors=mirrors, verbose=verbose)
