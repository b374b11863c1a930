"""Data parallelism over the batch: one forward/backward pass on several cores.

A batch of N samples is cut into k contiguous shards of rows (k = the number of threads, see
``default_threads``). Shard 0 runs in the calling thread, shard i > 0 in a persistent worker
thread; every shard runs the same layers (one object each: layers keep no per-call state, see
minicnn/graph.py) with its own Tape and its own buffers. A training step becomes::

    1. forward    every shard runs graph.run_forward on its rows, at the same time
    2. loss       the caller joins the outputs (N, K) and computes the loss, the metrics and
                  dL/d(output) on the whole batch (the loss keeps the one division by N)
    3. backward   every shard runs graph.run_backward from its rows of dL/d(output)
    4. combine    the caller adds the shards' gradients in shard order (fixed, hence
                  deterministic); the optimizer then steps once

Layers that need the whole batch mid-pass (BatchNormalization's statistics) call
``ctx.allreduce``: the shards meet at a barrier and each gets the sum over all shards, added in
shard order, so the statistics are those of the whole batch.

Why threads and not processes: every heavy call releases the GIL -- NumPy's matrix products
(BLAS, one thread each, see ops/threads.py) and the Numba kernels, compiled serial with
``nogil=True`` -- so the shards truly overlap and share the weights for free.

Results: the loss and accuracy are those of the one-thread step; gradients differ from it only
by float rounding (a sum over N rows becomes a sum of k partial sums). Training is
bit-identical per seed for a given number of shards.

Cost: each phase is two hand-offs between threads, and the shards' Python code still takes
turns on the GIL, a few hundred microseconds per step on a 2-core machine. So a batch is only
split when every shard gets at least ``MIN_SAMPLES_PER_SHARD`` samples and
``MIN_FLOPS_PER_SHARD`` forward FLOPs (measured: the split lost for models below ~20 MFLOP per
shard and won above ~40; the Keras MNIST tutorial model has 71 MFLOP in a shard of 16 images).

``MINICNN_THREADS=<k>`` sets the number of threads (``1`` turns splitting off); the default is
the number of cores this process may use.
"""

from __future__ import annotations

import os
import queue
import threading
import time

import numpy as np

from .graph import WorkspaceStore, run_backward, run_forward

__all__ = ["default_threads", "MIN_SAMPLES_PER_SHARD", "MIN_FLOPS_PER_SHARD", "BatchSplit",
           "ShardGroup"]

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
    """The process-wide worker threads. One pass at a time uses them (``busy``); a second
    thread that wants them meanwhile (e.g. a server predicting while a model trains) runs
    without splitting instead of waiting."""

    def __init__(self):
        self.pid = os.getpid()
        self.workers = []
        self.busy = threading.Lock()
        self._groups = {}  # k -> ShardGroup, reused by the passes (one at a time: busy)

    def group(self, k):
        """A ShardGroup of k shards for the pass holding `busy` (a new one after an abort)."""
        group = self._groups.get(k)
        if group is None or group.broken:
            group = self._groups[k] = ShardGroup(k)
        return group

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


def shard_bounds(n, k):
    """k contiguous (start, stop) row ranges covering range(n), sizes differing by at most 1."""
    base, extra = divmod(n, k)
    bounds, start = [], 0
    for i in range(k):
        stop = start + base + (1 if i < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


class ShardGroup:
    """The shards of one split pass, for layers that need whole-batch sums (allreduce)."""

    def __init__(self, k):
        self.k = k
        self._barrier = threading.Barrier(k)
        self._parts = [None] * k

    def allreduce(self, index, array):
        """Every shard passes its array; each gets the sum over the shards, added in shard order
        (the same float result everywhere)."""
        self._parts[index] = array
        self._barrier.wait()
        total = self._parts[0].copy()
        for part in self._parts[1:]:
            total += part
        self._barrier.wait()  # nobody may overwrite a part before every shard has read it
        return total

    def abort(self):
        """Release shards waiting at the barrier (one shard failed: they get an error too)."""
        self._barrier.abort()

    @property
    def broken(self):
        """True after abort: the group cannot be used again."""
        return self._barrier.broken


class _SplitTape:
    """The tapes of a split pass, looking like one Tape to the model."""

    def __init__(self, tapes, bounds, lease, training):
        self.tapes, self.bounds, self.training = tapes, bounds, training
        self._lease = lease  # the pool, held until backward (or release)

    def output_logits(self, position=0):
        return np.concatenate([t.output_logits(position) for t in self.tapes])

    def release(self):
        for tape in self.tapes:
            tape.release()
        if self._lease is not None:
            self._lease.busy.release()
            self._lease = None

    def __del__(self):
        lease = self.__dict__.get("_lease")
        if lease is not None:  # a training pass abandoned without backward
            lease.busy.release()


class BatchSplit:
    """How a model runs its passes: split over up to `threads` shards when worth it.

    threads: shards at most (default ``default_threads()``, re-read by ``refresh``).
    """

    def __init__(self, threads=None):
        self.threads = default_threads() if threads is None else max(1, int(threads))
        self._local = threading.local()  # per thread: its buffers (training, inference)
        self.profiler = None

    def refresh(self):
        """Re-read MINICNN_THREADS (fit, evaluate and predict call this)."""
        self.threads = default_threads()

    def shards_for(self, n, flops_per_sample):
        """How many shards a batch of n samples is cut into (1: not split)."""
        k = min(self.threads, n // MIN_SAMPLES_PER_SHARD)
        if k > 1 and MIN_FLOPS_PER_SHARD > 0:
            k = min(k, int(n * flops_per_sample // MIN_FLOPS_PER_SHARD))
        return max(1, k)

    def store(self, training):
        """This thread's WorkspaceStore for training or inference passes."""
        key = "training" if training else "inference"
        store = getattr(self._local, key, None)
        if store is None:
            store = WorkspaceStore()
            setattr(self._local, key, store)
        return store

    # -- passes ---------------------------------------------------------------------------------
    def forward(self, graph, inputs, training, flops_per_sample, seed=None, input_grads=False):
        """-> (outputs, tape) of graph on inputs, split when worth it (see the module doc)."""
        n = len(inputs[0])
        k = self.shards_for(n, flops_per_sample)
        pool = _get_pool() if k > 1 else None
        if pool is None or not pool.busy.acquire(blocking=False):
            return run_forward(graph, inputs, training, self.store(training), seed, input_grads,
                               profiler=self.profiler)
        try:
            bounds = shard_bounds(n, k)
            group = pool.group(k)
            jobs = [(graph, [x[a:b] for x in inputs], training, seed, input_grads, i, k, group)
                    for i, (a, b) in enumerate(bounds)]
            results = self._run(pool.ensure(k - 1), self._forward_shard, jobs, group)
        except BaseException:
            pool.busy.release()
            raise
        outputs = [np.concatenate([r[0][j] for r in results]) for j in range(len(graph.outputs))]
        tape = _SplitTape([r[1] for r in results], bounds, pool, training)
        if not training:
            tape.release()
        return outputs, tape

    def _forward_shard(self, graph, inputs, training, seed, input_grads, index, k, group):
        return run_forward(graph, inputs, training, self.store(training), seed, input_grads,
                           index, k, group, self.profiler)

    def backward(self, tape, output_grads, logits_outputs=()):
        """-> (param_grads {id(param): grad}, input_grads) for a tape from forward."""
        if not isinstance(tape, _SplitTape):
            return run_backward(tape, output_grads, logits_outputs)
        try:
            pool = tape._lease
            if pool is None:
                raise RuntimeError("backward: this split pass was already released.")
            jobs = [(t, [g[a:b] for g in output_grads], logits_outputs)
                    for t, (a, b) in zip(tape.tapes, tape.bounds, strict=True)]
            results = self._run(pool.ensure(len(jobs) - 1), run_backward, jobs, None)
            start = time.perf_counter()
            param_grads, input_grads = results[0]
            for other_params, other_inputs in results[1:]:
                for key, g in other_params.items():
                    if key in param_grads:
                        param_grads[key] += g  # shard 0's buffer: recomputed next step
                    else:
                        param_grads[key] = g
                input_grads = [a if b is None else (b if a is None else np.concatenate([a, b]))
                               for a, b in zip(input_grads, other_inputs, strict=True)]
            if self.profiler is not None:
                self.profiler.add("shards: sum gradients", time.perf_counter() - start)
        finally:
            tape.release()
        return param_grads, input_grads

    def _run(self, workers, func, jobs, group):
        """func(*jobs[i]) for every shard at once (shard 0 here); their results in order."""
        def guarded(*args):
            try:
                return func(*args)
            except BaseException:
                if group is not None:
                    group.abort()
                raise

        for worker, args in zip(workers, jobs[1:], strict=True):
            worker.inbox.put((guarded, args))
        try:
            first, error = guarded(*jobs[0]), None
        except BaseException as exc:
            first, error = None, exc
        start = time.perf_counter()
        results, worker_error = [first], None
        for worker in workers:  # always collect: no worker may still run when we return
            ok, value = worker.outbox.get()
            if not ok and worker_error is None:
                worker_error = value
            results.append(value if ok else None)
        if self.profiler is not None:
            self.profiler.add("shards: wait", time.perf_counter() - start)
        if error is not None and not isinstance(error, threading.BrokenBarrierError):
            raise error
        if worker_error is not None:
            raise worker_error
        if error is not None:
            raise error
        return results
