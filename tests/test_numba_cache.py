"""``@njit(cache=True)`` must not break a read-only install of minicnn.

Each test copies the ``minicnn`` package into a temporary directory, makes it read-only and, in a
fresh subprocess that imports only that copy, runs ``minicnn.ops.conv2d_forward`` (fast backend):

- Numba cannot write ``__pycache__`` next to the sources, so it must fall back to the user-wide
  cache (``$XDG_CACHE_HOME/numba``) or to ``$NUMBA_CACHE_DIR``; a second process must then load
  the compiled kernel from there instead of compiling again;
- with no writable cache location at all, Numba refuses ``cache=True``; minicnn must still import
  (with a warning) and compute, just without a disk cache.

Root ignores file permissions, so when the tests run as root the subprocess drops the
capabilities that bypass them (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER); each subprocess
also proves that it cannot write into the package before reporting anything.
"""

import ctypes
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import minicnn

PACKAGE_DIR = Path(minicnn.__file__).resolve().parent

CHILD = r"""
import json, os, sys, warnings
import numpy as np

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import minicnn.ops as ops
    from minicnn.ops import kernels, reference

pkg = os.path.dirname(os.path.abspath(ops.__file__))
try:  # the package really is read-only for this process
    open(os.path.join(pkg, "probe.tmp"), "w").close()
    writable = True
except OSError:
    writable = False

x = np.linspace(-1, 1, 2 * 6 * 5 * 3, dtype=np.float32).reshape(2, 6, 5, 3)
k = np.linspace(1, -1, 3 * 3 * 3 * 4, dtype=np.float32).reshape(3, 3, 3, 4)
b = np.array([0.5, -0.5, 1.0, 0.0], dtype=np.float32)
y, _ = ops.conv2d_forward(x, k, (1, 1), (1, 1, 1, 1))
y += b
y_ref = reference.conv2d_naive(x, k, b, (1, 1), (1, 1, 1, 1))
stats = kernels._im2col.stats
print(json.dumps({
    "package": pkg,
    "writable": writable,
    "correct": bool(y.dtype == np.float32 and np.allclose(y, y_ref, rtol=1e-5, atol=1e-5)),
    "cache_hits": sum(stats.cache_hits.values()),
    "cache_misses": sum(stats.cache_misses.values()),
    "cache_path": stats.cache_path,
    "warnings": [str(w.message) for w in caught],
}))
"""

_PR_CAPBSET_DROP = 24
_CAPS_THAT_IGNORE_PERMISSIONS = (1, 2, 3)  # DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER


def _drop_permission_bypass():
    """preexec_fn for root: the exec'd child loses the capabilities that ignore file modes."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in _CAPS_THAT_IGNORE_PERMISSIONS:
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), f"prctl(PR_CAPBSET_DROP, {cap}) failed")


def _make_read_only(root):
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


@pytest.fixture
def sandbox():
    """A temp dir holding a read-only copy of the package under site/, removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="minicnn-ro-"))
    site = root / "site"
    shutil.copytree(
        PACKAGE_DIR, site / "minicnn", ignore=shutil.ignore_patterns("__pycache__", "*.nb?")
    )
    # Plain Numba, no minicnn: shows what Numba itself does with a read-only source file.
    (site / "plain_numba_probe.py").write_text(
        "import numba\n\n@numba.njit(cache=True)\ndef add_one(v):\n    return v + 1\n"
    )
    _make_read_only(site)
    for name in ("home", "xdg", "numba-cache"):
        (root / name).mkdir()
    yield root
    for path in [root, *root.rglob("*")]:
        if path.is_dir():  # writable again so rmtree can delete the contents
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
    shutil.rmtree(root)


def run_python(sandbox, code, **env_overrides):
    """Run `code` in a fresh interpreter that sees only the sandbox copy of minicnn."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    env.update(
        PYTHONPATH=str(sandbox / "site"),
        HOME=str(sandbox / "home"),
        XDG_CACHE_HOME=str(sandbox / "xdg"),
        PYTHONDONTWRITEBYTECODE="1",
    )
    env.update(env_overrides)
    as_root = hasattr(os, "geteuid") and os.geteuid() == 0
    return subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=sandbox,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=_drop_permission_bypass if as_root else None,
    )


def run_child(sandbox, **env_overrides):
    """Run CHILD and check what every scenario must satisfy; return its JSON report."""
    result = run_python(sandbox, CHILD, **env_overrides)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    # The child imported the read-only copy, could not write into it, and computed correctly.
    assert Path(report["package"]) == sandbox / "site" / "minicnn" / "ops"
    assert report["writable"] is False
    assert report["correct"] is True
    return report


def nb_files(directory):
    return sorted(p.name for p in Path(directory).rglob("*") if p.suffix in (".nbi", ".nbc"))


def test_read_only_package_caches_in_user_cache_dir(sandbox):
    cold = run_child(sandbox)
    assert cold["cache_misses"] >= 1 and cold["cache_hits"] == 0
    assert Path(cold["cache_path"]).is_relative_to(sandbox / "xdg" / "numba")
    assert any(name.startswith("kernels._im2col") for name in nb_files(sandbox / "xdg"))
    assert nb_files(sandbox / "site") == []
    assert cold["warnings"] == []

    warm = run_child(sandbox)
    assert warm["cache_hits"] >= 1 and warm["cache_misses"] == 0


def test_read_only_package_honours_numba_cache_dir(sandbox):
    cache_dir = sandbox / "numba-cache"
    cold = run_child(sandbox, NUMBA_CACHE_DIR=str(cache_dir))
    assert Path(cold["cache_path"]).is_relative_to(cache_dir)
    assert any(name.startswith("kernels._im2col") for name in nb_files(cache_dir))
    assert nb_files(sandbox / "xdg") == []

    warm = run_child(sandbox, NUMBA_CACHE_DIR=str(cache_dir))
    assert warm["cache_hits"] >= 1 and warm["cache_misses"] == 0


def test_no_writable_cache_dir_still_imports_and_computes(sandbox):
    """Plain Numba refuses cache=True here (the reason for kernels._jit); minicnn falls back."""
    for name in ("home", "xdg"):
        (sandbox / name).chmod(0o555)
    plain = run_python(sandbox, "import plain_numba_probe")
    assert plain.returncode != 0
    assert "RuntimeError: cannot cache function 'add_one'" in plain.stderr

    report = run_child(sandbox)
    assert report["cache_hits"] == 0
    assert len(report["warnings"]) == 1
    assert "no writable cache directory" in report["warnings"][0]
    assert "NUMBA_CACHE_DIR" in report["warnings"][0]
    assert nb_files(sandbox) == []
