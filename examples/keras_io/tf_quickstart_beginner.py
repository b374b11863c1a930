"""TensorFlow's "TensorFlow 2 quickstart for beginners" (site/en/tutorials/quickstart/
beginner.ipynb in tensorflow/docs, Apache License 2.0:
https://www.tensorflow.org/tutorials/quickstart/beginner), run on minicnn.

The code cells of the published notebook, in order, with only the import line changed
(``import tensorflow as tf``); the prose is left out. A bare expression is a cell whose value
the notebook displays. Published result: about 98 % test accuracy after 5 epochs.
tests/test_keras_io_examples.py runs this file on a subset of MNIST; run it as it is for the
full data set:

    python examples/keras_io/tf_quickstart_beginner.py
"""

import minicnn as tf  # was: import tensorflow as tf
print("TensorFlow version:", tf.__version__)

mnist = tf.keras.datasets.mnist

(x_train, y_train), (x_test, y_test) = mnist.load_data()
x_train, x_test = x_train / 255.0, x_test / 255.0

model = tf.keras.models.Sequential([
  tf.keras.layers.Flatten(input_shape=(28, 28)),
  tf.keras.layers.Dense(128, activation='relu'),
  tf.keras.layers.Dropout(0.2),
  tf.keras.layers.Dense(10)
])

predictions = model(x_train[:1]).numpy()
print(predictions)

tf.nn.softmax(predictions).numpy()

loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

loss_fn(y_train[:1], predictions).numpy()

model.compile(optimizer='adam',
              loss=loss_fn,
              metrics=['accuracy'])

model.fit(x_train, y_train, epochs=5)

model.evaluate(x_test,  y_test, verbose=2)

probability_model = tf.keras.Sequential([
  model,
  tf.keras.layers.Softmax()
])

probability_model(x_test[:5])
