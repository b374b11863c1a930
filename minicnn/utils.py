"""``keras.utils``: the helpers keras.io's examples call around a model.

    y_train = keras.utils.to_categorical(y_train, 10)   # (60000,) labels -> (60000, 10) one-hot
    keras.utils.set_random_seed(42)
    x = keras.utils.normalize(x, axis=-1)               # rows scaled to unit L2 norm
    keras.utils.plot_model(model, "model.png", show_shapes=True)   # the layer graph (matplotlib)
"""

import numbers

import numpy as np

from .backend import set_random_seed

# plot_model comes from __getattr__ below (lazily: it needs matplotlib).
__all__ = ["to_categorical", "normalize", "set_random_seed", "plot_model"]  # noqa: F822


def to_categorical(x, num_classes=None):
    """Class labels -> one-hot rows, as keras.utils.to_categorical.

    x: integer labels of any shape (a trailing axis of size 1 is dropped, as Keras does), values
    in [0, num_classes). num_classes: None means max(x) + 1. Returns float64 (Keras's dtype) of
    shape x.shape + (num_classes,). Unlike Keras, a negative label (which NumPy would quietly
    put in the last column), a label >= num_classes or a non-integer value raises ValueError.
    """
    where = "to_categorical"
    labels = np.asarray(x)
    if labels.dtype == object or not (np.issubdtype(labels.dtype, np.number)
                                       or labels.dtype == np.bool_):
        raise TypeError(f"{where}: labels must be integers, got dtype {labels.dtype}.")
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_:
        finite = np.isfinite(labels)
        if not finite.all() or not np.equal(np.mod(labels[finite], 1), 0).all():
            raise ValueError(f"{where}: labels must be whole numbers (class indices), got "
                             "non-integer values; pass the class index of each sample.")
    labels = labels.astype(np.int64)
    shape = labels.shape
    if len(shape) > 1 and shape[-1] == 1:
        shape = shape[:-1]
    labels = labels.reshape(-1)
    if num_classes is None:
        if labels.size == 0:
            raise ValueError(f"{where}: no labels given and no num_classes to size the output.")
        num_classes = int(labels.max()) + 1
    elif (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
          or num_classes < 1):
        raise ValueError(f"{where}: num_classes must be a positive int, got {num_classes!r}.")
    num_classes = int(num_classes)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        bad = labels[(labels < 0) | (labels >= num_classes)][0]
        raise ValueError(f"{where}: label {bad} is outside [0, {num_classes - 1}] for "
                         f"num_classes={num_classes}. Labels must be class indices 0 .. "
                         "num_classes - 1.")
    categorical = np.zeros((labels.size, num_classes))
    categorical[np.arange(labels.size), labels] = 1
    return categorical.reshape(shape + (num_classes,))


def normalize(x, axis=-1, order=2):
    """x divided by its `order`-norm along `axis` (norms of 0 count as 1), as
    keras.utils.normalize: a new float array of x's shape."""
    x = np.asarray(x)
    norm = np.atleast_1d(np.linalg.norm(x, order, axis))
    norm[norm == 0] = 1
    return x / np.expand_dims(norm, -1 if axis is None else axis)


def __getattr__(name):
    """plot_model lives in minicnn/plot.py (matplotlib), loaded only when asked for, so that
    importing minicnn does not load matplotlib."""
    if name == "plot_model":
        from . import plot
        return plot.plot_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

