"""Callbacks (History, EarlyStopping, ModelCheckpoint), the list that calls them, and the
Keras-style progress bar.

A callback gets ``set_model(model)`` and ``set_params(params)``, then Keras's hooks, each with
a ``logs`` dict of the latest metric values:

    fit:       on_train_begin, on_epoch_begin(epoch), on_train_batch_begin(batch),
               on_train_batch_end(batch), on_epoch_end(epoch), on_train_end
    evaluate:  on_test_begin, on_test_batch_begin(batch), on_test_batch_end(batch), on_test_end
               (also fit's validation at the end of each epoch)
    predict:   on_predict_begin, on_predict_batch_begin(batch), on_predict_batch_end(batch),
               on_predict_end

Setting ``model.stop_training = True`` ends fit after the current epoch.
"""

import math
import sys
import time

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


class EarlyStopping(Callback):
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

    def _is_improvement(self, value, reference):
        if reference is None:
            return True
        if self.mode == "min":
            return value < reference - self.min_delta
        return value > reference + self.min_delta

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
