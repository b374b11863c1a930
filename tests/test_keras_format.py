""".keras files against real Keras (JAX backend, no TensorFlow): minicnn writes, Keras loads
and predicts the same on real MNIST; Keras writes (in the test), minicnn loads; round trips
keep weights, compile settings and optimizer state; unsupported layers and options, damaged
and hostile files are refused with messages that name the problem."""

import io
import json
import os
import tracemalloc
import warnings
import zipfile

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import h5py
import keras
import numpy as np
import pytest
from interop_fixtures import assert_same_predictions
from test_models import tutorial_model
from test_saving import ARCHITECTURES, arch_float64_plain_sgd, assert_same_weights, fit_quietly

import minicnn
from minicnn import keras_format, layers, models

KL = keras.layers
# Keras 3.15 with NumPy 2 warns about __array__'s copy keyword on every conversion.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def load_in_keras(path):
    """keras.models.load_model, failing on any warning (e.g. skipped optimizer variables)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.models.load_model(path)
    relevant = [str(w.message) for w in caught
                if "optimizer" in str(w.message).lower() or "skipping" in str(w.message).lower()
                or "mismatch" in str(w.message).lower()]
    assert not relevant, relevant
    return model


def keras_predict(model, x):
    return np.asarray(model.predict(x, batch_size=128, verbose=0))


@pytest.fixture(scope="module")
def trained(trained_tutorial, tmp_path_factory):
    """The trained tutorial model and its .keras file."""
    path = tmp_path_factory.mktemp("keras") / "mnist_cnn.keras"
    trained_tutorial.save(path)
    return trained_tutorial, path


# --------------------------------------------------------------------------------------------
# minicnn -> Keras
# --------------------------------------------------------------------------------------------


def test_keras_opens_our_file_and_predicts_what_minicnn_predicts_on_mnist(trained, mnist_subset):
    model, path = trained
    _, x_test = mnist_subset
    theirs = load_in_keras(path)
    assert [type(layer).__name__ for layer in theirs.layers] == [
        type(layer).__name__ for layer in model.layers]
    assert [layer.name for layer in theirs.layers] == [layer.name for layer in model.layers]
    assert_same_predictions(model.predict(x_test), keras_predict(theirs, x_test))
    for ours, keras_weight in zip(model.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, keras_weight)


def flat_slots(model):
    """The optimizer's slot arrays, weight by weight in model order (Keras's variable order)."""
    return [a for w in model.trainable_weights for a in (model.optimizer.get_slots(w) or [])]


def test_keras_gets_our_compile_settings_and_optimizer_state(trained, mnist_subset):
    model, path = trained
    (x, y), _ = mnist_subset
    theirs = load_in_keras(path)
    assert type(theirs.optimizer).__name__ == "Adam"
    assert float(theirs.optimizer.learning_rate) == pytest.approx(1e-3)
    assert theirs.optimizer.beta_1 == 0.9 and theirs.optimizer.epsilon == 1e-7
    assert theirs.loss == "sparse_categorical_crossentropy"
    variables = [np.asarray(v) for v in theirs.optimizer.variables]
    assert int(variables[0]) == model.optimizer.iterations == 63  # ceil(2000 / 32) steps
    slots = flat_slots(model)
    assert len(variables) == 2 + len(slots) == 2 + 2 * 10
    for ours, keras_slot in zip(slots, variables[2:], strict=True):
        np.testing.assert_array_equal(ours, keras_slot)
    # Keras's loss on our weights is ours (Keras's metric objects, the same formula).
    keras_loss = theirs.evaluate(x[:500], y[:500], verbose=0, return_dict=True)["loss"]
    assert keras_loss == pytest.approx(model.evaluate(x[:500], y[:500], verbose=0)[0], abs=1e-5)


@pytest.mark.parametrize("make", ARCHITECTURES, ids=lambda f: f.__name__)
def test_keras_opens_every_saving_architecture(make, tmp_path):
    """'same' padding with strides, no bias, Softmax/ReLU/Activation layers, SGD with Nesterov
    momentum, from_logits losses, initializers, float64."""
    rng = np.random.default_rng(7)
    minicnn.set_random_seed(0)
    model, x, y = make(rng)
    fit_quietly(model, x, y)
    model.save(tmp_path / "m.keras")
    theirs = load_in_keras(tmp_path / "m.keras")
    # JAX computes float64 models in float32 unless x64 is enabled: same tolerance for all.
    assert_same_predictions(model.predict(x), keras_predict(theirs, x.astype(np.float32)))
    assert len(theirs.optimizer.variables) == 2 + len(flat_slots(model))
    assert int(np.asarray(theirs.optimizer.variables[0])) == model.optimizer.iterations


def test_a_compiled_untrained_model_gives_keras_the_optimizer_variables_it_builds(tmp_path):
    """Keras builds the optimizer on loading and warns if the file holds another number of
    variables: minicnn writes the zero moments an untrained Adam has."""
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.save(tmp_path / "fresh.keras")
    theirs = load_in_keras(tmp_path / "fresh.keras")
    assert len(theirs.optimizer.variables) == 2 + 2 * 10
    assert all(not np.asarray(v).any() for v in theirs.optimizer.variables[2:])
    loaded = models.load_model(tmp_path / "fresh.keras")
    assert loaded.optimizer.iterations == 0


def test_a_frozen_layer_has_no_optimizer_variables_in_either_framework(tmp_path, rng):
    minicnn.set_random_seed(0)
    model = tutorial_model()
    model.layers[0].trainable = False
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x, y = rng.random((16, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, 16)
    fit_quietly(model, x, y)
    model.save(tmp_path / "frozen.keras")
    theirs = load_in_keras(tmp_path / "frozen.keras")
    assert not theirs.layers[0].trainable
    assert len(theirs.optimizer.variables) == 2 + 2 * 8
    loaded = models.load_model(tmp_path / "frozen.keras")
    assert not loaded.layers[0].trainable
    for framework in (theirs, loaded):
        framework.train_on_batch(x[:8], y[:8])
    model.train_on_batch(x[:8], y[:8])
    assert_same_weights(loaded, model)
    for a, b in zip(model.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)
    np.testing.assert_array_equal(np.asarray(theirs.get_weights()[0]),
                                  tutorial_model_first_kernel(tmp_path / "frozen.keras"))


def tutorial_model_first_kernel(path):
    with zipfile.ZipFile(path) as archive, h5py.File(
            io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
        return h5["layers/conv2d/vars/0"][()]


def test_keras_can_continue_training_our_file(trained, mnist_subset):
    """Keras's first step from our state equals minicnn's first step (Adam with restored
    moments and step count), to float32 rounding."""
    model, path = trained
    (x, y), _ = mnist_subset
    theirs = load_in_keras(path)
    ours = models.load_model(path)
    theirs.train_on_batch(x[:32], y[:32])
    ours.train_on_batch(x[:32], y[:32])
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, np.asarray(b), atol=2e-6)
    assert int(np.asarray(theirs.optimizer.iterations)) == ours.optimizer.iterations == 64


# --------------------------------------------------------------------------------------------
# Keras -> minicnn
# --------------------------------------------------------------------------------------------


def keras_every_layer():
    """A Keras model using every layer minicnn has, with non-default options."""
    return keras.Sequential([
        keras.Input((11, 9, 2)),
        KL.Conv2D(6, 3, strides=2, padding="same", use_bias=False, kernel_initializer="he_normal"),
        KL.ReLU(),
        KL.MaxPooling2D(3, strides=1, padding="same"),
        KL.Activation("tanh"),
        KL.Conv2D(5, (2, 3), strides=(1, 2), padding="valid", activation="sigmoid",
                  bias_initializer="ones"),
        KL.MaxPooling2D((2, 2)),
        KL.Flatten(),
        KL.Dense(7, activation="relu"),
        KL.Dense(4),
        KL.Softmax(),
    ], name="every_layer")


@pytest.mark.parametrize("optimizer", ["adam", "sgd_nesterov", "untrained"])
def test_minicnn_reads_what_keras_wrote(optimizer, tmp_path, rng):
    keras.utils.set_random_seed(0)
    theirs = keras_every_layer()
    keras_optimizer = (keras.optimizers.SGD(0.05, momentum=0.9, nesterov=True)
                       if optimizer == "sgd_nesterov" else keras.optimizers.Adam(3e-3))
    theirs.compile(optimizer=keras_optimizer, loss="categorical_crossentropy",
                   metrics=["accuracy"])
    x = rng.random((40, 11, 9, 2), dtype=np.float32)
    y = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 40)]
    if optimizer != "untrained":
        theirs.fit(x, y, epochs=2, batch_size=8, verbose=0)
    theirs.save(tmp_path / "k.keras")

    ours = models.load_model(tmp_path / "k.keras")
    assert [type(layer).__name__ for layer in ours.layers] == [
        "Conv2D", "ReLU", "MaxPooling2D", "Activation", "Conv2D", "MaxPooling2D", "Flatten",
        "Dense", "Dense", "Softmax"]
    assert ours.name == "every_layer" and ours.input_shape == (None, 11, 9, 2)
    assert_same_predictions(ours.predict(x), keras_predict(theirs, x))
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))
    assert ours.loss.name == "categorical_crossentropy"
    assert [m.name for m in ours.metrics] == ["accuracy"]
    trainable = len(theirs.trainable_weights)
    assert trainable == 7  # the first Conv2D has no bias
    expected = 2 + (2 if optimizer == "adam" else 1) * trainable
    keras_variables = [np.asarray(v) for v in theirs.optimizer.variables]
    if optimizer == "untrained":
        assert ours.optimizer.iterations == 0 and flat_slots(ours) == []
    else:
        assert len(keras_variables) == expected
        assert ours.optimizer.iterations == int(keras_variables[0]) == 10
        flat = flat_slots(ours)
        for a, b in zip(flat, keras_variables[2:], strict=True):
            np.testing.assert_array_equal(a, b)
    if optimizer == "sgd_nesterov":
        assert ours.optimizer.get_config()["nesterov"] is True
        assert ours.optimizer.momentum == 0.9
    # One more step in each framework from the same state lands on the same weights.
    ours.train_on_batch(x[:8], y[:8])
    theirs.train_on_batch(x[:8], y[:8])
    for a, b in zip(ours.get_weights(), theirs.get_weights(), strict=True):
        np.testing.assert_allclose(a, np.asarray(b), atol=1e-5)


def test_minicnn_reads_the_tutorial_model_trained_in_keras(mnist_subset, tmp_path):
    (x, y), x_test = mnist_subset
    keras.utils.set_random_seed(1)
    theirs = keras.Sequential([
        keras.Input((28, 28, 1)),
        KL.Conv2D(25, (3, 3), activation="relu"), KL.MaxPooling2D((2, 2)),
        KL.Conv2D(64, (3, 3), activation="relu"), KL.MaxPooling2D((2, 2)),
        KL.Conv2D(64, (3, 3), activation="relu"), KL.MaxPooling2D((2, 2)),
        KL.Flatten(), KL.Dense(64, activation="relu"), KL.Dense(10, activation="softmax")])
    theirs.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    theirs.fit(x[:1000], y[:1000], epochs=1, verbose=0)
    theirs.save(tmp_path / "keras_tutorial.keras")
    ours = models.load_model(tmp_path / "keras_tutorial.keras")
    assert_same_predictions(ours.predict(x_test), keras_predict(theirs, x_test))
    assert ours.optimizer.iterations == 32


def test_unbuilt_keras_model_loads_unbuilt(tmp_path):
    theirs = keras.Sequential([KL.Dense(3)])
    theirs.save(tmp_path / "unbuilt.keras")
    ours = models.load_model(tmp_path / "unbuilt.keras")
    assert not ours.built and [type(layer).__name__ for layer in ours.layers] == ["Dense"]


# --------------------------------------------------------------------------------------------
# minicnn -> .keras -> minicnn
# --------------------------------------------------------------------------------------------


def config_without_input_shape(model):
    """A .keras file always has an InputLayer, so whether the shape was declared or found by
    the first fit is not kept."""
    config = model.get_config()
    for spec in config["layers"]:
        spec["config"].pop("input_shape", None)
    return config


@pytest.mark.parametrize("make", ARCHITECTURES, ids=lambda f: f.__name__)
def test_round_trip_through_keras_format_is_exact(make, tmp_path):
    rng = np.random.default_rng(7)
    minicnn.set_random_seed(0)
    model, x, y = make(rng)
    fit_quietly(model, x, y)
    model.save(tmp_path / "m.keras")
    loaded = models.load_model(tmp_path / "m.keras")
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))
    assert_same_weights(loaded, model)
    assert config_without_input_shape(loaded) == config_without_input_shape(model)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.loss.get_config() == model.loss.get_config()
    assert [m.name for m in loaded.metrics] == [m.name for m in model.metrics]
    # Continued training is bit for bit the training that never stopped.
    minicnn.set_random_seed(1)
    history_a = fit_quietly(model, x, y).history
    minicnn.set_random_seed(1)
    history_b = fit_quietly(loaded, x, y).history
    assert history_a == history_b
    assert_same_weights(loaded, model)
    if make is not arch_float64_plain_sgd:  # control: without the saved state it differs
        fresh = models.load_model(tmp_path / "m.keras")
        fresh.compile(optimizer=type(fresh.optimizer)(**{
            k: v for k, v in fresh.optimizer.get_config().items() if k != "name"}),
            loss=fresh.loss, metrics=fresh.metrics)
        minicnn.set_random_seed(1)
        fit_quietly(fresh, x, y)
        assert not np.array_equal(fresh.get_weights()[0], model.get_weights()[0])


def test_file_layout_is_keras_s(trained):
    _, path = trained
    with zipfile.ZipFile(path) as archive:
        assert archive.namelist() == ["metadata.json", "config.json", "model.weights.h5"]
        assert all(info.compress_type == zipfile.ZIP_STORED for info in archive.infolist())
        metadata = json.loads(archive.read("metadata.json"))
        config = json.loads(archive.read("config.json"))
        h5 = h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r")
    assert metadata["keras_version"] == keras_format.KERAS_VERSION
    assert metadata["saved_by"] == f"minicnn {minicnn.__version__}"
    assert config["class_name"] == "Sequential"
    assert [spec["class_name"] for spec in config["config"]["layers"]] == [
        "InputLayer", "Conv2D", "MaxPooling2D", "Conv2D", "MaxPooling2D", "Conv2D",
        "MaxPooling2D", "Flatten", "Dense", "Dense"]
    assert config["config"]["layers"][0]["config"]["batch_shape"] == [None, 28, 28, 1]
    assert sorted(h5["layers"]) == ["conv2d", "conv2d_1", "conv2d_2", "dense", "dense_1",
                                    "flatten", "max_pooling2d", "max_pooling2d_1",
                                    "max_pooling2d_2"]
    assert h5["layers/conv2d_1/vars/0"].shape == (3, 3, 25, 64)
    assert h5["layers/dense_1/vars/1"].shape == (10,)
    assert len(h5["optimizer/vars"]) == 22
    h5.close()


def test_other_suffixes_still_write_npz(tmp_path, rng):
    model = tutorial_model()
    for name in ("m.npz", "m.model", "m.h5"):
        model.save(tmp_path / name)
        with zipfile.ZipFile(tmp_path / name) as archive:
            assert "__minicnn_header__.npy" in archive.namelist()
    model.save(tmp_path / "M.KERAS")
    with zipfile.ZipFile(tmp_path / "M.KERAS") as archive:
        assert "config.json" in archive.namelist()


def test_a_keras_file_under_another_name_is_recognised(trained, tmp_path):
    model, path = trained
    renamed = tmp_path / "model.zip"
    renamed.write_bytes(path.read_bytes())
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(models.load_model(renamed).predict(x), model.predict(x))


def test_every_minicnn_layer_has_a_keras_form():
    """A layer added to minicnn.layers must get a LayerFormat line (see keras_format.py)."""
    missing = {cls.__name__ for cls in layers.layer_classes()} - {
        entry.minicnn_class for entry in keras_format.LAYERS}
    assert not missing, f"add LayerFormat entries to minicnn/keras_format.py for {missing}"


def test_saving_a_layer_without_keras_form_names_it(tmp_path):
    class Doubler(layers.Layer):
        def compute_output_shape(self, input_shape):
            return input_shape

        def forward(self, x, training=False):
            return 2 * x

    model = models.Sequential([layers.Flatten(input_shape=(4, 4, 1)), Doubler(name="twice")])
    with pytest.raises(ValueError, match=r"Doubler 'twice'.*no Keras form for Doubler.*\.npz"):
        model.save(tmp_path / "d.keras")
    assert not (tmp_path / "d.keras").exists()
    assert os.listdir(tmp_path) == []  # no temporary left behind


def test_duplicate_layer_names_never_reach_a_file(tmp_path):
    """Keras's weight paths need unique layer names; minicnn refuses duplicates when the model
    is built, so no .keras file can be made with two."""
    with pytest.raises(ValueError, match="already has a layer named 'same'"):
        models.Sequential([layers.Flatten(input_shape=(2, 2, 1), name="same"),
                           layers.Dense(2, name="same")])


# --------------------------------------------------------------------------------------------
# What minicnn cannot read
# --------------------------------------------------------------------------------------------


def save_keras(model, path):
    model.save(path)
    return path


@pytest.mark.parametrize("build, pattern", [
    (lambda: keras.Sequential([keras.Input((4, 4, 1)), KL.GaussianNoise(0.1), KL.Flatten()]),
     r"holds a 'GaussianNoise' layer, which minicnn does not have \(it reads Conv2D, Dense"),
    (lambda: keras.Sequential([keras.Input((6, 6, 1)), KL.Conv2D(2, 3, dilation_rate=2)]),
     r"layer 'conv2d.*', Conv2D\) sets Conv2D dilation_rate=\[2, 2\]; minicnn supports only "
     r"\[1, 1\]"),
    (lambda: keras.Sequential([keras.Input((6, 6, 2)), KL.Conv2D(2, 3, groups=2)]),
     r"sets Conv2D groups=2"),
    (lambda: keras.Sequential([keras.Input((4,)), KL.Dense(2, activity_regularizer="l2")]),
     r"sets Dense activity_regularizer="),
    (lambda: keras.Sequential([keras.Input((4,)), KL.Dense(
        2, kernel_regularizer=keras.regularizers.OrthogonalRegularizer())]),
     r"unknown regularizer 'OrthogonalRegularizer'; minicnn has L1, L2 and L1L2"),
    (lambda: keras.Sequential([keras.Input((4,)), KL.BatchNormalization(renorm=True)]),
     r"sets BatchNormalization renorm=True; minicnn supports only False"),
    (lambda: keras.Sequential([keras.Input((4,)), KL.Dense(2, activation="celu")]),
     r"unknown activation 'celu'"),
    (lambda: keras.Sequential([keras.Input((4,)), KL.Dense(2, dtype="float16")]),
     r"uses dtype 'float16'"),
    (lambda: keras.Sequential([keras.Input((None, None, 1)), KL.Conv2D(2, 3)]),
     r"input shape \[None, None, None, 1\]; minicnn needs fixed positive sizes"),
    (lambda: keras.Model(*(lambda i: (i, KL.GaussianNoise(0.1)(KL.Dense(2)(i))))(
        keras.Input((3,)))),
     r"holds a 'GaussianNoise' layer, which minicnn does not have"),
], ids=["unknown layer", "dilation", "groups", "activity regularizer", "orthogonal regularizer",
        "renorm", "activation", "float16", "free image size", "functional with an unknown layer"])
def test_what_minicnn_cannot_reproduce_is_refused_by_name(build, pattern, tmp_path):
    path = save_keras(build(), tmp_path / "k.keras")
    with pytest.raises(ValueError, match=pattern) as info:
        models.load_model(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("optimizer, pattern", [
    ("nadam", r"optimizer 'Nadam' is not one minicnn has"),
    (lambda: keras.optimizers.Adam(amsgrad=True), r"the optimizer Adam amsgrad=True; minicnn "
                                                  r"supports only False"),
    (lambda: keras.optimizers.SGD(use_ema=True), r"the optimizer SGD use_ema=True"),
    (lambda: keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(0.1, 10)),
     r"unknown learning-rate schedule .*CosineDecay"),
], ids=["nadam", "amsgrad", "ema", "schedule"])
def test_compile_settings_minicnn_lacks_warn_and_load_uncompiled(tmp_path, rng, optimizer,
                                                                 pattern):
    theirs = keras.Sequential([keras.Input((4,)), KL.Dense(3, activation="softmax")])
    theirs.compile(optimizer=optimizer if isinstance(optimizer, str) else optimizer(),
                   loss="sparse_categorical_crossentropy")
    theirs.fit(rng.random((8, 4)), rng.integers(0, 3, 8), verbose=0)
    theirs.save(tmp_path / "r.keras")
    with pytest.warns(UserWarning, match=pattern + r".*; the model is loaded uncompiled"):
        ours = models.load_model(tmp_path / "r.keras")
    assert ours.loss is None
    x = rng.random((5, 4), dtype=np.float32)
    assert_same_predictions(ours.predict(x), keras_predict(theirs, x))


# --------------------------------------------------------------------------------------------
# Damaged and hostile files
# --------------------------------------------------------------------------------------------


def rewrite(source, target, config=None, weights=None, members=None):
    """Copy a .keras archive, changing config (dict -> None, in place), weights (h5py.File ->
    None, in place) or the raw members (dict name -> bytes, in place)."""
    with zipfile.ZipFile(source) as archive:
        contents = {name: archive.read(name) for name in archive.namelist()}
    if config is not None:
        document = json.loads(contents["config.json"])
        config(document)
        contents["config.json"] = json.dumps(document).encode()
    if weights is not None:
        buffer = io.BytesIO(contents["model.weights.h5"])
        with h5py.File(buffer, "a") as h5:
            weights(h5)
        contents["model.weights.h5"] = buffer.getvalue()
    if members is not None:
        members(contents)
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return target


def dense_layer(document):
    return next(s for s in document["config"]["layers"] if s["class_name"] == "Dense")


def _swap_soft_link(h5):
    del h5["layers/dense/vars/0"]
    h5["layers/dense/vars/0"] = h5py.SoftLink("/layers/conv2d/vars/0")


def _external_link(h5):
    del h5["layers/dense/vars/0"]
    h5["layers/dense/vars/0"] = h5py.ExternalLink("/etc/passwd", "/x")


def _external_storage(h5):
    shape = h5["layers/dense_1/vars/1"].shape
    del h5["layers/dense_1/vars/1"]
    h5.create_dataset("layers/dense_1/vars/1", shape=shape, dtype="float32",
                      external=[("/etc/hostname", 0, 40)])


def _reshaped(h5):
    del h5["layers/dense_1/vars/1"]
    h5["layers/dense_1/vars/1"] = np.zeros(11, np.float32)


def _strings(h5):
    del h5["layers/dense_1/vars/1"]
    h5["layers/dense_1/vars/1"] = np.array([b"x"] * 10, dtype=h5py.string_dtype())


def _missing(h5):
    del h5["layers/dense_1/vars/1"]


def _extra_layer(h5):
    h5.create_group("layers/dense_7/vars")["0"] = np.zeros(3, np.float32)


def _nan(h5):
    h5["layers/dense_1/vars/1"][0] = np.nan


@pytest.mark.parametrize("change, pattern", [
    (_swap_soft_link, r"SoftLink at /layers/dense/vars/0 .*never followed"),
    (_external_link, r"ExternalLink at /layers/dense/vars/0"),
    (_external_storage, r"external or virtual dataset /layers/dense_1/vars/1"),
    (_reshaped, r"stores /layers/dense_1/vars/1 with shape \(11,\); the architecture needs "
                r"\(10,\)"),
    (_strings, r"stores /layers/dense_1/vars/1 as object; expected floats"),
    (_missing, r"stores 1 weight arrays under layers/dense_1/vars; the layer has 2 "
               r"\(kernel, bias\)"),
    (_extra_layer, r"holds weights for layers/dense_7, which the architecture does not have"),
    (_nan, r"bias contains NaN or inf"),
], ids=lambda v: getattr(v, "__name__", "pattern"))
def test_bad_weights_are_refused(trained, tmp_path, change, pattern):
    _, path = trained
    bad = rewrite(path, tmp_path / "bad.keras", weights=change)
    with pytest.raises(ValueError, match=pattern):
        models.load_model(bad)


def test_an_architecture_bigger_than_the_file_is_refused_before_allocating(trained, tmp_path):
    """A few hundred kilobytes asking for a 230 GB Dense kernel: refused, and the check
    itself allocates almost nothing."""
    _, path = trained
    bad = rewrite(path, tmp_path / "big.keras",
                  config=lambda d: dense_layer(d)["config"].update(units=10**8))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"needing over [\d,]+ bytes of weights, more than "
                                             r"a [\d,]+-byte file can hold"):
            models.load_model(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20, peak


def test_a_zip_bomb_member_is_refused_unread(trained, tmp_path):
    _, path = trained
    big = tmp_path / "big.keras"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(big, "w",
                                                          zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", source.read("config.json"))
        with archive.open("model.weights.h5", "w", force_zip64=True) as member:
            chunk = bytes(1 << 20)
            for _ in range(300):  # 300 MiB of zeros, a few hundred KB compressed
                member.write(chunk)
    assert big.stat().st_size < 2 << 20
    with pytest.raises(ValueError, match=r"declares model.weights.h5 of 314,572,800 bytes, "
                                         r"more than this [\d,]+-byte file can honestly hold"):
        models.load_model(big)


@pytest.mark.parametrize("damage, pattern", [
    (lambda data: data[: len(data) // 2], r"is not a readable .keras file"),
    (lambda data: b"", r"is not a readable .keras file"),
    (lambda data: b"not a zip at all" * 10, r"is not a readable .keras file"),
])
def test_truncated_or_foreign_files_are_refused(trained, tmp_path, damage, pattern):
    _, path = trained
    bad = tmp_path / "bad.keras"
    bad.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=pattern) as info:
        models.load_model(bad)
    assert str(bad) in str(info.value)


@pytest.mark.parametrize("members, pattern", [
    (lambda c: c.update({"config.json": b"{not json"}), r"has a corrupted config.json"),
    (lambda c: c.update({"config.json": b"[" * 100000 + b"]" * 100000}),
     r"has a corrupted config.json"),
    (lambda c: c.update({"config.json": b"[1, 2]"}), r"config.json that is not a JSON object"),
    (lambda c: c.pop("model.weights.h5"), r"without model.weights.h5"),
    (lambda c: c.update({"model.weights.h5": b"garbage" * 100}),
     r"model.weights.h5 that is not a readable HDF5 file"),
])
def test_damaged_members_are_refused(trained, tmp_path, members, pattern):
    _, path = trained
    bad = rewrite(path, tmp_path / "bad.keras", members=members)
    with pytest.raises(ValueError, match=pattern):
        models.load_model(bad)


def test_every_flipped_byte_is_rejected_or_harmless(tmp_path, rng):
    """Flip bytes of a small model's .keras file (every 7th byte, and all of the zip directory
    at the end): each result loads into the same model (a timestamp, say) or raises a
    ValueError naming the file, never another exception and never other weights (the zip's
    CRC-32 covers every member)."""
    minicnn.set_random_seed(0)
    model = models.Sequential([layers.Conv2D(3, 3, activation="relu", input_shape=(6, 6, 1)),
                               layers.Flatten(), layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = rng.random((4, 6, 6, 1), dtype=np.float32)
    model.train_on_batch(x, np.array([0, 1, 0, 1]))
    path = tmp_path / "small.keras"
    model.save(path)
    original, expected = path.read_bytes(), model.predict(x)
    positions = sorted(set(range(0, len(original), 7)) | set(range(len(original) - 300,
                                                                   len(original))))
    outcomes = {"same": 0, "rejected": 0}
    for position in positions:
        corrupted = bytearray(original)
        corrupted[position] ^= 0xFF
        path.write_bytes(bytes(corrupted))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. a compile setting turned unknown
                loaded = models.load_model(path)
        except ValueError as exc:
            assert str(path) in str(exc), (position, exc)
            outcomes["rejected"] += 1
            continue
        np.testing.assert_array_equal(loaded.predict(x), expected, err_msg=f"byte {position}")
        assert_same_weights(loaded, model)
        outcomes["same"] += 1
    assert outcomes["rejected"] > 0.7 * len(positions), outcomes
    assert outcomes["same"] > 0, outcomes


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        models.load_model(tmp_path / "none.keras")


@pytest.mark.parametrize("suffix", ["npz", "keras"])
def test_a_multi_output_model_keeps_each_outputs_loss_weight_and_metrics(tmp_path, suffix, rng):
    """Regression: the files kept only the first output's loss (applied to every output) and
    dropped loss_weights, so a reloaded model reported another loss, silently."""
    inputs = minicnn.Input((4,))
    hidden = layers.Dense(8, activation="relu")(inputs)
    model = minicnn.Model(inputs, [layers.Dense(3, activation="softmax", name="a")(hidden),
                                   layers.Dense(1, name="b")(hidden)])
    model.compile(optimizer="adam", loss={"a": "sparse_categorical_crossentropy", "b": "mse"},
                  loss_weights={"a": 1.0, "b": 0.5}, metrics={"a": ["accuracy"], "b": ["mae"]})
    x = rng.random((16, 4)).astype("float32")
    y = [rng.integers(0, 3, 16), rng.random((16, 1)).astype("float32")]
    fit_quietly(model, x, y)
    expected = model.evaluate(x, y, verbose=0, return_dict=True)
    assert expected["loss"] == pytest.approx(expected["a_loss"] + 0.5 * expected["b_loss"])
    path = tmp_path / f"two_outputs.{suffix}"
    model.save(path)
    loaded = models.load_model(path)
    assert loaded.evaluate(x, y, verbose=0, return_dict=True) == pytest.approx(expected)
    if suffix == "keras":  # and real Keras reads the same settings
        in_keras = load_in_keras(path).evaluate(x, {"a": y[0], "b": y[1]}, verbose=0,
                                                 return_dict=True)
        assert in_keras == pytest.approx(expected, rel=1e-5)
