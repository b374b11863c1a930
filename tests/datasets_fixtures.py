"""Helpers for the dataset tests: tiny IDX sets, a local HTTP(S) mirror server, child processes.

Everything stays on 127.0.0.1. Imported by tests/test_datasets_*.py (not a conftest, which the
lead owns).
"""

from __future__ import annotations

import ctypes
import functools
import gzip
import hashlib
import http.server
import json
import os
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from minicnn.datasets.download import Dataset, images_file, labels_file

REPO_ROOT = Path(__file__).resolve().parents[1]
NAMES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
         "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "no_proxy",
              "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


# --------------------------------------------------------------------------- IDX data


def idx_bytes(arr: np.ndarray) -> bytes:
    """Serialize a uint8 array as an IDX payload (header + data), written independently of
    the reader under test."""
    assert arr.dtype == np.uint8
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    return header + arr.tobytes()


@dataclass
class TinySet:
    """A small MNIST-like set: arrays, their IDX payloads, gzip files and a Dataset spec."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    payloads: dict  # name -> raw IDX bytes
    gz: dict  # name -> gzip bytes as served
    bad_gz: dict  # name -> gzip of a payload with one byte changed (fails the checksum)

    def spec(self, mirrors=(), subdir="tiny", env="MINICNN_TINY_MIRRORS") -> Dataset:
        sha = {n: hashlib.sha256(p).hexdigest() for n, p in self.payloads.items()}
        n_tr, n_te = len(self.y_train), len(self.y_test)
        r, c = self.x_train.shape[1:]
        files = (images_file(NAMES[0], sha[NAMES[0]], n_tr, r, c),
                 labels_file(NAMES[1], sha[NAMES[1]], n_tr),
                 images_file(NAMES[2], sha[NAMES[2]], n_te, r, c),
                 labels_file(NAMES[3], sha[NAMES[3]], n_te))
        return Dataset("Tiny", subdir, files, tuple(mirrors), env)

    def write_files(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.gz.items():
            (directory / name).write_bytes(data)


def make_tiny_set(n_train=24, n_test=10, rows=28, cols=28, seed=0) -> TinySet:
    rng = np.random.default_rng(seed)
    x_train = rng.integers(0, 256, (n_train, rows, cols), dtype=np.uint8)
    y_train = rng.integers(0, 10, n_train, dtype=np.uint8)
    x_test = rng.integers(0, 256, (n_test, rows, cols), dtype=np.uint8)
    y_test = rng.integers(0, 10, n_test, dtype=np.uint8)
    payloads = dict(zip(NAMES, map(idx_bytes, (x_train, y_train, x_test, y_test)), strict=True))
    # mtime=0 makes the gzip bytes reproducible.
    gz = {n: gzip.compress(p, mtime=0) for n, p in payloads.items()}
    bad = {}
    for n, p in payloads.items():
        q = bytearray(p)
        q[-1] ^= 0xFF  # still a well-formed IDX file, only the checksum differs
        bad[n] = gzip.compress(bytes(q), mtime=0)
    return TinySet(x_train, y_train, x_test, y_test, payloads, gz, bad)


# --------------------------------------------------------------------------- server


class MirrorServer:
    """A threaded HTTP(S) server on 127.0.0.1 that plays several mirrors.

    URL ``/<mirror>/<file>``: ``modes[mirror]`` says how that mirror behaves:
    ``'ok'``, an int status (404, 500...), ``'html'`` (200 + HTML page), ``'html-octet'``
    (HTML body labelled application/octet-stream), ``'truncated'`` (full Content-Length, half
    the body), ``'stall'`` (headers + up to 100 bytes, then silence), ``'silent'`` (no answer
    at all), ``'badsum'`` (valid gzip of wrong data), ``'notgzip'`` (raw payload), ``'slow'``
    (ok after ``delay`` s),
    ``'overflow'`` (valid gzip of an IDX header whose dimensions multiply past 2^64, nothing
    after it), ``'drip'`` (a gzip start, then 2 bytes every ``drip_interval`` s for ever),
    ``('redirect', base_url)`` (302 to base_url + file). ``log`` records (mirror, file, host).
    """

    def __init__(self, files: dict, bad_files: dict | None = None, tls: ssl.SSLContext | None
                 = None, delay: float = 0.4, drip_interval: float = 0.05):
        self.drip_interval = drip_interval
        self.files = files
        self.payloads: dict = {}
        self.bad_files = bad_files or {}
        self.modes: dict = {}
        self.delay = delay
        self.log: list = []
        self.release = threading.Event()
        self.stalling = threading.Event()
        self._lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                outer._handle(self)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
            self.scheme = "https"
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,),
                                       daemon=True)
        self.thread.start()

    def url(self, mirror: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}/{mirror}/"

    def count(self, mirror: str | None = None, name: str | None = None) -> int:
        with self._lock:
            return sum(1 for m, n, _ in self.log
                       if (mirror is None or m == mirror) and (name is None or n == name))

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # The handler runs in the server's threads.
    def _handle(self, h):
        parts = urlsplit(h.path)  # absolute-form when the request came through a "proxy"
        segs = parts.path.strip("/").split("/", 1)
        mirror, name = (segs + [""])[:2]
        with self._lock:
            self.log.append((mirror, name, parts.netloc or h.headers.get("Host", "")))
        mode = self.modes.get(mirror, "ok")
        if name not in self.files:
            return self._send(h, 404, b"no such file", "text/plain")
        body = self.files[name]
        if isinstance(mode, int):
            return self._send(h, mode, f"error {mode}".encode(), "text/plain")
        if isinstance(mode, tuple) and mode[0] == "redirect":
            h.send_response(302)
            h.send_header("Location", mode[1] + name)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        if mode == "ok":
            return self._send(h, 200, body)
        if mode == "slow":
            time.sleep(self.delay)
            return self._send(h, 200, body)
        if mode == "html":
            page = b"<!DOCTYPE html><html><body>Service unavailable</body></html>"
            return self._send(h, 200, page, "text/html; charset=utf-8")
        if mode == "html-octet":
            return self._send(h, 200, b"\n<html><body>Error</body></html>")
        if mode == "badsum":
            return self._send(h, 200, self.bad_files[name])
        if mode == "notgzip":
            return self._send(h, 200, gzip.decompress(body))
        if mode == "truncated":
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
            return None
        if mode == "overflow":
            magic = bytes([0, 0, 8, 3]) if "images" in name else bytes([0, 0, 8, 1])
            dims = (2**22, 2**22, 2**20) if "images" in name else (2**32 - 1,)
            header = magic + b"".join(d.to_bytes(4, "big") for d in dims)
            return self._send(h, 200, gzip.compress(header))
        if mode == "drip":
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            try:
                h.wfile.write(body[:2])
                for i in range(2, len(body), 2):
                    if self.release.wait(self.drip_interval):
                        break
                    h.wfile.write(body[i:i + 2])
                    h.wfile.flush()
            except OSError:
                pass  # the client gave up, as it should
            h.close_connection = True
            return None
        if mode == "silent":
            self.release.wait(60)  # read the request, never answer
            h.close_connection = True
            return None
        if mode == "stall":
            h.send_response(200)
            h.send_header("Content-Type", "application/octet-stream")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: min(100, len(body) // 2)])
            h.wfile.flush()
            self.stalling.set()
            self.release.wait(60)
            h.close_connection = True
            return None
        raise AssertionError(f"unknown mode {mode!r}")

    @staticmethod
    def _send(h, code, body, ctype="application/octet-stream"):
        h.send_response(code)
        h.send_header("Content-Type", ctype)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        h.wfile.write(body)


def make_tls(tmp: Path) -> tuple[ssl.SSLContext, Path]:
    """A self-signed certificate for 127.0.0.1 (via the openssl CLI) and a server context."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is needed to make a test certificate")
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return ctx, cert


# --------------------------------------------------------------------------- child processes

CHILD = r"""
import hashlib, json, logging, os, sys, time
from pathlib import Path
from minicnn.datasets.download import Dataset, DatasetFile, load_dataset

a = json.loads(sys.argv[1])
files = tuple(DatasetFile(**f) for f in a["files"])
spec = Dataset(a["name"], a["subdir"], files, tuple(a["mirrors"]), a["env"])
messages = []

class Rec(logging.Handler):
    def emit(self, record):
        messages.append(record.getMessage())

log = logging.getLogger("minicnn.datasets")
log.addHandler(Rec())
log.setLevel(logging.INFO)
if a.get("ready"):
    Path(a["ready"]).touch()
    t0 = time.monotonic()
    while not Path(a["go"]).exists():
        if time.monotonic() - t0 > 30:
            sys.exit("no go signal")
        time.sleep(0.005)
out = {"messages": messages}
try:
    (x, y), (xt, yt) = load_dataset(spec, data_dir=a["data_dir"], verbose=0, **a["kwargs"])
    out["digest"] = hashlib.sha256(b"".join(v.tobytes() for v in (x, y, xt, yt))).hexdigest()
except Exception as e:
    out["error"] = type(e).__name__
    out["message"] = str(e)
    out["mro"] = [c.__name__ for c in type(e).__mro__]
print(json.dumps(out))
"""


def spec_args(spec: Dataset, data_dir: Path, **extra) -> dict:
    return {
        "name": spec.name, "subdir": spec.subdir, "env": spec.mirrors_env,
        "mirrors": list(spec.mirrors), "data_dir": str(data_dir), "kwargs": {},
        "files": [dict(name=f.name, sha256=f.sha256, size=f.size, kind=f.kind)
                  for f in spec.files],
        **extra,
    }


@functools.lru_cache(maxsize=1)
def permissions_apply_to_children() -> bool:
    """Whether a child started with ``unprivileged=True`` is refused writing a 0o555 folder
    (as root this needs dropping CAP_DAC_OVERRIDE, which a container may not allow)."""
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o555)
        try:
            pre = _drop_dac_override if os.geteuid() == 0 else None
            r = subprocess.run([sys.executable, "-c", f"open({os.path.join(d, 'x')!r}, 'w')"],
                               capture_output=True, preexec_fn=pre)
        except (OSError, subprocess.SubprocessError):
            return False
        finally:
            os.chmod(d, 0o755)
        return r.returncode != 0 and b"PermissionError" in r.stderr


def _drop_dac_override():  # runs in the child between fork and exec
    # Root ignores permission bits through CAP_DAC_OVERRIDE; dropping it from the bounding
    # set before exec gives the child the permissions an ordinary user would have.
    libc = ctypes.CDLL(None, use_errno=True)
    PR_CAPBSET_DROP, CAP_DAC_OVERRIDE = 24, 1
    if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def start_child(args: dict, unprivileged: bool = False) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k not in PROXY_VARS}
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    pre = _drop_dac_override if unprivileged and os.geteuid() == 0 else None
    return subprocess.Popen([sys.executable, "-c", CHILD, json.dumps(args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=pre)


def finish_child(p: subprocess.Popen, timeout: float = 30) -> dict:
    out, err = p.communicate(timeout=timeout)
    assert p.returncode == 0, f"child failed ({p.returncode}):\n{err}"
    return json.loads(out.strip().splitlines()[-1])


def run_child(args: dict, unprivileged: bool = False, timeout: float = 30) -> dict:
    return finish_child(start_child(args, unprivileged), timeout)


def digest_of(*arrays: np.ndarray) -> str:
    return hashlib.sha256(b"".join(a.tobytes() for a in arrays)).hexdigest()
