"""Adam and SGD steps against their closed-form updates (Keras's rules and defaults)."""

import math

import numpy as np
import pytest

from minicnn import optimizers


def test_adam_defaults_are_keras():
    adam = optimizers.Adam()
    assert (adam.learning_rate, adam.beta_1, adam.beta_2, adam.epsilon) == (1e-3, 0.9, 0.999, 1e-7)


def test_adam_three_steps_closed_form(rng):
    w0 = rng.normal(size=(3, 2))
    grads = [rng.normal(size=(3, 2)) for _ in range(3)]
    adam = optimizers.Adam(learning_rate=0.01)
    w = w0.copy()
    for g in grads:
        adam.apply_gradients([(g, w)])
    # Unrolled by hand: m_t = (1-b1) sum_i b1^(t-i) g_i, v_t likewise with g^2.
    expected = w0.copy()
    b1, b2, eps = 0.9, 0.999, 1e-7
    for t in range(1, 4):
        m = (1 - b1) * sum(b1 ** (t - i) * grads[i - 1] for i in range(1, t + 1))
        v = (1 - b2) * sum(b2 ** (t - i) * grads[i - 1] ** 2 for i in range(1, t + 1))
        alpha = 0.01 * math.sqrt(1 - b2**t) / (1 - b1**t)
        expected -= alpha * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(w, expected, rtol=1e-12)
    assert adam.iterations == 3


def test_adam_first_step_moves_each_weight_by_about_lr(rng):
    w = np.zeros(5)
    optimizers.Adam().apply_gradients([(rng.normal(size=5), w)])
    np.testing.assert_allclose(np.abs(w), 1e-3, rtol=1e-3)  # bias correction at work


def test_adam_keeps_float32(rng):
    w = rng.normal(size=4).astype(np.float32)
    optimizers.Adam().apply_gradients([(np.ones(4, np.float32), w)])
    assert w.dtype == np.float32


def test_sgd_plain_and_momentum_and_nesterov(rng):
    w0, g1, g2 = rng.normal(size=(3, 4))
    plain = w0.copy()
    optimizers.SGD(learning_rate=0.1).apply_gradients([(g1, plain)])
    np.testing.assert_allclose(plain, w0 - 0.1 * g1)

    heavy, sgd = w0.copy(), optimizers.SGD(learning_rate=0.1, momentum=0.9)
    sgd.apply_gradients([(g1, heavy)])
    sgd.apply_gradients([(g2, heavy)])
    v1 = -0.1 * g1
    v2 = 0.9 * v1 - 0.1 * g2
    np.testing.assert_allclose(heavy, w0 + v1 + v2)

    nest, sgd = w0.copy(), optimizers.SGD(learning_rate=0.1, momentum=0.9, nesterov=True)
    sgd.apply_gradients([(g1, nest)])
    sgd.apply_gradients([(g2, nest)])
    expected = w0 + (0.9 * v1 - 0.1 * g1) + (0.9 * v2 - 0.1 * g2)
    np.testing.assert_allclose(nest, expected)


def test_sgd_default_learning_rate():
    assert optimizers.SGD().learning_rate == 0.01


def test_state_round_trip(rng):
    a, b = optimizers.Adam(), optimizers.Adam()
    wa, grads = rng.normal(size=3), [rng.normal(size=3) for _ in range(4)]
    wb = wa.copy()
    for g in grads[:2]:
        a.apply_gradients([(g, wa)])
        b.apply_gradients([(g, wb)])
    restored = optimizers.Adam()
    restored.set_state(b.get_state([wb]), [wb])
    for g in grads[2:]:
        a.apply_gradients([(g, wa)])
        restored.apply_gradients([(g, wb)])
    np.testing.assert_array_equal(wa, wb)


def test_slots_belong_to_their_parameter_whatever_the_order(rng):
    """State is keyed by the parameter array, not its position in the list: a step that
    leaves one parameter out (a frozen layer) and a step in another order update the same
    slots as steps over the full list in the original order."""
    a_params = [rng.normal(size=(3, 2)), rng.normal(size=4), rng.normal(size=(2, 2))]
    b_params = [p.copy() for p in a_params]
    grads = [[rng.normal(size=p.shape) for p in a_params] for _ in range(3)]
    a, b = optimizers.Adam(learning_rate=0.1), optimizers.Adam(learning_rate=0.1)
    for step in grads:
        a.apply_gradients(zip(step, a_params, strict=True))
        b.apply_gradients(reversed(list(zip(step, b_params, strict=True))))
    for pa, pb in zip(a_params, b_params, strict=True):
        np.testing.assert_allclose(pa, pb, rtol=1e-12)
    frozen = optimizers.Adam(learning_rate=0.1)
    frozen.apply_gradients([(grads[0][0], a_params[0]), (grads[0][1], a_params[1])])
    frozen.apply_gradients([(grads[1][1], a_params[1])])  # the first parameter is frozen
    assert frozen.get_slots(a_params[2]) is None
    m0 = frozen.get_slots(a_params[0])[0]
    np.testing.assert_allclose(m0, 0.1 * grads[0][0])  # untouched by the second step


def test_mismatched_gradient_is_refused_before_any_update(rng):
    w = rng.normal(size=(3, 2))
    before = w.copy()
    adam = optimizers.Adam()
    with pytest.raises(ValueError, match=r"gradient of \(2, 3\) float64 .* \(3, 2\)"):
        adam.apply_gradients([(np.ones((2, 3)), w)])
    with pytest.raises(ValueError, match="float32"):
        adam.apply_gradients([(np.ones((3, 2), np.float32), w)])
    np.testing.assert_array_equal(w, before)
    with pytest.raises(ValueError, match="slot 'm' of shape"):
        adam.set_slots(w, [np.zeros(6), np.zeros((3, 2))])


def test_numpy_scalars_are_accepted_and_bools_refused():
    """Regression: Adam(beta_1=np.float32(0.9)) and SGD(learning_rate=np.int64(1)) were
    refused; True must not pass as a number."""
    adam = optimizers.Adam(learning_rate=np.float64(1e-3), beta_1=np.float32(0.9))
    assert type(adam.beta_1) is float and adam.beta_1 == pytest.approx(0.9)
    sgd = optimizers.SGD(learning_rate=np.int64(1), momentum=np.float32(0.5))
    assert sgd.get_config()["learning_rate"] == 1.0
    with pytest.raises(TypeError, match="learning_rate must be a number >= 0, got bool True"):
        optimizers.SGD(learning_rate=True)


@pytest.mark.parametrize("make", [lambda: optimizers.Adam(learning_rate=-1),
                                  lambda: optimizers.Adam(beta_1=1.0),
                                  lambda: optimizers.SGD(momentum=-0.5),
                                  lambda: optimizers.get("rmsprop_typo")])
def test_bad_arguments(make):
    with pytest.raises(ValueError):
        make()
