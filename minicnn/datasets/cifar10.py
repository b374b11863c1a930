"""CIFAR-10: 50,000 training and 10,000 test colour images, 32x32, in 10 classes.

``load_data()`` mirrors ``keras.datasets.cifar10.load_data()``: the Python version of the
archive, ``cifar-10-python.tar.gz`` (170,498,071 bytes), is fetched and verified by the shared
machinery in :mod:`minicnn.datasets.download` (mirrors, SHA-256, lock, atomic rename) and read
into Keras's arrays. Class names: ``CLASS_NAMES`` (0 airplane ... 9 truck).

What the archive holds, and how it is read without running anything from it:

* A gzip-compressed tar with the folder ``cifar-10-batches-py/`` and eight regular files:
  ``data_batch_1`` ... ``data_batch_5`` and ``test_batch`` (31,035,xxx bytes each),
  ``batches.meta`` (158 bytes) and ``readme.html`` (88 bytes). The members are read in one
  pass from the compressed stream, in memory, never extracted to disk. Every member is checked
  before its data is read: only those names (no absolute path, no ``..``), only regular files
  and that one folder (no links, devices or other types), each at most a few times its real
  size, nothing twice; the inflated stream is capped at 200 MiB (the real one is 177.6 MiB).
* Each batch is a pickle written by Python 2's cPickle, protocol 2: a dict with the str keys
  ``batch_label``, ``labels`` (a list of 10,000 ints 0-9), ``data`` (a NumPy uint8 array
  ``(10000, 3072)``: 1024 red, then green, then blue values per image, rows in order) and
  ``filenames``. Python 2's str values are kept as bytes (``encoding='bytes'``).
* Unpickling would normally call whatever a file names, so a tampered batch could run code.
  The batches are read with a restricted unpickler instead: it gives out exactly the three
  globals a NumPy array pickle names (``numpy.core.multiarray._reconstruct`` -- or
  ``numpy._core`` --, ``numpy.ndarray`` and ``numpy.dtype``), and even those are stand-ins
  written here that accept only a 2-D C-ordered uint8 array; NumPy's own constructors never see
  the file. Any other global (``os.system``, ``builtins.eval``, ...), persistent ids, or state
  set on those stand-ins is refused with :class:`CIFARFormatError`. The pickle can then only
  build dicts, lists, tuples, bytes, str, ints, floats, booleans and None.

Every problem raises :class:`CIFARFormatError` (a ValueError) naming the archive, the member
and what is wrong.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
import zlib
from collections.abc import Sequence

import numpy as np

from .download import Dataset, archive_file, load_dataset

__all__ = ["ARCHIVE_NAME", "CIFAR10", "CIFARFormatError", "CLASS_NAMES", "load_data",
           "parse_batch", "read_archive"]

CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")

ARCHIVE_NAME = "cifar-10-python.tar.gz"
# Keras's loader (keras/src/datasets/cifar10.py) pins this SHA-256 for the same file; the size
# is the Content-Length www.cs.toronto.edu serves, and both match the published md5
# c58f30108f718f92721af3b95e74349a.
ARCHIVE_SHA256 = "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"
ARCHIVE_SIZE = 170_498_071

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
README = "readme.html"
IMAGE_SHAPE = (32, 32, 3)
_PIXELS = 32 * 32 * 3

# The largest member each name may declare (real sizes: batches 31,035,xxx; meta 158;
# readme 88). A bigger declared size is refused before a byte of it is read.
_MAX_MEMBER_BYTES = {**{name: 64 << 20 for name in (*TRAIN_BATCHES, TEST_BATCH)},
                     META: 64 << 10, README: 64 << 10}
# The whole tar stream after inflating (the real archive: about 186.2 MB = 177.6 MiB).
# Bounds what tarfile itself may buffer (e.g. a pax header) and the time a gzip bomb takes.
_MAX_INFLATED_BYTES = 200 << 20
_READ_CHUNK = 1 << 20


class CIFARFormatError(ValueError):
    """The CIFAR-10 archive or one of its pickled batches is malformed or not what CIFAR-10
    holds (e.g. a pickle naming a function); the message names the archive and the member."""


# --------------------------------------------------------------------------- restricted pickle


class _AllowedGlobal:
    """What the restricted unpickler hands out for an allowed global name: a stand-in that
    calls a checking factory of this module. ``__slots__`` and ``__setstate__`` stop a pickle
    from changing it (the BUILD opcode calls ``__setstate__``)."""

    __slots__ = ("qualname", "factory")

    def __init__(self, qualname, factory):
        self.qualname = qualname
        self.factory = factory

    def __call__(self, *args):
        return self.factory(*args)

    def __setstate__(self, state):
        raise CIFARFormatError(f"the pickle tries to set state on {self.qualname}")


class _Dtype:
    """Stand-in for ``numpy.dtype('u1')``."""

    __slots__ = ("state_set",)

    def __init__(self):
        self.state_set = False

    def __setstate__(self, state):
        # NumPy writes (version, endian, subarray, names, fields, elsize, alignment, flags
        # [, metadata]); for a plain uint8 only scalar entries can appear, and the byte order
        # of one-byte items is '|'.
        plain = (type(None), int, bytes, str)
        if (self.state_set or not isinstance(state, tuple) or not 5 <= len(state) <= 9
                or not all(isinstance(v, plain) for v in state)
                or state[1] not in ("|", b"|", "=", b"=", "<", b"<", ">", b">")):
            raise CIFARFormatError(f"unexpected dtype state {_short_repr(state)}; expected the "
                                   "state of numpy.dtype('uint8')")
        self.state_set = True


def _make_dtype(spec, align=0, copy=1):
    if spec not in ("u1", b"u1", "uint8", b"uint8") or align not in (0, False):
        raise CIFARFormatError(f"the pickle asks for numpy.dtype({_short_repr(spec)}, "
                               f"{_short_repr(align)}, ...); a CIFAR-10 batch holds only "
                               "uint8 data")
    return _Dtype()


class _Array:
    """Stand-in for the uint8 array ``_reconstruct`` starts and BUILD fills in."""

    __slots__ = ("array",)

    def __init__(self):
        self.array = None

    def __setstate__(self, state):
        # ndarray.__reduce__ gives (version, shape, dtype, is_fortran, raw bytes); NumPy also
        # reads the 4-tuple without the version.
        if self.array is not None or not isinstance(state, tuple) or len(state) not in (4, 5):
            raise CIFARFormatError(f"unexpected array state {_short_repr(state)}")
        shape, dtype, fortran, raw = state[-4:]
        if not isinstance(dtype, _Dtype):
            raise CIFARFormatError("the array's dtype is not numpy.dtype('uint8')")
        if (not isinstance(shape, tuple) or len(shape) != 2
                or not all(type(n) is int and 0 <= n <= 1 << 31 for n in shape)):
            raise CIFARFormatError(f"the array's shape is {_short_repr(shape)}; expected "
                                   "(images, 3072)")
        if fortran not in (0, False):
            raise CIFARFormatError("the array is stored in Fortran order; CIFAR-10 stores "
                                   "C order")
        if not isinstance(raw, bytes) or len(raw) != shape[0] * shape[1]:
            got = f"{len(raw)} bytes" if isinstance(raw, bytes) else type(raw).__name__
            raise CIFARFormatError(f"the array data is {got}; shape {shape} of uint8 needs "
                                   f"{shape[0] * shape[1]} bytes")
        self.array = np.frombuffer(raw, dtype=np.uint8).reshape(shape)


def _refuse_ndarray_call(*args):
    raise CIFARFormatError("the pickle calls numpy.ndarray directly; CIFAR-10 batches only "
                           "use numpy's _reconstruct")


_NDARRAY = _AllowedGlobal("numpy.ndarray", _refuse_ndarray_call)


def _reconstruct(cls, shape, typecode):
    if cls is not _NDARRAY or shape != (0,) or typecode not in (b"b", "b"):
        raise CIFARFormatError(f"unexpected _reconstruct{_short_repr((cls, shape, typecode))};"
                               " expected (numpy.ndarray, (0,), 'b')")
    return _Array()


_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _AllowedGlobal("numpy.core.multiarray."
                                                              "_reconstruct", _reconstruct),
    ("numpy._core.multiarray", "_reconstruct"): _AllowedGlobal("numpy._core.multiarray."
                                                               "_reconstruct", _reconstruct),
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): _AllowedGlobal("numpy.dtype", _make_dtype),
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Gives out only the stand-ins of ``_ALLOWED_GLOBALS``; everything else is refused."""

    def find_class(self, module, name):
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise CIFARFormatError(
                f"the pickle asks for {module}.{name}, which a CIFAR-10 batch never contains; "
                "refused (only NumPy's array reconstruction is allowed, done here without "
                "NumPy)")
        return allowed

    def persistent_load(self, pid):
        raise CIFARFormatError("the pickle uses a persistent id, which a CIFAR-10 batch never "
                               "contains")


def _clip(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _short_repr(value, limit: int = 80) -> str:
    """A repr for messages that stays short and cheap whatever a hostile pickle built (a
    30 MB bytes object, a dict of a million keys, an int of a million digits)."""
    def small(v, depth):
        if isinstance(v, (bytes, str)):
            return repr(v[:limit]) + ("..." if len(v) > limit else "")
        if isinstance(v, bool) or v is None or isinstance(v, float):
            return repr(v)
        if isinstance(v, int):
            return repr(v) if v.bit_length() <= 64 else "<a large int>"
        if isinstance(v, tuple) and depth < 2:
            inner = ", ".join(small(x, depth + 1) for x in v[:8])
            return f"({inner}{', ...' if len(v) > 8 else ''}{',' if len(v) == 1 else ''})"
        if isinstance(v, (tuple, list, dict)):
            return f"<{type(v).__name__} of {len(v)}>"
        return f"<{getattr(v, 'qualname', type(v).__name__)}>"

    return _clip(small(value, 0), limit)


def _unpickle(data: bytes, source: str):
    stream = io.BytesIO(data)
    try:
        obj = _RestrictedUnpickler(stream, encoding="bytes").load()
    except CIFARFormatError as e:
        raise CIFARFormatError(f"{source}: {e}") from None
    except Exception as e:  # noqa: BLE001 - nothing foreign runs: any error is a bad pickle
        raise CIFARFormatError(f"{source}: not a readable pickle ({type(e).__name__}: "
                               f"{_clip(str(e))})") from None
    if stream.tell() != len(data):
        raise CIFARFormatError(f"{source}: {len(data) - stream.tell()} bytes follow the end of "
                               "the pickle")
    if not isinstance(obj, dict):
        raise CIFARFormatError(f"{source}: the pickle holds a value of type "
                               f"{type(obj).__name__}, expected a dict")
    keys = {}
    for key, value in obj.items():
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if not isinstance(key, str):
            raise CIFARFormatError(f"{source}: dict key {_short_repr(key)} is not a string")
        keys[key] = value
    return keys


# --------------------------------------------------------------------------- members


def parse_batch(data: bytes, source: str = "<batch>"):
    """Read one pickled CIFAR-10 batch (the bytes of ``data_batch_N`` or ``test_batch``).

    Returns ``(x, y)``: x uint8 ``(N, 32, 32, 3)`` (channels last, as Keras), y uint8 ``(N,)``
    with classes 0-9. Raises CIFARFormatError for anything but the dict CIFAR-10 stores.
    """
    d = _unpickle(data, source)
    missing = [k for k in ("data", "labels") if k not in d]
    if missing:
        raise CIFARFormatError(f"{source}: the batch has no {' or '.join(map(repr, missing))} "
                               f"entry (keys: {_short_repr(tuple(sorted(d)), 200)})")
    images = d["data"]
    if not isinstance(images, _Array) or images.array is None:
        raise CIFARFormatError(f"{source}: 'data' is not a NumPy uint8 array")
    count, pixels = images.array.shape
    if pixels != _PIXELS:
        raise CIFARFormatError(f"{source}: 'data' has {pixels} values per image, expected "
                               f"{_PIXELS} (32 x 32 x 3)")
    labels = d["labels"]
    if not isinstance(labels, list) or not all(type(v) is int for v in labels):
        raise CIFARFormatError(f"{source}: 'labels' is not a list of ints")
    if len(labels) != count:
        raise CIFARFormatError(f"{source}: {len(labels)} labels for {count} images")
    y = np.array(labels, dtype=np.int64)
    if count and (y.min() < 0 or y.max() >= len(CLASS_NAMES)):
        raise CIFARFormatError(f"{source}: labels range from {y.min()} to {y.max()}, expected "
                               f"0 to {len(CLASS_NAMES) - 1}")
    # Stored per image as 1024 red, 1024 green, 1024 blue values: (N, C, H, W) -> (N, H, W, C).
    x = images.array.reshape(count, 3, 32, 32).transpose(0, 2, 3, 1)
    return x, y.astype(np.uint8)


def _parse_meta(data: bytes, source: str) -> tuple[str, ...]:
    d = _unpickle(data, source)
    names = d.get("label_names")
    if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
        raise CIFARFormatError(f"{source}: no list of 'label_names'")
    names = tuple(n.decode("latin-1") if isinstance(n, bytes) else n for n in names)
    if names != CLASS_NAMES:
        raise CIFARFormatError(f"{source}: label names {_short_repr(names, 200)} are not "
                               f"CIFAR-10's {CLASS_NAMES}")
    return names


def _member_name(member: tarfile.TarInfo, seen: set, source: str) -> str | None:
    """Check a tar member before any of its data is read; return its file name inside the
    folder, or None for the folder itself."""
    name = member.name
    shown = _short_repr(name, 120)  # a GNU long name can be megabytes
    parts = name.split("/")
    if name.startswith("/") or "\\" in name or "\x00" in name or ".." in parts:
        raise CIFARFormatError(f"{source}: member {shown} points outside the archive's folder "
                               "(absolute path or '..'); refused")
    if member.issym() or member.islnk():
        kind = "symbolic" if member.issym() else "hard"
        raise CIFARFormatError(f"{source}: member {shown} is a {kind} link (to "
                               f"{_short_repr(member.linkname, 120)}); CIFAR-10 holds only "
                               "regular files")
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE):
        raise CIFARFormatError(f"{source}: member {shown} has tar type {member.type!r}, not "
                               "a regular file or folder; refused")
    if name in seen:
        raise CIFARFormatError(f"{source}: member {shown} appears twice")
    seen.add(name)
    if member.isdir():
        if name != FOLDER:
            raise CIFARFormatError(f"{source}: unexpected folder {shown} (CIFAR-10 has only "
                                   f"{FOLDER}/)")
        return None
    inner = name[len(FOLDER) + 1:] if name.startswith(FOLDER + "/") else None
    if inner not in _MAX_MEMBER_BYTES:
        raise CIFARFormatError(f"{source}: unexpected member {shown}; CIFAR-10 holds "
                               f"{FOLDER}/ with {', '.join(sorted(_MAX_MEMBER_BYTES))}")
    if member.size > _MAX_MEMBER_BYTES[inner]:
        raise CIFARFormatError(f"{source}: member {shown} declares {member.size:,} bytes, "
                               f"more than the {_MAX_MEMBER_BYTES[inner]:,} it can be; refused")
    return inner


class _CappedReader:
    """A read-only stream that raises CIFARFormatError past ``limit`` bytes."""

    def __init__(self, stream, limit: int, source: str):
        self.stream, self.limit, self.source = stream, limit, source
        self.count = 0

    def read(self, size=-1):
        want = self.limit + 1 - self.count
        data = self.stream.read(want if size is None or size < 0 else min(size, want))
        self.count += len(data)
        if self.count > self.limit:
            raise CIFARFormatError(f"{self.source}: inflates to more than "
                                   f"{self.limit:,} bytes; the real archive inflates to "
                                   "about 186.2 MB")
        return data

    def drain(self):
        while self.read(_READ_CHUNK):
            pass


def read_archive(fileobj, source: str = "<archive>"):
    """Read ``cifar-10-python.tar.gz`` from the binary stream ``fileobj`` (read once, in
    order; nothing is written to disk).

    Returns Keras's arrays ``(x_train, y_train), (x_test, y_test)``: x uint8
    ``(N, 32, 32, 3)``, y uint8 ``(N, 1)``; the training batches in order 1-5. source names the
    archive in messages. Raises CIFARFormatError for a corrupt or unexpected archive (see the
    module docstring for every check), OSError if the stream cannot be read.
    """
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    meta_seen = False
    seen: set = set()
    try:
        with gzip.GzipFile(fileobj=fileobj, mode="rb") as inflating:
            tar_stream = _CappedReader(inflating, _MAX_INFLATED_BYTES, source)
            with tarfile.open(fileobj=tar_stream, mode="r|") as tar:
                for member in tar:
                    inner = _member_name(member, seen, source)
                    if inner is None or inner == README:
                        continue
                    data = tar.extractfile(member).read(member.size)
                    if len(data) != member.size:
                        raise CIFARFormatError(f"{source}: member {member.name!r} ends after "
                                               f"{len(data)} of {member.size} bytes")
                    where = f"{source}: {member.name}"
                    if inner == META:
                        _parse_meta(data, where)
                        meta_seen = True
                    else:
                        found[inner] = parse_batch(data, where)
            # Reading to the end checks gzip's CRC and length of the whole stream.
            tar_stream.drain()
    except CIFARFormatError:
        raise
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        raise CIFARFormatError(f"{source}: not a readable .tar.gz ({type(e).__name__}: "
                               f"{_clip(str(e))})") from None
    missing = [n for n in (*TRAIN_BATCHES, TEST_BATCH) if n not in found]
    if not meta_seen:
        missing.append(META)
    if missing:
        raise CIFARFormatError(f"{source}: {FOLDER}/ has no {', '.join(missing)}; not the "
                               "CIFAR-10 archive (or a truncated one)")
    return _join([found[n] for n in TRAIN_BATCHES]), _join([found[TEST_BATCH]])


def _join(batches):
    """Batches of (x (n, 32, 32, 3) views, y (n,)) -> one C-ordered x and y (N, 1), as Keras."""
    total = sum(len(y) for _x, y in batches)
    x = np.empty((total, *IMAGE_SHAPE), dtype=np.uint8)
    y = np.empty((total, 1), dtype=np.uint8)
    start = 0
    for xb, yb in batches:
        x[start:start + len(yb)] = xb
        y[start:start + len(yb), 0] = yb
        start += len(yb)
    return x, y


CIFAR10 = Dataset(
    name="CIFAR-10",
    subdir="cifar-10",
    files=(archive_file(ARCHIVE_NAME, ARCHIVE_SHA256, ARCHIVE_SIZE, read_archive),),
    mirrors=(
        "https://www.cs.toronto.edu/~kriz/",  # the authors' own
        "https://dataset.bj.bcebos.com/cifar/",  # PaddlePaddle's copy (same md5)
    ),
    mirrors_env="MINICNN_CIFAR10_MIRRORS",
)


def load_data(data_dir: str | os.PathLike | None = None,
              mirrors: str | Sequence[str] | None = None, verbose: int = 1):
    """Load CIFAR-10 as ``(x_train, y_train), (x_test, y_test)``, like Keras.

    Returns uint8 arrays: x_train ``(50000, 32, 32, 3)`` (channels last), y_train
    ``(50000, 1)`` with classes 0-9 (names in ``CLASS_NAMES``), x_test ``(10000, 32, 32, 3)``,
    y_test ``(10000, 1)``; pixels 0-255.
    data_dir: root cache folder (the archive goes in ``<data_dir>/cifar-10/``); default
    ``$MINICNN_DATA_DIR``, else ``$XDG_CACHE_HOME/minicnn``, else ``~/.cache/minicnn``.
    mirrors: base URLs to download from, replacing the defaults and
    ``$MINICNN_CIFAR10_MIRRORS``. verbose: 0 silent, 1 a progress bar on a terminal.
    The archive (170 MB) is verified (SHA-256) and read whole on every call, about as long as
    inflating it takes; its batches are unpickled safely (see the module docstring).
    Raises minicnn.datasets.DatasetDownloadError if the archive is missing and no mirror works,
    CIFARFormatError if it is not the CIFAR-10 archive.
    """
    return load_dataset(CIFAR10, data_dir=data_dir, mirrors=mirrors, verbose=verbose)
