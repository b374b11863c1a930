"""The one interface every layer follows.

    layer.build(input_shape)        # shape without the batch axis; creates layer.params
    y  = layer.forward(x, training)  # caches on the layer what backward needs
    dx = layer.backward(dy)          # fills layer.grads (keys/shapes as params), returns dL/dx

backward never updates weights: that is the optimizer's job. No layer divides by the batch
size: the loss does that once. `layer(x)` is the checked entry point for direct use (it builds,
validates and converts x); `forward` is the unchecked fast path the model calls.
"""

import copy
import re
import types
from collections import defaultdict

import numpy as np

from .. import activations, initializers
from ..backend import standardize_dtype

_name_counts = defaultdict(int)


def _snake_case(class_name):
    name = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(class_name):
    """Keras-style automatic names: conv2d, conv2d_1, conv2d_2, ... (process-wide counter)."""
    base = _snake_case(class_name)
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


def normalize_tuple(value, n, arg, where):
    """An int or a length-n sequence of positive ints, as Keras accepts, -> tuple of n ints."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        value = (int(value),) * n
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) != n or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in items
    ):
        raise ValueError(
            f"{where}: {arg} must be a positive int or a tuple of {n} positive ints, "
            f"got {value!r}. Example: {arg}=(3, 3) or {arg}=3."
        )
    return tuple(int(v) for v in items)


def normalize_padding(padding, where):
    """'valid' or 'same' (any case), as Keras."""
    if isinstance(padding, str) and padding.lower() in ("valid", "same"):
        return padding.lower()
    raise ValueError(f"{where}: padding must be 'valid' or 'same', got {padding!r}.")


class Workspace:
    """Scratch arrays a layer reuses between batches of the same shape (no per-batch malloc).

    ``ws.get(key)`` returns the dict of buffers for ``key`` (e.g. the input's shape and dtype),
    creating an empty one on first use; the layer fills it on a miss. At most ``size`` keys are
    kept (the training batch, the last short batch, the prediction batch); the oldest goes.
    Large arrays from np.empty are fresh pages from the OS each time (page faults on every
    touch), which cost as much as the arithmetic for MNIST-sized layers.
    """

    def __init__(self, size=3):
        self.size = size
        self._entries = {}

    def get(self, key):
        """(buffers dict, created: bool) for key."""
        entry = self._entries.pop(key, None)
        created = entry is None
        if created:
            entry = {}
            while len(self._entries) >= self.size:
                self._entries.pop(next(iter(self._entries)))
        self._entries[key] = entry  # re-insert: most recently used last
        return entry, created

    def clear(self):
        """Drop every buffer (e.g. after a large prediction batch)."""
        self._entries.clear()


class Layer:
    """Base class. Subclasses set `params` in `_create_params` and implement forward/backward.

    Attributes: name (str), dtype (float32 or float64), built (bool), input_shape and
    output_shape (tuples without the batch axis, set by build), params and grads (dicts of
    arrays keyed 'kernel'/'bias', empty for layers without weights).
    compute_input_gradient: when False (the model's first layer), backward may skip dL/dx and
    return None, saving the most expensive scatter of the step.
    """

    compute_input_gradient = True

    def __init__(self, name=None, input_shape=None, dtype=None, trainable=True):
        self.name = name if name is not None else unique_name(type(self).__name__)
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"{type(self).__name__}: name must be a non-empty str, got {name!r}.")
        self.dtype = standardize_dtype(dtype, f"{type(self).__name__} '{self.name}'")
        self.trainable = bool(trainable)
        self.declared_input_shape = None
        if input_shape is not None:
            self.declared_input_shape = self._check_shape_tuple(input_shape, "input_shape")
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self.params = {}
        self.grads = {}

    # -- identity ---------------------------------------------------------------------------
    @property
    def where(self):
        """How error messages name this layer: "Conv2D 'conv2d_1'"."""
        return f"{type(self).__name__} '{self.name}'"

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} output_shape={self.output_shape}>"

    def _check_shape_tuple(self, shape, arg):
        try:
            shape = tuple(shape)
        except TypeError:
            shape = None
        if not shape or not all(
            isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in shape
        ):
            raise ValueError(
                f"{self.where}: {arg} must be a tuple of positive ints without the batch axis, "
                f"e.g. (28, 28, 1); got {shape!r}."
            )
        return tuple(int(d) for d in shape)

    # -- building -----------------------------------------------------------------------------
    def build(self, input_shape):
        """Create the parameters for inputs of `input_shape` (no batch axis) and fix shapes."""
        input_shape = self._check_shape_tuple(input_shape, "input_shape")
        self._validate_input_shape(input_shape)
        self._create_params(input_shape)
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.input_shape = input_shape
        self.output_shape = self.compute_output_shape(input_shape)
        self.built = True

    def weight_shapes(self, input_shape):
        """{parameter name: shape} that build(input_shape) would create, in params order,
        computed without allocating anything (load_model checks a file against it before
        building). input_shape: per sample, no batch axis. Layers without weights return {}.
        Raises ValueError, as build does, for an input shape the layer cannot take."""
        self._validate_input_shape(self._check_shape_tuple(input_shape, "input_shape"))
        return {}

    def _validate_input_shape(self, input_shape):
        """Raise ValueError naming the layer if it cannot take inputs of this shape."""

    def _create_params(self, input_shape):
        """Fill self.params; layers without weights leave it empty."""

    def compute_output_shape(self, input_shape):
        """Output shape (no batch axis) for an input shape (no batch axis)."""
        raise NotImplementedError

    # -- computation ----------------------------------------------------------------------------
    def forward(self, x, training=False):
        """x: (N, *input_shape) -> (N, *output_shape), same dtype. Caches what backward needs."""
        raise NotImplementedError

    def backward(self, dy):
        """dy = dL/dy (N, *output_shape) -> dL/dx (N, *input_shape); fills self.grads."""
        raise NotImplementedError

    def __call__(self, x, training=False):
        """Checked forward for direct use: builds on first call, validates x, converts dtype."""
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(
                f"{self.where}: expected a batch (N, ...) of inputs, got an array of shape "
                f"{x.shape}. Add a batch axis, e.g. x[None]."
            )
        if not self.built:
            self.build(x.shape[1:])
        elif tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{self.where}: built for inputs of shape "
                f"(N, {', '.join(map(str, self.input_shape))}), got {x.shape}."
            )
        out = self.forward(np.ascontiguousarray(x, dtype=self.dtype), training=training)
        # forward may return a workspace buffer that the next call overwrites; direct callers
        # get their own array, as in Keras.
        return out.copy()

    # -- threads --------------------------------------------------------------------------------
    def replica(self):
        """A twin for another thread (see minicnn.parallel): it shares this layer's `params`
        dict (read-only during a step) but has its own grads, caches and workspace buffers,
        so two threads can run forward/backward on different samples at the same time.

        Instance attributes that shadow methods (e.g. profiling's timed wrappers) are not
        copied: the replica always runs the class's own forward and backward.
        """
        twin = copy.copy(self)
        for key, value in list(vars(twin).items()):
            if isinstance(getattr(type(self), key, None), types.FunctionType) and callable(value):
                del twin.__dict__[key]
        twin.grads = {key: np.zeros_like(value) for key, value in self.params.items()}
        if isinstance(getattr(self, "_workspace", None), Workspace):
            twin._workspace = Workspace(self._workspace.size)
        return twin

    # -- weights --------------------------------------------------------------------------------
    def get_weights(self):
        """Copies of the parameters in Keras's order: [kernel, bias] (or [] without weights)."""
        return [value.copy() for value in self.params.values()]

    def set_weights(self, weights):
        """Load [kernel, bias] (Keras's order and shapes), copying into the existing arrays."""
        if not self.built:
            raise ValueError(
                f"{self.where}: set_weights before the layer is built; build it first "
                "(give the model an input_shape, or call layer.build(input_shape))."
            )
        weights = list(weights)
        if len(weights) != len(self.params):
            raise ValueError(
                f"{self.where}: set_weights expected {len(self.params)} arrays "
                f"({', '.join(self.params) or 'none'}), got {len(weights)}."
            )
        for (key, current), new in zip(self.params.items(), weights, strict=True):
            new = np.asarray(new)
            if new.shape != current.shape:
                raise ValueError(
                    f"{self.where}: {key} must have shape {current.shape}, got {new.shape}. "
                    "Check that the weights come from a layer with the same configuration."
                )
            if not np.all(np.isfinite(new)):
                raise ValueError(f"{self.where}: {key} contains NaN or inf values.")
            current[...] = new

    def count_params(self):
        """Number of scalar parameters."""
        return int(sum(v.size for v in self.params.values()))

    def flops(self):
        """Forward floating-point operations per image (multiply-adds count 2), once built."""
        return 0

    # -- configuration --------------------------------------------------------------------------
    def get_config(self):
        """JSON-serialisable constructor arguments; `type(layer)(**config)` rebuilds the layer."""
        config = {"name": self.name, "dtype": self.dtype.name, "trainable": self.trainable}
        if self.declared_input_shape is not None:
            config["input_shape"] = list(self.declared_input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        """Inverse of get_config."""
        return cls(**config)


class ActivatedLayer(Layer):
    """A layer computing y = activation(z) after an affine map z = f(x; params).

    The model's fused softmax + cross-entropy path calls `backward_preactivation` with
    dL/dz directly, skipping the activation's Jacobian.
    """

    def __init__(self, activation=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", use_bias=True, **kwargs):
        super().__init__(**kwargs)
        self.activation = activations.get(activation, f"{self.where}: activation")
        self.kernel_initializer = initializers.get(kernel_initializer,
                                                   f"{self.where}: kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer,
                                                 f"{self.where}: bias_initializer")
        self.use_bias = bool(use_bias)
        self._output = None

    def backward(self, dy):
        return self.backward_preactivation(self.activation.backward(dy, self._output))

    def backward_preactivation(self, dz):
        """dz = dL/dz for the pre-activation z -> dL/dx; fills self.grads."""
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config.update(
            activation=activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
        )
        return config
