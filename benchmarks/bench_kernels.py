"""Kernel prototypes against the current path, per call: the tutorial's convolutions, one thread.

Issue 14's kernel directions, measured as the layers would call them, float32, BLAS on one
thread (``minicnn.ops.threads.blas_threads(1)``: inside fit() each batch shard's thread runs
its own BLAS calls on one thread), at batch 16 (one shard of a 32 batch on 2 cores) and 32:

- conv1 (28x28x1 -> 26x26x25): the current im2col (Fortran-ordered cols, as layers/conv.py)
  + BLAS product + fused bias/ReLU pass, against ``minicnn.ops.direct`` (bias and ReLU in the
  same pass); kernel gradient ``cols.T @ dz`` against the direct kernel. No input gradient.
- conv2 (13x13x25 -> 11x11x64) and conv3 (5x5x64 -> 3x3x64): im2col + BLAS (+ fused bias/ReLU)
  against Winograd F(2x2, 3x3) (``minicnn.ops.winograd``, bias and ReLU in its output
  transform); backward (input + kernel gradient from dL/dz) ``cols.T @ dz``, ``dz @ K.T`` +
  col2im against the Winograd adjoints. Winograd's steps are timed one by one too.

Every cell is the fastest of many calls (the one least disturbed by other processes, as
timeit advises), the implementations taking turns in rounds; medians are in the JSON.

    PYTHONPATH=. python benchmarks/bench_kernels.py            # batch 16 and 32
    PYTHONPATH=. python benchmarks/bench_kernels.py --quick    # smoke run: few calls
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

SCHEMA = "minicnn-bench-kernels/1"
# name, input (H, W, C), filters: the tutorial's three 3x3 valid convolutions
CONVS = (("conv1", (28, 28, 1), 25), ("conv2", (13, 13, 25), 64), ("conv3", (5, 5, 64), 64))


def parse_args(argv=None):
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-sizes", default="16,32")
    p.add_argument("--rounds", type=int, default=5, help="turns per implementation")
    p.add_argument("--calls", type=int, default=40, help="timed calls per turn")
    p.add_argument("--quick", action="store_true", help="1 round of 3 calls, batch 16")
    p.add_argument("--out-dir", default=str(_common.RESULTS_DIR))
    p.add_argument("--no-json", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.rounds, args.calls, args.batch_sizes = 1, 3, "16"
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    return args


# ----------------------------------------------------------------------------------- the paths


def current_path(x, kernel, bias):
    """Callables of today's Conv2D fast path (ops.fast, as layers/conv.py calls it) on reused
    buffers: {'forward': conv + bias + ReLU, 'forward_conv': conv only, 'dkernel', 'dx'}."""
    from minicnn.ops import fast

    n, h, w, c = x.shape
    kh, kw, _, f = kernel.shape
    rows = n * (h - kh + 1) * (w - kw + 1)
    dz = np.random.default_rng(1).standard_normal((rows, f)).astype(x.dtype)
    conv_ws, act_ws, state = {}, {}, {}

    def forward_conv():
        state["z"], state["cache"] = fast.conv2d_forward(x, kernel, (1, 1), (0, 0, 0, 0),
                                                         ws=conv_ws)

    def forward():
        forward_conv()
        fast.bias_activation_forward(state["z"], bias, "relu", ws=act_ws)

    def backward_dkernel():
        fast.conv2d_backward(dz, state["cache"], need_dx=False)

    def backward_dx():
        fast.conv2d_backward(dz, state["cache"], need_dx=True)

    forward()
    return {"forward": forward, "forward_conv": forward_conv, "dkernel": backward_dkernel,
            "dx": backward_dx, "backward": backward_dx}, dz


def direct_path(x, kernel, bias, dz_rows):
    """Callables of minicnn.ops.direct (one input channel): forward (+ bias + ReLU), conv only,
    kernel gradient."""
    from minicnn.ops import direct

    ws = {}
    out = {}
    dz = dz_rows.reshape(x.shape[0], x.shape[1] - 2, x.shape[2] - 2, -1)

    def forward():
        out["cache"] = direct.conv2d_1ch_forward(x, kernel, bias=bias, relu=True,
                                                 workspace=ws)[1]

    def forward_conv():
        direct.conv2d_1ch_forward(x, kernel, workspace=ws)

    forward()
    return {"forward": forward, "forward_conv": forward_conv,
            "dkernel": lambda: direct.conv2d_1ch_backward_kernel(dz, out["cache"])}


def winograd_path(x, kernel, bias, dz_rows):
    """Callables of minicnn.ops.winograd: forward (+ bias + ReLU), conv only, backward (both
    gradients), backward without dx, and each compiled step alone."""
    from minicnn.ops import winograd as wg

    ws, bws = {}, {}
    n, h, w, c = x.shape
    f = kernel.shape[3]
    dz = dz_rows.reshape(n, h - 2, w - 2, f)
    state = {}

    def forward():
        state["cache"] = wg.winograd_conv2d_forward(x, kernel, bias=bias, relu=True,
                                                    workspace=ws)[1]

    def forward_conv():
        wg.winograd_conv2d_forward(x, kernel, workspace=ws)

    forward()
    cache = state["cache"]
    tiles_h, tiles_w = cache["tiles"]
    # Flat (16, LD) stacks for the compiled steps, (16, rows, cols) views for the products.
    xp, u, v, m, z = ws["xp"], ws["u"], ws["v"], ws["m"], ws["z"]
    u3, v3 = cache["u"], cache["v"]
    m3 = m[:, :v3.shape[1] * f].reshape(16, v3.shape[1], f)
    wg.winograd_conv2d_backward(dz, cache, workspace=bws)
    dm, du, dv, dxp, dx = bws["dm"], bws["du"], bws["dv"], bws["dxp"], bws["dx"]
    dm3 = dm[:, :m3.shape[1] * f].reshape(m3.shape)
    du3 = du[:, :u3.shape[1] * f].reshape(u3.shape)
    dv3 = dv[:, :v3.shape[1] * c].reshape(v3.shape)
    dkernel = np.empty_like(kernel)
    half, zero = x.dtype.type(0.5), x.dtype.type(0)
    steps = {
        "step: pad": lambda: wg._pad_into(x, 0, 0, xp),
        "step: kernel transform": lambda: wg._kernel_transform_into(kernel, half, u),
        "step: input transform": lambda: wg._input_transform_into(xp, tiles_h, tiles_w, v),
        "step: 16 products V@U": lambda: np.matmul(v3, u3, out=m3),
        "step: output transform": lambda: wg._output_transform_into(m, tiles_h, tiles_w, bias,
                                                                    zero, z),
        "step: dM = A dY A^T": lambda: wg._output_transform_adjoint_into(dz, tiles_h, tiles_w,
                                                                         zero, dm),
        "step: 16 products V^T@dM": lambda: np.matmul(v3.transpose(0, 2, 1), dm3, out=du3),
        "step: kernel adjoint": lambda: wg._kernel_transform_adjoint_into(du, half, dkernel),
        "step: 16 products dM@U^T": lambda: np.matmul(dm3, u3.transpose(0, 2, 1), out=dv3),
        "step: input adjoint": lambda: wg._input_transform_adjoint_into(dv, tiles_h, tiles_w,
                                                                        dxp),
        "step: crop": lambda: wg._crop_into(dxp, 0, 0, dx),
    }
    return {"forward": forward, "forward_conv": forward_conv,
            "backward": lambda: wg.winograd_conv2d_backward(dz, cache, workspace=bws),
            "dkernel": lambda: wg.winograd_conv2d_backward(dz, cache, compute_dx=False,
                                                           workspace=bws),
            **steps}


# ----------------------------------------------------------------------------------- timing


def time_calls(func, calls):
    """Seconds of each of `calls` calls (after one untimed)."""
    func()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        func()
        times.append(time.perf_counter() - t)
    return times


def measure(paths, rounds, calls):
    """{impl: {phase: {'min_ms', 'median_ms', 'calls'}}}, implementations taking turns."""
    from minicnn.ops.threads import blas_threads

    samples = {impl: {phase: [] for phase in funcs} for impl, funcs in paths.items()}
    with blas_threads(1):
        for _ in range(rounds):
            for impl, funcs in paths.items():
                for phase, func in funcs.items():
                    samples[impl][phase] += time_calls(func, calls)
    return {impl: {phase: {"min_ms": 1e3 * min(t), "median_ms": 1e3 * statistics.median(t),
                           "calls": len(t)} for phase, t in phases.items()}
            for impl, phases in samples.items()}


def run(args):
    """All cases: a list of rows {conv, batch, shape, flops, results}."""
    rng = np.random.default_rng(0)
    rows = []
    for name, (h, w, c), f in CONVS:
        for batch in args.batch_sizes:
            x = rng.standard_normal((batch, h, w, c)).astype(np.float32)
            kernel = (rng.standard_normal((3, 3, c, f)) * 0.1).astype(np.float32)
            bias = (rng.standard_normal(f) * 0.1).astype(np.float32)
            current, dz = current_path(x, kernel, bias)
            if c == 1:
                new_name, new = "direct", direct_path(x, kernel, bias, dz)
                current = {k: current[k] for k in ("forward", "forward_conv", "dkernel")}
            else:
                new_name, new = "winograd", winograd_path(x, kernel, bias, dz)
                current = {k: current[k] for k in ("forward", "forward_conv", "backward",
                                                   "dkernel", "dx")}
            print(f"{name}, batch {batch}: current vs {new_name} ...", flush=True)
            results = measure({"current": current, new_name: new}, args.rounds, args.calls)
            rows.append({"conv": name, "batch": batch, "input": [h, w, c], "filters": f,
                         "new": new_name,
                         "flops_forward": 2 * batch * (h - 2) * (w - 2) * f * 9 * c,
                         "results": results})

    return rows


PHASES = (("forward", "forward: conv + bias + ReLU"),
          ("forward_conv", "forward: conv only"),
          ("backward", "backward: dkernel + dx (from dz)"), ("dkernel", "backward: dkernel only"),
          ("dx", "backward: dx only"))


def markdown(rows, meta):
    """The comparison table (fastest call, ms) and the Winograd step breakdown."""
    lines = [f"{meta['created']} on `{meta['machine']['host']}`: {meta['machine']['cpu']}; "
             f"float32, BLAS 1 thread ({meta.get('blas', {}).get('kernel', '?')} kernel); "
             "cells: fastest call in ms (median in brackets).", "",
             "| conv | batch | phase | current (im2col + BLAS) | new | new kernel | speed-up "
             "| winner |", "|---|---:|---|---:|---:|---|---:|---|"]
    for row in rows:
        cur, new = row["results"]["current"], row["results"][row["new"]]
        for phase, label in PHASES:
            if phase not in cur or phase not in new:
                continue
            a, b = cur[phase], new[phase]
            speed = a["min_ms"] / b["min_ms"]
            lines.append(f"| {row['conv']} | {row['batch']} | {label} | {a['min_ms']:.3f} "
                         f"({a['median_ms']:.3f}) | {b['min_ms']:.3f} ({b['median_ms']:.3f}) | "
                         f"{row['new']} | {speed:.2f}x | "
                         f"{row['new'] if speed > 1 else 'current'} |")
    steps = [r for r in rows if r["new"] == "winograd"]
    if steps:
        lines += ["", "Winograd, step by step (fastest call, ms):", "",
                  "| conv | batch | " + " | ".join(
                      k[6:] for k in steps[0]["results"]["winograd"] if k.startswith("step:"))
                  + " |",
                  "|---|---:|" + "---:|" * sum(k.startswith("step:")
                                              for k in steps[0]["results"]["winograd"])]
        for row in steps:
            cells = [f"{v['min_ms']:.3f}" for k, v in row["results"]["winograd"].items()
                     if k.startswith("step:")]
            lines.append(f"| {row['conv']} | {row['batch']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    """Run, print the tables, write the JSON; returns the report."""
    args = parse_args(argv)
    import _blas

    meta = {"schema": SCHEMA, "created": _common.now_iso(), "machine": _common.machine_info(),
            "blas": _blas.blas_info(), "loadavg_before": _common.loadavg(),
            "config": {"batch_sizes": args.batch_sizes, "rounds": args.rounds,
                       "calls": args.calls, "dtype": "float32", "blas_threads": 1}}
    rows = run(args)
    meta["loadavg_after"] = _common.loadavg()
    report = {**meta, "rows": rows}
    print()
    print(markdown(rows, meta))
    if not args.no_json:
        _common.write_report(report, args.out_dir, "-kernels" + ("-quick" if args.quick else ""))
    return report


if __name__ == "__main__":
    main()
