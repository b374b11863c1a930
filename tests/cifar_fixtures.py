"""Helpers for the CIFAR-10 tests: pickles written the way Python 2's cPickle wrote the real
batches, and small ``cifar-10-python.tar.gz`` archives (valid or hostile) built from them.

The writer is independent of the reader under test. It reproduces the real ``batches.meta``
byte for byte (158 bytes, the md5 torchvision publishes), which pins down the details the
real files have: protocol 2, Python 2 str as SHORT_BINSTRING/BINSTRING (read back as bytes),
memo indices from 1 (BINPUT, LONG_BINPUT past 255), items in MARK ... SETITEMS / APPENDS
groups of at most 1000. A NumPy array is written as numpy 1.x on Python 2 pickled it.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import struct
import tarfile
from dataclasses import dataclass

import numpy as np

from minicnn.datasets import cifar10
from minicnn.datasets.download import Dataset, archive_file

CLASS_NAMES = (b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
               b"ship", b"truck")
# md5 of the real batches.meta, as torchvision.datasets.CIFAR10 checks it.
REAL_META_MD5 = "5ff9c542aee3614f3951f8cda6e48888"
REAL_META_SIZE = 158
# The real readme.html (88 bytes) only redirects to the data set's page.
README = b'<meta HTTP-EQUIV="REFRESH" content="0; URL=http://www.cs.toronto.edu/~kriz/cifar.html">\n'
# Member order of the real archive (as `tar tzf` lists it).
REAL_ORDER = ("data_batch_4", "readme.html", "test_batch", "data_batch_3", "batches.meta",
              "data_batch_2", "data_batch_5", "data_batch_1")


@dataclass(frozen=True)
class Global:
    """A global name, pickled with the GLOBAL opcode (``c module\\nname\\n``)."""
    module: str
    name: str


@dataclass(frozen=True)
class Reduce:
    """``func(*args)`` via REDUCE, then ``state`` via BUILD when given (as __reduce__ does)."""
    func: object
    args: tuple
    state: object = None
    has_state: bool = False


class Raw:
    """Opcodes inserted as they are (for hostile pickles)."""

    def __init__(self, data: bytes):
        self.data = data


class Seq:
    """Several objects written one after the other (with Raw opcodes, to build hostile
    sequences such as a second BUILD on the same object)."""

    def __init__(self, *items):
        self.items = items


def uint8_array(arr: np.ndarray) -> Reduce:
    """A 2-D C-ordered uint8 array as numpy 1.x pickled it on Python 2."""
    assert arr.dtype == np.uint8 and arr.ndim == 2 and arr.flags.c_contiguous
    dtype = Reduce(Global("numpy", "dtype"), (b"u1", 0, 1),
                   state=(3, b"|", None, None, None, -1, -1, 0), has_state=True)
    return Reduce(Global("numpy.core.multiarray", "_reconstruct"),
                  (Global("numpy", "ndarray"), (0,), b"b"),
                  state=(1, arr.shape, dtype, False, arr.tobytes()), has_state=True)


class Py2Pickler:
    """Write objects as Python 2.7's cPickle.dump(obj, f, 2) did."""

    def __init__(self):
        self.out = bytearray(b"\x80\x02")
        self.memo_index = 1  # cPickle numbers its memo from 1 (pickle.py from 0)

    def _put(self):
        i = self.memo_index
        self.out += b"q" + bytes([i]) if i < 256 else b"r" + struct.pack("<I", i)
        self.memo_index += 1

    def save(self, obj):
        out = self.out
        if obj is None:
            out += b"N"
        elif obj is True or obj is False:
            out += b"\x88" if obj else b"\x89"
        elif isinstance(obj, int):
            if 0 <= obj < 256:
                out += b"K" + bytes([obj])
            elif 0 <= obj < 65536:
                out += b"M" + struct.pack("<H", obj)
            else:
                out += b"J" + struct.pack("<i", obj)
        elif isinstance(obj, bytes):  # Python 2 str
            out += (b"U" + bytes([len(obj)]) if len(obj) < 256
                    else b"T" + struct.pack("<I", len(obj))) + obj
            self._put()
        elif isinstance(obj, tuple):
            if not obj:
                out += b")"
                return
            if len(obj) <= 3:
                for item in obj:
                    self.save(item)
                self.out += {1: b"\x85", 2: b"\x86", 3: b"\x87"}[len(obj)]
            else:
                out += b"("
                for item in obj:
                    self.save(item)
                self.out += b"t"
            self._put()
        elif isinstance(obj, list):
            out += b"]"
            self._put()
            self._batched(obj, b"a", b"e", lambda item: self.save(item))
        elif isinstance(obj, dict):
            out += b"}"
            self._put()
            self._batched(list(obj.items()), b"s", b"u",
                          lambda kv: (self.save(kv[0]), self.save(kv[1])))
        elif isinstance(obj, Global):
            out += b"c" + obj.module.encode() + b"\n" + obj.name.encode() + b"\n"
            self._put()
        elif isinstance(obj, Reduce):
            self.save(obj.func)
            self.save(obj.args)
            self.out += b"R"
            self._put()
            if obj.has_state:
                self.save(obj.state)
                self.out += b"b"
        elif isinstance(obj, Raw):
            out += obj.data
        elif isinstance(obj, Seq):
            for item in obj.items:
                self.save(item)
        else:
            raise TypeError(f"Py2Pickler: cannot write {type(obj).__name__}")

    def _batched(self, items, one, many, save_item):
        for start in range(0, len(items), 1000):
            chunk = items[start:start + 1000]
            if len(chunk) == 1:
                save_item(chunk[0])
                self.out += one
            else:
                self.out += b"("
                for item in chunk:
                    save_item(item)
                self.out += many

    def dumps(self, obj) -> bytes:
        self.save(obj)
        self.out += b"."
        return bytes(self.out)


def py2_dumps(obj) -> bytes:
    return Py2Pickler().dumps(obj)


def meta_pickle(names=CLASS_NAMES) -> bytes:
    """batches.meta: {'num_cases_per_batch': 10000, 'label_names': [...], 'num_vis': 3072}."""
    return py2_dumps({b"num_cases_per_batch": 10000, b"label_names": list(names),
                      b"num_vis": 3072})


def to_stored(x_nhwc: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) images -> the stored rows (N, 3072): all red, then green, then blue."""
    return np.ascontiguousarray(x_nhwc.transpose(0, 3, 1, 2).reshape(len(x_nhwc), -1))


def batch_dict(x_nhwc: np.ndarray, labels, label: bytes, data=None) -> dict:
    """A batch's dict in the real files' key order."""
    n = len(labels)
    return {b"batch_label": label,
            b"labels": [int(v) for v in labels],
            b"data": uint8_array(to_stored(x_nhwc)) if data is None else data,
            b"filenames": [f"img_s_{i:06d}.png".encode() for i in range(n)]}


def batch_pickle(x_nhwc, labels, label=b"training batch 1 of 5") -> bytes:
    return py2_dumps(batch_dict(x_nhwc, labels, label))


# --------------------------------------------------------------------------- archives


def tar_gz(members, fmt=tarfile.GNU_FORMAT) -> bytes:
    """A .tar.gz of `members`: (name, bytes) for regular files, (name, None) for folders, or
    ready TarInfo objects with their data: (TarInfo, bytes | None)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in members:
            if isinstance(name, tarfile.TarInfo):
                tar.addfile(name, io.BytesIO(data) if data is not None else None)
                continue
            info = tarfile.TarInfo(name)
            info.mtime = 1244000000
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def archive_members(contents: dict, order=REAL_ORDER):
    """[(path, bytes)] in the real archive's order: the folder, then each file of `contents`
    (file name -> bytes), those outside `order` last."""
    names = [n for n in order if n in contents] + [n for n in contents if n not in order]
    return [(cifar10.FOLDER, None)] + [(f"{cifar10.FOLDER}/{n}", contents[n]) for n in names]


@dataclass
class TinyCifar:
    """A small archive in CIFAR-10's format, the arrays it holds, and a Dataset spec for it."""

    x_train: np.ndarray  # (N, 32, 32, 3) uint8
    y_train: np.ndarray  # (N, 1) uint8
    x_test: np.ndarray
    y_test: np.ndarray
    contents: dict  # member file name -> bytes
    archive: bytes

    def spec(self, mirrors=(), archive: bytes | None = None) -> Dataset:
        data = self.archive if archive is None else archive
        files = (archive_file(cifar10.ARCHIVE_NAME, hashlib.sha256(data).hexdigest(),
                              len(data), cifar10.read_archive),)
        return dataclasses.replace(cifar10.CIFAR10, files=files, mirrors=tuple(mirrors))

    def with_member(self, name: str, data: bytes | None) -> bytes:
        """The archive with member `name` replaced (or removed when data is None)."""
        contents = dict(self.contents)
        if data is None:
            contents.pop(name)
        else:
            contents[name] = data
        return tar_gz(archive_members(contents))


def make_tiny_cifar(per_batch=(3, 4, 2, 5, 3), n_test=4, seed=0) -> TinyCifar:
    rng = np.random.default_rng(seed)
    contents, xs, ys = {}, [], []
    for i, n in enumerate(per_batch, start=1):
        x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        y = rng.integers(0, 10, n, dtype=np.uint8)
        contents[f"data_batch_{i}"] = batch_pickle(x, y, f"training batch {i} of 5".encode())
        xs.append(x)
        ys.append(y)
    x_test = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    y_test = rng.integers(0, 10, n_test, dtype=np.uint8)
    contents["test_batch"] = batch_pickle(x_test, y_test, b"testing batch 1 of 1")
    contents["batches.meta"] = meta_pickle()
    contents["readme.html"] = README
    archive = tar_gz(archive_members(contents))
    return TinyCifar(np.concatenate(xs), np.concatenate(ys).reshape(-1, 1), x_test,
                     y_test.reshape(-1, 1), contents, archive)
