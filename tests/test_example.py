"""examples/mnist_cnn.py end to end on real MNIST: one epoch on 5,000 images, every output file
written and readable, the printed report consistent with history.json and the saved model."""

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
from conftest import REPO_ROOT, mnist_data_dir
from PIL import Image

from minicnn import models
from minicnn.datasets import mnist

EXAMPLE = REPO_ROOT / "examples" / "mnist_cnn.py"
# File -> (width, height) in pixels, as documented in minicnn.plot for the tutorial's model.
FIGURES = {
    "history.png": (1000, 400),
    "predictions.png": (850, 1190),  # 25 digits: 5 x 5 cells
    "confusion_matrix.png": (830, 710),  # 10 classes
    "filters.png": (980, 500),  # 25 filters: 8 x 4 cells
    "feature_maps.png": (1620, 600),  # input + 3 Conv2D rows, 16 maps each
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Run the example once in a fresh process: (output dir, completed process, data dir)."""
    data_dir = mnist_data_dir()
    output_dir = tmp_path_factory.mktemp("example") / "out"
    env = {**os.environ, "MINICNN_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--epochs", "1", "--limit", "5000", "--seed", "0",
         "--output-dir", str(output_dir)],
        capture_output=True, text=True, env=env, cwd=tmp_path_factory.mktemp("cwd"),
        timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return output_dir, result, data_dir


def test_every_file_is_written_and_nothing_else(run):
    output_dir, _, _ = run
    assert sorted(os.listdir(output_dir)) == sorted(["mnist_cnn.npz", "history.json", *FIGURES])


@pytest.mark.parametrize("name", FIGURES)
def test_figures_are_readable_non_blank_pngs_of_the_documented_size(run, name):
    output_dir, _, _ = run
    with Image.open(output_dir / name) as im:
        assert im.format == "PNG"
        assert im.size == FIGURES[name]
        pixels = np.asarray(im.convert("RGB"))
    packed = pixels.astype(np.uint32) @ np.array([1 << 16, 1 << 8, 1], dtype=np.uint32)
    colours = len(np.unique(packed))
    assert colours > 50, f"{name}: only {colours} colours"
    assert (pixels < 240).any(axis=2).mean() > 0.02, f"{name} is nearly all white"


def test_history_json_records_the_run(run):
    output_dir, _, _ = run
    record = json.loads((output_dir / "history.json").read_text())
    assert set(record) >= {"history", "test_loss", "test_accuracy", "seconds_per_epoch",
                           "fit_seconds", "seed", "arguments", "versions", "first_test_image"}
    assert set(record["history"]) == {"loss", "accuracy"}
    assert len(record["history"]["loss"]) == 1 and len(record["seconds_per_epoch"]) == 1
    assert 0 < record["history"]["loss"][0] < 1.5
    assert record["test_accuracy"] > 0.8  # one epoch on 5,000 images gives about 87 %
    assert 0 < record["test_loss"] < 1
    assert 0 < record["seconds_per_epoch"][0] <= record["fit_seconds"]
    assert record["seed"] == 0
    assert record["arguments"] == {"epochs": 1, "batch_size": 32, "seed": 0, "data_dir": None,
                                   "output_dir": str(output_dir), "validation_split": 0.0,
                                   "limit": 5000}
    versions = record["versions"]
    assert versions["numpy"] == np.__version__ and set(versions) == {"minicnn", "numpy",
                                                                     "numba", "python"}
    assert versions["python"] == ".".join(map(str, sys.version_info[:3]))


def test_stdout_reports_summary_progress_test_metrics_and_first_prediction(run):
    output_dir, result, _ = run
    out = result.stdout
    record = json.loads((output_dir / "history.json").read_text())
    assert 'Model: "' in out and "Total params: 56,452" in out
    assert "Epoch 1/" not in out  # Keras 3 prints the epoch line only for epochs > 1
    assert re.search(r"^157/157 ━{20} .* - accuracy: \d\.\d{4} - loss: \d\.\d{4}$", out, re.M)
    assert f"Test accuracy: {record['test_accuracy']:.4f}" in out
    assert f"Test loss: {record['test_loss']:.4f}" in out
    first = record["first_test_image"]
    assert first["argmax"] == int(np.argmax(first["probabilities"]))
    assert first["true_label"] == 7  # MNIST's first test digit
    assert f"argmax: {first['argmax']}  (true label: 7)" in out
    # NumPy's full repr of the float32 row, as the tutorial's notebook shows it, then argmax.
    row = repr(np.array(first["probabilities"], dtype=np.float32))
    assert row.startswith("array([") and row.endswith("dtype=float32)")
    assert f"Probabilities for the first test image:\n{row}\nargmax: " in out


def test_saved_model_reproduces_the_printed_prediction(run):
    output_dir, _, data_dir = run
    model = models.load_model(output_dir / "mnist_cnn.npz")
    record = json.loads((output_dir / "history.json").read_text())
    _, (x_test, _) = mnist.load_data(data_dir=data_dir, verbose=0)
    # The example predicted in batches of 32: the same first batch gives the same bits.
    first_batch = (x_test[:32].astype("float32") / 255).reshape(-1, 28, 28, 1)
    probabilities = model.predict(first_batch)[0]
    assert probabilities.tolist() == record["first_test_image"]["probabilities"]
    assert model.optimizer.iterations == 157  # ceil(5000 / 32) Adam steps, state included
