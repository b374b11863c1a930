"""ONNX export: `to_onnx(model, "m.onnx")`, then run it anywhere ONNX Runtime runs.

    from minicnn.export import to_onnx
    to_onnx(model, "mnist_cnn.onnx")          # or: python -m minicnn export m.npz m.onnx

    import onnxruntime as ort
    session = ort.InferenceSession("mnist_cnn.onnx")
    probabilities = session.run(None, {"input": x})[0]    # x: (N, 28, 28, 1) float32

The graph takes the input exactly as the model does, NHWC float32 with a free batch axis
("N"), and returns the last layer's output ("output"). ONNX's Conv and MaxPool work in NCHW,
so the graph transposes once before the first spatial layer and back before the first layer
that needs channels last (Flatten, Dense, softmax over channels): Flatten then sees Keras's
(H, W, C) order and the Dense weights fit unchanged. Keras's 'same' padding (the odd extra
row/column at the bottom/right) becomes explicit ONNX pads. Opset OPSET (ir_version
IR_VERSION), which every ONNX Runtime since 1.12 runs; onnx.checker accepts the result.

Adding a layer: write `_emit_<layer>(graph, layer, x) -> name of its output` using
graph.node / graph.constant, and add one `OnnxFormat(layout, emit)` line to ONNX_LAYERS, where
layout is the tensor layout the op needs ("NCHW" for spatial ops, "NHWC" for ops that see the
channel axis last or flatten, "any" for elementwise ones).

Needs the `onnx` package (`pip install "minicnn[onnx]"`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .ops.reference import SELU_ALPHA, SELU_SCALE

OPSET = 17
IR_VERSION = 8
INPUT_NAME = "input"
OUTPUT_NAME = "output"
_TO_NCHW = (0, 3, 1, 2)
_TO_NHWC = (0, 2, 3, 1)


def _import_onnx():
    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export needs the onnx package: pip install onnx "
                          "(or pip install \"minicnn[onnx]\").") from exc
    return onnx


class _Graph:
    """Nodes and weights of the graph being built, and the layout of the current tensor."""

    def __init__(self, onnx):
        self.onnx, self.helper = onnx, onnx.helper
        self.nodes, self.initializers = [], []
        self.layout = "NHWC"  # the model's input
        self._count = 0

    def fresh(self, hint):
        self._count += 1
        return f"{hint}_{self._count}"

    def node(self, op, inputs, hint, **attributes):
        """Add one node; returns the name of its (single) output."""
        output = self.fresh(hint)
        self.nodes.append(self.helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def constant(self, array, hint):
        """Add a weight tensor (float32); returns its name."""
        name = self.fresh(hint)
        self.initializers.append(self.onnx.numpy_helper.from_array(
            np.ascontiguousarray(array, dtype=np.float32), name))
        return name

    def to_layout(self, x, layout, rank):
        """x transposed into `layout` if it is 4-D and in the other one."""
        if rank != 4 or layout == "any" or layout == self.layout:
            return x
        perm = _TO_NCHW if layout == "NCHW" else _TO_NHWC
        self.layout = layout
        return self.node("Transpose", [x], f"to_{layout.lower()}", perm=list(perm))


# --------------------------------------------------------------------------------------------
# Activations and layers
# --------------------------------------------------------------------------------------------
_ELEMENTWISE = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "softplus": "Softplus",
                "softsign": "Softsign", "exponential": "Exp", "hard_silu": "HardSwish"}
# Activations that are one ONNX op with attributes.
_WITH_ATTRIBUTES = {
    "elu": ("Elu", {"alpha": 1.0}),
    "selu": ("Selu", {"alpha": SELU_ALPHA, "gamma": SELU_SCALE}),
    "leaky_relu": ("LeakyRelu", {"alpha": 0.2}),
    "hard_sigmoid": ("HardSigmoid", {"alpha": 1 / 6, "beta": 0.5}),
}


def _clip(graph, x, low, high, hint):
    return graph.node("Clip", [x, graph.constant(np.float32(low), f"{hint}_min"),
                               graph.constant(np.float32(high), f"{hint}_max")], hint)


def _activation(graph, name, x, rank, where):
    """Append activation `name` ('linear', 'relu', 'softmax', ...) to x."""
    if name == "linear":
        return x
    if name in _ELEMENTWISE:
        return graph.node(_ELEMENTWISE[name], [x], name)
    if name in _WITH_ATTRIBUTES:
        op, attributes = _WITH_ATTRIBUTES[name]
        return graph.node(op, [x], name, **attributes)
    if name == "softmax":  # over the channel axis, which is last only in NHWC
        x = graph.to_layout(x, "NHWC", rank)
        return graph.node("Softmax", [x], "softmax", axis=-1)
    if name == "relu6":
        return _clip(graph, x, 0, 6, "relu6")
    if name == "hard_tanh":
        return _clip(graph, x, -1, 1, "hard_tanh")
    if name == "silu":
        return graph.node("Mul", [x, graph.node("Sigmoid", [x], "sigmoid")], "silu")
    if name == "mish":
        tanh = graph.node("Tanh", [graph.node("Softplus", [x], "softplus")], "tanh")
        return graph.node("Mul", [x, tanh], "mish")
    if name == "log_sigmoid":  # -softplus(-x)
        negated = graph.node("Neg", [x], "neg")
        return graph.node("Neg", [graph.node("Softplus", [negated], "softplus")], "log_sigmoid")
    if name == "gelu":  # 0.5 x (1 + erf(x / sqrt 2)); opset 17 has no Gelu op
        scaled = graph.node("Mul", [x, graph.constant(np.float32(1 / np.sqrt(2)), "rsqrt2")],
                            "scaled")
        one_plus = graph.node("Add", [graph.node("Erf", [scaled], "erf"),
                                      graph.constant(np.float32(1), "one")], "one_plus")
        half_x = graph.node("Mul", [x, graph.constant(np.float32(0.5), "half")], "half_x")
        return graph.node("Mul", [half_x, one_plus], "gelu")
    raise ValueError(f"to_onnx: {where} uses the activation {name!r}, which has no ONNX form "
                     "in minicnn/export.py; add it to _activation.")


def _config(layer):
    return layer.get_config()


def _emit_conv2d(graph, layer, x):
    from .ops.padding import padding_amounts

    config = _config(layer)
    kernel = layer.params["kernel"]                      # (kh, kw, in, out)
    (kh, kw), (sh, sw) = config["kernel_size"], config["strides"]
    h, w = _per_sample(layer.input_shape)[:2]
    top, bottom = padding_amounts(h, kh, sh, config["padding"])
    left, right = padding_amounts(w, kw, sw, config["padding"])
    inputs = [x, graph.constant(kernel.transpose(3, 2, 0, 1), f"{layer.name}_kernel")]
    if "bias" in layer.params:
        inputs.append(graph.constant(layer.params["bias"], f"{layer.name}_bias"))
    y = graph.node("Conv", inputs, layer.name, kernel_shape=[kh, kw], strides=[sh, sw],
                   pads=[top, left, bottom, right], dilations=[1, 1], group=1)
    return _activation(graph, config["activation"], y, 4, layer.where)


def _emit_max_pooling2d(graph, layer, x):
    from .ops.padding import padding_amounts

    config = _config(layer)
    (ph, pw), (sh, sw) = config["pool_size"], config["strides"]
    h, w = _per_sample(layer.input_shape)[:2]
    top, bottom = padding_amounts(h, ph, sh, config["padding"])
    left, right = padding_amounts(w, pw, sw, config["padding"])
    # ONNX's MaxPool never lets padding win the max, as minicnn and Keras.
    return graph.node("MaxPool", [x], layer.name, kernel_shape=[ph, pw], strides=[sh, sw],
                      pads=[top, left, bottom, right])


def _emit_flatten(graph, layer, x):
    return graph.node("Flatten", [x], layer.name, axis=1)


def _emit_dense(graph, layer, x):
    rank = len(_per_sample(layer.input_shape)) + 1
    kernel = graph.constant(layer.params["kernel"], f"{layer.name}_kernel")
    bias = (graph.constant(layer.params["bias"], f"{layer.name}_bias")
            if "bias" in layer.params else None)
    if rank == 2:
        y = graph.node("Gemm", [x, kernel] + ([bias] if bias else []), layer.name)
    else:  # Dense on (N, ..., features) maps the last axis: MatMul broadcasts over the rest
        y = graph.node("MatMul", [x, kernel], layer.name)
        if bias:
            y = graph.node("Add", [y, bias], f"{layer.name}_bias_add")
    return _activation(graph, _config(layer)["activation"], y, rank, layer.where)


def _emit_activation(graph, layer, x):
    name = _config(layer).get("activation") or type(layer).__name__.lower()
    return _activation(graph, name, x, len(_per_sample(layer.input_shape)) + 1, layer.where)


def _pads(layer, window, strides):
    from .ops.padding import padding_amounts

    h, w = _per_sample(layer.input_shape)[:2]
    top, bottom = padding_amounts(h, window[0], strides[0], layer.padding)
    left, right = padding_amounts(w, window[1], strides[1], layer.padding)
    return [top, left, bottom, right]


def _emit_average_pooling2d(graph, layer, x):
    # count_include_pad=0: a border window averages its real inputs only, as minicnn/Keras.
    return graph.node("AveragePool", [x], layer.name, kernel_shape=list(layer.pool_size),
                      strides=list(layer.strides),
                      pads=_pads(layer, layer.pool_size, layer.strides), count_include_pad=0)


def _emit_global_pooling2d(op):
    def emit(graph, layer, x):
        y = graph.node(op, [x], layer.name)  # NCHW -> (N, C, 1, 1)
        if layer.keepdims:
            return y  # the next layout change makes it (N, 1, 1, C)
        graph.layout = "NHWC"  # 2-D from here: no layout
        return graph.node("Flatten", [y], f"{layer.name}_flat", axis=1)
    return emit


def _emit_identity(graph, layer, x):
    return x


def _emit_reshape(graph, layer, x):
    shape = np.array([-1, *_per_sample(layer.output_shape)], dtype=np.int64)
    name = graph.fresh(f"{layer.name}_shape")
    graph.initializers.append(graph.onnx.numpy_helper.from_array(shape, name))
    return graph.node("Reshape", [x, name], layer.name)


def _emit_relu(graph, layer, x):
    """Keras's ReLU: min(x, max_value) where x > threshold, slope * (x - threshold) elsewhere."""
    slope, cap, threshold = layer.negative_slope, layer.max_value, layer.threshold
    if threshold == 0 and cap is None:
        if slope == 0:
            return graph.node("Relu", [x], layer.name)
        return graph.node("LeakyRelu", [x], layer.name, alpha=slope)
    if threshold == 0 and slope == 0:
        return _clip(graph, x, 0, cap, layer.name)
    t = graph.constant(np.float32(threshold), f"{layer.name}_threshold")
    top = x if cap is None else graph.node(
        "Min", [x, graph.constant(np.float32(cap), f"{layer.name}_cap")], f"{layer.name}_min")
    below = graph.node("Mul", [graph.node("Sub", [x, t], f"{layer.name}_sub"),
                               graph.constant(np.float32(slope), f"{layer.name}_slope")],
                       f"{layer.name}_below")
    return graph.node("Where", [graph.node("Greater", [x, t], f"{layer.name}_above"), top,
                                below], layer.name)


def _emit_softmax(graph, layer, x):
    return graph.node("Softmax", [x], layer.name, axis=layer.axis)


def _emit_batch_normalization(graph, layer, x):
    """Inference form: ONNX BatchNormalization with the moving statistics (channel axis 1),
    for 2-D inputs and NCHW images normalised over channels; otherwise the equivalent
    x * scale + shift, broadcast along the layer's axis."""
    params = layer.params
    features = params["moving_mean"].shape[0]
    gamma = params.get("gamma", np.ones(features, np.float32))
    beta = params.get("beta", np.zeros(features, np.float32))
    rank = len(_per_sample(layer.input_shape)) + 1
    axis = layer.axis % rank
    if rank == 2 or (rank == 4 and axis == 3):
        inputs = [x] + [graph.constant(a, f"{layer.name}_{n}") for n, a in (
            ("scale", gamma), ("bias", beta), ("mean", params["moving_mean"]),
            ("var", params["moving_variance"]))]
        return graph.node("BatchNormalization", inputs, layer.name, epsilon=layer.epsilon)
    inv = gamma / np.sqrt(params["moving_variance"].astype(np.float64) + layer.epsilon)
    shape = [1] * rank
    shape[axis] = features
    scale = graph.constant(inv.reshape(shape), f"{layer.name}_scale")
    shift = graph.constant((beta - params["moving_mean"] * inv).reshape(shape),
                           f"{layer.name}_shift")
    return graph.node("Add", [graph.node("Mul", [x, scale], f"{layer.name}_mul"), shift],
                      layer.name)


def _emit_rescaling(graph, layer, x):
    y = graph.node("Mul", [x, graph.constant(np.float32(layer.scale), f"{layer.name}_scale")],
                   f"{layer.name}_mul")
    return graph.node("Add", [y, graph.constant(np.float32(layer.offset),
                                                f"{layer.name}_offset")], layer.name)


@dataclass(frozen=True)
class OnnxFormat:
    """layout: the layout the layer's input must be in ("NCHW", "NHWC" or "any"), or a
    function of the layer giving it; emit(graph, layer, x) -> the output's name."""

    layout: str | Callable
    emit: Callable


def _emit_merge(graph, layer, xs):
    op = {"Add": "Sum", "Average": "Mean", "Maximum": "Max"}.get(type(layer).__name__)
    if op is not None:
        return graph.node(op, xs, layer.name)
    if type(layer).__name__ == "Subtract":
        return graph.node("Sub", xs, layer.name)
    y = xs[0]  # Multiply: ONNX's Mul takes two inputs
    for x in xs[1:]:
        y = graph.node("Mul", [y, x], layer.name)
    return y


def _emit_concatenate(graph, layer, xs):
    rank = len(layer.output_shape)
    return graph.node("Concat", xs, layer.name, axis=layer.axis % rank)


def _emit_model(graph, layer, x):
    """A model used as a layer: its graph, inline."""
    (y,) = _emit_graph(graph, layer.model._graph, [(x, graph.layout)])
    name, graph.layout = y
    return name


def _activation_layout(layer):
    name = _config(layer).get("activation") or type(layer).__name__.lower()
    return "NHWC" if name == "softmax" else "any"


def _batch_norm_layout(layer):
    rank = len(_per_sample(layer.input_shape)) + 1
    return "NCHW" if rank == 4 and layer.axis % rank == 3 else "NHWC"


ONNX_LAYERS = {
    "Conv2D": OnnxFormat("NCHW", _emit_conv2d),
    "MaxPooling2D": OnnxFormat("NCHW", _emit_max_pooling2d),
    "AveragePooling2D": OnnxFormat("NCHW", _emit_average_pooling2d),
    "GlobalAveragePooling2D": OnnxFormat("NCHW", _emit_global_pooling2d("GlobalAveragePool")),
    "GlobalMaxPooling2D": OnnxFormat("NCHW", _emit_global_pooling2d("GlobalMaxPool")),
    "Flatten": OnnxFormat("NHWC", _emit_flatten),
    "Reshape": OnnxFormat("NHWC", _emit_reshape),
    "Dense": OnnxFormat("NHWC", _emit_dense),
    "Activation": OnnxFormat(_activation_layout, _emit_activation),
    "ReLU": OnnxFormat("any", _emit_relu),
    "LeakyReLU": OnnxFormat("any", _emit_relu),
    "Softmax": OnnxFormat("NHWC", _emit_softmax),
    "BatchNormalization": OnnxFormat(_batch_norm_layout, _emit_batch_normalization),
    "Dropout": OnnxFormat("any", _emit_identity),  # the identity at inference
    "Rescaling": OnnxFormat("any", _emit_rescaling),
    "Add": OnnxFormat("any", _emit_merge),
    "Subtract": OnnxFormat("any", _emit_merge),
    "Multiply": OnnxFormat("any", _emit_merge),
    "Average": OnnxFormat("any", _emit_merge),
    "Maximum": OnnxFormat("any", _emit_merge),
    "Concatenate": OnnxFormat("NHWC", _emit_concatenate),
    "InputLayer": OnnxFormat("any", _emit_identity),  # a graph input, never a node
    "ModelLayer": OnnxFormat("any", _emit_model),
}


def _rank(shape):
    return len(shape[0]) if shape and isinstance(shape[0], (list, tuple)) else len(shape)


def _emit_graph(graph, model_graph, inputs):
    """Emit the nodes of a minicnn graph.Graph; inputs: [(onnx name, layout)] per model input
    -> [(onnx name, layout)] per output. Each value is transposed at most once per layout."""
    values = dict(zip(model_graph.inputs, inputs, strict=True))
    converted = {}

    def take(value, layout, rank):
        name, current = values[value]
        if rank != 4 or layout == "any" or layout == current:
            return name, current
        key = (value, layout)
        if key not in converted:
            graph.layout = current
            converted[key] = graph.to_layout(name, layout, rank)
        return converted[key], layout

    for node in model_graph.nodes:
        layer = node.layer
        entry = ONNX_LAYERS.get(type(layer).__name__)
        if entry is None:
            raise ValueError(
                f"to_onnx: {layer.where} has no ONNX form in minicnn/export.py (it knows "
                f"{', '.join(ONNX_LAYERS)}); add an OnnxFormat line to ONNX_LAYERS.")
        layout = entry.layout(layer) if callable(entry.layout) else entry.layout
        rank = _rank(layer.input_shape)
        if node.as_list:
            first_layout = values[node.inputs[0]][1]
            target = first_layout if layout == "any" else layout
            names = [take(v, target, rank)[0] for v in node.inputs]
            graph.layout = target if rank == 4 else first_layout
            y = entry.emit(graph, layer, names)
        else:
            x, graph.layout = take(node.inputs[0], layout, rank)
            y = entry.emit(graph, layer, x)
        values[node.output] = (y, graph.layout)
    return [values[v] for v in model_graph.outputs]


def _per_sample(shape):
    shape = tuple(shape)
    return shape[1:] if shape and shape[0] is None else shape


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------
def to_onnx_model(model):
    """The ONNX ModelProto of a built minicnn model (checked with onnx.checker)."""
    from . import __version__

    onnx = _import_onnx()
    model._require_built("to_onnx")
    if np.dtype(model.dtype) != np.float32:
        raise ValueError(f"to_onnx: the model computes in {np.dtype(model.dtype)}; export a "
                         "float32 model (the dtype minicnn trains in).")
    graph = _Graph(onnx)
    n_in, n_out = len(model._graph.inputs), len(model._graph.outputs)
    in_names = [INPUT_NAME] if n_in == 1 else [f"{INPUT_NAME}_{i}" for i in range(n_in)]
    out_names = [OUTPUT_NAME] if n_out == 1 else [f"{OUTPUT_NAME}_{i}" for i in range(n_out)]
    in_shapes = [model.input_shape] if model._single_input else model.input_shape
    out_shapes = [model.output_shape] if model._single_output else model.output_shape
    results = _emit_graph(graph, model._graph, [(name, "NHWC") for name in in_names])
    for (x, layout), name, shape in zip(results, out_names, out_shapes, strict=True):
        graph.layout = layout
        x = graph.to_layout(x, "NHWC", len(shape))
        graph.nodes.append(onnx.helper.make_node("Identity", [x], [name], name=name))

    def value_info(name, shape):
        return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                  ["N", *shape])
    proto = onnx.helper.make_model(
        onnx.helper.make_graph(graph.nodes, model.name,
                               [value_info(n, _per_sample(s)) for n, s in
                                zip(in_names, in_shapes, strict=True)],
                               [value_info(n, _per_sample(s)) for n, s in
                                zip(out_names, out_shapes, strict=True)],
                               graph.initializers),
        producer_name="minicnn", producer_version=__version__,
        opset_imports=[onnx.helper.make_opsetid("", OPSET)],
        doc_string=f"minicnn model {model.name!r}: inputs NHWC float32 "
                   f"{[('N', *_per_sample(s)) for s in in_shapes]}.")
    proto.ir_version = IR_VERSION
    onnx.checker.check_model(proto, full_check=True)
    return proto


def to_onnx(model, path):
    """Write `model` to `path` as an ONNX file (opset OPSET); returns the path.

    The graph's input "input" is NHWC float32 (N, *model.input_shape), its output "output"
    is what model.predict returns. The file is written under a temporary name and renamed.
    Raises ValueError naming the layer when one has no ONNX form, ImportError without onnx.
    """
    from .saving import atomic_write

    data = to_onnx_model(model).SerializeToString()
    with atomic_write(path, "wb", "to_onnx") as f:
        f.write(data)
    return Path(path)
