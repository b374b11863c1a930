"""Offline tests of the download machinery against a local mirror server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import fcntl
import gzip
import io
import os
import re
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import requests

from minicnn import datasets
from minicnn.datasets import download as dl
from minicnn.datasets import fashion_mnist, mnist

try:
    import datasets_fixtures as fx
except ImportError:  # tests/ is a package
    from tests import datasets_fixtures as fx

FAST = dict(connect_timeout=5.0, read_timeout=5.0, attempts=2, backoff=0.01)
# For the stalled-server cases only: long enough for a loaded machine to answer on loopback.
STALL = dict(FAST, read_timeout=0.4)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    # The developer's or CI's proxy settings must not route 127.0.0.1 elsewhere, and the
    # default data directory must never be touched by a test.
    for v in fx.PROXY_VARS:
        monkeypatch.delenv(v, raising=False)
    for v in ("MINICNN_DATA_DIR", "MINICNN_TINY_MIRRORS", "MINICNN_MNIST_MIRRORS",
              "MINICNN_FASHION_MNIST_MIRRORS"):
        monkeypatch.delenv(v, raising=False)


@pytest.fixture(scope="module")
def tiny():
    return fx.make_tiny_set()


@pytest.fixture
def server(tiny):
    with fx.MirrorServer(tiny.gz, tiny.bad_gz) as s:
        yield s


def assert_tiny(result, tiny):
    (x, y), (xt, yt) = result
    np.testing.assert_array_equal(x, tiny.x_train)
    np.testing.assert_array_equal(y, tiny.y_train)
    np.testing.assert_array_equal(xt, tiny.x_test)
    np.testing.assert_array_equal(yt, tiny.y_test)
    for a in (x, y, xt, yt):
        assert a.dtype == np.uint8


def listing(d: Path):
    return sorted(p.name for p in d.iterdir()) if d.exists() else []


def data_files(d: Path):
    """Everything in the dataset folder except the lock file."""
    return [n for n in listing(d) if n != ".lock"]


# --------------------------------------------------------------------------- happy paths


def test_download_then_cache_hit_makes_no_requests(tiny, server, tmp_path):
    spec = tiny.spec([server.url("a")])
    assert_tiny(dl.load_dataset(spec, data_dir=tmp_path, verbose=0, **FAST), tiny)
    assert server.count() == 4
    assert all(server.count("a", n) == 1 for n in fx.NAMES)
    folder = tmp_path / "tiny"
    assert data_files(folder) == sorted(fx.NAMES)  # no temporary files left
    for n in fx.NAMES:
        assert gzip.decompress((folder / n).read_bytes()) == tiny.payloads[n]

    result = dl.load_dataset(spec, data_dir=tmp_path, verbose=0, **FAST)
    assert_tiny(result, tiny)
    assert server.count() == 4  # warm cache: zero requests
    # Arrays are writable, like Keras's.
    result[0][0][0, 0, 0] = 7


def test_recompressed_copy_verifies(tiny, server, tmp_path):
    # The checksum is of the payload: a mirror with different gzip bytes is fine.
    server.files = {n: gzip.compress(p, compresslevel=1, mtime=12345)
                    for n, p in tiny.payloads.items()}
    assert server.files[fx.NAMES[0]] != tiny.gz[fx.NAMES[0]]
    assert_tiny(dl.load_dataset(tiny.spec([server.url("a")]), data_dir=tmp_path, verbose=0,
                                **FAST), tiny)


def test_corrupt_cached_file_is_downloaded_again(tiny, server, tmp_path):
    folder = tmp_path / "tiny"
    tiny.write_files(folder)
    (folder / fx.NAMES[2]).write_bytes(tiny.bad_gz[fx.NAMES[2]])
    assert_tiny(dl.load_dataset(tiny.spec([server.url("a")]), data_dir=tmp_path, verbose=0,
                                **FAST), tiny)
    assert server.count() == 1 and server.count("a", fx.NAMES[2]) == 1
    assert (folder / fx.NAMES[2]).read_bytes() == tiny.gz[fx.NAMES[2]]


def test_cached_file_with_overflowing_header_is_downloaded_again(tiny, server, tmp_path):
    # Its dimensions multiply to 2^64: NumPy's int64 product was 0, so the 16-byte file passed
    # the length check and reshape raised a ValueError that stopped load_data for good.
    folder = tmp_path / "tiny"
    tiny.write_files(folder)
    header = bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (2**22, 2**22, 2**20))
    (folder / fx.NAMES[2]).write_bytes(gzip.compress(header))
    assert_tiny(dl.load_dataset(tiny.spec([server.url("a")]), data_dir=tmp_path, verbose=0,
                                **FAST), tiny)
    assert server.count() == 1 and server.count("a", fx.NAMES[2]) == 1


def test_raw_idx_placed_by_hand_is_accepted(tiny, server, tmp_path):
    # Someone who gunzipped the files by hand under the same names still gets a cache hit.
    folder = tmp_path / "tiny"
    folder.mkdir()
    for n, p in tiny.payloads.items():
        (folder / n).write_bytes(p)
    assert_tiny(dl.load_dataset(tiny.spec([server.url("a")]), data_dir=tmp_path, verbose=0),
                tiny)
    assert server.count() == 0


# --------------------------------------------------------------------------- bad mirrors

# mode -> (words expected in the reason, whether the failure is retried on the same URL)
BAD_MODES = {
    404: ("HTTP 404",), 500: ("HTTP 500",), "html": ("HTML page",),
    "html-octet": ("HTML page",), "truncated": ("truncated",), "stall": ("stalled",),
    "badsum": ("SHA-256", "expected"), "notgzip": ("not gzip",),
    "silent": ("no response within",),
    # A header whose dimensions overflow int64 used to pass the length check and end in a
    # NumPy reshape error that stopped the download before the next mirror was tried.
    "overflow": ("failed verification", "header says"),
}
RETRIED = {500, "truncated", "stall", "silent"}


@pytest.mark.parametrize("mode", list(BAD_MODES), ids=str)
def test_bad_first_mirror_falls_back_to_good_one(tiny, server, tmp_path, mode):
    server.modes["bad"] = mode
    spec = tiny.spec([server.url("bad"), server.url("good")])
    opts = STALL if mode in ("stall", "silent") else FAST
    assert_tiny(dl.load_dataset(spec, data_dir=tmp_path, verbose=0, **opts), tiny)
    tries = 2 if mode in RETRIED else 1
    for n in fx.NAMES:
        assert server.count("bad", n) == tries
        assert server.count("good", n) == 1
    folder = tmp_path / "tiny"
    assert data_files(folder) == sorted(fx.NAMES)
    for n in fx.NAMES:
        assert gzip.decompress((folder / n).read_bytes()) == tiny.payloads[n]


@pytest.mark.parametrize("mode", list(BAD_MODES), ids=str)
def test_all_mirrors_bad_raises_one_clear_error(tiny, server, tmp_path, mode):
    server.modes["bad1"] = mode
    server.modes["bad2"] = mode
    spec = tiny.spec([server.url("bad1"), server.url("bad2")])
    opts = STALL if mode in ("stall", "silent") else FAST
    with pytest.raises(datasets.DatasetDownloadError) as ei:
        dl.load_dataset(spec, data_dir=tmp_path, verbose=0, **opts)
    err = ei.value
    assert isinstance(err, OSError)
    msg = str(err)
    first = fx.NAMES[0]
    for m in ("bad1", "bad2"):
        assert server.url(m) + first in msg
    for word in BAD_MODES[mode]:
        assert msg.count(word) >= 2, msg
    assert ".part" not in msg  # temporary names mean nothing to the user
    tries = 2 if mode in RETRIED else 1
    assert [u for u, _ in err.attempts] == ([server.url("bad1") + first] * tries
                                            + [server.url("bad2") + first] * tries)
    # Where to put the files by hand, exactly.
    folder = tmp_path / "tiny"
    assert f"{folder}{os.sep}\n" in msg
    for n in fx.NAMES:
        assert n in msg
    assert "MINICNN_DATA_DIR" in msg and "MINICNN_TINY_MIRRORS" in msg
    assert err.directory == folder
    assert data_files(folder) == []  # nothing left that a later call could take for data


def test_refused_connection_is_retried_then_next_mirror(tiny, server, tmp_path):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{sock.getsockname()[1]}/m/"
    sock.close()  # nothing listens there now
    spec = tiny.spec([closed, server.url("good")])
    assert_tiny(dl.load_dataset(spec, data_dir=tmp_path, verbose=0, **FAST), tiny)
    with pytest.raises(datasets.DatasetDownloadError) as ei:
        dl.load_dataset(tiny.spec([closed]), data_dir=tmp_path / "2", verbose=0, **FAST)
    assert [u for u, _ in ei.value.attempts] == [closed + fx.NAMES[0]] * 2
    assert str(ei.value).count("connection failed") == 2
    assert "Connection refused" in str(ei.value)  # the root cause, not a wrapper's repr


def test_http_redirect_to_other_mirror_is_followed(tiny, server, tmp_path):
    server.modes["old"] = ("redirect", server.url("new"))
    assert_tiny(dl.load_dataset(tiny.spec([server.url("old")]), data_dir=tmp_path, verbose=0,
                                **FAST), tiny)
    assert server.count("old") == 4 and server.count("new") == 4


# --------------------------------------------------------------------------- TLS and proxies


def test_redirect_policy_never_downgrades_https():
    ok = dl.redirect_allowed
    assert ok("https://a/x.gz", "https://b/y.gz")
    assert ok("http://a/x.gz", "https://b/y.gz")
    assert ok("http://a/x.gz", "http://b/y.gz")
    assert not ok("https://a/x.gz", "http://a/x.gz")
    assert not ok("HTTPS://a/x.gz", "HTTP://a/x.gz")
    assert not ok("https://a/x.gz", "ftp://a/x.gz")
    assert not ok("http://a/x.gz", "file:///etc/passwd")


def _redirect_response(url, location, status=302):
    r = requests.Response()
    r.status_code, r.url = status, url
    r.headers["Location"] = location
    r.raw = io.BytesIO(b"")
    return r


def test_redirect_hook_refuses_downgrade_and_passes_the_rest():
    with pytest.raises(dl._InsecureRedirect, match="refused redirect"):
        dl._refuse_insecure_redirect(_redirect_response("https://a/m/f.gz", "http://a/m/f.gz"))
    # Relative Location keeps the scheme; an upgrade is fine.
    for url, loc in [("https://a/m/f.gz", "/other/f.gz"), ("http://a/f", "https://b/f")]:
        r = _redirect_response(url, loc)
        assert dl._refuse_insecure_redirect(r) is r
    # The hook is installed on the session the downloader uses.
    s = dl._make_session()
    assert dl._refuse_insecure_redirect in s.hooks["response"]
    assert s.trust_env is True and s.verify is True


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    return fx.make_tls(tmp_path_factory.mktemp("tls"))


def test_tls_verification_is_on_and_env_ca_bundle_is_honoured(tiny, tls, tmp_path,
                                                              monkeypatch):
    ctx, cert = tls
    with fx.MirrorServer(tiny.gz, tls=ctx) as https_server:
        spec = tiny.spec([https_server.url("a")])
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        with pytest.raises(datasets.DatasetDownloadError,
                           match="TLS error: .*CERTIFICATE_VERIFY_FAILED"):
            dl.load_dataset(spec, data_dir=tmp_path / "untrusted", verbose=0, **FAST)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        assert_tiny(dl.load_dataset(spec, data_dir=tmp_path / "trusted", verbose=0, **FAST),
                    tiny)
        assert https_server.count("a") == 4


def test_https_to_http_redirect_is_refused_end_to_end(tiny, tls, server, tmp_path,
                                                      monkeypatch):
    ctx, cert = tls
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
    with fx.MirrorServer(tiny.gz, tls=ctx) as https_server:
        https_server.modes["a"] = ("redirect", server.url("plain"))
        spec = tiny.spec([https_server.url("a")])
        with pytest.raises(datasets.DatasetDownloadError, match="refused redirect") as ei:
            dl.load_dataset(spec, data_dir=tmp_path, verbose=0, **FAST)
    assert "http://127.0.0.1" in str(ei.value)
    assert server.count("plain") == 0  # the http URL was never fetched


def test_proxy_from_environment_is_used(tiny, server, tmp_path, monkeypatch):
    # The server plays an HTTP proxy: requests sends it absolute-form URLs for a host that
    # does not resolve, so a success proves the proxy setting was honoured.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    spec = tiny.spec(["http://mirror.minicnn-test.invalid/p/"])
    assert_tiny(dl.load_dataset(spec, data_dir=tmp_path, verbose=0, **FAST), tiny)
    assert server.count("p") == 4
    assert {host for _, _, host in server.log} == {"mirror.minicnn-test.invalid"}


# --------------------------------------------------------------------------- mirror lists


def test_mirror_list_precedence_and_validation(tiny, monkeypatch):
    spec = tiny.spec(["https://default.example/a/"])
    assert dl.resolve_mirrors(spec) == ["https://default.example/a/"]
    monkeypatch.setenv("MINICNN_TINY_MIRRORS", " https://e1.example/x , http://e2.example/y/ ,")
    assert dl.resolve_mirrors(spec) == ["https://e1.example/x/", "http://e2.example/y/"]
    assert dl.resolve_mirrors(spec, ["https://arg.example"]) == ["https://arg.example/"]
    assert dl.resolve_mirrors(spec, "https://a.example,https://b.example") == [
        "https://a.example/", "https://b.example/"]
    with pytest.raises(ValueError, match="not an http"):
        dl.resolve_mirrors(spec, ["ftp://x.example/"])
    with pytest.raises(ValueError, match="no mirror"):
        dl.resolve_mirrors(spec, [])
    with pytest.raises(TypeError, match="mirrors"):
        dl.resolve_mirrors(spec, 42)
    monkeypatch.setenv("MINICNN_TINY_MIRRORS", "not a url")
    with pytest.raises(ValueError, match=r"\$MINICNN_TINY_MIRRORS"):
        dl.resolve_mirrors(spec)


def test_default_mirrors_and_env_names():
    assert mnist.MNIST.mirrors == ("https://storage.googleapis.com/cvdf-datasets/mnist/",
                                   "https://ossci-datasets.s3.amazonaws.com/mnist/")
    assert mnist.MNIST.mirrors_env == "MINICNN_MNIST_MIRRORS"
    assert mnist.MNIST.subdir == "mnist"
    assert fashion_mnist.FASHION_MNIST.mirrors == (
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/")
    assert fashion_mnist.FASHION_MNIST.mirrors_env == "MINICNN_FASHION_MNIST_MIRRORS"
    assert fashion_mnist.FASHION_MNIST.subdir == "fashion-mnist"
    for spec in (mnist.MNIST, fashion_mnist.FASHION_MNIST):
        assert [f.name for f in spec.files] == list(fx.NAMES)
        assert [f.size for f in spec.files] == [16 + 60000 * 784, 8 + 60000,
                                                16 + 10000 * 784, 8 + 10000]


@pytest.mark.parametrize("module, env", [(mnist, "MINICNN_MNIST_MIRRORS"),
                                         (fashion_mnist, "MINICNN_FASHION_MNIST_MIRRORS")])
def test_load_data_wrappers_use_env_mirrors(tiny, server, tmp_path, monkeypatch, module, env):
    # Same machinery, tiny files: swap the module's spec for one with the tiny checksums.
    name = "MNIST" if module is mnist else "FASHION_MNIST"
    real = getattr(module, name)
    monkeypatch.setattr(module, name, dataclasses.replace(real, files=tiny.spec().files))
    monkeypatch.setenv(env, server.url("env"))
    monkeypatch.setenv("MINICNN_DATA_DIR", str(tmp_path))
    assert_tiny(module.load_data(verbose=0), tiny)
    assert server.count("env") == 4
    assert data_files(tmp_path / real.subdir) == sorted(fx.NAMES)
    # mirrors= replaces the environment's list.
    assert_tiny(module.load_data(data_dir=tmp_path / "2", mirrors=[server.url("arg")],
                                 verbose=0), tiny)
    assert server.count("arg") == 4


def test_get_data_dir_precedence(tmp_path, monkeypatch):
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.get_data_dir() == tmp_path / "home" / ".cache" / "minicnn"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert datasets.get_data_dir() == tmp_path / "home" / ".cache" / "minicnn"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.get_data_dir() == tmp_path / "xdg" / "minicnn"
    monkeypatch.setenv("MINICNN_DATA_DIR", str(tmp_path / "env"))
    assert datasets.get_data_dir() == tmp_path / "env"
    assert datasets.get_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert datasets.get_data_dir("~/d") == tmp_path / "home" / "d"
    monkeypatch.chdir(tmp_path)
    assert datasets.get_data_dir("rel") == tmp_path / "rel"
    with pytest.raises(TypeError, match="data_dir"):
        datasets.get_data_dir(3)
    assert not (tmp_path / "env").exists()  # only resolved, never created


# --------------------------------------------------------------------------- progress


def test_progress_bar_only_on_a_terminal_and_when_verbose(tiny, server, tmp_path, capsys,
                                                          monkeypatch):
    spec = tiny.spec([server.url("a")])
    dl.load_dataset(spec, data_dir=tmp_path / "1", verbose=1, **FAST)  # stderr is no tty
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(dl, "_stderr_is_tty", lambda: True)
    dl.load_dataset(spec, data_dir=tmp_path / "2", verbose=0, **FAST)
    assert capsys.readouterr().err == ""
    dl.load_dataset(spec, data_dir=tmp_path / "3", verbose=1, **FAST)
    err = capsys.readouterr().err
    for n in fx.NAMES:
        assert n in err
    size_kb = f"{len(tiny.gz[fx.NAMES[0]]) / 1024:.1f}k"
    assert size_kb in err, err  # bytes received / total, scaled
    assert "B/s" in err  # rate


# --------------------------------------------------------------------------- atomicity, lock


def test_keyboard_interrupt_mid_transfer_leaves_no_file(tiny, server, tmp_path, monkeypatch):
    real_write = dl._write_all
    seen = []

    def write(out, data):
        if seen:
            raise KeyboardInterrupt  # Ctrl-C while the second chunk arrives
        real_write(out, data)
        seen.append(data_files(tmp_path / "tiny"))

    monkeypatch.setattr(dl, "_CHUNK", 64)  # several chunks per file
    monkeypatch.setattr(dl, "_write_all", write)
    with pytest.raises(KeyboardInterrupt):
        dl.load_dataset(tiny.spec([server.url("a")]), data_dir=tmp_path, verbose=0, **FAST)
    assert len(seen[0]) == 1 and seen[0][0].endswith(".part")  # it was writing a temp file
    assert data_files(tmp_path / "tiny") == []  # which is gone, and nothing else appeared


def test_killed_download_leaves_nothing_usable_and_retry_is_clean(tiny, server, tmp_path):
    server.modes["stall"] = "stall"
    spec = tiny.spec([server.url("stall")])
    child = fx.start_child(fx.spec_args(spec, tmp_path, kwargs={"read_timeout": 60}))
    try:
        assert server.stalling.wait(20), "child never reached the download"
        time.sleep(0.1)  # let it write the first bytes to its temporary file
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=10)
    folder = tmp_path / "tiny"
    left = data_files(folder)
    assert not set(left) & set(fx.NAMES)
    assert len(left) == 1 and left[0].endswith(".part")  # the partial file, under a temp name
    assert (folder / left[0]).stat().st_size == 100

    assert_tiny(dl.load_dataset(tiny.spec([server.url("good")]), data_dir=tmp_path, verbose=0,
                                **FAST), tiny)
    assert data_files(folder) == sorted(fx.NAMES)  # stale partial file cleaned up


def test_two_processes_loading_at_once_download_once(tiny, server, tmp_path):
    server.modes["slow"] = "slow"  # each file takes 0.4 s, so the first loader holds the lock
    spec = tiny.spec([server.url("slow")])
    children = []
    for i in range(2):
        args = fx.spec_args(spec, tmp_path, ready=str(tmp_path / f"ready{i}"),
                            go=str(tmp_path / "go"))
        children.append(fx.start_child(args))
    deadline = time.monotonic() + 30
    while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
        assert time.monotonic() < deadline, "children did not start"
        time.sleep(0.01)
    (tmp_path / "go").touch()
    results = [fx.finish_child(c) for c in children]
    expected = fx.digest_of(tiny.x_train, tiny.y_train, tiny.x_test, tiny.y_test)
    assert [r.get("digest") for r in results] == [expected, expected], results
    assert server.count() == 4  # each file fetched once, by one of them
    downloads = [sum(m.startswith("downloaded") for m in r["messages"]) for r in results]
    waited = [any(m.startswith("waiting for") for m in r["messages"]) for r in results]
    assert sorted(downloads) == [0, 4]
    assert waited[downloads.index(0)]  # the second one waited, then used the first's files
    assert data_files(tmp_path / "tiny") == sorted(fx.NAMES)


def test_lock_held_too_long_gives_clear_timeout(tiny, server, tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # flock is per open file: this conflicts in-process
        with pytest.raises(datasets.DatasetLockTimeoutError, match="waiting for the lock"):
            dl.load_dataset(tiny.spec([server.url("a")]), data_dir=tmp_path, verbose=0,
                            lock_timeout=0.2, **FAST)
    finally:
        os.close(fd)
    assert server.count() == 0


# --------------------------------------------------------------------------- read-only


@pytest.fixture
def readonly(tmp_path):
    """chmod folders read-only; restore at the end so tmp_path can be removed."""
    if not fx.permissions_apply_to_children():
        pytest.skip("cannot start a child process that file permissions apply to (root "
                    "without the right to drop CAP_DAC_OVERRIDE)")
    made = []

    def make(*paths):
        for p in paths:
            p.chmod(0o555)
            made.append(p)

    yield make
    for p in made:
        p.chmod(0o755)


def test_readonly_directory_with_valid_files_loads_without_writing(tiny, server, tmp_path,
                                                                   readonly):
    folder = tmp_path / "tiny"
    tiny.write_files(folder)
    readonly(folder, tmp_path)
    before = listing(folder)
    res = fx.run_child(fx.spec_args(tiny.spec([server.url("a")]), tmp_path), unprivileged=True)
    assert res.get("digest") == fx.digest_of(tiny.x_train, tiny.y_train, tiny.x_test,
                                             tiny.y_test), res
    assert listing(folder) == before  # no lock file, no temporary file
    assert server.count() == 0


@pytest.mark.parametrize("subdir_exists", [False, True])
def test_unwritable_directory_needing_a_download_is_a_clear_error(tiny, server, tmp_path,
                                                                  readonly, subdir_exists):
    folder = tmp_path / "tiny"
    if subdir_exists:
        tiny.write_files(folder)
        (folder / fx.NAMES[3]).unlink()
        readonly(folder)
    else:
        readonly(tmp_path)
    res = fx.run_child(fx.spec_args(tiny.spec([server.url("a")]), tmp_path), unprivileged=True)
    assert res.get("error") == "CacheDirectoryError", res
    assert {"DatasetDownloadError", "PermissionError", "OSError"} <= set(res["mro"])
    msg = res["message"]
    assert str(folder) in msg and "MINICNN_DATA_DIR" in msg and "data_dir=" in msg
    assert fx.NAMES[3] in msg and "missing" in msg
    assert server.count() == 0  # refused before any network traffic
    assert listing(folder) == (sorted(fx.NAMES[:3]) if subdir_exists else [])


def test_argument_errors(tiny, tmp_path):
    spec = tiny.spec(["http://127.0.0.1:9/"])
    with pytest.raises(TypeError, match="verbose"):
        dl.load_dataset(spec, data_dir=tmp_path, verbose="yes")
    with pytest.raises(TypeError, match="spec must be a Dataset"):
        dl.load_dataset("mnist")
    with pytest.raises(ValueError, match="not an http"):
        mnist.load_data(data_dir=tmp_path, mirrors=["www.example.com/mnist"])
    with pytest.raises(ValueError, match="sha256"):
        dl.DatasetFile("f.gz", "abc", 10, "labels")
    with pytest.raises(ValueError, match="files must be"):
        dataclasses.replace(spec, files=spec.files[::-1])


# --------------------------------------------------------------------------- deadlines (issue 12)


def test_dripping_mirror_is_given_up_below_the_minimum_rate(tiny, tmp_path, monkeypatch):
    # Before: a mirror sending 2 bytes at a time never timed out (38 minutes for 4.5 KB) and
    # the next mirror was never tried.
    monkeypatch.setattr(dl, "MIN_RATE_GRACE", 0.3)
    with fx.MirrorServer(tiny.gz, tiny.bad_gz, drip_interval=0.05) as server:
        server.modes["drip"] = "drip"
        spec = tiny.spec([server.url("drip"), server.url("good")])
        began = time.monotonic()
        assert_tiny(dl.load_dataset(spec, data_dir=tmp_path, verbose=0, min_rate=1000,
                                    **FAST), tiny)
        assert time.monotonic() - began < 30
        for n in fx.NAMES:
            assert server.count("drip", n) == 1  # too slow is not retried on the same URL
            assert server.count("good", n) == 1


def test_per_file_deadline_and_its_environment_variable(tiny, tmp_path, monkeypatch):
    with fx.MirrorServer(tiny.gz, tiny.bad_gz, drip_interval=0.02) as server:
        server.modes["drip"] = "drip"
        spec = tiny.spec([server.url("drip")])
        with pytest.raises(datasets.DatasetDownloadError) as info:
            dl.load_dataset(spec, data_dir=tmp_path, verbose=0, deadline=0.3, min_rate=0,
                            **FAST)
        assert re.search(r"too slow: not finished within the 0.3 s deadline "
                         r"\(\$MINICNN_DOWNLOAD_DEADLINE\) after \d+ bytes", str(info.value))
        monkeypatch.setenv("MINICNN_DOWNLOAD_DEADLINE", "0.2")
        monkeypatch.setenv("MINICNN_DOWNLOAD_MIN_RATE", "0")
        with pytest.raises(datasets.DatasetDownloadError, match="within the 0.2 s deadline"):
            dl.load_dataset(spec, data_dir=tmp_path / "b", verbose=0, **FAST)
        monkeypatch.setenv("MINICNN_DOWNLOAD_DEADLINE", "soon")
        with pytest.raises(ValueError, match=r"\$MINICNN_DOWNLOAD_DEADLINE must be a number"):
            dl.load_dataset(spec, data_dir=tmp_path / "c", verbose=0, **FAST)
    monkeypatch.delenv("MINICNN_DOWNLOAD_DEADLINE")
    with pytest.raises(ValueError, match="min_rate must be a number >= 0"):
        dl.load_dataset(spec, data_dir=tmp_path, min_rate=-1)


def test_a_folder_where_a_data_file_belongs_is_a_clear_error(tiny, server, tmp_path):
    # Before: the download succeeded and os.replace onto the folder raised IsADirectoryError.
    folder = tmp_path / "tiny"
    tiny.write_files(folder)
    (folder / fx.NAMES[3]).unlink()
    (folder / fx.NAMES[3]).mkdir()
    with pytest.raises(datasets.DatasetDownloadError) as info:
        dl.load_dataset(tiny.spec([server.url("a")]), data_dir=tmp_path, verbose=0, **FAST)
    assert str(info.value).startswith(f"{folder / fx.NAMES[3]} is a folder, not the ")
    assert "Remove or rename that folder" in str(info.value)
    assert server.count() == 0
