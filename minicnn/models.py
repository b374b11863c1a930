"""Model and Sequential: the training loop, and the steps it is made of.

One training step is ``Model.train_step``, the same as Keras 3's, overridable::

    y_pred, tape = self.forward(x, training=True)                     # layers in order
    loss, dy, from_logits = self.compute_loss_and_gradient(y, y_pred, sample_weight, tape)
    grads = self.backward(dy, tape, from_logits)                      # layers reversed
    self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
    return self.compute_metrics(x, y, y_pred, sample_weight)

The loss includes the weight-regularization penalties (``model.losses``, Keras's) and the
gradients their derivatives: see "regularization losses" below.

``fit`` cuts the data into batches and calls ``train_step`` on each, ``evaluate`` calls
``test_step``, ``predict`` calls ``predict_step``; all three call the callbacks' Keras hooks.
``forward``/``backward`` run the graph of layers (minicnn/graph.py), split over the cores by
``self.strategy`` (minicnn/parallel.py) when a batch is big enough; the loss does the one
division by the batch size (minicnn/losses.py).
"""

import math

import numpy as np

from . import arguments
from . import losses as losses_module
from . import metrics as metrics_module
from . import optimizers as optimizers_module
from .backend import get_rng, standardize_dtype
from .callbacks import CallbackList, History, Progbar, ProgbarLogger
from .graph import run_forward
from .inputs import (
    BatchGatherer,
    as_batch,
    check_sample_weights,
    check_validation_split,
    check_verbose,
    check_x,
    check_y,
    n_samples,
    rows,
)
from .layers import base as layer_base
from .layers.base import unique_name
from .ops.threads import blas_threads
from .parallel import BatchSplit
from .profiling import TrainingProfile
from .tensor import as_tensor


class LossNotFiniteError(FloatingPointError):
    """Training stopped because the loss became NaN or inf. `.history` holds the finished
    epochs; the model's weights and optimizer state are those at the end of the last one.
    `.loss` is the value (nan or inf). With callbacks.TerminateOnNaN, fit stops quietly
    instead, as Keras's does."""

    def __init__(self, message, history=None, loss=math.nan):
        super().__init__(message)
        self.history = history
        self.loss = loss


class NonFiniteOutputError(ValueError, ArithmeticError):
    """predict produced NaN or inf: the model's weights have blown up or the data is extreme."""


# Samples per forward call in predict (see Model.predict).
PREDICT_CHUNK = 128


class _NullPhase:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_NULL_PHASE = _NullPhase()


def unpack_data(data):
    """(x,), (x, y) or (x, y, sample_weight) -> (x, y, sample_weight), as Keras's
    keras.utils.unpack_x_y_sample_weight."""
    if not isinstance(data, tuple):
        return data, None, None
    if len(data) == 1:
        return data[0], None, None
    if len(data) == 2:
        return data[0], data[1], None
    if len(data) == 3:
        return data
    raise ValueError(f"unpack_data: expected (x,), (x, y) or (x, y, sample_weight), got a "
                     f"tuple of {len(data)}.")


def _loss_and_gradient(loss_fn, layer, y, y_pred, sample_weight, tape, position):
    """One output's (loss, dy, from_logits): from the softmax's logits when the output layer
    ends in the activation the loss can take them from (see compute_loss_and_gradient)."""
    shortcut = loss_fn.logits_activation
    if tape is not None and shortcut is not None and layer.output_activation == shortcut:
        loss, dlogits = loss_fn.value_and_gradient_from_logits(
            y, tape.output_logits(position), sample_weight)
        return loss, dlogits, True
    loss, dy = loss_fn.value_and_gradient(y, y_pred, sample_weight)
    return loss, dy, False


class _Shapes:
    """What check_x/check_y read of a model, for one input or output of a multi-io model."""

    built = True

    def __init__(self, shape, dtype, loss=None):
        self.input_shape = self.output_shape = shape
        self.dtype, self.loss = dtype, loss


def _as_list(data, names, arg, where, kind="inputs"):
    """A list (in order) or a dict (by name) of per-input/-output arrays -> a list."""
    if isinstance(data, dict):
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"{where}: {arg} has no entry for {missing}; the model's names are "
                             f"{names}.")
        return [data[n] for n in names]
    if not isinstance(data, (list, tuple)) or len(data) != len(names):
        got = len(data) if isinstance(data, (list, tuple)) else f"one {type(data).__name__}"
        raise ValueError(f"{where}: the model has {len(names)} {kind} {names}, so {arg} must "
                         f"be a list of {len(names)} arrays or a dict by name; got {got}.")
    return list(data)


def _per_output(value, names, arg, nested=False):
    """compile's one-for-all / list / dict forms -> a list in output order."""
    if isinstance(value, dict):
        unknown = set(value) - set(names)
        if unknown:
            raise ValueError(f"compile: {arg} names unknown outputs {sorted(unknown)}; the "
                             f"outputs are {names}.")
        default = [] if nested else None
        out = [value.get(name, default) for name in names]
        if not nested and any(v is None for v in out):
            missing = [n for n, v in zip(names, out, strict=True) if v is None]
            raise ValueError(f"compile: {arg} has no entry for the outputs {missing}.")
        return [list(v) if nested and isinstance(v, (list, tuple)) else
                ([v] if nested else v) for v in out]
    if isinstance(value, (list, tuple)) and not nested:
        if len(value) != len(names):
            raise ValueError(f"compile: {len(value)} {arg} for a model with {len(names)} "
                             f"outputs {names}; give one per output, or a dict by name.")
        return list(value)
    if nested:
        items = list(value)
        if len(items) == len(names) and all(isinstance(v, (list, tuple)) for v in items):
            return [list(v) for v in items]
        return [items for _ in names]
    return [value for _ in names]


class _StepPlan:
    """What every step reads of a model's layers, gathered once (Model._step_plan): walking the
    layers for it twice per step cost more Python time than a small model's arithmetic."""

    __slots__ = ("version", "trainable_weights", "trainable_ids", "regularized", "flops",
                 "stochastic", "output_layer")

    def __init__(self, model, version):
        self.version = version
        layers = model.layers
        # Keyed by id, once each (a shared layer appears once); a dict keeps the first order.
        trainable = {id(value): value for layer in layers for value in layer.trainable_weights}
        self.trainable_weights = list(trainable.values())
        self.trainable_ids = list(trainable)
        # [(param, regularizer)]: each trainable weight whose layer gives it a regularizer
        # (kernel_regularizer=...), once. Frozen weights have none, as in Keras.
        self.regularized, seen = [], set()
        for layer in layers:
            for name, param in layer.params.items():
                regularizer = layer.regularizer_for(name)
                if regularizer is not None and id(param) in trainable and id(param) not in seen:
                    seen.add(id(param))
                    self.regularized.append((param, regularizer))
        nodes = model._graph.nodes if model._graph is not None else []
        self.flops = sum(node.layer.flops() for node in nodes) if model.built else 0
        self.stochastic = any(node.layer.stochastic for node in nodes)
        self.output_layer = None
        if model._graph is not None:
            value = model._graph.outputs[0]
            self.output_layer = next((node.layer for node in reversed(nodes)
                                      if node.output == value), None)


class Model:
    """A graph of layers with Keras's training API (compile, fit, evaluate, predict, ...).

    Subclasses fix the graph: Sequential (a chain of layers). dtype: None keeps the layers'
    dtype (float32 by default); 'float64' makes every layer float64 (for gradient checks).
    """

    def __new__(cls, *args, **kwargs):
        # keras.Model(inputs, outputs) builds a functional model, as in Keras.
        if cls is Model and (args or "inputs" in kwargs or "outputs" in kwargs):
            from .functional import Functional
            return super().__new__(Functional)
        return super().__new__(cls)

    def __init__(self, name=None, dtype=None):
        if type(self) is Model:
            raise TypeError(
                "Model: give inputs and outputs, keras.Model(inputs, outputs), built from "
                "keras.Input(...) and layer calls; or use models.Sequential([...]). Subclassing "
                "Model with a custom call() is not supported by minicnn (it has no autodiff): "
                "write a Layer with forward/backward, or override train_step.")
        self.name = name if name is not None else unique_name(type(self).__name__)
        self._dtype_override = None if dtype is None else standardize_dtype(dtype, self.name)
        self._graph = None
        self.built = False
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self._compiled_metrics = []  # [(log name, metric, weighted, output index)] from compile
        self.loss_tracker = metrics_module.Mean(name="loss")
        self.stop_training = False
        self.history = None
        self.strategy = BatchSplit()
        self._profile = None
        self._single_input = self._single_output = True
        self._output_losses = None  # per output: (loss, weight), for multi-output models
        self._metric_outputs = []  # per compiled metric: the output it watches
        self._layer_view = None
        self._plan = None

    def __setattr__(self, name, value):
        object.__setattr__(self, name, value)
        if name == "_graph":  # a new graph: this model's plan and any outer model's are stale
            layer_base.structure_changed()

    def _step_plan(self):
        """The _StepPlan of the current layers (rebuilt after any change to them)."""
        plan, version = self._plan, layer_base.structure_version
        if plan is None or plan.version != version:  # setting _graph changes the version
            plan = self._plan = _StepPlan(self, version)
        return plan

    # -- structure ------------------------------------------------------------------------------
    @property
    def layers(self):
        """The layers, each once, in the order they run."""
        raise NotImplementedError

    def get_layer(self, name=None, index=None):
        """A layer by name or by position in `layers`, as Keras's get_layer (one of the two)."""
        if (index is None) == (name is None):
            raise ValueError("get_layer: give a layer name or an index, not "
                             f"{'both' if index is not None else 'neither'}, e.g. "
                             "model.get_layer('dense') or model.get_layer(index=0).")
        if index is not None:
            index = arguments.integer(index, "index", "get_layer")
            if not -len(self.layers) <= index < len(self.layers):
                raise ValueError(f"get_layer: index {index} is out of range for a model of "
                                 f"{len(self.layers)} layers.")
            return self.layers[index]
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"get_layer: no layer named {name!r}; the layers are "
                         f"{[layer.name for layer in self.layers]}.")

    @property
    def dtype(self):
        return self.layers[0].dtype if self.layers else np.dtype(np.float32)

    @property
    def input_shape(self):
        """Keras's input shape with the batch axis: (None, 28, 28, 1)."""
        return self.layers[0].input_shape if self.built else None

    @property
    def output_shape(self):
        """Keras's output shape with the batch axis: (None, 10)."""
        return self.layers[-1].output_shape if self.built else None

    def _require_built(self, where):
        if not self.built:
            raise ValueError(
                f"{where}: the model is not built yet. Give the first layer input_shape=..., "
                "call model.build(input_shape), or fit/predict on data first."
            )

    def named_weights(self):
        """[(path, array)] for every parameter, paths 'layer_name/param' as Keras's weight
        paths, each array once even when its layer is used twice."""
        seen, named = set(), []
        for layer in self.layers:
            for key, value in layer.params.items():
                if id(value) not in seen:
                    seen.add(id(value))
                    named.append((f"{layer.name}/{key}", value))
        return named

    @property
    def weights(self):
        """Every parameter array (the arrays themselves), layer by layer, Keras's order."""
        return [value for _, value in self.named_weights()]

    @property
    def trainable_weights(self):
        """The arrays the optimizer updates: trainable layers' trainable parameters, each once
        (a shared layer's once), in layer order."""
        return list(self._step_plan().trainable_weights)

    trainable_variables = trainable_weights

    @property
    def non_trainable_weights(self):
        """The parameter arrays the optimizer leaves alone (frozen layers, moving averages)."""
        trainable = {id(v) for v in self.trainable_weights}
        return [v for v in self.weights if id(v) not in trainable]

    @property
    def _stochastic(self):
        return self._step_plan().stochastic

    @property
    def output_layer(self):
        """The layer whose call produces the (first) output."""
        return self._step_plan().output_layer

    def flops(self):
        """Forward FLOPs per sample, summed over the layer calls."""
        return self._step_plan().flops

    def output_layers(self):
        """The layer producing each output, in output order."""
        producer = {node.output: node.layer for node in self._graph.nodes}
        return [producer.get(v) for v in self._graph.outputs]

    @property
    def output_names(self):
        """The names of the output layers (keys of per-output losses, metrics and logs)."""
        return [layer.name for layer in self.output_layers()]

    @property
    def trainable(self):
        """False when no layer trains; setting it sets every layer's (as Keras's)."""
        return any(layer.trainable for layer in self.layers)

    @trainable.setter
    def trainable(self, value):
        value = arguments.boolean(value, "trainable", self.name)
        for layer in self.layers:
            layer.trainable = value

    def as_layer(self):
        """This model as a layer of another model (one object per model: the same weights)."""
        if self._layer_view is None:
            from .functional import ModelLayer
            self._layer_view = ModelLayer(self)
        return self._layer_view

    # -- data checks --------------------------------------------------------------------------
    def _check_inputs(self, x, where, convert=True, arg="x"):
        """check_x for each model input (a list of arrays, or a dict by input name, for a
        model with several inputs)."""
        if self._single_input:
            if isinstance(x, (list, tuple)) and len(x) == 1 and isinstance(x[0], np.ndarray):
                x = x[0]  # [x] for a model of one input, as Keras takes it
            return check_x(self, x, where, arg=arg, convert=convert)
        names = [t.name for t in self.inputs]
        items = _as_list(x, names, arg, where)
        checked = [check_x(_Shapes(t.shape, self.dtype), xi, where, arg=f"{arg}[{name!r}]",
                           convert=convert) for t, xi, name in zip(self.inputs, items, names,
                                                                     strict=True)]
        lengths = {len(c) for c in checked}
        if len(lengths) > 1:
            raise ValueError(f"{where}: the inputs have different numbers of samples "
                             f"{[len(c) for c in checked]}; every input needs one row per sample.")
        return checked

    def _check_targets(self, y, n, where, arg="y"):
        """check_y for each output (a list in output order, or a dict by output name)."""
        if self._single_output:
            return check_y(self, y, n, where, arg=arg)
        names = self.output_names
        items = _as_list(y, names, arg, where, "outputs")
        shapes = self.output_shape
        return [check_y(_Shapes(shape, self.dtype, loss_fn), yi, n, where, arg=f"{arg}[{name!r}]")
                for (loss_fn, _), shape, yi, name in zip(self._output_losses, shapes, items, names,
                                                         strict=True)]

    # -- compile --------------------------------------------------------------------------------
    def compile(self, optimizer="rmsprop", loss=None, metrics=None, loss_weights=None,
                weighted_metrics=None):
        """Choose the optimizer ('adam', 'adamw', 'adagrad', 'rmsprop' (the default, as
        Keras's), 'sgd' or an instance),
        the loss (a name such as 'mse', a losses function or instance) and metrics (e.g.
        ['accuracy', 'mae']); metrics ignore sample weights and weighted_metrics use them, as
        in Keras (minicnn/metrics.py). A model with several outputs takes one loss for all, or
        a list (output order) or dict (output layer names) of losses; loss_weights, metrics and
        weighted_metrics likewise (a plain metrics list applies to every output)."""
        if loss is None:
            raise ValueError(
                "compile: loss is required, e.g. loss='sparse_categorical_crossentropy'.")
        self.optimizer = optimizers_module.get(optimizer)
        # What the user passed, for model files (saving.py, keras_format.py).
        self._metric_identifiers = (metrics, weighted_metrics)
        if self._single_output:
            self.loss = losses_module.get(loss)
            self._compiled_metrics = [
                (name, metric, weighted, 0) for name, metric, weighted in
                metrics_module.compile_metrics(metrics, weighted_metrics, self.loss)]
            self._output_losses = None
        else:
            names = self.output_names
            per_loss = _per_output(loss, names, "loss")
            weights = _per_output(1.0 if loss_weights is None else loss_weights, names,
                                  "loss_weights")
            self._output_losses = [
                (losses_module.get(fn), arguments.real(w, "loss_weights", "compile", minimum=0))
                for fn, w in zip(per_loss, weights, strict=True)]
            self.loss = self._output_losses[0][0]
            per_metrics = _per_output(metrics or [], names, "metrics", nested=True)
            per_weighted = _per_output(weighted_metrics or [], names, "weighted_metrics",
                                       nested=True)
            self._compiled_metrics = []
            for i, (name, given, weighted) in enumerate(zip(names, per_metrics, per_weighted,
                                                            strict=True)):
                # Keras prefixes each output's metric names with the output's name.
                self._compiled_metrics += [
                    (f"{name}_{log_name}", metric, is_weighted, i)
                    for log_name, metric, is_weighted in metrics_module.compile_metrics(
                        given, weighted, self._output_losses[i][0])]
            self._output_trackers = [metrics_module.Mean(name=f"{name}_loss") for name in names]
        self.metrics = [metric for _, metric, _, _ in self._compiled_metrics]
        self._metric_outputs = [i for _, _, _, i in self._compiled_metrics]

    @property
    def metrics_names(self):
        """'loss' (and per-output losses), then the compiled metrics' log names, in the order
        evaluate returns them."""
        per_output = ([] if self._single_output or self._output_losses is None
                      else [t.name for t in self._output_trackers])
        return ["loss", *per_output, *(name for name, _, _, _ in self._compiled_metrics)]

    def _require_compiled(self, where):
        if self.loss is None:
            raise ValueError(
                f"{where}: the model is not compiled. Call model.compile(optimizer='adam', "
                "loss='sparse_categorical_crossentropy', metrics=['accuracy']) first."
            )

    # -- the pieces of a step --------------------------------------------------------------
    def forward(self, x, training=False, input_grads=False):
        """Run the layers on x (N, *input_shape[1:]) -> (y_pred, tape).

        The tape holds each layer call's context for backward. y_pred may be a reused buffer:
        copy it to keep it past the next pass. input_grads=True makes backward also return
        dL/dx (gradient checks).
        """
        plan = self._step_plan()
        seed = int(get_rng().integers(2**63)) if training and plan.stochastic else None
        inputs = [x] if self._single_input else list(x)
        outputs, tape = self.strategy.forward(self._graph, inputs, training, plan.flops, seed,
                                              input_grads)
        return (outputs[0] if self._single_output else outputs), tape

    def backward(self, dy, tape, from_logits=False, return_input_grads=False):
        """Backpropagate dL/d(y_pred) through the tape -> gradients, one per
        trainable_weights entry (None for one the loss does not reach).

        from_logits: dy is the gradient w.r.t. the logits of the output layer's final softmax
        (compute_loss_and_gradient's shortcut); that layer then starts below its softmax.
        return_input_grads: also return dL/dx (forward must have had input_grads=True).
        """
        if self._single_output:
            dys, logits = [dy], ((0,) if from_logits else ())
        else:
            dys = list(dy)
            flags = (from_logits if isinstance(from_logits, (list, tuple))
                     else [from_logits] * len(dys))
            logits = tuple(i for i, flag in enumerate(flags) if flag)
        param_grads, input_grads = self.strategy.backward(tape, dys, logits)
        penalty_grads = self.regularization_gradients()
        ids = self._step_plan().trainable_ids
        grads = ([_add_gradients(param_grads.get(k), penalty_grads.get(k)) for k in ids]
                 if penalty_grads else [param_grads.get(k) for k in ids])
        if not return_input_grads:
            return grads
        return grads, (input_grads[0] if self._single_input else input_grads)

    def compute_loss_and_gradient(self, y, y_pred, sample_weight=None, tape=None):
        """The batch loss and its gradient -> (loss: float, dy, from_logits: bool).

        loss is the compiled loss plus the regularization penalties (sum of `self.losses`), as
        Keras's compute_loss; dy is the compiled loss's gradient (backward adds the penalties'
        gradients to the weights'). When the output layer ends in the activation whose logits
        the loss can take (a softmax before a cross-entropy of probabilities), the loss is
        computed from those logits and dy is dL/d(logits), as Keras's TensorFlow backend does:
        stable, and learning never stalls on a probability that rounded to 0 (see
        minicnn/losses.py). Otherwise dy = dL/dy_pred.
        """
        penalty = sum(self.losses)
        if not self._single_output:
            loss, dys, flags = self._multi_output_loss(y, y_pred, sample_weight, tape)
            return loss + penalty, dys, flags
        loss, dy, from_logits = _loss_and_gradient(self.loss, self.output_layer, y, y_pred,
                                                   sample_weight, tape, 0)
        return loss + penalty, dy, from_logits

    def _multi_output_loss(self, ys, y_preds, sample_weight, tape):
        """sum_i w_i L_i over the outputs; dy and from_logits per output."""
        total, dys, flags = 0.0, [], []
        self._last_output_losses = []
        for i, ((loss_fn, weight), layer) in enumerate(zip(self._output_losses,
                                                             self.output_layers(), strict=True)):
            value, dy, from_logits = _loss_and_gradient(loss_fn, layer, ys[i], y_preds[i],
                                                        sample_weight, tape, i)
            total += weight * value
            dys.append(dy * dy.dtype.type(weight) if weight != 1 else dy)
            flags.append(from_logits)
            self._last_output_losses.append(value)
        return total, dys, flags

    # -- regularization losses (Keras's model.losses) ------------------------------------------
    @property
    def losses(self):
        """The weight-regularization penalties, one float per regularized trainable weight
        (Keras's model.losses); compute_loss_and_gradient adds their sum to the loss."""
        return [regularizer(param) for param, regularizer in self._step_plan().regularized]

    def regularization_gradients(self):
        """{id(param): d penalty / d param} for the weights behind `losses`; backward adds
        each to its weight's gradient."""
        return {id(param): regularizer.gradient(param)
                for param, regularizer in self._step_plan().regularized}

    def compute_metrics(self, x, y, y_pred, sample_weight=None, loss=None):
        """Update the loss tracker (with `loss`, weighted by the batch size) and the compiled
        metrics with this batch -> logs {name: running value over the epoch so far}."""
        n = len(y_pred) if self._single_output else len(y_pred[0])
        if loss is not None:
            self.loss_tracker.update_state(loss, sample_weight=n)
        if not self._single_output and loss is not None:
            for tracker, value in zip(self._output_trackers, self._last_output_losses,
                                      strict=True):
                tracker.update_state(value, sample_weight=n)
        for _, metric, weighted, i in self._compiled_metrics:
            y_true, y_out = (y, y_pred) if self._single_output else (y[i], y_pred[i])
            metric.update_state(y_true, y_out, sample_weight if weighted else None)
        return self.get_metrics_result()

    def get_metrics_result(self):
        """{'loss': ..., metric name: ...}: the running values."""
        logs = {"loss": float(self.loss_tracker.result())}
        if not self._single_output and self._output_losses is not None:
            logs.update((t.name, float(t.result())) for t in self._output_trackers)
        logs.update((name, float(m.result())) for name, m, _, _ in self._compiled_metrics)
        return logs

    def reset_metrics(self):
        """Start the loss tracker and every metric afresh (fit does so each epoch)."""
        self.loss_tracker.reset_state()
        for metric in [*self.metrics, *getattr(self, "_output_trackers", [])]:
            metric.reset_state()

    def _phase(self, name):
        return self._profile.phase(name) if self._profile is not None else _NULL_PHASE

    # -- the steps ---------------------------------------------------------------------------
    def train_step(self, data):
        """One optimizer step on one batch (x, y[, sample_weight]) -> logs.

        A non-finite loss raises LossNotFiniteError before any weight is changed.
        """
        x, y, sample_weight = unpack_data(data)
        y_pred, tape = self.forward(x, training=True)
        with self._phase("loss + metrics"):
            loss, dy, from_logits = self.compute_loss_and_gradient(y, y_pred, sample_weight,
                                                                   tape)
        if not math.isfinite(loss):
            tape.release()
            raise LossNotFiniteError(f"the loss became {loss}", loss=loss)
        grads = self.backward(dy, tape, from_logits)
        with self._phase("optimizer"):
            self.optimizer.apply_gradients(zip(grads, self.trainable_weights, strict=True))
        with self._phase("loss + metrics"):
            return self.compute_metrics(x, y, y_pred, sample_weight, loss)

    def test_step(self, data):
        """Loss and metrics of one batch (x, y[, sample_weight]), no update -> logs."""
        x, y, sample_weight = unpack_data(data)
        y_pred, tape = self.forward(x, training=False)
        loss, _, _ = self.compute_loss_and_gradient(y, y_pred, sample_weight, tape)
        return self.compute_metrics(x, y, y_pred, sample_weight, loss)

    def predict_step(self, data):
        """The model's output for one batch of inputs -> an array (may be a reused buffer)."""
        x, _, _ = unpack_data(data)
        y_pred, _ = self.forward(x, training=False)
        return y_pred

    # -- fit ---------------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=None, epochs=1, verbose="auto", callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, class_weight=None,
            sample_weight=None, initial_epoch=0, validation_batch_size=None, validation_freq=1,
            profile=False):
        """Train for `epochs` passes over (x, y); returns a History (history.history[...]).

        x: (N, *input_shape[1:]) of any real dtype (each batch is converted to the model's
        dtype as it is gathered: a float64 data set is never copied whole); y: (N,) integer
        labels (sparse loss) or (N, K) one-hot. batch_size: 32 when None. validation_split
        takes the *last* fraction of the data before shuffling, as Keras. class_weight
        ({class: weight}) and sample_weight ((N,)) weight each sample's loss.
        profile=True times every phase of every step (see minicnn.profiling) and stores a
        TrainingProfile as history.profile; print(history.profile) shows the table.
        """
        where = "fit"
        self._require_compiled(where)
        batch_size = 32 if batch_size is None else arguments.integer(
            batch_size, "batch_size", where, minimum=1)
        epochs = arguments.integer(epochs, "epochs", where, minimum=0)
        initial_epoch = arguments.integer(initial_epoch, "initial_epoch", where, minimum=0)
        validation_freq = arguments.integer(validation_freq, "validation_freq", where, minimum=1)
        verbose_given, verbose = verbose, check_verbose(verbose, where)
        shuffle = arguments.boolean(shuffle, "shuffle", where)
        validation_split = check_validation_split(validation_split, where)
        x = self._check_inputs(x, where, convert=False)
        y = self._check_targets(y, n_samples(x), where)
        if sample_weight is not None and class_weight is not None:
            raise ValueError("fit: give sample_weight or class_weight, not both (as Keras); to "
                             "combine them, multiply the class weights into sample_weight.")
        weights = check_sample_weights(sample_weight, None,
                                       y if self._single_output else y[0], n_samples(x), where)
        if validation_data is not None:
            val = self._unpack_validation(validation_data)
        elif validation_split > 0:
            split_at = int(n_samples(x) * (1 - validation_split))
            if split_at == 0 or split_at == n_samples(x):
                raise ValueError(
                    f"fit: validation_split={validation_split} of {n_samples(x)} samples leaves "
                    "an empty training or validation set; use more data or another split."
                )
            val = (rows(x, split_at, None), rows(y, split_at, None),
                   None if weights is None else weights[split_at:])
            x, y = rows(x, 0, split_at), rows(y, 0, split_at)
            weights = None if weights is None else weights[:split_at]
        else:
            val = None
        if class_weight is not None:  # the training samples only, as Keras
            weights = check_sample_weights(None, class_weight,
                                           y if self._single_output else y[0], n_samples(x),
                                           where)
        val_batch_size = batch_size if validation_batch_size is None else arguments.integer(
            validation_batch_size, "validation_batch_size", where, minimum=1)

        n = n_samples(x)
        steps = -(-n // batch_size)
        history = History()
        callback_list = list(callbacks or [])
        profiler = None
        if profile:
            shards = self.strategy.shards_for(min(batch_size, n), self.flops())
            profiler = TrainingProfile([layer.name for layer in self.layers], n, batch_size,
                                       shards)
            callback_list.insert(0, profiler)
        if verbose and not any(isinstance(c, ProgbarLogger) for c in callback_list):
            callback_list.append(ProgbarLogger())
        callback_list.append(history)
        params = {"verbose": verbose_given, "epochs": epochs, "steps": steps}
        history.profile = profiler
        cbs = CallbackList(callback_list, self, params)
        with blas_threads():
            self.strategy.refresh()
            self._profile = self.strategy.profiler = profiler
            try:
                self._fit_loop(x, y, weights, val, batch_size, val_batch_size, epochs,
                               initial_epoch, shuffle, validation_freq, steps, cbs, history)
            finally:
                self._profile = self.strategy.profiler = None
        self.history = history
        return history

    def _fit_loop(self, x, y, weights, val, batch_size, val_batch_size, epochs, initial_epoch,
                  shuffle, validation_freq, steps, cbs, history):
        n = n_samples(x)
        batch = BatchGatherer(x, y, weights, min(batch_size, n), self.dtype)
        self.stop_training = False
        logs = {}
        cbs.call("on_train_begin", logs)
        listens_begin = cbs.listens("on_train_batch_begin")
        for epoch in range(initial_epoch, epochs):
            self.reset_metrics()
            cbs.call("on_epoch_begin", epoch, {})
            # The state at the start of the epoch, put back if the loss stops being finite.
            snapshot = self._snapshot()
            with self._phase("data: shuffle"):
                order = get_rng().permutation(n) if shuffle else np.arange(n)
            for step in range(steps):
                with self._phase("data: gather"):
                    data = batch.gather(order[step * batch_size:(step + 1) * batch_size])
                if listens_begin:
                    cbs.call("on_train_batch_begin", step, {})
                try:
                    logs = self.train_step(data)
                except LossNotFiniteError as exc:  # raised before any update
                    logs = {**self.get_metrics_result(), "loss": exc.loss}
                loss = logs.get("loss", 0.0)
                # A non-finite loss stops training with minicnn's error, unless a callback
                # takes it over (TerminateOnNaN: stop quietly, as Keras).
                if not math.isfinite(loss) and not cbs.handles_non_finite_loss:
                    self._stop_not_finite(f"the loss became {loss}", epoch, step, snapshot,
                                          history)
                with self._phase("callbacks"):
                    cbs.call("on_train_batch_end", step, logs)
                if self.stop_training:  # set by a callback in on_train_batch_end, as Keras
                    break
                if not math.isfinite(loss):  # the callback did not stop training after all
                    self._stop_not_finite(f"the loss became {loss}", epoch, step, snapshot,
                                          history)
            epoch_logs = dict(logs)
            if val is not None and (epoch + 1) % validation_freq == 0:
                val_logs = self._evaluate_arrays(*val, val_batch_size, cbs)
                epoch_logs.update({"val_" + k: v for k, v in val_logs.items()})
            cbs.call("on_epoch_end", epoch, epoch_logs)
            logs = epoch_logs
            if self.stop_training:
                break
        cbs.call("on_train_end", logs)

    def _snapshot(self):
        weights = [w.copy() for w in self.weights]
        optimizer = self.optimizer
        return weights, optimizer.get_state(self.weights), optimizer.iterations

    def _restore(self, snapshot):
        weights, optimizer_state, iterations = snapshot
        for current, saved in zip(self.weights, weights, strict=True):
            current[...] = saved
        self.optimizer.set_state(optimizer_state, self.weights)
        self.optimizer.iterations = iterations

    def _stop_not_finite(self, what, epoch, step, snapshot, history):
        self._restore(snapshot)
        history.model = self
        self.history = history
        raise LossNotFiniteError(
            f"fit: {what} at epoch {epoch + 1}, batch {step + 1}; training stopped. The weights "
            f"and optimizer state are restored to those at the start of epoch {epoch + 1} "
            "(the end of the last finished epoch, in error.history). Likely fixes: scale "
            "inputs to [0, 1] (x / 255), lower the learning rate (e.g. "
            "optimizers.Adam(learning_rate=1e-4)), or look for extreme values in the data.",
            history,
        )

    def _unpack_validation(self, validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) not in (2, 3):
            raise ValueError("fit: validation_data must be a tuple (x_val, y_val) or "
                             "(x_val, y_val, val_sample_weight).")
        val_x = self._check_inputs(validation_data[0], "fit", convert=False,
                                   arg="validation_data[0]")
        val_y = self._check_targets(validation_data[1], n_samples(val_x), "fit",
                                    arg="validation_data[1]")
        val_w = None
        if len(validation_data) == 3 and validation_data[2] is not None:
            val_w = check_sample_weights(validation_data[2], None,
                                         val_y if self._single_output else val_y[0],
                                         n_samples(val_x), "fit")
        return val_x, val_y, val_w

    # -- evaluate and predict -------------------------------------------------------------------
    def _evaluate_arrays(self, x, y, weights, batch_size, cbs, progbar=None):
        self.reset_metrics()
        cbs.call("on_test_begin", {})
        logs = {}
        for step, start in enumerate(range(0, n_samples(x), batch_size)):
            stop = start + batch_size
            xb = as_batch(rows(x, start, stop), self.dtype)  # per batch: no full-size copy
            data = (xb, rows(y, start, stop)) if weights is None else (
                xb, rows(y, start, stop), weights[start:stop].astype(self.dtype))
            cbs.call("on_test_batch_begin", step, {})
            logs = self.test_step(data)
            cbs.call("on_test_batch_end", step, logs)
            if progbar is not None:
                progbar.update(step + 1, logs)
        cbs.call("on_test_end", logs)
        return logs

    def evaluate(self, x=None, y=None, batch_size=None, verbose="auto", sample_weight=None,
                 callbacks=None, return_dict=False):
        """Mean loss and metrics on (x, y): [loss, *metrics] (the loss alone without metrics),
        or {name: value} with return_dict=True."""
        where = "evaluate"
        self._require_compiled(where)
        batch_size = 32 if batch_size is None else arguments.integer(
            batch_size, "batch_size", where, minimum=1)
        verbose_given, verbose = verbose, check_verbose(verbose, where)
        x = self._check_inputs(x, where, convert=False)
        y = self._check_targets(y, n_samples(x), where)
        weights = check_sample_weights(sample_weight, None, y if self._single_output else y[0],
                                       n_samples(x), where)
        steps = -(-n_samples(x) // batch_size)
        bar = Progbar(steps, verbose)
        cbs = CallbackList(list(callbacks or []), self,
                           {"verbose": verbose_given, "epochs": 1, "steps": steps})
        with blas_threads():
            self.strategy.refresh()
            logs = self._evaluate_arrays(x, y, weights, batch_size, cbs, bar)
        bar.update(steps, logs, finished=True)
        if arguments.boolean(return_dict, "return_dict", where):
            return dict(logs)
        values = [logs[name] for name in self.metrics_names]
        return values if self.metrics else values[0]

    def predict(self, x, batch_size=None, verbose="auto", callbacks=None):
        """Outputs for x in batches: (N, *output_shape[1:]) in the model's dtype (float32).

        Raises NonFiniteOutputError if an output is NaN or inf (blown-up weights), rather
        than returning it silently.
        """
        where = "predict"
        batch_size = 32 if batch_size is None else arguments.integer(
            batch_size, "batch_size", where, minimum=1)
        verbose_given, verbose = verbose, check_verbose(verbose, where)
        x = self._check_inputs(x, where, convert=False)
        n = n_samples(x)
        shapes = [self.output_shape] if self._single_output else self.output_shape
        outs = [np.empty((n, *shape[1:]), dtype=self.dtype) for shape in shapes]
        steps = -(-n // batch_size)
        bar = Progbar(steps, verbose)
        cbs = CallbackList(list(callbacks or []), self,
                           {"verbose": verbose_given, "epochs": 1, "steps": steps})
        # Inference keeps nothing for a backward pass, so it runs in larger chunks than the
        # user's batch_size (fewer calls, better BLAS shapes); the outputs are the same.
        chunk = batch_size if cbs.callbacks else max(batch_size, PREDICT_CHUNK)
        with blas_threads():
            self.strategy.refresh()
            cbs.call("on_predict_begin", {})
            for step, start in enumerate(range(0, n, chunk)):
                xb = as_batch(rows(x, start, start + chunk), self.dtype)
                stop = start + n_samples(xb)
                cbs.call("on_predict_batch_begin", step, {})
                y_pred = self.predict_step((xb,))
                for out, part in zip(outs, [y_pred] if self._single_output else y_pred,
                                     strict=True):
                    out[start:stop] = part
                cbs.call("on_predict_batch_end", step,
                         {"outputs": outs[0][start:stop] if self._single_output
                          else [o[start:stop] for o in outs]})
                bar.update(min(steps, -(-stop // batch_size)))
            cbs.call("on_predict_end", {})
        bar.update(steps, finished=True)
        for out in outs:
            if not np.isfinite(out).all():
                bad = int(np.count_nonzero(~np.isfinite(out).all(axis=tuple(range(1, out.ndim)))))
                raise NonFiniteOutputError(
                    f"predict: the model produced NaN or inf for {bad} of {n} samples. Its "
                    "weights have probably blown up in training (see LossNotFiniteError) or "
                    "the inputs hold extreme values; retrain with a lower learning rate or "
                    "check x.")
        return outs[0] if self._single_output else outs

    def train_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """One optimizer step on one batch (checked) -> [loss, *metrics] or loss (or a dict)."""
        data = self._checked_batch(x, y, sample_weight, "train_on_batch")
        self.reset_metrics()
        with blas_threads():
            self.strategy.refresh()
            try:
                logs = self.train_step(data)
            except LossNotFiniteError as exc:
                raise LossNotFiniteError(f"train_on_batch: {exc}; no update was applied.",
                                         loss=exc.loss) from None
        return self._batch_result(logs, return_dict)

    def test_on_batch(self, x, y, sample_weight=None, return_dict=False):
        """Loss and metrics of one batch (checked) -> [loss, *metrics] or loss (or a dict)."""
        data = self._checked_batch(x, y, sample_weight, "test_on_batch")
        self.reset_metrics()
        with blas_threads():
            logs = self.test_step(data)
        return self._batch_result(logs, return_dict)

    def _checked_batch(self, x, y, sample_weight, where):
        """One batch for train_on_batch/test_on_batch, checked -> (x, y[, sample_weight])."""
        self._require_compiled(where)
        x = self._check_inputs(x, where)
        y = self._check_targets(y, n_samples(x), where)
        weights = check_sample_weights(sample_weight, None, y if self._single_output else y[0],
                                       n_samples(x), where)
        return (x, y) if weights is None else (x, y, weights.astype(self.dtype))

    def _batch_result(self, logs, return_dict):
        if return_dict:
            return dict(logs)
        values = [logs[name] for name in self.metrics_names]
        return values if self.metrics else values[0]

    def predict_on_batch(self, x):
        """The outputs for one batch, as a new array."""
        x = self._check_inputs(x, "predict_on_batch")
        with blas_threads():
            y_pred = self.predict_step((x,))
        return np.array(y_pred) if self._single_output else [np.array(y) for y in y_pred]

    def __call__(self, x, training=False):
        """On arrays: the outputs for x as a new array, a Tensor (an ndarray with TensorFlow's
        .numpy(), minicnn/tensor.py; a list of them for several outputs); training=True runs
        the layers in training mode. On keras.Input tensors: this model as one layer of a
        bigger model."""
        from .functional import call_symbolic, is_symbolic
        if is_symbolic(x):
            return call_symbolic(self.as_layer(), x)
        x = self._check_inputs(x, "model(x)")
        with blas_threads():
            y_pred, tape = self.forward(x, training=bool(training))
            out = (as_tensor(np.array(y_pred)) if self._single_output
                   else [as_tensor(np.array(y)) for y in y_pred])
            tape.release()
        return out

    def layer_outputs(self, x, names=None):
        """{layer name: its output for x} (inference), for the layers named (default: all);
        as Keras's ``keras.Model(model.inputs, [l.output for l in ...]).predict(x)``."""
        x = self._check_inputs(x, "layer_outputs")
        wanted = None if names is None else set(names)
        if wanted is not None:
            known = {layer.name for layer in self.layers}
            if not wanted <= known:
                raise ValueError(f"layer_outputs: no layer named {sorted(wanted - known)}; the "
                                 f"layers are {[layer.name for layer in self.layers]}.")
        outputs = {}

        def keep(layer, y):
            if wanted is None or layer.name in wanted:
                outputs[layer.name] = np.array(y)

        with blas_threads():
            run_forward(self._graph, [x] if self._single_input else list(x), observe=keep)
        return outputs

    # -- weights --------------------------------------------------------------------------------
    def get_weights(self):
        """Copies of all parameters, layer by layer in Keras's order ([kernel, bias] per layer)."""
        return [w.copy() for w in self.weights]

    def set_weights(self, weights):
        """Load a list as returned by get_weights (or by a Keras model of the same layers)."""
        self._require_built("set_weights")
        weights = list(weights)
        expected = sum(len(layer.params) for layer in self.layers)
        if len(weights) != expected:
            raise ValueError(
                f"set_weights: the model has {expected} weight arrays, got {len(weights)}. "
                "Pass the list from get_weights() of a model with the same layers."
            )
        position = 0
        for layer in self.layers:
            count = len(layer.params)
            layer.set_weights(weights[position:position + count])
            position += count

    def count_params(self):
        """Total number of scalar parameters."""
        return sum(v.size for v in self.weights)

    # -- description ----------------------------------------------------------------------------
    def summary(self, print_fn=print):
        """Print each layer's name, type, output shape, parameter count and forward FLOPs per
        sample (a multiply-add counts 2), with totals."""
        self._require_built("summary")
        connected = type(self).__name__ != "Sequential"
        rows = []
        for layer in self.layers:
            kind = (type(layer.model).__name__ if hasattr(layer, "model")
                    else type(layer).__name__)
            row = [f"{layer.name} ({kind})", str(layer.output_shape), f"{layer.count_params():,}",
                   f"{layer.flops():,}"]
            if connected:
                nodes = [n for n in layer._inbound_nodes
                         if any(n is m for m in getattr(self, "_symbolic_nodes", []))]
                row.append(", ".join(p for n in nodes for p in n.connected_to()) or "-")
            rows.append(tuple(row))
        header = ("Layer (type)", "Output Shape", "Param #", "FLOPs/image")
        if connected:
            header += ("Connected to",)
        widths = [max(len(r[i]) for r in rows + [header]) + 2 for i in range(len(header))]
        right_aligned = (False, False, True, True, False)

        def line(cells, left, mid, right):
            parts = [f" {c:>{w - 2}} " if right_aligned[i] else f" {c:<{w - 2}} "
                     for i, (c, w) in enumerate(zip(cells, widths, strict=True))]
            return left + mid.join(parts) + right

        def rule(left, mid, right, fill):
            return left + mid.join(fill * w for w in widths) + right

        total = self.count_params()
        trainable = sum(v.size for v in self.trainable_weights)
        flops = self.flops()
        out = [f'Model: "{self.name}"', rule("┏", "┳", "┓", "━"), line(header, "┃", "┃", "┃"),
               rule("┡", "╇", "┩", "━")]
        out += [line(r, "│", "│", "│") for r in rows]
        out.append(rule("└", "┴", "┘", "─"))
        size_kb = total * self.dtype.itemsize / 1024
        out += [f" Total params: {total:,} ({size_kb:.2f} KB)",
                f" Trainable params: {trainable:,}",
                f" Non-trainable params: {total - trainable:,}",
                f" Forward FLOPs per image: {flops:,} ({flops / 1e6:.2f} MFLOP)"]
        for text in out:
            print_fn(text)

    def save(self, path, allow_non_finite=False):
        """Write architecture, weights, compile settings and optimizer state to one file:
        minicnn's .npz, or Keras's .keras format for a name ending in .keras. Weights holding
        NaN or inf raise ValueError unless allow_non_finite=True."""
        from .saving import save_model
        save_model(self, path, allow_non_finite=allow_non_finite)

    def save_weights(self, path, allow_non_finite=False):
        """Write only the weights (.npz); read back with load_weights."""
        from .saving import save_weights
        save_weights(self, path, allow_non_finite=allow_non_finite)

    def load_weights(self, path):
        """Load weights written by save_weights or save into this (built) model."""
        from .saving import load_weights
        load_weights(self, path)


def _add_gradients(grad, penalty_grad):
    """grad + penalty_grad where both exist (a new array: grad may be a reused buffer)."""
    if penalty_grad is None:
        return grad
    return penalty_grad if grad is None else grad + penalty_grad


def load_model(path):
    """Rebuild a model written by model.save(path): architecture, weights, compile settings
    and optimizer state. Never runs code from the file."""
    from .saving import load_model as _load_model
    return _load_model(path)


# Sequential is the simple case of Model (a chain); it lives in sequential.py.
from .functional import Functional  # noqa: E402, F401
from .sequential import Sequential  # noqa: E402, F401  (public here, as keras.models.Sequential)
