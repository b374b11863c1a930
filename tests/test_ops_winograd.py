"""Winograd F(2x2, 3x3) (minicnn/ops/winograd.py) against a plain NumPy convolution:
forward, input gradient and kernel gradient, float32 and float64, 'valid' and 'same', odd and
even outputs (partial tiles), bias and ReLU; reused workspaces, two threads, bad input."""

import threading

import numpy as np
import pytest
from conv_oracle import TOLERANCE, agree_in_two_threads, conv, conv_grads, rel_error

from minicnn.ops import winograd as wg

CASES = [
    # (N, H, W, C), filters, pads
    ((2, 13, 13, 25), 64, (0, 0, 0, 0)),  # the tutorial's conv2: 11x11, a partial tile row
    ((3, 5, 5, 64), 64, (0, 0, 0, 0)),    # conv3: 3x3 output
    ((2, 6, 7, 3), 4, (1, 1, 1, 1)),      # 'same', even x odd
    ((1, 4, 4, 1), 2, (0, 1, 0, 1)),      # asymmetric pads (bottom/right only), one channel
    ((2, 8, 5, 2), 3, (0, 0, 0, 0)),      # even x odd output
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, filters, pads", CASES)
def test_forward_and_both_gradients_match_the_plain_convolution(rng, dtype, shape, filters,
                                                                pads):
    x = rng.standard_normal(shape).astype(dtype)
    kernel = rng.standard_normal((3, 3, shape[3], filters)).astype(dtype)
    z, cache = wg.winograd_conv2d_forward(x, kernel, (1, 1), pads)
    expected = conv(x, kernel, pads)
    assert z.dtype == dtype and z.shape == expected.shape
    assert rel_error(z, expected) < TOLERANCE[dtype]
    dz = rng.standard_normal(z.shape).astype(dtype)
    dx, dkernel = wg.winograd_conv2d_backward(dz, cache)
    dx_ref, dkernel_ref = conv_grads(x, kernel, dz, pads)
    assert dx.dtype == dkernel.dtype == dtype
    assert dx.shape == x.shape and dkernel.shape == kernel.shape
    assert rel_error(dx, dx_ref) < TOLERANCE[dtype]
    assert rel_error(dkernel, dkernel_ref) < TOLERANCE[dtype]
    # compute_dx=False (a first layer) gives the same kernel gradient and no dx.
    none, dkernel_only = wg.winograd_conv2d_backward(dz, cache, compute_dx=False)
    assert none is None
    np.testing.assert_array_equal(dkernel_only, dkernel)


def test_backward_is_the_adjoint_of_the_forward(rng):
    # <conv(x), dz> == <x, dx> and == <kernel, dkernel>: the gradients are exact adjoints.
    x = rng.standard_normal((2, 9, 7, 5))
    kernel = rng.standard_normal((3, 3, 5, 6))
    z, cache = wg.winograd_conv2d_forward(x, kernel, pads=(1, 1, 1, 1))
    dz = rng.standard_normal(z.shape)
    dx, dkernel = wg.winograd_conv2d_backward(dz, cache)
    assert np.vdot(z, dz) == pytest.approx(np.vdot(x, dx), rel=1e-12)
    assert np.vdot(z, dz) == pytest.approx(np.vdot(kernel, dkernel), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_bias_and_relu_are_fused_into_the_output(rng, dtype):
    x = rng.standard_normal((2, 11, 10, 4)).astype(dtype)
    kernel = rng.standard_normal((3, 3, 4, 5)).astype(dtype)
    bias = rng.standard_normal(5).astype(dtype)
    y, _ = wg.winograd_conv2d_forward(x, kernel, bias=bias, relu=True)
    expected = np.maximum(conv(x, kernel) + bias, 0)
    assert y.dtype == dtype and rel_error(y, expected) < TOLERANCE[dtype]
    assert (y == 0).any() and (y > 0).any()  # the ReLU really cut something
    y_lin, _ = wg.winograd_conv2d_forward(x, kernel, bias=bias)
    assert rel_error(y_lin, conv(x, kernel) + bias) < TOLERANCE[dtype]


def test_a_workspace_is_reused_and_follows_shape_changes(rng):
    ws, bws = {}, {}
    kernel = rng.standard_normal((3, 3, 3, 4))
    for n in (2, 2, 3, 2):  # same shape twice, then another batch size, then back
        x = rng.standard_normal((n, 7, 8, 3))
        z, cache = wg.winograd_conv2d_forward(x, kernel, workspace=ws)
        assert rel_error(z, conv(x, kernel)) < 1e-12
        dz = rng.standard_normal(z.shape)
        dx, dkernel = wg.winograd_conv2d_backward(dz, cache, workspace=bws)
        dx_ref, dkernel_ref = conv_grads(x, kernel, dz)
        assert rel_error(dx, dx_ref) < 1e-12 and rel_error(dkernel, dkernel_ref) < 1e-12
    first = ws["v"]
    wg.winograd_conv2d_forward(x, kernel, workspace=ws)
    assert ws["v"] is first  # same shape: the buffer is reused, not reallocated


def test_two_threads_with_their_own_workspaces_agree_with_one(rng):
    kernel = rng.standard_normal((3, 3, 8, 16)).astype(np.float32)
    xs = [rng.standard_normal((4, 13, 13, 8)).astype(np.float32) for _ in range(2)]
    workspaces = {}

    def forward(x):  # each thread reuses a workspace of its own, as a batch shard would
        ws = workspaces.setdefault(threading.get_ident(), {})
        return wg.winograd_conv2d_forward(x, kernel, workspace=ws)[0]

    agree_in_two_threads(forward, xs)


def test_stacks_are_an_odd_number_of_cache_lines_apart():
    # 576 tiles x 64 filters float32 (the tutorial's conv2 at batch 16) is 36 x 4 KiB.
    for elements, itemsize in ((576 * 64, 4), (64 * 64, 4), (100, 8), (1, 4)):
        stride = wg._stack_stride(elements, itemsize)
        assert stride >= elements and (stride * itemsize) % 64 == 0
        assert (stride * itemsize // 64) % 2 == 1


@pytest.mark.parametrize("call, message", [
    (lambda x, k: wg.winograd_conv2d_forward(x, k.astype(np.float32)),
     "kernel is float32 but x is float64"),
    (lambda x, k: wg.winograd_conv2d_forward(x.astype(np.int64), k), "float32 or float64"),
    (lambda x, k: wg.winograd_conv2d_forward(x, k[:2]), r"\(3, 3, C, F\) kernel"),
    (lambda x, k: wg.winograd_conv2d_forward(x[..., :2], k), "expects 3 input channels"),
    (lambda x, k: wg.winograd_conv2d_forward(x, k, strides=(2, 2)), "for stride 1"),
    (lambda x, k: wg.winograd_conv2d_forward(x, k, pads=(3, 0, 0, 0)), "ints in 0..2"),
    (lambda x, k: wg.winograd_conv2d_forward(x[:, :2, :2], k), "does not fit"),
    (lambda x, k: wg.winograd_conv2d_forward(x, k, bias=np.zeros(3)), r"bias must have shape"),
    (lambda x, k: wg.winograd_conv2d_backward(np.zeros((2, 3, 3, 4)),
                                              wg.winograd_conv2d_forward(x, k)[1]),
     r"dz must have the forward output's shape \(2, 4, 5, 4\)"),
    (lambda x, k: wg.winograd_conv2d_backward(np.zeros((2, 4, 5, 4), np.float32),
                                              wg.winograd_conv2d_forward(x, k)[1]),
     "dz is float32 but x is float64"),
])
def test_mismatches_raise_before_any_compiled_code_runs(rng, call, message):
    x = rng.standard_normal((2, 6, 7, 3))
    k = rng.standard_normal((3, 3, 3, 4))
    with pytest.raises((ValueError, TypeError), match=message):
        call(x, k)
