"""Metrics: running values over an epoch, with Keras 3's names, formulas and API.

    metric = metrics.SparseCategoricalAccuracy()
    metric.update_state(y_true, y_pred, sample_weight=None)
    metric.result()          # a float (with .numpy()): the weighted mean since reset_state
    metric.reset_state()

Every metric here is a weighted mean of per-sample values, as Keras's ``Mean`` computes it
(``reduce_to_samplewise_values``): the values of one sample are averaged over their trailing
axes, each sample counts with its weight (1 without sample_weight), and ``result() =
sum_n w_n v_n / sum_n w_n``. ``RootMeanSquaredError`` is the square root of such a mean.

``compile(metrics=[...])`` takes what Keras takes: names ('mse', 'binary_accuracy',
'RootMeanSquaredError', ...), metric objects, classes, or functions ``fn(y_true, y_pred)``; the
logs use the name the user wrote ('acc' stays 'acc'), and a repeated name gets ``_1``, ``_2``.
``'accuracy'``/``'acc'`` are resolved as Keras does, from the shapes of the first batch's labels
and outputs: a (N, 1) output -> binary_accuracy; labels of lower rank than the output (integer
labels) or (N, 1) labels against several outputs -> sparse_categorical_accuracy; otherwise
categorical_accuracy. As in Keras, ``metrics`` ignore sample weights; ``weighted_metrics`` use
them.
"""

import re
import warnings

import numpy as np

from . import losses as losses_module
from .backend import standardize_dtype
from .losses import align_ranks
from .tensor import Scalar, as_tensor

__all__ = ["Metric", "Mean", "Sum", "MeanMetricWrapper", "Accuracy", "BinaryAccuracy",
           "CategoricalAccuracy", "SparseCategoricalAccuracy", "MeanSquaredError",
           "MeanAbsoluteError", "RootMeanSquaredError", "BinaryCrossentropy",
           "CategoricalCrossentropy", "SparseCategoricalCrossentropy", "binary_accuracy",
           "categorical_accuracy", "sparse_categorical_accuracy", "mean_squared_error",
           "mean_absolute_error", "binary_crossentropy", "categorical_crossentropy",
           "sparse_categorical_crossentropy", "huber", "get", "serialize", "deserialize"]

# The loss functions Keras also exports as metrics (same values).
binary_crossentropy = losses_module.binary_crossentropy
categorical_crossentropy = losses_module.categorical_crossentropy
sparse_categorical_crossentropy = losses_module.sparse_categorical_crossentropy
mean_squared_error = losses_module.mean_squared_error
mean_absolute_error = losses_module.mean_absolute_error
huber = losses_module.huber


def _snake_case(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


class Metric:
    """Base class: ``update_state(...)``, ``result()``, ``reset_state()``; ``metric(...)``
    updates and returns the result, as Keras's."""

    def __init__(self, name=None, dtype=None):
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{type(self).__name__}: name must be a non-empty str, got {name!r}.")
        self.name = name or _snake_case(type(self).__name__)
        self.dtype = standardize_dtype(dtype, type(self).__name__)
        self.reset_state()

    def reset_state(self):
        """Forget everything seen so far."""
        raise NotImplementedError

    def update_state(self, *args, **kwargs):
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def __call__(self, *args, **kwargs):
        self.update_state(*args, **kwargs)
        return self.result()

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} result={float(self.result()):.4f}>"


class Mean(Metric):
    """The (weighted) mean of the values given: ``update_state(values, sample_weight=None)``."""

    def reset_state(self):
        self.total = 0.0
        self.count = 0.0

    def result(self):
        """total / count, 0.0 before any update (Keras's divide_no_nan)."""
        return Scalar(self.total / self.count if self.count else 0.0, self.dtype)

    def update_state(self, values, sample_weight=None):
        if isinstance(values, float) and isinstance(sample_weight, (int, float)):
            # One number with one weight (the model's loss tracker, every step): plain floats.
            self.total += values * float(sample_weight)
            self.count += float(sample_weight)
            return
        values = np.asarray(values, dtype=np.float64)
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float64)
            values, weights = align_ranks(values, weights)
            if values.ndim > weights.ndim:
                values = values.mean(axis=tuple(range(weights.ndim, values.ndim)))
            try:
                weights = np.broadcast_to(weights, values.shape)
            except ValueError:
                raise ValueError(f"{self.name}: sample_weight of shape {np.shape(sample_weight)} "
                                 f"does not fit values of shape {values.shape}; give one "
                                 "weight per sample.") from None
            values = values * weights
            if weights.ndim > 1:
                weights = weights.mean(axis=tuple(range(1, weights.ndim)))
        if values.ndim > 1:
            values = values.mean(axis=tuple(range(1, values.ndim)))
        self.total += float(values.sum())
        if sample_weight is not None:
            self.count += float(np.sum(weights))
        else:
            self.count += values.shape[0] if values.ndim >= 1 else 1


class Sum(Metric):
    """The (weighted) sum of the values given."""

    def reset_state(self):
        self.total = 0.0

    def result(self):
        return Scalar(self.total, self.dtype)

    def update_state(self, values, sample_weight=None):
        values = np.asarray(values, dtype=np.float64)
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float64)
            values, weights = align_ranks(values, weights)
            if values.ndim > weights.ndim:
                values = values.sum(axis=tuple(range(weights.ndim, values.ndim)))
            values = values * np.broadcast_to(weights, values.shape)
        self.total += float(values.sum())


class MeanMetricWrapper(Mean):
    """A metric from a function ``fn(y_true, y_pred, **kwargs)`` -> per-sample values, averaged
    as Mean does."""

    def __init__(self, fn, name=None, dtype=None, **kwargs):
        self._fn = fn
        self._fn_kwargs = kwargs
        super().__init__(name=name or getattr(fn, "__name__", None), dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        values = self._fn(np.asarray(y_true), np.asarray(y_pred), **self._fn_kwargs)
        super().update_state(values, sample_weight)


# -- accuracies: per-sample 1.0 (right) or 0.0 ----------------------------------------------
def _floating(y_pred):
    y_pred = np.asarray(y_pred)
    return y_pred if np.issubdtype(y_pred.dtype, np.floating) else y_pred.astype(np.float32)


def accuracy(y_true, y_pred):
    """1.0 where y_pred equals y_true exactly (after Keras's rank alignment)."""
    y_pred = _floating(y_pred)
    y_true, y_pred = align_ranks(np.asarray(y_true, dtype=y_pred.dtype), y_pred)
    return as_tensor((y_true == y_pred).astype(np.float32))


def binary_accuracy(y_true, y_pred, threshold=0.5):
    """1.0 where (y_pred > threshold) equals the 0/1 label, per output; (N, C) for (N, C)."""
    y_true, y_pred = align_ranks(np.asarray(y_true), np.asarray(y_pred))
    predicted = (y_pred > threshold).astype(y_true.dtype)
    return as_tensor((y_true == predicted).astype(np.float32))


def categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_pred) equals argmax(y_true) (one-hot labels), else 0.0; (N,)."""
    matches = np.asarray(y_pred).argmax(axis=-1) == np.asarray(y_true).argmax(axis=-1)
    return as_tensor(matches.astype(np.float32))


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_pred) equals the integer label ((N,) or (N, 1)), else 0.0; (N,)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if y_true.ndim == y_pred.ndim and y_true.shape[-1] == 1:
        y_true = y_true[..., 0]
    predicted = y_pred.argmax(axis=-1).astype(y_true.dtype, copy=False)
    matches = (predicted == y_true).astype(np.float32)
    if matches.ndim > 1 and matches.shape[-1] == 1:
        matches = matches[..., 0]
    return as_tensor(matches)


class Accuracy(MeanMetricWrapper):
    """How often predictions equal labels exactly (for class ids compared as numbers; for
    probabilities use BinaryAccuracy or CategoricalAccuracy)."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(accuracy, name=name, dtype=dtype)


class BinaryAccuracy(MeanMetricWrapper):
    """How often (y_pred > threshold) matches the 0/1 labels."""

    def __init__(self, name="binary_accuracy", dtype=None, threshold=0.5):
        self.threshold = float(threshold)
        super().__init__(binary_accuracy, name=name, dtype=dtype, threshold=self.threshold)

    def get_config(self):
        return {**super().get_config(), "threshold": self.threshold}


class CategoricalAccuracy(MeanMetricWrapper):
    """How often the argmax of the prediction equals the argmax of the one-hot label."""

    def __init__(self, name="categorical_accuracy", dtype=None):
        super().__init__(categorical_accuracy, name=name, dtype=dtype)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often the argmax of the prediction equals the integer label."""

    def __init__(self, name="sparse_categorical_accuracy", dtype=None):
        super().__init__(sparse_categorical_accuracy, name=name, dtype=dtype)


# -- regression ------------------------------------------------------------------------------
class MeanSquaredError(MeanMetricWrapper):
    """The mean of (y_pred - y_true)^2."""

    def __init__(self, name="mean_squared_error", dtype=None):
        super().__init__(mean_squared_error, name=name, dtype=dtype)


class MeanAbsoluteError(MeanMetricWrapper):
    """The mean of |y_pred - y_true|."""

    def __init__(self, name="mean_absolute_error", dtype=None):
        super().__init__(mean_absolute_error, name=name, dtype=dtype)


class RootMeanSquaredError(Mean):
    """sqrt of the (weighted) mean of (y_pred - y_true)^2 over everything seen."""

    def __init__(self, name="root_mean_squared_error", dtype=None):
        super().__init__(name=name, dtype=dtype)

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_pred = _floating(y_pred)
        y_true, y_pred = align_ranks(np.asarray(y_true, dtype=y_pred.dtype), y_pred)
        super().update_state(np.square(y_pred - y_true), sample_weight)

    def result(self):
        return Scalar(np.sqrt(float(super().result())), self.dtype)


# -- cross-entropies as metrics --------------------------------------------------------------
class BinaryCrossentropy(MeanMetricWrapper):
    """The mean binary cross-entropy (losses.binary_crossentropy)."""

    def __init__(self, name="binary_crossentropy", dtype=None, from_logits=False,
                 label_smoothing=0):
        self.from_logits, self.label_smoothing = from_logits, label_smoothing
        super().__init__(binary_crossentropy, name=name, dtype=dtype, from_logits=from_logits,
                         label_smoothing=label_smoothing)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing}


class CategoricalCrossentropy(MeanMetricWrapper):
    """The mean categorical cross-entropy (losses.categorical_crossentropy)."""

    def __init__(self, name="categorical_crossentropy", dtype=None, from_logits=False,
                 label_smoothing=0, axis=-1):
        self.from_logits, self.label_smoothing, self.axis = from_logits, label_smoothing, axis
        super().__init__(categorical_crossentropy, name=name, dtype=dtype,
                         from_logits=from_logits, label_smoothing=label_smoothing, axis=axis)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class SparseCategoricalCrossentropy(MeanMetricWrapper):
    """The mean sparse categorical cross-entropy (losses.sparse_categorical_crossentropy)."""

    def __init__(self, name="sparse_categorical_crossentropy", dtype=None, from_logits=False,
                 axis=-1):
        self.from_logits, self.axis = from_logits, axis
        super().__init__(sparse_categorical_crossentropy, name=name, dtype=dtype,
                         from_logits=from_logits, axis=axis)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "axis": self.axis}


# -- lookup ------------------------------------------------------------------------------------
METRIC_CLASSES = (Mean, Sum, Accuracy, BinaryAccuracy, CategoricalAccuracy,
                  SparseCategoricalAccuracy, MeanSquaredError, MeanAbsoluteError,
                  RootMeanSquaredError, BinaryCrossentropy, CategoricalCrossentropy,
                  SparseCategoricalCrossentropy)
_CLASS_BY_NAME = {cls.__name__: cls for cls in METRIC_CLASSES}
# Keras's metrics.ALL_OBJECTS_DICT: class names, their snake_case, and the short aliases.
_BY_NAME = dict(_CLASS_BY_NAME)
_BY_NAME.update({_snake_case(cls.__name__): cls for cls in METRIC_CLASSES})
_BY_NAME.update({"bce": BinaryCrossentropy, "BCE": BinaryCrossentropy,
                 "mse": MeanSquaredError, "MSE": MeanSquaredError,
                 "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError})
_FUNCTIONS = (binary_accuracy, categorical_accuracy, sparse_categorical_accuracy,
              mean_squared_error, mean_absolute_error, binary_crossentropy,
              categorical_crossentropy, sparse_categorical_crossentropy, huber)
_FUNCTION_BY_NAME = {fn.__name__: fn for fn in _FUNCTIONS}


def _unknown(identifier):
    names = ", ".join(sorted(("accuracy", "acc", *_BY_NAME), key=str.lower))
    return ValueError(f"compile: unknown metric {identifier!r}. minicnn has the metrics "
                      f"{names}; or a metrics.Metric object, or a function "
                      "fn(y_true, y_pred) -> per-sample values.")


def get(identifier):
    """A Metric (or metric function) from Keras's identifiers: a name, a Metric, a Metric
    class, a function, or a {'class_name', 'config'} dict. 'accuracy' needs the data's
    shapes; compile resolves it (see the module docstring)."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Metric):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier)
        if cls is None:
            raise _unknown(identifier)
        return cls()
    if callable(identifier):
        return identifier
    raise _unknown(identifier)


class _AccuracyFromShapes(MeanMetricWrapper):
    """compile's 'accuracy'/'acc': picks binary, sparse or categorical accuracy from the first
    batch's shapes, as Keras's compile_utils.get_metric does."""

    def __init__(self, name, warn_logits=False):
        self._warn_logits = warn_logits
        super().__init__(self._unresolved, name=name)

    @staticmethod
    def _unresolved(y_true, y_pred):
        raise AssertionError("resolved in update_state")

    def update_state(self, y_true, y_pred, sample_weight=None):
        if self._fn is self._unresolved:
            y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
            is_binary = y_pred.shape[-1] == 1
            is_sparse = y_true.ndim < y_pred.ndim or (y_true.shape[-1] == 1
                                                      and y_pred.shape[-1] > 1)
            if is_binary:
                self._fn = binary_accuracy
                if self._warn_logits:
                    warnings.warn(
                        f"metrics=[{self.name!r}] on a one-unit output is binary_accuracy, which "
                        "counts outputs > 0.5 as class 1, as Keras does; but the loss takes "
                        "logits (from_logits=True), whose threshold is 0. Use "
                        "metrics=[minicnn.metrics.BinaryAccuracy(threshold=0.0)].", stacklevel=2)
            elif is_sparse:
                self._fn = sparse_categorical_accuracy
            else:
                self._fn = categorical_accuracy
        super().update_state(y_true, y_pred, sample_weight)


def _object_name(metric):
    return metric.name if isinstance(metric, Metric) else getattr(metric, "__name__",
                                                                  type(metric).__name__)


def compile_metrics(metrics, weighted_metrics=None, loss=None):
    """What compile keeps: [(log name, Metric, weighted)], names unique as Keras's logs."""
    compiled, seen = [], {}
    for argument, weighted in (("metrics", False), ("weighted_metrics", True)):
        given = metrics if argument == "metrics" else weighted_metrics
        if given is None:
            continue
        if not isinstance(given, (list, tuple)):
            raise ValueError(f"compile: {argument} must be a list, e.g. {argument}=['accuracy'],"
                             f" got {given!r}.")
        for identifier in given:
            if identifier is None:
                raise ValueError(f"compile: {argument} holds None; remove it.")
            if isinstance(identifier, str) and identifier.lower() in ("accuracy", "acc"):
                from_logits = isinstance(loss, losses_module.BinaryCrossentropy) and \
                    loss.from_logits
                metric = _AccuracyFromShapes(identifier, warn_logits=from_logits)
            else:
                metric = get(identifier)
                if not isinstance(metric, Metric):
                    metric = MeanMetricWrapper(metric)
            name = identifier if isinstance(identifier, str) else _object_name(metric)
            metric.name = name
            if name in seen:
                if weighted:
                    name = f"weighted_{name}"
                count = seen.get(name, 0)
                seen[name] = count + 1
                if count:
                    name = f"{name}_{count}"
            else:
                seen[name] = 1
            compiled.append((name, metric, weighted))
    return compiled


def serialize(identifier):
    """A compile metric identifier as JSON: a name stays a name; a minicnn Metric becomes
    {'class_name', 'config'}; one of this module's functions becomes its name."""
    if isinstance(identifier, str):
        return identifier
    if isinstance(identifier, _AccuracyFromShapes):  # compile's 'accuracy' or 'acc'
        return identifier.name
    if isinstance(identifier, type) and identifier in METRIC_CLASSES:
        return identifier.__name__
    if isinstance(identifier, Metric) and _CLASS_BY_NAME.get(type(identifier).__name__) is \
            type(identifier):
        return {"class_name": type(identifier).__name__, "config": identifier.get_config()}
    if callable(identifier) and _FUNCTION_BY_NAME.get(getattr(identifier, "__name__", "")) is \
            identifier:
        return identifier.__name__
    raise ValueError(
        f"save: the metric {_object_name(identifier)!r} ({type(identifier).__name__}) is not one "
        "of minicnn's, so a model file could not rebuild it. Save the weights instead "
        "(model.save_weights) and compile again after loading.")


def deserialize(config):
    """The inverse of serialize: a name stays a name (compile resolves it, 'accuracy'
    included); a {'class_name', 'config'} dict becomes that Metric."""
    if isinstance(config, str):
        return config
    cls = _CLASS_BY_NAME.get(config.get("class_name"))
    if cls is None:
        raise ValueError(f"unknown metric class {config.get('class_name')!r}; minicnn has "
                         f"{', '.join(_CLASS_BY_NAME)}.")
    return cls.from_config(dict(config.get("config") or {}))


def serialize_all(given):
    """serialize over compile's metrics argument: a list, or per output a list or dict."""
    if given is None:
        return []
    if isinstance(given, dict):
        return {name: serialize_all(value) for name, value in given.items()}
    if isinstance(given, (list, tuple)):
        return [serialize_all(value) if isinstance(value, (list, tuple, dict))
                else serialize(value) for value in given]
    return serialize(given)


def deserialize_all(config):
    """The inverse of serialize_all."""
    if isinstance(config, dict) and "class_name" not in config:
        return {name: deserialize_all(value) for name, value in config.items()}
    if isinstance(config, list):
        return [deserialize_all(value) for value in config]
    return deserialize(config)

