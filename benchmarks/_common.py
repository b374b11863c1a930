"""Helpers shared by the benchmark scripts: machine description, atomic writes, result paths.

Standard library only, so importing it costs nothing measurable in a timed worker.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo ('unknown' where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown"
    match = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    return match.group(1).strip() if match else "unknown"


def cpu_flags() -> list[str]:
    """The SIMD flags that matter for these kernels (avx2, fma, avx512f, ...) the CPU reports."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    match = re.search(r"^flags\s*:\s*(.+)$", text, re.MULTILINE)
    flags = set(match.group(1).split()) if match else set()
    wanted = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
              "amx_tile")
    return [flag for flag in wanted if flag in flags]


def memory_gib() -> float | None:
    """Total memory in GiB from /proc/meminfo, or None."""
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    match = re.search(r"^MemTotal:\s*(\d+)\s*kB", text, re.MULTILINE)
    return round(int(match.group(1)) / 2**20, 1) if match else None


def git_revision() -> str | None:
    """`git describe --always --dirty` of the repository holding the benchmarks, or None."""
    try:
        out = subprocess.run(["git", "-C", str(REPO_ROOT), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict:
    """A JSON-ready description of this machine: host, CPU, cores, memory, OS, Python."""
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "minicnn_git": git_revision(),
    }


def loadavg() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (None where the OS has none)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) CPU seconds summed over all cores since boot, from /proc/stat (None where
    there is none). Busy is everything but idle and iowait; steal (another VM) counts as busy."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
    except OSError:
        return None
    if not fields or fields[0] != "cpu":
        return None
    ticks = [int(v) for v in fields[1:9]]  # user nice system idle iowait irq softirq steal
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = sum(ticks) / hz
    return total - (ticks[3] + ticks[4]) / hz, total


def cpu_busy_fraction(interval: float = 1.0) -> float | None:
    """Share of all cores busy over the next `interval` seconds (0..1), or None."""
    first = cpu_times()
    time.sleep(interval)
    second = cpu_times()
    if first is None or second is None or second[1] <= first[1]:
        return None
    return (second[0] - first[0]) / (second[1] - first[1])


def wait_for_idle(max_busy: float, max_wait: float, log=print) -> dict:
    """Wait until at most `max_busy` of the cores are busy (sampled over 2 s), or `max_wait`
    seconds have passed. Returns {'busy': last sample, 'waited_s': seconds, 'gave_up': bool}."""
    started = time.time()
    busy = cpu_busy_fraction(2.0)
    told = False
    while busy is not None and busy > max_busy and time.time() - started < max_wait:
        if not told:
            log(f"  waiting for the machine to calm down ({100 * busy:.0f} % of the cores busy, "
                f"want <= {100 * max_busy:.0f} %, at most {max_wait:.0f} s) ...")
            told = True
        time.sleep(3.0)
        busy = cpu_busy_fraction(2.0)
    return {"busy": busy, "waited_s": round(time.time() - started, 1),
            "gave_up": busy is not None and busy > max_busy}


def today() -> str:
    """Local date as YYYY-MM-DD (the first part of result file names)."""
    return _dt.date.today().isoformat()


def now_iso() -> str:
    """Local time, ISO 8601 with offset, to the second."""
    return _dt.datetime.now().astimezone().isoformat(timespec="seconds")


def result_path(directory: str | os.PathLike, stem_suffix: str = "", ext: str = "json",
                date: str | None = None, host: str | None = None) -> Path:
    """<directory>/<date>-<host><stem_suffix>.<ext>; host characters outside [A-Za-z0-9._-]
    become '_' so any hostname gives a valid file name."""
    host = re.sub(r"[^A-Za-z0-9._-]", "_", host or socket.gethostname())
    return Path(directory) / f"{date or today()}-{host}{stem_suffix}.{ext}"


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` to a temporary file in the same directory, then rename it onto `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_report(report: dict, out_dir: str | os.PathLike, suffix: str) -> Path:
    """Write `report` (with 'created' and 'machine': {'host'}) atomically to
    <out_dir>/<date>-<host><suffix>.json, print and return the path."""
    path = atomic_write_json(result_path(out_dir, suffix, "json", report["created"][:10],
                                         report["machine"]["host"]), report)
    print(f"\nwrote {path}")
    return path


def atomic_write_json(path: str | os.PathLike, data) -> Path:
    """json.dumps(data, indent=1) written atomically (see atomic_write_text)."""
    return atomic_write_text(path, json.dumps(data, indent=1, sort_keys=False) + "\n")


def save_figure(fig, path: str | os.PathLike) -> Path:
    """fig.savefig as PNG through a temporary name in the same directory, then os.replace."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def median(values):
    """Median of a non-empty sequence of numbers (mean of the middle two for even lengths)."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("median: got an empty sequence; need at least one value.")
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2
