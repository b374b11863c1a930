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

A model that is not one straight line of layers (the CIFAR-shaped ResNet) is a graph: a list
of nodes ``(name, op, inputs, params)`` in topological order, ops ``input`` (shape), ``conv``
(filters, kernel, strides; 'same' padding, glorot_uniform, no bias: a BatchNormalization
follows each), ``bn`` (Keras's momentum 0.99 and epsilon 1e-3), ``relu``, ``add``, ``gap``
(GlobalAveragePooling2D) and ``dense`` (units, activation). `functional_model(api, name)`
builds it with Keras's functional API (``api.Input``, ``api.Model``, ``api.layers``: keras, or
minicnn once it has them); the PyTorch worker reads the nodes itself. Graph models train on
random data of their recipe's shapes (``data``), so they need no download.
Kept free of imports so the timed worker processes load nothing extra.
"""

INPUT_SHAPE = (28, 28, 1)
CIFAR_SHAPE = (32, 32, 3)


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


def _resnet(filters=(16, 32, 64), blocks_per_stage=1, classes=10):
    """A small ResNet for 32x32x3 images (He et al.'s CIFAR design, v1 blocks), as graph nodes.

    Stem: conv 3x3 (filters[0]) + BN + ReLU. Then one stage per entry of `filters`, the first
    at stride 1, the others starting with stride 2; each block is conv 3x3 + BN + ReLU + conv
    3x3 + BN, added to the shortcut (the block's input, or a 1x1 conv + BN where the shape
    changes), then ReLU. Global average pooling, Dense(classes, softmax). Default: 3 stages
    of 1 block with 16/32/64 filters: 9 convolutions, 78,042 trainable weights.
    """
    nodes = [("input", "input", (), {"shape": CIFAR_SHAPE})]

    def add(name, op, inputs, **params):
        nodes.append((name, op, tuple(inputs), params))
        return name

    def conv_bn(name, x, filters, kernel, strides):
        x = add(f"{name}_conv", "conv", [x], filters=filters, kernel=kernel, strides=strides)
        return add(f"{name}_bn", "bn", [x])

    x = add("stem_relu", "relu", [conv_bn("stem", "input", filters[0], 3, 1)])
    channels = filters[0]
    for stage, width in enumerate(filters, start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            name = f"s{stage}b{block}"
            y = add(f"{name}_relu1", "relu", [conv_bn(f"{name}_a", x, width, 3, strides)])
            y = conv_bn(f"{name}_b", y, width, 3, 1)
            shortcut = x
            if strides != 1 or channels != width:
                shortcut = conv_bn(f"{name}_proj", x, width, 1, strides)
            x = add(f"{name}_relu2", "relu", [add(f"{name}_add", "add", [y, shortcut])])
            channels = width
    x = add("gap", "gap", [x])
    add("predictions", "dense", [x], units=classes, activation="softmax")
    return nodes


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
    # The CIFAR-10 example's residual network (issue 11), on random CIFAR-shaped data:
    # 50,000 training and 10,000 test images 32x32x3, labels 0-9. Adam, as Keras's
    # cifar10_resnet example; batch 128, as He et al. trained their CIFAR ResNets.
    "resnet-cifar": (_resnet(), {"batch_size": 128, "loss": "sparse_categorical_crossentropy",
                                 "one_hot": False, "graph": True, "data": "random-cifar",
                                 "input_shape": CIFAR_SHAPE, "train_images": 50000,
                                 "test_images": 10000}),
}


def specs(name):
    """The layer specs of model `name` (KeyError names the known models)."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}")
    return MODELS[name][0]


def recipe(name):
    """{'batch_size', 'loss', 'one_hot'} of model `name` (graph models add 'graph', 'data',
    'input_shape', 'train_images', 'test_images')."""
    specs(name)
    return dict(MODELS[name][1])


def is_graph(name):
    """True when model `name` is a graph (built with the functional API), not a layer list."""
    return bool(recipe(name).get("graph"))


def input_shape(name):
    """The per-sample input shape of model `name`: (28, 28, 1) for the MNIST models."""
    return tuple(recipe(name).get("input_shape", INPUT_SHAPE))


def train_images(name, limit=None):
    """How many training images a run of model `name` sees (60,000 MNIST, or the recipe's)."""
    total = recipe(name).get("train_images", 60000)
    return total if limit is None else min(limit, total)


def needs(name):
    """The Keras layer class names model `name` uses (to check a framework has them)."""
    names = {"conv": "Conv2D", "pool": "MaxPooling2D", "flatten": "Flatten",
             "dropout": "Dropout", "dense": "Dense", "bn": "BatchNormalization",
             "relu": "ReLU", "add": "Add", "gap": "GlobalAveragePooling2D"}
    return sorted({names[spec[1] if is_graph(name) else spec[0]] for spec in specs(name)
                   if not (is_graph(name) and spec[1] == "input")})


def functional_model(api, name="resnet-cifar"):
    """Graph model `name` built with Keras's functional API from `api` (the keras module, or
    a namespace with Input, Model and layers): ``api.Model(inputs, outputs, name=name)``."""
    layers = api.layers
    tensors = {}
    for node, op, inputs, params in specs(name):
        if op == "input":
            tensors[node] = api.Input(shape=params["shape"], name=node)
            continue
        k = params.get("kernel")
        if op == "conv":
            layer = layers.Conv2D(params["filters"], (k, k), strides=params["strides"],
                                  padding="same", use_bias=False, name=node)
        elif op == "bn":
            layer = layers.BatchNormalization(momentum=0.99, epsilon=1e-3, name=node)
        elif op == "relu":
            layer = layers.ReLU(name=node)
        elif op == "add":
            layer = layers.Add(name=node)
        elif op == "gap":
            layer = layers.GlobalAveragePooling2D(name=node)
        elif op == "dense":
            layer = layers.Dense(params["units"], activation=params["activation"], name=node)
        else:
            raise ValueError(f"functional_model: unknown op {op!r} in node {node!r}")
        args = [tensors[i] for i in inputs]
        tensors[node] = layer(args if op == "add" else args[0])
    return api.Model(tensors["input"], tensors[specs(name)[-1][0]], name=name)


def graph_shapes(name):
    """{node: per-sample output shape} of graph model `name` ('same' padding: ceil(H / s))."""
    out = {}
    for node, op, inputs, params in specs(name):
        if op == "input":
            out[node] = tuple(params["shape"])
            continue
        shape = out[inputs[0]]
        if op == "conv":
            s = params["strides"]
            out[node] = (-(-shape[0] // s), -(-shape[1] // s), params["filters"])
        elif op == "gap":
            out[node] = (shape[2],)
        elif op == "dense":
            out[node] = (params["units"],)
        else:  # bn, relu, add keep the shape (add's inputs agree)
            out[node] = shape
    return out


def graph_weight_count(name):
    """(trainable, non-trainable) weights of graph model `name`, counted from the nodes: conv
    kernels k*k*C*F (no bias), BatchNormalization gamma and beta (trainable) and the moving
    mean and variance, Dense kernel and bias."""
    shapes = graph_shapes(name)
    trainable = non_trainable = 0
    for node, op, inputs, params in specs(name):
        if op == "conv":
            k = params["kernel"]
            trainable += k * k * shapes[inputs[0]][2] * params["filters"]
        elif op == "bn":
            trainable += 2 * shapes[node][2]
            non_trainable += 2 * shapes[node][2]
        elif op == "dense":
            trainable += (shapes[inputs[0]][0] + 1) * params["units"]
    return trainable, non_trainable


def keras_layers(layers, name="tutorial"):
    """Layers of model `name` from a Keras-compatible `layers` module, without an input layer."""
    if is_graph(name):
        raise ValueError(f"model {name!r} is a graph, not a list of layers: build it with "
                         "functional_model(api, name)")
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
    if is_graph(name):
        return _graph_training_flops(name)
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


def _graph_training_flops(name):
    """training_flops_per_image for a graph: the same rule, where the layers that read the
    images themselves get no input gradient. resnet-cifar: 74,125,056 FLOPs per image (5.7x the
    MNIST tutorial's)."""
    shapes = graph_shapes(name)
    total = 0
    for node, op, inputs, params in specs(name):
        if op == "conv":
            k = params["kernel"]
            h, w, f = shapes[node]
            forward = 2 * h * w * f * k * k * shapes[inputs[0]][2]
        elif op == "dense":
            forward = 2 * shapes[inputs[0]][0] * params["units"]
        else:
            continue
        total += forward * (2 if inputs[0] == "input" else 3)
    return total
