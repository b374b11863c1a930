"""Where training time goes: a per-phase breakdown of ``fit``.

Two ways in::

    history = model.fit(x, y, epochs=1, profile=True)
    print(history.profile)                 # a table, one row per phase
    history.profile.as_dict()              # the same numbers, for programs

    from minicnn import profiling
    prof = profiling.profile_fit(model, x, y, batch_size=32, epochs=1)   # fit(profile=True,
                                                                          # verbose=0) -> profile

Rows, in the order a step runs them: ``data: shuffle`` (one permutation per epoch),
``data: gather`` (copying and converting one batch), ``<layer> forward`` for each layer,
``loss + metrics`` (the loss, its gradient and the metrics), ``<layer> backward`` in reverse
order, ``optimizer``, ``callbacks`` (progress bar, history, user callbacks) and ``other`` (the
rest of the wall time: the Python loop itself, validation, ...). Times are wall-clock seconds
from ``time.perf_counter``.

The first training step is left out of the rows and reported on its own as
``first_step_seconds``: it includes Numba's compilation (or loading from its disk cache) and
the first allocation of every workspace buffer.

How it is measured: the profile is a Callback (it marks where steps and epochs begin and end)
and the sink of the model's timing events. With ``fit(profile=True)`` the model hands it to
the places that run a phase: the fit loop (``data: *``, ``callbacks``), ``Model.train_step``
(``loss + metrics``, ``optimizer``), the graph executor (each layer's forward and backward,
minicnn/graph.py) and the batch split (minicnn/parallel.py). Each calls
``profile.add(phase, seconds)`` or ``with profile.phase(name):``. Nothing is patched, and
``profile=False`` costs nothing. Validation passes are not timed.

With the batch split over threads (``shards`` > 1) the layer rows time the calling thread's
shard while the other shards run alongside; two more rows appear: ``shards: wait`` (the caller
waiting for the slowest other shard, after forward and after backward) and ``shards: sum
gradients`` (adding the shards' gradients). The rows still add up to the wall time.
"""

from __future__ import annotations

import time

from .callbacks import Callback

__all__ = ["TrainingProfile", "profile_fit"]

clock = time.perf_counter


class _Phase:
    """`with profile.phase(name):` adds the block's wall time to that phase while recording."""

    __slots__ = ("profile", "name", "start")

    def __init__(self, profile, name):
        self.profile, self.name = profile, name

    def __enter__(self):
        self.start = clock()

    def __exit__(self, *exc):
        self.profile.add(self.name, clock() - self.start)


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
        """Add seconds to a phase (ignored outside the timed steps, e.g. during validation)."""
        if self.recording:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + seconds

    def phase(self, name):
        """A context manager timing its block into phase `name`."""
        return _Phase(self, name)

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
