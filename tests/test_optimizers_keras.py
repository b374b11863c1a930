"""Every optimizer against real Keras 3 (JAX backend): the same updates from the same state,
step after step, with clipping, weight decay and schedules; and the optimizer's state through
.keras files in both directions (Keras continues minicnn's training and minicnn continues
Keras's, to float32 tolerance)."""

import os
import warnings

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras
import numpy as np
import pytest

import minicnn
from minicnn import keras_format, layers, models, optimizers

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

KS = keras.optimizers.schedules
MS = optimizers.schedules

# (id, minicnn optimizer, the same in Keras)
PAIRS = [
    ("sgd", lambda: optimizers.SGD(0.1), lambda: keras.optimizers.SGD(0.1)),
    ("sgd_nesterov", lambda: optimizers.SGD(0.05, momentum=0.9, nesterov=True),
     lambda: keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)),
    ("rmsprop", lambda: optimizers.RMSprop(0.01), lambda: keras.optimizers.RMSprop(0.01)),
    ("rmsprop_momentum_centered",
     lambda: optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, centered=True),
     lambda: keras.optimizers.RMSprop(0.01, rho=0.8, momentum=0.5, centered=True)),
    ("adagrad", lambda: optimizers.Adagrad(0.1), lambda: keras.optimizers.Adagrad(0.1)),
    ("adam", lambda: optimizers.Adam(0.01), lambda: keras.optimizers.Adam(0.01)),
    ("adamw_default", lambda: optimizers.AdamW(), lambda: keras.optimizers.AdamW()),
    ("adamw", lambda: optimizers.AdamW(0.01, weight_decay=0.1),
     lambda: keras.optimizers.AdamW(0.01, weight_decay=0.1)),
    ("sgd_decay_clipnorm", lambda: optimizers.SGD(0.1, weight_decay=0.05, clipnorm=1.0),
     lambda: keras.optimizers.SGD(0.1, weight_decay=0.05, clipnorm=1.0)),
    ("rmsprop_global_clipnorm", lambda: optimizers.RMSprop(0.01, global_clipnorm=2.0),
     lambda: keras.optimizers.RMSprop(0.01, global_clipnorm=2.0)),
    ("adam_clipvalue", lambda: optimizers.Adam(0.01, clipvalue=0.5),
     lambda: keras.optimizers.Adam(0.01, clipvalue=0.5)),
    ("adagrad_decay", lambda: optimizers.Adagrad(0.1, weight_decay=0.01),
     lambda: keras.optimizers.Adagrad(0.1, weight_decay=0.01)),
    ("adam_exponential_decay", lambda: optimizers.Adam(MS.ExponentialDecay(0.1, 2, 0.5)),
     lambda: keras.optimizers.Adam(KS.ExponentialDecay(0.1, 2, 0.5))),
    ("sgd_staircase", lambda: optimizers.SGD(MS.ExponentialDecay(0.1, 2, 0.5, staircase=True),
                                             momentum=0.9),
     lambda: keras.optimizers.SGD(KS.ExponentialDecay(0.1, 2, 0.5, staircase=True),
                                  momentum=0.9)),
    ("rmsprop_piecewise", lambda: optimizers.RMSprop(MS.PiecewiseConstantDecay(
        [1, 3], [0.02, 0.01, 0.005]), momentum=0.2),
     lambda: keras.optimizers.RMSprop(KS.PiecewiseConstantDecay(
         [1, 3], [0.02, 0.01, 0.005]), momentum=0.2)),
]
IDS = [pair[0] for pair in PAIRS]


def assert_close(ours, theirs, what):
    # float32 arithmetic in a different order (Keras computes alpha and schedules in float32)
    np.testing.assert_allclose(ours, np.asarray(theirs), rtol=2e-5, atol=2e-6, err_msg=what)


def keras_pairs(grads, variables):
    return zip([keras.ops.convert_to_tensor(g) for g in grads], variables, strict=True)


def keras_slots(keras_optimizer, has_learning_rate):
    variables = [np.asarray(v) for v in keras_optimizer.variables]
    return variables[2 if has_learning_rate else 1:]


def our_slots_in_keras_order(optimizer, params):
    slots = [optimizer.get_slots(p) for p in params]
    return [slots[i][j] for i, j in keras_format._slot_order(optimizer, len(params))]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(3)
    w0 = [rng.normal(size=(3, 4)).astype(np.float32), rng.normal(size=4).astype(np.float32)]
    grads = [[(rng.normal(size=w.shape) * 3).astype(np.float32) for w in w0]
             for _ in range(6)]
    return w0, grads


@pytest.mark.parametrize("backend", ["fast", "reference"])
@pytest.mark.parametrize("_, ours_factory, keras_factory", PAIRS, ids=IDS)
def test_same_updates_as_keras_step_by_step(problem, _, ours_factory, keras_factory, backend):
    w0, grads = problem
    ours, theirs = ours_factory(), keras_factory()
    params = [w.copy() for w in w0]
    variables = [keras.Variable(w.copy()) for w in w0]
    with minicnn.ops.backend(backend):
        for step, g in enumerate(grads):
            assert ours.learning_rate == pytest.approx(float(theirs.learning_rate), rel=1e-6)
            ours.apply_gradients(zip(g, params, strict=True))
            theirs.apply_gradients(keras_pairs(g, variables))
            for k, (p, v) in enumerate(zip(params, variables, strict=True)):
                assert_close(p, v, f"parameter {k} after step {step + 1}")
    assert ours.iterations == int(np.asarray(theirs.iterations)) == len(grads)
    expected = keras_slots(theirs, ours.schedule is None)
    got = our_slots_in_keras_order(ours, params)
    assert len(got) == len(expected)
    for k, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert_close(a, b, f"optimizer variable {k}")


@pytest.mark.parametrize("_, ours_factory, keras_factory", PAIRS, ids=IDS)
def test_same_update_from_the_state_keras_reached(problem, _, ours_factory, keras_factory):
    """Keras takes three steps; its variables are put into a fresh minicnn optimizer (in the
    order the .keras format lists them); then both take three more."""
    w0, grads = problem
    theirs = keras_factory()
    variables = [keras.Variable(w.copy()) for w in w0]
    for g in grads[:3]:
        theirs.apply_gradients(keras_pairs(g, variables))
    ours = ours_factory()
    params = [np.asarray(v).copy() for v in variables]
    stored = keras_slots(theirs, ours.schedule is None)
    slots = [[None] * len(ours.slot_names) for _ in params]
    for value, (i, j) in zip(stored, keras_format._slot_order(ours, len(params)), strict=True):
        slots[i][j] = np.array(value)
    for param, slot in zip(params, slots, strict=True):
        ours.set_slots(param, slot)
    ours.iterations = int(np.asarray(theirs.iterations))
    for g in grads[3:]:
        ours.apply_gradients(zip(g, params, strict=True))
        theirs.apply_gradients(keras_pairs(g, variables))
    for k, (p, v) in enumerate(zip(params, variables, strict=True)):
        assert_close(p, v, f"parameter {k}")


# --------------------------------------------------------------------------------------------
# Through .keras files, whole models
# --------------------------------------------------------------------------------------------


def assert_same_config(a, b):
    """Equal configs, floats to float32 precision (Keras keeps learning rates in float32)."""
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert_same_config(a[key], b[key])
        elif isinstance(a[key], float):
            assert a[key] == pytest.approx(b[key], rel=1e-7), key
        else:
            assert a[key] == b[key], key


def ours_model(optimizer):
    model = models.Sequential([layers.Dense(6, activation="relu", input_shape=(5,)),
                               layers.Dense(3, activation="softmax")])
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    return model


def keras_load(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.models.load_model(path)
    skipped = [str(w.message) for w in caught if "optimizer" in str(w.message).lower()
               or "skipping" in str(w.message).lower()]
    assert not skipped, skipped
    return model


@pytest.mark.parametrize("_, ours_factory, keras_factory", PAIRS, ids=IDS)
def test_training_continues_across_frameworks_through_keras_files(_, ours_factory,
                                                                  keras_factory, tmp_path):
    rng = np.random.default_rng(5)
    batches = [(rng.random((8, 5), dtype=np.float32), rng.integers(0, 3, 8)) for _ in range(6)]
    minicnn.set_random_seed(0)
    ours = ours_model(ours_factory())
    for x, y in batches[:3]:
        ours.train_on_batch(x, y)
    ours.save(tmp_path / "ours.keras")
    # minicnn -> Keras: Keras's next step from our file is our next step.
    theirs = keras_load(tmp_path / "ours.keras")
    assert type(theirs.optimizer).__name__ == type(ours.optimizer).__name__
    x, y = batches[3]
    keras_loss = float(theirs.train_on_batch(x, y))
    our_loss = float(ours.train_on_batch(x, y))
    assert our_loss == pytest.approx(keras_loss, rel=1e-5)
    for k, (a, b) in enumerate(zip(ours.get_weights(), theirs.get_weights(), strict=True)):
        assert_close(a, b, f"weight {k} after Keras's step from minicnn's file")
    # Keras -> minicnn: ours continues from Keras's file as Keras does.
    theirs.save(tmp_path / "theirs.keras")
    loaded = models.load_model(tmp_path / "theirs.keras")
    assert type(loaded.optimizer) is type(ours.optimizer)
    assert_same_config(loaded.optimizer.get_config(), ours.optimizer.get_config())
    assert loaded.optimizer.iterations == int(np.asarray(theirs.optimizer.iterations)) == 4
    for x, y in batches[4:]:
        theirs.train_on_batch(x, y)
        loaded.train_on_batch(x, y)
    for k, (a, b) in enumerate(zip(loaded.get_weights(), theirs.get_weights(), strict=True)):
        assert_close(a, b, f"weight {k} after minicnn's steps from Keras's file")


def test_keras_reads_our_compile_config_with_its_settings(tmp_path):
    schedule = MS.ExponentialDecay(0.05, decay_steps=4, decay_rate=0.7, staircase=True)
    model = ours_model(optimizers.RMSprop(schedule, rho=0.85, momentum=0.3, centered=True,
                                          clipnorm=0.7, weight_decay=0.001))
    model.save(tmp_path / "m.keras")
    optimizer = keras_load(tmp_path / "m.keras").optimizer
    assert type(optimizer).__name__ == "RMSprop"
    assert (optimizer.rho, optimizer.momentum, optimizer.centered, optimizer.clipnorm,
            optimizer.weight_decay) == (0.85, 0.3, True, 0.7, 0.001)
    assert isinstance(optimizer._learning_rate, KS.ExponentialDecay)
    assert optimizer._learning_rate.get_config() == {**schedule.get_config()}


def test_an_untrained_adagrad_model_gives_keras_the_accumulators_it_builds(tmp_path):
    """Keras builds Adagrad's accumulators at initial_accumulator_value, not 0: an untrained
    model's file holds those, so Keras loads it without a warning and trains as it would."""
    model = ours_model(optimizers.Adagrad(0.1, initial_accumulator_value=0.3))
    model.save(tmp_path / "fresh.keras")
    theirs = keras_load(tmp_path / "fresh.keras")
    slots = [np.asarray(v) for v in theirs.optimizer.variables[2:]]
    assert len(slots) == 4 and all(np.all(s == np.float32(0.3)) for s in slots)
    loaded = models.load_model(tmp_path / "fresh.keras")
    assert loaded.optimizer.iterations == 0
    for w in loaded.trainable_weights:  # the state a fresh Adagrad starts from
        np.testing.assert_array_equal(loaded.optimizer.get_slots(w)[0], np.float32(0.3))
