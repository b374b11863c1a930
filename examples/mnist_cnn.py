"""The Keras MNIST tutorial, step by step, on minicnn.

    python examples/mnist_cnn.py                          # the tutorial: 10 epochs, all of MNIST
    python examples/mnist_cnn.py --epochs 1 --limit 5000  # a quick look
    python -m minicnn train [same options]                # runs this very file (installed
                                                          # with minicnn as minicnn.examples)

The steps, each marked in main() below:
  1. load MNIST (downloaded on first use)   2. scale the pixels by 1/255
  3. reshape to (-1, 28, 28, 1)             4. build the model      5. compile it
  6. fit 10 epochs                          7. evaluate on the test set
  8. predict the test images                9. argmax of the first test image's prediction

Everything is written into --output-dir (default ./mnist_cnn_output):
  mnist_cnn.npz       the trained model: minicnn.models.load_model("mnist_cnn_output/mnist_cnn.npz")
  history.json        per-epoch metrics, test loss and accuracy, timings, versions, seed, arguments
  history.png         learning curves             predictions.png   the first 25 test digits
  confusion_matrix.png  which digit is taken for which   filters.png   the 25 first-layer kernels
  feature_maps.png    what each convolution makes of the first test image
Then `python -m minicnn predict my_digit.png` reads your own handwriting with the saved model.
"""

import argparse
import json
import platform
import secrets
import time
from pathlib import Path

import numba
import numpy as np

import minicnn
from minicnn import callbacks, layers, models, plot
from minicnn.datasets import mnist
from minicnn.saving import atomic_write

# `python -m minicnn predict` looks for the model here by default.
DEFAULT_OUTPUT_DIR = "mnist_cnn_output"
MODEL_FILE = "mnist_cnn.npz"


def main(argv=None, prog=None):
    """Run the tutorial. argv: command-line arguments (default sys.argv[1:]); prog: the
    program name shown in --help."""
    args = parse_args(argv, prog)
    # One seed fixes the initial weights and the shuffling, so a run can be repeated bit for bit.
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    minicnn.set_random_seed(seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    # Step 1: load MNIST: 60,000 training and 10,000 test images, (N, 28, 28) uint8 0..255,
    # and their labels, (N,) uint8 0..9. The first call downloads them (about 11 MB).
    (x_train, y_train), (x_test, y_test) = mnist.load_data(data_dir=args.data_dir)
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]

    # Step 2: scale the pixels by 1/255, from 0..255 to 0..1. (float32 is the model's dtype, so
    # fit, evaluate and predict use these arrays without making converted copies.)
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255

    # Step 3: reshape to (-1, 28, 28, 1): Conv2D takes (N, height, width, channels) and these
    # gray images have one channel.
    x_train = x_train.reshape(-1, 28, 28, 1)
    x_test = x_test.reshape(-1, 28, 28, 1)

    # Step 4: build the model: three convolution + max-pooling stages find strokes, then parts
    # of digits; two dense layers turn them into 10 class probabilities (softmax).
    model = models.Sequential([
        layers.Conv2D(filters=25, kernel_size=(3, 3), activation="relu", input_shape=(28, 28, 1)),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(filters=64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(filters=64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ])

    # Step 5: compile: Adam, cross-entropy on integer labels, and accuracy as the metric.
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.summary()

    # Step 6: fit 10 epochs (--epochs; passes over the training images) in batches of 32.
    timer = EpochTimer()
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=args.validation_split, callbacks=[timer])
    fit_seconds = time.perf_counter() - start

    # Step 7: evaluate on the 10,000 test images the model has never seen.
    test_loss, test_accuracy = model.evaluate(x_test, y_test)
    print(f"Test loss: {test_loss:.4f}")
    print(f"Test accuracy: {test_accuracy:.4f}")

    # Step 8: predict: one row of 10 class probabilities per test image.
    probabilities = model.predict(x_test)

    # Step 9: the predicted digit is the argmax of the row; here for the first test image,
    # whose row prints as the tutorial shows it: array([3.4887790e-09, ...], dtype=float32).
    print("Probabilities for the first test image:")
    print(repr(probabilities[0]))
    print(f"argmax: {np.argmax(probabilities[0])}  (true label: {y_test[0]})")

    # Keep the results: the model, a record of the run, and pictures of it.
    model.save(output_dir / MODEL_FILE)
    write_json(output_dir / "history.json", {
        "history": history.history,
        "test_loss": test_loss,
        "test_accuracy": test_accuracy,
        "seconds_per_epoch": timer.seconds,
        "fit_seconds": fit_seconds,
        "seed": seed,
        "arguments": vars(args),
        "versions": {"minicnn": minicnn.__version__, "numpy": np.__version__,
                     "numba": numba.__version__, "python": platform.python_version()},
        "first_test_image": {"probabilities": probabilities[0].tolist(),
                             "argmax": int(np.argmax(probabilities[0])),
                             "true_label": int(y_test[0])},
    })
    plot.plot_history(history, output_dir / "history.png")
    plot.plot_predictions(x_test[:25], probabilities[:25], y_test[:25],
                          output_dir / "predictions.png")
    plot.plot_confusion_matrix(y_test, probabilities, output_dir / "confusion_matrix.png")
    plot.plot_filters(model, output_dir / "filters.png")
    plot.plot_feature_maps(model, x_test[0], output_dir / "feature_maps.png")
    print(f"Seed {seed} (pass --seed {seed} to repeat this run). Wrote {MODEL_FILE}, "
          f"history.json and 5 figures to {output_dir}/")
    print("Try your own handwriting: python -m minicnn predict my_digit.png")


# --------------------------------------------------------------------------------------------
# Helpers: the options, an epoch timer, and a JSON writer.
# --------------------------------------------------------------------------------------------
def parse_args(argv=None, prog=None):
    """The command-line options -> argparse.Namespace (exits with a message on bad input)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Train the Keras MNIST tutorial's CNN on minicnn and save it, "
                               "with a record of the run and figures.")
    add_training_options(parser, batch_size=32, dataset="MNIST", folder="mnist/",
                         n_train="60,000", output_dir=DEFAULT_OUTPUT_DIR)
    return parser.parse_args(argv)


def add_training_options(parser, batch_size, dataset, folder, n_train, output_dir):
    """The options every example takes (the CIFAR-10 one too): epochs, batch size, seed, data
    and output folders, validation split, limit. dataset/folder/n_train fill the help texts."""
    parser.add_argument("--epochs", type=_int_at_least(1), default=10,
                        help="passes over the training images (default: %(default)s)")
    parser.add_argument("--batch-size", type=_int_at_least(1), default=batch_size,
                        help="images per gradient step (default: %(default)s)")
    parser.add_argument("--seed", type=_int_at_least(0), default=None,
                        help="seed for the initial weights and the shuffling (default: a random "
                             "one, printed and saved in history.json)")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help=f"folder holding {folder}, where {dataset} is downloaded on first "
                             "use (default: $MINICNN_DATA_DIR, else ~/.cache/minicnn)")
    parser.add_argument("--output-dir", metavar="DIR", default=output_dir,
                        help="where the model, history.json and the figures go "
                             "(default: ./%(default)s)")
    parser.add_argument("--validation-split", type=_fraction, default=0.0, metavar="FRACTION",
                        help="fraction of the training images (the last ones) kept apart to "
                             "validate on after each epoch, e.g. 0.1 (default: 0, none)")
    parser.add_argument("--limit", type=_int_at_least(1), default=None, metavar="N",
                        help="train on the first N training images only, for a quick look "
                             f"(default: all {n_train}; the test set stays complete)")


def _int_at_least(minimum):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected a whole number >= {minimum}, got {text!r}")
        return value
    return parse


def _fraction(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"expected a fraction in [0, 1), e.g. 0.1, got {text!r}")
    return value


class EpochTimer(callbacks.Callback):
    """Records the wall-clock seconds of each epoch (training and validation) in `.seconds`.
    The first epoch also holds Numba's one-off compilation when its cache is cold."""

    def on_train_begin(self, logs=None):
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def write_json(path, data):
    """Write `data` as indented JSON, atomically (temporary file + rename)."""
    with atomic_write(path, "w", "write_json") as f:
        json.dump(data, f, indent=2)
        f.write("\n")


if __name__ == "__main__":
    # A user's mistake (no data offline, an unwritable folder...) prints one line, not a
    # traceback; --debug or MINICNN_DEBUG=1 shows the traceback.
    from minicnn.cli import run_with_messages

    raise SystemExit(run_with_messages(main))
