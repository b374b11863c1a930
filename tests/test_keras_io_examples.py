"""keras.io's Simple MNIST convnet, TensorFlow's beginner quickstart and the MNIST part of
keras.io's Functional API guide, as published with only the import lines changed
(examples/keras_io/), run end to end on real MNIST: their own epochs, batch sizes and
evaluation, on a subset (the guide, whose reshapes name 60,000 images, on all of it). The full
runs are the scripts run as they are (numbers in the README)."""

import runpy

import numpy as np
import pytest
from conftest import REPO_ROOT, mnist_data_dir
from PIL import Image

import minicnn

EXAMPLES = REPO_ROOT / "examples" / "keras_io"


@pytest.fixture
def small_mnist(monkeypatch):
    """keras.datasets.mnist.load_data() gives the first 3,000 training and 1,000 test images
    (real MNIST, uint8, as the full call gives them)."""
    from minicnn.datasets import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_data(data_dir=mnist_data_dir(), verbose=0)
    subset = (x_train[:3000], y_train[:3000]), (x_test[:1000], y_test[:1000])
    monkeypatch.setattr(mnist, "load_data", lambda *args, **kwargs: subset)
    return subset


def run(script, capsys):
    minicnn.set_random_seed(0)
    namespace = runpy.run_path(str(EXAMPLES / script), run_name="__main__")
    return namespace, capsys.readouterr().out


def test_keras_io_simple_mnist_convnet(small_mnist, capsys):
    namespace, out = run("mnist_convnet.py", capsys)
    assert "x_train shape: (3000, 28, 28, 1)" in out and "1000 test samples" in out
    assert "Total params: 34,826" in out  # the published summary's count
    assert "Epoch 15/15" in out and "val_accuracy" in out
    accuracy = float(out.split("Test accuracy:")[1].split()[0])
    assert accuracy > 0.9, out[-2000:]
    assert namespace["score"][1] == accuracy


def test_tensorflow_quickstart_for_beginners(small_mnist, capsys):
    namespace, out = run("tf_quickstart_beginner.py", capsys)
    assert out.startswith(f"TensorFlow version: {minicnn.__version__}\n")
    predictions = namespace["predictions"]
    assert type(predictions) is np.ndarray and predictions.shape == (1, 10)
    assert "Epoch 5/5" in out
    line = next(text for text in out.splitlines() if text.startswith("32/32 - "))
    accuracy = float(line.split("accuracy: ")[1].split()[0])
    assert accuracy > 0.85, out[-2000:]
    # The last cell: the trained model inside a Sequential with a Softmax.
    probabilities = namespace["probability_model"](namespace["x_test"][:5])
    np.testing.assert_allclose(probabilities.numpy().sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_array_equal(probabilities.numpy().argmax(1),
                                  namespace["model"].predict(namespace["x_test"][:5]).argmax(1))


def test_keras_io_functional_api_guide_mnist_part(mnist_dir, tmp_path, monkeypatch, capsys):
    # The guide reshapes to (60000, 784) and (10000, 784), so it gets the full MNIST (its
    # multilayer perceptron trains 2 epochs in a few seconds); its two plot_model pictures and
    # my_model.keras land in cwd.
    monkeypatch.chdir(tmp_path)
    namespace, out = run("functional_api_mnist.py", capsys)
    assert 'Model: "mnist_model"' in out and "Total params: 55,050" in out  # as published
    with Image.open(tmp_path / "my_first_model.png") as plain, \
            Image.open(tmp_path / "my_first_model_with_shape_info.png") as shapes:
        # 4 boxes in a column (input, 3 Dense); the shapes make the boxes wider and taller.
        assert plain.height > 2 * plain.width
        assert shapes.width > plain.width and shapes.height > plain.height
    # The second Dense's row names the first by its name (a process-wide counter sets it:
    # "dense_1" only when this test runs alone).
    assert "Connected to" in out and f"{namespace['dense'].name}[0][0]" in out
    assert "Epoch 2/2" in out and "val_sparse_categorical_accuracy" in out
    accuracy = float(out.split("Test accuracy:")[1].split()[0])
    # Published: about 0.96. Unseeded, as published: minicnn gave 0.953-0.959 over 5 runs, so
    # the bar leaves room for the seed; a broken model stays far below it.
    assert accuracy > 0.94, out[-2000:]
    assert float(out.split("Test loss:")[1].split()[0]) < 0.2
    # The model read back from my_model.keras is the trained one: same outputs, same score.
    loaded = namespace["model"]
    assert type(loaded).__name__ == "Functional" and loaded.name == "mnist_model"
    assert (tmp_path / "my_model.keras").is_file()
    x = namespace["x_test"][:200]
    trained = trained_model(namespace)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), trained.predict(x, verbose=0))
    assert loaded.evaluate(namespace["x_test"], namespace["y_test"], verbose=0)[1] == accuracy


def trained_model(namespace):
    """The trained model the script deleted (`del model`), rebuilt from its outputs tensor."""
    return minicnn.Model(inputs=namespace["inputs"], outputs=namespace["outputs"])
