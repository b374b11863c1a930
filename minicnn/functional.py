"""The functional API: symbolic tensors, layers called on them, and models over any graph.

    inputs = keras.Input(shape=(28, 28, 1))
    x = layers.Conv2D(16, 3, activation="relu")(inputs)       # records a call, computes nothing
    y = layers.Add()([x, layers.Conv2D(16, 3, padding="same")(x)])
    outputs = layers.Dense(10, activation="softmax")(layers.Flatten()(y))
    model = keras.Model(inputs, outputs)                        # a graph.Graph, run as any model

A ``KerasTensor`` has a shape (batch axis None) and a dtype, and remembers the ``SymbolicNode``
(the layer call) that made it. ``Functional`` walks back from the outputs to the inputs,
orders the calls so each comes after what it reads, numbers the values, and hands the
resulting ``graph.Graph`` to the same executor Sequential uses (Sequential builds its chain by
these very calls). A layer called twice is two nodes with one set of weights; gradients meeting
at a fork are summed by the executor.

A model is used as a layer (in a Sequential, or called on a tensor) through ``ModelLayer``,
which runs the inner model's graph inside one node of the outer one.
"""

from __future__ import annotations

import numpy as np

from . import arguments
from .graph import Graph, Node, WorkspaceStore, run_backward, run_forward
from .layers.base import Layer, sample_shape

__all__ = ["KerasTensor", "InputLayer", "Input", "SymbolicNode", "Functional", "ModelLayer",
           "is_symbolic", "call_symbolic", "trace"]


class KerasTensor:
    """A symbolic tensor: a shape (batch axis None) and a dtype, no values.

    It comes from ``Input(...)`` or from calling a layer on other KerasTensors; ``node`` is
    that call (None for an input), ``layer`` the layer that made it.
    """

    __array_priority__ = 1000  # NumPy defers to our __array__ refusal below

    def __init__(self, shape, dtype, name, node=None, input_layer=None):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.name = name
        self.node = node
        self.input_layer = input_layer

    @property
    def layer(self):
        """The layer whose call made this tensor (an InputLayer for an input)."""
        return self.input_layer if self.node is None else self.node.layer

    @property
    def ndim(self):
        return len(self.shape)

    def __repr__(self):
        return f"<KerasTensor shape={self.shape}, dtype={self.dtype.name}, name={self.name}>"

    def __array__(self, *args, **kwargs):
        raise TypeError(
            f"{self!r} is symbolic (it holds no values): it stands for a layer's output while a "
            "model is being defined. Build the model with keras.Model(inputs, outputs) and call "
            "model.predict(x) on data; for arithmetic between tensors use layers such as "
            "layers.Add() or layers.Multiply()."
        )

    def _no_arithmetic(self, *args):
        raise TypeError(
            f"minicnn: arithmetic on symbolic tensors ({self.name}) is not supported; use the "
            "merge layers layers.Add(), Subtract(), Multiply(), Average(), Maximum() or "
            "Concatenate() to combine layer outputs."
        )

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _no_arithmetic
    __truediv__ = __rtruediv__ = __matmul__ = __neg__ = __pow__ = _no_arithmetic


def is_symbolic(x):
    """True for a KerasTensor, or a list/tuple holding one."""
    if isinstance(x, KerasTensor):
        return True
    return isinstance(x, (list, tuple)) and any(isinstance(t, KerasTensor) for t in x)


class SymbolicNode:
    """One recorded call: `layer` applied to `inputs` (KerasTensors) gave `output`."""

    __slots__ = ("layer", "inputs", "output", "as_list")

    def __init__(self, layer, inputs, as_list):
        self.layer, self.inputs, self.as_list = layer, list(inputs), as_list
        self.output = None

    def connected_to(self):
        """Keras's "Connected to" text: layer_name[node_index][tensor_index] per input."""
        parts = []
        for tensor in self.inputs:
            layer = tensor.layer
            index = layer._inbound_nodes.index(tensor.node) if tensor.node is not None else 0
            parts.append(f"{layer.name}[{index}][0]")
        return parts


class InputLayer(Layer):
    """The layer behind keras.Input: it fixes the shape of a model input and is never run.

    shape: per-sample shape, e.g. (28, 28, 1); batch_shape: with the batch axis instead.
    """

    def __init__(self, shape=None, batch_size=None, dtype=None, batch_shape=None, name=None,
                 **kwargs):
        kwargs.pop("input_shape", None)
        super().__init__(name=name, dtype=dtype, **kwargs)
        if batch_shape is not None:
            shape = tuple(batch_shape)[1:]
            batch_size = tuple(batch_shape)[0]
        if shape is None:
            raise ValueError(f"{self.where}: give shape=(...) without the batch axis, e.g. "
                             "keras.Input(shape=(28, 28, 1)).")
        self.sample_shape = sample_shape(shape, self.where, "shape")
        self.batch_size = (None if batch_size is None
                           else arguments.integer(batch_size, "batch_size", self.where, 1))
        self.input_shape = self.output_shape = (None, *self.sample_shape)
        self.built = True
        self._output = KerasTensor(self.output_shape, self.dtype, self.name, input_layer=self)

    @property
    def output(self):
        """The model input tensor this layer stands for."""
        return self._output

    def compute_output_shape(self, input_shape):
        return input_shape

    def forward(self, x, ctx):
        return x

    def backward(self, dy, ctx):
        return dy

    def get_config(self):
        config = {"shape": list(self.sample_shape), "dtype": self.dtype.name,
                  "name": self.name}
        if self.batch_size is not None:
            config["batch_size"] = self.batch_size
        return config


def Input(shape=None, batch_size=None, dtype=None, name=None, batch_shape=None):  # noqa: N802
    """A symbolic model input, as keras.Input: Input(shape=(28, 28, 1)) -> a KerasTensor of
    shape (None, 28, 28, 1). dtype: float32 (default) or float64."""
    return InputLayer(shape=shape, batch_size=batch_size, dtype=dtype, name=name,
                      batch_shape=batch_shape).output


def call_symbolic(layer, x):
    """layer(x) for KerasTensor x (or a list of them): build the layer for x's shape if needed,
    check it fits, record the call and return the output KerasTensor."""
    from .models import Model
    if isinstance(layer, Model):
        layer = layer.as_layer()
    as_list = isinstance(x, (list, tuple))
    tensors = list(x) if as_list else [x]
    for t in tensors:
        if not isinstance(t, KerasTensor):
            raise TypeError(f"{layer.where}: called on a list mixing symbolic tensors and "
                            f"{type(t).__name__}; pass only layer outputs or keras.Input(...).")
        if t.dtype != layer.dtype:
            raise ValueError(f"{layer.where} is {layer.dtype} but its input {t.name} is "
                             f"{t.dtype}; give the layers and keras.Input the same dtype.")
    shapes = [t.shape for t in tensors]
    shape = shapes if as_list else shapes[0]
    if not layer.built:
        layer.build(shape)
    elif _sample_shapes(layer.input_shape) != _sample_shapes(shape):
        raise ValueError(
            f"{layer.where} was built for inputs {layer.input_shape} but is called on "
            f"{tuple(shape) if not as_list else [tuple(s) for s in shape]}. A layer called "
            "again must get inputs of the same shape (it shares its weights).")
    node = SymbolicNode(layer, tensors, as_list)
    index = len(layer._inbound_nodes)
    node.output = KerasTensor(layer.compute_output_shape(shape), layer.dtype,
                              layer.name if index == 0 else f"{layer.name}_{index}", node)
    layer._inbound_nodes.append(node)
    return node.output


def _sample_shapes(shape):
    if shape and isinstance(shape[0], (list, tuple)):
        return [tuple(s[1:]) for s in shape]
    return tuple(shape[1:])


def trace(inputs, outputs, where="Model"):
    """The graph from input KerasTensors to output KerasTensors -> (Graph, nodes in order).

    Raises ValueError when an output needs a tensor that is not computed from the inputs
    ("graph disconnected"), or when an input does not reach any output.
    """
    input_ids = {id(t): i for i, t in enumerate(inputs)}
    order, seen, reached_inputs = [], set(), set()

    def visit(tensor, consumer):
        if id(tensor) in input_ids:
            reached_inputs.add(id(tensor))
            return
        node = tensor.node
        if node is None:
            raise ValueError(
                f"{where}: graph disconnected: {consumer} needs {tensor.name} "
                f"(from {tensor.layer.where}), which is not among the model's inputs "
                f"{[t.name for t in inputs]}. Pass it in inputs=[...], or build the layers on "
                "the inputs you give.")
        if id(node) in seen:
            return
        seen.add(id(node))
        for t in node.inputs:
            visit(t, node.layer.where)
        order.append(node)

    # Iterative deepening is not needed at these sizes; recursion depth = the graph's depth.
    for t in outputs:
        if not isinstance(t, KerasTensor):
            raise TypeError(f"{where}: outputs must be KerasTensors (layer outputs), got "
                            f"{type(t).__name__}.")
        visit(t, "an output")
    for t in inputs:
        if id(t) not in reached_inputs and not any(t is o for o in outputs):
            raise ValueError(
                f"{where}: the input {t.name} {t.shape} is not connected to any output; remove "
                "it from inputs=[...] or use it in the layers that lead to the outputs.")
    value_of = {id(t): i for i, t in enumerate(inputs)}
    nodes = []
    for k, node in enumerate(order):
        value_of[id(node.output)] = len(inputs) + k
        ins = [value_of[id(t)] for t in node.inputs]
        nodes.append(Node(node.layer, ins, len(inputs) + k, k, node.as_list))
    graph = Graph(list(range(len(inputs))), nodes, [value_of[id(t)] for t in outputs])
    return graph, order


class ModelLayer(Layer):
    """A model used as a layer: one node of the outer graph runs the inner model's graph.

    Attribute access falls through to the model (`.layers`, `.summary()`, ...), and
    `trainable` is the model's: setting `inner.trainable = False` freezes it in the outer
    model too. Its parameters are the inner model's, named 'layer_name/param'.
    """

    def __init__(self, model):
        object.__setattr__(self, "model", model)
        if not model.built:
            raise ValueError(f"{model.name}: a model used as a layer must be built first; give "
                             "its first layer input_shape=..., or start it with keras.Input.")
        self.name = model.name
        self.dtype = model.dtype
        self.declared_input_shape = None
        self.built = True
        self.input_shape = model.input_shape
        self.output_shape = model.output_shape
        self._inbound_nodes = []
        if len(model._graph.outputs) != 1:
            raise ValueError(f"{model.name}: a model used as a layer must have one output, not "
                             f"{len(model._graph.outputs)}.")

    def __getattr__(self, name):
        return getattr(object.__getattribute__(self, "model"), name)

    @property
    def where(self):
        return f"{type(self.model).__name__} '{self.model.name}'"

    @property
    def trainable(self):
        return self.model.trainable

    @trainable.setter
    def trainable(self, value):
        self.model.trainable = value

    @property
    def params(self):
        return dict(self.model.named_weights())

    @property
    def stochastic(self):
        return self.model._stochastic

    @property
    def output_activation(self):
        return self.model.output_layer.output_activation

    @property
    def trainable_weights(self):
        return self.model.trainable_weights

    @property
    def non_trainable_weights(self):
        return self.model.non_trainable_weights

    def weight_shapes(self, input_shape):
        return {k: v.shape for k, v in self.params.items()}

    def compute_output_shape(self, input_shape):
        return self.model.output_shape

    def build(self, input_shape):
        pass

    def _run(self, x, ctx):
        tape = ctx._tape
        ws = ctx.workspace("model")
        store = None if ws is None else ws.setdefault("store", WorkspaceStore())
        seed = int(ctx.rng().integers(2**63)) if ctx.training and self.stochastic else None
        inputs = list(x) if isinstance(x, (list, tuple)) else [x]
        (y,), inner = run_forward(
            self.model._graph, inputs, ctx.training, store, seed, ctx.need_input_grad,
            ctx.shard_index, ctx.shard_count, tape.group if tape is not None else None)
        ctx.save(inner)
        return y

    def forward(self, x, ctx):
        return self._run(x, ctx)

    def _collect(self, param_grads, input_grads, ctx):
        if ctx.need_param_grads:
            for name, array in self.params.items():
                if id(array) in param_grads:
                    ctx.grads[name] = param_grads[id(array)]
        return input_grads[0] if len(input_grads) == 1 else input_grads

    def backward(self, dy, ctx):
        (inner,) = ctx.saved
        return self._collect(*run_backward(inner, [dy]), ctx)

    def output_logits(self, ctx):
        return ctx.saved[0].output_logits()

    def backward_from_logits(self, dz, ctx):
        (inner,) = ctx.saved
        return self._collect(*run_backward(inner, [dz], (0,)), ctx)

    def flops(self):
        return self.model.flops()

    def count_params(self):
        return self.model.count_params()

    def get_weights(self):
        return self.model.get_weights()

    def set_weights(self, weights):
        self.model.set_weights(weights)

    def get_config(self):
        return self.model.get_config()

    def __repr__(self):
        return f"<{type(self.model).__name__} name={self.name!r} (as a layer)>"


from .models import Model  # noqa: E402  (Functional is a Model; models imports this lazily)


class Functional(Model):
    """A model over any directed acyclic graph of layer calls: keras.Model(inputs, outputs).

    inputs / outputs: a KerasTensor or a list of them (the model then takes and returns lists).
    """

    def __init__(self, inputs, outputs, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self.inputs = [inputs] if isinstance(inputs, KerasTensor) else list(inputs)
        # One input takes a plain array (as Keras, even when given as [input]).
        self._single_input = len(self.inputs) == 1
        self._single_output = isinstance(outputs, KerasTensor)
        self.outputs = [outputs] if self._single_output else list(outputs)
        if not self.inputs or not self.outputs:
            raise ValueError(f"{self.name}: keras.Model needs at least one input and one output.")
        for t in self.inputs:
            if not isinstance(t, KerasTensor):
                raise TypeError(f"{self.name}: inputs must be keras.Input(...) tensors, got "
                                f"{type(t).__name__}.")
        self._graph, self._symbolic_nodes = trace(self.inputs, self.outputs, self.name)
        layers, seen = [], set()
        for t in self.inputs:
            layers.append(t.layer)  # the InputLayer itself, as Keras lists it
            seen.add(id(t.layer))
        for node in self._symbolic_nodes:
            if id(node.layer) not in seen:
                seen.add(id(node.layer))
                layers.append(node.layer)
        names = [layer.name for layer in layers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"{self.name}: layer names must be unique in a model; "
                             f"{duplicates} appear more than once (give name=...).")
        dtypes = {layer.dtype for layer in layers}
        if len(dtypes) > 1:
            names = sorted(d.name for d in dtypes)
            raise ValueError(f"{self.name}: the layers mix dtypes {names}; give every layer "
                             "and keras.Input the same dtype.")
        self._layers = layers
        self.built = True

    @property
    def layers(self):
        return list(self._layers)

    @property
    def input_shape(self):
        shapes = [t.shape for t in self.inputs]
        return shapes[0] if self._single_input else shapes

    @property
    def output_shape(self):
        shapes = [t.shape for t in self.outputs]
        return shapes[0] if self._single_output else shapes

    @property
    def input(self):
        return self.inputs[0] if self._single_input else self.inputs

    @property
    def output(self):
        return self.outputs[0] if self._single_output else self.outputs

    @property
    def dtype(self):
        return self.inputs[0].dtype

    def get_config(self):
        """{'name', 'layers': [{'class_name', 'config', 'inbound': [[layer, node, 0], ...]
        per call}], 'inputs': [[layer, 0, 0]], 'outputs': [[layer, node, 0]]}: JSON."""
        from .layers import serialize
        node_index = {}
        for layer in self._layers:
            for i, node in enumerate(layer._inbound_nodes):
                node_index[id(node)] = i
        in_model = {id(n) for n in self._symbolic_nodes}
        specs = []
        for layer in self._layers:
            spec = serialize(layer)
            calls = []
            for node in layer._inbound_nodes:
                if id(node) in in_model:
                    calls.append({"args": [self._ref(t, node_index) for t in node.inputs],
                                  "as_list": node.as_list})
            spec["inbound"] = calls
            specs.append(spec)
        return {"name": self.name, "layers": specs,
                "inputs": [self._ref(t, node_index) for t in self.inputs],
                "outputs": [self._ref(t, node_index) for t in self.outputs],
                "single_input": self._single_input, "single_output": self._single_output}

    @staticmethod
    def _ref(tensor, node_index):
        if tensor.node is None:
            return [tensor.layer.name, 0]
        return [tensor.layer.name, node_index[id(tensor.node)]]

    @classmethod
    def from_config(cls, config):
        """Rebuild an (untrained) model from get_config()'s output: the layers, then the
        recorded calls replayed in order."""
        from .layers import deserialize
        outputs = {}  # (layer name, call index) -> KerasTensor
        pending = []
        for spec in config["layers"]:
            layer = (InputLayer(**spec["config"]) if spec["class_name"] == "InputLayer"
                     else deserialize({k: v for k, v in spec.items() if k != "inbound"}))
            if isinstance(layer, InputLayer):
                outputs[(layer.name, 0)] = layer.output
            for call in spec.get("inbound", []):
                pending.append((layer, call))
        progress = True
        done = [False] * len(pending)
        while progress and not all(done):
            progress = False
            for k, (layer, call) in enumerate(pending):
                if done[k] or not all(tuple(ref) in outputs for ref in call["args"]):
                    continue
                args = [outputs[tuple(ref)] for ref in call["args"]]
                name = layer.name
                index = sum(1 for j in range(k) if done[j] and pending[j][0] is layer)
                out = layer(args if call["as_list"] else args[0])
                outputs[(name, index)] = out
                done[k] = progress = True
        if not all(done):
            raise ValueError("Functional.from_config: the layer calls cannot be replayed "
                             "(a call reads a tensor no earlier call makes).")
        inputs = [outputs[tuple(ref)] for ref in config["inputs"]]
        outs = [outputs[tuple(ref)] for ref in config["outputs"]]
        return cls(inputs[0] if config.get("single_input", True) and len(inputs) == 1 else inputs,
                   outs[0] if config.get("single_output", True) and len(outs) == 1 else outs,
                   name=config.get("name"))
