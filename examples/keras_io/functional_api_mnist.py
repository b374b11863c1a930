"""keras.io's "The Functional API" guide, its MNIST part (guides/functional_api.py by
fchollet, Keras 3 version, Apache License 2.0: https://keras.io/guides/functional_api/), run on
minicnn.

The code below is the guide's code from "Setup" to "Save and serialize", with only its import
lines changed (``import keras`` and ``from keras import layers``); its prose is left out. Also
left out: the setup's ``import numpy as np`` and ``from keras import ops``, which this part
never uses. The two ``keras.utils.plot_model(...)`` calls are the guide's: Keras draws the graph
with pydot and Graphviz, minicnn with matplotlib (one box per layer, arrows along the edges).
A bare expression is a cell whose value the guide displays. Published result: about 96 % test
accuracy after 2 epochs. tests/test_keras_io_examples.py runs this file on the full MNIST (the
guide's reshapes name 60000 and 10000 images); run it as it is:

    python examples/keras_io/functional_api_mnist.py
    # writes my_first_model.png, my_first_model_with_shape_info.png and my_model.keras here
"""

import minicnn as keras  # was: import keras
from minicnn import layers  # was: from keras import layers

inputs = keras.Input(shape=(784,))

# Just for demonstration purposes.
img_inputs = keras.Input(shape=(32, 32, 3))

inputs.shape

inputs.dtype

dense = layers.Dense(64, activation="relu")
x = dense(inputs)

x = layers.Dense(64, activation="relu")(x)
outputs = layers.Dense(10)(x)

model = keras.Model(inputs=inputs, outputs=outputs, name="mnist_model")

model.summary()

keras.utils.plot_model(model, "my_first_model.png")

keras.utils.plot_model(model, "my_first_model_with_shape_info.png", show_shapes=True)

(x_train, y_train), (x_test, y_test) = keras.datasets.mnist.load_data()

x_train = x_train.reshape(60000, 784).astype("float32") / 255
x_test = x_test.reshape(10000, 784).astype("float32") / 255

model.compile(
    loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    optimizer=keras.optimizers.RMSprop(),
    metrics=[keras.metrics.SparseCategoricalAccuracy()],
)

history = model.fit(x_train, y_train, batch_size=64, epochs=2, validation_split=0.2)

test_scores = model.evaluate(x_test, y_test, verbose=2)
print("Test loss:", test_scores[0])
print("Test accuracy:", test_scores[1])

model.save("my_model.keras")
del model
# Recreate the exact same model purely from the file:
model = keras.models.load_model("my_model.keras")
