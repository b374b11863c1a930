"""A small residual network on CIFAR-10, built with the functional API, step by step.

    python examples/cifar10_resnet.py                          # 10 epochs, all 50,000 images
    python examples/cifar10_resnet.py --epochs 1 --limit 2000  # a quick look (a few minutes)

The steps, each marked in main() below:
  1. load CIFAR-10 (downloaded on first use, 170 MB)   2. scale the pixels by 1/255
  3. build the model with keras.Input, layers called on tensors, keras.Model(inputs, outputs):
     a stem convolution, three residual blocks (Conv2D + BatchNormalization + ReLU twice, plus
     the block's input added back by layers.Add(); a 1x1 convolution projects the input where
     the channels change), GlobalAveragePooling2D and Dense(10, softmax)
  4. compile it      5. fit      6. evaluate on the test set      7. predict the test images

Everything is written into --output-dir (default ./cifar10_resnet_output):
  cifar10_resnet.keras  the trained model: minicnn.models.load_model(".../cifar10_resnet.keras")
  history.json        per-epoch metrics, test loss and accuracy, timings, versions, seed, arguments
  history.png         learning curves             predictions.png   the first 25 test images
  confusion_matrix.png  which class is taken for which   filters.png   the first-layer kernels
  feature_maps.png    what each convolution makes of the first test image
"""

import argparse
import platform
import secrets
import time
from pathlib import Path

import numba
import numpy as np

# The command-line checks, the epoch timer and the atomic JSON writer are the MNIST example's.
from minicnn.examples.mnist_cnn import EpochTimer, add_training_options, write_json

import minicnn as keras
from minicnn import layers, plot
from minicnn.datasets import cifar10

DEFAULT_OUTPUT_DIR = "cifar10_resnet_output"
MODEL_FILE = "cifar10_resnet.keras"
# BatchNormalization's moving statistics, used at test time, follow the last ~10 batches
# (Keras's default 0.99: ~100). A quick --limit run has only a few dozen steps, after which
# statistics at 0.99 would still be largely their initial values (mean 0, variance 1).
BN_MOMENTUM = 0.9


def conv_bn_relu(x, filters, strides=1, name=None):
    """Conv2D 3x3 (no bias: BatchNormalization's beta does its job) + BatchNormalization + ReLU."""
    x = layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def residual_block(x, filters, strides=1, name="block"):
    """Two 3x3 convolutions whose result is added to the block's input (He et al., 2016).

    Where the block changes the number of channels or the image size (strides 2), the input is
    projected by a 1x1 convolution so the two tensors Add() meets have the same shape."""
    shortcut = x
    y = conv_bn_relu(x, filters, strides, name=f"{name}_a")
    y = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_b_conv")(y)
    y = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_b_bn")(y)
    if strides != 1 or shortcut.shape[-1] != filters:
        shortcut = layers.Conv2D(filters, 1, strides=strides, use_bias=False,
                                 name=f"{name}_proj_conv")(shortcut)
        shortcut = layers.BatchNormalization(momentum=BN_MOMENTUM,
                                             name=f"{name}_proj_bn")(shortcut)
    # The ReLU comes after the sum, so the identity path carries the input through unchanged.
    y = layers.Add(name=f"{name}_add")([shortcut, y])
    return layers.ReLU(name=f"{name}_out")(y)


def build_model(num_classes=10):
    """The residual network: 32x32x3 -> stem 16 -> blocks 16, 32 (/2), 32 -> softmax."""
    inputs = keras.Input(shape=(32, 32, 3), name="image")
    x = conv_bn_relu(inputs, 16, name="stem")
    x = residual_block(x, 16, name="block1")
    x = residual_block(x, 32, strides=2, name="block2")  # 16x16, channels 16 -> 32: projection
    x = residual_block(x, 32, name="block3")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classes")(x)
    return keras.Model(inputs, outputs, name="cifar10_resnet")


def main(argv=None, prog=None):
    """Run the example. argv: command-line arguments (default sys.argv[1:]); prog: the program
    name shown in --help."""
    args = parse_args(argv, prog)
    # One seed fixes the initial weights and the shuffling, so a run can be repeated bit for bit.
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    keras.set_random_seed(seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)

    # Step 1: load CIFAR-10, as keras.datasets.cifar10.load_data(): 50,000 training and 10,000
    # test images, (N, 32, 32, 3) uint8 0..255, and labels (N, 1) uint8 0..9 (class names in
    # cifar10.CLASS_NAMES). The first call downloads the archive (170 MB).
    (x_train, y_train), (x_test, y_test) = keras.datasets.cifar10.load_data(data_dir=args.data_dir)
    if args.limit is not None:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]

    # Step 2: scale the pixels by 1/255, to 0..1 in float32 (the model's dtype, so fit and
    # predict use these arrays without making converted copies). The images are already
    # (N, height, width, channels), as Conv2D takes them.
    x_train = x_train.astype("float32") / 255
    x_test = x_test.astype("float32") / 255

    # Step 3: build the model with the functional API (see build_model above).
    model = build_model()
    model.summary()

    # Step 4: compile: Adam, cross-entropy on the integer labels, and accuracy.
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    # Step 5: fit (--epochs passes over the training images, in batches of --batch-size).
    timer = EpochTimer()
    start = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        validation_split=args.validation_split, callbacks=[timer])
    fit_seconds = time.perf_counter() - start

    # Step 6: evaluate on the test images the model has never seen.
    test_loss, test_accuracy = model.evaluate(x_test, y_test)
    print(f"Test loss: {test_loss:.4f}")
    print(f"Test accuracy: {test_accuracy:.4f}")

    # Step 7: predict: one row of 10 class probabilities per test image; the argmax is the
    # predicted class.
    probabilities = model.predict(x_test)
    labels = y_test[:, 0]  # (N, 1) -> (N,) for the figures
    first = int(np.argmax(probabilities[0]))
    print(f"First test image: predicted {cifar10.CLASS_NAMES[first]}, "
          f"true {cifar10.CLASS_NAMES[labels[0]]}")

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
        "versions": {"minicnn": keras.__version__, "numpy": np.__version__,
                     "numba": numba.__version__, "python": platform.python_version()},
        "first_test_image": {"probabilities": probabilities[0].tolist(), "argmax": first,
                             "true_label": int(labels[0])},
    })
    plot.plot_history(history, output_dir / "history.png")
    plot.plot_predictions(x_test[:25], probabilities[:25], labels[:25],
                          output_dir / "predictions.png", class_names=cifar10.CLASS_NAMES)
    plot.plot_confusion_matrix(labels, probabilities, output_dir / "confusion_matrix.png")
    plot.plot_filters(model, output_dir / "filters.png")
    plot.plot_feature_maps(model, x_test[0], output_dir / "feature_maps.png")
    print(f"Seed {seed} (pass --seed {seed} to repeat this run). Wrote {MODEL_FILE}, "
          f"history.json and 5 figures to {output_dir}/")


def parse_args(argv=None, prog=None):
    """The command-line options -> argparse.Namespace (exits with a message on bad input)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="Train a small residual network on CIFAR-10 with minicnn and "
                               "save it, with a record of the run and figures.")
    add_training_options(parser, batch_size=64, dataset="CIFAR-10", folder="cifar-10/",
                         n_train="50,000", output_dir=DEFAULT_OUTPUT_DIR)
    return parser.parse_args(argv)


if __name__ == "__main__":
    # A user's mistake (no data offline, an unwritable folder...) prints one line, not a
    # traceback; --debug or MINICNN_DEBUG=1 shows the traceback.
    from minicnn.cli import run_with_messages

    raise SystemExit(run_with_messages(main))
