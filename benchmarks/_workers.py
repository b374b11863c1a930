"""One benchmark worker: train the tutorial CNN with one framework in this fresh process.

Run by bench_mnist.py, one process per (framework, seed), never imported by it:

    python benchmarks/_workers.py --framework minicnn --seed 1 --epochs 10 --spawn-time T

The very first statement records time.time(), so the start-to-first-batch figure can be split
into interpreter start-up (parent's Popen moment -> here) and everything after. The worker
prints progress/profile text freely and, last, one line ``BENCH_RESULT {json}`` that the parent
parses. Figures (all wall-clock seconds unless named otherwise):

- ``epoch_s``: each epoch's duration (callback on_epoch_begin -> on_epoch_end);
- ``first_batch_s``: parent's spawn time -> end of the first training batch (on_train_batch_end,
  or after the first optimizer.step for PyTorch): imports, data loading, model building, JIT
  compile or cache load and the first step all count, as a user would feel them;
- ``fit_s``: the whole fit() call; ``test_loss``, ``test_accuracy`` from evaluate();
- ``predict_images_per_s``: test images / median predict() time over the repeats that follow
  one untimed warm-up call (``predict_first_s`` is that warm-up call, reported separately);
- ``peak_rss_mb``: getrusage(RUSAGE_SELF).ru_maxrss at the end, in MiB.

Data, for every framework: minicnn.datasets.mnist.load_data() (MINICNN_DATA_DIR, as users) and
the tutorial's preprocessing ``x / 255.0`` and ``reshape(-1, 28, 28, 1)``.
"""

import time

T_START = time.time()  # before any other import: interpreter start-up is measured up to here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

from _model import tutorial_layers  # noqa: E402  (benchmarks/ is sys.path[0])

RESULT_PREFIX = "BENCH_RESULT "
FRAMEWORKS = ("minicnn", "keras", "torch")
MALLOC_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
               "MALLOC_ARENA_MAX")


def parse_args(argv=None):
    """The worker's command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", required=True, choices=FRAMEWORKS)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--predict-batch-size", type=int, default=32)
    p.add_argument("--predict-repeats", type=int, default=3)
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N training (and at most N test) images")
    p.add_argument("--spawn-time", type=float, default=None,
                   help="parent's time.time() just before it started this process")
    p.add_argument("--torch-channels-last", action="store_true")
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--profile", action="store_true",
                   help="minicnn only: ask fit() for its profile (if this minicnn has one)")
    return p.parse_args(argv)


class Clock:
    """Time stamps shared by the per-framework callbacks / hooks."""

    def __init__(self):
        self.first_batch_end = None  # time.time() at the end of the first training batch
        self.epoch_start = None
        self.epoch_s = []

    def batch_end(self):
        if self.first_batch_end is None:
            self.first_batch_end = time.time()

    def epoch_begin(self):
        self.epoch_start = time.perf_counter()

    def epoch_end(self):
        self.epoch_s.append(time.perf_counter() - self.epoch_start)


def load_mnist(limit):
    """The tutorial's data: (x_train, y_train), (x_test, y_test).

    x: float64 (N, 28, 28, 1) in [0, 1] (x / 255.0, as the tutorial); y: uint8 (N,) digits."""
    from minicnn.datasets import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_data(verbose=0)
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]
    x_train = (x_train / 255.0).reshape(-1, 28, 28, 1)
    x_test = (x_test / 255.0).reshape(-1, 28, 28, 1)
    return (x_train, y_train), (x_test, y_test)


def time_predict(predict, x, repeats):
    """(first call's seconds, median seconds of `repeats` further calls, all times)."""
    t = time.perf_counter()
    predict(x)
    first = time.perf_counter() - t
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - t)
    ordered = sorted(times)
    mid = len(ordered) // 2
    med = ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
    return first, med, times


# ----------------------------------------------------------------------------------- minicnn


def run_minicnn(args, clock, out):
    """Train the tutorial model with minicnn; fills `out` with versions and figures."""
    t = time.time()
    import numba
    import numpy as np

    import minicnn
    from minicnn import callbacks, layers, models

    out["import_s"] = time.time() - t
    out["versions"] = {"minicnn": minicnn.__version__, "numpy": np.__version__,
                       "numba": numba.__version__}
    out["config"] = {"numba_threads": numba.get_num_threads(),
                     "numba_threading_layer": _numba_layer(numba)}
    t = time.time()
    (x_train, y_train), (x_test, y_test) = load_mnist(args.limit)
    out["data_s"] = time.time() - t

    class Timer(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            clock.epoch_begin()

        def on_epoch_end(self, epoch, logs=None):
            clock.epoch_end()

        def on_train_batch_end(self, batch, logs=None):
            clock.batch_end()

    minicnn.set_random_seed(args.seed)
    model = models.Sequential(tutorial_layers(layers))
    model.build((28, 28, 1))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    fit_kwargs = {}
    profiled = args.profile and minicnn_profile_supported(model)
    if args.profile and not profiled:
        print("profile: this minicnn's fit() has no profile=True (minicnn.profiling); "
              "timings only.", flush=True)
    if profiled:
        fit_kwargs["profile"] = True
    t = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        verbose=0, callbacks=[Timer()], **fit_kwargs)
    out["fit_s"] = time.perf_counter() - t
    out["train_loss"] = float(history.history["loss"][-1])
    out["train_accuracy"] = float(history.history["accuracy"][-1])
    if profiled:
        print_minicnn_profile(history, out)
    loss, acc = model.evaluate(x_test, y_test, batch_size=args.batch_size, verbose=0)
    out["test_loss"], out["test_accuracy"] = float(loss), float(acc)
    return lambda x: model.predict(x, batch_size=args.predict_batch_size, verbose=0), x_test


def _numba_layer(numba):
    try:
        return numba.threading_layer()
    except ValueError:  # no parallel function has run yet
        return numba.config.THREADING_LAYER


def minicnn_profile_supported(model):
    """True when this minicnn's fit() takes profile=True (the engine's profile API)."""
    import inspect

    try:
        return "profile" in inspect.signature(model.fit).parameters
    except (TypeError, ValueError):
        return False


def print_minicnn_profile(history, out):
    """Print the table fit(profile=True) left in history.profile; keep its numbers in `out`."""
    profile = getattr(history, "profile", None)
    if profile is None:
        print("profile: fit accepted profile=True but left no history.profile.", flush=True)
        return
    print(profile, flush=True)
    as_dict = getattr(profile, "as_dict", None)
    if callable(as_dict):
        out["profile"] = as_dict()


# ----------------------------------------------------------------------------------- Keras


def run_keras(args, clock, out):
    """Train the tutorial model with Keras 3 on TensorFlow (CPU); fills `out`."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t = time.time()
    import keras
    import numpy as np
    import tensorflow as tf

    out["import_s"] = time.time() - t
    out["versions"] = {"keras": keras.__version__, "tensorflow": tf.__version__,
                       "numpy": np.__version__}
    devices = [d.device_type for d in tf.config.list_physical_devices()]
    out["config"] = {"backend": keras.backend.backend(), "devices": devices,
                     "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                     "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads()}
    t = time.time()
    (x_train, y_train), (x_test, y_test) = load_mnist(args.limit)
    out["data_s"] = time.time() - t

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            clock.epoch_begin()

        def on_epoch_end(self, epoch, logs=None):
            clock.epoch_end()

        def on_train_batch_end(self, batch, logs=None):
            clock.batch_end()

    keras.utils.set_random_seed(args.seed)
    model = keras.Sequential([keras.Input(shape=(28, 28, 1)), *tutorial_layers(keras.layers)])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    out["config"]["jit_compile"] = str(getattr(model, "jit_compile", None))
    t = time.perf_counter()
    history = model.fit(x_train, y_train, epochs=args.epochs, batch_size=args.batch_size,
                        verbose=0, callbacks=[Timer()])
    out["fit_s"] = time.perf_counter() - t
    out["train_loss"] = float(history.history["loss"][-1])
    out["train_accuracy"] = float(history.history["accuracy"][-1])
    loss, acc = model.evaluate(x_test, y_test, batch_size=args.batch_size, verbose=0)
    out["test_loss"], out["test_accuracy"] = float(loss), float(acc)
    return lambda x: model.predict(x, batch_size=args.predict_batch_size, verbose=0), x_test


# ----------------------------------------------------------------------------------- PyTorch


def run_torch(args, clock, out):
    """Train the same architecture with PyTorch (CPU): glorot-uniform weights, zero biases,
    Adam(lr=1e-3, eps=1e-7 as Keras), cross-entropy on logits, a plain loop over shuffled
    index batches (no DataLoader). NCHW, or channels_last with --torch-channels-last."""
    t = time.time()
    import numpy as np
    import torch
    from torch import nn

    out["import_s"] = time.time() - t
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    memory_format = torch.channels_last if args.torch_channels_last else torch.contiguous_format
    out["versions"] = {"torch": torch.__version__, "numpy": np.__version__}
    out["config"] = {"threads": torch.get_num_threads(),
                     "layout": "channels_last" if args.torch_channels_last else "NCHW",
                     "malloc_env": {k: os.environ[k] for k in MALLOC_VARS if k in os.environ}}
    t = time.time()
    (x_train, y_train), (x_test, y_test) = load_mnist(args.limit)

    def to_tensor(x):
        # NHWC float64 -> NCHW float32 tensor in the chosen memory layout.
        nchw = torch.from_numpy(x.astype(np.float32)).permute(0, 3, 1, 2)
        return nchw.contiguous(memory_format=memory_format)

    xt_train, xt_test = to_tensor(x_train), to_tensor(x_test)
    yt_train = torch.from_numpy(y_train.astype(np.int64))
    yt_test = torch.from_numpy(y_test.astype(np.int64))
    del x_train
    out["data_s"] = time.time() - t

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    model = nn.Sequential(
        nn.Conv2d(1, 25, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(25, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        # 28 -> 26 -> 13 -> 11 -> 5 -> 3 -> 1: one pixel left, so NCHW and NHWC flatten alike.
        nn.Flatten(),
        nn.Linear(64, 64), nn.ReLU(),
        nn.Linear(64, 10),
    )
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)  # glorot uniform, same fans as Keras
            nn.init.zeros_(module.bias)
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-7)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(args.seed)
    n = len(xt_train)
    bs = args.batch_size
    t_fit = time.perf_counter()
    for _epoch in range(args.epochs):
        clock.epoch_begin()
        model.train()
        order = torch.randperm(n, generator=generator)
        loss_sum = torch.zeros(())
        correct = torch.zeros((), dtype=torch.int64)
        for start in range(0, n, bs):
            index = order[start:start + bs]
            xb = xt_train[index].contiguous(memory_format=memory_format)
            yb = yt_train[index]
            optimizer.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            optimizer.step()
            clock.batch_end()
            with torch.no_grad():
                loss_sum += loss.detach() * len(index)
                correct += (logits.argmax(1) == yb).sum()
        clock.epoch_end()
    out["fit_s"] = time.perf_counter() - t_fit
    out["train_loss"] = float(loss_sum) / n
    out["train_accuracy"] = float(correct) / n

    def predict(x):
        model.eval()
        result = torch.empty((len(x), 10))
        with torch.inference_mode():
            for start in range(0, len(x), args.predict_batch_size):
                logits = model(x[start:start + args.predict_batch_size])
                result[start:start + len(logits)] = torch.softmax(logits, dim=1)
        return result.numpy()

    model.eval()
    total_loss = 0.0
    total_correct = 0
    with torch.inference_mode():
        for start in range(0, len(xt_test), bs):
            logits = model(xt_test[start:start + bs])
            yb = yt_test[start:start + bs]
            total_loss += float(nn.functional.cross_entropy(logits, yb, reduction="sum"))
            total_correct += int((logits.argmax(1) == yb).sum())
    out["test_loss"] = total_loss / len(xt_test)
    out["test_accuracy"] = total_correct / len(xt_test)
    return predict, xt_test


RUNNERS = {"minicnn": run_minicnn, "keras": run_keras, "torch": run_torch}


def main(argv=None):
    """Run one framework, print ``BENCH_RESULT {json}`` as the last line."""
    args = parse_args(argv)
    clock = Clock()
    spawn = args.spawn_time if args.spawn_time is not None else T_START
    out = {"framework": args.framework, "seed": args.seed, "epochs": args.epochs,
           "batch_size": args.batch_size, "limit": args.limit, "pid": os.getpid(),
           "startup_s": T_START - spawn}
    predict, x_test = RUNNERS[args.framework](args, clock, out)
    out["epoch_s"] = clock.epoch_s
    out["first_batch_s"] = (clock.first_batch_end - spawn) if clock.first_batch_end else None
    first, med, times = time_predict(predict, x_test, args.predict_repeats)
    out["predict_first_s"] = first
    out["predict_s"] = times
    out["predict_images"] = len(x_test)
    out["predict_batch_size"] = args.predict_batch_size
    out["predict_images_per_s"] = len(x_test) / med
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    scale = 1 if sys.platform != "darwin" else 1 / 1024
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024
    out["total_s"] = time.time() - spawn
    print(RESULT_PREFIX + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
