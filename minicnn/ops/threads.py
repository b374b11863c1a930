"""How many threads NumPy's BLAS may use while minicnn trains or predicts.

Why: minicnn uses the cores itself, one level up: minicnn/parallel.py splits each batch over
threads (one per core), and each of them calls BLAS. OpenBLAS's own worker threads would then
compete with those for the same cores, and they busy-wait for a while after each product:
history on the 2-core development machine, when Numba's parallel loops (since removed) were
the other pool: 22-72 ms per MNIST training step with 2 BLAS threads against 7.5 ms with 1.
So by default the products run on one BLAS thread (per calling thread) inside
``fit``/``predict``/``evaluate``/``train_on_batch``, and the previous setting is restored
afterwards (the user's own NumPy code is not affected).

``MINICNN_BLAS_THREADS=<n>`` overrides the default (``0`` leaves BLAS alone).

The thread count is changed through OpenBLAS's own ``openblas_set_num_threads``, found in the
library NumPy loaded (``numpy.libs/libscipy_openblas*.so`` in NumPy's wheels). With another
BLAS (MKL, Accelerate) nothing is changed.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os

import numpy as np

_api = None  # (get, set) ctypes functions, False when unavailable


def _find_openblas():
    global _api
    if _api is not None:
        return _api
    _api = False
    libs_dir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    candidates = sorted(glob.glob(os.path.join(libs_dir, "libscipy_openblas*.so*")))
    candidates += sorted(glob.glob(os.path.join(libs_dir, "libopenblas*.so*")))
    names = [("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
             ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
             ("openblas_get_num_threads", "openblas_set_num_threads")]
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)  # already loaded by NumPy: the same instance
        except OSError:
            continue
        for get_name, set_name in names:
            get = getattr(lib, get_name, None)
            set_ = getattr(lib, set_name, None)
            if get is not None and set_ is not None:
                get.restype = ctypes.c_int
                get.argtypes = []
                set_.restype = None
                set_.argtypes = [ctypes.c_int]
                _api = (get, set_)
                return _api
    return _api


def default_blas_threads():
    """BLAS threads minicnn uses while it computes: $MINICNN_BLAS_THREADS or 1 (0 = untouched)."""
    value = os.environ.get("MINICNN_BLAS_THREADS", "1")
    try:
        return max(0, int(value))
    except ValueError:
        return 1


def get_blas_threads():
    """OpenBLAS's current thread count, or None when NumPy does not use OpenBLAS."""
    api = _find_openblas()
    return api[0]() if api else None


@contextlib.contextmanager
def blas_threads(n=None):
    """Context manager: OpenBLAS uses n threads inside (default: default_blas_threads()).

    Restores the previous count on exit. No-op for n == 0 or without OpenBLAS.
    """
    n = default_blas_threads() if n is None else int(n)
    api = _find_openblas() if n > 0 else False
    if not api:
        yield
        return
    get, set_ = api
    previous = get()
    if previous == n:
        yield
        return
    set_(n)
    try:
        yield
    finally:
        set_(previous)
