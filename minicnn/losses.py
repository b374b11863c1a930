"""Losses. The loss owns the one division by the batch size.

    loss = losses.SparseCategoricalCrossentropy()
    loss(y_true, y_pred)                              # a float: the batch mean, as Keras
    value, dy = loss.value_and_gradient(y_true, y_pred, sample_weight)   # for training

Reduction, as Keras's default 'sum_over_batch_size': ``L = sum_n w_n l_n / N`` with per-sample
losses l_n, sample weights w_n (1 by default) and N the batch size; so dL/dl_n = w_n / N.

Cross-entropy formulas follow Keras's TensorFlow backend:
- categorical, probabilities: p = y_pred / sum(y_pred); p = clip(p, eps, 1 - eps);
  l_n = -sum_k t_k log p_k.
- sparse, probabilities: c = clip(y_pred, eps, 1 - eps); l_n = -log softmax(log c)_y
  = -log c_y + log sum_k c_k.
- from logits (from_logits=True, or a softmax output, see below): l_n = -log softmax(z)_y,
  the fused op ops.softmax_crossentropy_forward.
eps = 1e-7, Keras's backend.epsilon().

The softmax shortcut: when the model's output layer ends in a softmax and the loss is a
cross-entropy of probabilities, the model passes the softmax's logits instead
(``value_and_gradient_from_logits``), as Keras's TensorFlow backend does (it reads the
logits behind a softmax output, "to prevent collapsing zero when training"). The gradient is
then the stable ``(softmax(z) - onehot) * w / N`` and never stalls on a probability that
rounded to 0.
"""

import numpy as np

from . import arguments, ops

EPSILON = 1e-7


class Loss:
    """Base class: ``call(y_true, y_pred) -> (N,)`` per-sample losses and
    ``call_gradient(y_true, y_pred) -> dl_n/dy_pred`` (same shape as y_pred, per sample)."""

    name = "loss"
    #: the output activation whose logits this loss can take instead of its output (or None)
    logits_activation = None

    def __init__(self, from_logits=False):
        self.from_logits = arguments.boolean(from_logits, "from_logits", type(self).__name__)

    def call(self, y_true, y_pred):
        raise NotImplementedError

    def call_gradient(self, y_true, y_pred):
        raise NotImplementedError

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss: sum_n w_n l_n / N, a float."""
        y_pred = np.asarray(y_pred)
        if not np.issubdtype(y_pred.dtype, np.floating):
            y_pred = y_pred.astype(np.float32)
        per_sample = self.call(np.asarray(y_true), y_pred)
        return float(np.sum(per_sample * self._weights(sample_weight, len(per_sample),
                                                       per_sample.dtype)) / len(per_sample))

    @staticmethod
    def _weights(sample_weight, n, dtype):
        if sample_weight is None:
            return np.ones(n, dtype)
        return np.asarray(sample_weight, dtype=dtype).reshape(n)

    def value_and_gradient(self, y_true, y_pred, sample_weight=None):
        """(L, dL/dy_pred) for a batch: L = sum_n w_n l_n / N."""
        per_sample = self.call(y_true, y_pred)
        n = len(per_sample)
        scale = self._weights(sample_weight, n, y_pred.dtype) / y_pred.dtype.type(n)
        grad = self.call_gradient(y_true, y_pred)
        grad *= scale.reshape((n,) + (1,) * (grad.ndim - 1))
        return float(np.sum(per_sample * scale)), grad

    def value_and_gradient_from_logits(self, y_true, logits, sample_weight=None):
        """(L, dL/dlogits) when y_pred = logits_activation(logits) (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} has no logits shortcut.")

    def get_config(self):
        return {"name": self.name, "from_logits": self.from_logits}

    def __repr__(self):
        return f"{type(self).__name__}(from_logits={self.from_logits})"


def _log_softmax(z):
    shifted = z - z.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


class _Crossentropy(Loss):
    """What the two cross-entropies share: the softmax shortcut through the fused op."""

    @property
    def logits_activation(self):
        return None if self.from_logits else "softmax"

    def _target(self, y_true):
        raise NotImplementedError

    def call(self, y_true, y_pred):
        if self.from_logits:
            loss, _ = ops.softmax_crossentropy_forward(y_pred, self._target(y_true))
            return loss
        return self._call_probabilities(y_true, y_pred)

    def call_gradient(self, y_true, y_pred):
        if self.from_logits:
            n = y_pred.shape[0]
            _, cache = ops.softmax_crossentropy_forward(y_pred, self._target(y_true))
            return ops.softmax_crossentropy_backward(np.ones(n, y_pred.dtype), cache)
        return self._gradient_probabilities(y_true, y_pred)

    def value_and_gradient_from_logits(self, y_true, logits, sample_weight=None):
        per_sample, cache = ops.softmax_crossentropy_forward(logits, self._target(y_true))
        n = len(per_sample)
        scale = self._weights(sample_weight, n, logits.dtype) / logits.dtype.type(n)
        return float(np.sum(per_sample * scale)), ops.softmax_crossentropy_backward(scale, cache)


class SparseCategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with integer labels. y_true: (N,) or (N, 1) ints in [0, K); y_pred: (N, K)."""

    name = "sparse_categorical_crossentropy"

    def _target(self, y_true):
        return np.asarray(y_true).reshape(-1).astype(np.intp)

    def _call_probabilities(self, y_true, y_pred):
        labels = self._target(y_true)
        clipped = np.clip(y_pred, EPSILON, 1 - EPSILON)
        return -np.log(clipped[np.arange(labels.size), labels]) + np.log(clipped.sum(axis=-1))

    def _gradient_probabilities(self, y_true, y_pred):
        labels = self._target(y_true)
        target = np.zeros_like(y_pred)
        target[np.arange(labels.size), labels] = 1
        clipped = np.clip(y_pred, EPSILON, 1 - EPSILON)
        inside = (y_pred > EPSILON) & (y_pred < 1 - EPSILON)  # the clip's gradient is 0 outside
        grad = -target / clipped + 1.0 / clipped.sum(axis=-1, keepdims=True)
        return (grad * inside).astype(y_pred.dtype, copy=False)


class CategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with one-hot (or soft) labels. y_true, y_pred: (N, K)."""

    name = "categorical_crossentropy"

    def _target(self, y_true):
        return np.asarray(y_true)

    def _call_probabilities(self, y_true, y_pred):
        total = y_pred.sum(axis=-1, keepdims=True)
        p = np.clip(y_pred / total, EPSILON, 1 - EPSILON)
        return -(y_true * np.log(p)).sum(axis=-1)

    def _gradient_probabilities(self, y_true, y_pred):
        y_true = np.asarray(y_true, dtype=y_pred.dtype)
        total = y_pred.sum(axis=-1, keepdims=True)
        normalized = y_pred / total
        p = np.clip(normalized, EPSILON, 1 - EPSILON)
        inside = (normalized > EPSILON) & (normalized < 1 - EPSILON)
        dnormalized = -y_true / p * inside
        # Through the normalisation p_k = y_k / S: dL/dy_j = (g_j - sum_k g_k p_k) / S.
        grad = (dnormalized - (dnormalized * normalized).sum(axis=-1, keepdims=True)) / total
        return grad.astype(y_pred.dtype, copy=False)


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
    return SparseCategoricalCrossentropy(from_logits).call(np.asarray(y_true), np.asarray(y_pred))


def categorical_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample categorical cross-entropy (N,), as keras.losses.categorical_crossentropy."""
    return CategoricalCrossentropy(from_logits).call(np.asarray(y_true), np.asarray(y_pred))
