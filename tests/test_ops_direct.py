"""The direct one-channel convolution (minicnn/ops/direct.py) against a plain NumPy
convolution: forward (with bias and ReLU) and kernel gradient, float32 and float64, 'valid',
'same' and asymmetric pads, 3x3 (the unrolled path) and other kernel sizes; reused buffers,
two threads, bad input."""

import numpy as np
import pytest
from conv_oracle import TOLERANCE, agree_in_two_threads, conv, conv_grads, rel_error

from minicnn.ops import direct

CASES = [
    # (N, H, W, 1), kernel size, filters, pads
    ((2, 28, 28, 1), 3, 25, (0, 0, 0, 0)),  # the tutorial's conv1
    ((3, 9, 10, 1), 3, 7, (1, 1, 1, 1)),    # 'same'
    ((2, 8, 9, 1), 5, 4, (2, 2, 1, 3)),     # 5x5, asymmetric pads: the generic path
    ((1, 6, 7, 1), 2, 3, (0, 1, 0, 1)),     # 2x2, Keras 'same' (extra row/column bottom/right)
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, size, filters, pads", CASES)
@pytest.mark.parametrize("bias, relu", [(False, False), (True, True), (True, False)])
def test_forward_and_kernel_gradient_match_the_plain_convolution(rng, dtype, shape, size,
                                                                 filters, pads, bias, relu):
    x = rng.standard_normal(shape).astype(dtype)
    kernel = rng.standard_normal((size, size, 1, filters)).astype(dtype)
    b = rng.standard_normal(filters).astype(dtype) if bias else None
    z, cache = direct.conv2d_1ch_forward(x, kernel, (1, 1), pads, bias=b, relu=relu)
    expected = conv(x, kernel, pads) + (b if bias else 0)
    if relu:
        expected = np.maximum(expected, 0)
        assert (expected == 0).any()
    assert z.dtype == dtype and z.shape == expected.shape
    assert rel_error(z, expected) < TOLERANCE[dtype]
    dz = rng.standard_normal(z.shape).astype(dtype)
    dkernel = direct.conv2d_1ch_backward_kernel(dz, cache)
    assert dkernel.dtype == dtype and dkernel.shape == kernel.shape
    assert rel_error(dkernel, conv_grads(x, kernel, dz, pads)[1]) < TOLERANCE[dtype]


def test_out_buffer_and_workspace_are_written_in_place(rng):
    kernel = rng.standard_normal((3, 3, 1, 5))
    ws = {}
    for n in (2, 3, 2):
        x = rng.standard_normal((n, 8, 8, 1))
        out = np.full((n, 6, 6, 5), np.nan)
        z, cache = direct.conv2d_1ch_forward(x, kernel, out=out, workspace=ws)
        assert z is out and rel_error(out, conv(x, kernel)) < 1e-12
        dz = rng.standard_normal(z.shape)
        assert rel_error(direct.conv2d_1ch_backward_kernel(dz, cache),
                         conv_grads(x, kernel, dz)[1]) < 1e-12
    # with pads the padded copy lives in the workspace and is reused for the same shape
    direct.conv2d_1ch_forward(x, kernel, pads=(1, 1, 1, 1), workspace=ws)
    padded = ws["xp"]
    direct.conv2d_1ch_forward(x, kernel, pads=(1, 1, 1, 1), workspace=ws)
    assert ws["xp"] is padded


def test_two_threads_at_once_agree_with_one(rng):
    kernel = rng.standard_normal((3, 3, 1, 25)).astype(np.float32)
    xs = [rng.standard_normal((8, 28, 28, 1)).astype(np.float32) for _ in range(2)]
    agree_in_two_threads(lambda x: direct.conv2d_1ch_forward(x, kernel, relu=True)[0], xs)


@pytest.mark.parametrize("call, message", [
    (lambda x, k: direct.conv2d_1ch_forward(x, k.astype(np.float32)),
     "kernel is float32 but x is float64"),
    (lambda x, k: direct.conv2d_1ch_forward(np.repeat(x, 2, axis=3), k),
     "needs one input channel"),
    (lambda x, k: direct.conv2d_1ch_forward(x[..., 0], k), "x must have 4 axes"),
    (lambda x, k: direct.conv2d_1ch_forward(x, k, strides=(2, 2)), "for stride 1"),
    (lambda x, k: direct.conv2d_1ch_forward(x, k, pads=(3, 0, 0, 0)), "smaller than the kernel"),
    (lambda x, k: direct.conv2d_1ch_forward(x, k, pads=(1, 1)), r"\(top, bottom, left, right\)"),
    (lambda x, k: direct.conv2d_1ch_forward(x, k, bias=np.zeros(3)), "bias must have shape"),
    (lambda x, k: direct.conv2d_1ch_forward(x, k, out=np.empty((2, 6, 6, 4), np.float32)),
     "out must be a C-contiguous float64 array of shape"),
    (lambda x, k: direct.conv2d_1ch_forward(x, k, out=np.empty((2, 5, 6, 4))),
     "out must be a C-contiguous float64 array of shape"),
    (lambda x, k: direct.conv2d_1ch_backward_kernel(np.zeros((2, 5, 5, 4)),
                                                    direct.conv2d_1ch_forward(x, k)[1]),
     r"dz must have the forward output's shape \(2, 6, 6, 4\)"),
])
def test_mismatches_raise_before_any_compiled_code_runs(rng, call, message):
    x = rng.standard_normal((2, 8, 8, 1))
    k = rng.standard_normal((3, 3, 1, 4))
    with pytest.raises((ValueError, TypeError), match=message):
        call(x, k)
