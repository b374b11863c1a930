"""Load a real Keras model's weights into minicnn and compare predictions (needs TensorFlow).

    pip install tensorflow-cpu        # or the `bench` extra
    python benchmarks/check_keras_parity.py [--train-batches 50] [--images 2000]

Builds the tutorial model in Keras, trains it briefly on real MNIST so the weights are not
just the initialisation, copies `keras_model.get_weights()` into the same architecture in
minicnn with `set_weights`, and compares `predict` on the test images: the largest absolute
difference of the probabilities and how many argmax predictions agree. Also runs the reverse
direction (minicnn weights into Keras) and compares the cross-entropy each framework reports.
"""

import argparse
import os
import sys

import numpy as np
from _model import tutorial_layers  # benchmarks/ is sys.path[0] when run as a script

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-batches", type=int, default=50)
    parser.add_argument("--images", type=int, default=2000)
    args = parser.parse_args(argv)

    import keras

    from minicnn import layers, models
    from minicnn.datasets import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_data(verbose=0)
    x_train = (x_train / 255.0).reshape(-1, 28, 28, 1).astype("float32")
    x_test = (x_test[:args.images] / 255.0).reshape(-1, 28, 28, 1).astype("float32")
    y_test = y_test[:args.images]

    keras.utils.set_random_seed(0)
    k_model = keras.Sequential([keras.Input((28, 28, 1)), *tutorial_layers(keras.layers)])
    k_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    n = 32 * args.train_batches
    k_model.fit(x_train[:n], y_train[:n], epochs=1, batch_size=32, verbose=0)

    m_model = models.Sequential(tutorial_layers(layers))
    m_model.build((28, 28, 1))
    m_model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                    metrics=["accuracy"])
    m_model.set_weights(k_model.get_weights())
    p_keras = k_model.predict(x_test, batch_size=32, verbose=0)
    p_mini = m_model.predict(x_test, batch_size=32)
    diff = float(np.abs(p_keras - p_mini).max())
    agree = int(np.sum(p_keras.argmax(1) == p_mini.argmax(1)))
    k_loss, k_acc = k_model.evaluate(x_test, y_test, verbose=0)
    m_loss, m_acc = m_model.evaluate(x_test, y_test, verbose=0)
    print(f"Keras {keras.__version__} weights -> minicnn, {len(x_test)} test images:")
    print(f"  max |p_keras - p_minicnn| = {diff:.2e};  argmax agrees on {agree}/{len(x_test)}")
    print(f"  loss  keras {k_loss:.6f}  minicnn {m_loss:.6f}  (diff {abs(k_loss - m_loss):.1e})")
    print(f"  acc   keras {k_acc:.4f}    minicnn {m_acc:.4f}")

    m_model.fit(x_train[n:2 * n], y_train[n:2 * n], epochs=1, verbose=0)
    k_model.set_weights(m_model.get_weights())
    back = float(np.abs(k_model.predict(x_test, batch_size=32, verbose=0)
                        - m_model.predict(x_test, batch_size=32)).max())
    print(f"minicnn weights -> Keras: max |p_keras - p_minicnn| = {back:.2e}")
    ok = diff < 1e-4 and back < 1e-4 and agree >= len(x_test) - 1
    print("PARITY OK" if ok else "PARITY FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
