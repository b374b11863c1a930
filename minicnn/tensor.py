"""What ``model(x)``, ``layer(x)``, ``tf.nn.softmax`` and loss objects return: NumPy values that
also answer TensorFlow's ``.numpy()``, so tutorial code written for eager tensors runs as it is.

    predictions = model(x_train[:1]).numpy()          # TensorFlow's quickstart, unchanged
    loss_fn(y_train[:1], predictions).numpy()

``Tensor`` is an ndarray subclass: everything NumPy does with it works and gives what it gives
for a plain array (full reductions and single elements are NumPy scalars, never 0-d Tensors,
so they hash, compare and format as usual; ``np.asarray(t)`` is a plain array). Arrays derived
elementwise from a Tensor stay Tensors, as TensorFlow's do, so ``(model(x) * 2).numpy()`` works
too. ``.numpy()`` returns a plain ndarray *copy*: TensorFlow's tensors are immutable, so code
that edits the result of ``.numpy()`` expects the tensor to stay as it was.

``Scalar`` is a float subclass for single numbers (a loss value, a metric result): a Python
float everywhere (JSON, formatting, ``math.isfinite``), plus ``.numpy()`` giving the NumPy
scalar of the dtype it was computed in. Arithmetic on it gives plain floats.

``model.predict`` returns plain ndarrays, as Keras's does.
"""

import numpy as np

__all__ = ["Tensor", "Scalar", "as_tensor"]


class Tensor(np.ndarray):
    """An ndarray with TensorFlow's ``.numpy()``; see the module docstring."""

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # A reduction to one number gives a NumPy scalar, as for a plain ndarray (NumPy only
        # does so by itself for the exact ndarray type).
        if return_scalar or array.ndim == 0:
            return array[()]
        return super().__array_wrap__(array, context)  # (NumPy 1.x takes no return_scalar)

    def numpy(self):
        """A plain ndarray copy of the values (a NumPy scalar for a 0-d Tensor)."""
        plain = np.array(self.view(np.ndarray))
        return plain[()] if plain.ndim == 0 else plain


class Scalar(float):
    """A float with ``.numpy()`` (the value as a NumPy scalar of the dtype it was computed in)."""

    __slots__ = ("_dtype",)

    def __new__(cls, value, dtype=np.float32):
        self = super().__new__(cls, value)
        self._dtype = np.dtype(dtype)
        return self

    def numpy(self):
        """The value as a NumPy scalar, e.g. np.float32(2.3025851)."""
        return self._dtype.type(float(self))

    def __reduce__(self):
        return (Scalar, (float(self), self._dtype.str))


def as_tensor(array):
    """A Tensor holding `array` (no copy when it is already an ndarray)."""
    return np.asarray(array).view(Tensor)
