"""Process-wide settings: the random generator and the float dtypes minicnn accepts.

Keras keeps the same kind of global state (`keras.utils.set_random_seed`, `keras.backend.floatx`).
One generator drives weight initialisation and shuffling, so one seed fixes a whole run.
"""

import random

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
DEFAULT_FLOATX = np.dtype(np.float32)

_rng = np.random.default_rng()


def set_random_seed(seed):
    """Seed minicnn's generator (and Python's and NumPy's legacy ones) so runs repeat bit for bit.

    seed: a non-negative int. Weight initialisation, shuffling and validation splits all draw
    from this one generator, in a fixed order.
    """
    global _rng
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise TypeError(
            f"set_random_seed: seed must be a non-negative int, got {seed!r}. "
            "Pass e.g. set_random_seed(42)."
        )
    random.seed(int(seed))
    np.random.seed(int(seed) % 2**32)
    _rng = np.random.default_rng(int(seed))


def get_rng():
    """The generator every random draw in minicnn uses (`numpy.random.Generator`)."""
    return _rng


def standardize_dtype(dtype, where):
    """Turn a dtype spec (None, 'float32', np.float64, ...) into float32 or float64.

    None means the default, float32. `where` names the caller for the error message.
    """
    if dtype is None:
        return DEFAULT_FLOATX
    try:
        resolved = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(
            f"{where}: dtype {dtype!r} is not a NumPy dtype; use 'float32' (training) "
            "or 'float64' (gradient checks)."
        ) from exc
    if resolved not in FLOAT_DTYPES:
        raise ValueError(
            f"{where}: dtype must be float32 or float64, got {resolved}. "
            "Use 'float32' for training or 'float64' for gradient checks."
        )
    return resolved
