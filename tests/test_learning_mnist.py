"""The tutorial model really learns: one epoch on the first 5,000 real MNIST training images
reaches at least 85 % on the first 1,000 test images (Keras: 86-90 % over five seeds).

Measured on minicnn over seeds 0-19: mean 87.8 %, range 83.6-89.6 %; training is deterministic
per seed, and the three seeds used here gave 86.8 / 86.6 / 87.0 %.
"""

import numpy as np
import pytest
from test_models import tutorial_model

import minicnn
from minicnn.datasets import mnist


@pytest.fixture(scope="module")
def tutorial_data():
    from conftest import mnist_data_dir

    (x_train, y_train), (x_test, y_test) = mnist.load_data(data_dir=mnist_data_dir(), verbose=0)
    # The tutorial's preprocessing: scale by 1/255, reshape to (-1, 28, 28, 1).
    x_train = (x_train[:5000] / 255.0).reshape(-1, 28, 28, 1)
    x_test = (x_test[:1000] / 255.0).reshape(-1, 28, 28, 1)
    return x_train, y_train[:5000], x_test, y_test[:1000]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_one_epoch_on_5000_images_reaches_85_percent(tutorial_data, seed):
    x_train, y_train, x_test, y_test = tutorial_data
    minicnn.set_random_seed(seed)
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    history = model.fit(x_train, y_train, epochs=1, verbose=0)
    loss, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.85, (seed, loss, accuracy)
    assert history.history["loss"][0] > loss  # it kept improving over the epoch
    predictions = model.predict(x_test[:10]).argmax(axis=1)
    assert np.mean(predictions == y_test[:10]) >= 0.7
