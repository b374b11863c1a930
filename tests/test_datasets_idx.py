"""Tests of the IDX reader: values, compression detection, and every kind of malformed file."""

from __future__ import annotations

import dataclasses
import gzip

import numpy as np
import pytest

from minicnn.datasets import IDXFormatError, load_dataset, read_idx
from minicnn.datasets.idx import check_pair, parse_idx, read_payload

try:
    import datasets_fixtures as fx
except ImportError:  # tests/ is a package
    from tests import datasets_fixtures as fx


def header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)


@pytest.fixture
def images():
    return np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5) * 4


@pytest.mark.parametrize("compress", [False, True])
def test_reads_images_and_labels_raw_and_gzip(tmp_path, images, compress):
    labels = np.array([7, 0, 255], dtype=np.uint8)
    for name, arr, kind in (("img", images, "images"), ("lbl", labels, "labels")):
        data = fx.idx_bytes(arr)
        # The name says nothing: compression is detected from the content.
        p = tmp_path / f"{name}.bin"
        p.write_bytes(gzip.compress(data) if compress else data)
        out = read_idx(p, kind=kind)
        assert out.dtype == np.uint8 and out.shape == arr.shape
        np.testing.assert_array_equal(out, arr)
        np.testing.assert_array_equal(read_idx(str(p)), arr)
        assert out.flags.writeable


@pytest.mark.parametrize("code, dtype", [(0x09, ">i1"), (0x0B, ">i2"), (0x0C, ">i4"),
                                         (0x0D, ">f4"), (0x0E, ">f8")])
def test_other_idx_types_are_big_endian_converted_to_native(tmp_path, code, dtype):
    arr = np.array([[-3, 1], [2, 100]], dtype=dtype)
    p = tmp_path / "x.idx"
    p.write_bytes(header(code, arr.shape) + arr.tobytes())
    out = read_idx(p)
    assert out.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(out, [[-3, 1], [2, 100]])


def test_multi_member_gzip_and_trailing_padding(tmp_path, images):
    data = fx.idx_bytes(images)
    p = tmp_path / "x.gz"
    p.write_bytes(gzip.compress(data[:10]) + gzip.compress(data[10:]) + b"\x00" * 7)
    np.testing.assert_array_equal(read_idx(p), images)


# Each malformed file -> words the error must contain.
def _cases(images):
    good = fx.idx_bytes(images)
    gz = gzip.compress(good)
    corrupt = bytearray(gz)
    corrupt[len(corrupt) // 2] ^= 0xFF
    crc = bytearray(gz)
    crc[-6] ^= 0xFF  # CRC32 trailer
    return {
        "empty": (b"", "too short for an IDX header"),
        "short header": (b"\x00\x00", "too short"),
        "bad magic": (b"\x12\x34" + good[2:], "not an IDX file"),
        "unknown type": (header(0x07, images.shape) + images.tobytes(), "unknown IDX data type"),
        "truncated header": (bytes([0, 0, 8, 3]) + (3).to_bytes(4, "big"), "truncated header"),
        "truncated data": (good[:-5], "truncated: header says 3x4x5 uint8 = 60 data bytes"),
        "extra bytes": (good + b"\x01\x02", "2 extra bytes"),
        "truncated gzip": (gz[: len(gz) // 2], "truncated gzip stream"),
        "corrupt gzip": (bytes(corrupt), "corrupt gzip data"),
        "bad gzip crc": (bytes(crc), "corrupt gzip data"),
        "garbage after gzip": (gz + b"junk", "unexpected bytes after gzip member"),
    }


@pytest.mark.parametrize("case", list(_cases(np.zeros((3, 4, 5), np.uint8))))
def test_malformed_files_raise_clear_errors(tmp_path, images, case):
    data, words = _cases(images)[case]
    p = tmp_path / "train-images-idx3-ubyte.gz"
    p.write_bytes(data)
    with pytest.raises(IDXFormatError) as ei:
        read_idx(p)
    msg = str(ei.value)
    assert str(p) in msg, msg
    assert words in msg, msg
    assert isinstance(ei.value, ValueError)


def test_wrong_kind_names_both_magic_numbers(tmp_path):
    p = tmp_path / "labels.idx"
    p.write_bytes(fx.idx_bytes(np.array([1, 2, 3], np.uint8)))
    with pytest.raises(IDXFormatError, match=r"expected an IDX images file with magic number "
                                             r"2051 \(uint8, 3 dimensions\), got 2049 "
                                             r"\(uint8, 1 dimension\)"):
        read_idx(p, kind="images")
    assert read_idx(p, kind="labels").tolist() == [1, 2, 3]
    with pytest.raises(ValueError, match="kind must be"):
        read_idx(p, kind="pictures")


def test_max_size_stops_oversized_payloads(tmp_path, images):
    data = fx.idx_bytes(images)
    for name, content in (("a.gz", gzip.compress(data)), ("a.raw", data)):
        p = tmp_path / name
        p.write_bytes(content)
        assert bytes(read_payload(p, max_size=len(data))) == data
        with pytest.raises(IDXFormatError, match=f"larger than the expected {len(data) - 1}"):
            read_payload(p, max_size=len(data) - 1)


def test_pair_counts_must_agree(images):
    check_pair(images, np.zeros(3, np.uint8), "i", "l")
    with pytest.raises(IDXFormatError, match="img.gz holds 3 images but lbl.gz holds 4 labels"):
        check_pair(images, np.zeros(4, np.uint8), "img.gz", "lbl.gz")


def test_parse_idx_shares_memory_with_a_bytearray(images):
    buf = bytearray(fx.idx_bytes(images))
    out = parse_idx(buf, kind="images")
    out[0, 0, 0] = 99
    assert buf[16] == 99  # no copy of a 47 MB payload on every load


def test_mismatched_pair_in_a_dataset_is_reported(tmp_path):
    # Files with valid checksums whose counts disagree: load_dataset names both files.
    tiny = fx.make_tiny_set(n_train=6, n_test=4)
    other = fx.make_tiny_set(n_train=5, n_test=4, seed=1)
    tiny.payloads[fx.NAMES[1]] = other.payloads[fx.NAMES[1]]
    tiny.gz[fx.NAMES[1]] = other.gz[fx.NAMES[1]]
    spec = tiny.spec(["http://127.0.0.1:9/"])
    # The declared payload size follows the label file actually used.
    files = list(spec.files)
    files[1] = dataclasses.replace(files[1], size=len(other.payloads[fx.NAMES[1]]))
    spec = dataclasses.replace(spec, files=tuple(files))
    tiny.write_files(tmp_path / "tiny")
    with pytest.raises(IDXFormatError, match="holds 6 images but .*holds 5 labels"):
        load_dataset(spec, data_dir=tmp_path, verbose=0)


# ---- sizes that overflow, absurd dimensions, inflation bombs (issue 12) ------------------------
def test_dimensions_whose_product_overflows_int64_are_a_format_error(tmp_path):
    # 2^22 * 2^22 * 2^20 = 2^64: an int64 product wraps to 0 and a 16-byte file looked complete.
    p = tmp_path / "overflow.idx"
    p.write_bytes(header(0x08, (2**22, 2**22, 2**20)))
    with pytest.raises(IDXFormatError, match=r"truncated: header says 4194304x4194304x1048576"):
        read_idx(p)
    with pytest.raises(IDXFormatError, match="truncated"):
        parse_idx(header(0x0D, (2**32 - 1,) * 4))


def test_more_dimensions_than_numpy_allows_is_a_format_error():
    with pytest.raises(IDXFormatError, match="declares 255 dimensions"):
        parse_idx(header(0x08, (1,) * 255))
    with pytest.raises(IDXFormatError, match="declares 33 dimensions"):
        parse_idx(header(0x08, (1,) * 33))
    assert parse_idx(header(0x08, (1,) * 32) + b"\x07").shape == (1,) * 32


def test_gzip_bomb_stops_at_the_size_the_header_announces(tmp_path):
    # 10 labels announced, 200 MB of zeros after them: inflation stops one byte past 18 bytes.
    p = tmp_path / "bomb.gz"
    with gzip.open(p, "wb", compresslevel=9) as f:
        f.write(header(0x08, (10,)) + bytes(10))
        for _ in range(200):
            f.write(bytes(1 << 20))
    assert p.stat().st_size < 300_000
    with pytest.raises(IDXFormatError, match="longer than the 18 bytes its IDX header announces"):
        read_payload(p)
    with pytest.raises(IDXFormatError, match="longer than the 18 bytes"):
        read_idx(p)


def test_read_idx_refuses_payloads_over_max_size(tmp_path):
    p = tmp_path / "big.gz"
    p.write_bytes(gzip.compress(header(0x08, (1000,)) + bytes(1000)))
    assert read_idx(p, max_size=1008).shape == (1000,)
    with pytest.raises(IDXFormatError, match="larger than the expected 1007 bytes"):
        read_idx(p, max_size=1007)


def test_a_folder_is_an_os_error_not_a_format_error(tmp_path):
    with pytest.raises(IsADirectoryError):
        read_idx(tmp_path)


# Found by the property tests (tests/test_property_idx.py):
def test_an_empty_shape_whose_other_dimensions_are_huge_is_a_format_error():
    # 0 x 347 x ... x 49422: zero bytes of data, but NumPy refuses the shape.
    with pytest.raises(IDXFormatError, match="too large for any array"):
        parse_idx(header(0x08, (0, 347, 3487, 9120, 16912, 49422)))


def test_reading_a_small_raw_file_allocates_little(tmp_path):
    # f.read(max_size + 1) allocated max_size (2 GiB) up front for a 25-byte file.
    import tracemalloc

    p = tmp_path / "small.idx"
    p.write_bytes(header(0x08, (3,)) + b"abc")
    tracemalloc.start()
    try:
        assert read_idx(p).tolist() == [97, 98, 99]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4e6, peak
