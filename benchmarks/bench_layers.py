"""Forward and backward time per batch, layer by layer: minicnn (Numba ops, NumPy reference ops,
the layer objects fit() runs) and PyTorch when installed, with GFLOP/s next to each figure.

Cases: every layer of the Keras MNIST tutorial model at its real input shape, and a few other
convolutions with stride 2 and 'same' padding (odd and even sizes, so Keras's extra bottom/right
padding row is exercised). float32, batch 32 by default.

Implementations (columns):
  numba  minicnn.ops.fast: conv2d_forward + bias_activation_forward and their backward,
         maxpool2d_* (the Numba kernels + BLAS, buffers reused as in fit)
  numpy  minicnn.ops.reference: the same ops in readable NumPy
  layer  the minicnn layer object (Conv2D, MaxPooling2D, Dense), with the tutorial's ReLU
         where it has one: forward, then backward, as fit() calls them (fused bias + ReLU
         passes and workspace reuse included)
  torch  torch.nn.functional under autograd, the same ReLUs: forward, then backward from the
         same dL/dy (NCHW unless --torch-channels-last; 'same' with stride 2 pads explicitly,
         as PyTorch rejects padding='same' for strided convolutions)

The minicnn columns run with the BLAS thread setting fit() uses (minicnn.ops.threads); PyTorch
with its own default threads.

Backward computes the parameter gradients and dL/dx, except for the tutorial's first layer
where fit() skips dL/dx (nobody needs the gradient of the images). FLOPs: a multiply-add counts
2; conv forward 2*N*OH*OW*F*KH*KW*C, backward that once per gradient (kernel, input); pooling
counts one comparison per window element forward and one addition per output backward.

    PYTHONPATH=. python benchmarks/bench_layers.py                # all cases, all implementations
    PYTHONPATH=. python benchmarks/bench_layers.py --quick --impls numba,numpy,layer
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

# Read before minicnn is imported: minicnn.ops sets a default for it (see import_torch).
_USER_OMP_WAIT_POLICY = os.environ.get("OMP_WAIT_POLICY")
IMPLS = ("numba", "numpy", "layer", "torch")
RESULT_PREFIX = "LAYERS_RESULT "
SCHEMA = "minicnn-bench-layers/1"


@dataclass(frozen=True)
class Case:
    """One benchmarked layer: kind 'conv' | 'pool' | 'dense', per-sample input shape, settings.

    conv: filters, kernel (KH, KW), strides, padding; pool: pool (PH, PW) (strides = pool);
    dense: units. need_dx=False for the tutorial's first layer (fit() skips dL/dx there).
    activation: 'relu' or None, used by the layer and torch columns only (the ops have none).
    """

    name: str
    kind: str
    input_shape: tuple
    filters: int = 0
    kernel: tuple = (3, 3)
    strides: tuple = (1, 1)
    padding: str = "valid"
    units: int = 0
    need_dx: bool = True
    activation: str | None = None
    group: str = "tutorial"

    def describe(self):
        """'conv 3x3/2 same, 28x28x1 -> 14x14x32' style summary of the case."""
        shape = "x".join(str(s) for s in self.input_shape)
        out = "x".join(str(s) for s in self.output_shape())
        if self.kind == "conv":
            kind = f"conv {self.kernel[0]}x{self.kernel[1]}/{self.strides[0]} {self.padding}"
        elif self.kind == "pool":
            kind = f"maxpool {self.kernel[0]}x{self.kernel[1]}"
        else:
            kind = "dense"
        kind += f" + {self.activation}" if self.activation else ""
        kind += "" if self.need_dx else ", no dx"
        return f"{kind}, {shape} -> {out}"

    def geometry(self):
        """(OH, OW, pads) with Keras's padding rule (conv and pool)."""
        from minicnn import ops

        h, w = self.input_shape[:2]
        strides = self.kernel if self.kind == "pool" else self.strides
        return ops.conv_geometry((h, w), self.kernel, strides, self.padding)

    def output_shape(self):
        """Per-sample output shape."""
        if self.kind == "dense":
            return (self.units,)
        out_h, out_w, _ = self.geometry()
        channels = self.filters if self.kind == "conv" else self.input_shape[2]
        return (out_h, out_w, channels)

    def flops(self, batch):
        """(forward FLOPs, backward FLOPs) for one batch."""
        if self.kind == "conv":
            out_h, out_w, _ = self.geometry()
            kh, kw = self.kernel
            fwd = 2 * batch * out_h * out_w * self.filters * kh * kw * self.input_shape[2]
            return fwd, fwd * (2 if self.need_dx else 1)
        if self.kind == "pool":
            out_h, out_w, _ = self.geometry()
            outputs = batch * out_h * out_w * self.input_shape[2]
            return outputs * self.kernel[0] * self.kernel[1], outputs
        fwd = 2 * batch * self.input_shape[0] * self.units
        return fwd, fwd * (2 if self.need_dx else 1)


TUTORIAL_CASES = (
    Case("conv1", "conv", (28, 28, 1), filters=25, need_dx=False, activation="relu"),
    Case("pool1", "pool", (26, 26, 25), kernel=(2, 2)),
    Case("conv2", "conv", (13, 13, 25), filters=64, activation="relu"),
    Case("pool2", "pool", (11, 11, 64), kernel=(2, 2)),
    Case("conv3", "conv", (5, 5, 64), filters=64, activation="relu"),
    Case("pool3", "pool", (3, 3, 64), kernel=(2, 2)),
    Case("dense1", "dense", (64,), units=64, activation="relu"),
    # The softmax of the last layer is fused into the loss's gradient in fit(): not timed here.
    Case("dense2", "dense", (64,), units=10),
)
STRIDE2_CASES = tuple(
    Case(name, "conv", shape, filters=f, kernel=k, strides=(2, 2), padding="same", group="stride2")
    for name, shape, f, k in (
        ("s2-mnist", (28, 28, 1), 32, (3, 3)),
        ("s2-mnist-5x5", (28, 28, 1), 32, (5, 5)),
        ("s2-cifar", (32, 32, 3), 32, (3, 3)),
        ("s2-wide", (32, 32, 32), 64, (3, 3)),
        ("s2-odd", (15, 15, 32), 64, (3, 3)),
        ("s2-deep", (16, 16, 64), 128, (3, 3)),
    )
)
CASES = TUTORIAL_CASES + STRIDE2_CASES


def parse_args(argv=None):
    """Command-line options; --quick: batch 8, tutorial cases only, short timing loops."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--impls", default=None,
                   help=f"comma-separated from {', '.join(IMPLS)} (default: all available)")
    p.add_argument("--cases", default="all",
                   help="'all', 'tutorial', 'stride2' or comma-separated case names "
                        f"({', '.join(c.name for c in CASES)})")
    p.add_argument("--min-time", type=float, default=0.3,
                   help="seconds of timed calls per case and implementation (at least "
                        "--min-repeats calls)")
    p.add_argument("--min-repeats", type=int, default=5)
    p.add_argument("--max-repeats", type=int, default=500)
    p.add_argument("--rounds", type=int, default=3,
                   help="fresh processes per implementation, taking turns; each cell keeps "
                        "the fastest (default 3)")
    p.add_argument("--torch-channels-last", action="store_true")
    p.add_argument("--torch-threads", type=int, default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out-dir", default=str(_common.RESULTS_DIR))
    p.add_argument("--no-json", action="store_true", help="print only, write no JSON")
    p.add_argument("--impl-worker", choices=IMPLS, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch_size, args.min_time, args.min_repeats, args.rounds = 8, 0.02, 2, 1
        if args.cases == "all":
            args.cases = "tutorial"
    if args.impls is None:
        args.impls = [i for i in IMPLS
                      if i != "torch" or importlib.util.find_spec("torch") is not None]
    else:
        args.impls = [i.strip() for i in args.impls.split(",") if i.strip()]
        unknown = [i for i in args.impls if i not in IMPLS]
        if unknown:
            p.error(f"--impls: unknown {unknown}; choose from {', '.join(IMPLS)}")
    if args.cases == "all":
        args.cases = list(CASES)
    elif args.cases in ("tutorial", "stride2"):
        args.cases = [c for c in CASES if c.group == args.cases]
    else:
        by_name = {c.name: c for c in CASES}
        names = [n.strip() for n in args.cases.split(",") if n.strip()]
        unknown = [n for n in names if n not in by_name]
        if unknown:
            p.error(f"--cases: unknown {unknown}; choose from {', '.join(by_name)}")
        args.cases = [by_name[n] for n in names]
    return args


# ----------------------------------------------------------------------------------- timing


def time_pair(forward, backward, min_time, min_repeats, max_repeats):
    """Per-call seconds: (forward times, backward times), one entry per timed repeat.

    Each repeat runs forward (timed), then backward on its result (timed separately); two
    untimed repeats go first (JIT compilation, caches). Repeats until both min_repeats and
    min_time are reached, or max_repeats."""
    for _ in range(2):
        backward(forward())
    fwd, bwd = [], []
    started = time.perf_counter()
    while len(fwd) < max_repeats and (len(fwd) < min_repeats
                                      or time.perf_counter() - started < min_time):
        t0 = time.perf_counter()
        state = forward()
        t1 = time.perf_counter()
        backward(state)
        t2 = time.perf_counter()
        fwd.append(t1 - t0)
        bwd.append(t2 - t1)
    return fwd, bwd


def make_inputs(case, batch, seed=0):
    """float32 (x, dy, params) for a case: x (N, *input_shape), dy (N, *output_shape)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *case.input_shape), dtype=np.float32)
    dy = rng.standard_normal((batch, *case.output_shape()), dtype=np.float32)
    params = {}
    if case.kind == "conv":
        c = case.input_shape[2]
        params["kernel"] = rng.standard_normal((*case.kernel, c, case.filters),
                                               dtype=np.float32) * 0.1
        params["bias"] = rng.standard_normal(case.filters, dtype=np.float32) * 0.1
    elif case.kind == "dense":
        params["kernel"] = rng.standard_normal((case.input_shape[0], case.units),
                                               dtype=np.float32) * 0.1
        params["bias"] = rng.standard_normal(case.units, dtype=np.float32) * 0.1
    return x, dy, params


def ops_callables(case, module, x, dy, params):
    """(forward, backward) on minicnn.ops.fast (Numba) or minicnn.ops.reference (NumPy); None
    for dense layers, which have no op of their own worth timing."""
    if case.kind == "dense":
        return None
    _oh, _ow, pads = case.geometry()
    conv_ws, act_ws, pool_ws = {}, {}, {}  # reused between calls, as a layer's workspace
    if case.kind == "conv":
        kernel, bias = params["kernel"], params["bias"]
        activation = case.activation or "linear"

        def forward():
            z, conv_cache = module.conv2d_forward(x, kernel, case.strides, pads, ws=conv_ws)
            _, act_cache = module.bias_activation_forward(z, bias, activation, ws=act_ws)
            return conv_cache, act_cache

        def backward(caches):
            conv_cache, act_cache = caches
            dz, _ = module.bias_activation_backward(dy, act_cache)
            module.conv2d_backward(dz, conv_cache, need_dx=case.need_dx)

        return forward, backward

    def pool_forward():
        return module.maxpool2d_forward(x, case.kernel, case.kernel, pads, ws=pool_ws)[1]

    def pool_backward(cache):
        module.maxpool2d_backward(dy, cache)

    return pool_forward, pool_backward


def layer_callables(case, x, dy, params):
    """(forward, backward) on a built minicnn layer, run by the graph executor as fit() runs
    it (contexts, reused buffers; no dL/dx where the case has none)."""
    from minicnn import graph, layers

    if case.kind == "conv":
        layer = layers.Conv2D(case.filters, case.kernel, strides=case.strides,
                              padding=case.padding, activation=case.activation)
    elif case.kind == "pool":
        layer = layers.MaxPooling2D(case.kernel)
    else:
        layer = layers.Dense(case.units, activation=case.activation)
    layer.build((None, *case.input_shape))
    if params:
        layer.set_weights([params["kernel"], params["bias"]])
    chain = graph.Graph.chain([layer])
    store = graph.WorkspaceStore()

    def forward():
        return graph.run_forward(chain, [x], True, store, input_grads=case.need_dx)[1]

    def backward(tape):
        graph.run_backward(tape, [dy])

    return forward, backward


def _clear_grads(*tensors):
    # As optimizer.zero_grad(set_to_none=True) in training: backward writes fresh gradients
    # instead of adding to the previous repeat's.
    for tensor in tensors:
        tensor.grad = None


def torch_callables(case, x, dy, params, channels_last):
    """(forward, backward) with torch.nn.functional under autograd."""
    import torch
    import torch.nn.functional as F

    fmt = torch.channels_last if channels_last else torch.contiguous_format
    if case.kind == "dense":
        xt = torch.from_numpy(x).requires_grad_(case.need_dx)
        dyt = torch.from_numpy(dy)
        weight = torch.from_numpy(np.ascontiguousarray(params["kernel"].T)).requires_grad_()
        bias = torch.from_numpy(params["bias"]).requires_grad_()

        def dense_forward():
            y = F.linear(xt, weight, bias)
            return F.relu(y) if case.activation == "relu" else y

        def dense_backward(y):
            _clear_grads(xt, weight, bias)
            y.backward(dyt)

        return dense_forward, dense_backward

    xt = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    xt.requires_grad_(case.need_dx)
    dyt = torch.from_numpy(dy).permute(0, 3, 1, 2).contiguous(memory_format=fmt)
    top, bottom, left, right = case.geometry()[2]
    if case.kind == "pool":
        def pool_forward():
            return F.max_pool2d(xt, case.kernel)

        def pool_backward(y):
            _clear_grads(xt)
            y.backward(dyt)

        return pool_forward, pool_backward

    weight = torch.from_numpy(params["kernel"]).permute(3, 2, 0, 1).contiguous(memory_format=fmt)
    weight.requires_grad_()
    bias = torch.from_numpy(params["bias"]).requires_grad_()
    symmetric = top == bottom and left == right

    def conv_forward():
        if symmetric:
            y = F.conv2d(xt, weight, bias, stride=case.strides, padding=(top, left))
        else:
            y = F.conv2d(F.pad(xt, (left, right, top, bottom)), weight, bias,
                         stride=case.strides)
        return F.relu(y) if case.activation == "relu" else y

    def conv_backward(y):
        _clear_grads(xt, weight, bias)
        y.backward(dyt)

    return conv_forward, conv_backward


def bench_one(case, impl, args):
    """{forward_ms, backward_ms (fastest call), forward_gflops, backward_gflops (from those),
    forward_median_ms, backward_median_ms, repeats} for one case and implementation, or None
    where the implementation has nothing for that layer kind."""
    from minicnn import ops

    x, dy, params = make_inputs(case, args.batch_size)
    fwd_flops, bwd_flops = case.flops(args.batch_size)
    if impl == "numba":
        pair = ops_callables(case, ops.fast, x, dy, params)
    elif impl == "numpy":
        pair = ops_callables(case, ops.reference, x, dy, params)
    elif impl == "layer":
        pair = layer_callables(case, x, dy, params)
    else:
        pair = torch_callables(case, x, dy, params, args.torch_channels_last)
    if pair is None:
        return None
    with minicnn_threads() if impl != "torch" else contextlib.nullcontext():
        fwd, bwd = time_pair(*pair, args.min_time, args.min_repeats, args.max_repeats)
    # The fastest call is the one least disturbed by other processes on a shared machine
    # (timeit's convention); medians are kept beside it.
    fwd_s, bwd_s = min(fwd), min(bwd)
    return {"forward_ms": 1e3 * fwd_s, "backward_ms": 1e3 * bwd_s,
            "forward_gflops": fwd_flops / fwd_s / 1e9, "backward_gflops": bwd_flops / bwd_s / 1e9,
            "forward_median_ms": 1e3 * statistics.median(fwd),
            "backward_median_ms": 1e3 * statistics.median(bwd), "repeats": len(fwd)}


def minicnn_threads():
    """The BLAS thread setting fit() and predict() use (minicnn.ops.threads.blas_threads), or a
    no-op context on a minicnn without it."""
    try:
        from minicnn.ops.threads import blas_threads
    except ImportError:
        return contextlib.nullcontext()
    return blas_threads()


def import_torch(threads=None):
    """Import PyTorch with its own OpenMP defaults, or return None when it is not installed.

    minicnn.ops sets OMP_WAIT_POLICY=PASSIVE for its own OpenMP runtime; PyTorch loads a separate
    one that reads the variable at import, so the setting is taken back (unless the user set
    it) to measure PyTorch as it runs by default.
    """
    if _USER_OMP_WAIT_POLICY is None:
        os.environ.pop("OMP_WAIT_POLICY", None)
    try:
        import torch
    except ImportError:
        return None
    if threads:
        torch.set_num_threads(threads)
    return torch


# ----------------------------------------------------------------------------------- report


def _fmt(entry, which):
    if entry is None:
        return "-"
    ms, gflops = entry[f"{which}_ms"], entry[f"{which}_gflops"]
    ms_text = f"{ms:.3f}" if ms < 1 else f"{ms:.2f}" if ms < 100 else f"{ms:.0f}"
    return f"{ms_text} ({gflops:.1f})"


def markdown_tables(rows, impls, meta):
    """Two Markdown tables (forward, backward): one row per case, one column per
    implementation, cells 'ms per batch (GFLOP/s)' of the fastest call."""
    m = meta["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in meta.get("versions", {}).items())
    load = [meta.get("loadavg_before"), meta.get("loadavg_after")]
    load_text = " -> ".join(str(v[0]) for v in load if v)
    lines = [f"{meta['created']} on `{m['host']}`: {m['cpu']}, {m['usable_cpus']} cores; batch "
             f"{meta['config']['batch_size']}, float32; {versions}; load average (1 min) "
             f"{load_text or '?'}. Cells: ms per batch (GFLOP/s), fastest of the repeated "
             f"calls over {meta['config'].get('rounds', 1)} round(s) of fresh processes."]
    for which in ("forward", "backward"):
        lines += ["", f"**{which}**", "",
                  "| layer | shape | " + " | ".join(impls) + " |",
                  "|---|---|" + "---:|" * len(impls)]
        for row in rows:
            cells = [_fmt(row["results"].get(impl), which) for impl in impls]
            lines.append(f"| {row['name']} | {row['description']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def versions():
    """Versions of minicnn, NumPy and Numba."""
    import numba

    import minicnn

    return {"minicnn": minicnn.__version__, "numpy": np.__version__, "numba": numba.__version__}


def run_impl(impl, args):
    """Time every case with one implementation in this process: {case name: entry}."""
    results = {}
    for case in args.cases:
        entry = bench_one(case, impl, args)
        if entry is not None:
            results[case.name] = entry
    return results


def impl_worker(args):
    """--impl-worker: time one implementation, print ``LAYERS_RESULT {json}``."""
    info = {"impl": args.impl_worker}
    if args.impl_worker == "torch":
        torch = import_torch(args.torch_threads)  # before anything imports minicnn.ops
        info["torch_threads"] = torch.get_num_threads()
        info["torch_version"] = torch.__version__
    info["results"] = run_impl(args.impl_worker, args)
    print(RESULT_PREFIX + json.dumps(info), flush=True)


def spawn_impl(impl, args):
    """Run one implementation in a fresh process (see main); returns its worker dict."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--impl-worker", impl,
           "--impls", impl, "--cases", ",".join(c.name for c in args.cases),
           "--batch-size", str(args.batch_size), "--min-time", str(args.min_time),
           "--min-repeats", str(args.min_repeats), "--max-repeats", str(args.max_repeats)]
    if args.torch_channels_last:
        cmd.append("--torch-channels-last")
    if args.torch_threads:
        cmd += ["--torch-threads", str(args.torch_threads)]
    # The worker gets the user's environment, without what importing minicnn here set.
    env = dict(os.environ)
    env.pop("OMP_WAIT_POLICY", None)
    if _USER_OMP_WAIT_POLICY is not None:
        env["OMP_WAIT_POLICY"] = _USER_OMP_WAIT_POLICY
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX):])
    raise RuntimeError(f"bench_layers: the {impl} worker failed (exit code {proc.returncode}):\n"
                       + "\n".join(proc.stderr.splitlines()[-15:]))


def best_of_rounds(entries):
    """One cell from several rounds' entries: the fastest forward and backward times (with
    their GFLOP/s), the median of the rounds' medians, and the total number of calls."""
    fwd = min(entries, key=lambda e: e["forward_ms"])
    bwd = min(entries, key=lambda e: e["backward_ms"])
    return {"forward_ms": fwd["forward_ms"], "backward_ms": bwd["backward_ms"],
            "forward_gflops": fwd["forward_gflops"], "backward_gflops": bwd["backward_gflops"],
            "forward_median_ms": statistics.median(e["forward_median_ms"] for e in entries),
            "backward_median_ms": statistics.median(e["backward_median_ms"] for e in entries),
            "repeats": sum(e["repeats"] for e in entries), "rounds": len(entries)}


def main(argv=None):
    """Run the layer benchmark; print the tables, write the JSON; returns the report dict.

    Each implementation runs in its own fresh process, and the implementations take turns for
    --rounds rounds (A, B, C, A, B, C, ...); each cell keeps its fastest round, as processes
    on a shared machine are disturbed unevenly. In one shared process each library's
    idle worker threads slowed the others (PyTorch's conv2 backward took 6.4 ms after the
    minicnn columns had run, 1.5 ms alone; with PyTorch imported first, minicnn's Numba ops
    ran 3-8 times slower).
    """
    args = parse_args(argv)
    if args.impl_worker:
        impl_worker(args)
        return None
    impls = [i for i in args.impls if i != "torch"]
    if "torch" in args.impls:
        if importlib.util.find_spec("torch") is None:
            print("bench_layers: torch is not installed; skipping the torch column")
        else:
            impls.append("torch")
    meta = {"schema": SCHEMA, "created": _common.now_iso(), "machine": _common.machine_info(),
            "loadavg_before": _common.loadavg(),
            "config": {"batch_size": args.batch_size, "impls": impls,
                       "min_time": args.min_time, "min_repeats": args.min_repeats,
                       "torch_channels_last": args.torch_channels_last,
                       "rounds": args.rounds, "process_per_implementation": True}}
    rows = [{"name": case.name, "group": case.group, "description": case.describe(),
             "flops": dict(zip(("forward", "backward"), case.flops(args.batch_size),
                               strict=True)),
             "results": {}} for case in args.cases]
    meta["versions"] = versions()
    for round_number in range(1, args.rounds + 1):
        for impl in impls:
            print(f"round {round_number}/{args.rounds}: {impl} ...", flush=True)
            info = spawn_impl(impl, args)
            for row in rows:
                entry = info["results"].get(row["name"])
                if entry is not None:
                    row.setdefault("rounds", {}).setdefault(impl, []).append(entry)
            if impl == "torch":
                meta["config"]["torch_threads"] = info["torch_threads"]
                meta["versions"]["torch"] = info["torch_version"]
    for row in rows:
        for impl, entries in row.get("rounds", {}).items():
            row["results"][impl] = best_of_rounds(entries)
    meta["loadavg_after"] = _common.loadavg()
    report = {**meta, "rows": rows}
    print()
    print(markdown_tables(rows, impls, meta))
    if not args.no_json:
        _common.write_report(report, args.out_dir, "-layers" + ("-quick" if args.quick else ""))
    return report


if __name__ == "__main__":
    main()
