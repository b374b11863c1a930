"""The Keras losses on arrays: each against an independent NumPy version of Keras's formula and
against real Keras (JAX backend), every reduction and sample weighting, float64 finite
differences of the gradient, the sigmoid logits shortcut, names, configurations, errors."""

import json
import os
import pickle

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras
import numpy as np
import pytest
from test_losses import numeric_gradient, rel_error

from minicnn import losses
from minicnn.tensor import Scalar, Tensor

EPS = 1e-7


# -- the oracle: Keras's formulas written out in NumPy (per-sample values, last axis reduced) --
def np_sigmoid(z):
    return 1 / (1 + np.exp(-z))


def np_softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def np_bce(t, p, label_smoothing=0.0):
    t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    p = np.clip(p, EPS, 1 - EPS)
    return np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p)), axis=-1)


def np_bce_logits(t, z, label_smoothing=0.0):
    t = t * (1 - label_smoothing) + 0.5 * label_smoothing
    # -t log sigmoid(z) - (1 - t) log(1 - sigmoid(z)), written with log1p for moderate z
    return np.mean(t * np.log1p(np.exp(-z)) + (1 - t) * np.log1p(np.exp(z)), axis=-1)


def np_cce(t, p, label_smoothing=0.0):
    t = t * (1 - label_smoothing) + label_smoothing / t.shape[-1]
    p = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
    return -np.sum(t * np.log(p), axis=-1)


def np_cce_logits(t, z, label_smoothing=0.0):
    return np_cce(t, np_softmax(z), label_smoothing)


def np_scce(labels, p):
    c = np.clip(p, EPS, 1 - EPS)
    return -np.log(c[np.arange(len(labels)), labels]) + np.log(c.sum(-1))


def np_mse(t, p):
    return np.mean((p - t) ** 2, axis=-1)


def np_mae(t, p):
    return np.mean(np.abs(p - t), axis=-1)


def np_huber(t, p, delta=1.0):
    e = p - t
    return np.mean(np.where(np.abs(e) <= delta, 0.5 * e ** 2, delta * np.abs(e) - 0.5 * delta ** 2),
                   axis=-1)


def np_reduce(values, weights, reduction):
    """Keras's reduce_weighted_values for per-sample values (N,) and weights (N,)."""
    w = np.ones_like(values) if weights is None else weights
    total = np.sum(values * w)
    if reduction == "sum":
        return total
    if reduction == "mean_with_sample_weight" and weights is not None:
        return total / np.sum(weights)
    return total / values.size


# -- the cases: (name, minicnn loss maker, Keras loss maker, oracle, targets, predictions) ----
def make_cases(rng, n=6):
    k = 4
    probs = np_softmax(rng.normal(size=(n, k)) * 1.5)
    labels = rng.integers(0, k, n)
    onehot = np.eye(k)[labels]
    soft = np_softmax(rng.normal(size=(n, k)))
    logits = rng.normal(size=(n, k)) * 2
    binary = rng.integers(0, 2, (n, 3)).astype(np.float64)
    binary_probs = rng.uniform(0.05, 0.95, (n, 3))
    targets = rng.normal(size=(n, 3))
    outputs = targets + rng.normal(size=(n, 3)) * 1.5
    col = rng.integers(0, 2, n).astype(np.float64)
    def both(ours, theirs, **options):
        """The two constructors with the case's options; each takes reduction=... too."""
        return (lambda **kw: ours(**options, **kw)), (lambda **kw: theirs(**options, **kw))

    L, K = losses, keras.losses
    return [
        ("scce", *both(L.SparseCategoricalCrossentropy, K.SparseCategoricalCrossentropy),
         np_scce, labels, probs),
        ("scce_logits", *both(L.SparseCategoricalCrossentropy, K.SparseCategoricalCrossentropy,
                              from_logits=True),
         lambda t, z: np_scce(t, np_softmax(z)), labels, logits),
        ("cce", *both(L.CategoricalCrossentropy, K.CategoricalCrossentropy), np_cce, soft, probs),
        ("cce_smoothing", *both(L.CategoricalCrossentropy, K.CategoricalCrossentropy,
                                label_smoothing=0.2),
         lambda t, p: np_cce(t, p, 0.2), onehot, probs),
        ("cce_logits", *both(L.CategoricalCrossentropy, K.CategoricalCrossentropy,
                             from_logits=True), np_cce_logits, onehot, logits),
        ("bce", *both(L.BinaryCrossentropy, K.BinaryCrossentropy), np_bce, binary, binary_probs),
        ("bce_column", *both(L.BinaryCrossentropy, K.BinaryCrossentropy),
         lambda t, p: np_bce(t[:, None], p), col, binary_probs[:, :1]),
        ("bce_smoothing", *both(L.BinaryCrossentropy, K.BinaryCrossentropy, label_smoothing=0.1),
         lambda t, p: np_bce(t, p, 0.1), binary, binary_probs),
        ("bce_logits", *both(L.BinaryCrossentropy, K.BinaryCrossentropy, from_logits=True),
         np_bce_logits, binary, logits[:, :3]),
        ("mse", *both(L.MeanSquaredError, K.MeanSquaredError), np_mse, targets, outputs),
        ("mse_column", *both(L.MeanSquaredError, K.MeanSquaredError),
         lambda t, p: np_mse(t[:, None], p), targets[:, 0], outputs[:, :1]),
        ("mae", *both(L.MeanAbsoluteError, K.MeanAbsoluteError), np_mae, targets, outputs),
        ("huber", *both(L.Huber, K.Huber), np_huber, targets, outputs),
        ("huber_delta", *both(L.Huber, K.Huber, delta=0.5), lambda t, p: np_huber(t, p, 0.5),
         targets, outputs),
    ]


CASE_NAMES = [case[0] for case in make_cases(np.random.default_rng(0))]


@pytest.fixture(params=CASE_NAMES)
def case(request):
    cases = {c[0]: c for c in make_cases(np.random.default_rng(5))}
    return cases[request.param]


def test_values_match_the_numpy_formula_and_keras(case):
    _, make, make_keras, oracle, t, p = case
    loss, keras_loss = make(), make_keras()
    np.testing.assert_allclose(loss.call(t, p), oracle(t, p), rtol=1e-12, atol=1e-15)
    assert loss(t, p) == pytest.approx(np.mean(oracle(t, p)), rel=1e-12)
    # Real Keras computes in float32.
    assert loss(t, p.astype(np.float32)) == pytest.approx(float(keras_loss(t, p)), rel=2e-5)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean",
                                       "mean_with_sample_weight", None, "none"])
def test_every_reduction_with_and_without_weights_as_keras(case, reduction, rng):
    _, make, make_keras, oracle, t, p = case
    loss, keras_loss = make(reduction=reduction), make_keras(reduction=reduction)
    values = oracle(t, p)
    weights = rng.uniform(0, 2, len(values))
    for w in (None, weights):
        got = loss(t, p, sample_weight=w)
        theirs = np.asarray(keras_loss(t, p.astype(np.float32), sample_weight=w))
        if reduction in (None, "none"):
            assert isinstance(got, Tensor)
            np.testing.assert_allclose(got, values * (1 if w is None else w), rtol=1e-12)
            np.testing.assert_allclose(got, theirs, rtol=2e-5, atol=1e-6)
        else:
            assert isinstance(got, Scalar)
            assert got == pytest.approx(np_reduce(values, w, reduction), rel=1e-12)
            assert got == pytest.approx(float(theirs), rel=2e-5)


@pytest.mark.parametrize("reduction", ["sum_over_batch_size", "sum", "mean_with_sample_weight",
                                       None])
def test_gradient_matches_finite_differences_in_float64(case, reduction, rng):
    _, make, _, _, t, p = case
    loss = make(reduction=reduction)
    reference = make(reduction=reduction or "sum_over_batch_size")  # None trains as the mean
    for w in (None, rng.uniform(0.1, 2, len(p))):
        value, grad = loss.value_and_gradient(t, p, w)
        assert grad.shape == p.shape and grad.dtype == np.float64
        assert value == pytest.approx(reference(t, p, sample_weight=w), rel=1e-12)
        numeric = numeric_gradient(lambda q, w=w: reference(t, q, sample_weight=w), p)
        assert rel_error(grad, numeric) < 1e-7


def test_binary_sigmoid_shortcut_takes_the_logits(rng):
    """A sigmoid output's loss and gradient from its logits: Keras's TensorFlow backend."""
    loss = losses.BinaryCrossentropy()
    assert loss.logits_activation == "sigmoid"
    assert losses.BinaryCrossentropy(from_logits=True).logits_activation is None
    z = rng.normal(size=(5, 3)) * 2
    t = rng.integers(0, 2, (5, 3)).astype(np.float64)
    w = rng.uniform(0, 2, 5)
    value, dz = loss.value_and_gradient_from_logits(t, z, w)
    assert value == pytest.approx(loss(t, np_sigmoid(z), sample_weight=w), rel=1e-9)
    np.testing.assert_allclose(dz, (np_sigmoid(z) - t) * w[:, None] / (5 * 3), rtol=1e-12)
    numeric = numeric_gradient(lambda q: loss(t, np_sigmoid(q), sample_weight=w), z)
    assert rel_error(dz, numeric) < 1e-7
    # Where the probabilities round to 0 or 1 the logits still give the exact loss and a
    # gradient that does not vanish; the clipped probabilities give neither.
    z = np.array([[40.0], [-40.0]])
    t = np.array([[0.0], [1.0]])
    value, dz = loss.value_and_gradient_from_logits(t, z)
    assert value == pytest.approx(40.0)
    np.testing.assert_allclose(dz, [[0.5], [-0.5]])
    assert loss(t, np_sigmoid(z)) == pytest.approx(-np.log(EPS), rel=1e-6)  # clipped
    # (N,) labels against a (N, 1) output
    value, dz = loss.value_and_gradient_from_logits(np.array([0.0, 1.0]), z)
    assert value == pytest.approx(40.0) and dz.shape == (2, 1)


def test_reduction_none_trains_as_the_mean_as_keras(rng):
    t, p = rng.normal(size=(4, 2)), rng.normal(size=(4, 2))
    unreduced = losses.MeanSquaredError(reduction=None)
    assert isinstance(unreduced(t, p), Tensor) and unreduced(t, p).shape == (4,)
    value, grad = unreduced.value_and_gradient(t, p)
    mean_value, mean_grad = losses.MeanSquaredError().value_and_gradient(t, p)
    assert value == mean_value
    np.testing.assert_array_equal(grad, mean_grad)


def test_one_dimensional_inputs_give_keras_single_value():
    # Keras's docstring example: 1-D arrays are one sample of three outputs.
    assert losses.MeanSquaredError()([1.0, 0.0, 1.0], [0.9, 0.1, 0.8]) == pytest.approx(0.02)
    assert losses.MeanAbsoluteError()([1.0, 0.3, 1.0], [1.9, 0.3, 1.8]) == pytest.approx(
        0.5666667, rel=1e-6)
    value = losses.BinaryCrossentropy(from_logits=True)([0, 1, 0, 0], [-18.6, 0.51, 2.94, -12.8])
    assert value == pytest.approx(0.8654, abs=1e-4)


def test_functions_are_keras_per_sample_values(rng):
    t, p = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    for fn, oracle in ((losses.mean_squared_error, np_mse), (losses.mean_absolute_error, np_mae),
                       (losses.huber, np_huber)):
        got = fn(t, p)
        assert isinstance(got, Tensor) and got.shape == (4,)
        np.testing.assert_allclose(got, oracle(t, p), rtol=1e-12)
        np.testing.assert_allclose(got, np.asarray(getattr(keras.losses, fn.__name__)(t, p)),
                                   rtol=2e-5)
    probs = rng.uniform(0.05, 0.95, (4, 1))
    labels = np.array([0, 1, 1, 0])
    # Keras's bare function would broadcast (4,) against (4, 1) to (4, 4); the aligned
    # values are what its loss class (and compile) computes.
    np.testing.assert_allclose(losses.binary_crossentropy(labels, probs),
                               np_bce(labels[:, None].astype(float), probs), rtol=1e-12)
    np.testing.assert_allclose(losses.huber(t, p, delta=0.3), np_huber(t, p, 0.3), rtol=1e-12)


def test_scalar_result_has_numpy_and_stays_a_float(rng):
    logits = rng.normal(size=(3, 10)).astype(np.float32)
    labels = np.array([1, 2, 3], dtype=np.uint8)
    value = losses.SparseCategoricalCrossentropy(from_logits=True)(labels, logits)
    assert isinstance(value, float) and isinstance(value, Scalar)
    assert type(value.numpy()) is np.float32 and value.numpy() == np.float32(value)
    assert json.loads(json.dumps({"loss": value}))["loss"] == float(value)
    assert pickle.loads(pickle.dumps(value)).numpy().dtype == np.float32
    assert type(value + 1) is float  # arithmetic gives plain floats
    assert losses.MeanSquaredError()(np.ones((2, 2)), np.zeros((2, 2))).numpy().dtype == \
        np.float64
    assert losses.MeanSquaredError()([[1]], [[3]]).numpy() == np.float32(4.0)  # ints -> float32


@pytest.mark.parametrize("identifier, cls", [
    ("mse", losses.MeanSquaredError), ("MSE", losses.MeanSquaredError),
    ("mean_squared_error", losses.MeanSquaredError), ("MeanSquaredError", losses.MeanSquaredError),
    ("mae", losses.MeanAbsoluteError), ("mean_absolute_error", losses.MeanAbsoluteError),
    ("huber", losses.Huber), ("Huber", losses.Huber), ("bce", losses.BinaryCrossentropy),
    ("binary_crossentropy", losses.BinaryCrossentropy),
    ("categorical_crossentropy", losses.CategoricalCrossentropy),
    ("SparseCategoricalCrossentropy", losses.SparseCategoricalCrossentropy),
    (losses.categorical_crossentropy, losses.CategoricalCrossentropy),
    (losses.huber, losses.Huber), (losses.Huber, losses.Huber),
    ({"class_name": "Huber", "config": {"delta": 2.0}}, losses.Huber),
])
def test_get_takes_keras_identifiers(identifier, cls):
    loss = losses.get(identifier)
    assert type(loss) is cls
    assert loss.get_config() == cls().get_config() or loss.delta == 2.0


def test_get_and_constructors_explain_what_is_wrong():
    with pytest.raises(ValueError, match=r"unknown loss 'msee'.*Huber.*by name: .*mse"):
        losses.get("msee")

    def my_loss(y_true, y_pred):
        return (y_true - y_pred) ** 2
    with pytest.raises(TypeError, match=r"'my_loss' is a plain function.*no automatic "
                                        r"differentiation.*call_gradient"):
        losses.get(my_loss)
    with pytest.raises(ValueError, match="reduction must be one of"):
        losses.MeanSquaredError(reduction="average")
    with pytest.raises(ValueError, match="ignore_class is not supported"):
        losses.SparseCategoricalCrossentropy(ignore_class=255)
    with pytest.raises(ValueError, match="last axis only"):
        losses.CategoricalCrossentropy(axis=1)
    with pytest.raises(ValueError, match=r"label_smoothing must be in \[0, 1\]"):
        losses.BinaryCrossentropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match=r"y_true has shape \(4, 3\) and y_pred \(4, 2\)"):
        losses.MeanSquaredError()(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="one weight per sample"):
        losses.MeanSquaredError()(np.zeros((4, 3)), np.zeros((4, 3)), sample_weight=np.ones(3))


def test_configs_round_trip_and_match_keras_keys():
    for loss, keras_loss in [
            (losses.SparseCategoricalCrossentropy(from_logits=True, name="s"),
             keras.losses.SparseCategoricalCrossentropy(from_logits=True, name="s")),
            (losses.CategoricalCrossentropy(label_smoothing=0.1, reduction="sum"),
             keras.losses.CategoricalCrossentropy(label_smoothing=0.1, reduction="sum")),
            (losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2),
             keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.2)),
            (losses.MeanSquaredError(), keras.losses.MeanSquaredError()),
            (losses.MeanAbsoluteError(reduction=None), keras.losses.MeanAbsoluteError(
                reduction=None)),
            (losses.Huber(delta=0.5), keras.losses.Huber(delta=0.5))]:
        ours = loss.get_config()
        assert set(keras_loss.get_config()) <= set(ours)  # Keras's keys, and its values
        assert {k: ours[k] for k in keras_loss.get_config()} == keras_loss.get_config()
        again = losses.deserialize(json.loads(json.dumps(losses.serialize(loss))))
        assert type(again) is type(loss) and again.get_config() == ours
    # Files from earlier minicnn versions name the loss and its from_logits only.
    old = losses.deserialize({"name": "categorical_crossentropy", "from_logits": True})
    assert isinstance(old, losses.CategoricalCrossentropy) and old.from_logits
