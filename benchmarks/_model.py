"""The benchmarked models, written once for every benchmark script and framework.

A model is a list of layer specs (plain tuples), read by one small builder per framework:

    ("conv", filters, kernel, activation)   Conv2D, stride 1, 'valid', glorot_uniform, zero bias
    ("pool", size)                          MaxPooling2D(size), stride = size
    ("flatten",)
    ("dropout", rate)
    ("dense", units, activation)            glorot_uniform, zero bias

`keras_layers(layers, name)` builds Keras-compatible layers (keras.layers or minicnn.layers);
the list has no input layer: Keras prepends keras.Input((28, 28, 1)), minicnn calls
model.build((28, 28, 1)). The PyTorch and JAX workers read the specs themselves.
`training_flops_per_image` counts the work of one training step per image from the same specs.
Kept free of imports so the timed worker processes load nothing extra.
"""

INPUT_SHAPE = (28, 28, 1)


def _tutorial(width=1):
    return [
        ("conv", 25 * width, 3, "relu"),
        ("pool", 2),
        ("conv", 64 * width, 3, "relu"),
        ("pool", 2),
        ("conv", 64 * width, 3, "relu"),
        ("pool", 2),
        ("flatten",),
        ("dense", 64 * width, "relu"),
        ("dense", 10, "softmax"),
    ]


# name -> (layer specs, recipe). The recipe is what the model's own tutorial trains it with.
MODELS = {
    # The Keras MNIST tutorial this project follows.
    "tutorial": (_tutorial(1), {"batch_size": 32, "loss": "sparse_categorical_crossentropy",
                                "one_hot": False}),
    # The same with every hidden width doubled (filters and dense units x2; output stays 10).
    "tutorial-wide": (_tutorial(2), {"batch_size": 32,
                                     "loss": "sparse_categorical_crossentropy",
                                     "one_hot": False}),
    # keras.io's "Simple MNIST convnet" (examples/vision/mnist_convnet.py).
    "convnet": ([
        ("conv", 32, 3, "relu"),
        ("pool", 2),
        ("conv", 64, 3, "relu"),
        ("pool", 2),
        ("flatten",),
        ("dropout", 0.5),
        ("dense", 10, "softmax"),
    ], {"batch_size": 128, "loss": "categorical_crossentropy", "one_hot": True}),
}


def specs(name):
    """The layer specs of model `name` (KeyError names the known models)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name][0]


def recipe(name):
    """{'batch_size', 'loss', 'one_hot'} of model `name`."""
    specs(name)
    return dict(MODELS[name][1])


def needs(name):
    """The Keras layer class names model `name` uses (to check a framework has them)."""
    names = {"conv": "Conv2D", "pool": "MaxPooling2D", "flatten": "Flatten",
             "dropout": "Dropout", "dense": "Dense"}
    return sorted({names[spec[0]] for spec in specs(name)})


def keras_layers(layers, name="tutorial"):
    """Layers of model `name` from a Keras-compatible `layers` module, without an input layer."""
    built = []
    for spec in specs(name):
        kind = spec[0]
        if kind == "conv":
            built.append(layers.Conv2D(filters=spec[1], kernel_size=(spec[2], spec[2]),
                                       activation=spec[3]))
        elif kind == "pool":
            built.append(layers.MaxPooling2D((spec[1], spec[1])))
        elif kind == "flatten":
            built.append(layers.Flatten())
        elif kind == "dropout":
            built.append(layers.Dropout(spec[1]))
        else:
            built.append(layers.Dense(spec[1], activation=spec[2]))
    return built


def tutorial_layers(layers):
    """Conv 25 3x3 relu, pool, conv 64 3x3 relu, pool, conv 64 3x3 relu, pool, flatten,
    dense 64 relu, dense 10 softmax."""
    return keras_layers(layers, "tutorial")


def shapes(name, input_shape=INPUT_SHAPE):
    """[(spec, input shape, output shape)] per layer of model `name`, per sample."""
    return shapes_of(specs(name), input_shape)


def shapes_of(layer_specs, input_shape=INPUT_SHAPE):
    """[(spec, input shape, output shape)] per layer spec, per sample (no batch axis)."""
    out, shape = [], tuple(input_shape)
    for spec in layer_specs:
        kind = spec[0]
        if kind == "conv":
            k = spec[2]
            new = (shape[0] - k + 1, shape[1] - k + 1, spec[1])
        elif kind == "pool":
            p = spec[1]
            new = (shape[0] // p, shape[1] // p, shape[2])
        elif kind == "flatten":
            size = 1
            for s in shape:
                size *= s
            new = (size,)
        elif kind == "dropout":
            new = shape
        else:
            new = (spec[1],)
        out.append((spec, shape, new))
        shape = new
    return out


def training_flops_per_image(name, input_shape=INPUT_SHAPE):
    """FLOPs of one training step per image: convolutions and dense layers only.

    A multiply-add counts 2. Each conv and dense layer costs its forward product once, its
    weight gradient once more, and its input gradient once more except for the first layer
    (no framework computes the gradient of the images). Pooling, activations, the loss and
    the optimizer are left out (they are a few percent and no FMA work). Tutorial model:
    13,081,872 FLOPs per image, 418.6 MFLOP per step of 32.
    """
    total = 0
    first = True
    for spec, shape_in, shape_out in shapes(name, input_shape):
        if spec[0] == "conv":
            k = spec[2]
            forward = 2 * shape_out[0] * shape_out[1] * shape_out[2] * k * k * shape_in[2]
        elif spec[0] == "dense":
            forward = 2 * shape_in[0] * shape_out[0]
        else:
            continue
        total += forward * (2 if first else 3)
        first = False
    return total
