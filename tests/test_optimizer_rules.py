"""RMSprop, Adagrad, AdamW, weight decay, gradient clipping and learning-rate schedules against
independent NumPy formulas (float64, written out here from Keras's documented rules); the new
update ops on both backends; configurations that round-trip; errors that name the problem.
(Against real Keras: test_optimizers_keras.py.)"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT

from minicnn import models, ops, optimizers
from minicnn.ops import fast, kernels, reference
from minicnn.optimizers import schedules


def run(optimizer, w0, grads):
    """Apply each gradient list in turn to copies of w0 -> the parameters after the steps."""
    params = [w.copy() for w in w0]
    for step in grads:
        optimizer.apply_gradients(zip(step, params, strict=True))
    return params


@pytest.fixture
def problem(rng):
    """Two float64 parameters and four steps of gradients (some entries exactly 0)."""
    w0 = [rng.normal(size=(3, 4)), rng.normal(size=5)]
    grads = [[rng.normal(size=w.shape) * 2 for w in w0] for _ in range(4)]
    grads[1][0][0, 0] = 0.0
    return w0, grads


# --------------------------------------------------------------------------------------------
# Each rule against its formula
# --------------------------------------------------------------------------------------------


def rmsprop_expected(w0, grads, lr, rho, momentum, epsilon, centered):
    out = []
    for k, w in enumerate(w0):
        w = w.copy()
        velocity, average, mom = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w)
        for step in grads:
            g = step[k]
            velocity = rho * velocity + (1 - rho) * g**2
            if centered:
                average = rho * average + (1 - rho) * g
                increment = lr * g / np.sqrt(velocity - average**2 + epsilon)
            else:
                increment = lr * g / np.sqrt(velocity + epsilon)
            if momentum:
                mom = momentum * mom + increment
                w = w - mom
            else:
                w = w - increment
        out.append(w)
    return out


@pytest.mark.parametrize("momentum, centered", [(0.0, False), (0.9, False), (0.0, True),
                                                (0.5, True)])
def test_rmsprop_matches_its_formula(problem, momentum, centered):
    w0, grads = problem
    got = run(optimizers.RMSprop(0.01, rho=0.8, momentum=momentum, epsilon=1e-6,
                                 centered=centered), w0, grads)
    want = rmsprop_expected(w0, grads, 0.01, 0.8, momentum, 1e-6, centered)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)


def test_rmsprop_defaults_and_slots_are_keras():
    rms = optimizers.RMSprop()
    assert (rms.learning_rate, rms.rho, rms.momentum, rms.epsilon, rms.centered) == (
        1e-3, 0.9, 0.0, 1e-7, False)
    assert rms.slot_names == ("velocity",)
    assert optimizers.RMSprop(momentum=0.9, centered=True).slot_names == (
        "velocity", "momentum", "average_gradient")
    # The first step of plain RMSprop moves each weight by lr / sqrt(1 - rho), epsilon aside.
    w = np.zeros(3)
    rms.apply_gradients([(np.array([1.0, -2.0, 3.0]), w)])
    np.testing.assert_allclose(np.abs(w), 1e-3 / math.sqrt(0.1), rtol=1e-5)


def test_adagrad_matches_its_formula_and_starts_at_its_initial_accumulator(problem):
    w0, grads = problem
    got = run(optimizers.Adagrad(0.1, initial_accumulator_value=0.2, epsilon=1e-6), w0, grads)
    for k, w in enumerate(w0):
        accumulator, w = np.full_like(w, 0.2), w.copy()
        for step in grads:
            accumulator = accumulator + step[k] ** 2
            w = w - 0.1 * step[k] / np.sqrt(accumulator + 1e-6)
        np.testing.assert_allclose(got[k], w, rtol=1e-12)
    adagrad = optimizers.Adagrad()
    assert (adagrad.learning_rate, adagrad.initial_accumulator_value, adagrad.epsilon) == (
        1e-3, 0.1, 1e-7)
    param = np.ones(2)
    np.testing.assert_array_equal(adagrad.initial_slots(param)[0], [0.1, 0.1])


def adam_expected(w0, grads, lr, b1, b2, eps, weight_decay=0.0):
    out = []
    for k, w in enumerate(w0):
        w, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
        for t, step in enumerate(grads, start=1):
            g = step[k]
            w = w - w * weight_decay * lr  # decoupled: before the Adam step, as Keras
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g**2
            w = w - lr * math.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
        out.append(w)
    return out


def test_adamw_is_decoupled_weight_decay_then_adam(problem):
    w0, grads = problem
    got = run(optimizers.AdamW(0.01, weight_decay=0.1), w0, grads)
    want = adam_expected(w0, grads, 0.01, 0.9, 0.999, 1e-7, weight_decay=0.1)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # Keras 3's default decay, and Adam(weight_decay=...) is the same optimizer.
    assert optimizers.AdamW().weight_decay == 0.004
    same = run(optimizers.Adam(0.01, weight_decay=0.1), w0, grads)
    for a, b in zip(got, same, strict=True):
        np.testing.assert_array_equal(a, b)


def test_adamw_with_zero_gradients_only_shrinks_the_weights(rng):
    w = rng.normal(size=4)
    start = w.copy()
    optimizers.AdamW(0.5, weight_decay=0.2).apply_gradients([(np.zeros(4), w)])
    np.testing.assert_allclose(w, start * (1 - 0.2 * 0.5))


def test_weight_decay_on_sgd_rmsprop_and_adagrad(problem):
    w0, grads = problem
    for make in (lambda wd: optimizers.SGD(0.1, momentum=0.9, weight_decay=wd),
                 lambda wd: optimizers.RMSprop(0.01, weight_decay=wd),
                 lambda wd: optimizers.Adagrad(0.1, weight_decay=wd)):
        decayed = make(0.05)
        plain = make(None)
        params_d = [w.copy() for w in w0]
        params_p = [w.copy() for w in w0]
        for step in grads:
            decayed.apply_gradients(zip(step, params_d, strict=True))
            # The same step by hand: decay first, then the undecayed rule.
            for w in params_p:
                w -= w * 0.05 * plain.learning_rate
            plain.apply_gradients(zip(step, params_p, strict=True))
        for a, b in zip(params_d, params_p, strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-12)


def test_clipnorm_clips_each_gradient_to_its_norm(problem):
    w0, grads = problem
    got = run(optimizers.SGD(0.1, clipnorm=1.5), w0, grads)
    for k, w in enumerate(w0):
        w = w.copy()
        for step in grads:
            g = step[k]
            w = w - 0.1 * g * 1.5 / max(np.linalg.norm(g), 1.5)
        np.testing.assert_allclose(got[k], w, rtol=1e-12)


def test_global_clipnorm_scales_all_gradients_together(problem):
    w0, grads = problem
    got = run(optimizers.SGD(0.1, global_clipnorm=2.0), w0, grads)
    want = [w.copy() for w in w0]
    for step in grads:
        norm = math.sqrt(sum(np.sum(g**2) for g in step))
        for w, g in zip(want, step, strict=True):
            w -= 0.1 * g * 2.0 / max(norm, 2.0)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # A small gradient is left as it is.
    small = [np.full(3, 0.01)]
    w = np.zeros(3)
    optimizers.SGD(1.0, global_clipnorm=2.0).apply_gradients(zip(small, [w], strict=True))
    np.testing.assert_allclose(w, -0.01)


def test_clipvalue_clips_each_entry_and_leaves_the_gradient_alone(problem):
    w0, grads = problem
    given = [[g.copy() for g in step] for step in grads]
    got = run(optimizers.Adam(0.01, clipvalue=0.5), w0, grads)
    clipped = [[np.clip(g, -0.5, 0.5) for g in step] for step in grads]
    want = adam_expected(w0, clipped, 0.01, 0.9, 0.999, 1e-7)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    for step, kept in zip(grads, given, strict=True):  # the caller's arrays are untouched
        for g, k in zip(step, kept, strict=True):
            np.testing.assert_array_equal(g, k)


def test_float32_stays_float32_for_every_optimizer(rng):
    for make in (optimizers.SGD, lambda: optimizers.SGD(momentum=0.9, nesterov=True),
                 optimizers.RMSprop, lambda: optimizers.RMSprop(momentum=0.5, centered=True),
                 optimizers.Adagrad, optimizers.Adam, optimizers.AdamW,
                 lambda: optimizers.Adam(clipnorm=1.0)):
        optimizer = make()
        w = rng.normal(size=(4, 3)).astype(np.float32)
        optimizer.apply_gradients([(rng.normal(size=(4, 3)).astype(np.float32), w)])
        assert w.dtype == np.float32
        assert all(s.dtype == np.float32 for s in optimizer.get_slots(w))


# --------------------------------------------------------------------------------------------
# Schedules
# --------------------------------------------------------------------------------------------


def test_exponential_decay_formula():
    smooth = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5)
    stairs = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    for step in (0, 1, 9, 10, 15, 30):
        assert smooth(step) == pytest.approx(0.1 * 0.5 ** (step / 10), rel=1e-15)
        assert stairs(step) == pytest.approx(0.1 * 0.5 ** (step // 10), rel=1e-15)


def test_piecewise_constant_decay_is_keras_s_inclusive_boundaries():
    schedule = schedules.PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1])
    assert [schedule(s) for s in range(8)] == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.1, 0.1]


def test_the_schedule_is_read_at_the_steps_taken_so_far():
    """Keras evaluates the schedule at `iterations` before counting the step: the first
    update uses schedule(0)."""
    schedule = schedules.PiecewiseConstantDecay([0, 1], [1.0, 0.1, 0.01])
    sgd = optimizers.SGD(learning_rate=schedule)
    w = np.zeros(1)
    moves = []
    for _ in range(4):
        before = w.copy()
        assert sgd.learning_rate == schedule(sgd.iterations)
        sgd.apply_gradients([(np.ones(1), w)])
        moves.append(float(before[0] - w[0]))
    assert moves == pytest.approx([1.0, 0.1, 0.01, 0.01])


def test_adam_s_bias_correction_uses_the_scheduled_rate(problem):
    w0, grads = problem
    schedule = schedules.ExponentialDecay(0.05, decay_steps=1, decay_rate=0.5)
    got = run(optimizers.Adam(learning_rate=schedule), w0, grads)
    for k, w in enumerate(w0):
        w, m, v = w.copy(), np.zeros_like(w), np.zeros_like(w)
        for t, step in enumerate(grads, start=1):
            m = 0.9 * m + 0.1 * step[k]
            v = 0.999 * v + 0.001 * step[k] ** 2
            lr = 0.05 * 0.5 ** (t - 1)
            w = w - lr * math.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
        np.testing.assert_allclose(got[k], w, rtol=1e-12)


def test_a_scheduled_learning_rate_cannot_be_set_but_a_float_can():
    scheduled = optimizers.SGD(learning_rate=schedules.ExponentialDecay(0.1, 10, 0.9))
    with pytest.raises(TypeError, match="created with a LearningRateSchedule"):
        scheduled.learning_rate = 0.01
    plain = optimizers.SGD(0.1)
    plain.learning_rate = np.float32(0.05)
    assert type(plain.learning_rate) is float and plain.learning_rate == pytest.approx(0.05)
    plain.learning_rate = schedules.PiecewiseConstantDecay([1], [0.3, 0.2])
    assert plain.learning_rate == 0.3 and plain.schedule is not None


# --------------------------------------------------------------------------------------------
# Configurations
# --------------------------------------------------------------------------------------------


ALL_CONFIGURED = [
    lambda: optimizers.SGD(0.2, momentum=0.5, nesterov=True, clipvalue=0.3),
    lambda: optimizers.RMSprop(0.002, rho=0.8, momentum=0.1, epsilon=1e-6, centered=True,
                               global_clipnorm=1.0),
    lambda: optimizers.Adagrad(0.02, initial_accumulator_value=0.3, epsilon=1e-5,
                               weight_decay=0.01),
    lambda: optimizers.Adam(schedules.ExponentialDecay(0.1, 7, 0.3, staircase=True),
                            beta_1=0.8, clipnorm=2.0),
    lambda: optimizers.AdamW(schedules.PiecewiseConstantDecay([3, 9], [0.1, 0.01, 0.001]),
                             weight_decay=0.02),
]


@pytest.mark.parametrize("make", ALL_CONFIGURED)
def test_configs_are_json_and_round_trip(make, problem):
    optimizer = make()
    config = json.loads(json.dumps(optimizer.get_config()))
    again = optimizers.deserialize(config)
    assert type(again) is type(optimizer) and again.get_config() == optimizer.get_config()
    w0, grads = problem
    for a, b in zip(run(optimizer, w0, grads), run(again, w0, grads), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("make", ALL_CONFIGURED)
def test_npz_files_keep_every_optimizer_s_state_and_training_continues(make, rng, tmp_path):
    from test_models import small_model, toy_data

    x, y = toy_data(rng, 32)
    uninterrupted, interrupted = small_model(optimizer=make()), small_model(optimizer=make())
    interrupted.set_weights(uninterrupted.get_weights())
    uninterrupted.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    interrupted.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    interrupted.save(tmp_path / "m.npz")
    loaded = models.load_model(tmp_path / "m.npz")
    assert loaded.optimizer.get_config() == interrupted.optimizer.get_config()
    for w in loaded.trainable_weights:
        assert loaded.optimizer.get_slots(w) is not None
    loaded.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    for a, b in zip(uninterrupted.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_strings_resolve_as_keras_does():
    for name, cls in [("rmsprop", optimizers.RMSprop), ("RMSprop", optimizers.RMSprop),
                      ("adamw", optimizers.AdamW), ("AdamW", optimizers.AdamW),
                      ("adagrad", optimizers.Adagrad), ("Adam", optimizers.Adam),
                      ("SGD", optimizers.SGD)]:
        assert type(optimizers.get(name)) is cls


def test_schedules_import_as_keras_s_submodule():
    from minicnn.optimizers.schedules import ExponentialDecay
    assert ExponentialDecay is schedules.ExponentialDecay is optimizers.schedules.ExponentialDecay


@pytest.mark.parametrize("make, error, pattern", [
    (lambda: optimizers.SGD(clipnorm=1.0, clipvalue=1.0), ValueError,
     "only one of clipnorm, clipvalue and global_clipnorm"),
    (lambda: optimizers.Adam(clipnorm=0), ValueError, "clipnorm must be a number > 0"),
    (lambda: optimizers.AdamW(weight_decay=None), ValueError, "use Adam for no weight decay"),
    (lambda: optimizers.RMSprop(rho=1.5), ValueError, "rho must be a number >= 0 and <= 1"),
    (lambda: optimizers.SGD(momentum=1.5), ValueError, "momentum must be a number"),
    (lambda: optimizers.SGD(learning_rate=lambda: 0.1), TypeError, "a float or a schedule"),
    (lambda: optimizers.Adam(weight_decay=-1), ValueError, "weight_decay must be a number >= 0"),
    (lambda: optimizers.SGD(nesterov=True, foo=1), TypeError, "foo"),
    (lambda: schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.2]), ValueError,
     "length of boundaries should be 1 less than the length of values"),
    (lambda: schedules.PiecewiseConstantDecay([5, 2], [0.1, 0.2, 0.3]), ValueError,
     "strictly increasing"),
    (lambda: schedules.ExponentialDecay(0.1, 0, 0.9), ValueError, "decay_steps must be an int"),
    (lambda: optimizers.deserialize({"name": "sgd", "learning_rate": {
        "class_name": "CosineDecay", "config": {}}}), ValueError,
     "unknown learning-rate schedule"),
])
def test_bad_settings_are_refused_with_a_message(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


# --------------------------------------------------------------------------------------------
# The ops: fast against reference, slots flushed, arrays checked
# --------------------------------------------------------------------------------------------


def rmsprop_arrays(rng, dtype, momentum, centered, shape=(37, 5)):
    grad, param, velocity, momentum_buffer, average = (rng.normal(size=shape).astype(dtype)
                                                       for _ in range(5))
    # A reachable state: velocity >= average^2 (so the centered denominator stays positive).
    velocity = np.abs(velocity) + average * average
    return [grad, param, velocity, momentum_buffer if momentum else None,
            average if centered else None]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("momentum, centered", [(0.0, False), (0.9, False), (0.0, True),
                                                (0.5, True)])
def test_fast_rmsprop_update_matches_reference(rng, dtype, momentum, centered):
    arrays = rmsprop_arrays(rng, dtype, momentum, centered)
    copies = [None if a is None else a.copy() for a in arrays]
    settings = (0.01, 0.9, momentum, 1e-7)
    reference.rmsprop_update(*arrays, *settings)
    fast.rmsprop_update(*copies, *settings)
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    for a, b in zip(arrays, copies, strict=True):
        if a is not None:
            np.testing.assert_allclose(b, a, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_adamw_update_matches_reference(rng, dtype):
    grad, param, m = (rng.normal(size=(9, 4)).astype(dtype) for _ in range(3))
    v = np.abs(rng.normal(size=(9, 4))).astype(dtype)
    ref = [param.copy(), m.copy(), v.copy()]
    settings = (0.9, 0.999, 1e-3, 1e-7, 4e-6)
    reference.adamw_update(grad, *ref, *settings)
    fast.adamw_update(grad, param, m, v, *settings)
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    for a, b in zip(ref, (param, m, v), strict=True):
        np.testing.assert_allclose(b, a, rtol=tolerance, atol=tolerance)


@pytest.mark.parametrize("backend", [reference, fast], ids=["reference", "fast"])
def test_decaying_slots_are_flushed_to_zero_not_left_subnormal(backend):
    """A dead unit (gradient 0) sees its slots shrink by rho (or momentum) per step; below the
    smallest normal number they become 0 (subnormal arithmetic is ~10x slower)."""
    tiny = np.finfo(np.float32).tiny
    grad, param = np.zeros(4, np.float32), np.ones(4, np.float32)
    velocity = np.full(4, tiny * 1.05, np.float32)
    momentum_buffer = np.full(4, tiny * 1.05, np.float32)
    average = np.full(4, -tiny * 1.05, np.float32)
    backend.rmsprop_update(grad, param, velocity, momentum_buffer, average, 1e-3, 0.9, 0.9, 1e-7)
    for slot in (velocity, momentum_buffer, average):
        np.testing.assert_array_equal(slot, 0)
    sgd_velocity = np.full(4, tiny * 1.05, np.float32)
    backend.sgd_update(grad, param, sgd_velocity, 0.1, 0.9, False)
    np.testing.assert_array_equal(sgd_velocity, 0)


def test_rmsprop_kernel_refuses_slots_of_another_shape_or_dtype():
    param = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match="velocity has shape"):
        kernels.rmsprop_update(np.zeros(10, np.float32), param, np.zeros(9, np.float32), None,
                               None, 1e-3, 0.9, 0.0, 1e-7)
    with pytest.raises(ValueError, match="average_grad is float64"):
        kernels.rmsprop_update(np.zeros(10, np.float32), param, np.zeros(10, np.float32), None,
                               np.zeros(10), 1e-3, 0.9, 0.0, 1e-7)


def test_a_non_contiguous_parameter_takes_the_reference_path(rng):
    base = rng.normal(size=(6, 8))
    strided, contiguous = base[:, ::2], base[:, ::2].copy()
    grad = rng.normal(size=(6, 4))
    slots = [np.zeros((6, 4)) for _ in range(4)]
    fast.rmsprop_update(grad, strided, slots[0], slots[1], None, 0.01, 0.9, 0.5, 1e-7)
    fast.rmsprop_update(grad, contiguous, slots[2], slots[3], None, 0.01, 0.9, 0.5, 1e-7)
    np.testing.assert_allclose(strided, contiguous, rtol=1e-13)


CHILD = r"""
import json
import numba
import numpy as np
from minicnn import layers, models, ops, optimizers, regularizers
from minicnn.ops import kernels

schedule = optimizers.schedules.ExponentialDecay(0.01, 3, 0.5)
for optimizer in (optimizers.RMSprop(momentum=0.5, centered=True), optimizers.AdamW(schedule),
                  optimizers.Adagrad(clipnorm=1.0), optimizers.SGD(momentum=0.9)):
    model = models.Sequential([
        layers.Dense(6, activation="relu", kernel_regularizer="l2", input_shape=(4,)),
        layers.Dense(3, activation="softmax", kernel_initializer="he_normal")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    model.fit(rng.random((32, 4), dtype=np.float32), rng.integers(0, 3, 32), epochs=2,
              batch_size=8, verbose=0)
dispatchers = [obj for obj in vars(kernels).values()
               if isinstance(obj, numba.core.registry.CPUDispatcher)]
print(json.dumps({"backend": ops.get_backend(),
                  "compiled": sorted(d.__name__ for d in dispatchers if d.signatures)}))
"""


def test_the_reference_backend_runs_every_optimizer_with_no_compiled_kernel():
    def child(backend):
        env = {**os.environ, "MINICNN_BACKEND": backend, "PYTHONPATH": str(REPO_ROOT)}
        proc = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True,
                              text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout.strip().splitlines()[-1])

    report = child("reference")
    assert report == {"backend": "reference", "compiled": []}
    assert {"_rmsprop", "_adam"} <= set(child("fast")["compiled"])  # control


def test_ops_are_registered_on_both_backends():
    for name in ("sgd_update", "rmsprop_update", "adagrad_update", "adam_update",
                 "adamw_update"):
        assert name in ops.OPS
        assert getattr(reference, name) and getattr(fast, name)
