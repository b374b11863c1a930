"""Callbacks with Keras 3's names and arguments (History, EarlyStopping, ModelCheckpoint,
ReduceLROnPlateau, LearningRateScheduler, CSVLogger, TerminateOnNaN), the list that calls
them, and the Keras-style progress bar.

A callback gets ``set_model(model)`` and ``set_params(params)``, then Keras's hooks, each with
a ``logs`` dict of the latest metric values:

    fit:       on_train_begin, on_epoch_begin(epoch), on_train_batch_begin(batch),
               on_train_batch_end(batch), on_epoch_end(epoch), on_train_end
    evaluate:  on_test_begin, on_test_batch_begin(batch), on_test_batch_end(batch), on_test_end
               (also fit's validation at the end of each epoch)
    predict:   on_predict_begin, on_predict_batch_begin(batch), on_predict_batch_end(batch),
               on_predict_end

Setting ``model.stop_training = True`` ends fit after the current epoch (in
on_train_batch_end: after the current batch, as Keras).

Learning-rate callbacks set ``model.optimizer.learning_rate``; the optimizer's config holds
the current value, so a model saved afterwards (.npz or .keras) keeps the changed rate.
"""

import csv
import inspect
import io
import math
import numbers
import sys
import time
from pathlib import Path

import numpy as np

from . import arguments

HOOKS = (
    "on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
    "on_train_batch_begin", "on_train_batch_end",
    "on_test_begin", "on_test_end", "on_test_batch_begin", "on_test_batch_end",
    "on_predict_begin", "on_predict_end", "on_predict_batch_begin", "on_predict_batch_end",
)


class Callback:
    """Base class: every hook does nothing. `model` and `params` are set before training."""

    #: True for a callback that takes over a non-finite loss in fit (TerminateOnNaN): fit then
    #: hands the batch's logs to on_train_batch_end instead of raising LossNotFiniteError.
    handles_non_finite_loss = False

    def __init__(self):
        self.model = None
        self.params = {}

    def set_model(self, model):
        self.model = model

    def set_params(self, params):
        self.params = params


def _noop(self, *args, **kwargs):
    pass


for _hook in HOOKS:
    setattr(Callback, _hook, _noop)
del _hook


class CallbackList:
    """Calls a hook on every callback in order: ``callbacks.call("on_epoch_end", epoch, logs)``.

    A hook that no callback overrides is skipped without a Python call per callback, so the
    per-batch hooks cost nothing when nobody listens.
    """

    def __init__(self, callbacks, model, params):
        self.callbacks = list(callbacks)
        for callback in self.callbacks:
            callback.set_model(model)
            callback.set_params(params)
        self._bound = {hook: [getattr(c, hook) for c in self.callbacks
                              if getattr(type(c), hook, _noop) is not _noop]
                       for hook in HOOKS}
        self.handles_non_finite_loss = any(getattr(c, "handles_non_finite_loss", False)
                                           for c in self.callbacks)

    def call(self, hook, *args):
        """Run `hook` on every callback that defines it."""
        for method in self._bound[hook]:
            method(*args)

    def listens(self, hook):
        """True when some callback overrides `hook`."""
        return bool(self._bound[hook])


class History(Callback):
    """Records per-epoch metrics: `history.history['loss']`, ['accuracy'], ['val_loss'], ...

    `history.epoch` lists the epoch indices and `history.params` the fit settings
    (epochs, steps, verbose); fit returns this object.
    """

    def __init__(self):
        super().__init__()
        self.history = {}
        self.epoch = []

    def on_train_begin(self, logs=None):
        self.epoch = []

    def on_epoch_end(self, epoch, logs=None):
        self.epoch.append(epoch)
        for key, value in (logs or {}).items():
            self.history.setdefault(key, []).append(value)


def _monitor_mode(monitor, mode, where):
    mode = arguments.choice(mode, ("auto", "min", "max"), "mode", where)
    if mode == "auto":
        mode = "max" if ("acc" in monitor or monitor.startswith("fmeasure")) else "min"
    return mode


class _Monitoring(Callback):
    """A callback watching `monitor` with `mode` ('min'/'max') and `min_delta`."""

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta


class EarlyStopping(_Monitoring):
    """Stop training when `monitor` has not improved by more than `min_delta` for `patience`
    epochs, as Keras 3. restore_best_weights=True puts the best epoch's weights back at the
    end of training, whether or not it stopped early; baseline: a value to beat;
    start_from_epoch: epochs to wait before watching.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, verbose=0, mode="auto",
                 baseline=None, restore_best_weights=False, start_from_epoch=0):
        super().__init__()
        where = "EarlyStopping"
        self.monitor = monitor
        self.min_delta = abs(arguments.real(min_delta, "min_delta", where))
        self.patience = arguments.integer(patience, "patience", where, minimum=0)
        self.verbose = arguments.integer(verbose, "verbose", where, minimum=0)
        self.mode = _monitor_mode(monitor, mode, where)
        self.baseline = None if baseline is None else arguments.real(baseline, "baseline", where)
        self.restore_best_weights = arguments.boolean(restore_best_weights,
                                                      "restore_best_weights", where)
        self.start_from_epoch = arguments.integer(start_from_epoch, "start_from_epoch", where,
                                                  minimum=0)
        self.stopped_epoch = 0

    def on_train_begin(self, logs=None):
        # The same instance may serve several fit calls.
        self.wait = 0
        self.stopped_epoch = 0
        self.best = None
        self.best_weights = None
        self.best_epoch = 0

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping: monitor {self.monitor!r} is not among the epoch metrics "
                f"{sorted(logs)}. For 'val_*' metrics pass validation_data or validation_split."
            )
        if epoch < self.start_from_epoch:
            return
        value = logs[self.monitor]
        if self.restore_best_weights and self.best_weights is None:
            # Until something improves, the current weights are the best seen.
            self.best_weights = self.model.get_weights()
            self.best_epoch = epoch
        self.wait += 1
        if self._is_improvement(value, self.best):
            self.best, self.best_epoch = value, epoch
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            if self.baseline is None or self._is_improvement(value, self.baseline):
                self.wait = 0
            return
        if self.wait >= self.patience and epoch > 0:
            self.stopped_epoch = epoch
            self.model.stop_training = True

    def on_train_end(self, logs=None):
        if self.stopped_epoch > 0 and self.verbose:
            print(f"Epoch {self.stopped_epoch + 1}: early stopping")
        if self.restore_best_weights and self.best_weights is not None:
            if self.verbose:
                print(f"Restoring model weights from the end of the best epoch: "
                      f"{self.best_epoch + 1}.")
            self.model.set_weights(self.best_weights)


class ModelCheckpoint(Callback):
    """Save the model (or only its weights) after each epoch.

    filepath may hold format fields from the epoch logs, e.g. 'ckpt-{epoch:02d}-{val_loss:.3f}.npz'
    (epoch counts from 1). save_best_only keeps only files that improve `monitor`.
    """

    def __init__(self, filepath, monitor="val_loss", verbose=0, save_best_only=False,
                 save_weights_only=False, mode="auto"):
        super().__init__()
        where = "ModelCheckpoint"
        self.filepath = str(filepath)
        self.monitor = monitor
        self.verbose = arguments.integer(verbose, "verbose", where, minimum=0)
        self.save_best_only = arguments.boolean(save_best_only, "save_best_only", where)
        self.save_weights_only = arguments.boolean(save_weights_only, "save_weights_only", where)
        self.mode = _monitor_mode(monitor, mode, where)
        self.best = math.inf if self.mode == "min" else -math.inf

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if self.save_best_only:
            if self.monitor not in logs:
                raise ValueError(
                    f"ModelCheckpoint: monitor {self.monitor!r} is not among the epoch metrics "
                    f"{sorted(logs)}."
                )
            value = logs[self.monitor]
            better = value < self.best if self.mode == "min" else value > self.best
            if not better:
                return
            self.best = value
        if self.save_weights_only:
            self.model.save_weights(path)
        else:
            self.model.save(path)
        if self.verbose:
            print(f"Epoch {epoch + 1}: saved model to {path}")


def _learning_rate(callback, where):
    optimizer = getattr(callback.model, "optimizer", None)
    if optimizer is None or not hasattr(optimizer, "learning_rate"):
        raise ValueError(f"{where}: the model has no optimizer with a learning_rate; compile it "
                         "first.")
    return optimizer, float(optimizer.learning_rate)


class ReduceLROnPlateau(_Monitoring):
    """Multiply the learning rate by `factor` when `monitor` has not improved by more than
    `min_delta` for `patience` epochs, as Keras 3: new_lr = max(lr * factor, min_lr); then
    wait `cooldown` epochs before watching again. Adds 'learning_rate' to the epoch logs (so
    History records it). The reduced rate lives in the optimizer, so it is saved with the
    model; the callback's own counters start afresh in each fit, as Keras's.
    """

    def __init__(self, monitor="val_loss", factor=0.1, patience=10, verbose=0, mode="auto",
                 min_delta=1e-4, cooldown=0, min_lr=0.0):
        super().__init__()
        where = "ReduceLROnPlateau"
        self.monitor = monitor
        self.factor = arguments.real(factor, "factor", where, minimum=0, maximum=1.0,
                                     max_open=True)
        self.patience = arguments.integer(patience, "patience", where, minimum=0)
        self.verbose = arguments.integer(verbose, "verbose", where, minimum=0)
        self.mode = _monitor_mode(monitor, mode, where)
        self.min_delta = abs(arguments.real(min_delta, "min_delta", where))
        self.cooldown = arguments.integer(cooldown, "cooldown", where, minimum=0)
        self.min_lr = arguments.real(min_lr, "min_lr", where, minimum=0)
        self._reset()

    def _reset(self):
        self.best = None
        self.wait = 0
        self.cooldown_counter = 0

    def in_cooldown(self):
        return self.cooldown_counter > 0

    def on_train_begin(self, logs=None):
        self._reset()

    def on_epoch_end(self, epoch, logs=None):
        where = "ReduceLROnPlateau"
        logs = logs if logs is not None else {}
        optimizer, learning_rate = _learning_rate(self, where)
        logs["learning_rate"] = learning_rate
        if self.monitor not in logs:
            raise ValueError(
                f"{where}: monitor {self.monitor!r} is not among the epoch metrics "
                f"{sorted(logs)}. For 'val_*' metrics pass validation_data or validation_split."
            )
        current = logs[self.monitor]
        if self.in_cooldown():
            self.cooldown_counter -= 1
            self.wait = 0
        if self._is_improvement(current, self.best):
            self.best = current
            self.wait = 0
            return
        if self.in_cooldown():
            return
        self.wait += 1
        # Keras compares in float32, the learning rate variable's precision.
        if self.wait >= self.patience and np.float32(learning_rate) > np.float32(self.min_lr):
            new_lr = max(learning_rate * self.factor, self.min_lr)
            optimizer.learning_rate = new_lr  # logs keep this epoch's rate, as Keras's
            if self.verbose > 0:
                print(f"\nEpoch {epoch + 1}: ReduceLROnPlateau reducing learning rate to "
                      f"{new_lr}.")
            self.cooldown_counter = self.cooldown
            self.wait = 0


def _takes_two_arguments(function):
    """True if function(epoch, lr) binds; False if only function(epoch); None if unknown."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    for args in ((0, 0.1), (0,)):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        return len(args) == 2
    return None


class LearningRateScheduler(Callback):
    """At the start of each epoch set the learning rate to ``schedule(epoch, lr)`` (epoch
    counted from 0, lr the current rate; a one-argument ``schedule(epoch)`` works too), as
    Keras 3. Adds 'learning_rate' to the epoch logs. The optimizer must have been created with
    a float learning_rate, not a schedule.
    """

    def __init__(self, schedule, verbose=0):
        super().__init__()
        if not callable(schedule):
            raise TypeError(f"LearningRateScheduler: schedule must be a function (epoch, lr) -> "
                            f"lr, got {schedule!r}.")
        self.schedule = schedule
        self.verbose = arguments.integer(verbose, "verbose", "LearningRateScheduler", minimum=0)

    def _new_rate(self, epoch, learning_rate):
        two = _takes_two_arguments(self.schedule)
        if two is None:  # no signature to read: Keras's way, the new API first
            try:
                return self.schedule(epoch, learning_rate)
            except TypeError:
                return self.schedule(epoch)
        return self.schedule(epoch, learning_rate) if two else self.schedule(epoch)

    def on_epoch_begin(self, epoch, logs=None):
        where = "LearningRateScheduler"
        optimizer, learning_rate = _learning_rate(self, where)
        new_lr = self._new_rate(epoch, learning_rate)
        if isinstance(new_lr, np.ndarray) and new_lr.ndim == 0:
            new_lr = new_lr[()]
        if isinstance(new_lr, (bool, np.bool_)) or not isinstance(new_lr, numbers.Real):
            raise ValueError(f"{where}: the output of the schedule function should be a float. "
                             f"Got: {new_lr!r} at epoch {epoch}.")
        optimizer.learning_rate = float(new_lr)
        if self.verbose > 0:
            print(f"\nEpoch {epoch + 1}: LearningRateScheduler setting learning rate to "
                  f"{float(new_lr)}.")

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = _learning_rate(self, "LearningRateScheduler")[1]


class CSVLogger(Callback):
    """Write the epoch logs to a CSV file, as Keras 3: a header ``epoch,<sorted keys>`` (with
    a ``val_`` column for each key when there is no validation, filled with NA), then one row
    per epoch (epoch counted from 0). separator: the field separator; append=True keeps an
    existing file and adds rows (the header only if the file was empty).

    Unlike Keras's, which streams rows into an open file, the file is rewritten whole after
    each epoch under a temporary name and renamed into place: at every moment it is a
    complete CSV of the epochs finished so far (a crash never leaves a half-written row), and
    nothing is left open between epochs. (Follow it with ``tail -F``, not ``tail -f``.)
    """

    def __init__(self, filename, separator=",", append=False):
        super().__init__()
        where = "CSVLogger"
        if not isinstance(separator, str) or len(separator) != 1:
            raise ValueError(f"{where}: separator must be one character, got {separator!r}.")
        self.filename = str(filename)
        self.sep = separator
        self.append = arguments.boolean(append, "append", where)
        self.keys = None
        self._prefix = ""
        self._lines = []

    def _write(self):
        from .saving import atomic_write
        text = self._prefix + "".join(self._lines)
        with atomic_write(self.filename, "wb", "CSVLogger") as f:
            f.write(text.encode("utf-8"))

    def on_train_begin(self, logs=None):
        path = Path(self.filename)
        self._prefix = ""
        if self.append and path.is_file():
            with open(path, encoding="utf-8", newline="") as f:
                self._prefix = f.read()
        self._write_header = not self._prefix
        self.keys = None
        self._lines = []
        self._write()  # as Keras opens the file here: truncated unless appending

    @staticmethod
    def _cell(value):
        if isinstance(value, str):
            return value
        if isinstance(value, (list, tuple, np.ndarray)) and np.ndim(value) > 0:
            return f'"[{", ".join(map(str, value))}]"'
        return value

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.keys is None:
            self.keys = sorted(logs)
            if self.keys and not any(key.startswith("val_") for key in self.keys):
                self.keys += [f"val_{key}" for key in self.keys]
        buffer = io.StringIO()
        writer = csv.writer(buffer, delimiter=self.sep, dialect="excel")
        if self._write_header:
            writer.writerow(["epoch", *self.keys])
            self._write_header = False
        writer.writerow([epoch, *(self._cell(logs.get(key, "NA")) for key in self.keys)])
        self._lines.append(buffer.getvalue())
        self._write()


class TerminateOnNaN(Callback):
    """Stop training when the loss of a batch is NaN or inf, as Keras 3: fit ends after that
    batch (its epoch's validation and on_epoch_end still run) without an error; History holds
    the non-finite loss for that epoch. raise_error=True raises RuntimeError instead.

    Without this callback minicnn stops such a fit with LossNotFiniteError and restores the
    weights of the last finished epoch. With it, no update from the non-finite batch is
    applied (Keras applies it, which leaves NaN weights): the model keeps the weights of the
    last finite step.
    """

    handles_non_finite_loss = True

    def __init__(self, raise_error=False):
        super().__init__()
        self.raise_error = arguments.boolean(raise_error, "raise_error", "TerminateOnNaN")

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is None or math.isfinite(loss):
            return
        if self.raise_error:
            raise RuntimeError(f"NaN or Inf loss encountered at batch {batch}. Loss value: "
                               f"{loss}. Terminating training immediately.")
        print(f"Batch {batch}: Invalid loss, terminating training")
        self.model.stop_training = True


def _format_duration(seconds):
    """Keras's time-left format: 1:02:03, 2:03 or 42s."""
    if seconds > 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds > 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(seconds)}s"


def _format_per_step(seconds):
    if seconds >= 1 or seconds == 0:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def _format_value(value):
    return f"{value:.4f}" if abs(value) > 1e-3 else f"{value:.4e}"


def _in_a_notebook():
    """True inside a running Jupyter (or Colab) kernel, whose output redraws on '\\r'; a
    process that merely imported ipykernel (nbclient, a test runner) writes to a log."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if hasattr(ipython, "get_ipython") else None
    return shell is not None and getattr(shell, "kernel", None) is not None


class Progbar:
    """Keras 3's progress display, by verbosity:

    - verbose=1: the bar, ``1875/1875 ━━━━━━━━━━━━━━━━━━━━ 4s 2ms/step - accuracy: 0.9512 -
      loss: 0.1638``, redrawn in place at most every `interval` seconds on a terminal (or in
      Jupyter), with the time left while running; elsewhere (a log file) only the finished line
      is printed, one line per epoch.
    - verbose=2: one line when finished, ``1875/1875 - 4s - 2ms/step - accuracy: 0.9512 -
      loss: 0.1638``.
    - verbose=0: nothing.

    Metrics are listed in name order, as Keras sorts its logs. The time per step leaves out the
    first step (Numba compiles then), as Keras's estimate does.
    """

    WIDTH = 20

    def __init__(self, target, verbose=1, stream=None, interval=0.05):
        self.target = target
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stdout
        self.interval = interval
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = bool(isatty and isatty()) or _in_a_notebook()
        self.start = time.perf_counter()
        self._after_first_step = None
        self._last_draw = 0.0
        self._last_len = 0

    def _per_step(self, current, now):
        """Seconds per step, leaving out the first step once there are more (Keras's rule)."""
        if not current:
            return 0.0
        if self._after_first_step is not None and current > 1:
            per_step = (now - self._after_first_step) / (current - 1)
        else:
            per_step = (now - self.start) / current
        return per_step

    def _line(self, current, values, finished, now):
        digits = len(str(self.target))
        count = f"{current:>{digits}}/{self.target}"
        elapsed = now - self.start
        per_step = self._per_step(current, now)
        if self.verbose == 2:
            metrics = "".join(f" - {k}: {v:.4f}" if v > 1e-3 else f" - {k}: {v:.4e}"
                              for k, v in sorted(values.items()))
            return f"{count} - {elapsed:.0f}s - {_format_per_step(per_step)}{metrics}"
        done = int(self.WIDTH * current / max(self.target, 1))
        if self.dynamic:
            bar = f"\x1b[1m{'━' * done}\x1b[0m\x1b[2m{'━' * (self.WIDTH - done)}\x1b[0m"
        else:
            bar = "━" * self.WIDTH
        if finished:
            timing = f"{elapsed:.0f}s {_format_per_step(per_step)}"
        else:
            timing = f"{_format_duration(per_step * (self.target - current))} " \
                     f"{_format_per_step(per_step)}"
        metrics = "".join(f" - {k}: {_format_value(v)}" for k, v in sorted(values.items()))
        return f"{count} {bar} {timing}{metrics}"

    def update(self, current, values=None, finished=False):
        """Show progress `current` of `target` with metric `values` (dict name -> float)."""
        now = time.perf_counter()
        if current == 1 and self._after_first_step is None:
            self._after_first_step = now
        if self.verbose == 0 or (not finished and (self.verbose == 2 or not self.dynamic)):
            return
        if not finished and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        line = self._line(current, values or {}, finished, now)
        if self.dynamic and self.verbose == 1:
            pad = max(self._last_len - len(line), 0)
            self.stream.write("\r" + line + " " * pad)
            self._last_len = len(line)
            if finished:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class ProgbarLogger(Callback):
    """Prints 'Epoch i/n' (when n > 1) and a Progbar per epoch, as Keras's ProgbarLogger; fit
    adds one when verbose > 0. epochs, steps and verbose default to fit's (set_params)."""

    def __init__(self, epochs=None, steps=None, verbose=None, stream=None):
        super().__init__()
        self.epochs, self.steps, self.verbose, self.stream = epochs, steps, verbose, stream
        self.bar = None

    def set_params(self, params):
        super().set_params(params)
        if self.epochs is None:
            self.epochs = params.get("epochs", 1)
        if self.steps is None:
            self.steps = params.get("steps")
        if self.verbose is None:
            verbose = params.get("verbose", 1)
            self.verbose = 1 if verbose == "auto" else verbose

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose and self.epochs > 1:
            stream = self.stream if self.stream is not None else sys.stdout
            stream.write(f"Epoch {epoch + 1}/{self.epochs}\n")
            stream.flush()
        self.bar = Progbar(self.steps, self.verbose, self.stream)

    def on_train_batch_end(self, batch, logs=None):
        self.bar.update(batch + 1, logs)

    def on_epoch_end(self, epoch, logs=None):
        self.bar.update(self.steps, logs, finished=True)


def to_float(value):
    """Plain Python float of a NumPy scalar (History stays JSON-friendly)."""
    return float(np.asarray(value))
