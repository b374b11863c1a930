"""examples/cifar10_resnet.py end to end, offline: main(argv) in this process on a small archive
in CIFAR-10's real format (tests/cifar_fixtures.py) served by a mirror on 127.0.0.1; one epoch
on 64 images, every output file written, history.json consistent, the saved model the trained
one. The images are random, so only the mechanics are checked, not what the network learns."""

import json
import os
from contextlib import redirect_stdout
from io import StringIO

import numpy as np
import pytest
from conftest import REPO_ROOT
from minicnn.examples import cifar10_resnet  # examples/ is installed as minicnn.examples
from PIL import Image

from minicnn import models
from minicnn.datasets import cifar10

try:
    import cifar_fixtures as cf
    import datasets_fixtures as fx
except ImportError:  # tests/ is a package
    from tests import cifar_fixtures as cf
    from tests import datasets_fixtures as fx

# File -> (width, height) in pixels, as minicnn.plot documents them for this model.
FIGURES = {
    "history.png": (1000, 400),
    "predictions.png": (850, 1190),  # 25 images: 5 x 5 cells
    "confusion_matrix.png": (830, 710),  # 10 classes
    "filters.png": (980, 280),  # the stem's 16 filters: 8 x 2 cells
    "feature_maps.png": (1620, 1350),  # input + 8 Conv2D rows (3 blocks: 2 each, 1 projection)
}
LIMIT = 64


@pytest.fixture(scope="module")
def tiny():
    """80 training images (5 batches of 16), 25 test images: the predictions grid is full."""
    return cf.make_tiny_cifar(per_batch=(16, 16, 16, 16, 16), n_test=25, seed=3)


@pytest.fixture(scope="module")
def run(tiny, tmp_path_factory):
    """Run main() once against the local mirror: (output dir, data dir, stdout, captured model)."""
    data_dir = tmp_path_factory.mktemp("data")
    output_dir = tmp_path_factory.mktemp("example") / "out"
    mp = pytest.MonkeyPatch()
    for name in (*fx.PROXY_VARS, "MINICNN_DATA_DIR"):
        mp.delenv(name, raising=False)
    # The model main() builds, kept to compare with the file it saves.
    built = []
    original = cifar10_resnet.build_model
    mp.setattr(cifar10_resnet, "build_model", lambda: built.append(original()) or built[-1])
    try:
        with fx.MirrorServer({cifar10.ARCHIVE_NAME: tiny.archive}) as server:
            # As tests/test_datasets_cifar10.py: the mirror list is the local server only, and
            # the real archive's SHA-256 and size are swapped for the tiny one's.
            mp.setenv("MINICNN_CIFAR10_MIRRORS", server.url("m"))
            mp.setattr(cifar10, "CIFAR10", tiny.spec())
            out = StringIO()
            with redirect_stdout(out):
                cifar10_resnet.main(["--epochs", "1", "--limit", str(LIMIT), "--seed", "0",
                                     "--batch-size", "16", "--data-dir", str(data_dir),
                                     "--output-dir", str(output_dir)])
            downloads = server.count("m", cifar10.ARCHIVE_NAME)
    finally:
        mp.undo()
    return output_dir, data_dir, out.getvalue(), built[0], downloads


def test_every_file_is_written_and_nothing_else(run):
    output_dir, data_dir, _, _, downloads = run
    assert sorted(os.listdir(output_dir)) == sorted([cifar10_resnet.MODEL_FILE, "history.json",
                                                     *FIGURES])
    assert downloads == 1 and (data_dir / "cifar-10" / cifar10.ARCHIVE_NAME).is_file()


@pytest.mark.parametrize("name", FIGURES)
def test_figures_are_readable_non_blank_pngs_of_the_documented_size(run, name):
    output_dir = run[0]
    with Image.open(output_dir / name) as im:
        assert im.format == "PNG" and im.size == FIGURES[name]
        pixels = np.asarray(im.convert("RGB"))
    assert (pixels < 240).any(axis=2).mean() > 0.02, f"{name} is nearly all white"
    if name == "predictions.png":
        # Colour images: some pixels are far from gray (R, G and B differ).
        spread = pixels.max(axis=2).astype(int) - pixels.min(axis=2)
        assert (spread > 60).mean() > 0.05


def test_history_json_records_the_run(run, tiny):
    output_dir = run[0]
    record = json.loads((output_dir / "history.json").read_text())
    assert set(record["history"]) == {"loss", "accuracy"}
    (loss,), (accuracy,) = record["history"]["loss"], record["history"]["accuracy"]
    # Random images and labels: about chance, ln(10) = 2.30 for the loss.
    assert 1.0 < loss < 5.0 and 0.0 <= accuracy <= 1.0
    assert 1.0 < record["test_loss"] < 5.0
    # The accuracy of 25 test images is a whole number of 25ths.
    assert 0.0 <= record["test_accuracy"] <= 1.0
    assert round(record["test_accuracy"] * 25, 4) == int(round(record["test_accuracy"] * 25))
    assert 0 < record["seconds_per_epoch"][0] <= record["fit_seconds"]
    assert record["seed"] == 0 and record["arguments"]["limit"] == LIMIT
    first = record["first_test_image"]
    assert len(first["probabilities"]) == 10
    assert abs(sum(first["probabilities"]) - 1) < 1e-5
    assert first["argmax"] == int(np.argmax(first["probabilities"]))
    assert first["true_label"] == int(tiny.y_test[0, 0])


def test_stdout_reports_the_graph_the_steps_and_the_test_metrics(run):
    output_dir, _, out, _, _ = run
    record = json.loads((output_dir / "history.json").read_text())
    assert 'Model: "cifar10_resnet"' in out and "Connected to" in out
    # The skip connections: each Add takes the shortcut and the block's second BN.
    assert "block2_add" in out and "block2_proj_bn[0][0]" in out
    assert "4/4 " in out  # 64 images in batches of 16
    assert f"Test accuracy: {record['test_accuracy']:.4f}" in out


def test_saved_model_loads_and_predicts_as_the_trained_one(run, tiny):
    output_dir, _, _, trained, _ = run
    loaded = models.load_model(output_dir / cifar10_resnet.MODEL_FILE)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in trained.layers]
    assert sum(layer.__class__.__name__ == "Add" for layer in loaded.layers) == 3
    x = tiny.x_test.astype("float32") / 255
    expected = trained.predict(x, verbose=0)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), expected)
    record = json.loads((output_dir / "history.json").read_text())
    assert expected[0].tolist() == record["first_test_image"]["probabilities"]
    # Trained: the weights moved from a freshly built model's (same seed, same initialiser).
    fresh = cifar10_resnet.build_model()
    assert not all(np.array_equal(a, b) for a, b in zip(fresh.get_weights(),
                                                        loaded.get_weights(), strict=True))


def test_a_missing_archive_offline_is_one_message_not_a_traceback(tmp_path, monkeypatch,
                                                                   capsys):
    from minicnn.cli import run_with_messages

    for name in (*fx.PROXY_VARS, "MINICNN_DEBUG"):
        monkeypatch.delenv(name, raising=False)
    with fx.MirrorServer({}) as server:  # a mirror without the file: 404
        monkeypatch.setenv("MINICNN_CIFAR10_MIRRORS", server.url("m"))
        status = run_with_messages(cifar10_resnet.main, ["--data-dir", str(tmp_path),
                                                         "--output-dir", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert status != 0 and "Traceback" not in err
    assert cifar10.ARCHIVE_NAME in err


def test_example_file_is_runnable_as_a_script():
    text = (REPO_ROOT / "examples" / "cifar10_resnet.py").read_text()
    assert 'if __name__ == "__main__":' in text and "run_with_messages(main)" in text
