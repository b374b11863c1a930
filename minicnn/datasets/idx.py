"""Reader for the IDX file format used by MNIST and Fashion-MNIST.

An IDX file is a 4-byte magic number ``0x00 0x00 <dtype code> <ndim>``, then ``ndim``
big-endian uint32 dimension sizes, then the data in C order, big-endian. MNIST images
are magic 2051 (``0x00000803``: uint8, 3 dimensions), labels magic 2049 (``0x00000801``:
uint8, 1 dimension). Files may be gzip-compressed; compression is detected from the
content (gzip magic ``1f 8b``), not from the file name.

Every problem with a file raises :class:`IDXFormatError` naming the file and what is wrong,
so a truncated or malformed file never surfaces as a NumPy reshape error.
"""

from __future__ import annotations

import math
import os
import zlib

import numpy as np

__all__ = [
    "IDXFormatError",
    "IMAGES_MAGIC",
    "LABELS_MAGIC",
    "check_pair",
    "parse_idx",
    "read_idx",
    "read_payload",
]

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

_GZIP_MAGIC = b"\x1f\x8b"
# IDX type code -> big-endian NumPy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KINDS = {"images": IMAGES_MAGIC, "labels": LABELS_MAGIC}
_READ_CHUNK = 1 << 20
_INFLATE_STEP = 8 << 20
_MAX_HEADER = 4 + 4 * 255  # magic + 255 dimensions
# NumPy 1 arrays have at most 32 axes (NumPy 2: 64); real IDX files have 1 to 4.
MAX_DIMENSIONS = 32
# read_idx refuses payloads larger than this unless given another max_size: MNIST's training
# images are 47 MB, EMNIST's largest file about 0.6 GB; a hostile gzip stream stops here.
MAX_PAYLOAD_BYTES = 2 << 30


class IDXFormatError(ValueError):
    """An IDX file (or its gzip wrapper) is truncated or malformed; the message names the file."""


def read_payload(path: str | os.PathLike, max_size: int | None = None) -> bytearray:
    """Read a file and return its IDX payload, gunzipping it if it is gzip-compressed.

    path: a ``.gz`` or raw IDX file (detected from the content). max_size: refuse payloads
    larger than this many bytes (protects against a hostile or broken gzip stream).
    Returns a writable ``bytearray`` so arrays made from it are writable without a copy.
    Raises IDXFormatError for a truncated or corrupt gzip stream or an oversized payload,
    OSError if the file cannot be read.
    """
    with open(path, "rb") as f:
        head = f.read(2)
        f.seek(0)
        if head != _GZIP_MAGIC:
            # In chunks: f.read(max_size + 1) would allocate max_size bytes up front, 2 GiB
            # for a 20-byte file.
            data = bytearray()
            while max_size is None or len(data) <= max_size:
                want = _READ_CHUNK if max_size is None else min(_READ_CHUNK,
                                                                 max_size + 1 - len(data))
                chunk = f.read(want)
                if not chunk:
                    break
                data += chunk
            if max_size is not None and len(data) > max_size:
                raise IDXFormatError(
                    f"{os.fspath(path)}: file is larger than the expected {max_size} bytes"
                )
            return data
        return _gunzip(f, os.fspath(path), max_size)


def _gunzip(f, name: str, max_size: int | None) -> bytearray:
    # Streamed inflate into one bytearray: as fast as gzip.decompress (~0.2 s for MNIST's
    # 47 MB training images) but the result is writable, so arrays need no extra copy, and
    # max_size bounds memory before a hostile stream can inflate without limit.
    out = bytearray()
    # 16 + MAX_WBITS: expect a gzip header and check the CRC32/ISIZE trailer.
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    consumed = 0
    members = 0
    between = False  # True after a member ended: only padding or a new member may follow
    pending = b""
    while True:
        if len(pending) < 2:
            more = f.read(_READ_CHUNK)
            if not more and not pending:
                break
            consumed += len(more)
            pending += more
        if between:
            if pending.strip(b"\x00") == b"":
                pending = b""  # NUL padding after the last member is tolerated, as gzip does
                continue
            if pending[:2] != _GZIP_MAGIC:
                raise IDXFormatError(
                    f"{name}: unexpected bytes after gzip member {members} (not gzip data)"
                )
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            between = False
        # Inflate at most _INFLATE_STEP bytes per call (one compressed MiB can inflate to a
        # GiB), and never more than one byte past the smaller of max_size and the size the
        # IDX header announces, so a hostile stream stops as soon as it overflows.
        cap = max_size
        declared = _declared_size(out)
        if declared is not None:
            cap = declared if cap is None else min(cap, declared)
        limit = _INFLATE_STEP if cap is None else max(min(cap + 1 - len(out), _INFLATE_STEP), 1)
        if declared is None and len(out) < _MAX_HEADER:
            limit = _MAX_HEADER - len(out)  # first the header, to learn the size it announces
        try:
            out += d.decompress(pending, limit)
        except zlib.error as e:
            raise IDXFormatError(f"{name}: corrupt gzip data ({e})") from None
        if max_size is not None and len(out) > max_size:
            raise IDXFormatError(
                f"{name}: decompressed data is larger than the expected {max_size} bytes"
            )
        declared = _declared_size(out)
        if declared is not None and len(out) > declared:
            # More data than the header announces: the file is broken, whatever follows.
            raise IDXFormatError(
                f"{name}: decompressed data is longer than the {declared} bytes its IDX "
                "header announces"
            )
        if d.eof:
            members += 1
            between = True
            pending = d.unused_data
        else:
            pending = d.unconsumed_tail
    if not between:
        raise IDXFormatError(
            f"{name}: truncated gzip stream (ends after {consumed} compressed bytes, "
            f"{len(out)} bytes decompressed); delete the file and download it again"
        )
    return out


def _declared_size(data: bytes | bytearray) -> int | None:
    """Total payload size an IDX header announces, once enough of it is known, else None."""
    if len(data) < 4 or data[0] or data[1]:
        return None
    dtype, ndim = _IDX_DTYPES.get(data[2]), data[3]
    if dtype is None or ndim > MAX_DIMENSIONS or len(data) < 4 + 4 * ndim:
        return None
    dims = (int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return 4 + 4 * ndim + math.prod(dims) * dtype.itemsize


def _describe_magic(magic: int) -> str:
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    dtype = _IDX_DTYPES.get(code)
    kind = dtype.newbyteorder("=").name if dtype is not None else f"unknown type 0x{code:02x}"
    return f"{magic} ({kind}, {ndim} dimension{'s' if ndim != 1 else ''})"


def parse_idx(
    payload: bytes | bytearray | memoryview, source: str = "<bytes>", kind: str | None = None
) -> np.ndarray:
    """Parse an uncompressed IDX payload into an array of its stored shape and type.

    payload: the raw IDX bytes. source: name used in error messages (usually the path).
    kind: ``'images'`` to require magic 2051 (uint8, 3-D), ``'labels'`` to require magic
    2049 (uint8, 1-D), or None to accept any valid IDX type.
    Returns e.g. images ``(N, rows, cols) uint8`` or labels ``(N,) uint8``; multi-byte types
    are converted to native byte order. The array shares memory with ``payload`` when the
    type is one byte wide (writable if ``payload`` is a bytearray).
    Raises IDXFormatError if the header or the length is wrong.
    """
    if kind is not None and kind not in _KINDS:
        raise ValueError(f"parse_idx: kind must be 'images', 'labels' or None, got {kind!r}")
    n = len(payload)
    if n < 4:
        raise IDXFormatError(
            f"{source}: file is only {n} bytes long, too short for an IDX header (4 bytes)"
        )
    magic = int.from_bytes(payload[:4], "big")
    if magic >> 16 != 0:
        raise IDXFormatError(
            f"{source}: not an IDX file: magic number is 0x{magic:08x}, its first two bytes "
            "must be zero (expected 2051 for images or 2049 for labels)"
        )
    if kind is not None and magic != _KINDS[kind]:
        raise IDXFormatError(
            f"{source}: expected an IDX {kind} file with magic number "
            f"{_describe_magic(_KINDS[kind])}, got {_describe_magic(magic)}"
        )
    code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    dtype = _IDX_DTYPES.get(code)
    if dtype is None:
        raise IDXFormatError(
            f"{source}: unknown IDX data type byte 0x{code:02x} in magic number {magic}; "
            f"valid type bytes are {', '.join(f'0x{c:02x}' for c in _IDX_DTYPES)}"
        )
    if ndim > MAX_DIMENSIONS:
        raise IDXFormatError(
            f"{source}: the magic number {magic} declares {ndim} dimensions; IDX files have "
            f"1 to 4 (at most {MAX_DIMENSIONS} are read)"
        )
    header = 4 + 4 * ndim
    if n < header:
        raise IDXFormatError(
            f"{source}: truncated header: {ndim} dimensions need a {header}-byte header, "
            f"file has {n} bytes"
        )
    shape = tuple(int.from_bytes(payload[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    # Python ints: NumPy's int64 product wraps (2^22 * 2^22 * 2^20 -> 0) and would let a
    # 16-byte file pass the length check.
    expected = math.prod(shape) * dtype.itemsize
    actual = n - header
    if actual != expected:
        dims = "x".join(map(str, shape)) or "scalar"
        what = "truncated" if actual < expected else f"{actual - expected} extra bytes at the end"
        raise IDXFormatError(
            f"{source}: {what}: header says {dims} {dtype.newbyteorder('=').name} = "
            f"{expected} data bytes, file has {actual} data bytes after the {header}-byte header"
        )
    if math.prod(d for d in shape if d) * dtype.itemsize >= 2**63:
        # NumPy refuses such a shape even when a zero makes it empty.
        raise IDXFormatError(
            f"{source}: the header's dimensions {'x'.join(map(str, shape))} are too large for "
            "any array"
        )
    arr = np.frombuffer(payload, dtype=dtype, count=expected // dtype.itemsize, offset=header)
    arr = arr.reshape(shape)
    if dtype.itemsize > 1:
        arr = arr.astype(dtype.newbyteorder("="))
    return arr


def read_idx(path: str | os.PathLike, kind: str | None = None,
             max_size: int | None = MAX_PAYLOAD_BYTES) -> np.ndarray:
    """Read an IDX file, gzip-compressed or raw, into a NumPy array.

    path: e.g. ``train-images-idx3-ubyte.gz``. kind: ``'images'``, ``'labels'`` or None
    (see :func:`parse_idx`). max_size: the largest payload accepted, in bytes (default
    MAX_PAYLOAD_BYTES, 2 GiB; None for no limit); memory stays below about twice it.
    Returns the array in its stored shape, e.g. MNIST training images ``(60000, 28, 28)
    uint8``. Raises IDXFormatError naming the file and the problem for a bad magic number,
    unknown type byte, truncated or oversized data, or broken gzip; OSError (e.g.
    IsADirectoryError) when the path cannot be read.
    """
    return parse_idx(read_payload(path, max_size), source=os.fspath(path), kind=kind)


def check_pair(images: np.ndarray, labels: np.ndarray, images_source: str,
               labels_source: str) -> None:
    """Check that an images array ``(N, ...)`` and a labels array ``(N,)`` have the same N.

    Raises IDXFormatError naming both files when the counts differ.
    """
    if images.shape[:1] != labels.shape[:1]:
        raise IDXFormatError(
            f"{images_source} holds {images.shape[0]} images but {labels_source} holds "
            f"{labels.shape[0]} labels; the pair must have the same count (mixed-up or "
            "partial files?)"
        )
