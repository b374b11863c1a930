"""Sequential: a chain of layers, the simple case of models.Model (same steps, same loop)."""

from .graph import Graph
from .layers import Layer
from .layers import get_class as layer_class
from .layers.base import sample_shape
from .models import Model


class Sequential(Model):
    """A linear stack of layers with Keras's API.

    model = Sequential([layers.Conv2D(25, (3, 3), activation='relu', input_shape=(28, 28, 1)), ...])
    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    history = model.fit(x, y, epochs=10); model.evaluate(x, y); model.predict(x)

    Layers that are already built (taken from another model) keep their weights, and are
    shared with that model, as in Keras.
    """

    def __init__(self, layers=None, name=None, dtype=None):
        super().__init__(name=name, dtype=dtype)
        self._layers = []
        for layer in layers or []:
            self.add(layer)

    @property
    def layers(self):
        return list(self._layers)

    def add(self, layer):
        """Append a layer; builds it at once when the input shape is known. A built layer is
        used as it is (its weights are kept, not re-initialised)."""
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
        if self.built:
            self._connect(layer, self._layers[-1].output_shape)
        self._layers.append(layer)
        if self.built:
            self._graph = Graph.chain(self._layers)
        elif len(self._layers) == 1 and layer.built:
            self.build(layer.input_shape)
        elif len(self._layers) == 1 and layer.declared_input_shape is not None:
            self.build((None, *layer.declared_input_shape))

    def pop(self):
        """Remove and return the last layer."""
        if not self._layers:
            raise ValueError("Sequential.pop: the model has no layers.")
        layer = self._layers.pop()
        self._graph = Graph.chain(self._layers) if self._layers else None
        self.built = self.built and bool(self._layers)
        return layer

    @staticmethod
    def _connect(layer, shape):
        """Build `layer` for inputs of `shape`, or check that its existing build fits."""
        if not layer.built:
            layer.build(shape)
        elif tuple(layer.input_shape[1:]) != tuple(shape[1:]):
            raise ValueError(
                f"Sequential: {layer.where} was built for inputs {layer.input_shape} but "
                f"receives {tuple(shape)}; it comes from a model with a different shape there.")

    def build(self, input_shape):
        """Build every layer in turn for inputs of `input_shape`: (None, 28, 28, 1), or the
        per-sample (28, 28, 1)."""
        if not self._layers:
            raise ValueError("Sequential.build: the model has no layers; add some first.")
        shape = tuple(input_shape)
        if not shape or shape[0] is not None:
            shape = (None, *sample_shape(shape, "Sequential.build"))
        for layer in self._layers:
            self._connect(layer, shape)
            shape = layer.output_shape
        self._graph = Graph.chain(self._layers)
        self.built = True

    def get_config(self):
        """{'name', 'layers': [{'class_name', 'config'}, ...]} -- JSON-serialisable."""
        return {"name": self.name,
                "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                           for layer in self._layers]}

    @classmethod
    def from_config(cls, config):
        """Rebuild an (untrained) model from get_config()'s output."""
        layers = [layer_class(spec["class_name"]).from_config(spec["config"])
                  for spec in config["layers"]]
        return cls(layers, name=config.get("name"))
