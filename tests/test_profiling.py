"""fit(profile=True), minicnn.profiling, the BLAS thread control and per-batch conversion."""

import numpy as np
import pytest

import minicnn
from minicnn import layers, models, optimizers, profiling
from minicnn.ops import threads


def small_model():
    model = models.Sequential([
        layers.Conv2D(4, 3, activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer=optimizers.Adam(learning_rate=0.01),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def data(n=64):
    rng = np.random.default_rng(0)
    return rng.random((n, 8, 8, 1)), rng.integers(0, 3, n)


def test_fit_profile_rows_cover_every_layer_and_add_up():
    x, y = data()
    minicnn.set_random_seed(0)
    model = small_model()
    history = model.fit(x, y, epochs=2, batch_size=16, verbose=0, profile=True)
    prof = history.profile
    assert isinstance(prof, profiling.TrainingProfile)
    assert prof.steps == 2 * 4 - 1 and prof.samples == 7 * 16 and prof.epochs == 2
    assert prof.first_step_seconds > 0
    names = [layer.name for layer in model.layers]
    # Batches of 16 are split over the threads (minicnn.parallel) when there are 2 or more:
    # the profile then has two rows more, for waiting on the other shards and adding their
    # gradients.
    assert prof.shards == model.strategy.shards_for(16, model.flops())
    split_rows = ["shards: wait", "shards: sum gradients"] if prof.shards > 1 else []
    expected = (["data: shuffle", "data: gather"] + [f"{n} forward" for n in names]
                + ["loss + metrics"] + [f"{n} backward" for n in reversed(names)]
                + split_rows + ["optimizer", "callbacks", "other"])
    assert list(prof.seconds) == expected
    assert all(v >= 0 for v in prof.seconds.values())
    assert prof.seconds[f"{names[0]} forward"] > 0 and prof.seconds["optimizer"] > 0
    assert sum(prof.seconds.values()) == pytest.approx(prof.wall_seconds, rel=1e-6)
    d = prof.as_dict()
    assert d["steps"] == 7 and set(d["phases"]) == set(expected)
    assert sum(p["percent"] for p in d["phases"].values()) == pytest.approx(100, rel=1e-6)
    text = str(prof)
    assert "conv2d" in text and "optimizer" in text and "first step" in text


def test_profiled_training_is_bit_identical_to_normal_training():
    x, y = data()
    weights = []
    for profile in (False, True):
        minicnn.set_random_seed(7)
        model = small_model()
        model.fit(x, y, epochs=2, batch_size=16, verbose=0, profile=profile)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
    assert model.history.profile is not None


def test_profile_fit_helper_and_no_profile_by_default():
    x, y = data(32)
    model = small_model()
    assert model.fit(x, y, verbose=0).profile is None
    prof = profiling.profile_fit(model, x, y, batch_size=8, epochs=1)
    assert prof.steps == 3 and prof is model.history.profile


def test_float64_data_gives_the_same_training_as_float32_data():
    """fit converts each gathered batch; the result equals converting the whole set first."""
    x, y = data()
    weights = []
    for xs in (x, x.astype(np.float32)):
        minicnn.set_random_seed(3)
        model = small_model()
        model.fit(xs, y, epochs=1, batch_size=10, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)


def test_nan_in_a_later_chunk_is_still_found():
    x, y = data(64)
    x = np.repeat(x, 200, axis=0)  # > one 4 MB check chunk
    y = np.repeat(y, 200)
    x[-1, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="1 NaN or inf"):
        small_model().fit(x, y, verbose=0)


def test_blas_threads_context_sets_and_restores():
    before = threads.get_blas_threads()
    if before is None:
        pytest.fail("NumPy's OpenBLAS was not found; minicnn cannot control its threads")
    with threads.blas_threads(1):
        assert threads.get_blas_threads() == 1
    assert threads.get_blas_threads() == before
    with threads.blas_threads(0):  # 0 leaves BLAS alone
        assert threads.get_blas_threads() == before


def test_blas_threads_env_override(monkeypatch):
    monkeypatch.setenv("MINICNN_BLAS_THREADS", "2")
    assert threads.default_blas_threads() == 2
    monkeypatch.setenv("MINICNN_BLAS_THREADS", "junk")
    assert threads.default_blas_threads() == 1
