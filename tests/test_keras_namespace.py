"""`import minicnn as keras` / `import minicnn as tf`: the namespace, the errors for names
minicnn lacks, what model(x), layer(x) and tf.nn.softmax return (.numpy()), and keras.utils."""

import importlib
import json
import os
import pickle
import subprocess
import sys
import traceback

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported: the test extra has JAX, not TF

import keras as real_keras
import numpy as np
import pytest

import minicnn
import minicnn as keras
import minicnn as tf
from minicnn import layers, losses, models
from minicnn._keras_names import KERAS_NAMES
from minicnn._namespace import NotInMinicnnError
from minicnn.tensor import Scalar, Tensor


def test_the_keras_namespace():
    assert keras.Sequential is models.Sequential and keras.Model is models.Model
    assert keras.models.Sequential is models.Sequential
    assert keras.models.load_model is models.load_model and keras.models.Model is models.Model
    assert keras.layers is layers and keras.losses is losses
    for name in ("optimizers", "metrics", "callbacks", "initializers", "activations", "utils",
                 "datasets"):
        assert getattr(keras, name) is sys.modules[f"minicnn.{name}"]
    assert keras.Layer is layers.Layer and keras.Loss is losses.Loss
    assert keras.Metric is minicnn.metrics.Metric
    assert keras.utils.to_categorical is minicnn.utils.to_categorical
    assert keras.utils.set_random_seed is minicnn.set_random_seed
    assert keras.version() == keras.__version__ == minicnn.__version__
    from minicnn.utils import normalize, to_categorical  # noqa: F401
    assert keras.datasets.mnist.load_data is minicnn.datasets.mnist.load_data


def test_input_is_layers_input_once_it_exists():
    if hasattr(layers, "Input"):
        assert keras.Input is layers.Input and "Input" in keras.__all__
    else:  # until the layers work of issue 10 lands: the not-yet error, naming keras.Input
        with pytest.raises(NotInMinicnnError, match=r"keras.Input is a Keras name that minicnn "
                                                    r"does not have yet"):
            keras.Input  # noqa: B018
        assert "Input" not in keras.__all__


def test_regularizers_resolve_once_they_exist():
    try:
        module = keras.regularizers
    except NotInMinicnnError as exc:
        assert "keras.regularizers is a Keras name" in str(exc)
    else:
        assert module is sys.modules["minicnn.regularizers"]


def test_tf_keras_is_the_same_namespace():
    assert tf.keras is minicnn and tf.keras.keras is minicnn
    assert tf.keras.layers.Dense is layers.Dense
    assert tf.keras.models.Sequential is models.Sequential
    assert tf.keras.datasets.mnist is minicnn.datasets.mnist
    assert tf.__version__ == minicnn.__version__


def test_keras_submodule_imports_give_the_one_real_module():
    import minicnn.keras.datasets.mnist as mnist_module
    from minicnn.keras import layers as keras_layers
    from minicnn.keras.layers import Dense
    from minicnn.keras.losses import MeanSquaredError
    assert keras_layers is layers and Dense is layers.Dense
    assert MeanSquaredError is losses.MeanSquaredError  # isinstance checks keep working
    assert sys.modules["minicnn.keras.layers"] is sys.modules["minicnn.layers"]
    assert layers.__spec__.name == "minicnn.layers"  # the module keeps its own identity
    assert mnist_module is minicnn.datasets.mnist
    with pytest.raises(ModuleNotFoundError, match=r"minicnn has no minicnn.applications "
                                                  r"\(keras.applications is not in minicnn yet"):
        importlib.import_module("minicnn.keras.applications")


NAMESPACES = ["", "layers", "losses", "metrics", "models", "optimizers", "callbacks",
              "initializers", "activations", "utils", "datasets"]


@pytest.mark.parametrize("namespace", NAMESPACES)
def test_every_keras_name_minicnn_lacks_says_so(namespace):
    module = minicnn if not namespace else getattr(minicnn, namespace)
    # A module's __all__ may name what its __getattr__ loads lazily (utils.plot_model).
    missing = sorted(n for n in KERAS_NAMES[namespace] if n not in vars(module)
                     and n not in vars(module).get("__all__", ())
                     and n not in minicnn._LAZY_NAMES and n not in minicnn._LAZY_MODULES)
    assert missing, namespace
    for name in missing:
        with pytest.raises(NotInMinicnnError) as info:
            getattr(module, name)
        where = f"keras.{namespace}.{name}" if namespace else f"keras.{name}"
        message = str(info.value)
        assert message.startswith(f"{where} is a Keras name that minicnn does not have yet. ")
        assert "compatibility table" in message
        assert isinstance(info.value, AttributeError)
        assert not hasattr(module, name) and getattr(module, name, 7) == 7


def test_the_error_lists_what_the_module_has_and_never_guesses_wrongly():
    with pytest.raises(NotInMinicnnError) as info:
        keras.layers.LSTM  # noqa: B018
    assert "minicnn.layers has: " in str(info.value) and "Conv2D, Dense" in str(info.value)
    # Python adds no guess of its own ("Did you mean: 'inputs'?" misled learners).
    assert "Did you mean" not in "".join(traceback.format_exception_only(info.value))
    with pytest.raises(NotInMinicnnError, match=r"no attribute 'Dnse', and Keras has no "
                                                r"keras.layers.Dnse either. Did you mean "
                                                r"'Dense'\?"):
        keras.layers.Dnse  # noqa: B018
    with pytest.raises(NotInMinicnnError, match=r"tf.GradientTape is TensorFlow's, and minicnn "
                                                r"is not TensorFlow.*tf.keras"):
        tf.GradientTape  # noqa: B018
    with pytest.raises(NotInMinicnnError, match=r"tf.nn.conv2d is TensorFlow's"):
        tf.nn.conv2d  # noqa: B018
    # Private and special names get Python's plain error (copy, pickle and inspect probe them).
    with pytest.raises(AttributeError) as info:
        keras.layers.__wrapped__  # noqa: B018
    assert type(info.value) is AttributeError
    with pytest.raises(ImportError, match="cannot import name 'LSTM'"):
        from minicnn.layers import LSTM  # noqa: F401


def test_import_minicnn_loads_no_application_dependencies():
    code = ("import sys, minicnn; minicnn.keras.layers; minicnn.utils; minicnn.nn; "
            "import minicnn.keras.losses; "
            "print([m for m in ('requests', 'matplotlib', 'PIL') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


# -- .numpy(): what model(x), layer(x), tf.nn and losses return -------------------------------
def quickstart_model():
    return keras.models.Sequential([layers.Flatten(input_shape=(28, 28)),
                                    layers.Dense(16, activation="relu"), layers.Dense(10)])


def test_model_and_layer_calls_return_tensors_with_numpy(rng):
    minicnn.set_random_seed(0)
    model = quickstart_model()
    x = rng.random((3, 28, 28))
    predictions = model(x[:1]).numpy()  # TensorFlow's quickstart, line by line
    assert type(predictions) is np.ndarray and predictions.shape == (1, 10)
    probabilities = tf.nn.softmax(predictions).numpy()
    np.testing.assert_allclose(probabilities.sum(), 1, rtol=1e-6)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    value = loss_fn(np.array([3], dtype=np.uint8), predictions).numpy()
    assert type(value) is np.float32
    assert value == pytest.approx(-np.log(probabilities[0, 3]), rel=1e-5)
    out = model(x)
    assert isinstance(out, Tensor)
    np.testing.assert_array_equal(out, model.predict(x, verbose=0))
    assert type(model.predict(x, verbose=0)) is np.ndarray  # as Keras: plain NumPy
    dense = model.layers[1]
    hidden = dense(layers.Flatten()(x))
    assert isinstance(hidden, Tensor) and type(hidden.numpy()) is np.ndarray


def test_tensor_behaves_as_an_ndarray_where_it_could_go_wrong(rng):
    model = quickstart_model()
    x = rng.random((4, 28, 28))
    first = model(x)
    kept = first.copy()
    model(x * 2)  # a second call must not write into the first result (reused buffers)
    np.testing.assert_array_equal(first, kept)
    plain = first.numpy()
    plain[...] = 0  # TensorFlow's tensors are immutable: editing .numpy() leaves the tensor
    np.testing.assert_array_equal(first, kept)
    # Reductions and single elements are NumPy scalars, as for a plain array: hashable,
    # JSON-able (float64), usable as keys.
    total, element = first.sum(), first[0, 0]
    assert type(total) is type(kept.view(np.ndarray).sum()) and type(element) is np.float32
    assert type(first.max()) is np.float32 and {first.argmax(): 1}
    assert type(np.float64(first.mean())) is np.float64
    json.dumps(float(first.sum()))
    assert type(np.asarray(first)) is np.ndarray
    assert isinstance(first * 2, Tensor) and isinstance((first * 2).numpy(), np.ndarray)
    assert type(first.argmax(axis=1).numpy()) is np.ndarray
    again = pickle.loads(pickle.dumps(first))
    assert isinstance(again, Tensor)
    np.testing.assert_array_equal(again, first)
    assert tf.nn.softmax(np.zeros((1, 1, 2))).numpy().shape == (1, 1, 2)


def test_tf_nn_functions_match_numpy(rng):
    z = rng.normal(size=(3, 4)) * 3
    e = np.exp(z - z.max(-1, keepdims=True))
    np.testing.assert_allclose(tf.nn.softmax(z), e / e.sum(-1, keepdims=True), rtol=1e-12)
    e0 = np.exp(z - z.max(0, keepdims=True))
    np.testing.assert_allclose(tf.nn.softmax(z, axis=0), e0 / e0.sum(0, keepdims=True),
                               rtol=1e-12)
    np.testing.assert_allclose(tf.nn.log_softmax(z), np.log(e / e.sum(-1, keepdims=True)),
                               rtol=1e-12)
    np.testing.assert_allclose(tf.nn.relu(z), np.maximum(z, 0))
    np.testing.assert_allclose(tf.nn.sigmoid(z), 1 / (1 + np.exp(-z)), rtol=1e-12)
    np.testing.assert_allclose(tf.nn.tanh(z), np.tanh(z), rtol=1e-12)
    assert tf.nn.softmax([[1, 2]]).dtype == np.float32  # integers are computed in float32


def test_metric_results_have_numpy():
    metric = keras.metrics.Mean()
    metric.update_state([1.0, 2.0, 4.0])
    assert isinstance(metric.result(), Scalar) and metric.result().numpy() == np.float32(7 / 3)
    assert f"{metric.result():.2f}" == "2.33"


# -- keras.utils ---------------------------------------------------------------------------------
@pytest.mark.parametrize("labels, num_classes", [
    (np.array([0, 2, 1]), None), (np.array([0, 2, 1]), 5), (np.array([[1], [0], [3]]), 4),
    (np.array([[0, 1], [2, 0]]), 3), ([3, 1], None), (np.array([1.0, 0.0]), None),
])
def test_to_categorical_matches_keras(labels, num_classes):
    ours = keras.utils.to_categorical(labels, num_classes)
    theirs = real_keras.utils.to_categorical(labels, num_classes)
    assert ours.shape == theirs.shape and ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


def test_to_categorical_refuses_what_keras_would_turn_into_a_wrong_matrix():
    with pytest.raises(ValueError, match=r"label -1 is outside \[0, 2\]"):
        keras.utils.to_categorical([0, -1, 2])  # Keras would set the last column
    with pytest.raises(ValueError, match=r"label 3 is outside \[0, 2\] for num_classes=3"):
        keras.utils.to_categorical([0, 3], num_classes=3)
    with pytest.raises(ValueError, match="whole numbers"):
        keras.utils.to_categorical([0.5, 1.0])
    with pytest.raises(ValueError, match="num_classes must be a positive int"):
        keras.utils.to_categorical([0, 1], num_classes=0)
    with pytest.raises(TypeError, match="labels must be integers"):
        keras.utils.to_categorical(["a", "b"])


@pytest.mark.parametrize("axis, order", [(-1, 2), (0, 2), (1, 1), (-1, np.inf)])
def test_normalize_divides_by_the_norm_along_the_axis(rng, axis, order):
    x = rng.normal(size=(4, 3))
    x[1] = 0  # a zero row keeps its zeros
    norm = np.linalg.norm(x, order, axis, keepdims=True)
    expected = x / np.where(norm == 0, 1, norm)
    np.testing.assert_allclose(keras.utils.normalize(x, axis, order), expected, rtol=1e-12)
    if axis == -1:  # (Keras 3.15's own normalize fails for axis=0)
        np.testing.assert_allclose(keras.utils.normalize(x, axis, order),
                                   real_keras.utils.normalize(x, axis, order), rtol=1e-12)


def test_model_api_as_keras_shows_it():
    model = quickstart_model()
    assert model.input_shape == (None, 28, 28) and model.output_shape == (None, 10)
    assert model.input_shape[1:] == (28, 28)  # the tutorials' idiom means what it says
    assert model.get_layer(index=-1) is model.layers[-1]
    assert model.get_layer(model.layers[1].name) is model.layers[1]
    with pytest.raises(ValueError, match="give a layer name or an index, not both"):
        model.get_layer(model.layers[1].name, index=1)
    with pytest.raises(ValueError, match="not neither"):
        model.get_layer()
    last = model.pop()
    assert isinstance(last, layers.Dense) and model.output_shape == (None, 16)
