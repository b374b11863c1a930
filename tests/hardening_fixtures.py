"""Helpers for the hardening tests (issue 12): pictures that claim huge sizes in a few bytes,
and a memory meter. Imported by test_preprocessing, test_cli, test_server, test_property_*."""

from __future__ import annotations

import struct
import tracemalloc
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_claiming(width: int, height: int, color_type: int = 0) -> bytes:
    """A PNG of a few hundred bytes whose header claims width x height pixels (8-bit gray, or
    color_type 6 for RGBA) and whose data is all zeros: it decodes to a blank picture of that
    size, so it costs nothing to make and everything to decode naively."""
    channels = {0: 1, 2: 3, 6: 4}[color_type]
    ihdr = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = bytes(1 + width * channels)  # filter byte 0 + zero pixels
    # Compressing height rows of zeros takes a moment at most; the stream is tiny.
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    return (PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))


def png_header_only(width: int, height: int) -> bytes:
    """Just the signature and an IHDR claiming width x height: enough for a size check."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IEND", b"")


def traced_peak(function):
    """(result or the exception raised, peak bytes allocated while it ran), by tracemalloc:
    NumPy's buffers and Python objects are traced, Pillow's C-side image memory is not."""
    tracemalloc.start()
    try:
        try:
            result = function()
        except Exception as exc:  # returned for the caller to check
            result = exc
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
