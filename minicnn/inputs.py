"""Checks and conversions of user data at the model's boundary (fit, evaluate, predict).

Everything is checked once, here, so layers and kernels can trust their inputs, and each
message says what was received, what was expected and how to fix it.
"""

import numbers
import warnings

import numpy as np

from . import arguments
from .losses import (
    BinaryCrossentropy,
    CategoricalCrossentropy,
    Huber,
    MeanAbsoluteError,
    MeanSquaredError,
    SparseCategoricalCrossentropy,
)

REGRESSION_LOSSES = (MeanSquaredError, MeanAbsoluteError, Huber)


def check_verbose(verbose, where):
    """0 (silent), 1 (progress bar) or 2 (one line per epoch); 'auto' means 1, as Keras."""
    if isinstance(verbose, str) and verbose == "auto":
        return 1
    if (isinstance(verbose, (bool, np.bool_)) or not isinstance(verbose, numbers.Integral)
            or verbose not in (0, 1, 2)):
        raise ValueError(f"{where}: verbose must be 0, 1, 2 or 'auto', got {verbose!r}.")
    return int(verbose)


def as_array(data, arg, where):
    """np.asarray with a clear error for ragged lists, strings and objects."""
    if data is None:
        raise ValueError(f"{where}: {arg} is None; pass a NumPy array.")
    try:
        array = np.asarray(data)
    except ValueError as exc:
        raise ValueError(
            f"{where}: {arg} could not be turned into an array ({exc}). Pass a NumPy array "
            "whose samples all have the same shape."
        ) from exc
    if array.dtype == object or not (np.issubdtype(array.dtype, np.number)
                                      or array.dtype == np.bool_):
        raise TypeError(
            f"{where}: {arg} must hold numbers, got dtype {array.dtype}. "
            "Convert it first, e.g. np.asarray(x, dtype='float32')."
        )
    return array


def check_x(model, x, where, arg="x", convert=True):
    """Validate inputs against the model; convert them once to its dtype unless convert=False.

    x: (N, *input_shape) of any real dtype -> C-contiguous array of model.dtype (convert=True),
    or x itself, validated, in its own dtype (convert=False: the training loop converts each
    batch as it gathers it, so a float64 data set is never copied whole to float32).
    Builds an unbuilt model from x's shape, as Keras does.
    """
    x = as_array(x, arg, where)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"{where}: {arg} is empty (shape {x.shape}); pass at least one sample.")
    if not model.built:
        first = model.layers[0] if model.layers else None
        if first is None:
            raise ValueError(f"{where}: the model has no layers; add some with model.add(...).")
        if x.ndim < 2:
            raise ValueError(
                f"{where}: {arg} has shape {x.shape}; expected a batch (N, ...) of samples."
            )
        model.build((None, *x.shape[1:]))
    expected = tuple(model.input_shape[1:])
    if x.shape[1:] != expected:
        raise ValueError(_shape_message(x.shape, expected, arg, where))
    if np.issubdtype(x.dtype, np.complexfloating):
        raise TypeError(f"{where}: {arg} is complex ({x.dtype}); pass real numbers.")
    if convert:
        x = np.ascontiguousarray(x, dtype=model.dtype)
    bad = count_not_finite(x)
    if bad:
        raise ValueError(
            f"{where}: {arg} contains {bad} NaN or inf value(s). Clean the data first, e.g. "
            f"np.nan_to_num(x), or drop those samples."
        )
    return x


def count_not_finite(x, chunk_bytes=1 << 22):
    """Number of NaN/inf entries of x, checked in chunks of ~4 MB so a large data set never
    needs a full-size boolean temporary. Integer and bool arrays are always finite."""
    if not np.issubdtype(x.dtype, np.floating):
        return 0
    per_sample = max(1, x[0].size * x.dtype.itemsize)
    step = max(1, chunk_bytes // per_sample)
    bad = 0
    for start in range(0, len(x), step):
        chunk = x[start:start + step]
        if not np.isfinite(chunk).all():
            bad += int(np.count_nonzero(~np.isfinite(chunk)))
    return bad


def _shape_message(got, expected, arg, where):
    sample = got[1:]
    want = "(N, " + ", ".join(map(str, expected)) + ")"
    msg = f"{where}: {arg} has shape {got}, but the model expects {want}."
    if len(expected) == 3 and expected[-1] == 1 and sample == expected[:2]:
        msg += f" Add the channel axis: {arg} = {arg}.reshape(-1, {expected[0]}, {expected[1]}, 1)."
    elif len(sample) != len(expected):
        msg += f" Reshape it: {arg} = {arg}.reshape(-1, {', '.join(map(str, expected))})."
    elif len(expected) == 3 and sample[-1] != expected[-1]:
        msg += (f" The channel count differs ({sample[-1]} vs {expected[-1]}): images must be "
                "channels-last (N, height, width, channels) with the channels the model was "
                "built for.")
    else:
        msg += " Resize the inputs, or build a new model for this input size."
    return msg


def check_y(model, y, n_samples, where, arg="y"):
    """Validate targets against the loss and the model's output; convert once.

    Sparse categorical: integer labels (N,) or (N, 1) in [0, K) -> int64 (N,).
    Categorical: one-hot (or soft) labels (N, K) -> model.dtype.
    Binary: labels in [0, 1] of the output's shape (N, C), or (N,) for a (N, 1) output
    -> model.dtype, the output's shape.
    Regression (mse, mae, huber): targets of the output's shape (or (N,) for a (N, 1) output)
    -> model.dtype, the output's shape.
    Another Loss subclass: any numbers with N samples, as given.
    """
    y = as_array(y, arg, where)
    if y.ndim == 0 or y.shape[0] != n_samples:
        got = "a scalar" if y.ndim == 0 else f"{y.shape[0]} samples (shape {y.shape})"
        raise ValueError(
            f"{where}: x has {n_samples} samples but {arg} has {got}. "
            "x and y must have the same length along axis 0."
        )
    loss = model.loss
    _warn_if_loss_misfits_output(model, loss, where)
    if isinstance(loss, (SparseCategoricalCrossentropy, CategoricalCrossentropy)):
        if len(model.output_shape) != 2:
            raise ValueError(
                f"{where}: the model's output has shape {model.output_shape}, but a "
                "classification loss needs (None, classes). Add layers.Flatten() (or "
                "GlobalAveragePooling2D) before the last Dense layer."
            )
        if isinstance(loss, SparseCategoricalCrossentropy):
            return _check_sparse_labels(model, y, where, arg)
        return _check_one_hot(model, y, where, arg)
    if isinstance(loss, BinaryCrossentropy):
        return _check_binary(model, y, where, arg)
    if isinstance(loss, REGRESSION_LOSSES):
        return _check_regression(model, y, where, arg)
    if not np.isfinite(y).all():
        raise ValueError(f"{where}: {arg} contains NaN or inf values.")
    return y


def _check_sparse_labels(model, y, where, arg):
    num_classes = model.output_shape[-1]
    if y.ndim == 2 and y.shape[1] == num_classes and num_classes > 1:
        raise ValueError(
            f"{where}: {arg} looks one-hot (shape {y.shape}) but the loss is "
            "sparse_categorical_crossentropy, which takes integer labels (N,). Use "
            "loss='categorical_crossentropy' or pass y.argmax(axis=1)."
        )
    if not (y.ndim == 1 or (y.ndim == 2 and y.shape[1] == 1)):
        raise ValueError(
            f"{where}: sparse_categorical_crossentropy takes integer labels of shape (N,) "
            f"or (N, 1), got {arg} of shape {y.shape}."
        )
    y = y.reshape(-1)
    if not np.issubdtype(y.dtype, np.integer):
        if not np.all(np.isfinite(y)) or not np.all(np.equal(np.mod(y, 1), 0)):
            raise ValueError(
                f"{where}: sparse_categorical_crossentropy needs integer class labels, "
                f"got {arg} of dtype {y.dtype} with non-integer values "
                f"(e.g. {y[np.argmax(np.mod(np.nan_to_num(y, nan=0.5), 1) != 0)].item()!r}). "
                "Pass y.astype(int) if they are class indices."
            )
    outside = (y < 0) | (y >= num_classes)
    if outside.any():
        first = int(np.argmax(outside))
        hint = (" A single output unit is a binary classifier: use loss='binary_crossentropy' "
                "with activation='sigmoid'." if num_classes == 1 else
                " Check the labels, or give the last Dense layer as many units as there are "
                "classes.")
        raise ValueError(
            f"{where}: labels must be in [0, {num_classes - 1}] for a model with "
            f"{num_classes} outputs, got {y[first].item()!r} at index {first} (values "
            f"range from {y.min().item()} to {y.max().item()}).{hint}"
        )
    return y.astype(np.int64)


def _check_one_hot(model, y, where, arg):
    num_classes = model.output_shape[-1]
    if y.ndim != 2 or y.shape[1] != num_classes:
        hint = (" Labels look like integers: use loss='sparse_categorical_crossentropy' or "
                "one-hot encode them (minicnn.utils.to_categorical)." if y.ndim == 1 else "")
        raise ValueError(
            f"{where}: categorical_crossentropy takes one-hot labels of shape "
            f"(N, {num_classes}) to match the model's output, got {arg} of shape "
            f"{y.shape}.{hint}"
        )
    y = np.ascontiguousarray(y, dtype=model.dtype)
    if not np.isfinite(y).all():
        raise ValueError(f"{where}: {arg} contains NaN or inf values.")
    return y


def _to_output_shape(model, y, loss_name, where, arg, hint=""):
    """y in the output's per-sample shape, allowing a size-1 last axis more or less (Keras's
    rank alignment) -> model.dtype (N, *output_shape[1:])."""
    sample = tuple(model.output_shape[1:])
    fits = (y.shape[1:] == sample
            or (sample and sample[-1] == 1 and y.shape[1:] == sample[:-1])
            or y.shape[1:] == sample + (1,))
    if not fits:
        want = "(N, " + ", ".join(map(str, sample)) + ")"
        if sample == (1,):
            want += " or (N,)"
        raise ValueError(f"{where}: {loss_name} compares {arg} with the model's output "
                         f"{model.output_shape}, so {arg} must have shape {want}; got "
                         f"{y.shape}.{hint}")
    y = np.ascontiguousarray(y, dtype=model.dtype).reshape((len(y),) + sample)
    if not np.isfinite(y).all():
        raise ValueError(f"{where}: {arg} contains NaN or inf values; clean the targets first.")
    return y


def _looks_like_class_labels(y):
    return y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and y.size and y.max() > 1


def _check_binary(model, y, where, arg):
    units = model.output_shape[-1]
    hint = ""
    if _looks_like_class_labels(y) or (y.ndim == 1 and units > 1):
        hint = (f" For one label per sample among {units} classes use "
                "loss='sparse_categorical_crossentropy' with a softmax output; for a yes/no "
                "label give the last Dense layer 1 unit with activation='sigmoid'.")
    elif y.ndim == 2 and units == 1 and y.shape[1] == 2:
        hint = (" These labels look one-hot over 2 classes: pass y[:, 1] (1 = the second "
                "class) to the one-unit output.")
    y = _to_output_shape(model, y, "binary_crossentropy", where, arg, hint)
    outside = (y < 0) | (y > 1)
    if outside.any():
        bad = y[outside].reshape(-1)[0].item()
        raise ValueError(f"{where}: binary_crossentropy takes labels in [0, 1] (0/1, or soft "
                         f"labels), got {bad!r} (values range from {y.min().item()} to "
                         f"{y.max().item()}).{hint or ' Rescale the labels to [0, 1].'}")
    return y


def _check_regression(model, y, where, arg):
    name = model.loss.name
    units = model.output_shape[-1]
    hint = ""
    if _looks_like_class_labels(y) and units > 1:
        hint = (f" These look like class labels: for classification among {units} classes use "
                "loss='sparse_categorical_crossentropy'; to predict one number per sample give "
                "the last Dense layer 1 unit.")
    return _to_output_shape(model, y, name, where, arg, hint)


def _warn_if_loss_misfits_output(model, loss, where):
    """A cross-entropy of probabilities behind an output that is not a probability trains
    badly without an error (Keras clips the outputs to [1e-7, 1 - 1e-7]): warn."""
    if not isinstance(loss, (SparseCategoricalCrossentropy, CategoricalCrossentropy,
                             BinaryCrossentropy)) or loss.from_logits:
        return
    layer = getattr(model, "output_layer", None)  # (one output of several: not known here)
    activation = getattr(layer, "output_activation", None)
    if activation is None:
        return
    units = model.output_shape[-1]
    if activation == "softmax" and units == 1:
        warnings.warn(f"{where}: the output layer is a softmax over one unit, which always "
                      "outputs 1.0, so the model cannot learn. For a yes/no label use "
                      "activation='sigmoid' with binary_crossentropy.", stacklevel=4)
    elif activation not in ("softmax", "sigmoid"):
        fix = ("activation='sigmoid' on the last layer" if isinstance(loss, BinaryCrossentropy)
               else "activation='softmax' on the last layer")
        warnings.warn(f"{where}: the output layer's activation is {activation!r}, but the loss "
                      f"{loss.name} expects probabilities (from_logits=False) and clips the "
                      f"outputs to [1e-7, 1 - 1e-7], which trains badly. Use {fix}, or "
                      f"{type(loss).__name__}(from_logits=True).", stacklevel=4)


def check_validation_split(value, where):
    """A float in [0, 1)."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not 0 <= value < 1:
        raise ValueError(
            f"{where}: validation_split must be a float in [0, 1), got {value!r}. "
            "E.g. validation_split=0.1 keeps the last 10% of the data for validation."
        )
    return float(value)


def check_sample_weights(sample_weight, class_weight, y, n, where):
    """Per-sample loss weights (N,) from sample_weight and class_weight, or None."""
    weights = None
    if sample_weight is not None:
        weights = np.asarray(sample_weight, dtype=np.float64)
        if weights.shape != (n,) or not np.isfinite(weights).all() or (weights < 0).any():
            raise ValueError(f"{where}: sample_weight must be {n} finite weights >= 0 (one "
                             f"per sample), got shape {weights.shape}.")
    if class_weight is not None:
        if not isinstance(class_weight, dict):
            raise TypeError(f"{where}: class_weight must be a dict {{class: weight}}, got "
                            f"{type(class_weight).__name__}.")
        # Keras's class_weight_to_sample_weights: the class of a sample is its label, the
        # argmax of a one-hot row, or its (N, 1) value, rounded (0/1 for binary labels).
        labels = y
        if labels.ndim > 1:
            labels = labels.argmax(axis=-1) if labels.shape[-1] != 1 else labels[..., 0]
        labels = np.round(labels.reshape(len(labels), -1)[:, 0]).astype(np.int64)
        per_class = np.ones(n)
        for label, w in class_weight.items():
            label = arguments.integer(label, "class_weight key", where, minimum=0)
            per_class[labels == label] = arguments.real(w, f"class_weight[{label}]", where,
                                                        minimum=0)
        weights = per_class if weights is None else weights * per_class
    return weights


def n_samples(data):
    """Rows of an array, or of the first of a list of arrays (a multi-input model's x)."""
    return len(data[0]) if isinstance(data, list) else len(data)


def rows(data, start, stop):
    """data[start:stop] of an array or of each array in a list."""
    if isinstance(data, list):
        return [d[start:stop] for d in data]
    return data[start:stop]


def as_batch(data, dtype):
    """One batch as C-contiguous `dtype` arrays (each array of a list)."""
    if isinstance(data, list):
        return [np.ascontiguousarray(d, dtype=dtype) for d in data]
    return np.ascontiguousarray(data, dtype=dtype)


class BatchGatherer:
    """Copies the samples of one batch into reused buffers, converting x's dtype on the way
    (a float64 data set is never copied whole). x and y may be lists of arrays (several
    inputs or outputs)."""

    def __init__(self, x, y, weights, size, dtype):
        self.x, self.y, self.weights = x, y, weights
        self.x_batch = [self._buffer(a, size, dtype) for a in _listed(x)]
        self.y_batch = [self._buffer(a, size, a.dtype) for a in _listed(y)]
        self.w_batch = None if weights is None else np.empty(size, dtype=dtype)

    @staticmethod
    def _buffer(array, size, dtype):
        return np.empty((size, *array.shape[1:]), dtype=dtype)

    def gather(self, index):
        """(x, y) or (x, y, sample_weight) of the samples `index`, views of the buffers."""
        m = len(index)
        xs = [_take(a, index, b[:m]) for a, b in zip(_listed(self.x), self.x_batch, strict=True)]
        ys = [_take(a, index, b[:m]) for a, b in zip(_listed(self.y), self.y_batch, strict=True)]
        xb = xs if isinstance(self.x, list) else xs[0]
        yb = ys if isinstance(self.y, list) else ys[0]
        if self.weights is None:
            return xb, yb
        wb = self.w_batch[:m]
        wb[...] = self.weights[index]
        return xb, yb, wb


def _listed(data):
    return data if isinstance(data, list) else [data]


def _take(array, index, out):
    if array.dtype == out.dtype:
        np.take(array, index, axis=0, out=out)
    else:
        out[...] = array[index]
    return out
