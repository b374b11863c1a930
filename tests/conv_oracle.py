"""A tiny, obviously correct NumPy convolution and its gradients: the oracle the kernel
prototypes (minicnn/ops/direct.py, minicnn/ops/winograd.py) are tested against.

Written without im2col so it shares no code with the ops under test: one einsum per kernel tap.
NHWC, Keras kernels (KH, KW, C, F), stride 1, pads (top, bottom, left, right)."""

import threading

import numpy as np


def conv(x, kernel, pads=(0, 0, 0, 0)):
    """y[n, oh, ow, f] = sum_{i, j, c} xp[n, oh + i, ow + j, c] * kernel[i, j, c, f]."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw, _, n_filters = kernel.shape
    out_h, out_w = xp.shape[1] - kh + 1, xp.shape[2] - kw + 1
    y = np.zeros((x.shape[0], out_h, out_w, n_filters), x.dtype)
    for i in range(kh):
        for j in range(kw):
            y += np.einsum("nhwc,cf->nhwf", xp[:, i:i + out_h, j:j + out_w, :], kernel[i, j])
    return y


def conv_grads(x, kernel, dy, pads=(0, 0, 0, 0)):
    """(dL/dx, dL/dkernel) of conv for dL/dy = dy, summed over the batch."""
    top, bottom, left, right = pads
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    kh, kw = kernel.shape[:2]
    out_h, out_w = dy.shape[1:3]
    dkernel = np.zeros_like(kernel)
    dxp = np.zeros_like(xp)
    for i in range(kh):
        for j in range(kw):
            dkernel[i, j] = np.einsum("nhwc,nhwf->cf", xp[:, i:i + out_h, j:j + out_w, :], dy)
            dxp[:, i:i + out_h, j:j + out_w, :] += np.einsum("nhwf,cf->nhwc", dy, kernel[i, j])
    return dxp[:, top:top + x.shape[1], left:left + x.shape[2], :], dkernel


def rel_error(a, b):
    """max |a - b| / max |b| (the tests' yardstick: 1e-12 float64, 1e-5 float32)."""
    return float(np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max())


TOLERANCE = {np.float64: 1e-12, np.float32: 1e-5}


def agree_in_two_threads(compute, inputs, repeats=20):
    """Run compute(input) `repeats` times in each of two threads at once (one input per thread)
    and assert the last results equal a one-thread run's, bit for bit."""
    expected = [np.array(compute(x), copy=True) for x in inputs]
    results = [None] * len(inputs)

    def work(i):
        for _ in range(repeats):
            results[i] = np.array(compute(inputs[i]), copy=True)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got, want)
