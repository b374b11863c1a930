"""The Keras MNIST tutorial's layers, written once for every benchmark script.

`layers` is a Keras-compatible layers module (keras.layers or minicnn.layers); the list has no
input layer: Keras prepends keras.Input((28, 28, 1)), minicnn calls model.build((28, 28, 1)).
Kept free of imports so the timed worker processes load nothing extra.
"""


def tutorial_layers(layers):
    """Conv 25 3x3 relu, pool, conv 64 3x3 relu, pool, conv 64 3x3 relu, pool, flatten,
    dense 64 relu, dense 10 softmax."""
    return [
        layers.Conv2D(filters=25, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(filters=64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Conv2D(filters=64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D((2, 2)),
        layers.Flatten(),
        layers.Dense(64, activation="relu"),
        layers.Dense(10, activation="softmax"),
    ]
