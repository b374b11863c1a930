"""The compiled kernels' wrappers (minicnn/ops/kernels.py): a wrong call must raise before any
compiled code runs, never write past a buffer; plus the properties the fast backend relies on
(serial and GIL-free, deterministic sums)."""

import numba
import numpy as np
import pytest

from minicnn.ops import kernels, reference

F32 = np.float32


def compiled_functions():
    return [obj for obj in vars(kernels).values()
            if isinstance(obj, numba.core.registry.CPUDispatcher)]


def test_compiled_kernels_are_serial_and_release_the_gil():
    """minicnn.parallel runs batch shards in threads: every compiled kernel must release the
    GIL (nogil) and none may start Numba's own thread pool (parallel=True), whose workers
    would fight the shards for the cores (and which must not be entered from two threads)."""
    compiled = compiled_functions()
    assert len(compiled) >= 9
    for dispatcher in compiled:
        assert dispatcher.targetoptions.get("nogil") is True, dispatcher
        assert not dispatcher.targetoptions.get("parallel"), dispatcher


def test_every_public_wrapper_checks_its_arrays():
    """Each *_into wrapper refuses a buffer one element too small, of the wrong dtype, or not
    contiguous, with a ValueError naming the argument."""
    x = np.zeros((2, 6, 6, 3), F32)
    cols = np.zeros((2 * 4 * 4, 27), F32)
    cases = [
        (lambda: kernels.im2col_into(x, 3, 3, (1, 1), (0, 0, 0, 0), cols[:-1]), "cols"),
        (lambda: kernels.im2col_into(x, 3, 3, (1, 1), (0, 0, 0, 0), cols.astype(np.float64)),
         "cols"),
        (lambda: kernels.im2col_into(x[:, ::2], 3, 3, (1, 1), (0, 0, 0, 0), cols), "x"),
        (lambda: kernels.col2im_into(cols[:, :-1], 3, 3, (1, 1), (0, 0, 0, 0), x.copy()),
         "dcols"),
        (lambda: kernels.maxpool2d_into(x, (2, 2), (2, 2), (0, 0, 0, 0),
                                        np.zeros((2, 3, 3, 2), F32),
                                        np.zeros((2, 3, 3, 3), np.int64)), "y"),
        (lambda: kernels.maxpool2d_into(x, (2, 2), (2, 2), (0, 0, 0, 0),
                                        np.zeros((2, 3, 3, 3), F32),
                                        np.zeros((2, 3, 3, 3), np.int32)), "argmax"),
        (lambda: kernels.maxpool2d_backward_into(np.zeros((2, 3, 3, 3), F32),
                                                 np.full((2, 3, 3, 3), 36, np.int64), x.copy()),
         "argmax holds positions outside"),
        (lambda: kernels.maxpool2d_tiled_into(x, (2, 2), np.zeros((2, 3, 2, 3), F32),
                                              np.zeros((2, 3, 3, 3), np.int32)), "y"),
        (lambda: kernels.maxpool2d_tiled_backward_into(np.zeros((2, 3, 3, 3), F32),
                                                       np.zeros((2, 3, 3, 3), np.int32), (2, 2),
                                                       np.zeros((2, 6, 6, 2), F32)), "dy"),
        (lambda: kernels.bias_act_into(np.zeros((5, 4), F32), np.zeros(3, F32),
                                       kernels.ACT_RELU), "bias"),
        (lambda: kernels.act_backward_bias_into(np.zeros((5, 4), F32), np.zeros((5, 3), F32),
                                                kernels.ACT_RELU, np.zeros((5, 4), F32),
                                                np.zeros((1, 4), F32)), "y"),
        (lambda: kernels.adam_update(np.zeros(10, F32), np.zeros(10, F32), np.zeros(9, F32),
                                     np.zeros(10, F32), 0.9, 0.999, 1e-3, 1e-7), "m"),
        (lambda: kernels.adam_update(np.zeros(10, np.float64), np.zeros(10, F32),
                                     np.zeros(10, F32), np.zeros(10, F32), 0.9, 0.999, 1e-3,
                                     1e-7), "grad"),
    ]
    for call, fragment in cases:
        with pytest.raises(ValueError, match=fragment):
            call()


def test_adam_kernel_refuses_slots_of_another_shape_the_freeze_after_fit_bug():
    """The heap-corrupting bug: a slot of 10 entries meeting a parameter of 250. The wrapper
    must refuse it; the parameter and slots stay as they were."""
    param = np.ones((5, 5, 1, 10), F32)
    m, v = np.zeros(10, F32), np.zeros(10, F32)
    with pytest.raises(ValueError, match="m has shape"):
        kernels.adam_update(np.ones_like(param), param, m, v, 0.9, 0.999, 1e-3, 1e-7)
    assert (param == 1).all() and (m == 0).all() and (v == 0).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows", [1, 5, 1024, 1025, 5000])  # block boundaries of the sum
@pytest.mark.parametrize("act", [kernels.ACT_LINEAR, kernels.ACT_RELU])
def test_act_backward_bias_into(dtype, rows, act):
    rng = np.random.default_rng(rows)
    dy = rng.standard_normal((rows, 6)).astype(dtype)
    y = np.maximum(rng.standard_normal((rows, 6)), 0).astype(dtype)  # ReLU outputs, many 0
    dz = np.empty_like(dy)
    partial = np.empty((max(1, -(-rows // kernels.SUM_BLOCK)), 6), dtype)
    kernels.act_backward_bias_into(dy, y, act, dz, partial)
    expected = np.where(y > 0, dy, 0).astype(dtype) if act == kernels.ACT_RELU else dy
    np.testing.assert_array_equal(dz, expected)
    np.testing.assert_allclose(partial.sum(axis=0), expected.sum(axis=0),
                               rtol=1e-5 if dtype == np.float32 else 1e-12, atol=1e-4)


def test_bias_sum_is_deterministic_and_blocked():
    rng = np.random.default_rng(0)
    dy = rng.standard_normal((9000, 4)).astype(F32)
    y = np.abs(rng.standard_normal((9000, 4))).astype(F32)
    runs = []
    for _ in range(5):
        partial = np.empty((9, 4), F32)
        kernels.act_backward_bias_into(dy, y, kernels.ACT_RELU, np.empty_like(dy), partial)
        runs.append(partial.sum(axis=0))
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])
    # The same blocked sum written in NumPy: fixed blocks of 1024 rows, then added in order.
    blocks = [dy[i:i + 1024].sum(axis=0, dtype=F32) for i in range(0, 9000, 1024)]
    np.testing.assert_allclose(runs[0], np.sum(blocks, axis=0), rtol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", [kernels.ACT_LINEAR, kernels.ACT_RELU])
@pytest.mark.parametrize("use_bias", [True, False])
def test_bias_act_into_is_exact(dtype, act, use_bias):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((40, 5)).astype(dtype)
    bias = rng.standard_normal(5).astype(dtype) if use_bias else None
    expected = z + bias if use_bias else z.copy()
    if act == kernels.ACT_RELU:
        expected = np.maximum(expected, 0)
    assert kernels.bias_act_into(z, bias, act) is z  # in place
    np.testing.assert_array_equal(z, expected)  # one add and a max: exactly equal


def test_im2col_single_channel_into_fortran_ordered_cols():
    """A first conv layer keeps cols in Fortran order (contiguous columns); the kernel must
    fill it exactly as the reference, with padding and strides."""
    from minicnn.ops.padding import conv_geometry
    rng = np.random.default_rng(6)
    x = rng.standard_normal((3, 9, 7, 1)).astype(F32)
    for strides, padding in (((1, 1), "valid"), ((1, 1), "same"), ((2, 3), "same")):
        out_h, out_w, pads = conv_geometry((9, 7), (3, 3), strides, padding)
        cols = np.full((9, 3 * out_h * out_w), np.nan, F32).T
        assert cols.flags.f_contiguous and not cols.flags.c_contiguous
        kernels.im2col_into(x, 3, 3, strides, pads, cols)
        np.testing.assert_array_equal(cols, reference.im2col(x, 3, 3, strides, pads))
