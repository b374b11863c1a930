"""Keras padding rules: output lengths and where the padding goes (minicnn/ops/padding.py)."""

import numpy as np
import pytest

from minicnn.ops.padding import (
    check_pool_pads,
    conv_geometry,
    conv_output_length,
    output_hw,
    padding_amounts,
)

# (input, kernel, stride, padding) -> (output, pad_before, pad_after), worked out by hand from
# the TensorFlow/Keras definitions. 'same': out = ceil(in / s),
# total = max((out - 1) * s + k - in, 0), before = total // 2, after = total - before.
KERAS_TABLE = [
    # valid: (in - k) // s + 1, never padded
    (5, 3, 1, "valid", 3, 0, 0),
    (6, 3, 2, "valid", 2, 0, 0),
    (7, 3, 2, "valid", 3, 0, 0),
    (28, 3, 1, "valid", 26, 0, 0),
    (26, 2, 2, "valid", 13, 0, 0),
    (13, 2, 2, "valid", 6, 0, 0),
    (11, 2, 2, "valid", 5, 0, 0),
    (13, 6, 5, "valid", 2, 0, 0),  # the TF docs example: the last 3 columns are dropped
    (5, 5, 1, "valid", 1, 0, 0),
    (4, 1, 3, "valid", 2, 0, 0),
    (10, 4, 3, "valid", 3, 0, 0),
    (3, 2, 3, "valid", 1, 0, 0),
    # same, odd kernel, stride 1: centred
    (5, 3, 1, "same", 5, 1, 1),
    (28, 3, 1, "same", 28, 1, 1),
    (5, 5, 1, "same", 5, 2, 2),
    (9, 5, 3, "same", 3, 1, 1),
    (7, 3, 2, "same", 4, 1, 1),
    # same, odd total: the extra row/column goes after (bottom/right)
    (6, 3, 2, "same", 3, 0, 1),
    (28, 4, 1, "same", 28, 1, 2),
    (13, 2, 2, "same", 7, 0, 1),
    (13, 6, 5, "same", 3, 1, 2),  # the TF docs example
    (10, 4, 3, "same", 4, 1, 2),
    (8, 5, 3, "same", 3, 1, 2),
    (7, 2, 3, "same", 3, 0, 1),
    (11, 2, 2, "same", 6, 0, 1),
    # same, no padding needed (the formula's total would be negative or zero)
    (26, 2, 2, "same", 13, 0, 0),
    (4, 1, 3, "same", 2, 0, 0),
    (6, 1, 2, "same", 3, 0, 0),
    (3, 2, 3, "same", 1, 0, 0),
    # same with a kernel larger than the input is allowed
    (2, 5, 1, "same", 2, 2, 2),
    (1, 3, 2, "same", 1, 1, 1),
]


@pytest.mark.parametrize("length, k, s, padding, out, before, after", KERAS_TABLE)
def test_keras_table(length, k, s, padding, out, before, after):
    assert conv_output_length(length, k, s, padding) == out
    assert padding_amounts(length, k, s, padding) == (before, after)


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("stride", [1, 2, 3])
@pytest.mark.parametrize("k", [1, 2, 3, 4, 5])
def test_pads_reproduce_output_length(padding, stride, k):
    """Padding by padding_amounts and sliding a window gives exactly conv_output_length."""
    for length in range(1, 15):
        if padding == "valid" and k > length:
            continue
        out = conv_output_length(length, k, stride, padding)
        before, after = padding_amounts(length, k, stride, padding)
        assert (length + before + after - k) // stride + 1 == out
        # Extra pad goes after; padding is never a whole window wide (every window sees input).
        assert after - before in (0, 1)
        assert before + after < k
        if padding == "same":
            assert out == -(-length // stride)


def test_numpy_integers_are_accepted():
    assert conv_output_length(np.int64(7), np.int32(3), np.int64(2), "same") == 4


def test_conv_geometry_rectangular():
    # H: 28 with k=3, s=1 -> 28, pads (1, 1); W: 13 with k=2, s=2 -> 7, pads (0, 1)
    assert conv_geometry((28, 13), (3, 2), (1, 2), "same") == (28, 7, (1, 1, 0, 1))
    assert conv_geometry((28, 13), (3, 2), (1, 2), "valid") == (26, 6, (0, 0, 0, 0))


def test_output_hw_matches_geometry():
    out_h, out_w, pads = conv_geometry((13, 10), (6, 4), (5, 3), "same")
    assert output_hw(13, 10, 6, 4, (5, 3), pads) == (out_h, out_w) == (3, 4)


@pytest.mark.parametrize("bad", ["full", "SAME", "", None, "causal"])
def test_unknown_padding_is_rejected(bad):
    with pytest.raises(ValueError, match="padding must be one of"):
        conv_output_length(5, 3, 1, bad)
    with pytest.raises(ValueError, match="padding must be one of"):
        padding_amounts(5, 3, 1, bad)


def test_valid_kernel_bigger_than_input():
    with pytest.raises(ValueError, match=r"kernel \(5\) is bigger than the input \(3\)"):
        conv_output_length(3, 5, 1, "valid")
    with pytest.raises(ValueError, match="bigger than the input"):
        conv_geometry((28, 3), (3, 5), (1, 1), "valid")


@pytest.mark.parametrize(
    "args, exc, message",
    [
        ((0, 3, 1), ValueError, "input_length must be >= 1, got 0"),
        ((5, 0, 1), ValueError, "kernel_size must be >= 1, got 0"),
        ((5, 3, 0), ValueError, "stride must be >= 1, got 0"),
        ((5.0, 3, 1), TypeError, "input_length must be an int, got float"),
        ((5, True, 1), TypeError, "kernel_size must be an int, got bool"),
    ],
)
def test_bad_sizes(args, exc, message):
    with pytest.raises(exc, match=message):
        conv_output_length(*args, "same")


def test_conv_geometry_wants_pairs():
    with pytest.raises(ValueError, match="conv_geometry: strides must be a pair"):
        conv_geometry((28, 28), (3, 3), 2, "same")


def test_check_pool_pads():
    check_pool_pads("f", (2, 3), (1, 1, 2, 0))  # every pad smaller than the pool: fine
    with pytest.raises(ValueError, match=r"f: pads \(2, 0, 0, 0\) must be >= 0 and smaller"):
        check_pool_pads("f", (2, 2), (2, 0, 0, 0))
    with pytest.raises(ValueError, match="smaller than the pool size"):
        check_pool_pads("f", (3, 2), (0, 0, 0, 2))
