"""Property-based tests of the model-file loader (issue 12): mutations of a valid file (bytes
flipped, cut or inserted; members replaced; the JSON header's values replaced by random JSON)
and random bytes. Every outcome is the saved model itself (same weights, same predictions) or
a ValueError naming the file, within a memory budget. Profiles: see property_settings."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from property_settings import Budgets, examples, reporting, settings

import minicnn
from minicnn import layers, models

budget = Budgets()
_report = reporting(budget)
MEMORY = 40e6  # bytes; the model is ~10 KB, a file may claim gigabytes


def _make_saved():
    minicnn.set_random_seed(3)
    model = models.Sequential([
        layers.Conv2D(3, 3, activation="relu", input_shape=(8, 8, 1)),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(4, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.random((6, 8, 8, 1), dtype=np.float32)
    model.fit(x, rng.integers(0, 4, 6), epochs=1, verbose=0)
    return model, x


SAVED = {}


def saved(tmp_path_factory):
    """(file bytes, model, x, expected predictions), made once."""
    if not SAVED:
        model, x = _make_saved()
        path = tmp_path_factory.mktemp("saved") / "m.npz"
        model.save(path)
        SAVED.update(data=path.read_bytes(), model=model, x=x, expected=model.predict(x))
    return SAVED


def check_outcome(outcome, path, reference):
    """The loaded model must be the saved one; anything else a ValueError naming the file."""
    if isinstance(outcome, models.Sequential):
        for a, b in zip(outcome.get_weights(), reference["model"].get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(outcome.predict(reference["x"]), reference["expected"])
    else:
        assert isinstance(outcome, ValueError), repr(outcome)
        assert str(outcome).startswith("load_model: ") and str(path) in str(outcome), outcome


def load(path):
    return models.load_model(path)


@st.composite
def byte_mutations(draw, data: bytes):
    data = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "zero-run"]))
        position = draw(st.integers(0, len(data) - 1))
        if kind == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[position:position + draw(st.integers(1, 64))]
        elif kind == "insert":
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
        else:
            data[position:position + 8] = bytes(8)
    return bytes(data)


@settings(max_examples=examples(150))
@given(st.data())
def test_byte_mutations_load_the_same_model_or_raise(tmp_path_factory, data):
    reference = saved(tmp_path_factory)
    mutated = data.draw(byte_mutations(reference["data"]))
    path = tmp_path_factory.mktemp("m") / "m.npz"
    path.write_bytes(mutated)
    outcome = budget("load_model(byte mutations)").run(lambda: load(path), MEMORY)
    check_outcome(outcome, path, reference)


@settings(max_examples=examples(100))
@given(st.binary(max_size=2000), st.sampled_from([b"", b"PK\x03\x04", b"\x93NUMPY"]))
def test_random_bytes_are_refused(tmp_path_factory, tail, start):
    path = tmp_path_factory.mktemp("r") / "r.npz"
    path.write_bytes(start + tail)
    outcome = budget("load_model(random bytes)").run(lambda: load(path), MEMORY)
    assert isinstance(outcome, ValueError) and str(path) in str(outcome), repr(outcome)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12)
# Numbers a hostile header would use to ask for memory or break arithmetic.
BIG = st.sampled_from([0, -1, 1, 2, 3, 10**6, 3_000_000, 2**31, 2**63, 10**30, 1e300, -1e300])


def _paths(value, prefix=()):
    """Every path into a JSON value (lists by index, dicts by key)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


def _replace(value, path, new):
    if not path:
        return new
    value[path[0]] = _replace(value[path[0]], path[1:], new)
    return value


def _rewrite_header(data: bytes, change) -> bytes:
    """The file with its JSON header changed by change(header) -> header (any JSON)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            content = src.read(info)
            if info.filename == "__minicnn_header__.npy":
                header = json.loads(np.load(io.BytesIO(content)).tobytes())
                raw = json.dumps(change(header)).encode()
                buffer = io.BytesIO()
                np.save(buffer, np.frombuffer(raw, np.uint8))
                content = buffer.getvalue()
            dst.writestr(info.filename, content)
    return out.getvalue()


@settings(max_examples=examples(150))
@given(st.data())
def test_header_values_replaced_by_random_json_load_or_raise(tmp_path_factory, data):
    reference = saved(tmp_path_factory)
    header = json.loads(np.load(io.BytesIO(zipfile.ZipFile(io.BytesIO(reference["data"])).read(
        "__minicnn_header__.npy"))).tobytes())
    paths = sorted(_paths(header), key=repr)
    edits = data.draw(st.lists(st.tuples(st.sampled_from(paths), st.one_of(JSON, BIG)),
                               min_size=1, max_size=3))

    def change(h):
        for path, new in edits:
            try:
                h = _replace(h, path, new)
            except (KeyError, IndexError, TypeError):
                pass  # an earlier edit removed that path
        return h

    path = tmp_path_factory.mktemp("h") / "h.npz"
    path.write_bytes(_rewrite_header(reference["data"], change))
    outcome = budget("load_model(random header values)").run(lambda: load(path), MEMORY)
    if isinstance(outcome, models.Sequential):
        # Some edits change nothing that matters (a name, a learning rate, metrics): the
        # weights are still the saved ones.
        for a, b in zip(outcome.get_weights(), reference["model"].get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    else:
        assert isinstance(outcome, ValueError), repr(outcome)
        assert str(path) in str(outcome), outcome


@settings(max_examples=examples(60))
@given(member=st.integers(0, 20), shape=st.lists(st.integers(0, 2**20), max_size=4),
       dtype=st.sampled_from(["<f4", "<f8", "<i4", "|u1", "<c8", "|b1", ">f4"]),
       compress=st.booleans())
def test_members_replaced_by_arrays_claiming_any_shape(tmp_path_factory, member, shape, dtype,
                                                       compress):
    """A member's .npy header claims a random shape (up to 2^80 bytes) over a few bytes of
    data: it must be refused from the headers, before anything is inflated."""
    reference = saved(tmp_path_factory)
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(io.BytesIO(reference["data"])) as src, zipfile.ZipFile(
            out, "w", method) as dst:
        infos = src.infolist()
        target = infos[member % len(infos)].filename
        for info in infos:
            content = src.read(info)
            if info.filename == target:
                head = io.BytesIO()
                np.lib.format.write_array_header_1_0(
                    head, {"descr": dtype, "fortran_order": False, "shape": tuple(shape)})
                content = head.getvalue() + bytes(64)
            dst.writestr(info.filename, content)
    path = tmp_path_factory.mktemp("s") / "s.npz"
    path.write_bytes(out.getvalue())
    outcome = budget("load_model(members claiming any shape)").run(lambda: load(path), MEMORY)
    check_outcome(outcome, path, reference)
