"""Where training time goes: a per-layer breakdown of ``fit``.

Two ways in::

    history = model.fit(x, y, epochs=1, profile=True)
    print(history.profile)                 # a table, one row per phase
    history.profile.as_dict()              # the same numbers, for programs

    from minicnn import profiling
    prof = profiling.profile_fit(model, x, y, batch_size=32, epochs=1)   # fit(profile=True,
                                                                          # verbose=0) -> profile

Rows, in the order a step runs them: ``data: shuffle`` (one permutation per epoch),
``data: gather`` (copying and converting one batch), ``<layer> forward`` for each layer,
``loss + metrics`` (the loss value, accuracy, and the loss's gradient), ``<layer> backward``
in reverse order, ``optimizer``, ``callbacks`` (progress bar, history, user callbacks) and
``other`` (the rest of the wall time: the Python loop itself, validation, ...). Times are
wall-clock seconds from ``time.perf_counter``.

The first training step is left out of the rows and reported on its own as
``first_step_seconds``: it includes Numba's compilation (or loading from its disk cache) and
the first allocation of every workspace buffer.

Profiling wraps the methods of this model's layers, loss and optimizer (on these instances
only, for the duration of the fit) with a clock read before and after; the training loop in
models.py has one path, and ``profile=False`` pays nothing. Validation passes are not timed.

With the batch split over threads (minicnn/parallel.py; ``shards`` > 1) the layer rows time
the calling thread's shard, which runs on the model's own layers while the other shards run
alongside on replicas; two more rows appear: ``shards: wait`` (the caller waiting for the
slowest other shard, after forward and after backward) and ``shards: sum gradients``
(adding the shards' gradients). The rows still add up to the wall time.
"""

from __future__ import annotations

import time
from contextlib import contextmanager

from .callbacks import Callback

__all__ = ["TrainingProfile", "profile_fit", "instrument"]

clock = time.perf_counter


class TrainingProfile(Callback):
    """Accumulated phase times of one ``fit`` call (also a callback: it marks where steps and
    epochs begin and end).

    Attributes: ``seconds`` (dict phase -> seconds, in step order), ``shards`` (threads a full
    batch is split over; 1 = not split), ``steps`` (timed steps, the
    first one excluded), ``samples`` (images in those steps), ``wall_seconds`` (wall time of
    the timed steps' epochs minus the first step), ``first_step_seconds``, ``epochs``.
    """

    def __init__(self, layer_names, n_samples=0, batch_size=1, shards=1):
        super().__init__()
        self.n_samples, self.batch_size = n_samples, batch_size
        self.shards = shards
        self.steps_per_epoch = -(-n_samples // batch_size)
        self.recording = False
        self._epoch_start = None
        self.seconds = {"data: shuffle": 0.0, "data: gather": 0.0}
        for name in layer_names:
            self.seconds[f"{name} forward"] = 0.0
        self.seconds["loss + metrics"] = 0.0
        for name in reversed(layer_names):
            self.seconds[f"{name} backward"] = 0.0
        if shards > 1:
            self.seconds["shards: wait"] = 0.0
            self.seconds["shards: sum gradients"] = 0.0
        self.seconds["optimizer"] = 0.0
        self.seconds["callbacks"] = 0.0
        self.seconds["other"] = 0.0
        self._layer_names = list(layer_names)
        self.steps = 0
        self.samples = 0
        self.epochs = 0
        self.wall_seconds = 0.0
        self.first_step_seconds = None

    def add(self, phase, seconds):
        """Add seconds to a phase."""
        self.seconds[phase] += seconds

    def timed(self, phase, method):
        """`method` wrapped so that each call, while recording, adds its time to `phase`."""
        def wrapper(*args, **kwargs):
            if not self.recording:
                return method(*args, **kwargs)
            start = clock()
            try:
                return method(*args, **kwargs)
            finally:
                self.seconds[phase] += clock() - start
        return wrapper

    # -- callback hooks: the first step is timed apart; validation is not timed --------------------
    def on_epoch_begin(self, epoch, logs=None):
        self.recording = True
        self._epoch_start = clock()

    def on_train_batch_end(self, batch, logs=None):
        now = clock()
        if self.first_step_seconds is None:
            # Step 1 pays for compiling (or loading) kernels and allocating workspaces.
            self.first_step_seconds = now - self._epoch_start
            shuffle = self.seconds["data: shuffle"]
            self.seconds = dict.fromkeys(self.seconds, 0.0)
            self.seconds["data: shuffle"] = shuffle
            self._epoch_start = now - shuffle
        else:
            self.steps += 1
            self.samples += min(self.batch_size, self.n_samples - batch * self.batch_size)
        if batch + 1 == self.steps_per_epoch:
            self.recording = False
            self.wall_seconds += now - self._epoch_start
            self.epochs += 1

    def on_train_end(self, logs=None):
        self.recording = False
        self.finish()

    def finish(self):
        """Put the untimed remainder of the wall time into 'other'."""
        timed = sum(v for k, v in self.seconds.items() if k != "other")
        self.seconds["other"] = max(0.0, self.wall_seconds - timed)

    @property
    def ms_per_step(self):
        """Mean wall milliseconds per timed step."""
        return 1e3 * self.wall_seconds / max(self.steps, 1)

    def as_dict(self):
        """{'shards', 'steps', 'samples', 'epochs', 'wall_seconds', 'ms_per_step',
        'first_step_seconds', 'images_per_second',
        'phases': {phase: {'seconds', 'ms_per_step', 'percent'}}}."""
        steps = max(self.steps, 1)
        wall = self.wall_seconds or 1e-12
        return {
            "shards": self.shards,
            "steps": self.steps,
            "samples": self.samples,
            "epochs": self.epochs,
            "wall_seconds": self.wall_seconds,
            "ms_per_step": self.ms_per_step,
            "first_step_seconds": self.first_step_seconds,
            "images_per_second": self.samples / wall,
            "phases": {name: {"seconds": s, "ms_per_step": 1e3 * s / steps,
                              "percent": 100.0 * s / wall}
                       for name, s in self.seconds.items()},
        }

    def table(self):
        """The breakdown as text: phase, total seconds, ms per step, percent of wall time."""
        d = self.as_dict()
        width = max(len(name) for name in self.seconds) + 2
        lines = []
        if self.shards > 1:
            lines.append(f"batch split over {self.shards} threads; layer rows time the calling "
                         f"thread's shard of ~{self.batch_size // self.shards} samples "
                         "(the others run alongside)")
        lines.append(f"{'phase':<{width}}{'seconds':>10}{'ms/step':>10}{'%':>7}")
        for name, row in d["phases"].items():
            lines.append(f"{name:<{width}}{row['seconds']:>10.3f}{row['ms_per_step']:>10.3f}"
                         f"{row['percent']:>7.1f}")
        lines.append(f"{'total':<{width}}{self.wall_seconds:>10.3f}{self.ms_per_step:>10.3f}"
                     f"{100.0:>7.1f}")
        first = ("n/a" if self.first_step_seconds is None
                 else f"{self.first_step_seconds:.3f} s")
        lines.append(f"{self.steps} timed steps, {d['images_per_second']:,.0f} images/s; "
                     f"first step (compile/cache load, excluded): {first}")
        return "\n".join(lines)

    def __str__(self):
        return self.table()

    def __repr__(self):
        return (f"<TrainingProfile steps={self.steps} ms_per_step={self.ms_per_step:.3f} "
                f"first_step_seconds={self.first_step_seconds}>")


def profile_fit(model, x, y, batch_size=32, epochs=1, **fit_kwargs):
    """Run ``model.fit(x, y, batch_size, epochs, profile=True, verbose=0, **fit_kwargs)`` and
    return its TrainingProfile (also kept as ``model.history.profile``). The model must be
    compiled; it is trained as by fit."""
    fit_kwargs.setdefault("verbose", 0)
    history = model.fit(x, y, batch_size=batch_size, epochs=epochs, profile=True, **fit_kwargs)
    return history.profile


@contextmanager
def instrument(model, profile, callbacks=()):
    """Time each phase of `model`'s training steps into `profile` while inside the block.

    Wraps, on these instances only: each layer's forward and backward (and the last layer's
    backward_preactivation, which the fused softmax path calls), the model's shuffle and
    gather, its loss-and-metrics call and the loss's gradient, the optimizer step, and the
    callbacks' per-batch hook, and the batch split's waiting and gradient sum. Everything is
    restored on exit.
    """
    wrapped = []

    def wrap(owner, name, phase):
        setattr(owner, name, profile.timed(phase, getattr(owner, name)))
        wrapped.append((owner, name))

    for layer in model.layers:
        wrap(layer, "forward", f"{layer.name} forward")
        wrap(layer, "backward", f"{layer.name} backward")
    last = model.layers[-1]
    if model._softmax_is_fused() and hasattr(last, "backward_preactivation"):
        wrap(last, "backward_preactivation", f"{last.name} backward")
    wrap(model, "_shuffled_order", "data: shuffle")
    wrap(model, "_gather", "data: gather")
    wrap(model, "_batch_metrics", "loss + metrics")
    wrap(model.loss, "gradient", "loss + metrics")
    wrap(model.loss, "gradient_through_softmax", "loss + metrics")
    wrap(model.optimizer, "apply_gradients", "optimizer")
    split = getattr(model, "_split", None)
    if profile.shards > 1 and split is not None:
        wrap(split, "wait", "shards: wait")
        wrap(split, "sum_gradients", "shards: sum gradients")
    for callback in callbacks:
        if callback is not profile:
            wrap(callback, "on_train_batch_end", "callbacks")
    try:
        yield profile
    finally:
        for owner, name in wrapped:
            delattr(owner, name)  # the instance attribute goes; the class method shows again
