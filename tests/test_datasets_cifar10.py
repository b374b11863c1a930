"""CIFAR-10 offline: archives built here in the real format (Python 2 protocol-2 pickles in a
.tar.gz), served by a local mirror server on 127.0.0.1; hostile archives and pickles refused."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import pickle
import socket
import tarfile

import numpy as np
import pytest

from minicnn import datasets
from minicnn.datasets import cifar10
from minicnn.datasets import download as dl

try:
    import cifar_fixtures as cf
    import datasets_fixtures as fx
except ImportError:  # tests/ is a package
    from tests import cifar_fixtures as cf
    from tests import datasets_fixtures as fx

FAST = dict(connect_timeout=5.0, read_timeout=5.0, attempts=2, backoff=0.01)
NAME = cifar10.ARCHIVE_NAME
FOLDER = cifar10.FOLDER


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for v in (*fx.PROXY_VARS, "MINICNN_DATA_DIR", "MINICNN_CIFAR10_MIRRORS"):
        monkeypatch.delenv(v, raising=False)


@pytest.fixture(scope="module")
def tiny():
    return cf.make_tiny_cifar()


@pytest.fixture(scope="module")
def other():
    """A different, equally valid archive: what a mirror with the wrong file serves."""
    return cf.make_tiny_cifar(per_batch=(2, 2, 2, 2, 2), n_test=3, seed=1)


@pytest.fixture
def server(tiny):
    flipped = bytearray(tiny.archive)
    flipped[len(flipped) // 3] ^= 0x01  # same size, one bit off: only the SHA-256 tells
    with fx.MirrorServer({NAME: tiny.archive}, {NAME: bytes(flipped)}) as s:
        yield s


def assert_tiny(result, tiny):
    (x, y), (xt, yt) = result
    for got, want in ((x, tiny.x_train), (y, tiny.y_train), (xt, tiny.x_test),
                      (yt, tiny.y_test)):
        assert got.dtype == np.uint8 and got.shape == want.shape
        np.testing.assert_array_equal(got, want)
        assert got.flags.c_contiguous and got.flags.writeable


def files_in(folder):
    return sorted(p.name for p in folder.iterdir() if p.name != ".lock") if folder.exists() else []


def read(archive: bytes, source="test.tar.gz"):
    return cifar10.read_archive(io.BytesIO(archive), source)


# --------------------------------------------------------------------------- the format


def test_fixture_writes_the_real_files_format(tiny):
    # The writer reproduces the real batches.meta byte for byte: md5 as torchvision checks it.
    meta = cf.meta_pickle()
    assert len(meta) == cf.REAL_META_SIZE
    assert hashlib.md5(meta).hexdigest() == cf.REAL_META_MD5
    # Python's own unpickler with the real NumPy (the unsafe way) reads its batches as the
    # CIFAR-10 page describes them: str keys as bytes, a (N, 3072) uint8 array, int labels.
    d = pickle.loads(tiny.contents["data_batch_2"], encoding="bytes")
    assert list(d) == [b"batch_label", b"labels", b"data", b"filenames"]
    assert d[b"batch_label"] == b"training batch 2 of 5"
    assert d[b"data"].dtype == np.uint8 and d[b"data"].shape == (4, 3072)
    assert all(type(v) is int for v in d[b"labels"])
    assert tiny.contents["data_batch_2"][:2] == b"\x80\x02"  # protocol 2
    # Red plane first, then green, then blue, each row by row.
    np.testing.assert_array_equal(d[b"data"][0, :1024].reshape(32, 32), tiny.x_train[3, :, :, 0])
    np.testing.assert_array_equal(d[b"data"][0, 2048:].reshape(32, 32), tiny.x_train[3, :, :, 2])
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(tiny.archive), mode="r:gz")]
    assert names == [FOLDER] + [f"{FOLDER}/{n}" for n in cf.REAL_ORDER]


def test_read_archive_returns_kerass_arrays_in_batch_order(tiny):
    # The archive stores data_batch_4 first and data_batch_1 last; x_train is batches 1..5.
    assert_tiny(read(tiny.archive), tiny)
    (x, y), (xt, yt) = read(tiny.archive)
    assert x.shape == (17, 32, 32, 3) and y.shape == (17, 1)
    assert xt.shape == (4, 32, 32, 3) and yt.shape == (4, 1)


def test_parse_batch_reads_one_batch_channels_last(tiny):
    x, y = cifar10.parse_batch(tiny.contents["test_batch"])
    np.testing.assert_array_equal(x, tiny.x_test)
    np.testing.assert_array_equal(y, tiny.y_test[:, 0])
    assert x.shape == (4, 32, 32, 3) and y.dtype == np.uint8


def test_any_tar_format_and_member_order_reads_the_same(tiny):
    for fmt in (tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT):
        assert_tiny(read(cf.tar_gz(cf.archive_members(tiny.contents), fmt=fmt)), tiny)
    reordered = cf.archive_members(tiny.contents, order=sorted(tiny.contents))
    assert_tiny(read(cf.tar_gz(reordered)), tiny)


def test_class_names_match_the_archives_meta():
    assert cifar10.CLASS_NAMES == tuple(n.decode() for n in cf.CLASS_NAMES)
    assert len(cifar10.CLASS_NAMES) == 10


# --------------------------------------------------------------------------- hostile pickles


def evil_command(tmp_path):
    marker = tmp_path / "pwned"
    return marker, f"touch {marker}".encode()


@pytest.mark.parametrize("module, name", [
    ("posix", "system"),  # how Python 2 on Linux pickled os.system
    ("os", "system"),
    ("__builtin__", "eval"),
    ("builtins", "exec"),
    ("subprocess", "Popen"),
    ("numpy", "load"),  # an allowed module, a name it never needs
    ("numpy.core.multiarray", "scalar"),
])
def test_pickle_naming_a_function_is_refused_before_anything_runs(tiny, tmp_path, module, name):
    marker, command = evil_command(tmp_path)
    gadget = cf.Reduce(cf.Global(module, name), (command,))
    evil = cf.py2_dumps({b"batch_label": b"x", b"labels": [1], b"data": gadget})
    if (module, name) in (("posix", "system"), ("os", "system")):
        # Not a harmless file: Python's own unpickler runs the command.
        pickle.loads(evil, encoding="bytes")
        assert marker.exists()
        marker.unlink()
    with pytest.raises(cifar10.CIFARFormatError, match=rf"asks for {module}\.{name}, which") as ei:
        read(tiny.with_member("data_batch_3", evil), "evil.tar.gz")
    assert "evil.tar.gz: cifar-10-batches-py/data_batch_3" in str(ei.value)
    assert isinstance(ei.value, ValueError) and isinstance(ei.value, datasets.CIFARFormatError)
    assert not marker.exists()


def _batch_with(data=None, labels=(1, 2), **extra):
    x = np.zeros((len(labels), 32, 32, 3), np.uint8)
    d = cf.batch_dict(x, labels, b"batch", data=data)
    d[b"labels"] = list(labels)  # as given (batch_dict makes them ints)
    d.update(extra)
    return cf.py2_dumps(d)


def _dtype(spec=b"u1", state=(3, b"|", None, None, None, -1, -1, 0)):
    return cf.Reduce(cf.Global("numpy", "dtype"), (spec, 0, 1), state=state, has_state=True)


def _array(shape=(2, 3072), dtype=None, fortran=False, raw=None, version=1):
    """A uint8 array pickle as the real files hold, with one part changed."""
    raw = bytes(int(np.prod(shape))) if raw is None else raw
    dtype = _dtype() if dtype is None else dtype
    state = (shape, dtype, fortran, raw) if version is None else (version, shape, dtype,
                                                                   fortran, raw)
    return cf.Reduce(cf.Global("numpy.core.multiarray", "_reconstruct"),
                     (cf.Global("numpy", "ndarray"), (0,), b"b"), state=state, has_state=True)


BAD_BATCHES = {
    "object dtype": (_batch_with(_array(dtype=_dtype(b"O8"))), "holds only uint8"),
    "float dtype": (_batch_with(_array(dtype=_dtype(b"f8"))), "holds only uint8"),
    "big-endian int dtype": (_batch_with(_array(dtype=_dtype(state=(3, b">", None, None, None,
                                                                    -1, -1, 0)))), None),
    "dtype with fields": (_batch_with(_array(dtype=_dtype(state=(3, b"|", None, (b"a",),
                                                                 {b"a": 1}, -1, -1, 0)))),
                          "unexpected dtype state"),
    "dtype state twice": (_batch_with(_array(dtype=cf.Seq(_dtype(), (3, b"|"), cf.Raw(b"b")))),
                          "unexpected dtype state"),
    "fortran order": (_batch_with(_array(fortran=True)), "Fortran order"),
    "short data": (_batch_with(_array(raw=b"\x00" * 100)), "needs 6144 bytes"),
    "3-d array": (_batch_with(_array(shape=(2, 3, 1024))), "expected (images, 3072)"),
    "wrong width": (_batch_with(_array(shape=(2, 1024))), "1024 values per image"),
    "data not an array": (_batch_with(b"\x00" * 6144), "'data' is not a NumPy uint8 array"),
    "array never filled": (_batch_with(cf.Reduce(cf.Global("numpy.core.multiarray",
                                                           "_reconstruct"),
                                                 (cf.Global("numpy", "ndarray"), (0,), b"b"))),
                           "'data' is not a NumPy uint8 array"),
    "array state twice": (_batch_with(cf.Seq(_array(), (1, (2, 3072), None, False, b""),
                                             cf.Raw(b"b"))), "unexpected array state"),
    "4-tuple state": (_batch_with(_array(version=None)), None),
    "numpy 2 module name": (_batch_with(cf.Reduce(cf.Global("numpy._core.multiarray",
                                                            "_reconstruct"),
                                                  (cf.Global("numpy", "ndarray"), (0,), b"b"),
                                                  state=(1, (2, 3072), _dtype(), False,
                                                         bytes(6144)), has_state=True)), None),
    "too many labels": (_batch_with(_array(shape=(1, 3072))), "2 labels for 1 images"),
    "label 10": (_batch_with(labels=(1, 10)), "labels range from 1 to 10"),
    "negative label": (_batch_with(labels=(-1, 3)), "labels range from -1 to 3"),
    "bool label": (_batch_with(labels=(True, 3)), "not a list of ints"),
    "no labels": (cf.py2_dumps({b"data": _array()}), "no 'labels' entry"),
    "not a dict": (cf.py2_dumps([1, 2]), "holds a value of type list, expected a dict"),
    "ndarray called": (_batch_with(cf.Reduce(cf.Global("numpy", "ndarray"), ((2, 3072),))),
                       "calls numpy.ndarray directly"),
    "state set on a global": (_batch_with(cf.Raw(b"cnumpy\ndtype\n}b")),
                              "set state on numpy.dtype"),
    "persistent id": (_batch_with(cf.Raw(b"U\x01xQ")), "persistent id"),
    "extension code": (_batch_with(cf.Raw(b"\x82\x01")), "not a readable pickle"),
    "INST opcode": (_batch_with(cf.Raw(b"(U\x02hiios\nsystem\n")), "asks for os.system"),
    "STACK_GLOBAL": (_batch_with(cf.Raw(b"\x8c\x02os\x8c\x06system\x93")),
                     "asks for os.system"),
    "truncated": (_batch_with()[:-40], "not a readable pickle"),
    "trailing bytes": (_batch_with() + b"junk", "4 bytes follow the end of the pickle"),
}


@pytest.mark.parametrize("case", list(BAD_BATCHES))
def test_malformed_or_hostile_batch_is_a_clear_error(tiny, case):
    data, words = BAD_BATCHES[case]
    if words is None:  # variants NumPy writes or reads too: accepted
        x, y = cifar10.parse_batch(data, "b")
        assert x.shape == (2, 32, 32, 3) and y.tolist() == [1, 2]
        return
    with pytest.raises(cifar10.CIFARFormatError) as ei:
        cifar10.parse_batch(data, "some/batch")
    assert str(ei.value).startswith("some/batch: ") and words in str(ei.value), str(ei.value)
    # The same inside an archive names the archive and the member.
    with pytest.raises(cifar10.CIFARFormatError, match=f"a.tar.gz: {FOLDER}/test_batch: "):
        read(tiny.with_member("test_batch", data), "a.tar.gz")


def test_meta_with_other_label_names_is_refused(tiny):
    bad = cf.meta_pickle(names=[b"cat"] * 10)
    with pytest.raises(cifar10.CIFARFormatError, match="are not CIFAR-10's"):
        read(tiny.with_member("batches.meta", bad))


# --------------------------------------------------------------------------- hostile archives


def _info(name, type_=tarfile.REGTYPE, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = type_, size, linkname
    return info


def _with_extra(tiny, *members):
    return cf.tar_gz(cf.archive_members(tiny.contents) + list(members))


@pytest.mark.parametrize("name", ["../evil", f"{FOLDER}/../../evil", "/etc/evil",
                                  f"{FOLDER}/..", "..\\evil"])
def test_member_path_leaving_the_folder_is_refused(tiny, name):
    archive = cf.tar_gz([(name, b"x")] + cf.archive_members(tiny.contents))
    with pytest.raises(cifar10.CIFARFormatError, match="points outside the archive's folder"):
        read(archive)


@pytest.mark.parametrize("kind", ["symlink", "hardlink"])
def test_links_are_refused(tiny, kind):
    name = f"{FOLDER}/data_batch_1"
    link = (_info(name, tarfile.SYMTYPE, linkname="/etc/passwd") if kind == "symlink"
            else _info(name, tarfile.LNKTYPE, linkname=f"{FOLDER}/test_batch"))
    contents = dict(tiny.contents)
    contents.pop("data_batch_1")
    archive = cf.tar_gz(cf.archive_members(contents) + [(link, None)])
    words = "symbolic link" if kind == "symlink" else "hard link"
    with pytest.raises(cifar10.CIFARFormatError, match=f"is a {words}"):
        read(archive)


@pytest.mark.parametrize("type_", [tarfile.FIFOTYPE, tarfile.CHRTYPE, tarfile.BLKTYPE,
                                   tarfile.CONTTYPE])
def test_other_member_types_are_refused(tiny, type_):
    archive = _with_extra(tiny, (_info(f"{FOLDER}/readme.html2", type_), None))
    with pytest.raises(cifar10.CIFARFormatError, match="not a regular file or folder"):
        read(archive)


def test_huge_declared_size_is_refused_before_reading(tiny):
    # A header claiming 8 GiB, followed by almost nothing: refused from the header alone.
    header = _info(f"{FOLDER}/data_batch_1", size=8 << 30).tobuf(tarfile.GNU_FORMAT)
    archive = gzip.compress(header + b"\x00" * 1024)
    with pytest.raises(cifar10.CIFARFormatError,
                       match="declares 8,589,934,592 bytes, more than the 67,108,864"):
        read(archive)
    # The readme may not be large either (it is never read, but tar would skip through it).
    big = _info(f"{FOLDER}/readme.html", size=1 << 20)
    contents = dict(tiny.contents)
    contents.pop("readme.html")
    with pytest.raises(cifar10.CIFARFormatError, match="declares 1,048,576 bytes"):
        read(cf.tar_gz(cf.archive_members(contents) + [(big, bytes(1 << 20))]))


def test_inflating_past_the_cap_is_refused(tiny, monkeypatch):
    monkeypatch.setattr(cifar10, "_MAX_INFLATED_BYTES", 1 << 20)
    assert_tiny(read(tiny.archive), tiny)  # the small archive stays under 1 MiB
    tar = gzip.decompress(tiny.archive)
    bomb = gzip.compress(tar + bytes(2 << 20))  # zeros after the end of the tar
    with pytest.raises(cifar10.CIFARFormatError, match="inflates to more than 1,048,576"):
        read(bomb)
    # A 2 MiB pax header (which tarfile itself would buffer whole) stops at the cap too.
    info = _info(f"{FOLDER}/readme.html", size=len(cf.README))
    info.pax_headers = {"comment": "x" * (2 << 20)}
    contents = dict(tiny.contents)
    contents.pop("readme.html")
    archive = cf.tar_gz(cf.archive_members(contents) + [(info, cf.README)],
                        fmt=tarfile.PAX_FORMAT)
    with pytest.raises(cifar10.CIFARFormatError, match="inflates to more than"):
        read(archive)


@pytest.mark.parametrize("case, words", [
    ("duplicate", "appears twice"),
    ("extra file", "unexpected member 'cifar-10-batches-py/run_me.py'"),
    ("other folder", "unexpected folder 'elsewhere'"),
    ("file outside the folder", "unexpected member 'data_batch_1'"),
    ("no test batch", "has no test_batch"),
    ("no meta", "has no batches.meta"),
    ("empty", "not a readable .tar.gz"),
])
def test_unexpected_members_are_refused(tiny, case, words):
    if case == "duplicate":
        archive = _with_extra(tiny, (f"{FOLDER}/data_batch_1", tiny.contents["data_batch_1"]))
    elif case == "extra file":
        archive = _with_extra(tiny, (f"{FOLDER}/run_me.py", b"import os"))
    elif case == "other folder":
        archive = _with_extra(tiny, ("elsewhere", None))
    elif case == "file outside the folder":
        archive = _with_extra(tiny, ("data_batch_1", tiny.contents["data_batch_1"]))
    elif case == "no test batch":
        archive = tiny.with_member("test_batch", None)
    elif case == "no meta":
        archive = tiny.with_member("batches.meta", None)
    else:
        archive = gzip.compress(b"")
    with pytest.raises(cifar10.CIFARFormatError, match=words):
        read(archive)


@pytest.mark.parametrize("case", ["truncated", "flipped byte", "not gzip", "bad crc"])
def test_corrupt_archive_is_a_format_error(tiny, case):
    data = bytearray(tiny.archive)
    if case == "truncated":
        data = data[: len(data) // 2]
    elif case == "flipped byte":
        data[len(data) // 2] ^= 0xFF
    elif case == "not gzip":
        data = bytearray(gzip.decompress(tiny.archive))  # a plain tar
    else:
        data[-8] ^= 0x01  # the gzip trailer's CRC-32
    with pytest.raises(cifar10.CIFARFormatError, match="test.tar.gz: "):
        read(bytes(data))


# --------------------------------------------------------------------------- download, cache


def test_load_data_downloads_once_from_env_mirror_then_reads_the_cache(tiny, server, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setattr(cifar10, "CIFAR10", tiny.spec())
    monkeypatch.setenv("MINICNN_CIFAR10_MIRRORS", server.url("env"))
    monkeypatch.setenv("MINICNN_DATA_DIR", str(tmp_path))
    assert_tiny(cifar10.load_data(verbose=0), tiny)
    assert server.count("env", NAME) == 1
    folder = tmp_path / "cifar-10"
    assert files_in(folder) == [NAME]  # no temporary file left
    assert (folder / NAME).read_bytes() == tiny.archive  # stored as published
    assert_tiny(cifar10.load_data(verbose=0), tiny)
    assert server.count() == 1  # warm cache: no request
    # mirrors= replaces the environment's list.
    assert_tiny(cifar10.load_data(data_dir=tmp_path / "2", mirrors=[server.url("arg")],
                                  verbose=0), tiny)
    assert server.count("arg") == 1 and server.count("env") == 1


def test_dead_and_missing_first_mirrors_fall_back_to_a_good_one(tiny, server, tmp_path,
                                                                monkeypatch):
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    dead = f"http://127.0.0.1:{sock.getsockname()[1]}/m/"
    sock.close()  # nothing listens there now
    server.modes["gone"] = 404
    monkeypatch.setattr(dl, "BACKOFF", 0.01)
    monkeypatch.setattr(cifar10, "CIFAR10", tiny.spec())
    result = cifar10.load_data(data_dir=tmp_path, verbose=0,
                               mirrors=[dead, server.url("gone"), server.url("good")])
    assert_tiny(result, tiny)
    assert server.count("gone") == 1 and server.count("good") == 1


def test_damaged_file_on_a_mirror_fails_its_checksum_and_the_next_is_tried(tiny, server,
                                                                           tmp_path):
    server.modes["wrong"] = "badsum"
    spec = tiny.spec([server.url("wrong"), server.url("good")])
    assert_tiny(dl.load_dataset(spec, data_dir=tmp_path, verbose=0, **FAST), tiny)
    assert server.count("wrong") == 1 and server.count("good") == 1
    assert (tmp_path / "cifar-10" / NAME).read_bytes() == tiny.archive


def test_every_mirror_failing_is_one_clear_error(tiny, server, tmp_path):
    server.modes["w1"] = "badsum"
    server.modes["w2"] = "html"
    spec = tiny.spec([server.url("w1"), server.url("w2")])
    with pytest.raises(datasets.DatasetDownloadError) as ei:
        dl.load_dataset(spec, data_dir=tmp_path, verbose=0, **FAST)
    msg = str(ei.value)
    folder = tmp_path / "cifar-10"
    assert [u for u, _ in ei.value.attempts] == [server.url("w1") + NAME, server.url("w2") + NAME]
    assert "SHA-256" in msg and "HTML page" in msg and ".part" not in msg
    assert f"put the file {NAME} ({len(tiny.archive):,} bytes" in msg
    assert f"{folder}{os.sep}\n" in msg and "MINICNN_CIFAR10_MIRRORS" in msg
    assert files_in(folder) == []


@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "other archive"])
def test_damaged_cached_archive_is_downloaded_again(tiny, other, server, tmp_path, damage):
    folder = tmp_path / "cifar-10"
    folder.mkdir()
    data = bytearray(tiny.archive)
    if damage == "flipped byte":
        data[100] ^= 0xFF
    elif damage == "truncated":
        data = data[:-10]
    else:
        data = bytearray(other.archive)
    (folder / NAME).write_bytes(bytes(data))
    assert_tiny(dl.load_dataset(tiny.spec([server.url("a")]), data_dir=tmp_path, verbose=0,
                                **FAST), tiny)
    assert server.count() == 1
    assert (folder / NAME).read_bytes() == tiny.archive


def test_hostile_archive_with_a_matching_checksum_is_refused_and_not_kept(tiny, tmp_path):
    # A spec whose SHA-256 is the hostile archive's: the checksum passes, the reader refuses.
    marker, command = evil_command(tmp_path)
    evil = cf.py2_dumps(cf.Reduce(cf.Global("posix", "system"), (command,)))
    archive = tiny.with_member("data_batch_1", evil)
    spec = tiny.spec(archive=archive)
    with fx.MirrorServer({NAME: archive}) as s:
        spec = dataclasses.replace(spec, mirrors=(s.url("m"),))
        with pytest.raises(cifar10.CIFARFormatError, match="asks for posix.system") as ei:
            dl.load_dataset(spec, data_dir=tmp_path / "d", verbose=0, **FAST)
    assert "(as downloaded, not kept)" in str(ei.value) and ".part" not in str(ei.value)
    assert files_in(tmp_path / "d" / "cifar-10") == []
    assert not marker.exists()
    # Placed by hand: refused the same way, without any network traffic.
    folder = tmp_path / "hand" / "cifar-10"
    folder.mkdir(parents=True)
    (folder / NAME).write_bytes(archive)
    with pytest.raises(cifar10.CIFARFormatError, match=f"{folder / NAME}: {FOLDER}/data_batch_1"):
        dl.load_dataset(dataclasses.replace(spec, mirrors=("http://127.0.0.1:9/",)),
                        data_dir=tmp_path / "hand", verbose=0, **FAST)
    assert not marker.exists()


# --------------------------------------------------------------------------- the spec


def test_cifar10_spec_constants():
    spec = cifar10.CIFAR10
    (f,) = spec.files
    assert (f.name, f.kind, f.size) == ("cifar-10-python.tar.gz", "archive", 170_498_071)
    assert f.sha256 == "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
    assert f.reader is cifar10.read_archive
    assert spec.subdir == "cifar-10" and spec.mirrors_env == "MINICNN_CIFAR10_MIRRORS"
    assert spec.mirrors == ("https://www.cs.toronto.edu/~kriz/",
                            "https://dataset.bj.bcebos.com/cifar/")
    assert datasets.cifar10 is cifar10


def test_archive_spec_validation(tmp_path):
    sha = "0" * 64
    with pytest.raises(ValueError, match="needs a reader"):
        dl.DatasetFile("a.tar.gz", sha, 10, "archive")
    with pytest.raises(ValueError, match="take none"):
        dl.DatasetFile("x.gz", sha, 10, "labels", reader=cifar10.read_archive)
    archive = dl.archive_file("a.tar.gz", sha, 10, cifar10.read_archive)
    with pytest.raises(ValueError, match="or one archive"):
        dataclasses.replace(cifar10.CIFAR10, files=(archive, archive))
    with pytest.raises(ValueError, match="not an http"):
        cifar10.load_data(data_dir=tmp_path, mirrors=["ftp://example.com/"])
