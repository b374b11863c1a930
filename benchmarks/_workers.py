"""One benchmark worker: train one model with one framework in this fresh process.

Run by bench_mnist.py, one process per (framework, seed), never imported by it:

    python benchmarks/_workers.py --framework minicnn --seed 1 --epochs 10 --spawn-time T
    python benchmarks/_workers.py --framework jax --model convnet --batch-size 128

Frameworks: minicnn; keras (Keras 3 on --keras-backend tensorflow or jax); torch (PyTorch, with
--torch-channels-last and --torch-plain-loop); jax (JAX + optax, the whole training step under
one jax.jit). Models: benchmarks/_model.py (tutorial, tutorial-wide, convnet; resnet-cifar, a
graph built with the functional API), each with its own recipe (batch size, loss); every
framework initialises with Keras's glorot_uniform and zero biases and trains with Adam(lr 1e-3,
beta 0.9 / 0.999, epsilon 1e-7) on batches shuffled each epoch. A framework that lacks a layer
or the functional API the model needs (minicnn before its Dropout, or before ``Input`` and
``Model(inputs, outputs)``; the JAX peer for graphs) prints ``BENCH_RESULT {"skipped": reason}``
and exits 0.

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
- ``peak_rss_mb``: getrusage(RUSAGE_SELF).ru_maxrss at the end, in MiB;
- ``blas``: NumPy's BLAS and the kernel it picked (benchmarks/_blas.py), read after the timed
  part; ``compute``: what runs the framework's own products (for minicnn NumPy's BLAS).

Data, for every framework: minicnn.datasets.mnist.load_data() (MINICNN_DATA_DIR, as users) and
the tutorial's preprocessing ``x / 255.0`` and ``reshape(-1, 28, 28, 1)``; for resnet-cifar,
random uint8 images of CIFAR-10's shapes (the same for every framework and seed: DATA_SEED)
scaled as keras.io's CIFAR examples do, ``x.astype("float32") / 255``, and random labels 0-9.
"""

import time

T_START = time.time()  # before any other import: interpreter start-up is measured up to here

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402

import _model  # noqa: E402  (benchmarks/ is sys.path[0])

RESULT_PREFIX = "BENCH_RESULT "
FRAMEWORKS = ("minicnn", "keras", "torch", "jax")
KERAS_EPSILON = 1e-7  # Keras's Adam epsilon; the PyTorch and JAX peers use it too
DATA_SEED = 0  # the random CIFAR-shaped data: one data set for every framework and seed
# Keras's BatchNormalization: moving = 0.99 * moving + 0.01 * batch statistic, epsilon 1e-3.
# PyTorch's momentum is the weight of the new value: 1 - 0.99.
KERAS_BN_MOMENTUM, KERAS_BN_EPSILON = 0.99, 1e-3


class Skipped(Exception):
    """This framework cannot train this model (a layer is missing): reported, not a failure."""
MALLOC_VARS = ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TOP_PAD_",
               "MALLOC_ARENA_MAX")


def parse_args(argv=None):
    """The worker's command line (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--framework", required=True, choices=FRAMEWORKS)
    p.add_argument("--model", default="tutorial", choices=tuple(_model.MODELS))
    p.add_argument("--keras-backend", default="tensorflow", choices=("tensorflow", "jax"))
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
    p.add_argument("--torch-plain-loop", action="store_true",
                   help="zero_grad / forward / loss / backward / step only: no per-step "
                        "loss and accuracy sums")
    p.add_argument("--no-predict", action="store_true",
                   help="skip the predict() timing (scaling runs need only s/epoch)")
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

    x: float64 (N, 28, 28, 1) in [0, 1] (x / 255.0, as the tutorial); y: uint8 (N,) digits
    (models whose recipe says one_hot get them one-hot encoded by the framework's own tool)."""
    from minicnn.datasets import mnist

    (x_train, y_train), (x_test, y_test) = mnist.load_data(verbose=0)
    if limit is not None:
        x_train, y_train = x_train[:limit], y_train[:limit]
        x_test, y_test = x_test[:limit], y_test[:limit]
    x_train = (x_train / 255.0).reshape(-1, 28, 28, 1)
    x_test = (x_test / 255.0).reshape(-1, 28, 28, 1)
    return (x_train, y_train), (x_test, y_test)


def load_random_cifar(limit, model="resnet-cifar"):
    """Random data of CIFAR-10's shapes: (x_train, y_train), (x_test, y_test).

    x: float32 (N, 32, 32, 3) in [0, 1] (uint8 pixels / 255, as keras.io's CIFAR examples);
    y: uint8 (N,) classes 0-9, drawn independently of x, so no model beats chance (10 %): the
    figures to read are the times. 50,000 / 10,000 images (the first `limit` of each)."""
    import numpy as np

    recipe = _model.recipe(model)
    rng = np.random.default_rng(DATA_SEED)
    n_train = _model.train_images(model, limit)
    n_test = recipe["test_images"] if limit is None else min(limit, recipe["test_images"])
    shape = _model.input_shape(model)
    out = []
    for n in (n_train, n_test):
        x = rng.integers(0, 256, (n, *shape), dtype=np.uint8).astype(np.float32) / 255
        out.append((x, rng.integers(0, 10, n, dtype=np.uint8)))
    return tuple(out)


def load_data(model, limit):
    """The model's data: random CIFAR-shaped data for recipes that say so, else MNIST."""
    if _model.recipe(model).get("data") == "random-cifar":
        return load_random_cifar(limit, model)
    return load_mnist(limit)


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


def minicnn_missing_layers(layers_module, model_name):
    """Keras layer class names model `model_name` needs that this minicnn does not have."""
    return [name for name in _model.needs(model_name) if not hasattr(layers_module, name)]


def minicnn_functional_api(minicnn_module):
    """(api, None) with api.Input / api.Model / api.layers when this minicnn has Keras's
    functional API, else (None, [what is missing]). ``Input`` is looked for at the top level,
    then in ``layers``; ``Model`` at the top level, then ``models.Model``; the two must build a
    one-layer ``Model(inputs, outputs)`` (a probe, as the API may take ``*args``)."""
    from types import SimpleNamespace

    layers, models = minicnn_module.layers, minicnn_module.models
    make_input = getattr(minicnn_module, "Input", None) or getattr(layers, "Input", None)
    if make_input is None:
        return None, ["minicnn.Input", "Model(inputs, outputs)"]
    model_class = getattr(minicnn_module, "Model", None) or getattr(models, "Model", None)
    try:
        probe = make_input(shape=(2,))
        model_class(probe, layers.Dense(1)(probe))
    except Exception as exc:  # noqa: BLE001 - whatever fails, the API is not there yet
        return None, [f"Model(inputs, outputs) ({type(exc).__name__}: {exc})"]
    return SimpleNamespace(Input=make_input, Model=model_class, layers=layers), None


def run_minicnn(args, clock, out):
    """Train the model with minicnn; fills `out` with versions and figures."""
    t = time.time()
    import numba
    import numpy as np

    import minicnn
    from minicnn import callbacks, layers, models

    out["import_s"] = time.time() - t
    out["versions"] = {"minicnn": minicnn.__version__, "numpy": np.__version__,
                       "numba": numba.__version__}
    out["minicnn_path"] = os.path.dirname(os.path.abspath(minicnn.__file__))
    out["config"] = {"numba_threads": numba.get_num_threads(),
                     "numba_threading_layer": _numba_layer(numba)}
    missing = minicnn_missing_layers(layers, args.model)
    api = None
    if _model.is_graph(args.model):
        api, missing_api = minicnn_functional_api(minicnn)
        if missing_api:
            missing_layers = f"; nor layers.{', layers.'.join(missing)}" if missing else ""
            raise Skipped(f"minicnn at {out['minicnn_path']} has no functional API yet "
                          f"({', '.join(missing_api)}{missing_layers}; issue 11); the "
                          f"{args.model} model runs on the peers only")
    if missing:
        raise Skipped(f"minicnn at {out['minicnn_path']} has no layers.{', layers.'.join(missing)}"
                      f" yet (issue 10 adds Keras's layers); the {args.model} model runs on the "
                      "peers only")
    recipe = _model.recipe(args.model)
    t = time.time()
    (x_train, y_train), (x_test, y_test) = load_data(args.model, args.limit)
    if recipe["one_hot"]:
        eye = np.eye(10, dtype=np.float32)
        y_train, y_test = eye[y_train], eye[y_test]
    out["data_s"] = time.time() - t

    class Timer(callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            clock.epoch_begin()

        def on_epoch_end(self, epoch, logs=None):
            clock.epoch_end()

        def on_train_batch_end(self, batch, logs=None):
            clock.batch_end()

    minicnn.set_random_seed(args.seed)
    if api is not None:
        model = _model.functional_model(api, args.model)
    else:
        model = models.Sequential(_model.keras_layers(layers, args.model))
        model.build(_model.INPUT_SHAPE)
    model.compile(optimizer="adam", loss=recipe["loss"], metrics=["accuracy"])
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
    out["compute"] = "NumPy's BLAS + Numba kernels"
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
    """Train the model with Keras 3 on TensorFlow or JAX (CPU); fills `out`."""
    # Set, not defaulted: a KERAS_BACKEND in the user's environment must not change what the
    # 'keras' column means.
    os.environ["KERAS_BACKEND"] = args.keras_backend
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    t = time.time()
    import keras
    import numpy as np

    if args.keras_backend == "tensorflow":
        import tensorflow as tf
    out["import_s"] = time.time() - t
    out["versions"] = {"keras": keras.__version__, "numpy": np.__version__}
    out["config"] = {"backend": keras.backend.backend()}
    if args.keras_backend == "tensorflow":
        out["versions"]["tensorflow"] = tf.__version__
        out["config"].update(
            devices=[d.device_type for d in tf.config.list_physical_devices()],
            intra_op_threads=tf.config.threading.get_intra_op_parallelism_threads(),
            inter_op_threads=tf.config.threading.get_inter_op_parallelism_threads())
        out["compute"] = "TensorFlow's CPU kernels (Eigen, oneDNN)"
    else:
        import jax

        out["versions"]["jax"] = jax.__version__
        out["config"]["devices"] = [d.platform.upper() for d in jax.devices()]
        out["compute"] = "XLA CPU"
    recipe = _model.recipe(args.model)
    t = time.time()
    (x_train, y_train), (x_test, y_test) = load_data(args.model, args.limit)
    if recipe["one_hot"]:
        y_train = keras.utils.to_categorical(y_train, 10)
        y_test = keras.utils.to_categorical(y_test, 10)
    out["data_s"] = time.time() - t

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            clock.epoch_begin()

        def on_epoch_end(self, epoch, logs=None):
            clock.epoch_end()

        def on_train_batch_end(self, batch, logs=None):
            clock.batch_end()

    keras.utils.set_random_seed(args.seed)
    if _model.is_graph(args.model):
        model = _model.functional_model(keras, args.model)
    else:
        model = keras.Sequential([keras.Input(shape=_model.INPUT_SHAPE),
                                  *_model.keras_layers(keras.layers, args.model)])
    model.compile(optimizer="adam", loss=recipe["loss"], metrics=["accuracy"])
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


def torch_model(specs, nn):
    """An nn.Sequential of the layer specs (NCHW; logits out: the softmax is in the loss)."""
    modules, channels, size = [], _model.INPUT_SHAPE[2], None
    for spec, shape_in, shape_out in _model.shapes_of(specs):
        kind = spec[0]
        if kind == "conv":
            modules.append(nn.Conv2d(channels, spec[1], spec[2]))
            channels = spec[1]
        elif kind == "pool":
            modules.append(nn.MaxPool2d(spec[1]))
        elif kind == "flatten":
            # NCHW flattens in another order than Keras's NHWC; the weights are initialised
            # independently here, so the work is the same.
            modules.append(nn.Flatten())
            size = shape_out[0]
        elif kind == "dropout":
            modules.append(nn.Dropout(spec[1]))
        else:
            modules.append(nn.Linear(shape_in[0] if size is None else size, spec[1]))
            size = spec[1]
        if kind in ("conv", "dense") and spec[-1] == "relu":
            modules.append(nn.ReLU())
    return nn.Sequential(*modules)


def torch_graph_model(nodes, nn):
    """An nn.Module running graph nodes (benchmarks/_model.py) in order, NCHW; logits out
    (the last Dense's softmax is in the loss). 'same' padding is k // 2 on every side: for
    stride 2 on an even size Keras pads only the bottom/right, so the windows sit one pixel
    apart, the output sizes and the work are the same."""
    shapes = {}

    class Graph(nn.Module):
        def __init__(self):
            super().__init__()
            self.order = []
            self.ops = nn.ModuleDict()
            for node, op, inputs, params in nodes:
                self.order.append((node, op, inputs))
                if op == "input":
                    shapes[node] = params["shape"]
                    continue
                shape = shapes[inputs[0]]
                if op == "conv":
                    k, s = params["kernel"], params["strides"]
                    self.ops[node] = nn.Conv2d(shape[2], params["filters"], k, stride=s,
                                               padding=k // 2, bias=False)
                    shape = (-(-shape[0] // s), -(-shape[1] // s), params["filters"])
                elif op == "bn":
                    self.ops[node] = nn.BatchNorm2d(shape[2], eps=KERAS_BN_EPSILON,
                                                    momentum=1 - KERAS_BN_MOMENTUM)
                elif op == "relu":
                    self.ops[node] = nn.ReLU()
                elif op == "gap":
                    self.ops[node] = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
                    shape = (shape[2],)
                elif op == "dense":
                    self.ops[node] = nn.Linear(shape[0], params["units"])
                    shape = (params["units"],)
                elif op != "add":
                    raise ValueError(f"torch_graph_model: unknown op {op!r}")
                shapes[node] = shape

        def forward(self, x):
            values = {}
            for node, op, inputs in self.order:
                if op == "input":
                    values[node] = x
                elif op == "add":
                    values[node] = values[inputs[0]] + values[inputs[1]]
                else:
                    values[node] = self.ops[node](values[inputs[0]])
            return values[node]

    return Graph()


def run_torch(args, clock, out):
    """Train the model with PyTorch (CPU): glorot-uniform weights, zero biases,
    Adam(lr=1e-3, eps=1e-7 as Keras), cross-entropy on logits (class indices; for the
    convnet's categorical cross-entropy the same value as one-hot targets), a plain loop over
    shuffled index batches (no DataLoader). NCHW, or channels_last with --torch-channels-last.
    --torch-plain-loop drops the per-step loss / accuracy sums (no train metrics then)."""
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
                     "loop": "plain" if args.torch_plain_loop else "with metrics",
                     "malloc_env": {k: os.environ[k] for k in MALLOC_VARS if k in os.environ},
                     "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                     "mkldnn": bool(torch.backends.mkldnn.is_available())}
    out["compute"] = (f"PyTorch's own MKL / oneDNN ({out['config']['cpu_capability']})")
    t = time.time()
    (x_train, y_train), (x_test, y_test) = load_data(args.model, args.limit)

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
    if _model.is_graph(args.model):
        model = torch_graph_model(_model.specs(args.model), nn)
    else:
        model = torch_model(_model.specs(args.model), nn)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(module.weight)  # glorot uniform, same fans as Keras
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    model = model.to(memory_format=memory_format)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=KERAS_EPSILON)
    loss_fn = nn.CrossEntropyLoss()
    generator = torch.Generator().manual_seed(args.seed)
    n = len(xt_train)
    bs = args.batch_size
    t_fit = time.perf_counter()
    for _epoch in range(args.epochs):
        clock.epoch_begin()
        model.train()
        order = torch.randperm(n, generator=generator)
        if args.torch_plain_loop:
            # As most PyTorch users write it: nothing but the step.
            for start in range(0, n, bs):
                index = order[start:start + bs]
                xb = xt_train[index].contiguous(memory_format=memory_format)
                optimizer.zero_grad()
                loss = loss_fn(model(xb), yt_train[index])
                loss.backward()
                optimizer.step()
                clock.batch_end()
            metrics = None
        else:
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
            metrics = (loss_sum, correct)
        clock.epoch_end()
    out["fit_s"] = time.perf_counter() - t_fit
    if metrics is not None:
        out["train_loss"] = float(metrics[0]) / n
        out["train_accuracy"] = float(metrics[1]) / n

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


# ----------------------------------------------------------------------------------- JAX


def jax_model(specs, jax, jnp):
    """(init(key) -> params, apply(params, x, key, train) -> logits) for the layer specs, NHWC
    with Keras's kernel layout (KH, KW, C, F): glorot_uniform kernels, zero biases."""
    layer_shapes = _model.shapes_of(specs)

    def init(key):
        params = []
        for spec, shape_in, _shape_out in layer_shapes:
            if spec[0] == "conv":
                k = spec[2]
                shape = (k, k, shape_in[2], spec[1])
                fan_in, fan_out = k * k * shape_in[2], k * k * spec[1]
            elif spec[0] == "dense":
                shape = (shape_in[0], spec[1])
                fan_in, fan_out = shape
            else:
                continue
            key, sub = jax.random.split(key)
            limit = (6.0 / (fan_in + fan_out)) ** 0.5
            params.append((jax.random.uniform(sub, shape, jnp.float32, -limit, limit),
                           jnp.zeros((spec[1],), jnp.float32)))
        return params

    def apply(params, x, key, train):
        h, i = x, 0
        for spec, _shape_in, _shape_out in layer_shapes:
            kind = spec[0]
            if kind == "conv":
                kernel, bias = params[i]
                i += 1
                h = jax.lax.conv_general_dilated(h, kernel, (1, 1), "VALID",
                                                 dimension_numbers=("NHWC", "HWIO", "NHWC"))
                h = h + bias
            elif kind == "dense":
                kernel, bias = params[i]
                i += 1
                h = h @ kernel + bias
            elif kind == "pool":
                p = spec[1]
                h = jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, p, p, 1), (1, p, p, 1),
                                          "VALID")
            elif kind == "flatten":
                h = h.reshape(h.shape[0], -1)
            elif kind == "dropout" and train:
                keep = jax.random.bernoulli(key, 1.0 - spec[1], h.shape)
                h = jnp.where(keep, h / (1.0 - spec[1]), 0.0)
            if kind in ("conv", "dense") and spec[-1] == "relu":
                h = jax.nn.relu(h)
        return h  # logits: the last layer's softmax is in the loss and in predict

    return init, apply


def run_jax(args, clock, out):
    """Train the model with JAX + optax: the whole step (gather of the shuffled batch, forward,
    loss, gradient, Adam update) is one jax.jit function; Adam(1e-3, 0.9, 0.999, eps=1e-7);
    softmax cross-entropy on logits (integer labels, or one-hot for the convnet)."""
    t = time.time()
    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax

    out["import_s"] = time.time() - t
    import jaxlib

    out["versions"] = {"jax": jax.__version__, "jaxlib": jaxlib.__version__,
                       "optax": optax.__version__, "numpy": np.__version__}
    out["config"] = {"devices": [d.platform.upper() for d in jax.devices()],
                     "jit": "whole train step"}
    out["compute"] = "XLA CPU"
    if _model.is_graph(args.model):
        raise Skipped(f"the JAX peer builds layer lists only; the {args.model} graph (and "
                      "BatchNormalization's moving statistics) is not written for it")
    recipe = _model.recipe(args.model)
    t = time.time()
    (x_train, y_train), (x_test, y_test) = load_data(args.model, args.limit)
    x_all = jnp.asarray(x_train.astype(np.float32))
    y_all = jnp.asarray(y_train.astype(np.int32))
    x_test32 = x_test.astype(np.float32)
    del x_train
    out["data_s"] = time.time() - t

    init, apply = jax_model(_model.specs(args.model), jax, jnp)
    base_key = jax.random.PRNGKey(args.seed)
    params = init(base_key)
    optimizer = optax.adam(1e-3, b1=0.9, b2=0.999, eps=KERAS_EPSILON)
    opt_state = optimizer.init(params)

    def loss_of(logits, labels):
        if recipe["one_hot"]:
            return optax.softmax_cross_entropy(logits, jax.nn.one_hot(labels, 10)).mean()
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    @jax.jit
    def train_step(params, opt_state, index, step):
        xb, yb = x_all[index], y_all[index]
        key = jax.random.fold_in(base_key, step)  # dropout masks differ per step

        def loss_fn(p):
            logits = apply(p, xb, key, True)
            return loss_of(logits, yb), logits

        (loss, logits), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        correct = jnp.sum(jnp.argmax(logits, axis=1) == yb)
        return optax.apply_updates(params, updates), opt_state, loss * len(index), correct

    @jax.jit
    def probabilities(params, xb):
        return jax.nn.softmax(apply(params, xb, base_key, False), axis=-1)

    @jax.jit
    def test_sums(params, xb, yb):
        logits = apply(params, xb, base_key, False)
        return loss_of(logits, yb) * len(yb), jnp.sum(jnp.argmax(logits, axis=1) == yb)

    rng = np.random.default_rng(args.seed)
    n, bs, step = len(y_train), args.batch_size, 0
    t_fit = time.perf_counter()
    for _epoch in range(args.epochs):
        clock.epoch_begin()
        order = rng.permutation(n).astype(np.int32)
        sums = []
        for start in range(0, n, bs):
            params, opt_state, loss_sum, correct = train_step(params, opt_state,
                                                              order[start:start + bs], step)
            step += 1
            if clock.first_batch_end is None:
                # Dispatch is asynchronous: wait once, for the first-batch figure.
                loss_sum.block_until_ready()
            clock.batch_end()
            sums.append((loss_sum, correct))
        jax.block_until_ready(params)
        clock.epoch_end()
    out["fit_s"] = time.perf_counter() - t_fit
    out["train_loss"] = float(sum(float(s[0]) for s in sums)) / n
    out["train_accuracy"] = float(sum(int(s[1]) for s in sums)) / n

    total_loss, total_correct = 0.0, 0
    y_test32 = y_test.astype(np.int32)
    for start in range(0, len(x_test32), bs):
        loss_sum, correct = test_sums(params, x_test32[start:start + bs],
                                      y_test32[start:start + bs])
        total_loss += float(loss_sum)
        total_correct += int(correct)
    out["test_loss"] = total_loss / len(x_test32)
    out["test_accuracy"] = total_correct / len(x_test32)

    def predict(x):
        chunks = [probabilities(params, x[start:start + args.predict_batch_size])
                  for start in range(0, len(x), args.predict_batch_size)]
        return np.concatenate([np.asarray(c) for c in chunks])

    return predict, x_test32


RUNNERS = {"minicnn": run_minicnn, "keras": run_keras, "torch": run_torch, "jax": run_jax}


def _git_revision(path):
    """`git describe --always --dirty` of the checkout holding `path`, or None."""
    import subprocess

    try:
        proc = subprocess.run(["git", "-C", path, "describe", "--always", "--dirty"],
                              capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return proc.stdout.strip() or None


def main(argv=None):
    """Run one framework, print ``BENCH_RESULT {json}`` as the last line."""
    args = parse_args(argv)
    clock = Clock()
    spawn = args.spawn_time if args.spawn_time is not None else T_START
    out = {"framework": args.framework, "model": args.model, "seed": args.seed,
           "epochs": args.epochs, "batch_size": args.batch_size, "limit": args.limit,
           "pid": os.getpid(), "startup_s": T_START - spawn}
    try:
        predict, x_test = RUNNERS[args.framework](args, clock, out)
    except Skipped as exc:
        out["skipped"] = str(exc)
        print(RESULT_PREFIX + json.dumps(out), flush=True)
        return
    out["epoch_s"] = clock.epoch_s
    out["train_images"] = _model.train_images(args.model, args.limit)
    out["flops_per_image"] = _model.training_flops_per_image(args.model)
    out["first_batch_s"] = (clock.first_batch_end - spawn) if clock.first_batch_end else None
    if args.no_predict:
        out["predict_images_per_s"] = None
    else:
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
    # After every timed figure: which BLAS and kernel this process ran, which checkout.
    import _blas

    out["blas"] = _blas.blas_info()
    if "minicnn_path" in out:
        out["minicnn_git"] = _git_revision(out["minicnn_path"])
    print(RESULT_PREFIX + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
