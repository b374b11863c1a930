"""Sequential: a chain of layers, the simple case of the functional machinery.

Building a Sequential model is what a learner would write with the functional API: one
``Input``, each layer called on the previous output, and ``functional.trace`` turning the calls
into the graph that models.Model runs (same steps, same loop, same executor).
"""

from .functional import Input, KerasTensor, call_symbolic, trace
from .layers import Layer, deserialize, serialize
from .layers.base import sample_shape
from .models import Model


class Sequential(Model):
    """A linear stack of layers with Keras's API.

    model = Sequential([layers.Conv2D(25, (3, 3), activation='relu', input_shape=(28, 28, 1)), ...])
    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    history = model.fit(x, y, epochs=10); model.evaluate(x, y); model.predict(x)

    The first entry may be keras.Input(shape=...). Layers that are already built (taken from
    another model) keep their weights and are shared with that model, as in Keras; a model
    among the layers is used as one layer.
    """

    def __init__(self, layers=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._layers = []
        self.inputs, self.outputs = [], []
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self):
        return list(self._layers)

    @property
    def input_shape(self):
        return self.inputs[0].shape if self.built else None

    @property
    def output_shape(self):
        return self.outputs[0].shape if self.built else None

    @property
    def input(self):
        return self.inputs[0]

    @property
    def output(self):
        return self.outputs[0]

    def add(self, layer):
        """Append a layer; builds it at once when the input shape is known. A built layer is
        used as it is (its weights are kept, not re-initialised)."""
        if isinstance(layer, KerasTensor) and layer.node is None:  # keras.Input(shape=...)
            if self._layers or self.inputs:
                raise ValueError("Sequential.add: keras.Input(...) can only come first.")
            self._start(layer)
            return
        if isinstance(layer, Model):
            layer = layer.as_layer()
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Sequential.add: expected a minicnn layer (e.g. layers.Dense(10)), got "
                f"{type(layer).__name__}: {layer!r}."
            )
        if any(existing is layer for existing in self._layers):
            raise ValueError(f"Sequential.add: {layer.where} is already in this model; a "
                             "Sequential model uses each layer once.")
        if any(existing.name == layer.name for existing in self._layers):
            raise ValueError(f"Sequential.add: the model already has a layer named "
                             f"{layer.name!r}; layer names must be unique (give name=...).")
        if self._dtype_override is not None and layer.dtype != self._dtype_override:
            if layer.built:
                raise ValueError(f"Sequential: {layer.where} is already built as {layer.dtype}; "
                                 f"create it with dtype='{self._dtype_override.name}'.")
            layer.dtype = self._dtype_override
        if self._layers and layer.dtype != self._layers[0].dtype:
            raise ValueError(
                f"Sequential.add: {layer.where} is {layer.dtype} but the model is "
                f"{self._layers[0].dtype}; give all layers the same dtype "
                "(or Sequential(dtype=...))."
            )
        if self._layers and layer.declared_input_shape is not None and not layer.built:
            raise ValueError(
                f"Sequential.add: only the first layer takes input_shape; {layer.where} got "
                f"input_shape={layer.declared_input_shape}. Remove it."
            )
        self._layers.append(layer)
        try:
            if self.inputs:  # built: call the new layer on the current output
                self._append_call(layer)
            elif len(self._layers) == 1 and layer.built:
                self.build(layer.input_shape)
            elif len(self._layers) == 1 and layer.declared_input_shape is not None:
                self.build((None, *layer.declared_input_shape))
        except BaseException:
            self._layers.pop()
            raise

    def _start(self, tensor):
        if self._dtype_override is not None and tensor.dtype != self._dtype_override:
            raise ValueError(f"Sequential: keras.Input is {tensor.dtype} but the model is "
                             f"{self._dtype_override}; give Input(dtype=...) the same dtype.")
        self.inputs, self.outputs = [tensor], [tensor]
        self.built = False

    def _append_call(self, layer):
        out = call_symbolic(layer, self.outputs[0])
        self.outputs = [out]
        self._retrace()

    def _retrace(self):
        self._graph, _ = trace(self.inputs, self.outputs, f"Sequential '{self.name}'")
        self.built = True

    def pop(self):
        """Remove and return the last layer."""
        if not self._layers:
            raise ValueError("Sequential.pop: the model has no layers.")
        layer = self._layers.pop()
        if self.built and layer._inbound_nodes and layer._inbound_nodes[-1].output is \
                self.outputs[0]:
            node = layer._inbound_nodes.pop()
            self.outputs = [node.inputs[0]]
            if self._layers:
                self._retrace()
            else:
                self._graph, self.built = None, False
        return layer

    def build(self, input_shape=None):
        """Build every layer in turn for inputs of `input_shape`: (None, 28, 28, 1), or the
        per-sample (28, 28, 1); without it, for the keras.Input the model starts with."""
        if not self._layers:
            raise ValueError("Sequential.build: the model has no layers; add some first.")
        if input_shape is None:
            if not self.inputs:
                raise ValueError("Sequential.build: give an input_shape, e.g. "
                                 "model.build((None, 28, 28, 1)).")
            start = self.inputs[0]
        else:
            shape = tuple(input_shape)
            if not shape or shape[0] is not None:
                shape = (None, *sample_shape(shape, "Sequential.build"))
            start = Input(shape=shape[1:], dtype=self._layers[0].dtype)
        self.inputs, self.outputs = [start], [start]
        for layer in self._layers:
            self.outputs = [call_symbolic(layer, self.outputs[0])]
        self._retrace()

    def get_config(self):
        """{'name', 'layers': [{'class_name', 'config'}, ...]} -- JSON-serialisable."""
        config = {"name": self.name, "layers": [serialize(layer) for layer in self._layers]}
        if self.built:  # as Keras's build_input_shape
            config["build_input_shape"] = list(self.inputs[0].shape)
        return config

    @classmethod
    def from_config(cls, config):
        """Rebuild an (untrained) model from get_config()'s output."""
        model = cls([deserialize(spec) for spec in config["layers"]], name=config.get("name"))
        shape = config.get("build_input_shape")
        if not model.built and shape:
            model.build((None, *shape[1:]))
        return model
