"""Initializers: Keras 3's formulas (bounds, spreads, truncation) checked on large samples and
against samples drawn by real Keras; seeds; names, classes and instances; configs that
round-trip through JSON, .npz and .keras in both directions."""

import json
import math
import os

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras
import numpy as np
import pytest

import minicnn
from minicnn import initializers, layers, models

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SHAPE = (3, 3, 64, 128)          # a conv kernel: fan_in 576, fan_out 1152
FAN_IN, FAN_OUT = 3 * 3 * 64, 3 * 3 * 128


def sample(initializer, shape=SHAPE):
    values = initializer(shape, "float64")
    assert values.shape == shape and values.dtype == np.float64
    return values.reshape(-1)


def test_fans_are_keras_s():
    assert initializers.compute_fans((3, 3, 64, 128)) == (FAN_IN, FAN_OUT)
    assert initializers.compute_fans((20, 30)) == (20, 30)
    assert initializers.compute_fans((7,)) == (7, 7)


@pytest.mark.parametrize("name, limit", [
    ("glorot_uniform", math.sqrt(6 / (FAN_IN + FAN_OUT))),
    ("he_uniform", math.sqrt(6 / FAN_IN)),
    ("lecun_uniform", math.sqrt(3 / FAN_IN)),
])
def test_uniform_variance_scaling_fills_its_interval(name, limit):
    w = sample(initializers.get(name))
    assert np.abs(w).max() <= limit
    assert np.abs(w).max() > 0.999 * limit
    assert w.std() == pytest.approx(limit / math.sqrt(3), rel=0.02)


@pytest.mark.parametrize("name, variance", [
    ("he_normal", 2 / FAN_IN),
    ("glorot_normal", 2 / (FAN_IN + FAN_OUT)),
    ("lecun_normal", 1 / FAN_IN),
])
def test_normal_variance_scaling_is_keras_s_truncated_normal(name, variance):
    """Keras 3: a normal with stddev sqrt(variance) / .8796 cut at 2 of those stddevs, which
    gives back the asked variance. (minicnn's he_normal was an untruncated normal before.)"""
    w = sample(initializers.get(name))
    stddev = math.sqrt(variance) / 0.87962566103423978
    assert np.abs(w).max() <= 2 * stddev
    assert np.abs(w).max() > 1.99 * stddev  # really cut there, not narrower
    assert w.std() == pytest.approx(math.sqrt(variance), rel=0.02)
    assert abs(w.mean()) < 0.02 * math.sqrt(variance)


def test_variance_scaling_modes_and_the_untruncated_normal():
    w = sample(initializers.VarianceScaling(scale=3.0, mode="fan_out",
                                            distribution="untruncated_normal"))
    assert w.std() == pytest.approx(math.sqrt(3.0 / FAN_OUT), rel=0.02)
    assert np.abs(w).max() > 3 * math.sqrt(3.0 / FAN_OUT)  # tails beyond 2 stddev exist
    avg = sample(initializers.VarianceScaling(scale=0.5, mode="fan_avg", distribution="uniform"))
    assert np.abs(avg).max() <= math.sqrt(3 * 0.5 / ((FAN_IN + FAN_OUT) / 2))


def test_random_normal_uniform_truncated_constant_zeros_ones():
    w = sample(initializers.RandomNormal(mean=0.5, stddev=0.2))
    assert w.mean() == pytest.approx(0.5, abs=0.005) and w.std() == pytest.approx(0.2, rel=0.02)
    w = sample(initializers.RandomUniform(minval=-0.3, maxval=0.1))
    assert w.min() >= -0.3 and w.max() < 0.1 and w.mean() == pytest.approx(-0.1, abs=0.005)
    w = sample(initializers.TruncatedNormal(mean=1.0, stddev=0.1))
    assert w.min() >= 0.8 and w.max() <= 1.2 and w.mean() == pytest.approx(1.0, abs=0.002)
    # A normal cut at 2 sigma keeps 0.8796 of its stddev (the factor VarianceScaling undoes).
    assert w.std() == pytest.approx(0.1 * 0.87962566103423978, rel=0.02)
    np.testing.assert_array_equal(initializers.Constant(0.25)((2, 3), "float32"), 0.25)
    np.testing.assert_array_equal(initializers.get("zeros")((4,), "float32"), 0)
    np.testing.assert_array_equal(initializers.get("ones")((4,), "float32"), 1)
    assert initializers.RandomNormal().get_config() == {"seed": None, "mean": 0.0,
                                                        "stddev": 0.05}
    assert initializers.RandomUniform().get_config() == {"seed": None, "minval": -0.05,
                                                         "maxval": 0.05}


KERAS_PAIRS = [
    ("he_normal", "HeNormal"), ("he_uniform", "HeUniform"), ("glorot_normal", "GlorotNormal"),
    ("glorot_uniform", "GlorotUniform"), ("lecun_normal", "LecunNormal"),
    ("lecun_uniform", "LecunUniform"), ("truncated_normal", "TruncatedNormal"),
    ("random_normal", "RandomNormal"), ("random_uniform", "RandomUniform"),
]


@pytest.mark.parametrize("name, keras_class", KERAS_PAIRS)
def test_same_distribution_as_keras_s_own_samples(name, keras_class):
    """Quantiles of 73,728 of our draws against 73,728 of Keras's (different generators, so
    statistics, not values; both seeded). The tolerance, 0.05 standard deviations, is over 2.5
    standard errors of the 1 % quantile's difference."""
    minicnn.set_random_seed(0)
    ours = sample(initializers.get(name))
    theirs = np.asarray(getattr(keras.initializers, keras_class)(seed=1)(SHAPE)).reshape(-1)
    quantiles = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    scale = theirs.std()
    np.testing.assert_allclose(np.quantile(ours, quantiles), np.quantile(theirs, quantiles),
                               atol=0.05 * scale)
    if name != "random_normal":  # bounded: the same bound (uniform limit or truncation)
        assert np.abs(ours).max() == pytest.approx(np.abs(theirs).max(), rel=0.01)


def test_seeds_repeat_and_no_seed_follows_the_global_generator():
    a = initializers.HeUniform(seed=7)((5, 4), "float32")
    np.testing.assert_array_equal(a, initializers.HeUniform(seed=7)((5, 4), "float32"))
    np.testing.assert_array_equal(a, initializers.HeUniform(seed=7)((5, 4), "float32"))
    assert not np.array_equal(a, initializers.HeUniform(seed=8)((5, 4), "float32"))
    unseeded = initializers.HeUniform()
    assert not np.array_equal(unseeded((5, 4), "float32"), unseeded((5, 4), "float32"))
    minicnn.set_random_seed(3)
    first = unseeded((5, 4), "float32")
    minicnn.set_random_seed(3)
    np.testing.assert_array_equal(first, unseeded((5, 4), "float32"))


@pytest.mark.parametrize("given", ["he_uniform", "HeUniform", initializers.he_uniform,
                                   initializers.HeUniform, initializers.HeUniform(seed=2)])
def test_names_classes_aliases_and_instances_all_work(given):
    layer = layers.Dense(50, kernel_initializer=given, bias_initializer="ones")
    layer.build((None, 40))
    kernel = layer.get_weights()[0]
    assert np.abs(kernel).max() <= math.sqrt(6 / 40)
    assert np.abs(kernel).max() > 0.9 * math.sqrt(6 / 40)
    np.testing.assert_array_equal(layer.get_weights()[1], 1)
    assert isinstance(layer.kernel_initializer, initializers.HeUniform)


def test_keras_s_lower_case_names_are_the_classes():
    assert initializers.he_normal is initializers.HeNormal
    assert initializers.truncated_normal is initializers.TruncatedNormal
    assert initializers.constant is initializers.Constant
    assert isinstance(initializers.he_normal(seed=1), initializers.VarianceScaling)


def configured_model():
    return models.Sequential([
        layers.Conv2D(3, 3, input_shape=(6, 6, 2), kernel_initializer=initializers.HeNormal(
            seed=5), bias_initializer=initializers.Constant(0.1)),
        layers.Flatten(),
        layers.Dense(4, kernel_initializer=initializers.RandomNormal(mean=0.0, stddev=0.3,
                                                                     seed=2),
                     bias_initializer=initializers.RandomUniform(-0.2, 0.2, seed=1)),
        layers.Dense(2, kernel_initializer="lecun_uniform",
                     bias_initializer=initializers.TruncatedNormal(stddev=0.01)),
    ])


def initializer_configs(model):
    return [(initializers.serialize(layer.kernel_initializer),
             initializers.serialize(layer.bias_initializer))
            for layer in model.layers if hasattr(layer, "kernel_initializer")]


def test_settings_round_trip_through_json_configs_and_npz_files(tmp_path):
    model = configured_model()
    config = json.loads(json.dumps(model.get_config()))
    rebuilt = models.Sequential.from_config(config)
    assert initializer_configs(rebuilt) == initializer_configs(model)
    # Default settings stay a plain name, as minicnn has always written them.
    assert initializer_configs(model)[2] == ("lecun_uniform", {
        "module": "keras.initializers", "class_name": "TruncatedNormal",
        "config": {"seed": None, "mean": 0.0, "stddev": 0.01}, "registered_name": None})
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(tmp_path / "m.npz")
    loaded = models.load_model(tmp_path / "m.npz")
    assert initializer_configs(loaded) == initializer_configs(model)
    # Seeded initializers rebuild the same weights.
    np.testing.assert_array_equal(rebuilt.layers[0].get_weights()[0],
                                  model.layers[0].get_weights()[0])


def test_keras_reads_our_initializers_and_we_read_keras_s(tmp_path):
    model = configured_model()
    model.save(tmp_path / "ours.keras")
    theirs = keras.models.load_model(tmp_path / "ours.keras")
    conv = theirs.layers[0]
    assert type(conv.kernel_initializer).__name__ == "HeNormal"
    assert conv.kernel_initializer.get_config()["seed"] == 5
    assert conv.bias_initializer.get_config() == {"value": 0.1}
    dense = theirs.layers[2]
    assert type(dense.kernel_initializer).__name__ == "RandomNormal"
    assert dense.kernel_initializer.get_config() == {"seed": 2, "mean": 0.0, "stddev": 0.3}
    assert dense.bias_initializer.get_config() == {"seed": 1, "minval": -0.2, "maxval": 0.2}

    k = keras.initializers
    written = keras.Sequential([
        keras.Input((5,)),
        keras.layers.Dense(4, kernel_initializer=k.GlorotNormal(seed=3),
                           bias_initializer=k.Constant(-0.5)),
        keras.layers.Dense(3, kernel_initializer=k.VarianceScaling(2.0, "fan_out", "uniform"),
                           bias_initializer="ones"),
        keras.layers.Dense(2, kernel_initializer=k.RandomNormal(0.1, 0.02, seed=4),
                           bias_initializer=k.Zeros())])
    written.save(tmp_path / "theirs.keras")
    ours = models.load_model(tmp_path / "theirs.keras")
    got = [(layer.kernel_initializer, layer.bias_initializer) for layer in ours.layers]
    assert got == [
        (initializers.GlorotNormal(seed=3), initializers.Constant(-0.5)),
        (initializers.VarianceScaling(2.0, "fan_out", "uniform"), initializers.Ones()),
        (initializers.RandomNormal(0.1, 0.02, seed=4), initializers.Zeros())]


def test_a_keras_initializer_minicnn_lacks_loads_with_a_warning(tmp_path):
    written = keras.Sequential([keras.Input((3,)), keras.layers.Dense(
        3, kernel_initializer=keras.initializers.Orthogonal())])
    written.save(tmp_path / "orthogonal.keras")
    with pytest.warns(UserWarning, match="unknown initializer 'Orthogonal'.*glorot_uniform"):
        ours = models.load_model(tmp_path / "orthogonal.keras")
    np.testing.assert_array_equal(ours.get_weights()[0], written.get_weights()[0])


@pytest.mark.parametrize("make, pattern", [
    (lambda: initializers.get("he_normall"), "unknown initializer 'he_normall'.*he_normal"),
    (lambda: layers.Dense(2, kernel_initializer="orthogonal"),
     "Dense .*kernel_initializer: unknown initializer 'orthogonal'"),
    (lambda: initializers.RandomNormal(stddev=-1), "stddev must be a number >= 0"),
    (lambda: initializers.VarianceScaling(mode="fan_sum"), "mode must be one of"),
    (lambda: initializers.VarianceScaling(scale=0), "scale must be a number > 0"),
    (lambda: initializers.RandomUniform(1.0, -1.0), "maxval -1.0 is below minval 1.0"),
    (lambda: initializers.HeNormal(seed=1.5), "seed must be an int"),
    (lambda: initializers.serialize(lambda shape, dtype: None), "not a built-in one"),
])
def test_bad_initializers_are_refused_by_name(make, pattern):
    with pytest.raises((ValueError, TypeError), match=pattern):
        make()
