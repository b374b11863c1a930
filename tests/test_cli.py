"""The command line: subcommand listing and registration, `train` running the example script,
and `predict` on images (output formats, --save-processed, every error path)."""

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from PIL import Image, ImageDraw
from test_models import tutorial_model
from test_plot import assert_not_blank, read_png

import minicnn
from minicnn import cli, layers, models
from minicnn.preprocessing import preprocess_digit

# --------------------------------------------------------------------------------------------
# Listing and registration
# --------------------------------------------------------------------------------------------


def test_python_m_minicnn_help_lists_the_subcommands():
    result = subprocess.run([sys.executable, "-m", "minicnn", "--help"], capture_output=True,
                            text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: python -m minicnn")
    assert re.search(r"^\s+train\s+train the tutorial's CNN", result.stdout, re.M)
    assert re.search(r"^\s+predict\s+classify your own handwritten digits", result.stdout, re.M)


def test_no_subcommand_prints_help_and_fails(capsys):
    assert cli.main([]) == 2
    assert "train" in capsys.readouterr().err


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"minicnn {minicnn.__version__}"


def test_a_registered_command_is_listed_and_run(monkeypatch, capsys):
    calls = []

    def configure(parser):
        parser.add_argument("--port", type=int, default=8000)

    def run(args, extra):
        calls.append((args.port, extra))
        return 3

    monkeypatch.setitem(cli.COMMANDS, "serve", cli.Command("serve", "serve a web page",
                                                           configure, run))
    assert cli.main(["--help"]) == 0
    assert re.search(r"^\s+serve\s+serve a web page", capsys.readouterr().out, re.M)
    assert cli.main(["serve", "--port", "9"]) == 3
    assert calls == [(9, [])]
    assert cli.main(["serve", "--bogus"]) == 2  # not passthrough: unknown options rejected
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# train
# --------------------------------------------------------------------------------------------


def test_train_runs_the_installed_tutorial_which_is_the_repository_example():
    """examples/mnist_cnn.py is installed as minicnn.examples.mnist_cnn: one file, not a copy."""
    from minicnn.examples import mnist_cnn
    assert Path(mnist_cnn.__file__).resolve() == REPO_ROOT / "examples" / "mnist_cnn.py"


def test_default_model_path_is_where_the_example_saves():
    script = runpy.run_path(str(REPO_ROOT / "examples" / "mnist_cnn.py"), run_name="probe")
    assert cli.DEFAULT_MODEL.parts == (script["DEFAULT_OUTPUT_DIR"], script["MODEL_FILE"])
    assert script["parse_args"]([]).output_dir == script["DEFAULT_OUTPUT_DIR"]


def test_train_runs_the_example_main_with_the_arguments(monkeypatch):
    from minicnn.examples import mnist_cnn
    calls = []
    monkeypatch.setattr(mnist_cnn, "main", lambda argv=None, prog=None: calls.append((argv,
                                                                                      prog)))
    assert cli.main(["train", "--epochs", "3", "--limit", "7", "--help"]) == 0
    [(argv, prog)] = calls
    assert argv == ["--epochs", "3", "--limit", "7", "--help"]
    assert prog.endswith(" train")


def test_train_help_shows_the_example_options(capsys):
    assert cli.main(["train", "--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--epochs", "--batch-size", "--seed", "--data-dir", "--output-dir",
                   "--validation-split", "--limit"):
        assert option in out
    assert "(default: ./mnist_cnn_output)" in out


def test_train_rejects_bad_options_like_the_example(capsys):
    assert cli.main(["train", "--epochs", "0"]) == 2
    assert "--epochs: expected a whole number >= 1, got '0'" in capsys.readouterr().err


def test_train_errors_from_the_run_are_one_line(mnist_dir, tmp_path, capsys):
    """A problem found while running (here: a validation split of a single image) is reported
    as `... train: error: <message>` with status 1, not a traceback."""
    status = cli.main(["train", "--limit", "1", "--validation-split", "0.5", "--seed", "0",
                       "--output-dir", str(tmp_path / "out")])
    assert status == 1
    err = capsys.readouterr().err
    assert re.search(r"train: error: fit: validation_split=0.5 of 1 samples leaves an empty", err)


# --------------------------------------------------------------------------------------------
# predict
# --------------------------------------------------------------------------------------------


@pytest.fixture
def model_file(tmp_path):
    """An (untrained, seeded) tutorial model saved to tmp_path; the tests check that predict
    reports what the model says, not that the model is right."""
    minicnn.set_random_seed(5)
    model = tutorial_model()
    path = tmp_path / "model.npz"
    model.save(path)
    return path, model


def write_digit(path, shape="one", mode="RGB", size=(200, 160)):
    """A simple drawn digit (dark on white): 'one' a vertical bar, 'zero' a ring."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    w, h = size
    if shape == "one":
        draw.line([(w // 2, h // 5), (w // 2, 4 * h // 5)], fill=0, width=14)
    else:
        draw.ellipse([w // 4, h // 6, 3 * w // 4, 5 * h // 6], outline=0, width=12)
    image.convert(mode).save(path)
    return path


def expected_probabilities(model, path):
    return model.predict(preprocess_digit(path)[None, :, :, None], verbose=0)[0].astype(np.float64)


def test_predict_text_output_is_the_top3(model_file, tmp_path, capsys):
    path, model = model_file
    images = [write_digit(tmp_path / "one.png"), write_digit(tmp_path / "zero.jpg", "zero")]
    assert cli.main(["predict", *map(str, images), "--model", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, image in zip(lines, images, strict=True):
        probabilities = expected_probabilities(model, image)
        top = np.argsort(probabilities)[::-1][:3]
        ranked = [f"{k} ({probabilities[k]:.2%})" for k in top]
        assert line == f"{image}: {ranked[0]}, then {ranked[1]}, {ranked[2]}"


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA"])
def test_predict_json_matches_the_model(model_file, tmp_path, capsys, mode):
    path, model = model_file
    image = write_digit(tmp_path / f"digit_{mode}.png", "zero", mode=mode, size=(90, 300))
    assert cli.main(["predict", str(image), "--model", str(path), "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    probabilities = expected_probabilities(model, image)
    assert record == {"image": str(image), "prediction": int(np.argmax(probabilities)),
                      "probabilities": probabilities.tolist()}


def test_predict_uses_the_default_model_then_minicnn_model(model_file, tmp_path, monkeypatch,
                                                           capsys):
    path, model = model_file
    image = write_digit(tmp_path / "one.png")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINICNN_MODEL", raising=False)
    assert cli.main(["predict", str(image)]) == 1
    err = capsys.readouterr().err
    assert "no model at ./mnist_cnn_output/mnist_cnn.npz, where the tutorial saves it" in err
    assert "python -m minicnn train" in err and "--model PATH" in err

    (tmp_path / "mnist_cnn_output").mkdir()
    os.replace(path, tmp_path / "mnist_cnn_output" / "mnist_cnn.npz")
    assert cli.main(["predict", str(image), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["probabilities"] == \
        expected_probabilities(model, image).tolist()

    other = models.Sequential([layers.Conv2D(2, 3, input_shape=(28, 28, 1)), layers.Flatten(),
                               layers.Dense(3, activation="softmax")])
    other.save(tmp_path / "other.npz")
    monkeypatch.setenv("MINICNN_MODEL", str(tmp_path / "other.npz"))
    assert cli.main(["predict", str(image), "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["probabilities"]) == 3
    monkeypatch.setenv("MINICNN_MODEL", str(tmp_path / "gone.npz"))
    assert cli.main(["predict", str(image)]) == 1
    assert "$MINICNN_MODEL points to" in capsys.readouterr().err


def test_predict_bad_images_are_reported_and_the_rest_still_run(model_file, tmp_path, capsys):
    path, model = model_file
    good = write_digit(tmp_path / "good.png")
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (120, 120), (250, 250, 250)).save(blank)
    missing = tmp_path / "missing.png"
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    args = ["predict", str(text), str(good), str(blank), str(missing), str(empty),
            "--model", str(path)]

    assert cli.main(args) == 1
    out = capsys.readouterr()
    assert out.out.startswith(f"{good}: ")  # the good image is still classified
    errors = out.err.splitlines()
    assert len(errors) == 4
    assert errors[0].startswith(f"python -m minicnn predict: error: {text}: load_image:")
    assert "could not be read as PNG/JPEG image" in errors[0]
    assert errors[1].startswith(f"python -m minicnn predict: error: {blank}: ")
    assert "looks blank: no digit found" in errors[1]
    assert "no such file" in errors[2]
    assert f"{empty}: load_image:" in errors[3] and "could not be read" in errors[3]

    assert cli.main([*args, "--json"]) == 1
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["image"] for r in records] == [str(p) for p in (text, good, blank, missing, empty)]
    assert "error" in records[0] and "prediction" in records[1] and "error" in records[2]


def test_predict_rejects_unusable_model_files(tmp_path, capsys):
    image = write_digit(tmp_path / "one.png")
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04 not really a zip")
    assert cli.main(["predict", str(image), "--model", str(broken)]) == 1
    err = capsys.readouterr().err
    assert f"load_model: {broken} is not a readable minicnn model file" in err
    assert cli.main(["predict", str(image), "--model", str(tmp_path / "nope.npz")]) == 1
    assert "no model file at" in capsys.readouterr().err
    small = models.Sequential([layers.Flatten(input_shape=(8, 8, 1)), layers.Dense(2)])
    small.save(tmp_path / "small.npz")
    assert cli.main(["predict", str(image), "--model", str(tmp_path / "small.npz")]) == 1
    assert "predict needs an MNIST-style model: (28, 28, 1)" in capsys.readouterr().err


def test_save_processed_one_file_and_a_folder(model_file, tmp_path, capsys):
    path, model = model_file
    one = write_digit(tmp_path / "one.png")
    zero = write_digit(tmp_path / "zero.png", "zero")
    figure = tmp_path / "view.png"
    assert cli.main(["predict", str(one), "--model", str(path), "--json",
                     "--save-processed", str(figure)]) == 0
    assert json.loads(capsys.readouterr().out)["processed"] == str(figure)
    pixels = read_png(figure)
    assert pixels.shape == (300, 700, 4)
    assert_not_blank(pixels)
    # The left part shows the processed digit: a light bar on black, so dark pixels abound.
    assert (pixels[:, :250, :3].max(axis=2) < 30).mean() > 0.2

    folder = tmp_path / "views"
    folder.mkdir()
    assert cli.main(["predict", str(one), str(zero), "--model", str(path),
                     "--save-processed", str(folder)]) == 0
    assert sorted(os.listdir(folder)) == ["one.processed.png", "zero.processed.png"]
    assert read_png(folder / "zero.processed.png").shape == (300, 700, 4)


def test_save_processed_bad_targets_fail_before_any_work(model_file, tmp_path, capsys):
    path, _ = model_file
    one = write_digit(tmp_path / "one.png")
    zero = write_digit(tmp_path / "zero.png", "zero")
    assert cli.main(["predict", str(one), str(zero), "--model", str(path),
                     "--save-processed", str(tmp_path / "file.png")]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "give an existing folder" in out.err
    assert cli.main(["predict", str(one), "--model", str(path),
                     "--save-processed", str(tmp_path / "no" / "f.png")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_serve_is_a_registered_command_and_reports_a_missing_model(tmp_path, capsys):
    missing = tmp_path / "none.npz"
    assert cli.main(["serve", "--model", str(missing), "--port", "0"]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "python examples/mnist_cnn.py" in err


# --------------------------------------------------------------------------------------------
# Issue 12: no traceback for a user's mistake, a pixel cap, outputs that are not finite
# --------------------------------------------------------------------------------------------
from hardening_fixtures import png_header_only  # noqa: E402


def run_cli(*args, env=None, timeout=300):
    """`python -m minicnn ARGS` in a fresh process -> CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "minicnn", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})})


@pytest.fixture
def huge_model_file(tmp_path):
    """A tutorial model whose weights are finite but 1e30: every output overflows to NaN."""
    minicnn.set_random_seed(5)
    model = tutorial_model()
    model.set_weights([np.full_like(w, 1e30) for w in model.get_weights()])
    path = tmp_path / "huge.npz"
    model.save(path)
    return path


def test_predict_reports_outputs_that_are_not_finite_as_errors(huge_model_file, tmp_path,
                                                               capsys):
    # Before: '"prediction": 0' with NaN probabilities (not even JSON) and exit status 0.
    image = write_digit(tmp_path / "one.png")
    assert cli.main(["predict", str(image), "--model", str(huge_model_file), "--json"]) == 1
    out, err = capsys.readouterr()
    record = json.loads(out, parse_constant=lambda token: pytest.fail(f"not JSON: {token}"))
    assert set(record) == {"image", "error"}
    assert "not finite numbers (NaN or inf)" in record["error"]
    assert err.startswith(f"python -m minicnn predict: error: {image}: the model's outputs are "
                          "not finite")
    assert "Warning" not in err  # NumPy's overflow warnings are not shown: we report it
    assert cli.main(["predict", str(image), "--model", str(huge_model_file)]) == 1
    out, err = capsys.readouterr()
    assert out == "" and "not finite" in err


def test_predict_pixel_cap_is_one_line_and_the_rest_still_run(model_file, tmp_path):
    # Before: 12000 x 12000 took 26 s and 6.5 GB; 20000 x 20000 a DecompressionBombError
    # traceback.
    path, _ = model_file
    big = tmp_path / "big.png"
    bigger = tmp_path / "bigger.png"
    big.write_bytes(png_header_only(12000, 12000))
    bigger.write_bytes(png_header_only(20000, 20000))
    good = write_digit(tmp_path / "one.png")
    result = run_cli("predict", big, bigger, good, "--model", path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = result.stderr.splitlines()
    assert len(errors) == 2, errors
    assert "the image is 12000 x 12000 pixels (144,000,000); the limit is 16,777,216" in errors[0]
    assert "the image has 400,000,000 pixels; the limit is 16,777,216" in errors[1]
    assert result.stdout.startswith(f"{good}: ")


def test_predict_on_a_folder_or_a_device_says_what_it_is(model_file, tmp_path, capsys):
    path, _ = model_file
    assert cli.main(["predict", str(tmp_path), "--model", str(path)]) == 1
    assert "is a folder, not an image file" in capsys.readouterr().err
    if os.path.exists("/dev/zero"):
        assert cli.main(["predict", "/dev/zero", "--model", str(path)]) == 1
        assert "is not a regular file" in capsys.readouterr().err


def test_save_processed_onto_a_read_only_disk_is_one_line(model_file, tmp_path, monkeypatch,
                                                          capsys):
    import errno

    path, _ = model_file
    image = write_digit(tmp_path / "one.png")
    real_open = os.open
    target = tmp_path / "out"
    target.mkdir()

    def read_only(name, flags, *args, **kwargs):
        if str(target) in os.fspath(name) and flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(name))
        return real_open(name, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    status = cli.main(["predict", str(image), "--model", str(path), "--save-processed",
                       str(target / "seen.png")])
    assert status == 1
    err = capsys.readouterr().err
    assert err == (f"python -m minicnn predict: error: plot_digit_probabilities: cannot write "
                   f"{target / 'seen.png'}: the file system is read-only; choose a folder on a "
                   "writable disk.\n")


def test_debug_flag_and_environment_show_the_traceback(tmp_path):
    missing = tmp_path / "absent.npz"
    image = write_digit(tmp_path / "one.png")
    quiet = run_cli("predict", image, "--model", missing)
    assert quiet.returncode == 1 and "Traceback" not in quiet.stderr
    assert quiet.stderr.strip() == f"python -m minicnn predict: error: no model file at {missing}."
    for extra, env in ((["--debug"], None), ([], {"MINICNN_DEBUG": "1"})):
        loud = run_cli("predict", image, "--model", missing, *extra, env=env)
        assert loud.returncode == 1
        assert "Traceback (most recent call last)" in loud.stderr and "CommandError" in loud.stderr


def test_user_error_message_separates_mistakes_from_bugs():
    from minicnn.datasets import IDXFormatError
    from minicnn.models import LossNotFiniteError

    assert cli.user_error_message(cli.CommandError("no model")) == "no model"
    assert cli.user_error_message(ValueError("bad shape")) == "bad shape"
    assert cli.user_error_message(IDXFormatError("f: truncated")) == "f: truncated"
    assert cli.user_error_message(LossNotFiniteError("loss nan")) == "loss nan"
    assert cli.user_error_message(FileNotFoundError(2, "No such file or directory", "x.png")
                                  ) == "x.png: No such file or directory"
    assert cli.user_error_message(MemoryError()).startswith("out of memory")
    for bug in (TypeError("x"), KeyError("k"), AttributeError("a"), AssertionError()):
        assert cli.user_error_message(bug) is None  # bugs keep their traceback


def test_run_with_messages_gives_scripts_the_same_rule(capsys, monkeypatch):
    def main(argv):
        raise FileNotFoundError(f"no data in {argv[0]}")

    assert cli.run_with_messages(main, ["/nowhere"], prog="script.py") == 1
    assert capsys.readouterr().err == "script.py: error: no data in /nowhere\n"
    with pytest.raises(FileNotFoundError):
        cli.run_with_messages(main, ["/nowhere", "--debug"], prog="script.py")

    def buggy(argv):
        raise TypeError("a bug")

    with pytest.raises(TypeError):
        cli.run_with_messages(buggy, [], prog="script.py")
    assert cli.run_with_messages(lambda argv: None, []) == 0


def test_example_offline_prints_its_message_without_a_traceback(tmp_path):
    # Before: a 25-line traceback came before the good message.
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "examples" / "mnist_cnn.py"), "--data-dir",
         str(tmp_path / "data"), "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT),
             "MINICNN_MNIST_MIRRORS": "http://127.0.0.1:9/"})
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("mnist_cnn.py: error: Could not download "
                                    "train-images-idx3-ubyte.gz of MNIST from any mirror.")
    assert "To work offline, put the four files" in result.stderr
