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

# `keras.datasets.cifar10` and other Keras data sets minicnn lacks: a clear error, not a bare
# AttributeError (minicnn/_namespace.py), also when this module is imported directly.
import sys as _sys  # noqa: E402

from .._namespace import install_missing_names as _install_missing_names  # noqa: E402

_install_missing_names(_sys.modules[__name__], "datasets")
