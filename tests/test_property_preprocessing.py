"""Property-based tests of preprocess_digit and load_image (issue 12): random arrays of every
accepted dtype and layout (and some that are not accepted), random bytes and mutated PNG/JPEG
files. Every outcome is an MNIST-style (28, 28) float32 image in [0, 1] with its brightest
pixel 1, or the module's own errors (ValueError, TypeError; FileNotFoundError never, the
files exist), within a memory budget. Profiles: see property_settings."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image
from property_settings import Budgets, examples, reporting, settings

from minicnn.preprocessing import load_image, preprocess_digit

budget = Budgets()
_report = reporting(budget)


def check_outcome(outcome):
    if isinstance(outcome, np.ndarray):
        assert outcome.shape == (28, 28) and outcome.dtype == np.float32
        assert np.isfinite(outcome).all()
        assert outcome.min() >= 0.0 and outcome.max() <= 1.0
        assert outcome.max() == pytest.approx(1.0)  # the MNIST recipe: strokes reach 255
    else:
        assert isinstance(outcome, (ValueError, TypeError)), repr(outcome)
        assert not isinstance(outcome, FileNotFoundError)
        assert "preprocess_digit" in str(outcome) or "load_image" in str(outcome), outcome


DTYPES = st.sampled_from([np.uint8, np.uint16, np.int16, np.int64, np.float32, np.float64,
                          np.bool_, np.complex64, np.uint32])
SHAPES = st.one_of(
    hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=64),
    st.tuples(st.integers(1, 48), st.integers(1, 48), st.sampled_from([1, 2, 3, 4, 5])),
    hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=6))


@st.composite
def arrays(draw):
    dtype = np.dtype(draw(DTYPES))
    shape = draw(SHAPES)
    if dtype.kind == "f":
        elements = st.floats(-0.125, 1.125, width=dtype.itemsize * 8) | st.sampled_from(
            [0.0, 1.0, np.nan, np.inf])
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -3), min(info.max, 300)) | st.sampled_from(
            [0, int(info.max)])
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def drawings(draw):
    """A picture that often is a digit: a background level, strokes of another level."""
    h, w = draw(st.integers(8, 120)), draw(st.integers(8, 120))
    background, ink = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    picture = np.full((h, w), background, np.uint8)
    for _ in range(draw(st.integers(0, 4))):
        top, left = draw(st.integers(0, h - 1)), draw(st.integers(0, w - 1))
        picture[top:top + draw(st.integers(1, h)), left:left + draw(st.integers(1, 6))] = ink
    noise = draw(st.integers(0, 40))
    if noise:
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        picture = np.clip(picture + rng.integers(-noise, noise + 1, picture.shape), 0, 255)
    return picture.astype(np.uint8)


@settings(max_examples=examples(250))
@given(arrays())
def test_random_arrays_give_a_digit_or_a_clear_error(array):
    outcome = budget("preprocess_digit(random arrays)").run(lambda: preprocess_digit(array),
                                                            2e6 + 64 * array.size)
    check_outcome(outcome)


@settings(max_examples=examples(150))
@given(drawings())
def test_drawings_give_a_digit_or_blank(picture):
    outcome = budget("preprocess_digit(drawings)").run(lambda: preprocess_digit(picture),
                                                       2e6 + 64 * picture.size)
    check_outcome(outcome)
    if isinstance(outcome, ValueError):
        assert "looks blank" in str(outcome), outcome  # the only error a gray image can get


def _encoded(picture, fmt):
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format=fmt)
    return buffer.getvalue()


@st.composite
def mutated_files(draw):
    data = bytearray(_encoded(draw(drawings()), draw(st.sampled_from(["PNG", "JPEG"]))))
    for _ in range(draw(st.integers(0, 3))):
        position = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "cut", "insert"]))
        if kind == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif kind == "cut":
            del data[position:]
            if not data:
                data = bytearray(b"\x89")
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=16))
    return bytes(data)


@settings(max_examples=examples(150))
@given(st.one_of(mutated_files(), st.binary(max_size=400)))
def test_files_of_random_or_mutated_bytes_give_a_digit_or_a_clear_error(tmp_path_factory,
                                                                        data):
    path = tmp_path_factory.mktemp("img") / "picture.png"
    path.write_bytes(data)
    outcome = budget("preprocess_digit(mutated files)").run(lambda: preprocess_digit(path),
                                                            30e6)
    check_outcome(outcome)
    gray = budget("load_image(mutated files)").run(lambda: load_image(path), 30e6)
    if isinstance(gray, np.ndarray):
        assert gray.ndim == 2 and gray.dtype == np.float32
        assert np.isfinite(gray).all() and gray.min() >= 0 and gray.max() <= 1
    else:
        assert isinstance(gray, ValueError) and "load_image" in str(gray), repr(gray)
