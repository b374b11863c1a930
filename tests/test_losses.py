"""Losses: Keras's formulas, their gradients, and the fused softmax path."""

import numpy as np
import pytest

from minicnn import losses


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def numeric_gradient(f, y_pred, eps=1e-6):
    grad = np.zeros_like(y_pred)
    for index in np.ndindex(*y_pred.shape):
        bumped = y_pred.copy()
        bumped[index] += eps
        plus = f(bumped)
        bumped[index] -= 2 * eps
        grad[index] = (plus - f(bumped)) / (2 * eps)
    return grad


def rel_error(a, b):
    return np.linalg.norm(a - b) / (np.linalg.norm(a) + np.linalg.norm(b))


@pytest.fixture
def batch(rng):
    logits = rng.normal(size=(5, 4)) * 2
    labels = np.array([0, 3, 1, 1, 2])
    return logits, labels, np.eye(4)[labels]


def test_sparse_matches_plain_cross_entropy_and_clips_like_keras(batch):
    logits, labels, _ = batch
    p = softmax(logits)
    loss = losses.SparseCategoricalCrossentropy()
    np.testing.assert_allclose(loss(labels, p), -np.mean(np.log(p[np.arange(5), labels])),
                               rtol=1e-6)
    certain_wrong = np.array([[1.0, 0.0, 0.0, 0.0]])
    # Keras clips at 1e-7: -log(1e-7) + log(sum of clipped probabilities) = 16.118...
    expected = -np.log(1e-7) + np.log(1 - 1e-7 + 3e-7)
    assert loss(np.array([1]), certain_wrong) == pytest.approx(expected, rel=1e-12)


def test_categorical_matches_sparse_on_one_hot(batch):
    logits, labels, onehot = batch
    p = softmax(logits)
    assert losses.CategoricalCrossentropy()(onehot, p) == pytest.approx(
        losses.SparseCategoricalCrossentropy()(labels, p), rel=1e-6)
    # Keras normalises the rows first: scaling probabilities changes nothing.
    assert losses.CategoricalCrossentropy()(onehot, 3 * p) == pytest.approx(
        losses.CategoricalCrossentropy()(onehot, p), rel=1e-12)


def test_from_logits_equals_probabilities_path(batch):
    logits, labels, onehot = batch
    p = softmax(logits)
    for loss_cls, target in ((losses.SparseCategoricalCrossentropy, labels),
                             (losses.CategoricalCrossentropy, onehot)):
        assert loss_cls(from_logits=True)(target, logits) == pytest.approx(
            loss_cls()(target, p), rel=1e-6)
    huge = np.array([[1000.0, -1000.0]])  # stable: no overflow, no nan
    value = losses.SparseCategoricalCrossentropy(from_logits=True)(np.array([1]), huge)
    assert value == pytest.approx(2000.0)


@pytest.mark.parametrize("loss_cls", [losses.SparseCategoricalCrossentropy,
                                      losses.CategoricalCrossentropy])
@pytest.mark.parametrize("from_logits", [False, True])
def test_gradient_matches_finite_differences(loss_cls, from_logits, batch, rng):
    logits, labels, onehot = batch
    target = labels if loss_cls is losses.SparseCategoricalCrossentropy else onehot
    y_pred = logits if from_logits else rng.uniform(0.05, 1.0, size=logits.shape)
    loss = loss_cls(from_logits=from_logits)
    numeric = numeric_gradient(lambda p: loss(target, p), y_pred)
    value, grad = loss.value_and_gradient(target, y_pred)
    assert value == pytest.approx(loss(target, y_pred), rel=1e-12)
    assert rel_error(grad, numeric) < 1e-7
    weights = rng.uniform(0, 2, size=len(y_pred))
    numeric = numeric_gradient(lambda p: loss(target, p, sample_weight=weights), y_pred)
    value, grad = loss.value_and_gradient(target, y_pred, weights)
    assert value == pytest.approx(loss(target, y_pred, sample_weight=weights), rel=1e-12)
    assert rel_error(grad, numeric) < 1e-7


@pytest.mark.parametrize("loss_cls", [losses.SparseCategoricalCrossentropy,
                                      losses.CategoricalCrossentropy])
def test_softmax_logits_shortcut_gradient_is_p_minus_onehot_over_n(loss_cls, batch, rng):
    """The model's shortcut for a softmax output: value and gradient from the logits."""
    logits, labels, onehot = batch
    target = labels if loss_cls is losses.SparseCategoricalCrossentropy else onehot
    loss = loss_cls()
    assert loss.logits_activation == "softmax"
    assert loss_cls(from_logits=True).logits_activation is None
    value, dlogits = loss.value_and_gradient_from_logits(target, logits)
    np.testing.assert_allclose(dlogits, (softmax(logits) - onehot) / 5, rtol=1e-12)
    assert value == pytest.approx(loss(target, softmax(logits)), rel=1e-9)
    numeric = numeric_gradient(lambda z: loss(target, softmax(z)), logits)
    assert rel_error(dlogits, numeric) < 1e-7
    weights = rng.uniform(0, 2, size=5)
    value, dlogits = loss.value_and_gradient_from_logits(target, logits, weights)
    np.testing.assert_allclose(dlogits, (softmax(logits) - onehot) * weights[:, None] / 5,
                               rtol=1e-12)
    assert value == pytest.approx(loss(target, softmax(logits), sample_weight=weights),
                                  rel=1e-9)


def test_sample_weights_reduce_as_keras_sum_over_batch_size(batch):
    """Keras divides the weighted sum by the batch size, not by the sum of the weights."""
    logits, labels, _ = batch
    p = softmax(logits)
    loss = losses.SparseCategoricalCrossentropy()
    per_sample = -np.log(p[np.arange(5), labels])
    weights = np.array([1.0, 0.0, 2.0, 0.5, 0.0])
    assert loss(labels, p, sample_weight=weights) == pytest.approx(
        np.sum(per_sample * weights) / 5, rel=1e-6)


def test_functional_forms_and_names():
    p = np.array([[0.7, 0.2, 0.1]])
    np.testing.assert_allclose(losses.sparse_categorical_crossentropy([0], p), [-np.log(0.7)])
    np.testing.assert_allclose(losses.categorical_crossentropy([[0, 1, 0]], p), [-np.log(0.2)])
    assert isinstance(losses.get("categorical_crossentropy"), losses.CategoricalCrossentropy)
    assert isinstance(losses.get(losses.SparseCategoricalCrossentropy),
                      losses.SparseCategoricalCrossentropy)
