"""Losses, with Keras 3's names, arguments and formulas. The loss owns the one division by N.

    loss = losses.SparseCategoricalCrossentropy(from_logits=True)
    loss(y_true, y_pred)            # a float with .numpy(): the batch mean, as Keras
    losses.get("mse")               # by Keras's strings; losses.mean_squared_error(y, p) per sample
    value, dy = loss.value_and_gradient(y_true, y_pred, sample_weight)   # for training

**Values.** ``call(y_true, y_pred)`` gives Keras's loss values: for every loss here a function of
the last axis of y_pred, so values have y_pred's shape without its last axis ((N,) for (N, K)
outputs). Before that, y_true and y_pred are brought to the same rank as Keras's
``squeeze_or_expand_to_same_rank`` does (labels (N,) against outputs (N, 1) become (N, 1)).

**Reduction**, as Keras's ``reduce_weighted_values``, with the sample weights w broadcast per
sample (w_n multiplies every value of sample n):
- ``"sum_over_batch_size"`` (default) and ``"mean"``: ``L = sum(w * values) / values.size``
  (for (N,) values: ``sum_n w_n l_n / N``, not divided by the sum of the weights);
- ``"sum"``: ``sum(w * values)``;
- ``"mean_with_sample_weight"``: ``sum(w * values) / sum(w)``;
- ``None``/``"none"``: the weighted values themselves when called; in training Keras then
  averages them, so fit trains such a loss as ``"sum_over_batch_size"``.
So dL/dvalues = w / divisor, and ``value_and_gradient`` returns dL/dy_pred through each loss's
elementwise ``call_gradient`` (d value / d y_pred, y_pred's shape).

**Formulas** (eps = 1e-7, Keras's backend.epsilon(); C = size of the last axis):
- categorical: p = clip(y_pred / sum(y_pred), eps, 1 - eps); l = -sum_k t_k log p_k.
- sparse categorical: c = clip(y_pred, eps, 1 - eps); l = -log c_y + log sum_k c_k
  (TensorFlow's: log of the clipped probabilities, then softmax cross-entropy).
- binary: p = clip(y_pred, eps, 1 - eps); l = mean_C -(t log p + (1 - t) log(1 - p));
  from logits z: l = mean_C max(z, 0) - z t + log(1 + exp(-|z|)).
- mean squared error: mean_C (p - t)^2; mean absolute error: mean_C |p - t|;
  Huber(delta): mean_C of 0.5 e^2 where |e| <= delta, else delta |e| - 0.5 delta^2 (e = p - t).
- label_smoothing s: categorical t -> t (1 - s) + s / C; binary t -> t (1 - s) + s / 2.
- from_logits=True, categorical: l = -sum_k t_k log softmax(z)_k, the fused op
  ops.softmax_crossentropy_forward.

**The logits shortcut.** When the model's output layer ends in the activation a loss of
probabilities can take the logits of (``logits_activation``: softmax for the two categorical
cross-entropies, sigmoid for the binary one), the model passes the logits instead
(``value_and_gradient_from_logits``), as Keras's TensorFlow backend does ("to prevent
collapsing zero when training"). The gradient is then the stable ``(softmax(z) - t) w / N``
(or ``(sigmoid(z) - t) w / (N C)``) and never stalls on a probability that rounded to 0 or 1.
"""

import numpy as np

from . import arguments, ops
from .backend import standardize_dtype
from .tensor import Scalar, as_tensor

EPSILON = 1e-7
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)

__all__ = ["Loss", "SparseCategoricalCrossentropy", "CategoricalCrossentropy",
           "BinaryCrossentropy", "MeanSquaredError", "MeanAbsoluteError", "Huber",
           "sparse_categorical_crossentropy", "categorical_crossentropy", "binary_crossentropy",
           "mean_squared_error", "mean_absolute_error", "huber", "get", "serialize",
           "deserialize"]


def align_ranks(y_true, y_pred):
    """Keras's squeeze_or_expand_to_same_rank: when the ranks differ by one and the longer
    array ends in a size-1 axis, expand the other if it is rank 1, else squeeze that axis."""
    t_rank, p_rank = y_true.ndim, y_pred.ndim
    if t_rank == p_rank + 1 and y_true.shape[-1] == 1:
        if p_rank == 1:
            y_pred = y_pred[:, None]
        else:
            y_true = y_true[..., 0]
    elif p_rank == t_rank + 1 and y_pred.shape[-1] == 1:
        if t_rank == 1:
            y_true = y_true[:, None]
        else:
            y_pred = y_pred[..., 0]
    return y_true, y_pred


class Loss:
    """Base class, as keras.losses.Loss: ``loss(y_true, y_pred, sample_weight=None)``.

    Subclasses implement ``call(y_true, y_pred) -> values`` (Keras's loss values) and
    ``call_gradient(y_true, y_pred) -> d values / d y_pred`` (y_pred's shape: each prediction
    belongs to one value). reduction: see the module docstring. dtype: the dtype standalone
    calls compute in (None: y_pred's float dtype, float32 for integer predictions).
    """

    #: Keras's default name for instances of this class
    default_name = "loss"
    #: the output activation whose logits this loss can take instead of its output (or None)
    logits_activation = None

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        where = type(self).__name__
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"{where}: name must be a non-empty str, got {name!r}.")
        self.name = name if name is not None else self.default_name
        if not any(reduction is r or reduction == r for r in REDUCTIONS):
            raise ValueError(f"{where}: reduction must be one of {', '.join(map(repr, REDUCTIONS))}"
                             f", got {reduction!r}.")
        self.reduction = reduction
        self.dtype = None if dtype is None else standardize_dtype(dtype, where)

    # -- to implement ---------------------------------------------------------------------------
    def call(self, y_true, y_pred):
        """Keras's loss values for arrays (y_pred floating)."""
        raise NotImplementedError

    def call_gradient(self, y_true, y_pred):
        """d values / d y_pred, elementwise: y_pred's shape."""
        raise NotImplementedError(
            f"{type(self).__name__} has no call_gradient: minicnn has no automatic "
            "differentiation, so a loss used for training defines its gradient.")

    # -- standalone use -------------------------------------------------------------------------
    def _prediction(self, y_pred):
        y_pred = np.asarray(y_pred)
        if self.dtype is not None:
            return y_pred.astype(self.dtype, copy=False)
        if not np.issubdtype(y_pred.dtype, np.floating):
            return y_pred.astype(np.float32)
        return y_pred

    def __call__(self, y_true, y_pred, sample_weight=None):
        """The reduced loss, a float with .numpy() (or, with reduction None, the weighted
        values as a Tensor)."""
        y_pred = self._prediction(y_pred)
        values = np.asarray(self.call(np.asarray(y_true), y_pred))
        if values.ndim == 0 and sample_weight is not None:
            # Keras: one value (1-D inputs) times the weights, then reduced over the weights.
            values = values * np.asarray(sample_weight, dtype=values.dtype)
            sample_weight = None
        if self.reduction in (None, "none"):
            weights = self._weights_like(sample_weight, values)
            return as_tensor(values if weights is None else values * weights)
        if values.ndim == 0:
            return Scalar(values, values.dtype)
        dvalues = self._dvalues(sample_weight, values, self.reduction)
        return Scalar(np.sum(values * dvalues), values.dtype)

    # -- training -------------------------------------------------------------------------------
    def _weights_like(self, sample_weight, values):
        """Sample weights broadcast to the values' shape (per sample), or None."""
        if sample_weight is None:
            return None
        weights = np.asarray(sample_weight, dtype=values.dtype)
        if weights.ndim == 0:
            return np.broadcast_to(weights, values.shape)
        if values.ndim >= 1 and weights.size == values.shape[0] and (
                weights.ndim == 1 or weights.shape == (values.shape[0], 1)):
            per_sample = weights.reshape((values.shape[0],) + (1,) * (values.ndim - 1))
            return np.broadcast_to(per_sample, values.shape)
        if weights.shape == values.shape:
            return weights
        raise ValueError(f"{type(self).__name__}: sample_weight has shape {weights.shape}; "
                         f"expected one weight per sample ({values.shape[0]},) or the loss "
                         f"values' shape {values.shape}.")

    def _dvalues(self, sample_weight, values, reduction):
        """dL/dvalues for the reduction: w / divisor, in the values' shape and dtype."""
        weights = self._weights_like(sample_weight, values)
        if weights is None and reduction != "sum" and values.size:  # the common case, in one call
            t = values.dtype.type
            return np.full(values.shape, t(1) / t(values.size), values.dtype)
        w = np.ones(values.shape, values.dtype) if weights is None else weights
        if reduction == "sum":
            return np.array(w, dtype=values.dtype)
        if reduction == "mean_with_sample_weight" and weights is not None:
            divisor = weights.sum()
        else:
            divisor = values.size
        if divisor == 0:  # Keras's divide_no_nan
            return np.zeros(values.shape, values.dtype)
        return (w / values.dtype.type(divisor)).astype(values.dtype, copy=False)

    def _training_reduction(self):
        return "sum_over_batch_size" if self.reduction in (None, "none") else self.reduction

    def value_and_gradient(self, y_true, y_pred, sample_weight=None):
        """(L, dL/dy_pred) for a batch, L reduced as the module docstring says (a float)."""
        values = np.asarray(self.call(y_true, y_pred))
        dvalues = self._dvalues(sample_weight, values, self._training_reduction())
        grad = self.call_gradient(y_true, y_pred)
        # The values' axes lead y_pred's (the reduced last axis, and any size-1 axis the rank
        # alignment added or dropped, follow), so dL/dvalues broadcasts over the rest.
        expanded = dvalues.reshape(dvalues.shape + (1,) * (grad.ndim - dvalues.ndim))
        grad = (grad * expanded).astype(y_pred.dtype, copy=False)
        return float(np.sum(values * dvalues)), grad

    def value_and_gradient_from_logits(self, y_true, logits, sample_weight=None):
        """(L, dL/dlogits) when y_pred = logits_activation(logits) (see the module docstring)."""
        raise NotImplementedError(f"{type(self).__name__} has no logits shortcut.")

    # -- configuration --------------------------------------------------------------------------
    def get_config(self):
        """Keras's configuration keys: name, reduction and the class's own arguments."""
        return {"name": self.name, "reduction": self.reduction}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        options = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items()
                            if k not in ("name", "reduction"))
        return f"{type(self).__name__}({options})"


class _LastAxisLoss(Loss):
    """Losses that reduce the last axis, after Keras's rank alignment of y_true and y_pred:
    subclasses implement _values(t, p) and _local_gradient(t, p) on aligned arrays."""

    def _aligned(self, y_true, y_pred):
        y_true = np.asarray(y_true)
        y_true, y_pred_aligned = align_ranks(y_true, y_pred)
        if y_true.shape != y_pred_aligned.shape:
            raise ValueError(f"{type(self).__name__}: y_true has shape {np.shape(y_true)} and "
                             f"y_pred {y_pred.shape}; they must match (one target per output).")
        return y_true.astype(y_pred.dtype, copy=False), y_pred_aligned

    def call(self, y_true, y_pred):
        return self._values(*self._aligned(y_true, y_pred))

    def call_gradient(self, y_true, y_pred):
        t, p = self._aligned(y_true, y_pred)
        return self._local_gradient(t, p).astype(y_pred.dtype, copy=False).reshape(y_pred.shape)


def _check_axis(axis, where):
    axis = arguments.integer(axis, "axis", where)
    if axis != -1:
        raise ValueError(f"{where}: minicnn computes the loss over the last axis only "
                         f"(axis=-1), got axis={axis}. Move the class axis last first.")
    return axis


def _check_label_smoothing(value, where):
    value = arguments.real(value, "label_smoothing", where, minimum=0)
    if value > 1:
        raise ValueError(f"{where}: label_smoothing must be in [0, 1], got {value}.")
    return value


class _Crossentropy(Loss):
    """What the two categorical cross-entropies share: probabilities or logits, and the softmax
    shortcut through the fused op ops.softmax_crossentropy_*."""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None,
                 dtype=None, axis=-1):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        where = type(self).__name__
        self.from_logits = arguments.boolean(from_logits, "from_logits", where)
        self.axis = _check_axis(axis, where)

    @property
    def logits_activation(self):
        return None if self.from_logits else "softmax"

    def _target(self, y_true, num_classes, dtype):
        raise NotImplementedError

    def _fused(self, y_true, logits):
        """The fused op on (rows, K) logits: (values in y_pred's shape minus the last axis,
        cache)."""
        flat = logits.reshape(-1, logits.shape[-1])
        values, cache = ops.active.softmax_crossentropy_forward(
            flat, self._target(y_true, logits.shape[-1], logits.dtype))
        return values.reshape(logits.shape[:-1]), cache

    def call(self, y_true, y_pred):
        if self.from_logits:
            return self._fused(y_true, y_pred)[0]
        return self._call_probabilities(y_true, y_pred)

    def call_gradient(self, y_true, y_pred):
        if self.from_logits:
            values, cache = self._fused(y_true, y_pred)
            ones = np.ones(values.size, y_pred.dtype)
            return ops.active.softmax_crossentropy_backward(ones, cache).reshape(y_pred.shape)
        return self._gradient_probabilities(y_true, y_pred)

    def value_and_gradient_from_logits(self, y_true, logits, sample_weight=None):
        values, cache = self._fused(y_true, logits)
        dvalues = self._dvalues(sample_weight, values, self._training_reduction())
        dlogits = ops.active.softmax_crossentropy_backward(dvalues.reshape(-1), cache)
        return float(np.sum(values * dvalues)), dlogits.reshape(logits.shape)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits, "axis": self.axis}


class SparseCategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with integer labels. y_true: (N,) or (N, 1) ints in [0, K); y_pred: (N, K)
    probabilities (or logits with from_logits=True)."""

    default_name = "sparse_categorical_crossentropy"

    def __init__(self, from_logits=False, ignore_class=None, reduction="sum_over_batch_size",
                 axis=-1, name=None, dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype,
                         axis=axis)
        if ignore_class is not None:
            raise ValueError("SparseCategoricalCrossentropy: ignore_class is not supported by "
                             "minicnn yet; leave it None (drop those samples, or give them "
                             "sample_weight 0).")
        self.ignore_class = None

    def _labels(self, y_true):
        return np.asarray(y_true).reshape(-1).astype(np.intp, copy=False)

    def _target(self, y_true, num_classes, dtype):
        return self._labels(y_true)

    def _call_probabilities(self, y_true, y_pred):
        labels = self._labels(y_true)
        clipped = np.clip(y_pred, EPSILON, 1 - EPSILON).reshape(-1, y_pred.shape[-1])
        values = -np.log(clipped[np.arange(labels.size), labels]) + np.log(clipped.sum(axis=-1))
        return values.reshape(y_pred.shape[:-1])

    def _gradient_probabilities(self, y_true, y_pred):
        labels = self._labels(y_true)
        flat = y_pred.reshape(-1, y_pred.shape[-1])
        target = np.zeros_like(flat)
        target[np.arange(labels.size), labels] = 1
        clipped = np.clip(flat, EPSILON, 1 - EPSILON)
        inside = (flat > EPSILON) & (flat < 1 - EPSILON)  # the clip's gradient is 0 outside
        grad = -target / clipped + 1.0 / clipped.sum(axis=-1, keepdims=True)
        return (grad * inside).astype(y_pred.dtype, copy=False).reshape(y_pred.shape)

    def get_config(self):
        return {**super().get_config(), "ignore_class": None}


class CategoricalCrossentropy(_Crossentropy):
    """Cross-entropy with one-hot (or soft) labels. y_true, y_pred: (N, K).
    label_smoothing s replaces t by t (1 - s) + s / K."""

    default_name = "categorical_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype,
                         axis=axis)
        self.label_smoothing = _check_label_smoothing(label_smoothing, type(self).__name__)

    def _target(self, y_true, num_classes, dtype):
        t = np.asarray(y_true, dtype=dtype).reshape(-1, num_classes)
        if self.label_smoothing:
            t = t * (1 - self.label_smoothing) + self.label_smoothing / num_classes
        return t

    def _call_probabilities(self, y_true, y_pred):
        t = self._target(y_true, y_pred.shape[-1], y_pred.dtype).reshape(y_pred.shape)
        total = y_pred.sum(axis=-1, keepdims=True)
        p = np.clip(y_pred / total, EPSILON, 1 - EPSILON)
        return -(t * np.log(p)).sum(axis=-1)

    def _gradient_probabilities(self, y_true, y_pred):
        t = self._target(y_true, y_pred.shape[-1], y_pred.dtype).reshape(y_pred.shape)
        total = y_pred.sum(axis=-1, keepdims=True)
        normalized = y_pred / total
        p = np.clip(normalized, EPSILON, 1 - EPSILON)
        inside = (normalized > EPSILON) & (normalized < 1 - EPSILON)
        dnormalized = -t / p * inside
        # Through the normalisation p_k = y_k / S: dL/dy_j = (g_j - sum_k g_k p_k) / S.
        grad = (dnormalized - (dnormalized * normalized).sum(axis=-1, keepdims=True)) / total
        return grad.astype(y_pred.dtype, copy=False)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


def _sigmoid(z):
    return ops.active.activation_forward(np.ascontiguousarray(z), "sigmoid")[0]


class BinaryCrossentropy(_LastAxisLoss):
    """Cross-entropy of 0/1 (or soft) labels against probabilities (or logits with
    from_logits=True), averaged over the last axis. y_true: (N,) or (N, 1) for a (N, 1)
    output, (N, C) for C independent labels. label_smoothing s: t -> t (1 - s) + s / 2."""

    default_name = "binary_crossentropy"

    def __init__(self, from_logits=False, label_smoothing=0.0, axis=-1,
                 reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        where = type(self).__name__
        self.from_logits = arguments.boolean(from_logits, "from_logits", where)
        self.label_smoothing = _check_label_smoothing(label_smoothing, where)
        self.axis = _check_axis(axis, where)

    @property
    def logits_activation(self):
        return None if self.from_logits else "sigmoid"

    def _smoothed(self, t):
        return t * (1 - self.label_smoothing) + 0.5 * self.label_smoothing \
            if self.label_smoothing else t

    @staticmethod
    def _from_logits_elementwise(t, z):
        # max(z, 0) - z t + log(1 + exp(-|z|)): TensorFlow's sigmoid_cross_entropy_with_logits.
        return np.maximum(z, 0) - z * t + np.log1p(np.exp(-np.abs(z)))

    def _values(self, t, p):
        t = self._smoothed(t)
        if self.from_logits:
            return self._from_logits_elementwise(t, p).mean(axis=-1)
        clipped = np.clip(p, EPSILON, 1 - EPSILON)
        return -(t * np.log(clipped) + (1 - t) * np.log(1 - clipped)).mean(axis=-1)

    def _local_gradient(self, t, p):
        t = self._smoothed(t)
        count = p.dtype.type(p.shape[-1])
        if self.from_logits:
            return (_sigmoid(p) - t) / count
        clipped = np.clip(p, EPSILON, 1 - EPSILON)
        inside = (p > EPSILON) & (p < 1 - EPSILON)
        return (-(t / clipped) + (1 - t) / (1 - clipped)) * inside / count

    def value_and_gradient_from_logits(self, y_true, logits, sample_weight=None):
        t, z = self._aligned(y_true, logits)
        t = self._smoothed(t)
        values = self._from_logits_elementwise(t, z).mean(axis=-1)
        dvalues = self._dvalues(sample_weight, values, self._training_reduction())
        dlogits = (_sigmoid(z) - t) / z.dtype.type(z.shape[-1]) * dvalues[..., None]
        return float(np.sum(values * dvalues)), dlogits.astype(logits.dtype).reshape(
            logits.shape)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits,
                "label_smoothing": self.label_smoothing, "axis": self.axis}


class MeanSquaredError(_LastAxisLoss):
    """mean over the last axis of (y_pred - y_true)^2. y_true: y_pred's shape (or (N,) for a
    (N, 1) output)."""

    default_name = "mean_squared_error"

    def _values(self, t, p):
        return np.square(p - t).mean(axis=-1)

    def _local_gradient(self, t, p):
        return 2 * (p - t) / p.dtype.type(p.shape[-1])


class MeanAbsoluteError(_LastAxisLoss):
    """mean over the last axis of |y_pred - y_true| (gradient sign(e), 0 where e = 0)."""

    default_name = "mean_absolute_error"

    def _values(self, t, p):
        return np.abs(p - t).mean(axis=-1)

    def _local_gradient(self, t, p):
        return np.sign(p - t) / p.dtype.type(p.shape[-1])


class Huber(_LastAxisLoss):
    """mean over the last axis of 0.5 e^2 where |e| <= delta, else delta |e| - 0.5 delta^2,
    with e = y_pred - y_true: quadratic near 0, linear (robust to outliers) beyond delta."""

    default_name = "huber_loss"

    def __init__(self, delta=1.0, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.delta = arguments.real(delta, "delta", type(self).__name__, minimum=0)

    def _values(self, t, p):
        error = p - t
        small = np.abs(error) <= self.delta
        return np.where(small, 0.5 * np.square(error),
                        self.delta * np.abs(error) - 0.5 * self.delta ** 2).mean(axis=-1)

    def _local_gradient(self, t, p):
        error = p - t
        small = np.abs(error) <= self.delta
        return np.where(small, error, self.delta * np.sign(error)) / p.dtype.type(p.shape[-1])

    def get_config(self):
        return {**super().get_config(), "delta": self.delta}


# -- functions, as keras.losses.<name>(y_true, y_pred): Keras's values, as a Tensor ---------------
def _values_tensor(loss, y_true, y_pred):
    return as_tensor(loss.call(np.asarray(y_true), loss._prediction(y_pred)))


def sparse_categorical_crossentropy(y_true, y_pred, from_logits=False, ignore_class=None,
                                    axis=-1):
    """Per-sample sparse cross-entropy, y_pred's shape minus the last axis ((N,))."""
    return _values_tensor(SparseCategoricalCrossentropy(from_logits, ignore_class, axis=axis),
                          y_true, y_pred)


def categorical_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Per-sample categorical cross-entropy (N,)."""
    return _values_tensor(CategoricalCrossentropy(from_logits, label_smoothing, axis),
                          y_true, y_pred)


def binary_crossentropy(y_true, y_pred, from_logits=False, label_smoothing=0.0, axis=-1):
    """Binary cross-entropy averaged over the last axis (N,). Unlike Keras's bare function,
    labels (N,) against predictions (N, 1) are aligned first, as its loss class does (Keras's
    function would broadcast them to (N, N))."""
    return _values_tensor(BinaryCrossentropy(from_logits, label_smoothing, axis),
                          y_true, y_pred)


def mean_squared_error(y_true, y_pred):
    """mean((y_pred - y_true)^2, axis=-1)."""
    return _values_tensor(MeanSquaredError(), y_true, y_pred)


def mean_absolute_error(y_true, y_pred):
    """mean(|y_pred - y_true|, axis=-1)."""
    return _values_tensor(MeanAbsoluteError(), y_true, y_pred)


def huber(y_true, y_pred, delta=1.0):
    """The Huber loss averaged over the last axis (see Huber)."""
    return _values_tensor(Huber(delta), y_true, y_pred)


# -- lookup ------------------------------------------------------------------------------------
LOSS_CLASSES = (SparseCategoricalCrossentropy, CategoricalCrossentropy, BinaryCrossentropy,
                MeanSquaredError, MeanAbsoluteError, Huber)
_BY_FUNCTION = {
    sparse_categorical_crossentropy: SparseCategoricalCrossentropy,
    categorical_crossentropy: CategoricalCrossentropy,
    binary_crossentropy: BinaryCrossentropy,
    mean_squared_error: MeanSquaredError,
    mean_absolute_error: MeanAbsoluteError,
    huber: Huber,
}
# Keras's strings (losses.ALL_OBJECTS_DICT): class names, function names and its aliases.
_BY_NAME = {cls.__name__: cls for cls in LOSS_CLASSES}
_BY_NAME.update({fn.__name__: cls for fn, cls in _BY_FUNCTION.items()})
_BY_NAME.update({"bce": BinaryCrossentropy, "BCE": BinaryCrossentropy,
                 "mse": MeanSquaredError, "MSE": MeanSquaredError,
                 "mae": MeanAbsoluteError, "MAE": MeanAbsoluteError})
# Older minicnn files name the loss by its default name (huber_loss included).
_BY_DEFAULT_NAME = {cls.default_name: cls for cls in LOSS_CLASSES}
_FOLDED = {key.lower(): cls for key, cls in {**_BY_DEFAULT_NAME, **_BY_NAME}.items()}


def _unknown(identifier):
    names = sorted((k for k in _BY_NAME if not k[0].isupper() or k.isupper()), key=str.lower)
    return ValueError(
        f"compile: unknown loss {identifier!r}. minicnn has the losses "
        f"{', '.join(cls.__name__ for cls in LOSS_CLASSES)}, by name: {', '.join(names)}; "
        "or an instance such as losses.SparseCategoricalCrossentropy(from_logits=True).")


def get(identifier):
    """A Loss from Keras's identifiers: an instance, a class, a name ('mse',
    'binary_crossentropy', 'Huber', ...), one of this module's functions, or a
    {'class_name', 'config'} dict."""
    if isinstance(identifier, Loss):
        return identifier
    if isinstance(identifier, type) and issubclass(identifier, Loss):
        return identifier()
    if isinstance(identifier, dict):
        return deserialize(identifier)
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier) or _FOLDED.get(identifier.lower())
        if cls is None:
            raise _unknown(identifier)
        return cls()
    if callable(identifier):
        cls = _BY_FUNCTION.get(identifier)
        if cls is not None:
            return cls()
        raise TypeError(
            f"compile: the loss {getattr(identifier, '__name__', identifier)!r} is a plain "
            "function. minicnn has no automatic differentiation, so a custom loss is a "
            "losses.Loss subclass that defines call(y_true, y_pred) (per-sample values) and "
            "call_gradient(y_true, y_pred) (their derivative by y_pred).")
    raise _unknown(identifier)


def serialize(loss):
    """{'class_name': ..., **loss.get_config()}: what deserialize rebuilds (a flat dict, so
    files of the two cross-entropies stay readable by earlier minicnn versions, which look up
    'name' and 'from_logits')."""
    return {"class_name": type(loss).__name__, **loss.get_config()}


def deserialize(config):
    """Rebuild a loss from serialize()'s dict, a Keras-style {'class_name', 'config'} dict, or
    the {'name', 'from_logits'} dict of files written by earlier minicnn versions."""
    if "class_name" in config:
        name = config["class_name"]
        cls = _BY_NAME.get(name)
        if cls is None or cls.__name__ != name:
            raise ValueError(f"unknown loss class {name!r}; minicnn has "
                             f"{', '.join(c.__name__ for c in LOSS_CLASSES)}.")
        arguments = config["config"] if isinstance(config.get("config"), dict) else {
            k: v for k, v in config.items() if k != "class_name"}
        return cls.from_config(dict(arguments))
    cls = _BY_DEFAULT_NAME.get(config.get("name"))
    if cls is None:
        raise _unknown(config.get("name"))
    return cls(from_logits=config.get("from_logits", False))
