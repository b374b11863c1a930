"""Output sizes and padding amounts for convolution and pooling, following Keras exactly.

Keras (and TensorFlow) define two padding modes:

- ``'valid'``: no padding; ``out = (in - k) // stride + 1``.
- ``'same'``:  ``out = ceil(in / stride)``; the total padding needed to get there is
  ``max((out - 1) * stride + k - in, 0)``, split as ``before = total // 2`` and
  ``after = total - before``. When ``total`` is odd the extra row/column goes to the
  bottom/right (``after``). Frameworks that pad symmetrically disagree with Keras here,
  and Keras weights then give shifted outputs.

The ops in :mod:`minicnn.ops.reference` and :mod:`minicnn.ops.kernels` take explicit
``pads=(top, bottom, left, right)``; these helpers turn a Keras padding name into them.
"""

from __future__ import annotations

import operator

PADDING_MODES = ("valid", "same")


def _check_args(func: str, input_length, kernel_size, stride, padding) -> None:
    if padding not in PADDING_MODES:
        raise ValueError(
            f"{func}: padding must be one of {PADDING_MODES}, got {padding!r}. "
            "Use 'valid' (no padding) or 'same' (output size ceil(input / stride))."
        )
    for name, value in (
        ("input_length", input_length),
        ("kernel_size", kernel_size),
        ("stride", stride),
    ):
        # operator.index accepts Python and NumPy integers but rejects floats.
        try:
            if isinstance(value, bool):
                raise TypeError
            value = operator.index(value)
        except TypeError:
            raise TypeError(
                f"{func}: {name} must be an int, got {type(value).__name__} {value!r}."
            ) from None
        if value < 1:
            raise ValueError(f"{func}: {name} must be >= 1, got {value}.")


def conv_output_length(input_length: int, kernel_size: int, stride: int, padding: str) -> int:
    """Output length along one spatial axis, as Keras computes it.

    ``'valid'``: ``(input_length - kernel_size) // stride + 1``;
    ``'same'``:  ``ceil(input_length / stride)``.

    Raises ValueError for an unknown padding, non-positive sizes, or a 'valid' kernel larger
    than the input (the output would be empty).
    """
    _check_args("conv_output_length", input_length, kernel_size, stride, padding)
    input_length, kernel_size, stride = int(input_length), int(kernel_size), int(stride)
    if padding == "valid":
        if kernel_size > input_length:
            raise ValueError(
                f"conv_output_length: with padding='valid' the kernel ({kernel_size}) is bigger "
                f"than the input ({input_length}), so the output would be empty. Use "
                "padding='same', a smaller kernel/pool size, or a larger input."
            )
        return (input_length - kernel_size) // stride + 1
    return -(-input_length // stride)  # ceil division in integers (no float rounding)


def padding_amounts(
    input_length: int, kernel_size: int, stride: int, padding: str
) -> tuple[int, int]:
    """Zero padding ``(before, after)`` along one spatial axis, as Keras/TensorFlow pad.

    ``'valid'`` -> ``(0, 0)``. ``'same'``: ``total = max((out - 1) * stride + kernel_size
    - input_length, 0)``, ``before = total // 2``, ``after = total - before`` (the odd extra
    row/column goes after, i.e. to the bottom/right).
    """
    out = conv_output_length(input_length, kernel_size, stride, padding)
    if padding == "valid":
        return 0, 0
    total = max((out - 1) * int(stride) + int(kernel_size) - int(input_length), 0)
    before = total // 2
    return before, total - before


def output_hw(h: int, w: int, kh: int, kw: int, strides, pads) -> tuple[int, int]:
    """Output size of a window op from explicit pads (no checks; the ops use it internally).

    ``OH = (H + top + bottom - KH) // SH + 1``, ``OW = (W + left + right - KW) // SW + 1``,
    with strides (SH, SW) and pads (top, bottom, left, right).
    """
    sh, sw = strides
    top, bottom, left, right = pads
    return (h + top + bottom - kh) // sh + 1, (w + left + right - kw) // sw + 1


def check_pool_pads(func: str, pool_size, pads) -> None:
    """Raise ValueError unless every pad is smaller than the pool size along its axis.

    That guarantees each pooling window holds at least one real input element, which the
    max-pooling ops rely on (Keras 'same' pads always satisfy it).
    """
    ph, pw = pool_size
    top, bottom, left, right = pads
    if min(pads) < 0 or max(top, bottom) >= ph or max(left, right) >= pw:
        raise ValueError(
            f"{func}: pads {tuple(pads)} must be >= 0 and smaller than the pool size "
            f"{tuple(pool_size)} along their axis, otherwise a pooling window could hold only "
            "padding. Use minicnn.ops.conv_geometry(..., padding='same') to get valid pads."
        )


def conv_geometry(
    input_hw: tuple[int, int],
    kernel_hw: tuple[int, int],
    strides: tuple[int, int],
    padding: str,
) -> tuple[int, int, tuple[int, int, int, int]]:
    """Output size and pads for a 2-D window op (convolution or pooling).

    input_hw (H, W), kernel_hw (KH, KW), strides (SH, SW), padding 'valid'|'same'
    -> ``(OH, OW, (pad_top, pad_bottom, pad_left, pad_right))``, ready for the ``pads``
    argument of the ops.
    """
    for name, value in (("input_hw", input_hw), ("kernel_hw", kernel_hw), ("strides", strides)):
        if not isinstance(value, (tuple, list)) or len(value) != 2:
            raise ValueError(
                f"conv_geometry: {name} must be a pair (height, width), got {value!r}."
            )
    out_h = conv_output_length(input_hw[0], kernel_hw[0], strides[0], padding)
    out_w = conv_output_length(input_hw[1], kernel_hw[1], strides[1], padding)
    top, bottom = padding_amounts(input_hw[0], kernel_hw[0], strides[0], padding)
    left, right = padding_amounts(input_hw[1], kernel_hw[1], strides[1], padding)
    return out_h, out_w, (top, bottom, left, right)
