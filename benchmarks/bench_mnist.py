"""Train the Keras MNIST tutorial CNN with minicnn, Keras, PyTorch and JAX: speed, memory, accuracy.

Each (framework, seed) runs in a fresh process (benchmarks/_workers.py), one after another,
with frameworks interleaved (A, B, C, A, B, C, ...) because timing noise differs from process
to process. Before the timed runs one untimed warm-up process per framework (a 2,048-image
epoch) fills Numba's on-disk cache and the OS page cache, so start-up figures are those of a
second run, as a user sees them after installing. Prints a Markdown table (medians over seeds
with their range) and the ratios issue 5 judges, writes
``benchmarks/results/<date>-<host>.json`` and a PNG chart beside it.

    PYTHONPATH=. MINICNN_DATA_DIR=... python benchmarks/bench_mnist.py   # 10 epochs x 3 seeds
    PYTHONPATH=. python benchmarks/bench_mnist.py --quick --frameworks minicnn --limit 2000

Frameworks: ``minicnn``; ``keras`` (Keras 3, TensorFlow backend, CPU); ``keras-jax`` (Keras 3
on JAX); ``torch`` (PyTorch, NCHW unless --torch-channels-last / --torch-keep-freed-memory);
``torch-best`` (PyTorch with channels_last *and* glibc told to keep freed memory);
``torch-plain`` (torch-best's configuration in a plain ``zero_grad / forward / loss / backward /
step`` loop, without per-step metric sums); ``jax`` (JAX + optax, the whole step under one
``jax.jit``). "PyTorch's best" in the ratios is the fastest PyTorch configuration that ran.
Missing peers are skipped with a note.

Models (``--model``, benchmarks/_model.py): ``tutorial``, ``tutorial-wide`` (every hidden width
x2) and ``convnet`` (keras.io's simple MNIST convnet: batch 128, categorical cross-entropy,
Dropout; a minicnn checkout without ``layers.Dropout`` skips it, with a message); ``resnet-cifar``
(random CIFAR-shaped data, the functional API) is what benchmarks/bench_cifar.py runs.

Two minicnn checkouts side by side: ``--minicnn old=/path/a,new=/path/b`` runs each as its own
column, with its path first on the workers' PYTHONPATH, interleaved with the others; the ratios
then compare each checkout with the first (issue 9's "within 5 %"). On a shared VM whose speed
drifts by 10-25 % over tens of seconds those per-process medians move by several per cent
between runs of the same code; ``--turns ROUNDS`` adds, after the runs, short alternating turns
of one persistent process per checkout (benchmarks/_turns.py), whose per-round ratios cancel
the drift.

BLAS: every run records NumPy's BLAS and the kernel it picked; the header measures the peak
(a large float32 matrix product at 1 and 2 threads, in a process with the workers'
environment) and says whether OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE applied. ``--native-blas``
removes those two variables from the workers' environment (only there).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _blas  # noqa: E402
import _common  # noqa: E402
import _model  # noqa: E402
import _turns  # noqa: E402
from _common import median  # noqa: E402

WORKER = Path(__file__).resolve().parent / "_workers.py"
PEAK_SCRIPT = Path(__file__).resolve().parent / "_blas.py"
RESULT_PREFIX = "BENCH_RESULT "
FRAMEWORKS = ("minicnn", "keras", "keras-jax", "torch", "torch-best", "torch-plain", "jax")
# The modules a framework's worker imports (all must be importable by the workers' Python).
PEER_MODULES = {"minicnn": ("minicnn",), "keras": ("keras", "tensorflow"),
                "keras-jax": ("keras", "jax"), "torch": ("torch",), "torch-best": ("torch",),
                "torch-plain": ("torch",), "jax": ("jax", "optax")}
TORCH_FRAMEWORKS = ("torch", "torch-best", "torch-plain")
DEFAULT_FRAMEWORKS = ("minicnn", "keras", "torch", "torch-best", "torch-plain", "jax")
# glibc malloc: keep freed memory instead of handing it back to the OS after every batch (each
# give-back means fresh page faults on the next allocation). 32 MiB is the largest mmap
# threshold glibc accepts on 64-bit; a fixed value also stops its dynamic adjustment.
KEEP_FREED_MEMORY_ENV = {"MALLOC_TRIM_THRESHOLD_": str(1 << 30),
                         "MALLOC_MMAP_THRESHOLD_": str(32 << 20)}
WARMUP_LIMIT = 2048
SCHEMA = "minicnn-bench-mnist/2"
# Issue 9: a new minicnn must stay within 5 % of the old one's speed.
REGRESSION_TOLERANCE = 0.05

# (key, row label, number format) for the table, in order.
METRICS = (
    ("epoch_first_s", "s/epoch, first epoch", "{:.2f}"),
    ("epoch_rest_s", "s/epoch, later epochs (median)", "{:.2f}"),
    ("first_batch_s", "s from process start to first finished batch", "{:.2f}"),
    ("startup_s", "of that: interpreter start-up (s)", "{:.2f}"),
    ("import_s", "of that: framework import (s)", "{:.2f}"),
    ("fit_s", "fit() total (s)", "{:.1f}"),
    ("test_accuracy_pct", "test accuracy (%)", "{:.2f}"),
    ("test_loss", "test loss", "{:.4f}"),
    ("train_gflops", "training GFLOP/s (later epochs; FLOPs of the convs and dense layers)",
     "{:.1f}"),
    ("efficiency_pct", "efficiency: training FLOP/s over the measured peak (%)",
     "{:.1f}"),
    ("predict_images_per_s", "predict() images/s", "{:,.0f}"),
    ("peak_rss_mb", "peak RSS (MiB)", "{:,.0f}"),
    ("load_1min", "load average (1 min) before the run", "{:.2f}"),
    ("others_cpu_cores", "other processes' CPU use during the run (cores)", "{:.2f}"),
)


def parse_args(argv=None, defaults=None, description=None):
    """Command-line options; --quick means 1 epoch and 1 seed. `defaults` replaces option
    defaults (bench_cifar.py: its model, epochs and frameworks)."""
    p = argparse.ArgumentParser(description=description or __doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--seeds", default="1,2,3", help="comma-separated seeds (default 1,2,3)")
    p.add_argument("--frameworks", default=None,
                   help=f"comma-separated, from {', '.join(FRAMEWORKS)} "
                        f"(default: {', '.join(DEFAULT_FRAMEWORKS)} -- those installed)")
    p.add_argument("--model", default="tutorial", choices=tuple(_model.MODELS),
                   help="what to train (benchmarks/_model.py); sets the batch size and loss of "
                        "its recipe (tutorial: 32, sparse CE; convnet: 128, categorical CE)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="default: the model's recipe (32 for the tutorial)")
    p.add_argument("--minicnn", default=None, metavar="NAME=PATH,...",
                   help="benchmark these minicnn checkouts side by side instead of the one on "
                        "PYTHONPATH: each PATH (a repository root) goes first on its workers' "
                        "PYTHONPATH; columns 'minicnn:NAME'")
    p.add_argument("--turns", type=int, default=0, metavar="ROUNDS",
                   help="with several --minicnn checkouts: afterwards, ROUNDS rounds of short "
                        "alternating turns, one persistent process per checkout (see "
                        "benchmarks/_turns.py): ratios that the machine's drift cancels out of")
    p.add_argument("--turn-steps", type=int, default=400,
                   help="training steps per turn (default 400, ~3 s for the tutorial)")
    p.add_argument("--native-blas", action="store_true",
                   help="remove " + " and ".join(_blas.FORCING_VARS) + " from the workers' "
                        "environment, so OpenBLAS picks its own kernel for this CPU")
    p.add_argument("--peak-size", type=int, default=2048,
                   help="matrix size of the peak measure (0: skip it)")
    p.add_argument("--no-predict", action="store_true", help="skip the predict() timing")
    p.add_argument("--predict-batch-size", type=int, default=32)
    p.add_argument("--predict-repeats", type=int, default=3,
                   help="timed predict() calls after one untimed call; their median counts")
    p.add_argument("--quick", action="store_true", help="1 epoch, 1 seed (development)")
    p.add_argument("--limit", type=int, default=None,
                   help="only the first N training/test images (development only: the figures "
                        "are not comparable with full runs)")
    p.add_argument("--torch-channels-last", action="store_true",
                   help="'torch' runs with channels_last tensors and weights")
    p.add_argument("--torch-keep-freed-memory", action="store_true",
                   help="'torch' runs with " + " ".join(f"{k}={v}" for k, v in
                                                      KEEP_FREED_MEMORY_ENV.items()))
    p.add_argument("--torch-threads", type=int, default=None,
                   help="torch.set_num_threads (default: PyTorch's own, the core count)")
    p.add_argument("--no-warmup", action="store_true",
                   help="skip the untimed warm-up process per framework (cold Numba cache)")
    p.add_argument("--profile", action="store_true",
                   help="afterwards, one extra untimed minicnn epoch with fit(profile=True), "
                        "printed (needs minicnn's profile API)")
    p.add_argument("--wait-idle", type=float, default=None, metavar="FRACTION",
                   help="before each timed run, wait until at most this share of the cores is "
                        "busy (e.g. 0.2; sampled over 2 s), for at most --max-wait seconds")
    p.add_argument("--max-wait", type=float, default=300.0)
    p.add_argument("--out-dir", default=str(_common.RESULTS_DIR))
    p.add_argument("--no-chart", action="store_true")
    p.add_argument("--python", default=sys.executable, help="interpreter for the workers")
    p.add_argument("--from-json", default=None, metavar="PATH",
                   help="run nothing: print the table of an earlier run's JSON and redraw its "
                        "chart beside it")
    if defaults:
        p.set_defaults(**defaults)
    args = p.parse_args(argv)
    if args.quick:
        args.epochs, args.seeds = 1, "1"
    if args.batch_size is None:
        args.batch_size = _model.recipe(args.model)["batch_size"]
    try:
        args.seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()]
    except ValueError:
        p.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not args.seeds or args.epochs < 1 or args.batch_size < 1:
        p.error("need at least one seed, --epochs >= 1 and --batch-size >= 1")
    if args.frameworks is None:
        args.frameworks = [f for f in DEFAULT_FRAMEWORKS
                           if f == "minicnn" or module_available(f, args.python)]
    else:
        args.frameworks = [f.strip() for f in args.frameworks.split(",") if f.strip()]
        unknown = [f for f in args.frameworks if f not in FRAMEWORKS]
        if unknown:
            p.error(f"--frameworks: unknown {unknown}; choose from {', '.join(FRAMEWORKS)}")
    try:
        args.checkouts = parse_checkouts(args.minicnn)
    except ValueError as exc:
        p.error(str(exc))
    if args.checkouts:
        # Each checkout takes minicnn's place in the order (or goes first without it).
        names = [f"minicnn:{name}" for name in args.checkouts]
        if "minicnn" in args.frameworks:
            i = args.frameworks.index("minicnn")
            args.frameworks[i:i + 1] = names
        else:
            args.frameworks[:0] = names
    return args


def parse_checkouts(text):
    """'old=/a,new=/b' -> {'old': '/a', 'new': '/b'} (absolute paths; ValueError names what is
    wrong: a missing '=', a repeated name, a path without minicnn/__init__.py)."""
    checkouts = {}
    if not text:
        return checkouts
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, path = item.partition("=")
        name, path = name.strip(), path.strip()
        if not sep or not name or not path:
            raise ValueError(f"--minicnn: expected NAME=PATH, got {item!r} "
                             "(e.g. --minicnn old=/work/main,new=.)")
        if name in checkouts:
            raise ValueError(f"--minicnn: the name {name!r} is given twice")
        path = os.path.abspath(os.path.expanduser(path))
        if not os.path.isfile(os.path.join(path, "minicnn", "__init__.py")):
            raise ValueError(f"--minicnn: {path} holds no minicnn/__init__.py; give the root "
                             "of a minicnn checkout")
        checkouts[name] = path
    return checkouts


def is_minicnn(framework):
    """True for 'minicnn' and the checkout columns 'minicnn:NAME'."""
    return framework == "minicnn" or framework.startswith("minicnn:")


def module_available(framework, python=None):
    """True when the framework's packages can be imported by the workers' interpreter."""
    modules = PEER_MODULES["minicnn" if is_minicnn(framework) else framework]
    if python is None or os.path.realpath(python) == os.path.realpath(sys.executable):
        return all(importlib.util.find_spec(m) is not None for m in modules)
    code = ("import importlib.util,sys; sys.exit(any(importlib.util.find_spec(m) is None "
            f"for m in {list(modules)!r}))")
    return subprocess.run([python, "-c", code], check=False).returncode == 0


# ----------------------------------------------------------------------------------- running


def worker_plan(framework, args):
    """(worker --framework, extra worker arguments, extra environment) for one framework."""
    extra_args, env = ["--model", args.model], {}
    if is_minicnn(framework):
        return "minicnn", extra_args, env
    if framework in ("keras", "keras-jax"):
        backend = "jax" if framework == "keras-jax" else "tensorflow"
        return "keras", extra_args + ["--keras-backend", backend], env
    if framework == "jax":
        return "jax", extra_args, env
    best = framework in ("torch-best", "torch-plain")
    if best or args.torch_channels_last:
        extra_args.append("--torch-channels-last")
    if best or args.torch_keep_freed_memory:
        env.update(KEEP_FREED_MEMORY_ENV)
    if framework == "torch-plain":
        extra_args.append("--torch-plain-loop")
    if args.torch_threads:
        extra_args += ["--torch-threads", str(args.torch_threads)]
    return "torch", extra_args, env


def worker_env(framework, args, base=None):
    """(environment of a worker, what was changed: {'set': {...}, 'removed': [...]}).

    Starts from `base` (default os.environ) and never changes it: --native-blas removes the
    OpenBLAS kernel-forcing variables, a --minicnn checkout goes first on PYTHONPATH, and the
    framework's own settings (glibc malloc for torch-best) are added."""
    env = dict(os.environ if base is None else base)
    _base, _args, extra = worker_plan(framework, args)
    changes = {"set": dict(extra), "removed": []}
    if getattr(args, "native_blas", False):
        for name in _blas.FORCING_VARS:
            if env.pop(name, None) is not None:
                changes["removed"].append(name)
    checkouts = getattr(args, "checkouts", None) or {}
    if framework.startswith("minicnn:"):
        path = checkouts[framework.split(":", 1)[1]]
        env["PYTHONPATH"] = os.pathsep.join(p for p in (path, env.get("PYTHONPATH")) if p)
        changes["set"]["PYTHONPATH"] = env["PYTHONPATH"]
    env.update(extra)
    return env, changes


def run_worker(framework, seed, args, epochs=None, limit=None, profile=False):
    """Start one worker process and wait; returns its record (result, skip or error), with the
    load average before it started and the parent-side wall time."""
    base, extra_args, _extra = worker_plan(framework, args)
    env, changes = worker_env(framework, args)
    epochs = args.epochs if epochs is None else epochs
    record = {"framework": framework, "seed": seed, "epochs": epochs, "limit": limit,
              "loadavg_before": _common.loadavg(), "env": changes["set"],
              "env_removed": changes["removed"]}
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_before = _common.cpu_times()
    spawn = time.time()
    cmd = [args.python, str(WORKER), "--framework", base, "--seed", str(seed),
           "--epochs", str(epochs), "--batch-size", str(args.batch_size),
           "--predict-batch-size", str(args.predict_batch_size),
           "--predict-repeats", str(args.predict_repeats), "--spawn-time", repr(spawn),
           *extra_args]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    if profile:
        cmd.append("--profile")
    if getattr(args, "no_predict", False):
        cmd.append("--no-predict")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    record["wall_s"] = time.time() - spawn
    record["others_cpu_cores"] = others_cpu_cores(cpu_before, _common.cpu_times(),
                                                  children_before, record["wall_s"])
    result, other = None, []
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX):])
        else:
            other.append(line)
    record["output"] = other
    if proc.returncode != 0 or result is None:
        record["error"] = (f"worker exited with code {proc.returncode}; last stderr lines:\n"
                           + "\n".join(proc.stderr.splitlines()[-15:]))
    elif "skipped" in result:
        record["skipped"] = result["skipped"]
        record["result_partial"] = result
    else:
        record["result"] = result
    return record


def run_turns(args, columns):
    """--turns: the checkouts `columns` in alternating turns (benchmarks/_turns.py) ->
    summarize_turns's dict, with the per-round figures under 'raw'."""
    envs = {column: worker_env(column, args)[0] for column in columns}
    worker_args = ["--model", args.model, "--seed", str(args.seeds[0]), "--batch-size",
                   str(args.batch_size), "--predict-batch-size", str(args.predict_batch_size)]
    if args.limit:
        worker_args += ["--limit", str(args.limit)]
    raw = _turns.run_turns(envs, args.turns, args.turn_steps, args.python, worker_args)
    return {**_turns.summarize_turns(raw), "raw": raw}


def measure_peak(args):
    """BLAS info and the matrix-product peak, measured in a fresh process with the workers'
    environment (so --native-blas applies); None when --peak-size is 0 or the run fails."""
    if not args.peak_size:
        return None
    env, changes = worker_env("jax", args)  # a peer's environment: only --native-blas applies
    cmd = [args.python, str(PEAK_SCRIPT), "--size", str(args.peak_size)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith(_blas.RESULT_PREFIX):
            out = json.loads(line[len(_blas.RESULT_PREFIX):])
            out["env_removed"] = changes["removed"]
            return out
    print(f"bench_mnist: the peak measure failed (exit code {proc.returncode}):\n"
          + "\n".join(proc.stderr.splitlines()[-5:]))
    return None


def others_cpu_cores(cpu_before, cpu_after, children_before, wall_s):
    """Cores' worth of CPU that *other* processes used while a worker ran: the machine's busy
    CPU seconds minus the worker's own (RUSAGE_CHILDREN difference), over the wall time."""
    if cpu_before is None or cpu_after is None or wall_s <= 0:
        return None
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = ((children.ru_utime + children.ru_stime)
           - (children_before.ru_utime + children_before.ru_stime))
    return round(max(0.0, (cpu_after[0] - cpu_before[0]) - own) / wall_s, 2)


def run_all(args, log=print):
    """Warm-up processes, then the interleaved timed runs; returns (warmups, runs).

    A framework that skips the model (a missing layer) is not started again: its one skip
    record stands in the runs."""
    warmups, runs, skipped = [], [], set()

    def note_skip(record):
        skipped.add(record["framework"])
        runs.append(record)
        log(f"  SKIPPED {record['framework']}: {record['skipped']}")

    if not args.no_warmup:
        limit = min(WARMUP_LIMIT, args.limit or WARMUP_LIMIT)
        for framework in args.frameworks:
            log(f"warm-up (untimed): {framework}, 1 epoch on {limit} images ...")
            record = run_worker(framework, args.seeds[0], args, epochs=1, limit=limit)
            warmups.append(record)
            if "error" in record:
                log(f"  warm-up of {framework} failed:\n{record['error']}")
            elif "skipped" in record:
                note_skip(record)
    total = len(args.seeds) * len(args.frameworks)
    for i, seed in enumerate(args.seeds):
        for j, framework in enumerate(args.frameworks):
            if framework in skipped:
                continue
            number = i * len(args.frameworks) + j + 1
            idle = (_common.wait_for_idle(args.wait_idle, args.max_wait, log)
                    if args.wait_idle is not None else None)
            load = _common.loadavg()
            log(f"[{number}/{total}] {framework}, seed {seed}, {args.epochs} epoch(s) "
                f"(load {load[0] if load else '?'}) ...")
            record = run_worker(framework, seed, args, limit=args.limit)
            record["order"] = number
            record["wait_for_idle"] = idle
            for line in record["output"]:
                log("    " + line)
            if "skipped" in record:
                note_skip(record)
                continue
            runs.append(record)
            if "error" in record:
                log(f"  FAILED: {record['error']}")
            else:
                r = record["result"]
                ips = r.get("predict_images_per_s")
                log(f"  {_fmt_list(r['epoch_s'])} s/epoch, first batch "
                    f"{r['first_batch_s']:.2f} s, acc {100 * r['test_accuracy']:.2f} %, "
                    f"predict {f'{ips:,.0f}' if ips else '-'} img/s, "
                    f"RSS {r['peak_rss_mb']:,.0f} MiB; other processes used "
                    f"{record['others_cpu_cores']} cores meanwhile")
    return warmups, runs


def _fmt_list(values):
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


# ----------------------------------------------------------------------------------- summary


def run_metrics(record, peak_gflops=None):
    """The table's per-run figures from one worker record (None where not measurable).

    train_gflops: the model's training FLOPs (benchmarks/_model.py) per image x images per
    epoch / seconds per later epoch (the first epoch in a 1-epoch run); efficiency_pct: that
    over `peak_gflops` (the measured peak, see peak_gflops_of)."""
    r = record["result"]
    epochs = r["epoch_s"]
    load = record.get("loadavg_before")
    steady = median(epochs[1:]) if len(epochs) > 1 else (epochs[0] if epochs else None)
    # Runs saved before the workers reported these were of the tutorial model on the first
    # `limit` (or all 60,000) images.
    flops = r.get("flops_per_image") or _model.training_flops_per_image(r.get("model",
                                                                              "tutorial"))
    images = r.get("train_images") or min(record.get("limit") or 60000, 60000)
    gflops = flops * images / steady / 1e9 if steady else None
    return {
        "epoch_first_s": epochs[0] if epochs else None,
        "epoch_rest_s": median(epochs[1:]) if len(epochs) > 1 else None,
        "first_batch_s": r.get("first_batch_s"),
        "startup_s": r.get("startup_s"),
        "import_s": r.get("import_s"),
        "fit_s": r.get("fit_s"),
        "test_accuracy_pct": 100 * r["test_accuracy"],
        "test_loss": r["test_loss"],
        "train_gflops": gflops,
        "efficiency_pct": (100 * gflops / peak_gflops if gflops is not None and peak_gflops
                           else None),
        "predict_images_per_s": r.get("predict_images_per_s"),
        "peak_rss_mb": r["peak_rss_mb"],
        "load_1min": load[0] if load else None,
        "others_cpu_cores": record.get("others_cpu_cores"),
    }


def framework_label(framework, records):
    """'minicnn 0.1.0', 'minicnn:new 0.1.0 (/path @ abc123)', 'Keras 3.15.1 (TF 2.21.0)',
    'Keras 3.15.1 (JAX 0.10.2)', 'PyTorch 2.13.0+cpu (NCHW, 2 threads)', 'JAX 0.10.2 (...)'."""
    ok = [r["result"] for r in records if "result" in r]
    if not ok:
        return framework
    v, c = ok[0].get("versions", {}), ok[0].get("config", {})
    if framework == "minicnn":
        return f"minicnn {v.get('minicnn', '?')}"
    if framework.startswith("minicnn:"):
        where = os.path.dirname(ok[0].get("minicnn_path") or "?")
        return (f"{framework} {v.get('minicnn', '?')} ({where} @ "
                f"{ok[0].get('minicnn_git') or '?'})")
    if framework == "keras":
        return f"Keras {v.get('keras', '?')} (TF {v.get('tensorflow', '?')})"
    if framework == "keras-jax":
        return f"Keras {v.get('keras', '?')} (JAX {v.get('jax', '?')})"
    if framework == "jax":
        return f"JAX {v.get('jax', '?')} (jit train step, optax {v.get('optax', '?')})"
    parts = [c.get("layout", "?"), f"{c.get('threads', '?')} threads"]
    if c.get("malloc_env"):
        parts.append("glibc keeps freed memory")
    if c.get("loop") == "plain":
        parts.append("plain loop")
    return f"PyTorch {v.get('torch', '?')} ({', '.join(parts)})"


def short_label(framework, records):
    """A chart label: 'minicnn', 'Keras 3.15.1', 'PyTorch / NCHW', 'PyTorch / channels_last /
    + glibc keeps memory' (/ = line break)."""
    ok = [r["result"] for r in records if "result" in r]
    if not ok or is_minicnn(framework):
        return framework
    v, c = ok[0].get("versions", {}), ok[0].get("config", {})
    if framework == "keras":
        return f"Keras {v.get('keras', '?')}"
    if framework == "keras-jax":
        return f"Keras {v.get('keras', '?')}\non JAX"
    if framework == "jax":
        return f"JAX {v.get('jax', '?')}"
    return ("PyTorch\n" + c.get("layout", "?")
            + ("\n+ glibc keeps memory" if c.get("malloc_env") else "")
            + ("\nplain loop" if c.get("loop") == "plain" else ""))


def peak_gflops_of(peak):
    """The peak GFLOP/s of a measure_peak() result: its fastest thread count (the 2-thread
    figure on a quiet 2-core machine; the 1-thread one when another process held a core while
    the 2-thread product ran), or None."""
    if not peak or not peak.get("peak"):
        return None
    rates = peak["peak"].get("gflops", {})
    return max(rates.values()) if rates else None


def summarize(runs, frameworks, peak=None):
    """Per framework: label, seeds, per-run metric lists and {median, min, max} per metric;
    'skipped' holds the reason when the framework could not train the model."""
    summary = {}
    peak_gflops = peak_gflops_of(peak)
    for framework in frameworks:
        records = [r for r in runs if r["framework"] == framework]
        good = [r for r in records if "result" in r]
        skips = [r["skipped"] for r in records if "skipped" in r]
        per_run = [run_metrics(r, peak_gflops) for r in good]
        stats = {}
        for key, _label, _fmt in METRICS:
            values = [m[key] for m in per_run if m[key] is not None]
            stats[key] = ({"median": median(values), "min": min(values), "max": max(values),
                           "n": len(values), "values": values} if values else None)
        summary[framework] = {
            "label": framework_label(framework, records),
            "short_label": short_label(framework, records),
            "seeds": [r["seed"] for r in good],
            "failed": len(records) - len(good) - len(skips),
            "skipped": skips[0] if skips else None,
            "accuracy_by_seed": {str(r["seed"]): 100 * r["result"]["test_accuracy"]
                                 for r in good},
            "blas": good[0]["result"].get("blas") if good else None,
            "stats": stats,
        }
    return summary


def _steady_epoch(stats):
    # Later-epoch median when there are later epochs, else the only (first) epoch.
    return stats.get("epoch_rest_s") or stats.get("epoch_first_s")


def _ran(summary, framework):
    return (framework in summary
            and summary[framework]["stats"].get("epoch_first_s") is not None)


def random_labels(model):
    """True when model `model` trains on random data: its accuracy is chance, not a result."""
    return _model.recipe(model).get("data") == "random-cifar" if model in _model.MODELS else False


def compute_ratios(summary, model="tutorial"):
    """The figures issues 5, 9 and 14 judge, as a list of {name, value, target, met, note}.

    Each minicnn column (one, or several --minicnn checkouts) against each peer present:
    s/epoch over Keras's, Keras-on-JAX's and JAX's (<= 0.4, issue 14) and over PyTorch's
    best, the fastest PyTorch configuration that ran (<= 0.5), each PyTorch configuration
    too; predict() throughput over JAX's (>= 1) and Keras's (>= 3); start to first batch
    (<= 1) and peak RSS (<= 0.4) over Keras's (issue 5); test accuracy within 0.3 points of
    Keras's mean (not for a model on random labels); the efficiency (>= 40 %). With several
    checkouts, each later one against the first: s/epoch <= 1.05 and predict() >= 0.95 (issue
    9: no regression beyond 5 %). Ratios are of medians."""
    minis = [f for f in summary if is_minicnn(f) and _ran(summary, f)]
    ratios = []

    def add(name, value, target, met, note=""):
        ratios.append({"name": name, "value": value, "target": target, "met": met,
                       "note": note})

    torch_runs = [f for f in TORCH_FRAMEWORKS if _ran(summary, f)]
    best_torch = (min(torch_runs, key=lambda f: _steady_epoch(summary[f]["stats"])["median"])
                  if torch_runs else None)
    for mini in minis:
        mine = summary[mini]["stats"]
        epoch_kind = "later epochs" if mine.get("epoch_rest_s") else "first epoch (1-epoch run)"
        for peer, target in (("keras", 0.4), ("keras-jax", 0.4), ("jax", 0.4),
                             *((t, 0.5) for t in TORCH_FRAMEWORKS)):
            if not _ran(summary, peer):
                continue
            value = (_steady_epoch(mine)["median"]
                     / _steady_epoch(summary[peer]["stats"])["median"])
            add(f"s/epoch: {mini} / {peer}", value, f"<= {target}",
                value <= target, epoch_kind)
        if best_torch is not None:
            value = (_steady_epoch(mine)["median"]
                     / _steady_epoch(summary[best_torch]["stats"])["median"])
            add(f"s/epoch: {mini} / PyTorch's best (the fastest of {', '.join(torch_runs)}: "
                f"{best_torch})", value, "<= 0.5", value <= 0.5, epoch_kind)
        for peer, target in (("jax", 1.0), ("keras", 3.0)):
            if (_ran(summary, peer) and mine.get("predict_images_per_s")
                    and summary[peer]["stats"].get("predict_images_per_s")):
                value = (mine["predict_images_per_s"]["median"]
                         / summary[peer]["stats"]["predict_images_per_s"]["median"])
                add(f"predict() throughput: {mini} / {peer}", value,
                    f">= {target:g}", value >= target)
        if _ran(summary, "keras"):
            keras = summary["keras"]["stats"]
            value = mine["first_batch_s"]["median"] / keras["first_batch_s"]["median"]
            add(f"start to first batch: {mini} / Keras", value, "<= 1", value <= 1,
                f"{mine['first_batch_s']['median']:.2f} s vs "
                f"{keras['first_batch_s']['median']:.2f} s; Numba cache warm")
            value = mine["peak_rss_mb"]["median"] / keras["peak_rss_mb"]["median"]
            add(f"peak RSS: {mini} / Keras", value, "<= 0.4", value <= 0.4)
            seeds = sorted(set(summary[mini]["accuracy_by_seed"])
                           & set(summary["keras"]["accuracy_by_seed"]), key=int)
            if seeds and not random_labels(model):
                a = sum(summary[mini]["accuracy_by_seed"][s] for s in seeds) / len(seeds)
                b = sum(summary["keras"]["accuracy_by_seed"][s] for s in seeds) / len(seeds)
                add(f"test accuracy: {mini} mean - Keras mean (points)", a - b,
                    "within +-0.3", abs(a - b) <= 0.3,
                    f"seeds {', '.join(seeds)}: {a:.2f} % vs {b:.2f} %")
        if mine.get("efficiency_pct"):
            value = mine["efficiency_pct"]["median"]
            add(f"efficiency: {mini} training FLOP/s over the measured peak (%)", value,
                ">= 40", value >= 40)
    if len(minis) > 1:
        first = summary[minis[0]]["stats"]
        for other in minis[1:]:
            theirs = summary[other]["stats"]
            value = _steady_epoch(theirs)["median"] / _steady_epoch(first)["median"]
            add(f"s/epoch: {other} / {minis[0]}", value, f"<= {1 + REGRESSION_TOLERANCE:.2f}",
                value <= 1 + REGRESSION_TOLERANCE)
            if theirs.get("predict_images_per_s") and first.get("predict_images_per_s"):
                value = (theirs["predict_images_per_s"]["median"]
                         / first["predict_images_per_s"]["median"])
                add(f"predict() throughput: {other} / {minis[0]}", value,
                    f">= {1 - REGRESSION_TOLERANCE:.2f}", value >= 1 - REGRESSION_TOLERANCE)
    return ratios


def _cell(stat, fmt):
    if stat is None:
        return "-"
    text = fmt.format(stat["median"])
    if stat["n"] > 1:
        text += f" [{fmt.format(stat['min'])}-{fmt.format(stat['max'])}]"
    return text


def blas_lines(meta, summary):
    """Header lines: NumPy's BLAS and kernel, whether OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE
    applied to the workers, and the measured peak with the FMA rate it implies."""
    peak = meta.get("peak") or {}
    blas = peak.get("blas") or next((s["blas"] for s in summary.values() if s.get("blas")),
                                    None)
    lines = []
    if blas:
        kernels = sorted({s["blas"].get("kernel") or "?" for s in summary.values()
                          if s.get("blas")})
        text = (f"BLAS: NumPy's {blas.get('library') or '?'} {blas.get('version') or ''}, "
                f"kernel {blas.get('kernel') or '?'} (from {blas.get('source') or '?'})")
        if kernels and kernels != [blas.get("kernel") or "?"]:
            text += f"; kernels the workers reported: {', '.join(kernels)}"
        lines.append(text + ".")
    cfg = meta.get("config", {})
    inherited = cfg.get("forcing_env") or {}
    if "forcing_env" not in cfg and not peak:
        lines.append("BLAS kernel, OPENBLAS_* environment and peak: not recorded (a run from "
                     "before bench_mnist.py recorded them).")
        return lines
    if cfg.get("native_blas"):
        removed = ", ".join(f"{k}={v}" for k, v in inherited.items()) or "none was set"
        lines.append(f"--native-blas: {' and '.join(_blas.FORCING_VARS)} removed from the "
                     f"workers' environment ({removed}); OpenBLAS chose its own kernel.")
    elif inherited:
        lines.append("The workers inherited " + ", ".join(f"{k}={v}" for k, v in
                                                           inherited.items())
                     + " from the environment: OpenBLAS ran the forced kernel "
                       "(--native-blas removes it).")
    else:
        lines.append(f"{' and '.join(_blas.FORCING_VARS)} not set: OpenBLAS chose its own "
                     "kernel.")
    if peak.get("peak"):
        rates = peak["peak"]
        per = "; ".join(f"{n} thread{'s' if n != '1' else ''} {g:.1f} GFLOP/s = "
                        f"{rates['gfma'][n]:.1f} G FMA/s" for n, g in rates["gflops"].items())
        lines.append(f"Peak: NumPy float32 matrix product {rates['size']}x{rates['size']} "
                     f"(fastest of {rates['repeats']}): {per}. Efficiency = training FLOP/s "
                     "over the fastest of these.")
        one, two = rates["gflops"].get("1"), rates["gflops"].get("2")
        if one and two and two < 1.5 * one:
            lines.append(f"**Warning**: 2 threads reached only {two / one:.2f}x the 1-thread "
                         "rate: other processes held a core while the peak was measured, so "
                         "it (and the machine's figures) are unreliable.")
    return lines


def column_header(framework, label):
    """The label, with the framework's key where the label does not start with it (the ratios
    name columns by key): 'PyTorch 2.13.0+cpu (NCHW, 2 threads) [torch]'."""
    return label if label.startswith(framework) else f"{label} [{framework}]"


def markdown_table(summary, ratios, meta):
    """The report as Markdown: header lines (machine, BLAS, peak), one column per framework
    (median [min-max] over runs), per-seed accuracies, skips, then the ratios table."""
    frameworks = list(summary)
    lines = []
    fabricated = " **(FABRICATED INPUT, not a measurement)**" if meta.get("fabricated") else ""
    m = meta.get("machine", {})
    cfg = meta.get("config", {})
    lines.append(f"{meta.get('created', '?')} on `{m.get('host', '?')}`: {m.get('cpu', '?')}, "
                 f"{m.get('usable_cpus', '?')} cores, {m.get('memory_gib', '?')} GiB; "
                 f"Python {m.get('python', '?')}; minicnn at `{m.get('minicnn_git', '?')}`"
                 f"{fabricated}.")
    lines.append("")
    lines.extend(blas_lines(meta, summary))
    lines.append("")
    limit = f", first {cfg['limit']} images only (NOT comparable)" if cfg.get("limit") else ""
    lines.append(f"Model {cfg.get('model', 'tutorial')}; {cfg.get('epochs', '?')} epoch(s), "
                 f"batch size {cfg.get('batch_size', '?')}, "
                 f"seeds {cfg.get('seeds', '?')}{limit}; one fresh process per run, frameworks "
                 f"interleaved; {meta.get('warmup_note', '')} Cells: median [min-max] over runs.")
    if random_labels(cfg.get("model", "tutorial")):
        lines.append("")
        lines.append("Random CIFAR-shaped data (50,000 + 10,000 images 32x32x3, labels drawn "
                     "independently): the accuracy and loss rows only show that training ran "
                     "(chance is 10 %); the times are the result.")
    lines.append("")
    lines.append("| | " + " | ".join(column_header(f, summary[f]["label"]) for f in frameworks)
                 + " |")
    lines.append("|---|" + "---:|" * len(frameworks))
    for key, label, fmt in METRICS:
        lines.append(f"| {label} | "
                     + " | ".join(_cell(summary[f]["stats"].get(key), fmt) for f in frameworks)
                     + " |")
    acc_cells = []
    for f in frameworks:
        by_seed = summary[f]["accuracy_by_seed"]
        acc_cells.append(" / ".join(f"{v:.2f}" for _s, v in sorted(by_seed.items(),
                                                                      key=lambda kv: int(kv[0])))
                         or "-")
    lines.append("| test accuracy by seed (%) | " + " | ".join(acc_cells) + " |")
    skipped = [f"{f}: {summary[f]['skipped']}" for f in frameworks if summary[f].get("skipped")]
    if skipped:
        lines.append("")
        lines.append("Skipped: " + "; ".join(skipped) + ".")
    failed = [f"{f}: {summary[f]['failed']}" for f in frameworks if summary[f]["failed"]]
    if failed:
        lines.append("")
        lines.append("Failed runs: " + ", ".join(failed) + " (see the JSON).")
    if meta.get("turns"):
        lines.append("")
        lines.append(_turns.markdown(meta["turns"]))
    if ratios:
        lines.append("")
        lines.append("| ratio (targets of issues 5, 9 and 14) | value | target | met |")
        lines.append("|---|---:|---|---|")
        for r in ratios:
            met = "yes" if r["met"] else "no"
            if "points" in r["name"]:
                value = f"{r['value']:+.2f}"
            elif "(%)" in r["name"]:
                value = f"{r['value']:.1f}"
            elif "interleaved" in r["name"]:
                value = f"{r['value']:.3f}"
            else:
                value = f"{r['value']:.2f}"
            note = f" ({r['note']})" if r.get("note") else ""
            lines.append(f"| {r['name']}{note} | {value} | {r['target']} | {met} |")
    return "\n".join(lines)


def make_chart(summary, title):
    """A matplotlib Figure: seconds per epoch (first, later) and test accuracy per framework."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    frameworks = list(summary)
    labels = [summary[f].get("short_label", f) for f in frameworks]
    fig = Figure(figsize=(12, 4.4))
    ax_time, ax_acc = fig.subplots(1, 2)
    width = 0.38
    for offset, key, name in ((-width / 2, "epoch_first_s", "first epoch"),
                              (width / 2, "epoch_rest_s", "later epochs (median)")):
        xs, heights, lows, highs = [], [], [], []
        for i, f in enumerate(frameworks):
            stat = summary[f]["stats"].get(key)
            if stat is None:
                continue
            xs.append(i + offset)
            heights.append(stat["median"])
            lows.append(stat["median"] - stat["min"])
            highs.append(stat["max"] - stat["median"])
        if xs:
            ax_time.bar(xs, heights, width, yerr=[lows, highs], capsize=3, label=name)
    ax_time.set_xticks(range(len(frameworks)), labels, fontsize=8)
    ax_time.set_ylabel("seconds per epoch (median, range)")
    ax_time.set_title("Training time per epoch (lower is better)")
    ax_time.legend(fontsize=8)
    for i, f in enumerate(frameworks):
        values = list(summary[f]["accuracy_by_seed"].values())
        if values:
            ax_acc.scatter([i] * len(values), values, color="C0", zorder=3)
            ax_acc.hlines(sum(values) / len(values), i - 0.25, i + 0.25, color="C3")
    ax_acc.set_xticks(range(len(frameworks)), labels, fontsize=8)
    ax_acc.set_xlim(-0.6, len(frameworks) - 0.4)
    ax_acc.set_ylabel("test accuracy (%): seeds (dots), mean (line)")
    ax_acc.set_title("Test accuracy (higher is better)")
    fig.suptitle(title, fontsize=9)
    return fig


def build_report(args, machine, warmups, runs, created, fabricated=False, peak=None):
    """The JSON document: meta, config, warm-ups, runs, peak, summary, ratios."""
    summary = summarize(runs, args.frameworks, peak)
    ratios = compute_ratios(summary, getattr(args, "model", "tutorial"))
    warmup_note = ("one untimed warm-up process per framework ran first (Numba cache and OS "
                   "page cache warm)." if warmups else "no warm-up process (cold caches).")
    return {
        "schema": SCHEMA,
        "fabricated": fabricated,
        "created": created,
        "machine": machine,
        "warmup_note": warmup_note,
        "peak": peak,
        "config": {"model": getattr(args, "model", "tutorial"),
                   "epochs": args.epochs, "seeds": args.seeds, "frameworks": args.frameworks,
                   "batch_size": args.batch_size, "predict_batch_size": args.predict_batch_size,
                   "predict_repeats": args.predict_repeats, "limit": args.limit,
                   "torch_channels_last": args.torch_channels_last,
                   "torch_keep_freed_memory": args.torch_keep_freed_memory,
                   "keep_freed_memory_env": KEEP_FREED_MEMORY_ENV,
                   "wait_idle": args.wait_idle, "max_wait": args.max_wait,
                   "native_blas": getattr(args, "native_blas", False),
                   # What the parent's environment forces (removed from the workers' with
                   # --native-blas, inherited by them otherwise).
                   "forcing_env": {k: os.environ[k] for k in _blas.FORCING_VARS
                                   if k in os.environ},
                   "checkouts": getattr(args, "checkouts", {}),
                   "order": "interleaved: for seed in seeds: for framework in frameworks"},
        "warmups": warmups,
        "runs": runs,
        "summary": summary,
        "ratios": ratios,
    }


def chart_title(report):
    """'MNIST tutorial CNN, 10 epochs, seeds [1, 2, 3]: <cpu> (2 cores), <date>'."""
    m = report["machine"]
    model = report["config"].get("model", "tutorial")
    data = "random CIFAR-shaped data," if random_labels(model) else "MNIST"
    return (f"{data} {model} CNN, {report['config']['epochs']} epochs, seeds "
            f"{report['config']['seeds']}: {m.get('cpu')} ({m.get('usable_cpus')} cores), "
            f"{report['created']}")


def write_outputs(report, out_dir, chart=True, suffix=""):
    """Write <out_dir>/<date>-<host><suffix>.json (and .png); returns the paths written."""
    host = report["machine"].get("host")
    date = report["created"][:10]
    paths = [_common.atomic_write_json(_common.result_path(out_dir, suffix, "json", date, host),
                                       report)]
    if chart and report["summary"]:
        fig = make_chart(report["summary"], chart_title(report))
        paths.append(_common.save_figure(fig, _common.result_path(out_dir, suffix, "png", date,
                                                                  host)))
    return paths


def replot(path, chart=True):
    """Print the table of a saved report and redraw its PNG beside it; returns the report.

    The summary is recomputed from the saved runs, so an old file gets the current table."""
    path = Path(path)
    report = json.loads(path.read_text())
    frameworks = report["config"]["frameworks"]
    report["summary"] = summarize(report["runs"], frameworks, report.get("peak"))
    report["ratios"] = compute_ratios(report["summary"], report["config"].get("model",
                                                                              "tutorial"))
    print(markdown_table(report["summary"], report["ratios"], report))
    if chart:
        png = _common.save_figure(make_chart(report["summary"], chart_title(report)),
                                  path.with_suffix(".png"))
        print(f"\nwrote {png}")
    return report


def main(argv=None, defaults=None, description=None):
    """Run the benchmark and print/write its report; returns the report dict. `defaults` and
    `description` are parse_args's (bench_cifar.py)."""
    args = parse_args(argv, defaults, description)
    if args.from_json:
        return replot(args.from_json, chart=not args.no_chart)
    if not args.frameworks:
        sys.exit("bench_mnist: no framework to run (is minicnn on PYTHONPATH?)")
    missing = [f for f in args.frameworks
               if not is_minicnn(f) and not module_available(f, args.python)]
    for f in missing:
        print(f"bench_mnist: {' or '.join(PEER_MODULES[f])} is not importable by "
              f"{args.python}; skipping {f}")
    args.frameworks = [f for f in args.frameworks if f not in missing]
    if "minicnn" in args.frameworks and not module_available("minicnn", args.python):
        sys.exit("bench_mnist: minicnn is not importable; run with PYTHONPATH=<repository root>"
                 " or name checkouts with --minicnn NAME=PATH.")
    if not os.environ.get("MINICNN_DATA_DIR") and not random_labels(args.model):
        print("bench_mnist: MINICNN_DATA_DIR is not set; workers use minicnn's default cache "
              "folder (downloads MNIST on first use).")
    machine = _common.machine_info()
    created = _common.now_iso()
    print(f"bench_mnist: {', '.join(args.frameworks)}; {args.epochs} epoch(s); seeds "
          f"{args.seeds}; batch {args.batch_size}; workers run {args.python}")
    peak = measure_peak(args)
    if peak:
        print("bench_mnist: " + " ".join(blas_lines({"peak": peak, "config": {
            "native_blas": args.native_blas,
            "forcing_env": {k: os.environ[k] for k in _blas.FORCING_VARS if k in os.environ}}},
            {})))
    warmups, runs = run_all(args)
    report = build_report(args, machine, warmups, runs, created, peak=peak)
    minis = [f for f in args.frameworks if is_minicnn(f)]
    if args.turns and len(minis) > 1:
        report["turns"] = run_turns(args, minis)
        report["ratios"] += _turns.turn_ratios(report["turns"], REGRESSION_TOLERANCE)
    if args.profile and minis:
        print(f"\nprofile run (untimed, not in the figures): {minis[0]}, 1 epoch, "
              "fit(profile=True)")
        record = run_worker(minis[0], args.seeds[0], args, epochs=1, limit=args.limit,
                            profile=True)
        for line in record["output"]:
            print("    " + line)
        if "error" in record:
            print(record["error"])
        report["profile_run"] = record
    # Every model but the tutorial gets its own file name: a convnet run on the same day must
    # not replace the tutorial's results (it once did).
    suffix = (f"-{args.model}" if args.model != "tutorial" else "") + (
        "-quick" if (args.quick or args.limit) else "")
    paths = write_outputs(report, args.out_dir, chart=not args.no_chart, suffix=suffix)
    print()
    print(markdown_table(report["summary"], report["ratios"], report))
    print()
    for path in paths:
        print(f"wrote {path}")
    return report


if __name__ == "__main__":
    main()
