"""Training callbacks (History, EarlyStopping, ModelCheckpoint) and the Keras-style progress bar.

A callback gets `set_model(model)` and then these calls from `fit`, each with a `logs` dict of
the latest metric values: on_train_begin, on_epoch_begin(epoch), on_train_batch_end(batch),
on_epoch_end(epoch), on_train_end. Setting `model.stop_training = True` ends fit after the
current epoch.
"""

import math
import sys
import time

import numpy as np


class Callback:
    """Base class: every hook does nothing."""

    def __init__(self):
        self.model = None

    def set_model(self, model):
        self.model = model

    def on_train_begin(self, logs=None):
        pass

    def on_train_end(self, logs=None):
        pass

    def on_epoch_begin(self, epoch, logs=None):
        pass

    def on_epoch_end(self, epoch, logs=None):
        pass

    def on_train_batch_end(self, batch, logs=None):
        pass


class History(Callback):
    """Records per-epoch metrics: `history.history['loss']`, ['accuracy'], ['val_loss'], ...

    `history.epoch` lists the epoch indices; fit returns this object.
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
    if mode not in ("auto", "min", "max"):
        raise ValueError(f"{where}: mode must be 'auto', 'min' or 'max', got {mode!r}.")
    if mode == "auto":
        mode = "max" if "acc" in monitor else "min"
    return mode


class EarlyStopping(Callback):
    """Stop training when `monitor` has not improved by more than `min_delta` for `patience`
    epochs. With restore_best_weights=True the best epoch's weights are put back when it stops.
    """

    def __init__(self, monitor="val_loss", min_delta=0.0, patience=0, mode="auto",
                 restore_best_weights=False, verbose=0):
        super().__init__()
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}.")
        self.monitor = monitor
        self.min_delta = abs(float(min_delta))
        self.patience = patience
        self.mode = _monitor_mode(monitor, mode, "EarlyStopping")
        self.restore_best_weights = restore_best_weights
        self.verbose = verbose
        self.stopped_epoch = None

    def _improved(self, value):
        if self.mode == "min":
            return value < self.best - self.min_delta
        return value > self.best + self.min_delta

    def on_train_begin(self, logs=None):
        self.wait = 0
        self.best = math.inf if self.mode == "min" else -math.inf
        self.best_weights = None
        self.best_epoch = None
        self.stopped_epoch = None

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        if self.monitor not in logs:
            raise ValueError(
                f"EarlyStopping: monitor {self.monitor!r} is not among the epoch metrics "
                f"{sorted(logs)}. For 'val_*' metrics pass validation_data or validation_split."
            )
        value = logs[self.monitor]
        if self._improved(value):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            if self.restore_best_weights:
                self.best_weights = self.model.get_weights()
            return
        self.wait += 1
        if self.wait >= self.patience:
            self.stopped_epoch = epoch
            self.model.stop_training = True
            if self.restore_best_weights and self.best_weights is not None:
                self.model.set_weights(self.best_weights)
            if self.verbose:
                print(f"Epoch {epoch + 1}: early stopping (best {self.monitor} "
                      f"{self.best:.4f} at epoch {self.best_epoch + 1}).")


class ModelCheckpoint(Callback):
    """Save the model (or only its weights) after each epoch.

    filepath may hold format fields from the epoch logs, e.g. 'ckpt-{epoch:02d}-{val_loss:.3f}.npz'
    (epoch counts from 1). save_best_only keeps only files that improve `monitor`.
    """

    def __init__(self, filepath, monitor="val_loss", save_best_only=False, mode="auto",
                 save_weights_only=False, verbose=0):
        super().__init__()
        self.filepath = str(filepath)
        self.monitor = monitor
        self.save_best_only = save_best_only
        self.mode = _monitor_mode(monitor, mode, "ModelCheckpoint")
        self.save_weights_only = save_weights_only
        self.verbose = verbose
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
    if seconds >= 3600:
        return f"{int(seconds // 3600)}:{int(seconds % 3600 // 60):02d}:{int(seconds % 60):02d}"
    if seconds >= 60:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"
    return f"{int(seconds)}s"


def _format_per_step(seconds):
    if seconds >= 1:
        return f"{seconds:.0f}s/step"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.0f}ms/step"
    return f"{seconds * 1e6:.0f}us/step"


def _format_value(value):
    return f"{value:.4f}" if abs(value) > 1e-3 or value == 0 else f"{value:.4e}"


class Progbar:
    """Keras's progress line:
    `1875/1875 ━━━━━━━━━━━━━━━━━━━━ 4s 2ms/step - accuracy: 0.95 - loss: 0.16`.

    On a terminal (or in Jupyter) the line is redrawn in place at most every `interval`
    seconds, showing the time left; elsewhere only the finished line is printed, so logs get
    one line per epoch. verbose=0 prints nothing.
    """

    WIDTH = 20

    def __init__(self, target, verbose=1, stream=None, interval=0.05):
        self.target = target
        self.verbose = verbose
        self.stream = stream if stream is not None else sys.stdout
        self.interval = interval
        isatty = getattr(self.stream, "isatty", None)
        self.dynamic = bool(isatty and isatty()) or "ipykernel" in sys.modules
        self.start = time.perf_counter()
        self._last_draw = 0.0
        self._last_len = 0

    def _line(self, current, values, finished):
        digits = len(str(self.target))
        done = int(self.WIDTH * current / max(self.target, 1))
        if self.dynamic:
            bar = f"\x1b[1m{'━' * done}\x1b[0m\x1b[2m{'━' * (self.WIDTH - done)}\x1b[0m"
        else:
            bar = "━" * self.WIDTH
        elapsed = time.perf_counter() - self.start
        per_step = elapsed / max(current, 1)
        if finished:
            timing = f"{_format_duration(elapsed)} {_format_per_step(per_step)}"
        else:
            eta = per_step * (self.target - current)
            timing = f"{_format_duration(eta)} {_format_per_step(per_step)}"
        metrics = "".join(f" - {k}: {_format_value(v)}" for k, v in sorted(values.items()))
        return f"{current:>{digits}}/{self.target} {bar} {timing}{metrics}"

    def update(self, current, values=None, finished=False):
        """Show progress `current` of `target` with metric `values` (dict name -> float)."""
        if self.verbose == 0 or (not finished and not self.dynamic):
            return
        now = time.perf_counter()
        if not finished and now - self._last_draw < self.interval:
            return
        self._last_draw = now
        line = self._line(current, values or {}, finished)
        if self.dynamic:
            pad = max(self._last_len - len(line), 0)
            self.stream.write("\r" + line + " " * pad)
            self._last_len = len(line)
            if finished:
                self.stream.write("\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()


class ProgbarLogger(Callback):
    """Prints 'Epoch i/n' and a Progbar per epoch; added by fit when verbose > 0."""

    def __init__(self, epochs, steps, verbose=1, stream=None):
        super().__init__()
        self.epochs, self.steps, self.verbose, self.stream = epochs, steps, verbose, stream
        self.bar = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.verbose:
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
