"""Sequential: the model and its training loop.

One training step, in order: forward through the layers -> loss (the one division by the
batch size) -> backward through the layers in reverse -> optimizer step. With a softmax last
layer and a probabilistic cross-entropy the loss hands back dL/dz = (p - onehot) / N directly
(stable, and the exact gradient wherever the clip is inactive).

On a multi-core machine each step (and each prediction chunk) is split over threads by
minicnn/parallel.py (data parallel over the batch; MINICNN_THREADS=1 turns it off); the
one-thread step below is what every shard runs on its rows.
"""

from contextlib import nullcontext

import numpy as np

from . import losses as losses_module
from . import optimizers as optimizers_module
from .activations import Softmax
from .backend import get_rng, standardize_dtype
from .callbacks import History, Progbar, ProgbarLogger
from .inputs import check_positive_int, check_validation_split, check_verbose, check_x, check_y
from .layers import Layer
from .layers import get_class as layer_class
from .layers.base import ActivatedLayer, unique_name
from .layers.core import Activation
from .ops.threads import blas_threads
from .parallel import BatchSplit, default_threads
from .profiling import TrainingProfile, instrument


class LossNotFiniteError(FloatingPointError):
    """Training stopped because the loss became NaN or inf. `.history` holds the finished epochs."""

    def __init__(self, message, history=None):
        super().__init__(message)
        self.history = history


# Samples per forward call in predict (see Sequential.predict).
PREDICT_CHUNK = 128

_METRIC_ALIASES = {"accuracy": "accuracy", "acc": "accuracy"}


class Sequential:
    """A linear stack of layers with Keras's API.

    model = Sequential([layers.Conv2D(25, (3, 3), activation='relu', input_shape=(28, 28, 1)), ...])
    model.compile(optimizer='adam', loss='sparse_categorical_crossentropy', metrics=['accuracy'])
    history = model.fit(x, y, epochs=10); model.evaluate(x, y); model.predict(x)

    dtype: None keeps the layers' dtype (float32 by default); 'float64' makes every layer
    float64 (for gradient checks).
    """

    def __init__(self, layers=None, name=None, dtype=None):
        self.name = name if name is not None else unique_name("Sequential")
        self._dtype_override = None if dtype is None else standardize_dtype(dtype, "Sequential")
        self.layers = []
        self.built = False
        self.optimizer = None
        self.loss = None
        self.metrics = []
        self.stop_training = False
        self.history = None
        self._split = None  # created on first use, see _batch_split
        for layer in layers or []:
            self.add(layer)

    # -- structure ------------------------------------------------------------------------------
    def add(self, layer):
        """Append a layer; builds it at once when the input shape is known."""
        if not isinstance(layer, Layer):
            raise TypeError(
                f"Sequential.add: expected a minicnn layer (e.g. layers.Dense(10)), got "
                f"{type(layer).__name__}: {layer!r}."
            )
        if self._dtype_override is not None and layer.dtype != self._dtype_override:
            if layer.built:
                raise ValueError(f"Sequential: {layer.where} is already built as {layer.dtype}; "
                                 f"create it with dtype='{self._dtype_override.name}'.")
            layer.dtype = self._dtype_override
        if self.layers and layer.dtype != self.layers[0].dtype:
            raise ValueError(
                f"Sequential.add: {layer.where} is {layer.dtype} but the model is "
                f"{self.layers[0].dtype}; give all layers the same dtype "
                "(or Sequential(dtype=...))."
            )
        if self.layers and layer.declared_input_shape is not None:
            raise ValueError(
                f"Sequential.add: only the first layer takes input_shape; {layer.where} got "
                f"input_shape={layer.declared_input_shape}. Remove it."
            )
        self.layers.append(layer)
        if self.built:
            layer.build(self.layers[-2].output_shape)
        elif len(self.layers) == 1 and layer.declared_input_shape is not None:
            self.build(layer.declared_input_shape)

    def build(self, input_shape):
        """Build every layer in turn for per-sample inputs of `input_shape` (no batch axis)."""
        if not self.layers:
            raise ValueError("Sequential.build: the model has no layers; add some first.")
        shape = tuple(input_shape)
        for layer in self.layers:
            if not layer.built:
                layer.build(shape)
            elif layer.input_shape != shape:
                raise ValueError(f"Sequential.build: {layer.where} was built for inputs "
                                 f"{layer.input_shape} but receives {shape}.")
            shape = layer.output_shape
        self.built = True
        self.layers[0].compute_input_gradient = False  # nobody needs dL/d(images)

    @property
    def dtype(self):
        return self.layers[0].dtype if self.layers else np.dtype(np.float32)

    @property
    def input_shape(self):
        return self.layers[0].input_shape if self.built else None

    @property
    def output_shape(self):
        return self.layers[-1].output_shape if self.built else None

    def _require_built(self, where):
        if not self.built:
            raise ValueError(
                f"{where}: the model is not built yet. Give the first layer input_shape=..., "
                "call model.build(input_shape), or fit/predict on data first."
            )

    # -- compile ------------------------------------------------------------------------------
    def compile(self, optimizer="adam", loss=None, metrics=None):
        """Choose the optimizer ('adam', 'sgd' or an instance), the loss (name or instance)
        and metrics (['accuracy'] or none)."""
        if loss is None:
            raise ValueError(
                "compile: loss is required, e.g. loss='sparse_categorical_crossentropy'.")
        self.optimizer = optimizers_module.get(optimizer)
        self.loss = losses_module.get(loss)
        names = []
        for metric in metrics or []:
            key = metric.lower() if isinstance(metric, str) else metric
            if key not in _METRIC_ALIASES:
                raise ValueError(f"compile: unknown metric {metric!r}; minicnn knows 'accuracy'.")
            names.append(_METRIC_ALIASES[key])
        self.metrics = names

    def _require_compiled(self, where):
        if self.loss is None:
            raise ValueError(
                f"{where}: the model is not compiled. Call model.compile(optimizer='adam', "
                "loss='sparse_categorical_crossentropy', metrics=['accuracy']) first."
            )

    def _softmax_is_fused(self):
        last = self.layers[-1]
        return (isinstance(last, (ActivatedLayer, Activation))
                and isinstance(last.activation, Softmax) and not self.loss.from_logits)

    # -- one step -------------------------------------------------------------------------------
    def _forward(self, x, training):
        for layer in self.layers:
            x = layer.forward(x, training=training)
        return x

    def _output_gradient(self, y_true, y_pred):
        """dL/dz of the last layer (fused softmax) or dL/d(y_pred), divided by the batch size."""
        if self._softmax_is_fused():
            return self.loss.gradient_through_softmax(y_true, y_pred)
        return self.loss.gradient(y_true, y_pred)

    def _backward_layers(self, layers, grad):
        """Backward through `layers` (the model's own, or a shard's replicas) from the output
        gradient; returns dL/d(input) (None: the first layer skips it)."""
        last = layers[-1]
        if self._softmax_is_fused():
            grad = (last.backward_preactivation(grad) if isinstance(last, ActivatedLayer)
                    else grad)  # an Activation('softmax') layer has nothing before its softmax
        else:
            grad = last.backward(grad)
        for layer in reversed(layers[:-1]):
            grad = layer.backward(grad)
        return grad

    def _backward(self, y_true, y_pred):
        return self._backward_layers(self.layers, self._output_gradient(y_true, y_pred))

    def _trainable_pairs(self):
        return [(layer.grads[key], param) for layer in self.layers if layer.trainable
                for key, param in layer.params.items()]

    def _batch_metrics(self, y_true, y_pred):
        """Sums over the batch: (loss * n, correct predictions)."""
        loss = self.loss(y_true, y_pred)
        correct = 0
        if self.metrics:
            predicted = y_pred.argmax(axis=1)
            target = y_true if y_true.ndim == 1 else y_true.argmax(axis=1)
            correct = int(np.count_nonzero(predicted == target))
        return loss, correct

    def train_on_batch(self, x, y):
        """One optimizer step on one batch (checked); returns [loss, accuracy] or loss."""
        self._require_compiled("train_on_batch")
        x = check_x(self, x, "train_on_batch")
        y = check_y(self, y, len(x), "train_on_batch")
        self._batch_split(refresh=True)
        with blas_threads():
            loss, correct = self._train_step(x, y)
        return [loss, correct / len(x)] if self.metrics else loss

    def _batch_split(self, refresh=False):
        """This model's BatchSplit (minicnn/parallel.py); refresh re-reads MINICNN_THREADS."""
        if self._split is None:
            self._split = BatchSplit(self)
        elif refresh:
            self._split.threads = default_threads()
        return self._split

    def _train_step(self, x, y):
        result = self._batch_split().train_step(x, y)
        if result is not None:
            return result
        y_pred = self._forward(x, training=True)
        loss, correct = self._batch_metrics(y, y_pred)
        if not np.isfinite(loss):
            return loss, correct  # the caller stops before any update is applied
        self._backward(y, y_pred)
        self.optimizer.apply_gradients(self._trainable_pairs())
        return loss, correct

    # -- fit ------------------------------------------------------------------------------------
    def fit(self, x=None, y=None, batch_size=32, epochs=1, verbose=1, callbacks=None,
            validation_split=0.0, validation_data=None, shuffle=True, initial_epoch=0,
            profile=False):
        """Train for `epochs` passes over (x, y); returns a History (history.history[...]).

        x: (N, *input_shape) of any real dtype (each batch is converted to the model's dtype
        as it is gathered: a float64 data set is never copied whole); y: (N,) integer labels
        (sparse loss) or (N, K) one-hot. validation_split takes the *last* fraction of the
        data before shuffling, as Keras.
        profile=True times every phase of every step (see minicnn.profiling) and stores a
        TrainingProfile as history.profile; print(history.profile) shows the table.
        """
        self._batch_split(refresh=True)
        with blas_threads():
            return self._fit(x, y, batch_size, epochs, verbose, callbacks, validation_split,
                             validation_data, shuffle, initial_epoch, profile)

    def _fit(self, x, y, batch_size, epochs, verbose, callbacks, validation_split,
             validation_data, shuffle, initial_epoch, profile):
        where = "fit"
        self._require_compiled(where)
        batch_size = check_positive_int(batch_size, "batch_size", where)
        epochs = check_positive_int(epochs, "epochs", where, minimum=0)
        initial_epoch = check_positive_int(initial_epoch, "initial_epoch", where, minimum=0)
        verbose = check_verbose(verbose, where)
        validation_split = check_validation_split(validation_split, where)
        x = check_x(self, x, where, convert=False)
        y = check_y(self, y, len(x), where)
        if validation_data is not None:
            val_x, val_y = self._unpack_validation(validation_data)
        elif validation_split > 0:
            split_at = int(len(x) * (1 - validation_split))
            if split_at == 0 or split_at == len(x):
                raise ValueError(
                    f"fit: validation_split={validation_split} of {len(x)} samples leaves an "
                    "empty training or validation set; use more data or another split."
                )
            x, val_x, y, val_y = x[:split_at], x[split_at:], y[:split_at], y[split_at:]
        else:
            val_x = val_y = None

        n = len(x)
        steps = -(-n // batch_size)
        history = History()
        callbacks = list(callbacks or [])
        if verbose:
            callbacks.append(ProgbarLogger(epochs, steps, verbose))
        callbacks.append(history)
        x_batch = np.empty((min(batch_size, n), *x.shape[1:]), dtype=self.dtype)
        y_batch = np.empty((min(batch_size, n), *y.shape[1:]), dtype=y.dtype)
        shards = self._batch_split().shards_for(min(batch_size, n))
        profiler = (TrainingProfile([layer.name for layer in self.layers], n, batch_size, shards)
                    if profile else None)
        if profiler is not None:
            callbacks.insert(0, profiler)
        history.profile = profiler
        for callback in callbacks:
            callback.set_model(self)
            callback.on_train_begin()
        self.stop_training = False
        with instrument(self, profiler, callbacks) if profiler else nullcontext():
            for epoch in range(initial_epoch, epochs):
                for callback in callbacks:
                    callback.on_epoch_begin(epoch)
                order = self._shuffled_order(n, shuffle)
                loss_sum = correct_sum = seen = 0
                logs = {}
                for step in range(steps):
                    index = order[step * batch_size:(step + 1) * batch_size]
                    xb, yb = self._gather(x, y, index, x_batch, y_batch)
                    loss, correct = self._train_step(xb, yb)
                    if not np.isfinite(loss):
                        self._raise_not_finite(loss, epoch, step, history)
                    seen += len(index)
                    loss_sum += loss * len(index)
                    correct_sum += correct
                    logs = self._logs(loss_sum, correct_sum, seen)
                    for callback in callbacks:
                        callback.on_train_batch_end(step, logs)
                if val_x is not None:
                    val = self._evaluate_arrays(val_x, val_y, batch_size)
                    logs.update({"val_" + k: v for k, v in val.items()})
                for callback in callbacks:
                    callback.on_epoch_end(epoch, logs)
                if self.stop_training:
                    break
        for callback in callbacks:
            callback.on_train_end()
        self.history = history
        return history

    def _shuffled_order(self, n, shuffle):
        """The sample order of one epoch: one permutation, the data set itself is not copied."""
        return get_rng().permutation(n) if shuffle else np.arange(n)

    @staticmethod
    def _gather(x, y, index, x_batch, y_batch):
        """Copy the samples `index` into the reused batch buffers, converting x's dtype on the
        way (a float64 data set is never copied whole). Returns views of the filled part."""
        xb, yb = x_batch[:len(index)], y_batch[:len(index)]
        if x.dtype == xb.dtype:
            np.take(x, index, axis=0, out=xb)
        else:
            xb[...] = x[index]
        np.take(y, index, axis=0, out=yb)
        return xb, yb

    def _unpack_validation(self, validation_data):
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ValueError("fit: validation_data must be a tuple (x_val, y_val).")
        val_x = check_x(self, validation_data[0], "fit", arg="validation_data[0]")
        val_y = check_y(self, validation_data[1], len(val_x), "fit", arg="validation_data[1]")
        return val_x, val_y

    def _logs(self, loss_sum, correct_sum, seen):
        logs = {"loss": loss_sum / seen}
        if self.metrics:
            logs["accuracy"] = correct_sum / seen
        return logs

    def _raise_not_finite(self, loss, epoch, step, history):
        raise LossNotFiniteError(
            f"fit: the loss became {loss} at epoch {epoch + 1}, batch {step + 1}; training "
            "stopped before applying that batch's update. Likely fixes: scale inputs to [0, 1] "
            "(x / 255), lower the learning rate (e.g. optimizers.Adam(learning_rate=1e-4)), or "
            "look for extreme values in the data. The finished epochs are in error.history.",
            history,
        )

    # -- evaluate and predict -----------------------------------------------------------------
    def _evaluate_arrays(self, x, y, batch_size, progbar=None):
        loss_sum = correct_sum = 0
        for start in range(0, len(x), batch_size):
            xb, yb = x[start:start + batch_size], y[start:start + batch_size]
            xb = np.ascontiguousarray(xb, dtype=self.dtype)  # per batch: no full-size copy
            loss, correct = self._batch_metrics(yb, self._predict_batch(xb))
            loss_sum += loss * len(xb)
            correct_sum += correct
            if progbar is not None:
                progbar.update(start // batch_size + 1, self._logs(loss_sum, correct_sum,
                                                                    start + len(xb)))
        return self._logs(loss_sum, correct_sum, len(x))

    def _predict_batch(self, xb, out=None):
        """Inference forward of one batch (split over the threads when worth it) -> outputs,
        written into `out` when given."""
        if out is None:
            out = np.empty((len(xb), *self.output_shape), dtype=self.dtype)
        if not self._batch_split().predict_into(xb, out):
            out[...] = self._forward(xb, training=False)
        return out

    def evaluate(self, x=None, y=None, batch_size=32, verbose=1):
        """Mean loss and accuracy on (x, y): [loss, accuracy] (just loss without metrics)."""
        where = "evaluate"
        self._require_compiled(where)
        batch_size = check_positive_int(batch_size, "batch_size", where)
        verbose = check_verbose(verbose, where)
        x = check_x(self, x, where, convert=False)
        y = check_y(self, y, len(x), where)
        steps = -(-len(x) // batch_size)
        bar = Progbar(steps, verbose)
        self._batch_split(refresh=True)
        with blas_threads():
            logs = self._evaluate_arrays(x, y, batch_size, bar)
        bar.update(steps, logs, finished=True)
        return [logs["loss"], logs["accuracy"]] if self.metrics else logs["loss"]

    def predict(self, x, batch_size=32, verbose=0):
        """Outputs for x in batches: (N, *output_shape) in the model's dtype (float32)."""
        where = "predict"
        batch_size = check_positive_int(batch_size, "batch_size", where)
        verbose = check_verbose(verbose, where)
        x = check_x(self, x, where, convert=False)
        out = np.empty((len(x), *self.output_shape), dtype=self.dtype)
        steps = -(-len(x) // batch_size)
        bar = Progbar(steps, verbose)
        # Inference keeps nothing for a backward pass, so it runs in larger chunks than the
        # user's batch_size (fewer calls, better BLAS shapes); the outputs are the same.
        chunk = max(batch_size, PREDICT_CHUNK)
        self._batch_split(refresh=True)
        with blas_threads():
            for start in range(0, len(x), chunk):
                xb = np.ascontiguousarray(x[start:start + chunk], dtype=self.dtype)
                self._predict_batch(xb, out[start:start + chunk])
                bar.update(min(steps, -(-(start + len(xb)) // batch_size)))
        bar.update(steps, finished=True)
        return out

    def __call__(self, x):
        """predict() on one batch without progress output."""
        return self.predict(x, batch_size=max(len(np.asarray(x)), 1))

    # -- weights ------------------------------------------------------------------------------
    def get_weights(self):
        """All parameters, layer by layer in Keras's order ([kernel, bias] per layer)."""
        return [w for layer in self.layers for w in layer.get_weights()]

    def set_weights(self, weights):
        """Load a list as returned by get_weights (or by a Keras model of the same architecture)."""
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
        return sum(layer.count_params() for layer in self.layers)

    # -- description ----------------------------------------------------------------------------
    def summary(self, print_fn=print):
        """Print each layer's name, type, output shape, parameter count and forward FLOPs per
        image (a multiply-add counts 2), with totals."""
        self._require_built("summary")
        rows = [(f"{layer.name} ({type(layer).__name__})", str((None, *layer.output_shape)),
                 f"{layer.count_params():,}", f"{layer.flops():,}") for layer in self.layers]
        header = ("Layer (type)", "Output Shape", "Param #", "FLOPs/image")
        widths = [max(len(r[i]) for r in rows + [header]) + 2 for i in range(4)]

        def line(cells, left, mid, right):
            parts = [f" {cells[0]:<{widths[0] - 2}} ", f" {cells[1]:<{widths[1] - 2}} ",
                     f" {cells[2]:>{widths[2] - 2}} ", f" {cells[3]:>{widths[3] - 2}} "]
            return left + mid.join(parts) + right

        def rule(left, mid, right, fill):
            return left + mid.join(fill * w for w in widths) + right

        total = self.count_params()
        trainable = sum(layer.count_params() for layer in self.layers if layer.trainable)
        flops = sum(layer.flops() for layer in self.layers)
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

    def get_config(self):
        """{'name', 'layers': [{'class_name', 'config'}, ...]} -- JSON-serialisable."""
        return {"name": self.name,
                "layers": [{"class_name": type(layer).__name__, "config": layer.get_config()}
                           for layer in self.layers]}

    @classmethod
    def from_config(cls, config):
        """Rebuild an (untrained) model from get_config()'s output."""
        layers = [layer_class(spec["class_name"]).from_config(spec["config"])
                  for spec in config["layers"]]
        return cls(layers, name=config.get("name"))

    def save(self, path, allow_non_finite=False):
        """Write architecture, weights, compile settings and optimizer state to one .npz.
        Weights holding NaN or inf raise ValueError unless allow_non_finite=True."""
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


def load_model(path):
    """Rebuild a model written by model.save(path): architecture, weights, compile settings
    and optimizer state. Never runs code from the file."""
    from .saving import load_model as _load_model
    return _load_model(path)
