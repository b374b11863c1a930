"""Data sets in the Keras style: ``minicnn.datasets.mnist.load_data()``,
``minicnn.datasets.fashion_mnist.load_data()`` and ``minicnn.datasets.cifar10.load_data()``,
plus the IDX reader and the download machinery they share."""

from . import cifar10, fashion_mnist, mnist
from .cifar10 import CIFARFormatError
from .download import (
    CacheDirectoryError,
    Dataset,
    DatasetDownloadError,
    DatasetFile,
    DatasetLockTimeoutError,
    get_data_dir,
    load_dataset,
)
from .idx import IDXFormatError, read_idx

__all__ = [
    "CIFARFormatError",
    "CacheDirectoryError",
    "Dataset",
    "DatasetDownloadError",
    "DatasetFile",
    "DatasetLockTimeoutError",
    "IDXFormatError",
    "cifar10",
    "fashion_mnist",
    "get_data_dir",
    "load_dataset",
    "mnist",
    "read_idx",
]
