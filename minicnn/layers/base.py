"""The one interface every layer follows.

    layer.build(input_shape)          # shape with the batch axis, e.g. (None, 28, 28, 1)
    y  = layer.forward(x, ctx)        # saves into ctx what backward needs
    dx = layer.backward(dy, ctx)      # writes dL/dparam into ctx.grads, returns dL/dx

A layer owns its parameters (``layer.params``, arrays in Keras's order), its configuration and
its shape rules, and calls ops (minicnn.ops) for the math. It keeps nothing of a call: every
call gets its own ``ctx`` (minicnn.graph.Context), so one layer object can run in several
threads and several models at once. backward never updates weights (the optimizer does) and
never divides by the batch size (the loss does). ``layer(x)`` is the checked entry point for
direct use on arrays; models call ``forward``/``backward``.

Writing a layer: set ``params`` through ``weight_shapes`` (+ ``initializer_for``), implement
``compute_output_shape``, ``forward`` and ``backward`` with ops, and add its arguments to
``get_config``. Names ending in non_trainable_names are state, not trained (moving averages).
"""

import itertools
import re
from collections import defaultdict

import numpy as np

from .. import arguments, initializers, ops, regularizers
from ..backend import standardize_dtype
from ..graph import Context
from ..tensor import Tensor

_name_counts = defaultdict(int)

# Models cache what a step reads of their layers (the trainable weights, the regularized ones,
# the FLOPs: Model._step_plan) instead of walking every layer several times per step. Setting
# any layer attribute or replacing an entry of a layer's params gives this a new value, and a
# cache made under another value is rebuilt. Layers set no attribute while they run (a call's
# state lives in its ctx), so training keeps one value.
_versions = itertools.count(1)
structure_version = 0


def structure_changed():
    """Mark every model's cached view of its layers as stale (see structure_version)."""
    global structure_version
    structure_version = next(_versions)


class ParamDict(dict):
    """A layer's params: a dict that calls structure_changed() whenever an entry changes."""

    def _changed(method):  # noqa: N805  (a decorator used in the class body)
        def changing(self, *args, **kwargs):
            result = method(self, *args, **kwargs)
            structure_changed()
            return result
        changing.__name__, changing.__doc__ = method.__name__, method.__doc__
        return changing

    __setitem__ = _changed(dict.__setitem__)
    __delitem__ = _changed(dict.__delitem__)
    __ior__ = _changed(dict.__ior__)
    update = _changed(dict.update)
    pop = _changed(dict.pop)
    popitem = _changed(dict.popitem)
    setdefault = _changed(dict.setdefault)
    clear = _changed(dict.clear)
    del _changed


def _snake_case(class_name):
    name = re.sub(r"(.)([A-Z][a-z0-9]+)", r"\1_\2", class_name)
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def unique_name(class_name):
    """Keras-style automatic names: conv2d, conv2d_1, conv2d_2, ... (process-wide counter)."""
    base = _snake_case(class_name)
    count = _name_counts[base]
    _name_counts[base] += 1
    return base if count == 0 else f"{base}_{count}"


def normalize_padding(padding, where):
    """'valid' or 'same' (any case), as Keras."""
    if isinstance(padding, str) and padding.lower() in ("valid", "same"):
        return padding.lower()
    raise ValueError(f"{where}: padding must be 'valid' or 'same', got {padding!r}.")


def sample_shape(shape, where, arg="input_shape"):
    """A per-sample shape (no batch axis): a tuple of positive ints, e.g. (28, 28, 1)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    try:
        items = tuple(shape)
    except TypeError:
        items = None
    if not items:
        raise ValueError(f"{where}: {arg} must be a tuple of positive ints without the batch "
                         f"axis, e.g. (28, 28, 1); got {shape!r}.")
    try:
        return tuple(arguments.integer(d, arg, where, minimum=1) for d in items)
    except ValueError:
        raise ValueError(f"{where}: {arg} must be a tuple of positive ints without the batch "
                         f"axis, e.g. (28, 28, 1); got {shape!r}.") from None


def batch_shape(shape, where):
    """A full shape with the batch axis first, as Keras's build takes: (None, 28, 28, 1).
    The batch entry may be None or an int; it is returned as None."""
    try:
        items = tuple(shape)
    except TypeError:
        items = ()
    if len(items) < 2:
        raise ValueError(f"{where}: build expects a shape with the batch axis first, e.g. "
                         f"(None, 28, 28, 1); got {shape!r}.")
    return (None, *sample_shape(items[1:], where))


class Layer:
    """Base class. Attributes: name, dtype (float32 or float64), trainable, built, input_shape
    and output_shape (with the batch axis None, set by build), params (dict name -> array)."""

    #: the activation this layer ends with ('softmax', ...), for the loss's logits shortcut
    output_activation = None
    #: names in params that are state, not trained (BatchNormalization's moving averages)
    non_trainable_names = frozenset()
    #: True for layers that draw random numbers in training (Dropout): each step gets a seed
    stochastic = False

    def __init__(self, name=None, input_shape=None, dtype=None, trainable=True, **kwargs):
        if kwargs:
            raise TypeError(f"{type(self).__name__}: unknown keyword argument(s) "
                            f"{', '.join(sorted(kwargs))}.")
        self.name = name if name is not None else unique_name(type(self).__name__)
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"{type(self).__name__}: name must be a non-empty str, got {name!r}.")
        if "/" in self.name:
            raise ValueError(f"{type(self).__name__}: name {self.name!r} contains '/', which "
                             "weight paths use as a separator (as Keras refuses it too).")
        self._inbound_nodes = []  # the symbolic calls of this layer (functional API)
        self.dtype = standardize_dtype(dtype, f"{type(self).__name__} '{self.name}'")
        self.trainable = arguments.boolean(trainable, "trainable", self.where)
        self.declared_input_shape = None
        if input_shape is not None:
            self.declared_input_shape = sample_shape(input_shape, self.where)
        self.built = False
        self.input_shape = None
        self.output_shape = None
        self.params = {}

    def __setattr__(self, name, value):
        if name == "params" and type(value) is dict:
            value = ParamDict(value)
        object.__setattr__(self, name, value)
        structure_changed()

    # -- identity ---------------------------------------------------------------------------
    @property
    def where(self):
        """How error messages name this layer: "Conv2D 'conv2d_1'"."""
        return f"{type(self).__name__} '{self.name}'"

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} output_shape={self.output_shape}>"

    # -- building -----------------------------------------------------------------------------
    def build(self, input_shape):
        """Create the parameters for inputs of `input_shape` (batch axis first, e.g.
        (None, 28, 28, 1)) and fix the output shape. A built layer is never re-initialised."""
        input_shape = batch_shape(input_shape, self.where)
        self._validate_input_shape(input_shape)
        self.params = {name: self.initializer_for(name)(shape, self.dtype)
                       for name, shape in self.weight_shapes(input_shape).items()}
        self.input_shape = input_shape
        self.output_shape = self.compute_output_shape(input_shape)
        self.built = True

    def weight_shapes(self, input_shape):
        """{name: shape} of the parameters for `input_shape`, in Keras's order, computed
        without allocating anything (a model file is checked against it before loading)."""
        return {}

    def initializer_for(self, name):
        """The initializer (shape, dtype) -> array of parameter `name`."""
        raise NotImplementedError(f"{self.where}: no initializer for {name!r}.")

    def regularizer_for(self, name):
        """The regularizer (minicnn.regularizers) of parameter `name`, or None: its penalty
        joins the loss while the parameter is trainable (Model.losses)."""
        return None

    def _validate_input_shape(self, input_shape):
        """Raise ValueError naming the layer if it cannot take inputs of this shape."""

    def compute_output_shape(self, input_shape):
        """Output shape for an input shape (both with the batch axis)."""
        raise NotImplementedError

    # -- computation ----------------------------------------------------------------------------
    def forward(self, x, ctx):
        """x: (N, *input_shape[1:]) -> (N, *output_shape[1:]), same dtype."""
        raise NotImplementedError

    def backward(self, dy, ctx):
        """dy = dL/dy -> dL/dx (None when not ctx.need_input_grad); parameter gradients go to
        ctx.grads[name] (when ctx.need_param_grads)."""
        raise NotImplementedError

    def output_logits(self, ctx):
        """The input of this call's final softmax (layers whose output_activation is one)."""
        raise ValueError(f"{self.where} does not end with an activation.")

    def backward_from_logits(self, dz, ctx):
        """Backward from dL/d(logits) of the final activation, skipping its Jacobian."""
        raise ValueError(f"{self.where} does not end with an activation.")

    def __call__(self, x, training=False):
        """On keras.Input tensors (the functional API): records the call and returns the output
        KerasTensor. On arrays: a checked forward that builds on first call, validates x,
        converts its dtype and returns a new array, as `keras_layer(x)` does."""
        from ..functional import call_symbolic, is_symbolic
        if is_symbolic(x):
            return call_symbolic(self, x)
        if isinstance(x, (list, tuple)) and x and all(isinstance(a, np.ndarray) for a in x):
            return self._call_on_arrays(x, training)  # several inputs (the merge layers)
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(
                f"{self.where}: expected a batch (N, ...) of inputs, got an array of shape "
                f"{x.shape}. Add a batch axis, e.g. x[None]."
            )
        if not self.built:
            self.build((None, *x.shape[1:]))
        elif tuple(x.shape[1:]) != tuple(self.input_shape[1:]):
            raise ValueError(
                f"{self.where}: built for inputs of shape "
                f"(N, {', '.join(map(str, self.input_shape[1:]))}), got {x.shape}."
            )
        ctx = Context(training=bool(training), need_input_grad=False, need_param_grads=False)
        out = self.forward(np.ascontiguousarray(x, dtype=self.dtype), ctx)
        return np.array(out).view(Tensor)  # never a view of x; .numpy() as TensorFlow's

    def _call_on_arrays(self, xs, training):
        """layer([a, b]) for layers that take several inputs (the merge layers)."""
        xs = [np.ascontiguousarray(x, dtype=self.dtype) for x in xs]
        if not self.built:
            self.build([(None, *x.shape[1:]) for x in xs])
        ctx = Context(training=bool(training), need_input_grad=False, need_param_grads=False)
        return np.array(self.forward(xs, ctx))

    # -- the functional API -----------------------------------------------------------------
    def _only_node(self, what):
        if len(self._inbound_nodes) != 1:
            raise ValueError(
                f"{self.where} has {len(self._inbound_nodes)} calls on symbolic tensors; "
                f"layer.{what} is defined for exactly one. Call the layer on a keras.Input "
                "(or use it in a built model) first, or take the tensor from that call.")
        return self._inbound_nodes[0]

    @property
    def output(self):
        """The KerasTensor of this layer's (one) symbolic call, as Keras's layer.output."""
        return self._only_node("output").output

    @property
    def input(self):
        """The input KerasTensor(s) of this layer's (one) symbolic call."""
        node = self._only_node("input")
        return node.inputs if node.as_list else node.inputs[0]

    # -- weights --------------------------------------------------------------------------------
    @property
    def weights(self):
        """The parameter arrays themselves (not copies), in Keras's order."""
        return list(self.params.values())

    @property
    def trainable_weights(self):
        """The parameters the optimizer updates (none when trainable is False)."""
        if not self.trainable:
            return []
        return [v for k, v in self.params.items() if k not in self.non_trainable_names]

    @property
    def non_trainable_weights(self):
        """The parameters the optimizer leaves alone."""
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.params.values() if id(v) not in trainable]

    def get_weights(self):
        """Copies of the parameters in Keras's order: [kernel, bias] (or [] without weights)."""
        return [value.copy() for value in self.params.values()]

    def set_weights(self, weights):
        """Load arrays in Keras's order and shapes, copying into the existing arrays (so the
        optimizer's state stays attached to them)."""
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
        """Forward floating-point operations per sample (a multiply-add counts 2), once built."""
        return 0

    # -- configuration --------------------------------------------------------------------------
    def get_config(self):
        """Constructor arguments as plain JSON types; `type(layer)(**config)` rebuilds it."""
        config = {"name": self.name, "dtype": self.dtype.name, "trainable": self.trainable}
        if self.declared_input_shape is not None:
            config["input_shape"] = list(self.declared_input_shape)
        return config

    @classmethod
    def from_config(cls, config):
        """Inverse of get_config."""
        return cls(**config)


class ActivatedLayer(Layer):
    """A layer ending in y = activation(z + bias) (Conv2D, Dense): the activation is the op
    ops.bias_activation_forward, fused with the bias in the fast backend.

    Subclasses implement ``forward`` (saving the bias_activation cache last in ctx.saved) and
    ``_affine_backward(dz, ctx) -> (dx, dkernel)``; backward through the activation and the
    bias is shared here.
    """

    def __init__(self, activation=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", use_bias=True, kernel_regularizer=None,
                 bias_regularizer=None, **kwargs):
        super().__init__(**kwargs)
        from .. import activations
        self.activation = activations.get(activation, f"{self.where}: activation")
        self.kernel_initializer = initializers.get(kernel_initializer,
                                                   f"{self.where}: kernel_initializer")
        self.bias_initializer = initializers.get(bias_initializer,
                                                 f"{self.where}: bias_initializer")
        self.kernel_regularizer = regularizers.get(kernel_regularizer,
                                                   f"{self.where}: kernel_regularizer")
        self.bias_regularizer = regularizers.get(bias_regularizer,
                                                 f"{self.where}: bias_regularizer")
        self.use_bias = arguments.boolean(use_bias, "use_bias", self.where)

    @property
    def output_activation(self):
        return self.activation

    @property
    def kernel(self):
        """The kernel array (Keras's `layer.kernel`)."""
        return self.params.get("kernel")

    @property
    def bias(self):
        """The bias array, or None with use_bias=False."""
        return self.params.get("bias")

    def initializer_for(self, name):
        return self.kernel_initializer if name == "kernel" else self.bias_initializer

    def regularizer_for(self, name):
        return self.kernel_regularizer if name == "kernel" else self.bias_regularizer

    def output_logits(self, ctx):
        return ops.active.activation_input(ctx.saved[-1])

    def backward(self, dy, ctx):
        # dz = dL/d(z + bias) through the activation (and dbias, its sum), then the affine map.
        dz, dbias = ops.active.bias_activation_backward(
            dy, ctx.saved[-1], need_dbias=self.use_bias and ctx.need_param_grads)
        return self._backward_from_dz(dz, dbias, ctx)

    def backward_from_logits(self, dz, ctx):
        dbias = dz.reshape(-1, dz.shape[-1]).sum(axis=0) if self.use_bias else None
        return self._backward_from_dz(dz, dbias, ctx)

    def _backward_from_dz(self, dz, dbias, ctx):
        dx, dkernel = self._affine_backward(dz, ctx)
        if ctx.need_param_grads:
            ctx.grads["kernel"] = dkernel
            if self.use_bias:
                ctx.grads["bias"] = dbias
        return dx

    def _affine_backward(self, dz, ctx):
        """dL/dz -> (dL/dx or None, dL/dkernel) through the layer's affine map."""
        raise NotImplementedError

    def get_config(self):
        from .. import activations
        config = super().get_config()
        config.update(
            activation=activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=initializers.serialize(self.kernel_initializer),
            bias_initializer=initializers.serialize(self.bias_initializer),
            kernel_regularizer=regularizers.serialize(self.kernel_regularizer),
            bias_regularizer=regularizers.serialize(self.bias_regularizer),
        )
        return config


class SlidingWindow:
    """Mixin for layers that slide a window over (N, H, W, C) images (Conv2D, the poolings):
    the input check, Keras's 'valid'/'same' geometry, and the pads fixed at build.

    The class sets ``_window_arg`` (its argument's name, for messages) and ``_too_big_fix``;
    the instance has ``_window()`` (KH, KW), ``strides`` and ``padding``.
    """

    _window_arg = "pool_size"
    _too_big_fix = "a smaller pool_size, or fewer layers that shrink the image before this one"

    def _check_image_input(self, input_shape, hint=""):
        sample = input_shape[1:]
        if len(sample) != 3:
            raise ValueError(
                f"{self.where}: expects inputs of shape (N, height, width, channels), got "
                f"per-sample shape {sample}.{hint}"
            )
        window = self._window()
        for axis, size, k in zip(("height", "width"), sample[:2], window, strict=True):
            if self.padding == "valid" and k > size:
                raise ValueError(
                    f"{self.where}: {self._window_arg} {window} is bigger than the input {axis} "
                    f"{size} (input shape {sample}). Use padding='same', {self._too_big_fix}."
                )

    def _geometry(self, input_shape):
        return ops.conv_geometry(tuple(input_shape[1:3]), self._window(), self.strides,
                                 self.padding)

    def build(self, input_shape):
        super().build(input_shape)
        self._pads = self._geometry(self.input_shape)[2]
