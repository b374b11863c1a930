"""Keras 3's `.keras` model files, written and read without Keras.

    model.save("m.keras")                    # keras.models.load_model("m.keras") opens it
    model = minicnn.models.load_model("m.keras")   # also files that Keras wrote

A `.keras` file is a zip archive (members stored, not compressed) of three files:

    metadata.json     {"keras_version": ..., "date_saved": ...}
    config.json       the model as Keras serialises it: {"module": "keras", "class_name":
                      "Sequential", "config": {"name", "layers": [InputLayer, Conv2D, ...],
                      "build_input_shape"}, "build_config", "compile_config"}
    model.weights.h5  HDF5 (h5py): layers/<key>/vars/<i> for weight i of each layer, and
                      optimizer/vars/<i> for the optimizer's variables

A layer's <key> is its class name in snake case, numbered within the model in order
(conv2d, conv2d_1, max_pooling2d, dense, dense_1, ...), never its `name`: Keras addresses
weights by position so automatic names may differ between processes. The optimizer's
variables are [iterations, learning_rate] followed, for each trainable weight in model order,
by its slots (Adam: momentum, velocity; SGD with momentum: momentum). So a `.keras` file keeps
the architecture, the weights, the compile settings and the optimizer state, as minicnn's
`.npz` does, and training continues where it stopped in either framework.

Adding a layer (see LAYERS below): one `LayerFormat` line in the table, naming the Keras
class, the config keys both frameworks spell the same way, the Keras-only keys minicnn
supports at one value only, and a function giving the layer's weights in Keras's order with
their shapes. A config key minicnn has but the entry does not list makes saving fail, so a
new option is never dropped silently.

Reading trusts nothing in the file: no pickle, no code, no links out of the HDF5 file; every
dataset is checked against the shape the architecture needs before it is read, and the whole
architecture may not need more weight bytes than the archive could hold (see _MAX_EXPANSION),
so a small hostile file cannot make minicnn allocate gigabytes.
"""

from __future__ import annotations

import datetime
import io
import json
import math
import re
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

CONFIG_FILE = "config.json"
METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"
# The Keras release whose files this module was checked against (written into metadata.json).
KERAS_VERSION = "3.15.1"

# Bounds for reading: JSON members, and the bytes the weights may need, relative to the size of
# the archive on disk (Keras stores members uncompressed; HDF5 compression rarely beats 64x on
# trained weights). Everything below the floor is always allowed.
_MAX_JSON_BYTES = 64 << 20
_MAX_EXPANSION = 64
_FLOOR_BYTES = 64 << 20


def is_keras_path(path) -> bool:
    """True for a file name ending in .keras (the suffix Keras requires)."""
    return Path(path).suffix.lower() == ".keras"


# --------------------------------------------------------------------------------------------
# The per-layer table
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LayerFormat:
    """How one minicnn layer class appears in a .keras file.

    keras_class / minicnn_class: the class names in Keras and in minicnn.layers.
    options: config keys with the same meaning in both (values translated by _VALUES where
        the JSON forms differ: activations, initializers).
    keras_only: Keras config keys that minicnn supports at this one value only; written so,
        and a file holding another value is refused, naming the key.
    weights(layer, input_shape) -> {minicnn parameter name: shape} in Keras's order
        (vars/0, vars/1, ...), computed before the layer is built (input_shape: per sample).
    """

    keras_class: str
    minicnn_class: str
    options: tuple[str, ...] = ()
    keras_only: dict = field(default_factory=dict)
    weights: Callable[[object, tuple], dict] = lambda layer, input_shape: {}


_NO_REGULARIZERS = {"activity_regularizer": None, "kernel_constraint": None,
                    "bias_constraint": None}
_CHANNELS_LAST = {"data_format": "channels_last"}
_AFFINE = ("activation", "use_bias", "kernel_initializer", "bias_initializer",
           "kernel_regularizer", "bias_regularizer")


def _kernel_and_bias(kernel_shape, units, layer):
    shapes = {"kernel": kernel_shape}
    if layer.use_bias:
        shapes["bias"] = (units,)
    return shapes


_POOLING = ("pool_size", "strides", "padding")
_BATCH_NORM_INITIALIZERS = ("beta_initializer", "gamma_initializer", "moving_mean_initializer",
                            "moving_variance_initializer")


def _batch_norm_weights(layer, shape):
    features = (shape[layer.axis],)
    names = [*(["gamma"] if layer.scale else []), *(["beta"] if layer.center else []),
             "moving_mean", "moving_variance"]
    return {name: features for name in names}


LAYERS = [
    LayerFormat("Conv2D", "Conv2D", ("filters", "kernel_size", "strides", "padding", *_AFFINE),
                {**_CHANNELS_LAST, "dilation_rate": [1, 1], "groups": 1, **_NO_REGULARIZERS},
                lambda layer, shape: _kernel_and_bias(
                    (*layer.kernel_size, shape[-1], layer.filters), layer.filters, layer)),
    LayerFormat("Dense", "Dense", ("units", *_AFFINE), dict(_NO_REGULARIZERS),
                lambda layer, shape: _kernel_and_bias((shape[-1], layer.units), layer.units,
                                                      layer)),
    LayerFormat("MaxPooling2D", "MaxPooling2D", _POOLING, dict(_CHANNELS_LAST)),
    LayerFormat("AveragePooling2D", "AveragePooling2D", _POOLING, dict(_CHANNELS_LAST)),
    LayerFormat("GlobalAveragePooling2D", "GlobalAveragePooling2D", ("keepdims",),
                dict(_CHANNELS_LAST)),
    LayerFormat("GlobalMaxPooling2D", "GlobalMaxPooling2D", ("keepdims",), dict(_CHANNELS_LAST)),
    LayerFormat("Flatten", "Flatten", (), dict(_CHANNELS_LAST)),
    LayerFormat("Reshape", "Reshape", ("target_shape",)),
    LayerFormat("Activation", "Activation", ("activation",)),
    LayerFormat("ReLU", "ReLU", ("max_value", "negative_slope", "threshold")),
    LayerFormat("LeakyReLU", "LeakyReLU", ("negative_slope",)),
    LayerFormat("Softmax", "Softmax", ("axis",)),
    LayerFormat("BatchNormalization", "BatchNormalization",
                ("axis", "momentum", "epsilon", "center", "scale", *_BATCH_NORM_INITIALIZERS),
                {"beta_regularizer": None, "gamma_regularizer": None, "beta_constraint": None,
                 "gamma_constraint": None, "synchronized": False, "renorm": False,
                 "renorm_clipping": None, "renorm_momentum": 0.99},
                _batch_norm_weights),
    LayerFormat("Dropout", "Dropout", ("rate", "noise_shape", "seed")),
    LayerFormat("Rescaling", "Rescaling", ("scale", "offset")),
    LayerFormat("Add", "Add"),
    LayerFormat("Subtract", "Subtract"),
    LayerFormat("Multiply", "Multiply"),
    LayerFormat("Average", "Average"),
    LayerFormat("Maximum", "Maximum"),
    LayerFormat("Concatenate", "Concatenate", ("axis",)),
]
_BY_MINICNN = {entry.minicnn_class: entry for entry in LAYERS}
_BY_KERAS = {entry.keras_class: entry for entry in LAYERS}
# Config keys every layer has, handled for all of them.
_COMMON = ("name", "trainable", "dtype")


def keras_weight_key(class_name: str) -> str:
    """Keras's snake case of a class name, the base of its weight path: 'MaxPooling2D' ->
    'max_pooling2d', 'ReLU' -> 're_lu' (keras.src.utils.naming.to_snake_case's rule)."""
    name = re.sub(r"\W+", "", class_name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _weight_groups(class_names):
    """layers/<key> for each layer in order, numbered per class as Keras numbers them."""
    used, groups = {}, []
    for class_name in class_names:
        base = keras_weight_key(class_name)
        count = used.get(base)
        used[base] = 0 if count is None else count + 1
        groups.append(f"layers/{base}" if count is None else f"layers/{base}_{count + 1}")
    return groups


# --------------------------------------------------------------------------------------------
# Values whose JSON form differs: activations, initializers, regularizers
# --------------------------------------------------------------------------------------------
def _initializer_to_keras(value):
    """minicnn's config form (a name, or Keras's dict for non-default settings) -> Keras's
    dict {'module', 'class_name', 'config', 'registered_name'}; the classes and config keys
    are Keras's own (minicnn/initializers.py)."""
    from . import initializers
    initializer = initializers.deserialize(value)
    return {"module": initializers.MODULE, "class_name": type(initializer).__name__,
            "config": initializer.get_config(), "registered_name": None}


def _initializer_from_keras(value, key, reader):
    from . import initializers
    try:
        return initializers.serialize(initializers.deserialize(value, key))
    except (ValueError, TypeError) as exc:
        problem = str(exc)
    # The weights come from the file, so the initializer only matters if the layer is
    # rebuilt; keep Keras's default for it and say so.
    default = {"bias_initializer": "zeros", "beta_initializer": "zeros",
               "moving_mean_initializer": "zeros", "gamma_initializer": "ones",
               "moving_variance_initializer": "ones"}.get(key, "glorot_uniform")
    reader.warn(f"{problem} Using {default!r}; it only matters if the layer's weights are "
                "re-initialised.")
    return default


def _regularizer_to_keras(value):
    from . import regularizers
    return regularizers.serialize(regularizers.deserialize(value))


def _regularizer_from_keras(value, key, reader):
    from . import regularizers
    # Unlike an initializer, a regularizer changes training: one minicnn lacks is refused.
    try:
        return regularizers.serialize(regularizers.deserialize(value, key))
    except (ValueError, TypeError) as exc:
        reader.refuse(f"{exc}")


def _activation_from_keras(value, key, reader):
    from . import activations
    if not isinstance(value, str):
        reader.refuse(f"uses the activation {value!r}, a serialised object; minicnn reads "
                      f"activations by name ({', '.join(activations.names())}).")
    try:
        return activations.serialize(activations.get(value))
    except ValueError as exc:
        reader.refuse(str(exc))


# key -> (minicnn value -> Keras value, (Keras value, key, reader) -> minicnn value)
_VALUES = {
    **{key: (_initializer_to_keras, _initializer_from_keras)
       for key in ("kernel_initializer", "bias_initializer", *_BATCH_NORM_INITIALIZERS)},
    "kernel_regularizer": (_regularizer_to_keras, _regularizer_from_keras),
    "bias_regularizer": (_regularizer_to_keras, _regularizer_from_keras),
    "activation": (lambda name: name, _activation_from_keras),
}


def _same_value(found, wanted):
    """Keras writes [1, 1] where 1 means the same; None data_format means channels_last."""
    if found == wanted:
        return True
    if isinstance(wanted, list) and isinstance(found, (int, float)) and not isinstance(
            found, bool):
        return all(found == w for w in wanted)
    return wanted == "channels_last" and found is None


# --------------------------------------------------------------------------------------------
# Optimizers and losses
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OptimizerFormat:
    """An optimizer's Keras form: class name, shared options (besides the common ones every
    optimizer has, _OPTIMIZER_COMMON), Keras-only keys at the one value minicnn supports, keys
    that do not matter under those values, and the order of its variables.

    slot_major: Keras creates each kind of slot for all weights in turn (RMSprop: every
    velocity, then every momentum, ...); otherwise the slots of one weight come together
    (Adam: momentum and velocity of the first weight, then of the second, ...).
    """

    keras_class: str
    options: tuple[str, ...]
    keras_only: dict
    ignored: tuple[str, ...] = ("name", "ema_momentum", "ema_overwrite_frequency")
    slot_major: bool = False


_OPTIMIZER_COMMON = ("learning_rate", "weight_decay", "clipnorm", "global_clipnorm",
                     "clipvalue")
_PLAIN_OPTIMIZER = {"use_ema": False, "loss_scale_factor": None,
                    "gradient_accumulation_steps": None}
_ADAM = ("beta_1", "beta_2", "epsilon")
OPTIMIZERS = {
    "adam": OptimizerFormat("Adam", _ADAM, {**_PLAIN_OPTIMIZER, "amsgrad": False}),
    "adamw": OptimizerFormat("AdamW", _ADAM, {**_PLAIN_OPTIMIZER, "amsgrad": False}),
    "adagrad": OptimizerFormat("Adagrad", ("initial_accumulator_value", "epsilon"),
                               _PLAIN_OPTIMIZER),
    "rmsprop": OptimizerFormat("RMSprop", ("rho", "momentum", "epsilon", "centered"),
                               _PLAIN_OPTIMIZER, slot_major=True),
    "sgd": OptimizerFormat("SGD", ("momentum", "nesterov"), _PLAIN_OPTIMIZER),
}
# minicnn loss class -> the Keras function name a default-configured instance is written as
# (Keras's compile_config holds such a string when compile got one). Other settings are
# written as the Keras loss object: same class name, same config keys (minicnn/losses.py).
LOSSES = {"SparseCategoricalCrossentropy": "sparse_categorical_crossentropy",
          "CategoricalCrossentropy": "categorical_crossentropy",
          "BinaryCrossentropy": "binary_crossentropy",
          "MeanSquaredError": "mean_squared_error",
          "MeanAbsoluteError": "mean_absolute_error",
          "Huber": "huber"}
# Keys of Keras configs that carry nothing minicnn needs.
_IGNORED_OBJECT_KEYS = ("dtype", "fn")


class _CompileUnsupported(Exception):
    """The compile settings cannot be reproduced; the model loads uncompiled."""


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------
def _dtype_policy(dtype):
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": dtype},
            "registered_name": None}


def _keras_layer_config(layer, where):
    entry = _BY_MINICNN.get(type(layer).__name__)
    if entry is None:
        raise ValueError(
            f"{where}: cannot write {layer.where} to a .keras file: minicnn/keras_format.py "
            f"has no Keras form for {type(layer).__name__} (it knows "
            f"{', '.join(_BY_MINICNN)}). Save as .npz instead, or add a LayerFormat line.")
    if "/" in layer.name:
        raise ValueError(f"{where}: {layer.where}: Keras layer names cannot contain '/'; "
                         "rename the layer.")
    config = layer.get_config()
    unknown = set(config) - set(entry.options) - set(_COMMON) - {"input_shape"}
    if unknown:
        raise ValueError(f"{where}: {layer.where} has options {sorted(unknown)} that "
                         "minicnn/keras_format.py does not translate; add them to its "
                         f"LayerFormat entry for {entry.minicnn_class}.")
    keras_config = {"name": layer.name, "trainable": bool(config.get("trainable", True)),
                    "dtype": _dtype_policy(np.dtype(layer.dtype).name)}
    for key in entry.options:
        to_keras = _VALUES.get(key, (lambda value: value, None))[0]
        keras_config[key] = to_keras(config[key])
    keras_config.update(entry.keras_only)
    return entry, keras_config


def _batch_shape(shape):
    """[None, *per-sample shape], whether or not `shape` already has the batch axis."""
    shape = list(shape)
    if shape and shape[0] is None:
        shape = shape[1:]
    return [None, *shape]


def _per_sample(shape):
    shape = tuple(shape)
    return shape[1:] if shape and shape[0] is None else shape


def _compile_config(model):
    optimizer_config = model.optimizer.get_config()
    name = optimizer_config["name"]
    if name not in OPTIMIZERS:
        raise ValueError(f"save: the optimizer {name!r} has no Keras form in "
                         "minicnn/keras_format.py (it knows " + ", ".join(OPTIMIZERS) + ").")
    entry = OPTIMIZERS[name]
    options = (*_OPTIMIZER_COMMON, *entry.options)
    # A schedule's config is already Keras's serialised form (minicnn/schedules.py).
    optimizer = {"module": "keras.optimizers", "class_name": entry.keras_class,
                 "config": {"name": name, **{k: optimizer_config[k] for k in options},
                            **entry.keras_only},
                 "registered_name": None}
    given, weighted = model._metric_identifiers
    loss, loss_weights = _loss_to_keras(model.loss), None
    if model._output_losses is not None:  # several outputs: by output name, as Keras keeps them
        names = model.output_names
        loss = {name: _loss_to_keras(fn)
                for name, (fn, _) in zip(names, model._output_losses, strict=True)}
        loss_weights = {name: w for name, (_, w) in zip(names, model._output_losses, strict=True)}
    return {"optimizer": optimizer, "loss": loss, "loss_weights": loss_weights,
            "metrics": _metrics_to_keras(given), "weighted_metrics": _metrics_to_keras(weighted)}


def _loss_to_keras(loss):
    class_name = type(loss).__name__
    if class_name not in LOSSES:
        raise ValueError(f"save: the loss {class_name} has no Keras form in "
                         "minicnn/keras_format.py (it knows " + ", ".join(LOSSES) + ").")
    config = loss.get_config()
    if config == type(loss)().get_config():
        return LOSSES[class_name]
    return {"module": "keras.losses", "class_name": class_name, "config": config,
            "registered_name": None}


def _metrics_to_keras(given):
    """compile's metrics (a list, or per output a list or dict) in Keras's form, or None."""
    from . import metrics

    def one(serialized):
        if isinstance(serialized, str):
            return serialized
        if isinstance(serialized, list):
            return [one(item) for item in serialized]
        if "class_name" not in serialized:
            return {name: one(item) for name, item in serialized.items()}
        return {"module": "keras.metrics", **serialized, "registered_name": None}

    return one(metrics.serialize_all(given)) or None


def _slot_order(optimizer, n_params):
    """[(weight index, slot index)] in the order Keras lists the optimizer's variables."""
    per_weight = len(optimizer.slot_names)
    if OPTIMIZERS[optimizer.name].slot_major:
        return [(i, j) for j in range(per_weight) for i in range(n_params)]
    return [(i, j) for i in range(n_params) for j in range(per_weight)]


def _optimizer_variables(model):
    """Keras's optimizer variables: [iterations, learning_rate (absent with a schedule), the
    slots of the trainable weights in model order (see _slot_order)]."""
    optimizer = model.optimizer
    params = keras_trainable_weights(model)
    # A weight the optimizer never moved (never trained, or frozen until now) gets the slots
    # Keras builds on loading (zeros; Adagrad's initial accumulator), so Keras finds the count
    # it expects.
    slots = [optimizer.get_slots(p) or optimizer.initial_slots(p) for p in params]
    values = [np.asarray(optimizer.iterations, np.int64)]
    if optimizer.schedule is None:
        values.append(np.asarray(optimizer.learning_rate, np.float32))
    values.extend(slots[i][j] for i, j in _slot_order(optimizer, len(params)))
    return values


def _model_spec(model, where):
    """Keras's JSON of `model` (Sequential or Functional, nested models inside) and, in the
    same order as Keras's model.layers, [(layer, entry or None, nested writer)] for the
    weights file."""
    names = [layer.name for layer in model.layers]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"{where}: two layers are named {duplicates[0]!r}; Keras needs "
                         "unique layer names. Rename one.")
    dtype = np.dtype(model.dtype).name
    if type(model).__name__ == "Sequential":
        return _sequential_spec(model, where, dtype)
    return _functional_spec(model, where, dtype)


def _layer_spec(layer, where):
    """(spec, plan entry) of one layer, or of a model used as a layer."""
    if hasattr(layer, "model") and type(layer).__name__ == "ModelLayer":
        spec, plan = _model_spec(layer.model, where)
        return spec, (layer, None, plan)
    entry, config = _keras_layer_config(layer, where)
    spec = {"module": "keras.layers", "class_name": entry.keras_class, "config": config,
            "registered_name": None,
            "build_config": {"input_shape": _shape_json(layer.input_shape)}}
    return spec, (layer, entry, None)


def _shape_json(shape):
    if shape and isinstance(shape[0], (list, tuple)):
        return [_batch_shape(s) for s in shape]
    return _batch_shape(shape)


def _input_layer_spec(name, shape, dtype):
    return {"module": "keras.layers", "class_name": "InputLayer",
            "config": {"batch_shape": _batch_shape(shape), "dtype": dtype, "sparse": False,
                       "name": name}, "registered_name": None}


def _sequential_spec(model, where, dtype):
    names = {layer.name for layer in model.layers}
    given = model.inputs[0].layer.name if model.inputs else None  # keras.Input(name=...)
    input_name = next(n for n in (given, "input_layer",
                                  *(f"input_layer_{i}" for i in range(1, 1000)))
                      if n and n not in names)
    layer_specs, plan = [_input_layer_spec(input_name, model.input_shape, dtype)], []
    for layer in model.layers:
        spec, item = _layer_spec(layer, where)
        layer_specs.append(spec)
        plan.append(item)
    build_shape = _batch_shape(model.input_shape)
    document = {"module": "keras", "class_name": "Sequential",
                "config": {"name": model.name, "trainable": True,
                           "dtype": _dtype_policy(dtype), "layers": layer_specs,
                           "build_input_shape": build_shape},
                "registered_name": None, "build_config": {"input_shape": build_shape}}
    return document, plan


def _tensor_json(tensor, node_index):
    history = [tensor.layer.name, node_index.get(id(tensor.node), 0), 0]
    return {"class_name": "__keras_tensor__",
            "config": {"shape": list(tensor.shape), "dtype": tensor.dtype.name,
                       "keras_history": history}}


def keras_layer_order(model):
    """model.layers in the order Keras's functional models list them (keras.src.ops.function
    map_graph): by depth from the outputs, deepest first, ties by first visit in a depth-first
    walk from the outputs. Keras matches weights to layers by this order, so a .keras file
    must follow it."""
    inputs = {id(t) for t in model.inputs}
    order, finished, indices = [], set(), {}

    def node_of(tensor):
        return ("input", id(tensor.layer)) if tensor.node is None else id(tensor.node)

    parents, layer_of = {}, {}

    def visit(tensor):
        key = node_of(tensor)
        layer = tensor.layer
        if key in finished:
            return
        indices.setdefault(id(layer), len(indices))
        layer_of[key] = layer
        if tensor.node is not None and id(tensor) not in inputs:
            parents[key] = [node_of(t) for t in tensor.node.inputs]
            for t in tensor.node.inputs:
                visit(t)
        else:
            parents[key] = []
        finished.add(key)
        order.append(key)

    for t in model.outputs:
        visit(t)
    node_depth, layer_depth = {}, {}
    for key in reversed(order):
        depth = node_depth.setdefault(key, 0)
        depth = max(depth, layer_depth.get(id(layer_of[key]), 0))
        layer_depth[id(layer_of[key])] = depth
        node_depth[key] = depth
        for parent in parents[key]:
            node_depth[parent] = max(depth + 1, node_depth.get(parent, 0))
    by_id = {id(layer): layer for layer in model.layers}
    return sorted((by_id[i] for i in layer_depth),
                  key=lambda layer: (-layer_depth[id(layer)], indices[id(layer)]))


def keras_trainable_weights(model):
    """model.trainable_weights in Keras's order (its layers' order, see keras_layer_order, and
    within a nested model the same rule): the order of the optimizer's variables."""
    if type(model).__name__ != "Functional":
        layers = model.layers
    else:
        layers = keras_layer_order(model)
    seen, out = set(), []
    for layer in layers:
        inner = getattr(layer, "model", None) if type(layer).__name__ == "ModelLayer" else None
        weights = keras_trainable_weights(inner) if inner is not None and layer.trainable \
            else layer.trainable_weights
        for w in weights:
            if id(w) not in seen:
                seen.add(id(w))
                out.append(w)
    return out


def _functional_spec(model, where, dtype):
    node_index = {id(n): i for layer in model.layers for i, n in enumerate(layer._inbound_nodes)}
    in_model = {id(n) for n in model._symbolic_nodes}
    layer_specs, plan = [], []
    for layer in keras_layer_order(model):
        if type(layer).__name__ == "InputLayer":
            spec = _input_layer_spec(layer.name, layer.output_shape, dtype)
            item = (layer, None, None)
        else:
            spec, item = _layer_spec(layer, where)
        calls = []
        for node in layer._inbound_nodes:
            if id(node) in in_model:
                args = [_tensor_json(t, node_index) for t in node.inputs]
                calls.append({"args": [args] if node.as_list else args, "kwargs": {}})
        spec["name"] = layer.name
        spec["inbound_nodes"] = calls
        layer_specs.append(spec)
        plan.append(item)

    def refs(tensors, single):
        items = [[t.layer.name, node_index.get(id(t.node), 0), 0] for t in tensors]
        return items[0] if single else items

    document = {"module": "keras.src.models.functional", "class_name": "Functional",
                "config": {"name": model.name, "trainable": True, "layers": layer_specs,
                           "input_layers": refs(model.inputs, model._single_input),
                           "output_layers": refs(model.outputs, model._single_output)},
                "registered_name": "Functional", "build_config": {"input_shape": None}}
    return document, plan


def _config_json(model, where):
    document, plan = _model_spec(model, where)
    document["compile_config"] = _compile_config(model) if model.loss is not None else None
    return json.dumps(document), plan


def _write_layers(h5, group, plan):
    """layers/<key>/vars/<i> for every layer in `plan` (nested models: <key>/layers/...)."""
    keys = _weight_groups([_plan_class(item) for item in plan])  # 'layers/<key>'
    for (layer, entry, nested), key in zip(plan, keys, strict=True):
        path = f"{group}/{key.split('/', 1)[1]}"
        variables = h5.require_group(path).create_group("vars")
        variables.attrs["name"] = layer.name
        if nested is not None:
            h5.require_group(f"{path}/layers")
            _write_layers(h5, f"{path}/layers", nested)
        elif entry is not None:
            for i, name in enumerate(entry.weights(layer, _per_sample(layer.input_shape))):
                variables.create_dataset(str(i), data=layer.params[name])


def _plan_class(item):
    layer, entry, nested = item
    if nested is not None:
        return type(layer.model).__name__
    return entry.keras_class if entry is not None else type(layer).__name__


def _weights_h5(model, plan):
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        h5.create_group("vars").attrs["name"] = model.name
        h5.create_group("layers")
        _write_layers(h5, "layers", plan)
        if model.loss is not None:
            variables = h5.create_group("optimizer").create_group("vars")
            variables.attrs["name"] = model.optimizer.get_config()["name"]
            for i, value in enumerate(_optimizer_variables(model)):
                variables.create_dataset(str(i), data=value)
    return buffer.getvalue()


def save_keras(model, path):
    """Write `model` to `path` as Keras 3's .keras archive (config, weights, compile settings
    and optimizer state), under a temporary name then renamed. Raises ValueError naming the
    layer when one has no Keras form."""
    from . import __version__
    from .saving import atomic_write

    model._require_built("save")
    config_json, entries = _config_json(model, "save")
    weights = _weights_h5(model, entries)
    metadata = {"keras_version": KERAS_VERSION,
                "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S"),
                "saved_by": f"minicnn {__version__}"}
    with atomic_write(path, "wb", "save") as f, zipfile.ZipFile(f, "w") as archive:
        archive.writestr(METADATA_FILE, json.dumps(metadata))
        archive.writestr(CONFIG_FILE, config_json)
        archive.writestr(WEIGHTS_FILE, weights)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------
class _Reader:
    """Error and warning messages that name the file."""

    def __init__(self, path, where):
        self.path, self.where = Path(path), where
        self.context = ""

    def error(self, problem):
        context = f" ({self.context})" if self.context else ""
        return ValueError(f"{self.where}: {self.path}{context} {problem}")

    def refuse(self, problem):
        raise self.error(problem)

    def warn(self, problem):
        context = f" ({self.context})" if self.context else ""
        warnings.warn(f"{self.where}: {self.path}{context}: {problem}", stacklevel=4)


def _read_member(archive, name, limit, reader):
    try:
        info = archive.getinfo(name)
    except KeyError:
        reader.refuse(f"is a zip archive without {name}, so not a Keras model file "
                      "(Keras writes config.json, metadata.json and model.weights.h5).")
    if info.file_size > limit:
        reader.refuse(f"declares {name} of {info.file_size:,} bytes, more than this "
                      f"{reader.path.stat().st_size:,}-byte file can honestly hold "
                      f"(limit {limit:,}); refusing to read it.")
    try:
        with archive.open(info) as member:
            data = member.read(limit + 1)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError) as exc:
        raise reader.error(f"has a damaged {name} ({type(exc).__name__}: {exc}); save the "
                           "model again.") from exc
    if len(data) > limit:
        reader.refuse(f"has a {name} larger than it declares; refusing to read it.")
    return data


def _read_json(archive, name, reader):
    data = _read_member(archive, name, _MAX_JSON_BYTES, reader)
    try:
        return json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise reader.error(f"has a corrupted {name} ({exc}).") from exc


def _unsupported_option(config, options, keras_only, ignored, what):
    """The first Keras option in `config` minicnn cannot honour, described, or None."""
    for key, value in config.items():
        if key in options or key in ignored:
            continue
        if key in keras_only:
            if not _same_value(value, keras_only[key]):
                return (f"sets {what} {key}={value!r}; minicnn supports only "
                        f"{keras_only[key]!r}")
        elif value is not None:  # a key newer than this table, at its 'off' value, is fine
            return f"sets {what} option {key}={value!r}, which minicnn does not have"
    return None


def _dtype_from_keras(value, reader):
    if isinstance(value, dict):
        value = (value.get("config") or {}).get("name")
    if value is None:
        return "float32"
    if value not in ("float32", "float64"):
        reader.refuse(f"uses dtype {value!r}; minicnn computes in float32 or float64.")
    return value


def _minicnn_layer_config(spec, reader):
    class_name = spec.get("class_name")
    entry = _BY_KERAS.get(class_name)
    if entry is None or spec.get("registered_name") not in (None, class_name):
        known = ", ".join(_BY_KERAS)
        reader.refuse(f"holds a {class_name!r} layer, which minicnn does not have (it reads "
                      f"{known}). Rebuild the model in minicnn without it, or keep using Keras.")
    config = spec.get("config")
    if not isinstance(config, dict):
        reader.refuse(f"has a {class_name} layer without a config.")
    reader.context = f"layer {config.get('name', '?')!r}, {class_name}"
    problem = _unsupported_option(config, entry.options, entry.keras_only, _COMMON, class_name)
    if problem:
        reader.refuse(problem + ".")
    result = {"name": config.get("name"), "trainable": bool(config.get("trainable", True)),
              "dtype": _dtype_from_keras(config.get("dtype"), reader)}
    for key in entry.options:
        if key in config:
            from_keras = _VALUES.get(key, (None, lambda value, key, reader: value))[1]
            result[key] = from_keras(config[key], key, reader)
    if result["name"] is None:
        del result["name"]
    return entry, result


def _input_shape(document, specs, reader):
    """Per-sample input shape from the InputLayer, build_input_shape or build_config."""
    config = document.get("config", {})
    candidates = []
    if specs and specs[0].get("class_name") == "InputLayer":
        input_config = specs[0].get("config") or {}
        candidates.append(input_config.get("batch_shape") or input_config.get(
            "batch_input_shape"))
    candidates.append(config.get("build_input_shape"))
    candidates.append((document.get("build_config") or {}).get("input_shape"))
    shape = next((c for c in candidates if c is not None), None)
    if shape is None:
        return None
    if not isinstance(shape, list) or len(shape) < 2 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape[1:]):
        reader.refuse(f"has the input shape {shape!r}; minicnn needs fixed positive sizes "
                      "after the batch axis, e.g. [null, 28, 28, 1].")
    return tuple(shape[1:])


class _Weights:
    """The weights HDF5 file, read only after each dataset's shape and dtype are checked."""

    def __init__(self, data, reader):
        import h5py

        self.h5py, self.reader = h5py, reader
        try:
            self.file = h5py.File(io.BytesIO(data), "r")
        except Exception as exc:  # h5py raises OSError and others for damaged files
            raise reader.error(f"has a {WEIGHTS_FILE} that is not a readable HDF5 file "
                               f"({type(exc).__name__}: {exc}).") from exc

    def close(self):
        self.file.close()

    def _child(self, group, name, kind):
        """group[name] if it is a hard link to a `kind` (Group or Dataset), else None/refuse."""
        h5py = self.h5py
        if name not in group:
            return None
        link = group.get(name, getclass=True, getlink=True)
        if link is not h5py.HardLink:
            self.reader.refuse(f"has a {link.__name__} at {group.name}/{name} in "
                               f"{WEIGHTS_FILE}; links out of the file are never followed.")
        obj = group[name]
        if not isinstance(obj, kind):
            self.reader.refuse(f"has {type(obj).__name__} at {obj.name} in {WEIGHTS_FILE} "
                               f"where a {kind.__name__} belongs.")
        return obj

    def group(self, path):
        group = self.file
        for part in path.split("/"):
            group = self._child(group, part, self.h5py.Group)
            if group is None:
                return None
        return group

    def variables(self, path):
        """{index: dataset} of path/vars, checked to be plain in-file datasets '0', '1', ..."""
        group = self.group(f"{path}/vars") if path else self.group("vars")
        if group is None:
            return {}
        datasets = {}
        for name in group:
            if not name.isdigit():
                self.reader.refuse(f"has an unexpected entry {group.name}/{name} in "
                                   f"{WEIGHTS_FILE}.")
            dataset = self._child(group, name, self.h5py.Dataset)
            if dataset.external or dataset.is_virtual:
                self.reader.refuse(f"has an external or virtual dataset {dataset.name}; "
                                   "minicnn reads weights stored inside the file only.")
            datasets[int(name)] = dataset
        if sorted(datasets) != list(range(len(datasets))):
            self.reader.refuse(f"numbers the variables of {group.name} {sorted(datasets)}; "
                               "expected 0, 1, 2, ...")
        return datasets

    def check(self, dataset, shape, kinds="f"):
        """Refuse `dataset` unless it has exactly `shape` and a plain numeric dtype of one of
        `kinds` ('f' floats, 'iu' integers). Reads metadata only."""
        if tuple(dataset.shape) != tuple(shape):
            self.reader.refuse(f"stores {dataset.name} with shape {tuple(dataset.shape)}; the "
                               f"architecture needs {tuple(shape)}.")
        dtype = dataset.dtype
        if dtype.kind not in kinds or dtype.itemsize > 8 or dtype.fields or dtype.subdtype:
            self.reader.refuse(f"stores {dataset.name} as {dtype}; expected "
                               f"{'floats' if kinds == 'f' else 'integers'}.")

    def read(self, dataset, shape=None, kinds="f"):
        """The dataset as an array; checked first when `shape` is given."""
        if shape is not None:
            self.check(dataset, shape, kinds)
        try:
            return dataset[()]
        except Exception as exc:  # damaged chunks, unknown compression filters
            raise self.reader.error(f"cannot read {dataset.name} ({type(exc).__name__}: "
                                    f"{exc}).") from exc


def _build_any(document, weights, archive_bytes, reader, prefix="layers"):
    """A Sequential or Functional document (nested models recursively) -> the model."""
    class_name = document.get("class_name") if isinstance(document, dict) else None
    if class_name == "Sequential":
        return _build_model(document, weights, archive_bytes, reader, prefix)
    if class_name == "Functional":
        return _build_functional(document, weights, archive_bytes, reader, prefix)
    reader.refuse(f"holds a {class_name!r} model; minicnn reads Keras's Sequential and "
                  "functional (keras.Model(inputs, outputs)) models, not subclassed ones.")


def _group_keys(class_names, prefix):
    return [f"{prefix}/{key.split('/', 1)[1]}" for key in _weight_groups(class_names)]


def _nested_document(spec):
    return isinstance(spec, dict) and spec.get("class_name") in ("Sequential", "Functional") \
        and spec.get("module") in ("keras", "keras.models", "keras.src.models.functional",
                                   "keras.src.models.sequential")


def _build_functional(document, weights, archive_bytes, reader, prefix):
    from .functional import InputLayer, Model

    config = document.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        reader.refuse("has a Functional config without a list of layers.")
    specs = config["layers"]
    if not all(isinstance(spec, dict) for spec in specs):
        reader.refuse("has a layer entry that is not an object.")
    class_names = [spec.get("class_name") if not _nested_document(spec) else spec["class_name"]
                   for spec in specs]
    keys = _group_keys([c if isinstance(c, str) else "?" for c in class_names], prefix)
    layers, entries = {}, {}
    for spec, key in zip(specs, keys, strict=True):
        name = spec.get("name") or (spec.get("config") or {}).get("name")
        if not isinstance(name, str) or name in layers:
            reader.refuse(f"has a layer without a unique name ({name!r}).")
        if spec.get("class_name") == "InputLayer":
            reader.context = f"InputLayer {name!r}"
            input_config = spec.get("config") or {}
            shape = input_config.get("batch_shape") or input_config.get("batch_input_shape")
            if not isinstance(shape, list) or len(shape) < 2 or not all(
                    isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape[1:]):
                reader.refuse(f"has the input shape {shape!r}; minicnn needs fixed positive "
                              "sizes after the batch axis, e.g. [null, 28, 28, 1].")
            dtype = _dtype_from_keras(input_config.get("dtype"), reader)
            layers[name] = InputLayer(batch_shape=shape, dtype=dtype, name=name)
        elif _nested_document(spec):
            layers[name] = _build_any(spec, weights, archive_bytes, reader,
                                      f"{key}/layers").as_layer()
        else:
            entry, layer_config = _minicnn_layer_config(spec, reader)
            from .layers import get_class
            try:
                layers[name] = get_class(entry.minicnn_class).from_config(layer_config)
            except (ValueError, TypeError) as exc:
                raise reader.error(f"cannot be built in minicnn: {exc}") from exc
            entries[name] = (entry, key)
    reader.context = ""
    tensors = {(n, 0): layer.output for n, layer in layers.items()
               if isinstance(layer, InputLayer)}
    calls = []
    for spec in specs:
        for index, node in enumerate(spec.get("inbound_nodes") or []):
            if not isinstance(node, dict) or not isinstance(node.get("args"), list):
                reader.refuse(f"has a malformed call of layer {spec.get('name')!r}.")
            calls.append((spec.get("name"), index, node["args"]))

    def history(arg):
        config = arg.get("config") if isinstance(arg, dict) else None
        ref = (config or {}).get("keras_history")
        if not (isinstance(ref, list) and len(ref) == 3 and isinstance(ref[0], str)
                and isinstance(ref[1], int)):
            reader.refuse(f"has a layer call reading {arg!r}, not a tensor reference.")
        return ref[0], ref[1]

    # Shapes first, weights' bytes counted before any layer is built (a hostile file must not
    # make minicnn allocate what the archive cannot hold).
    budget = max(_FLOOR_BYTES, _MAX_EXPANSION * archive_bytes)
    shapes = {key: t.shape for key, t in tensors.items()}
    planned, pending = [], list(calls)
    while pending:
        ready = [c for c in pending if all(history(a) in shapes for a in _flat_args(c[2]))]
        if not ready:
            reader.refuse("has layer calls that read tensors no earlier call makes.")
        for call in ready:
            pending.remove(call)
            name, index, args = call
            layer = layers.get(name)
            if layer is None or isinstance(layer, InputLayer):
                reader.refuse(f"calls an unknown layer {name!r}.")
            as_list = len(args) == 1 and isinstance(args[0], list)
            in_shapes = [shapes[history(a)] for a in _flat_args(args)]
            shape = in_shapes if as_list else in_shapes[0]
            reader.context = f"layer {name!r}"
            try:
                if name in entries:
                    expected = entries[name][0].weights(layer, _per_sample(shape)) \
                        if not as_list else {}
                    reader.spent = getattr(reader, "spent", 0) + sum(
                        math.prod(s) for s in expected.values()) * np.dtype(layer.dtype).itemsize
                out_shape = layer.compute_output_shape(shape)
            except (ValueError, TypeError, IndexError) as exc:
                raise reader.error(f"cannot take inputs of shape {shape}: {exc}") from exc
            if getattr(reader, "spent", 0) > budget:
                reader.refuse(f"describes an architecture needing over {reader.spent:,} bytes "
                              f"of weights, more than a {archive_bytes:,}-byte file can hold; "
                              "refusing to allocate them.")
            shapes[(name, index)] = tuple(out_shape)
            planned.append((name, index, args, as_list))
    reader.context = ""
    for name, index, args, as_list in planned:  # now build, by replaying the calls
        inputs = [tensors[history(a)] for a in _flat_args(args)]
        try:
            tensors[(name, index)] = layers[name](inputs if as_list else inputs[0])
        except (ValueError, TypeError) as exc:
            raise reader.error(f"does not fit minicnn at layer {name!r}: {exc}") from exc

    def refs(value):
        if isinstance(value, list) and value and isinstance(value[0], str):
            return tensors.get((value[0], value[1])), True
        if isinstance(value, list):
            return [tensors.get((v[0], v[1])) if isinstance(v, list) and len(v) >= 2
                    else None for v in value], False
        return None, True

    inputs, single_in = refs(config.get("input_layers"))
    outputs, single_out = refs(config.get("output_layers"))
    if inputs is None or outputs is None or (isinstance(inputs, list) and None in inputs) or (
            isinstance(outputs, list) and None in outputs):
        reader.refuse("names input or output layers that the model does not have.")
    try:
        model = Model(inputs, outputs, name=config.get("name"))
    except (ValueError, TypeError) as exc:
        raise reader.error(f"does not fit minicnn: {exc}") from exc
    for name, (entry, key) in entries.items():
        layer = layers[name]
        reader.context = f"layer {name!r}"
        expected = entry.weights(layer, _per_sample(layer.input_shape)) if not isinstance(
            layer.input_shape[0], (list, tuple)) else {}
        stored = weights.variables(key)
        if len(stored) != len(expected):
            reader.refuse(f"stores {len(stored)} weight arrays under {key}/vars; the layer "
                          f"has {len(expected)} ({', '.join(expected) or 'none'}).")
        values = {n: weights.read(stored[i], shape) for i, (n, shape) in
                  enumerate(expected.items())}
        try:
            layer.set_weights([values[n] for n in layer.params])
        except ValueError as exc:
            raise reader.error(f"does not fit minicnn: {exc}") from exc
    reader.context = ""
    return model


def _build_sequential_of_models(document, specs, input_shape, weights, archive_bytes, reader,
                                prefix):
    """A Sequential holding models as layers: each nested model read recursively, the plain
    layers as in _build_model (one at a time, their weights checked before they are set)."""
    from .layers import get_class
    from .models import Sequential

    if input_shape is None:
        reader.refuse("holds nested models but no input shape to build the model for.")
    class_names = [spec["class_name"] if _nested_document(spec) else spec.get("class_name")
                   for spec in specs]
    keys = _group_keys([c if isinstance(c, str) else "?" for c in class_names], prefix)
    from .functional import Input
    model = Sequential(name=(document.get("config") or {}).get("name"))
    model.add(Input(shape=input_shape))
    budget = max(_FLOOR_BYTES, _MAX_EXPANSION * archive_bytes)
    for spec, key in zip(specs, keys, strict=True):
        if _nested_document(spec):
            layer = _build_any(spec, weights, archive_bytes, reader, f"{key}/layers").as_layer()
            model.add(layer)
            continue
        entry, layer_config = _minicnn_layer_config(spec, reader)
        layer = get_class(entry.minicnn_class).from_config(layer_config)
        shape = _per_sample(model.output_shape)
        expected = entry.weights(layer, shape)
        reader.spent, stored = _checked_layer_weights(reader, weights, key, layer, expected,
                                                      getattr(reader, "spent", 0), budget,
                                                      archive_bytes)
        model.add(layer)
        layer.set_weights([weights.read(stored[i]) for i in range(len(expected))])
    reader.context = ""
    return model


def _flat_args(args):
    """The tensor references of a call's args: [t] or [[t1, t2, ...]] (a merge layer)."""
    if len(args) == 1 and isinstance(args[0], list):
        return args[0]
    return args


def _build_model(document, weights, archive_bytes, reader, prefix="layers"):
    from .layers import get_class
    from .models import Sequential

    config = document.get("config")
    if not isinstance(config, dict) or not isinstance(config.get("layers"), list):
        reader.refuse("has a Sequential config without a list of layers.")
    specs = [s for s in config["layers"] if isinstance(s, dict)]
    if len(specs) != len(config["layers"]):
        reader.refuse("has a layer entry that is not an object.")
    input_shape = _input_shape(document, specs, reader)
    if specs and specs[0].get("class_name") == "InputLayer":
        reader.context = "InputLayer"
        _dtype_from_keras((specs[0].get("config") or {}).get("dtype"), reader)
        specs = specs[1:]
    if not specs:
        reader.refuse("holds a model without layers.")
    if any(_nested_document(spec) for spec in specs):
        return _build_sequential_of_models(document, specs, input_shape, weights,
                                           archive_bytes, reader, prefix)
    made = []
    for spec in specs:
        entry, layer_config = _minicnn_layer_config(spec, reader)
        try:
            made.append((entry, get_class(entry.minicnn_class).from_config(layer_config)))
        except (ValueError, TypeError) as exc:
            raise reader.error(f"cannot be built in minicnn: {exc}") from exc
    reader.context = ""
    layers = [layer for _, layer in made]
    groups = _group_keys([entry.keras_class for entry, _ in made], prefix)
    for name in (weights.group(prefix) or {}):
        if f"{prefix}/{name}" not in groups:
            reader.refuse(f"holds weights for layers/{name}, which the architecture does not "
                          "have; the weights belong to a different model.")
    if input_shape is None:  # never built in Keras: no shapes, no weights
        if any(weights.variables(group) for group in groups):
            reader.refuse("holds weights but no input shape to build the model for.")
        return Sequential(layers, name=config.get("name"))

    # Check every stored array against the shape the architecture needs, and the total
    # against what the file can hold, before anything is allocated.
    budget = max(_FLOOR_BYTES, _MAX_EXPANSION * archive_bytes)
    shape, needed, planned = input_shape, getattr(reader, "spent", 0), []
    for (entry, layer), group in zip(made, groups, strict=True):
        reader.context = f"layer {layer.name!r}, {entry.keras_class}"
        try:
            expected = entry.weights(layer, shape)
            next_shape = _per_sample(layer.compute_output_shape((None, *shape)))
        except (ValueError, TypeError, IndexError) as exc:
            raise reader.error(f"cannot take inputs of shape {shape}: {exc}") from exc
        if not all(isinstance(d, int) and d > 0 for s in (*expected.values(), next_shape)
                   for d in s):
            reader.refuse(f"cannot take inputs of shape {shape} (the layer's output or weights "
                          "would be empty).")
        needed, stored = _checked_layer_weights(reader, weights, group, layer, expected,
                                                needed, budget, archive_bytes)
        planned.append((layer, expected, stored))
        shape = next_shape
    reader.spent = needed
    reader.context = ""
    try:
        model = Sequential(layers, name=config.get("name"))
        model.build((None, *input_shape))
    except ValueError as exc:
        raise reader.error(f"does not fit minicnn: {exc}") from exc
    for layer, expected, stored in planned:
        reader.context = f"layer {layer.name!r}"
        if set(layer.params) != set(expected):
            raise AssertionError(f"minicnn/keras_format.py: the table gives {layer.where} the "
                                 f"weights {list(expected)}, minicnn has {list(layer.params)}")
        by_name = {name: weights.read(stored[i]) for i, name in enumerate(expected)}
        try:
            layer.set_weights([by_name[name] for name in layer.params])
        except ValueError as exc:
            raise reader.error(f"does not fit minicnn: {exc}") from exc
    reader.context = ""
    return model


def _keras_object(value, module, reader, what):
    """(class_name, config) of a serialised Keras object, or (string, {}) for a name."""
    if isinstance(value, str):
        return value, {}
    if isinstance(value, dict) and isinstance(value.get("class_name"), str):
        if value.get("module", module) != module or value.get("registered_name") not in (
                None, value["class_name"]):
            raise _CompileUnsupported(f"the {what} {value['class_name']!r} is a custom object")
        return value["class_name"], value.get("config") or {}
    raise _CompileUnsupported(f"the {what} {value!r} is not one minicnn reads")


def _optimizer_from_keras(value, reader):
    from . import optimizers

    class_name, config = _keras_object(value, "keras.optimizers", reader, "optimizer")
    name = next((n for n, e in OPTIMIZERS.items()
                 if class_name in (e.keras_class, n)), None)
    if name is None:
        raise _CompileUnsupported(f"the optimizer {class_name!r} is not one minicnn has "
                                  f"({', '.join(e.keras_class for e in OPTIMIZERS.values())})")
    entry = OPTIMIZERS[name]
    options = (*_OPTIMIZER_COMMON, *entry.options)
    problem = _unsupported_option(config, options, entry.keras_only, entry.ignored,
                                  f"the optimizer {class_name}")
    if problem:
        raise _CompileUnsupported(problem)
    arguments = {k: config[k] for k in options if k in config}
    try:
        return optimizers.deserialize({"name": name, **arguments})
    except (ValueError, TypeError) as exc:
        raise _CompileUnsupported(f"the optimizer settings do not fit minicnn: {exc}") from exc


def _object_from_keras(value, module, what, by_name, known, reader):
    """A minicnn loss or metric from Keras's form: a name (by_name resolves it, or None), or
    {'class_name', 'config'} with the keys that minicnn's class of that name takes."""
    if isinstance(value, dict) and value.get("class_name") == "function" and isinstance(
            value.get("config"), str):
        value = value["config"]  # a Keras function given to compile, e.g. losses.huber
    class_name, config = _keras_object(value, module, reader, what)
    if isinstance(value, str):
        resolved = by_name(value)
        if resolved is None:
            raise _CompileUnsupported(f"the {what} {value!r} is not one minicnn has")
        return resolved
    cls = known.get(class_name)
    if cls is None:
        raise _CompileUnsupported(f"the {what} {class_name!r} is not one minicnn has "
                                  f"({', '.join(known)})")
    arguments = {k: v for k, v in config.items() if k not in _IGNORED_OBJECT_KEYS}
    unknown = set(arguments) - set(cls().get_config())
    if unknown:
        raise _CompileUnsupported(f"the {what} {class_name} sets {sorted(unknown)}, which "
                                  "minicnn does not read")
    try:
        return cls(**arguments)
    except (ValueError, TypeError) as exc:
        raise _CompileUnsupported(f"the {what} {class_name}: {exc}") from exc


def _loss_from_keras(value, reader):
    from . import losses

    def by_name(name):
        try:
            return losses.get(name)
        except ValueError:
            return None

    return _object_from_keras(value, "keras.losses", "loss", by_name,
                              {cls.__name__: cls for cls in losses.LOSS_CLASSES}, reader)


def _losses_from_keras(value, reader):
    """compile_config's loss: one loss, a list (one per output) or a dict by output name."""
    if isinstance(value, list):
        return [_loss_from_keras(item, reader) for item in value]
    if isinstance(value, dict) and "class_name" not in value:
        return {name: _loss_from_keras(item, reader) for name, item in value.items()}
    return _loss_from_keras(value, reader)


def _metrics_from_keras(values, reader):
    """compile_config's metrics: a list, a list of lists (per output) or a dict by output."""
    if isinstance(values, dict) and "class_name" not in values:
        return {name: _metrics_from_keras(item if isinstance(item, list) else [item], reader)
                for name, item in values.items()}
    if isinstance(values, list) and values and all(isinstance(v, list) for v in values):
        return [_metrics_from_keras(item, reader) for item in values]
    return _flat_metrics_from_keras(values, reader)


def _flat_metrics_from_keras(values, reader):
    from . import metrics

    def by_name(name):
        if name.lower() in ("accuracy", "acc"):
            return name
        try:
            metrics.get(name)
        except ValueError:
            return None
        return name  # compile resolves it and names it as written

    return [_object_from_keras(value, "keras.metrics", "metric", by_name,
                               {cls.__name__: cls for cls in metrics.METRIC_CLASSES}, reader)
            for value in values or []]


def _restore_compile(model, document, weights, reader):
    compiled = document.get("compile_config")
    if not compiled:
        return
    try:
        if not isinstance(compiled, dict):
            raise _CompileUnsupported("the compile settings are not an object")
        loss_weights = compiled.get("loss_weights")
        if loss_weights is not None and model._single_output:
            raise _CompileUnsupported("loss_weights is set on a model with one output")
        metrics = _metrics_from_keras(compiled.get("metrics"), reader)
        weighted_metrics = _metrics_from_keras(compiled.get("weighted_metrics"), reader)
        optimizer = _optimizer_from_keras(compiled.get("optimizer"), reader)
        loss = _losses_from_keras(compiled.get("loss"), reader)
        model.compile(optimizer=optimizer, loss=loss, loss_weights=loss_weights,
                      metrics=metrics, weighted_metrics=weighted_metrics)
    except _CompileUnsupported as exc:
        reader.warn(f"{exc}; the model is loaded uncompiled. Call model.compile(...) before "
                    "fit or evaluate.")
        return
    except (ValueError, TypeError) as exc:  # per-output settings that do not fit the outputs
        reader.warn(f"the compile settings do not fit this model ({exc}); the model is "
                    "loaded uncompiled. Call model.compile(...) before fit or evaluate.")
        return
    _restore_optimizer_state(model, weights, reader)


def _restore_optimizer_state(model, weights, reader):
    stored = weights.variables("optimizer")
    if not stored:
        return
    reader.context = "optimizer"
    optimizer = model.optimizer
    params = keras_trainable_weights(model)
    # [iterations, learning_rate (not with a schedule), slots in _slot_order]
    first_slot = 1 if optimizer.schedule is not None else 2
    order = _slot_order(optimizer, len(params))
    if len(stored) not in (first_slot, first_slot + len(order)):
        reader.refuse(f"has {len(stored)} optimizer variables; {type(optimizer).__name__} on "
                      f"this model has {first_slot + len(order)}.")
    iterations = int(weights.read(stored[0], (), kinds="iu"))
    if iterations < 0:
        reader.refuse(f"has a negative optimizer step count {iterations}.")
    if first_slot == 2:
        learning_rate = float(weights.read(stored[1], ()))
        # The compile config keeps the exact value; the variable (float32) wins only when a
        # callback had changed it.
        if not math.isfinite(learning_rate) or learning_rate < 0:
            reader.refuse(f"has an invalid learning rate {learning_rate!r}.")
        if np.float32(learning_rate) != np.float32(optimizer.learning_rate):
            optimizer.learning_rate = learning_rate
    if len(stored) > first_slot:  # none: a never-trained model
        slots = [[None] * len(optimizer.slot_names) for _ in params]
        for k, (i, j) in enumerate(order, start=first_slot):
            value = weights.read(stored[k], params[i].shape)
            if not np.isfinite(value).all():
                reader.refuse(f"has NaN or inf in optimizer variable {k}.")
            slots[i][j] = value.astype(params[i].dtype)
        for param, slot in zip(params, slots, strict=True):
            optimizer.set_slots(param, slot)
    optimizer.iterations = iterations
    reader.context = ""


def looks_like_keras(path) -> bool:
    """True if `path` is a zip archive holding config.json (a .keras file under any name)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return CONFIG_FILE in archive.namelist()
    except Exception:  # noqa: BLE001 -- any damage: not recognisably Keras; the .npz reader
        return False   # then names the problem


def load_keras(path, where="load_model"):
    """Rebuild the model in a .keras file (written by Keras or by minicnn): architecture,
    weights, compile settings and optimizer state.

    Raises FileNotFoundError for a missing file; ValueError naming the file and the problem for
    anything minicnn cannot reproduce exactly (an unsupported layer or option, a damaged or
    hostile file). Compile settings minicnn lacks (another optimizer, loss or metric) give a
    warning and an uncompiled model, as the weights still predict the same.
    """
    path = Path(path)
    reader = _Reader(path, where)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "no such file"
        raise FileNotFoundError(f"{where}: {what}: {path}")
    archive_bytes = path.stat().st_size
    try:
        archive = zipfile.ZipFile(path)
    except PermissionError:
        raise
    except Exception as exc:  # zipfile raises many kinds for damaged archives
        raise reader.error(f"is not a readable .keras file (a zip archive): {exc}. It may be "
                           "truncated or corrupted; save the model again.") from exc
    with archive:
        document = _read_json(archive, CONFIG_FILE, reader)
        if not isinstance(document, dict):
            reader.refuse(f"has a {CONFIG_FILE} that is not a JSON object.")
        limit = max(_FLOOR_BYTES, _MAX_EXPANSION * archive_bytes)
        weights = _Weights(_read_member(archive, WEIGHTS_FILE, limit, reader), reader)
    try:
        model = _build_any(document, weights, archive_bytes, reader)
        _restore_compile(model, document, weights, reader)
    finally:
        weights.close()
    return model


def _checked_layer_weights(reader, weights, group, layer, expected, needed, budget,
                           archive_bytes):
    """Add this layer's weight bytes to `needed` and refuse the file when the total passes
    `budget` or when the arrays stored under `group` are not the `expected` shapes, before
    anything is read. -> (needed, stored: the group's variables)."""
    needed += sum(math.prod(s) for s in expected.values()) * np.dtype(layer.dtype).itemsize
    if needed > budget:
        reader.refuse(f"describes an architecture needing over {needed:,} bytes of "
                      f"weights, more than a {archive_bytes:,}-byte file can hold; "
                      "refusing to allocate them.")
    stored = weights.variables(group)
    if len(stored) != len(expected):
        reader.refuse(f"stores {len(stored)} weight arrays under {group}/vars; the layer "
                      f"has {len(expected)} ({', '.join(expected) or 'none'}).")
    for i, wanted in enumerate(expected.values()):
        weights.check(stored[i], wanted)
    return needed, stored
