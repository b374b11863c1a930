"""How the cost grows with the work: seconds per epoch by batch size, by number of training
images, and for a wider model, minicnn against its peers in one interleaved run.

Three tables (issue 14), each cell the median of the later epochs (the first epoch's figure
when --epochs 1) over the seeds, from fresh worker processes (benchmarks/_workers.py):

- batch size 32, 64, 128 and 256 on all 60,000 images (larger batches should never be slower
  per image);
- 15,000, 30,000 and 60,000 images at batch 32 (the time should be linear in the data);
- the tutorial model against tutorial-wide (every hidden width x2) at batch 32, with training
  GFLOP/s and the efficiency over the measured peak, to show how the gap to the peers changes
  with size.

Within each setting the frameworks take turns (A, B, C, A, B, C, ...); one untimed warm-up
process per framework runs first. predict() is not timed here (bench_mnist.py does it).

    PYTHONPATH=. MINICNN_DATA_DIR=... python benchmarks/bench_scaling.py --frameworks \
        minicnn,torch-best,torch-plain,keras,jax --epochs 3
    PYTHONPATH=. python benchmarks/bench_scaling.py --quick --frameworks minicnn   # smoke run

--quick: 1 epoch, 1 seed, batch sizes 32 and 64, 1,000 and 2,000 images, the wide model on
2,000 images (figures for development only).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402
import bench_mnist  # noqa: E402

SCHEMA = "minicnn-bench-scaling/1"
FULL_IMAGES = 60000


def parse_args(argv=None):
    """Options of this script; the remaining worker options are bench_mnist.py's."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frameworks", default=None,
                   help="as bench_mnist.py (default: those installed)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--seeds", default="1")
    p.add_argument("--batch-sizes", default="32,64,128,256")
    p.add_argument("--image-counts", default="15000,30000,60000")
    p.add_argument("--no-wide", action="store_true", help="skip the tutorial-wide table")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out-dir", default=str(_common.RESULTS_DIR))
    p.add_argument("--no-json", action="store_true")
    args, passthrough = p.parse_known_args(argv)
    if args.quick:
        args.epochs, args.seeds = 1, "1"
        args.batch_sizes, args.image_counts = "32,64", "1000,2000"
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
        args.image_counts = [int(n) for n in args.image_counts.split(",") if n.strip()]
    except ValueError:
        p.error("--batch-sizes and --image-counts take comma-separated integers")
    if (not args.batch_sizes or not args.image_counts or min(args.batch_sizes) < 1
            or min(args.image_counts) < 1 or max(args.image_counts) > FULL_IMAGES):
        p.error(f"need batch sizes >= 1 and image counts in 1..{FULL_IMAGES}")
    base = ["--epochs", str(args.epochs), "--seeds", args.seeds, "--no-predict",
            "--out-dir", args.out_dir, *passthrough]
    if args.frameworks:
        base += ["--frameworks", args.frameworks]
    # bench_mnist's parser checks the frameworks, checkouts, --native-blas, --python, ...
    args.worker_args = bench_mnist.parse_args(base)
    return args


def settings(args):
    """[(table, row label, model, batch size, images or None for all)] in run order."""
    out = []
    largest = max(args.image_counts)
    full = None if largest == FULL_IMAGES else largest
    for b in args.batch_sizes:
        out.append(("batch", f"batch {b}", "tutorial", b, full))
    for n in args.image_counts:
        out.append(("images", f"{n:,} images", "tutorial", args.batch_sizes[0],
                    None if n == FULL_IMAGES else n))
    if not args.no_wide:
        for model in ("tutorial", "tutorial-wide"):
            out.append(("model", model, model, args.batch_sizes[0], full))
    return out


def run_settings(args, log=print):
    """Every setting's interleaved runs (warm-ups before the first): a list of dicts
    {table, label, model, batch_size, images, summary, runs}."""
    results, done = [], {}
    for index, (table, label, model, batch, images) in enumerate(settings(args)):
        key = (model, batch, images)
        if key in done:  # e.g. batch 32 on 60k images is also the 60k row
            results.append({**done[key], "table": table, "label": label})
            continue
        worker_args = copy.copy(args.worker_args)
        worker_args.model, worker_args.batch_size, worker_args.limit = model, batch, images
        worker_args.no_warmup = args.worker_args.no_warmup or index > 0
        log(f"== {label} ({model}, batch {batch}, {images or FULL_IMAGES:,} images)")
        _warmups, runs = bench_mnist.run_all(worker_args, log)
        entry = {"table": table, "label": label, "model": model, "batch_size": batch,
                 "images": images or FULL_IMAGES,
                 "summary": bench_mnist.summarize(runs, worker_args.frameworks, args.peak),
                 "runs": runs}
        done[key] = entry
        results.append(entry)
    return results


def _epoch(stats):
    stat = stats.get("epoch_rest_s") or stats.get("epoch_first_s")
    return stat["median"] if stat else None


def markdown_tables(results, frameworks, meta):
    """The three tables as Markdown: s/epoch per framework, then minicnn over each peer."""
    minis = [f for f in frameworks if bench_mnist.is_minicnn(f)]
    peers = [f for f in frameworks if not bench_mnist.is_minicnn(f)]
    epochs = meta["config"]["epochs"]
    kind = "median of the later epochs" if epochs > 1 else "the only epoch (1-epoch run)"
    lines = [f"{meta['created']} on `{meta['machine'].get('host')}`: "
             f"{meta['machine'].get('cpu')}, {meta['machine'].get('usable_cpus')} cores; "
             f"{epochs} epoch(s), seeds {meta['config']['seeds']}; cells: seconds per epoch "
             f"({kind}), median over seeds."]
    if meta.get("peak"):
        lines += [""] + bench_mnist.blas_lines(meta, {})
    titles = {"batch": "Seconds per epoch by batch size (all images)",
              "images": "Seconds per epoch by number of training images",
              "model": "Tutorial model and tutorial-wide (hidden widths x2)"}
    for table in ("batch", "images", "model"):
        rows = [r for r in results if r["table"] == table]
        if not rows:
            continue
        headers = list(frameworks) + [f"{m} / {p}" for m in minis for p in peers]
        extra = []
        if table == "images":
            extra = [f"{f}: s per 10k images" for f in frameworks]
        if table == "batch":
            extra = [f"{f}: ms per image" for f in frameworks]
        if table == "model":
            extra = [f"{f}: GFLOP/s (efficiency)" for f in frameworks]
        lines += ["", f"**{titles[table]}**", "",
                  "| | " + " | ".join(headers + extra) + " |",
                  "|---|" + "---:|" * (len(headers) + len(extra))]
        for row in rows:
            s = row["summary"]
            cells = []
            for f in frameworks:
                value = _epoch(s[f]["stats"]) if f in s else None
                cells.append("skipped" if s[f].get("skipped")
                             else "-" if value is None else f"{value:.2f}")
            for m in minis:
                for p in peers:
                    a, b = _epoch(s[m]["stats"]), _epoch(s[p]["stats"])
                    cells.append(f"{a / b:.2f}" if a and b else "-")
            for f in frameworks:
                value = _epoch(s[f]["stats"])
                if value is None:
                    cells.append("-")
                elif table == "images":
                    cells.append(f"{value / row['images'] * 10000:.2f}")
                elif table == "batch":
                    cells.append(f"{1000 * value / row['images']:.3f}")
                else:
                    g, e = s[f]["stats"].get("train_gflops"), s[f]["stats"].get("efficiency_pct")
                    cells.append("-" if g is None else f"{g['median']:.1f}"
                                 + ("" if e is None else f" ({e['median']:.0f} %)"))
            lines.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    """Run the three tables; print them and write the JSON; returns the report."""
    args = parse_args(argv)
    wargs = args.worker_args
    missing = [f for f in wargs.frameworks
               if not bench_mnist.is_minicnn(f) and not bench_mnist.module_available(f,
                                                                                  wargs.python)]
    for f in missing:
        print(f"bench_scaling: {' or '.join(bench_mnist.PEER_MODULES[f])} is not importable; "
              f"skipping {f}")
    wargs.frameworks = [f for f in wargs.frameworks if f not in missing]
    wargs.batch_size = args.batch_sizes[0]
    args.peak = bench_mnist.measure_peak(wargs)
    meta = {"schema": SCHEMA, "created": _common.now_iso(), "machine": _common.machine_info(),
            "peak": args.peak,
            "config": {"epochs": args.epochs, "seeds": wargs.seeds,
                       "frameworks": wargs.frameworks, "batch_sizes": args.batch_sizes,
                       "image_counts": args.image_counts, "quick": args.quick,
                       "native_blas": wargs.native_blas,
                       "forcing_env": {k: os.environ[k] for k in bench_mnist._blas.FORCING_VARS
                                       if k in os.environ}}}
    results = run_settings(args)
    report = {**meta, "results": results}
    print()
    print(markdown_tables(results, wargs.frameworks, meta))
    if not args.no_json:
        _common.write_report(report, args.out_dir, "-scaling" + ("-quick" if args.quick else ""))
    return report


if __name__ == "__main__":
    main()
