"""Property-based tests of the IDX reader (issue 12): random bytes, valid files of random type
and shape, and mutations of valid files (raw and gzip). Every outcome is the right array or an
IDXFormatError, within a memory budget. Profiles: see property_settings."""

from __future__ import annotations

import gzip

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from property_settings import Budgets, examples, reporting, settings

from minicnn.datasets.idx import _IDX_DTYPES, IDXFormatError, parse_idx, read_idx, read_payload

budget = Budgets()
_report = reporting(budget)


def header(code, dims):
    return bytes([0, 0, code, len(dims)]) + b"".join(int(d).to_bytes(4, "big") for d in dims)


@st.composite
def idx_files(draw):
    """(payload bytes, expected array): a valid IDX file of random type and small shape."""
    code = draw(st.sampled_from(sorted(_IDX_DTYPES)))
    dtype = _IDX_DTYPES[code]
    shape = tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=4)))
    count = int(np.prod(shape, dtype=np.int64))
    data = draw(st.binary(min_size=count * dtype.itemsize, max_size=count * dtype.itemsize))
    array = np.frombuffer(data, dtype=dtype).reshape(shape)
    return header(code, shape) + data, array


@st.composite
def mutations(draw, payload: bytes):
    """payload with a few random edits: byte flips, a cut, inserted or appended bytes."""
    data = bytearray(payload)
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "append"]))
        position = draw(st.integers(0, max(len(data) - 1, 0)))
        if kind == "flip" and data:
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "set" and data:
            data[position] = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF]))
        elif kind == "cut":
            del data[position:]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
        else:
            data += draw(st.binary(min_size=1, max_size=64))
    return bytes(data)


def check_outcome(outcome, payload, source="<bytes>"):
    """A parsed array must be exactly what the bytes say; anything else an IDXFormatError."""
    if isinstance(outcome, np.ndarray):
        ndim = payload[3]
        dims = tuple(int.from_bytes(payload[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
        dtype = _IDX_DTYPES[payload[2]]
        assert outcome.shape == dims and outcome.dtype == dtype.newbyteorder("=")
        assert outcome.tobytes() == np.frombuffer(payload, dtype, offset=4 + 4 * ndim).astype(
            dtype.newbyteorder("=")).tobytes()
    else:
        assert isinstance(outcome, IDXFormatError), repr(outcome)
        assert source in str(outcome)


@settings(max_examples=examples(300))
@given(st.binary(max_size=300))
def test_random_bytes_parse_or_raise_idx_format_error(payload):
    outcome = budget("parse_idx(random bytes)").run(lambda: parse_idx(payload, "x.idx"),
                                                    1e6 + 4 * len(payload))
    check_outcome(outcome, payload, "x.idx")


@settings(max_examples=examples(200))
@given(idx_files())
def test_valid_files_round_trip(file):
    payload, expected = file
    got = budget("parse_idx(valid)").run(lambda: parse_idx(payload), 1e6 + 4 * len(payload))
    np.testing.assert_array_equal(got, expected)
    assert got.dtype == expected.dtype.newbyteorder("=")


@settings(max_examples=examples(300))
@given(st.data())
def test_mutated_files_parse_or_raise(data):
    payload, _ = data.draw(idx_files())
    mutated = data.draw(mutations(payload))
    outcome = budget("parse_idx(mutated)").run(lambda: parse_idx(mutated, "m.idx"),
                                               1e6 + 4 * len(mutated))
    check_outcome(outcome, mutated, "m.idx")


@settings(max_examples=examples(120))
@given(st.data())
def test_mutated_gzip_files_read_or_raise(tmp_path_factory, data):
    payload, _ = data.draw(idx_files())
    compressed = gzip.compress(payload, mtime=0)
    mutated = data.draw(st.one_of(st.just(compressed), mutations(compressed)))
    path = tmp_path_factory.mktemp("gz") / "file.gz"
    path.write_bytes(mutated)
    outcome = budget("read_idx(mutated gzip)").run(lambda: read_idx(path), 4e6)
    if isinstance(outcome, np.ndarray):
        check_outcome(outcome, bytes(read_payload(path)), str(path))
    else:
        assert isinstance(outcome, IDXFormatError), repr(outcome)
        assert str(path) in str(outcome)


@settings(max_examples=examples(60))
@given(dims=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=255),
       code=st.sampled_from(sorted(_IDX_DTYPES)), tail=st.binary(max_size=64))
def test_headers_claiming_anything_cost_nothing(dims, code, tail):
    # Dimensions up to 2^32 - 1 each and up to 255 of them: sizes past 2^64 must not wrap.
    payload = header(code, dims) + tail
    outcome = budget("parse_idx(huge claims)").run(lambda: parse_idx(payload), 1e6 + 8 * len(
        payload))
    check_outcome(outcome, payload)


@settings(max_examples=examples(40))
@given(dims=st.lists(st.integers(1, 2**16), min_size=1, max_size=3),
       zeros=st.integers(0, 4_000_000))
def test_gzip_streams_longer_than_their_header_stop_early(tmp_path_factory, dims, zeros):
    # A header announcing a few bytes, followed by megabytes of zeros (a tiny gzip stream).
    body = header(0x08, dims[:1]) + bytes(min(dims[0], 16)) + bytes(zeros)
    path = tmp_path_factory.mktemp("bomb") / "bomb.gz"
    path.write_bytes(gzip.compress(body, compresslevel=1, mtime=0))
    limit = 8 + dims[0]
    outcome = budget("read_idx(gzip longer than its header)").run(lambda: read_idx(path),
                                                                  4e6 + 2 * limit)
    if isinstance(outcome, np.ndarray):
        assert len(body) == limit and outcome.shape == (dims[0],)
    else:
        assert isinstance(outcome, IDXFormatError), repr(outcome)
