"""Data parallelism over the batch: one training step (or one prediction chunk) on several cores.

A batch of N samples is cut into k contiguous shards of rows (k = the number of threads, see
``default_threads``). Shard 0 runs in the calling thread on the model's own layers; shard i > 0
runs in a persistent worker thread on *replicas* of the layers (``Layer.replica``: the same
``params`` arrays, read-only during the step, but private caches, workspace buffers and
grads). One training step::

    1. forward    every shard runs the layers' forward on its rows, at the same time
    2. loss       the caller joins the outputs (N, K) and computes the loss, the metrics and
                  dL/d(output) on the whole batch, exactly as the one-thread step does
                  (the loss keeps the one division by the full N)
    3. backward   every shard runs backward from its rows of dL/d(output), filling its grads
    4. combine    the caller adds the shards' gradients into the model's layers in shard
                  order (fixed, hence deterministic); the optimizer then steps once

Why threads and not processes: every heavy call of a step releases the GIL -- NumPy's matrix
products (BLAS, one thread each, see ops/threads.py) and the Numba kernels, all compiled
serial with ``nogil=True`` -- so the shards truly overlap and share the weights for free.

Results: the loss and accuracy are those of the one-thread step; gradients differ from it
only by float rounding (a sum over N rows becomes a sum of k partial sums). Training is
bit-identical per seed for a given number of shards.

Cost: each phase is two hand-offs between threads, and the shards' Python code (layer
bookkeeping, small NumPy calls) still takes turns on the GIL, a few hundred microseconds per
step on the 2-core development VM. So a batch is only split when every shard gets at least
``MIN_SAMPLES_PER_SHARD`` samples and ``MIN_FLOPS_PER_SHARD`` forward FLOPs (measured: the
split lost for models below ~20 MFLOP per shard and won above ~40; the Keras MNIST tutorial
model has 71 MFLOP in a shard of 16 images).

``MINICNN_THREADS=<k>`` sets the number of threads (``1`` turns splitting off); the default
is the number of cores this process may use.
"""

from __future__ import annotations

import os
import queue
import threading

import numpy as np

__all__ = ["default_threads", "MIN_SAMPLES_PER_SHARD", "BatchSplit"]

# Smallest shard worth a thread (see the module docstring for the measurements).
MIN_SAMPLES_PER_SHARD = 8
MIN_FLOPS_PER_SHARD = 30e6  # forward FLOPs, as Layer.flops() counts them


def _usable_cores():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def default_threads():
    """Threads a step may use: $MINICNN_THREADS (an int >= 1) or the number of usable cores."""
    value = os.environ.get("MINICNN_THREADS", "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            pass
    return max(1, _usable_cores())


class _Worker:
    """A daemon thread that runs (function, args) jobs from its inbox, one at a time."""

    def __init__(self, index):
        self.inbox = queue.SimpleQueue()
        self.outbox = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name=f"minicnn-shard-{index}",
                                       daemon=True)
        self.thread.start()

    def _loop(self):
        while True:
            func, args = self.inbox.get()
            try:
                self.outbox.put((True, func(*args)))
            except BaseException as exc:  # handed to the caller, which re-raises it
                self.outbox.put((False, exc))


class _Pool:
    """The process-wide worker threads. One step at a time uses them (``busy``); a second
    thread that wants them meanwhile (e.g. a server predicting while a model trains) runs its
    step without splitting instead of waiting."""

    def __init__(self):
        self.pid = os.getpid()
        self.workers = []
        self.busy = threading.Lock()

    def ensure(self, n):
        while len(self.workers) < n:
            self.workers.append(_Worker(len(self.workers) + 1))
        return self.workers[:n]


_pool = None
_pool_lock = threading.Lock()


def _get_pool():
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():  # threads do not survive a fork
            _pool = _Pool()
        return _pool


def _shard_bounds(n, k):
    """k contiguous (start, stop) row ranges covering range(n), sizes differing by at most 1."""
    base, extra = divmod(n, k)
    bounds, start = [], 0
    for i in range(k):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def _forward(layers, x, training, out):
    for layer in layers:
        x = layer.forward(x, training=training)
    if out is None:
        return x
    out[...] = x
    return None


def _backward(model, layers, grad):
    model._backward_layers(layers, grad)


class BatchSplit:
    """The shards of one Sequential model: its replicas and the step logic described above.

    threads: shards at most (default ``default_threads()``); re-read on every ``fit``,
    ``evaluate`` and ``predict`` through ``model._batch_split()``.
    """

    def __init__(self, model, threads=None):
        self.model = model
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self._key = None
        self._shards = []  # per shard, its list of layers; shard 0 is model.layers

    def shards_for(self, n):
        """How many shards a batch of n samples is cut into (1: not split)."""
        k = min(self.threads, n // MIN_SAMPLES_PER_SHARD)
        if k > 1 and MIN_FLOPS_PER_SHARD > 0:
            layers = self.model.layers
            flops = sum(layer.flops() for layer in layers) if self.model.built else 0
            k = min(k, int(n * flops // MIN_FLOPS_PER_SHARD))
        return max(1, k)

    def _layers(self, k):
        layers = self.model.layers
        # Rebuild the replicas when the model's layers (or their settings) changed.
        key = tuple((id(layer), id(layer.params), layer.compute_input_gradient, layer.dtype)
                    for layer in layers)
        if key != self._key:
            self._key, self._shards = key, [list(layers)]
        while len(self._shards) < k:
            self._shards.append([layer.replica() for layer in layers])
        return self._shards[:k]

    # -- running the shards -----------------------------------------------------------------------
    def _run(self, workers, func, shard_args):
        """func(*shard_args[i]) for every shard at once (shard 0 here); their results in order."""
        for worker, args in zip(workers, shard_args[1:], strict=True):
            worker.inbox.put((func, args))
        try:
            first, error = func(*shard_args[0]), None
        except BaseException as exc:
            first, error = None, exc
        results = self.wait(workers)  # always: no worker may still be running after we return
        if error is not None:
            raise error
        return [first, *results]

    def wait(self, workers):
        """Collect the workers' results in shard order; re-raise the first error."""
        results, error = [], None
        for worker in workers:
            ok, value = worker.outbox.get()
            if not ok and error is None:
                error = value
            results.append(value if ok else None)
        if error is not None:
            raise error
        return results

    def sum_gradients(self, shards):
        """Add the replicas' grads into the model's layers, in shard order (deterministic)."""
        for j, layer in enumerate(shards[0]):
            if not layer.trainable:
                continue
            for key, total in layer.grads.items():
                for other in shards[1:]:
                    total += other[j].grads[key]

    # -- the entry points ------------------------------------------------------------------------
    def train_step(self, x, y):
        """One optimizer step on (x, y) split across the shards -> (loss, correct); None when the
        batch is not worth splitting or the workers are busy (the caller runs the plain step)."""
        k = self.shards_for(len(x))
        if k < 2:
            return None
        pool = _get_pool()
        if not pool.busy.acquire(blocking=False):
            return None
        try:
            model = self.model
            workers = pool.ensure(k - 1)
            shards = self._layers(k)
            bounds = _shard_bounds(len(x), k)
            outputs = self._run(workers, _forward,
                                [(layers, x[a:b], True, None)
                                 for layers, (a, b) in zip(shards, bounds, strict=True)])
            y_pred = np.concatenate(outputs)
            loss, correct = model._batch_metrics(y, y_pred)
            if not np.isfinite(loss):
                return loss, correct  # the caller stops before any update is applied
            grad = model._output_gradient(y, y_pred)
            self._run(workers, _backward,
                      [(model, layers, grad[a:b])
                       for layers, (a, b) in zip(shards, bounds, strict=True)])
            self.sum_gradients(shards)
        finally:
            pool.busy.release()
        model.optimizer.apply_gradients(model._trainable_pairs())
        return loss, correct

    def predict_into(self, x, out):
        """Inference forward of x split across the shards, written into out (same rows).
        Returns False (nothing done) when the batch is not worth splitting or the workers are
        busy."""
        k = self.shards_for(len(x))
        if k < 2:
            return False
        pool = _get_pool()
        if not pool.busy.acquire(blocking=False):
            return False
        try:
            workers = pool.ensure(k - 1)
            shards = self._layers(k)
            bounds = _shard_bounds(len(x), k)
            self._run(workers, _forward,
                      [(layers, x[a:b], False, out[a:b])
                       for layers, (a, b) in zip(shards, bounds, strict=True)])
        finally:
            pool.busy.release()
        return True
