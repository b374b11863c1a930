"""Your own handwriting: real MNIST test digits drawn 10x bigger as dark ink on light paper,
saved as PNG, then read back by load_image + preprocess_digit and classified by a tutorial model
trained here; and the same files through `python -m minicnn predict`."""

import json
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, mnist_data_dir
from PIL import Image
from test_models import tutorial_model

import minicnn
from minicnn import cli
from minicnn.datasets import mnist
from minicnn.preprocessing import load_image, preprocess_digit

TRAIN_IMAGES = 5000  # one epoch on these reaches about 87 % test accuracy (test_learning_mnist)
SCALE = 10  # the digits are drawn 280 x 280 pixels
MARGIN = 40  # pixels of paper around the drawing


@pytest.fixture(scope="module")
def mnist_arrays():
    return mnist.load_data(data_dir=mnist_data_dir(), verbose=0)


@pytest.fixture(scope="module")
def trained_model(mnist_arrays):
    """The tutorial model after one epoch on the first TRAIN_IMAGES training images (seed 0),
    trained once for this module (a few seconds)."""
    (x_train, y_train), _ = mnist_arrays
    minicnn.set_random_seed(0)
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = (x_train[:TRAIN_IMAGES].astype(np.float32) / 255).reshape(-1, 28, 28, 1)
    model.fit(x, y_train[:TRAIN_IMAGES], epochs=1, verbose=0)
    return model


@pytest.fixture(scope="module")
def chosen_digits(trained_model, mnist_arrays):
    """(10, 28, 28) uint8 and labels 0..9: for each class, the first MNIST test digit that the
    model classifies correctly in its original 28x28 form.

    The selection is on purpose: it isolates the preprocessing from the model's own mistakes,
    so a wrong answer below means the drawn-and-processed digit no longer looks like MNIST.
    """
    _, (x_test, y_test) = mnist_arrays
    first = x_test[:300]
    predicted = trained_model.predict((first.astype(np.float32) / 255)[..., None]).argmax(1)
    picks = [int(np.flatnonzero((y_test[:300] == k) & (predicted == k))[0]) for k in range(10)]
    return x_test[picks], y_test[picks].astype(int)


def draw_on_paper(digit, path):
    """Draw a 28x28 MNIST digit SCALE times bigger as dark ink on light paper with a MARGIN,
    as a person would on a sheet, and save it as an RGB PNG (H = W = 28 * SCALE + 2 * MARGIN).
    """
    size = 28 * SCALE
    ink = np.asarray(Image.fromarray(digit.astype(np.float32) / 255).resize(
        (size, size), Image.Resampling.BILINEAR)).clip(0, 1)  # smooth stroke edges, like a pen
    coverage = np.zeros((size + 2 * MARGIN, size + 2 * MARGIN))
    coverage[MARGIN:MARGIN + size, MARGIN:MARGIN + size] = ink
    paper, pen = np.array([242.0, 238.0, 228.0]), np.array([25.0, 30.0, 60.0])  # cream, blue-black
    pixels = paper * (1 - coverage[..., None]) + pen * coverage[..., None]
    Image.fromarray(pixels.round().astype(np.uint8)).save(path)


@pytest.fixture(scope="module")
def drawn_files(chosen_digits, tmp_path_factory):
    """The chosen digits as PNG files on paper, and their labels."""
    digits, labels = chosen_digits
    folder = tmp_path_factory.mktemp("handwriting")
    paths = []
    for digit, label in zip(digits, labels, strict=True):
        path = folder / f"digit_{label}.png"
        draw_on_paper(digit, path)
        paths.append(path)
    return paths, labels


def test_drawn_digits_are_classified_after_preprocessing(trained_model, drawn_files):
    paths, labels = drawn_files
    with Image.open(paths[0]) as im:
        assert im.size == (360, 360) and im.mode == "RGB"
    processed = np.stack([preprocess_digit(load_image(path)) for path in paths])
    assert processed.shape == (10, 28, 28) and processed.dtype == np.float32
    # MNIST-like: light digit on black, strokes up to 1, background exactly 0 at the border.
    assert processed.max(axis=(1, 2)).min() == 1.0
    assert np.all(processed[:, :2, :] == 0) and np.all(processed[:, :, :2] == 0)
    predicted = trained_model.predict(processed[..., None]).argmax(axis=1)
    correct = int(np.sum(predicted == labels))
    assert correct >= 9, f"predicted {predicted.tolist()} for labels {labels.tolist()}"


def test_cli_predict_json_on_drawn_digits(trained_model, drawn_files, tmp_path, capsys):
    paths, labels = drawn_files
    model_path = tmp_path / "tutorial.npz"
    trained_model.save(model_path)
    status = cli.main(["predict", *map(str, paths), "--model", str(model_path), "--json"])
    out = capsys.readouterr()
    assert status == 0, out.err
    records = [json.loads(line) for line in out.out.splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in paths]
    expected = trained_model.predict(
        np.stack([preprocess_digit(p) for p in paths])[..., None], batch_size=1)
    for record, probabilities in zip(records, expected, strict=True):
        assert set(record) == {"image", "prediction", "probabilities"}
        # Batches of another size take other BLAS blockings: equal to float32 rounding.
        np.testing.assert_allclose(record["probabilities"], probabilities, rtol=1e-5, atol=1e-7)
        assert record["prediction"] == int(np.argmax(record["probabilities"]))
        assert sum(record["probabilities"]) == pytest.approx(1, abs=1e-5)
    correct = sum(r["prediction"] == label for r, label in zip(records, labels, strict=True))
    assert correct >= 9


def test_python_m_minicnn_predict_prints_top3_and_saves_processed(trained_model, drawn_files,
                                                                  tmp_path):
    """The real entry point in a fresh process: text output and --save-processed."""
    paths, labels = drawn_files
    model_path = tmp_path / "tutorial.npz"
    trained_model.save(model_path)
    figure = tmp_path / "seen.png"
    result = subprocess.run(
        [sys.executable, "-m", "minicnn", "predict", str(paths[3]), "--model", str(model_path),
         "--save-processed", str(figure)],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    match = re.fullmatch(rf"{re.escape(str(paths[3]))}: (\d) \(([\d.]+)%\), then (\d) "
                         r"\(([\d.]+)%\), (\d) \(([\d.]+)%\)\n", result.stdout)
    assert match, result.stdout
    digits = [int(match[i]) for i in (1, 3, 5)]
    percents = [float(match[i]) for i in (2, 4, 6)]
    probabilities = trained_model.predict(preprocess_digit(paths[3])[None, ..., None])[0]
    assert digits == np.argsort(probabilities)[::-1][:3].tolist()
    np.testing.assert_allclose(percents, 100 * np.sort(probabilities)[::-1][:3], atol=0.006)
    assert digits[0] == labels[3]
    with Image.open(figure) as im:
        assert im.format == "PNG" and im.size == (700, 300)
