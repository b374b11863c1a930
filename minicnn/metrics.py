"""Metrics: running values over an epoch, with Keras's names and API.

    metric.update_state(y_true, y_pred, sample_weight=None)
    metric.result()          # a float: the weighted mean of everything seen since reset_state
    metric.reset_state()

``compile(metrics=['accuracy'])`` picks the accuracy that fits the loss, as Keras does: integer
labels (sparse loss) -> SparseCategoricalAccuracy, one-hot labels -> CategoricalAccuracy; the
metric keeps the name the user wrote ('accuracy' or 'acc').
"""

import numpy as np

__all__ = ["Metric", "Mean", "MeanMetricWrapper", "SparseCategoricalAccuracy",
           "CategoricalAccuracy", "sparse_categorical_accuracy", "categorical_accuracy", "get"]


class Metric:
    """Base class: a weighted mean of per-sample values, total / count."""

    def __init__(self, name=None):
        self.name = name or type(self).__name__.lower()
        self.reset_state()

    def reset_state(self):
        """Forget everything seen so far."""
        self.total = 0.0
        self.count = 0.0

    def result(self):
        """The weighted mean so far (0.0 before any update, as Keras)."""
        return self.total / self.count if self.count else 0.0

    def update_state(self, y_true, y_pred, sample_weight=None):
        raise NotImplementedError

    def _add(self, values, sample_weight):
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if sample_weight is None:
            self.total += float(values.sum())
            self.count += values.size
        else:
            weights = np.asarray(sample_weight, dtype=np.float64).reshape(-1)
            self.total += float((values * weights).sum())
            self.count += float(weights.sum())

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} result={self.result():.4f}>"


class Mean(Metric):
    """The (weighted) mean of the values given: update_state(values, sample_weight=None)."""

    def update_state(self, values, sample_weight=None):
        self._add(values, sample_weight)


class MeanMetricWrapper(Metric):
    """A metric from a function fn(y_true, y_pred) -> per-sample values, averaged."""

    def __init__(self, fn, name=None):
        self.fn = fn
        super().__init__(name or fn.__name__)

    def update_state(self, y_true, y_pred, sample_weight=None):
        self._add(self.fn(y_true, y_pred), sample_weight)


def sparse_categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_pred) equals the integer label, else 0.0; per sample (N,)."""
    labels = np.asarray(y_true).reshape(-1)
    return (np.asarray(y_pred).argmax(axis=-1).reshape(-1) == labels).astype(np.float64)


def categorical_accuracy(y_true, y_pred):
    """1.0 where argmax(y_pred) equals argmax(y_true) (one-hot labels), else 0.0; (N,)."""
    return (np.asarray(y_pred).argmax(axis=-1) == np.asarray(y_true).argmax(axis=-1)).astype(
        np.float64)


class SparseCategoricalAccuracy(MeanMetricWrapper):
    """How often the argmax of the prediction equals the integer label."""

    def __init__(self, name="sparse_categorical_accuracy"):
        super().__init__(sparse_categorical_accuracy, name)


class CategoricalAccuracy(MeanMetricWrapper):
    """How often the argmax of the prediction equals the argmax of the one-hot label."""

    def __init__(self, name="categorical_accuracy"):
        super().__init__(categorical_accuracy, name)


def get(identifier, loss):
    """A Metric for compile(metrics=[...]): 'accuracy'/'acc' (chosen from the loss), the name of
    an accuracy, or a Metric instance."""
    if isinstance(identifier, Metric):
        return identifier
    if isinstance(identifier, str):
        key = identifier.lower()
        if key in ("accuracy", "acc"):
            sparse = getattr(loss, "name", "") == "sparse_categorical_crossentropy"
            cls = SparseCategoricalAccuracy if sparse else CategoricalAccuracy
            return cls(name=identifier)
        if key == "sparse_categorical_accuracy":
            return SparseCategoricalAccuracy()
        if key == "categorical_accuracy":
            return CategoricalAccuracy()
    raise ValueError(
        f"compile: unknown metric {identifier!r}; minicnn knows 'accuracy' ('acc'), "
        "'sparse_categorical_accuracy' and 'categorical_accuracy', or a metrics.Metric."
    )
