"""Which BLAS NumPy runs here, which kernel it picked, and the machine's measured peak.

- ``blas_info()``: NumPy's BLAS library, version and the CPU kernel it chose ("Haswell",
  "SkylakeX", "Zen", ...) from threadpoolctl's ``architecture`` when threadpoolctl is
  installed, else from OpenBLAS's own ``openblas_get_corename`` (through ctypes on the
  library NumPy loaded); plus the OPENBLAS_* variables that force a kernel, as this process
  saw them.
- ``measure_peak()``: the rate of a large float32 matrix product with NumPy at 1 and 2 BLAS
  threads (best of a few calls): the practical ceiling for every figure in the benchmarks.
  The FMA rate is half the FLOP rate (a fused multiply-add counts 2 FLOPs).

Run as a script it prints ``PEAK_RESULT {json}`` (both of the above): bench_mnist.py runs it in
a fresh process with the workers' environment, so the peak is measured with the kernel the
workers get (``--native-blas`` changes it).

    python benchmarks/_blas.py --size 2048 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import glob
import json
import os
import time

RESULT_PREFIX = "PEAK_RESULT "
# Variables with which OpenBLAS is told to use a given kernel / cache size instead of the one
# it detects (set on some machines to dodge old OpenBLAS bugs; they slow a current NumPy).
FORCING_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _numpy_openblas():
    """ctypes handle of the OpenBLAS library NumPy's wheel loaded, or None."""
    import numpy as np

    libs_dir = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs_dir, "*openblas*.so*"))):
        try:
            return ctypes.CDLL(path)  # already loaded by NumPy: the same instance
        except OSError:
            continue
    return None


def _openblas_call(lib, stem, restype):
    for name in (f"scipy_openblas_{stem}64_", f"openblas_{stem}64_", f"openblas_{stem}"):
        func = getattr(lib, name, None)
        if func is not None:
            func.restype = restype
            func.argtypes = []
            return func()
    return None


def blas_info():
    """{'library', 'version', 'kernel', 'threads', 'source', 'env'} for NumPy's BLAS.

    kernel: the core type OpenBLAS runs (None for another BLAS that does not say);
    source: 'threadpoolctl' or 'openblas_get_corename'; env: the OPENBLAS_CORETYPE /
    OPENBLAS_L2_SIZE values this process has (empty when none is set)."""
    import numpy as np  # noqa: F401  (loads the BLAS threadpoolctl then finds)

    info = {"library": None, "version": None, "kernel": None, "threads": None,
            "source": None, "env": {k: os.environ[k] for k in FORCING_VARS if k in os.environ}}
    try:
        import threadpoolctl
    except ImportError:
        threadpoolctl = None
    if threadpoolctl is not None:
        pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
        mine = [p for p in pools if "numpy" in (p.get("filepath") or "")] or pools
        if mine:
            pool = mine[0]
            info.update(library=f"{pool.get('internal_api')} ({pool.get('prefix')})",
                        version=pool.get("version"), kernel=pool.get("architecture"),
                        threads=pool.get("num_threads"), source="threadpoolctl")
            return info
    lib = _numpy_openblas()
    if lib is not None:
        corename = _openblas_call(lib, "get_corename", ctypes.c_char_p)
        config = _openblas_call(lib, "get_config", ctypes.c_char_p)
        threads = _openblas_call(lib, "get_num_threads", ctypes.c_int)
        info.update(library="openblas", kernel=corename.decode() if corename else None,
                    version=config.decode().split()[1] if config else None, threads=threads,
                    source="openblas_get_corename")
    return info


@contextlib.contextmanager
def _blas_threads(n):
    """NumPy's BLAS on n threads inside (threadpoolctl, else minicnn.ops.threads)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None
    if threadpool_limits is not None:
        with threadpool_limits(limits=n, user_api="blas"):
            yield
        return
    from minicnn.ops.threads import blas_threads

    with blas_threads(n):
        yield


def measure_peak(size=2048, repeats=5, threads=(1, 2)):
    """{'size', 'repeats', 'gflops': {threads: GFLOP/s}, 'gfma': {threads: G FMA/s}} from the
    fastest of `repeats` float32 products (size x size) @ (size x size), after one untimed."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), dtype=np.float32)
    flops = 2.0 * size ** 3
    result = {"size": size, "repeats": repeats, "dtype": "float32", "gflops": {}, "gfma": {}}
    for n in threads:
        with _blas_threads(n):
            np.matmul(a, b, out=c)
            best = float("inf")
            for _ in range(repeats):
                t = time.perf_counter()
                np.matmul(a, b, out=c)
                best = min(best, time.perf_counter() - t)
        result["gflops"][str(n)] = round(flops / best / 1e9, 1)
        result["gfma"][str(n)] = round(flops / 2 / best / 1e9, 1)
    return result


def main(argv=None):
    """Print ``PEAK_RESULT {"blas": blas_info(), "peak": measure_peak(...)}``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", default="1,2", help="comma-separated BLAS thread counts")
    args = p.parse_args(argv)
    threads = tuple(int(t) for t in args.threads.split(",") if t.strip())
    out = {"blas": blas_info(), "peak": measure_peak(args.size, args.repeats, threads)}
    print(RESULT_PREFIX + json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
