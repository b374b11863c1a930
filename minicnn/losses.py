"""Cross-entropy losses. The loss owns the one division by the batch size.

Formulas follow Keras's TensorFlow backend so reported losses match Keras's:
- categorical, probabilities: p = y_pred / sum(y_pred); p = clip(p, eps, 1 - eps);
  loss_n = -sum_k t_k log p_k.
- sparse, probabilities: c = clip(y_pred, eps, 1 - eps); loss_n = -log softmax(log c)_y
  = -log c_y + log sum_k c_k.
- from_logits=True (both): loss_n = -log softmax(z)_y, computed stably (log-sum-exp).
The value reported is the mean over the batch. eps = 1e-7, Keras's backend.epsilon().
"""

import numpy as np

EPSILON = 1e-7


def _log_softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _softmax(z):
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Loss:
    """Base class.

    `loss(y_true, y_pred) -> float` (batch mean); `gradient(y_true, y_pred) -> dL/dy_pred`
    (already divided by N); `gradient_through_softmax(y_true, probs) -> dL/dz` for a softmax
    output layer, the fused, stable (p - onehot) / N.
    """

    name = "loss"

    def __init__(self, from_logits=False):
        self.from_logits = bool(from_logits)

    def __call__(self, y_true, y_pred):
        return float(np.mean(self.per_sample(y_true, y_pred)))

    def one_hot(self, y_true, num_classes, dtype):
        raise NotImplementedError

    def gradient_through_softmax(self, y_true, probs):
        target = self.one_hot(y_true, probs.shape[-1], probs.dtype)
        return (probs - target) / probs.dtype.type(probs.shape[0])

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"


class SparseCategoricalCrossentropy(Loss):
    """Cross-entropy with integer labels. y_true: (N,) or (N, 1) ints in [0, K); y_pred: (N, K)."""

    name = "sparse_categorical_crossentropy"

    def one_hot(self, y_true, num_classes, dtype):
        labels = np.asarray(y_true).reshape(-1).astype(np.intp)
        target = np.zeros((labels.size, num_classes), dtype=dtype)
        target[np.arange(labels.size), labels] = 1
        return target

    def per_sample(self, y_true, y_pred):
        labels = np.asarray(y_true).reshape(-1).astype(np.intp)
        rows = np.arange(labels.size)
        if self.from_logits:
            return -_log_softmax(y_pred)[rows, labels]
        clipped = np.clip(y_pred, EPSILON, 1 - EPSILON)
        return -np.log(clipped[rows, labels]) + np.log(clipped.sum(axis=-1))

    def gradient(self, y_true, y_pred):
        n = y_pred.shape[0]
        target = self.one_hot(y_true, y_pred.shape[-1], y_pred.dtype)
        if self.from_logits:
            return (_softmax(y_pred) - target) / n
        clipped = np.clip(y_pred, EPSILON, 1 - EPSILON)
        inside = (y_pred > EPSILON) & (y_pred < 1 - EPSILON)  # the clip's gradient is 0 outside
        grad = -target / clipped + 1.0 / clipped.sum(axis=-1, keepdims=True)
        return (grad * inside / n).astype(y_pred.dtype, copy=False)


class CategoricalCrossentropy(Loss):
    """Cross-entropy with one-hot (or soft) labels. y_true, y_pred: (N, K)."""

    name = "categorical_crossentropy"

    def one_hot(self, y_true, num_classes, dtype):
        return np.asarray(y_true, dtype=dtype)

    def per_sample(self, y_true, y_pred):
        if self.from_logits:
            return -(y_true * _log_softmax(y_pred)).sum(axis=-1)
        total = y_pred.sum(axis=-1, keepdims=True)
        p = np.clip(y_pred / total, EPSILON, 1 - EPSILON)
        return -(y_true * np.log(p)).sum(axis=-1)

    def gradient(self, y_true, y_pred):
        n = y_pred.shape[0]
        y_true = np.asarray(y_true, dtype=y_pred.dtype)
        if self.from_logits:
            return (_softmax(y_pred) * y_true.sum(axis=-1, keepdims=True) - y_true) / n
        total = y_pred.sum(axis=-1, keepdims=True)
        normalized = y_pred / total
        p = np.clip(normalized, EPSILON, 1 - EPSILON)
        inside = (normalized > EPSILON) & (normalized < 1 - EPSILON)
        dnormalized = -y_true / p * inside
        # Through the normalisation p_k = y_k / S: dL/dy_j = (g_j - sum_k g_k p_k) / S.
        grad = (dnormalized - (dnormalized * normalized).sum(axis=-1, keepdims=True)) / total
        return (grad / n).astype(y_pred.dtype, copy=False)

    def gradient_through_softmax(self, y_true, probs):
        y_true = np.asarray(y_true, dtype=probs.dtype)
        # Soft labels need not sum to 1, so keep the general form sum(t) * p - t.
        return (probs * y_true.sum(axis=-1, keepdims=True) - y_true) / probs.dtype.type(len(probs))


_BY_NAME = {
    "sparse_categorical_crossentropy": SparseCategoricalCrossentropy,
    "categorical_crossentropy": CategoricalCrossentropy,
}


def get(identifier):
    """Resolve a loss name or instance (a Loss subclass)."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(
        f"compile: unknown loss {identifier!r}. Known losses: {', '.join(sorted(_BY_NAME))}, "
        "or an instance such as losses.SparseCategoricalCrossentropy(from_logits=True)."
    )


def deserialize(config):
    """Inverse of Loss.get_config."""
    return _BY_NAME[config["name"]](from_logits=config.get("from_logits", False))


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample sparse cross-entropy (N,), as keras.losses.sparse_categorical_crossentropy."""
    return SparseCategoricalCrossentropy(from_logits).per_sample(y_true, np.asarray(y_pred))


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample categorical cross-entropy (N,), as keras.losses.categorical_crossentropy."""
    return CategoricalCrossentropy(from_logits).per_sample(np.asarray(y_true), np.asarray(y_pred))
