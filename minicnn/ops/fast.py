"""The fast backend: the ops of :mod:`minicnn.ops.reference`, same names, arguments and
results, built from Numba kernels (:mod:`minicnn.ops.kernels`) and BLAS matrix products.

What makes it fast, op by op:

- conv2d: im2col (compiled) + one BLAS product, into buffers reused from call to call; for one
  input channel the unfolded matrix is Fortran-ordered so im2col writes it contiguously.
- bias_activation with 'relu' or 'linear': one compiled pass in place over the product's
  output (instead of a pass for the bias and one for the ReLU), and one pass backward that
  also sums the bias gradient.
- maxpool2d: compiled; the common window == stride case writes each cell once.
- adam_update / adamw_update and rmsprop_update: one compiled pass over a parameter and its
  slots instead of NumPy's many (2-3x faster on the tutorial model, see
  benchmarks/bench_optimizers.py).
- avgpool2d: compiled, one pass forward and one backward (the reference builds every window).
- batchnorm: compiled passes over (rows, channels) with float64 channel sums (the reference's
  ``sum(axis=0, dtype=float64)`` and ``(x - mean) ** 2`` make float64 copies of the batch).
- dropout: one compiled pass applies the mask and the scaling (NumPy's draws, the same as the
  reference's, so both backends drop the same entries).
- relu on its own (Activation('relu'), ReLU()) and gelu: compiled, one pass each way (the
  reference's ReLU backward makes temporaries; its gelu calls Python's math.erf per element).
- softmax + cross-entropy with integer labels: one compiled pass over the rows each way, no
  one-hot matrix (about 25 small NumPy calls fewer per step; each costs several microseconds
  when the caches are full of a convolution's data).
- Everything else (dense, the other activations, global pooling, the ReLU variants, rescaling,
  merging, cross-entropy against one-hot or soft targets, the SGD and Adagrad updates) is
  already one or two vectorised NumPy calls, or as fast as a compiled pass, so this backend
  uses the reference.

Buffers: an op given ``ws`` (a dict that the caller keeps between calls with inputs of the same
shape, see minicnn/graph.py) keeps its output and scratch arrays there and overwrites them on
the next call, instead of asking the OS for fresh pages each batch (page faults cost as much as
the arithmetic for MNIST-sized layers). So an output is valid until the next call with the same
``ws``; callers that keep results copy them. With ``ws=None`` every array is fresh. With ``ws``,
``bias_activation_forward`` also writes its result over its input z: the caller hands z over.

Checks: the kernel wrappers check every array on every call. The hot ops (conv2d, the fused
bias + activation, tiled max pooling) also keep in ``ws`` the key of their last checked call
(every shape, dtype and setting the kernel's bounds depend on) with its buffers; a call with
the same key runs the compiled kernel on them directly (``_replay``), any other goes through
the wrapper's checks again. That saves about 5 us per op, which counts twice when the batch
shards' Python takes turns on the GIL.
"""

from __future__ import annotations

import numpy as np

from . import kernels, reference
from .padding import check_pool_pads, output_hw
from .reference import (  # noqa: F401  (the ops whose reference is already vectorised)
    ACTIVATIONS,
    adagrad_update,
    concatenate_backward,
    concatenate_forward,
    dense_backward,
    dense_forward,
    global_avgpool2d_backward,
    global_avgpool2d_forward,
    global_maxpool2d_backward,
    global_maxpool2d_forward,
    merge_backward,
    merge_forward,
    rescale_backward,
    rescale_forward,
    sgd_update,
)

__all__ = list(reference.__all__)

_FUSED_ACTIVATIONS = {"linear": kernels.ACT_LINEAR, "relu": kernels.ACT_RELU}


def _buffer(ws, name, shape, dtype, order="C"):
    """ws[name] if it has this shape, dtype and order, else a new array stored there."""
    if ws is None:
        return np.empty(shape, dtype, order=order)
    array = ws.get(name)
    if (array is None or array.shape != shape or array.dtype != dtype
            or (order == "F") != (array.flags.f_contiguous and not array.flags.c_contiguous)):
        array = ws[name] = np.empty(shape, dtype, order=order)
    return array


def _replay(ws, name, key):
    """What this call site kept under `name` after its last fully checked call, if `key`
    (every shape, dtype and setting the kernel's bounds depend on, as tuples: a list changed
    in place must not compare equal to itself) is the same; else None.

    Why: the kernel wrappers check every argument on every call, about 5 us per op and 20 ops
    per step and batch shard, and the shards' Python takes turns on the GIL. A call site runs
    the same shapes into its own buffers (ws) step after step, so the wrapper's check is needed
    once; after that, comparing the key is the check, and the op calls the compiled kernel on
    the buffers checked then."""
    if ws is None:
        return None
    entry = ws.get(name)
    return entry[1] if entry is not None and entry[0] == key else None


def conv2d_naive(x, kernel, bias, strides, pads):
    """The loop oracle; the same in both backends (see reference.conv2d_naive)."""
    return reference.conv2d_naive(x, kernel, bias, strides, pads)


def im2col(x, kh, kw, strides, pads):
    """Compiled twin of reference.im2col: x (N, H, W, C) -> cols (N*OH*OW, KH*KW*C)."""
    x = np.ascontiguousarray(x)
    n_batch, h, w, c = x.shape
    out_h, out_w = output_hw(h, w, kh, kw, strides, pads)
    cols = np.empty((n_batch * out_h * out_w, kh * kw * c), x.dtype)
    return kernels.im2col_into(x, kh, kw, strides, pads, cols)


def col2im(dcols, x_shape, kh, kw, strides, pads):
    """Compiled twin of reference.col2im: dcols (N*OH*OW, KH*KW*C) -> dx (N, H, W, C)."""
    dcols = np.ascontiguousarray(dcols)
    dx = np.empty(tuple(int(d) for d in x_shape), dcols.dtype)
    return kernels.col2im_into(dcols, kh, kw, strides, pads, dx)


def conv2d_forward(x, kernel, strides, pads, ws=None):
    """im2col + one BLAS product (twin of reference.conv2d_forward).

    x: (N, H, W, C), kernel: (KH, KW, C, F) -> (z (N, OH, OW, F), cache).
    """
    x = np.ascontiguousarray(x)
    key = (x.shape, x.dtype, kernel.shape, kernel.dtype, tuple(strides), tuple(pads))
    checked = _replay(ws, "checked forward", key)
    if checked is None:
        checked = _conv2d_forward_checked(x, kernel, strides, pads, ws)
        if ws is not None:
            ws["checked forward"] = (key, checked)
    else:
        cols, _, geometry, _ = checked
        kernels._im2col(x, *geometry, cols)  # x: key-checked; cols: checked then
    cols, z, _, z_shape = checked
    np.matmul(cols, kernel.reshape(cols.shape[1], z.shape[1]), out=z)
    return z.reshape(z_shape), (cols, x.shape, kernel, strides, pads, ws)


def _conv2d_forward_checked(x, kernel, strides, pads, ws):
    """conv2d_forward's checks and im2col through the checking wrapper -> (cols, z buffer,
    im2col's geometry, z's shape)."""
    n_batch, h, w, c = x.shape
    kh, kw, kc, n_filters = kernel.shape
    if kc != c or kernel.dtype != x.dtype:
        raise ValueError(f"conv2d_forward: kernel {kernel.shape} {kernel.dtype} does not fit "
                         f"input {x.shape} {x.dtype} (channels and dtype must match).")
    out_h, out_w = output_hw(h, w, kh, kw, strides, pads)
    rows, depth = n_batch * out_h * out_w, kh * kw * c
    # One input channel: cols in Fortran order, so im2col fills each column with contiguous
    # copies (4x faster); BLAS takes either order at the same speed.
    cols = _buffer(ws, "cols", (rows, depth), x.dtype, "F" if c == 1 else "C")
    kernels.im2col_into(x, kh, kw, strides, pads, cols)
    geometry = kernels._unfold_geometry("kernels.im2col_into", x.shape, kh, kw, strides,
                                        pads)[0]
    z = _buffer(ws, "z", (rows, n_filters), x.dtype)
    return cols, z, geometry, (n_batch, out_h, out_w, n_filters)


def conv2d_backward(dz, cache, need_dx=True):
    """Twin of reference.conv2d_backward: dz (N, OH, OW, F) -> (dx or None, dkernel)."""
    cols, x_shape, kernel, strides, pads, ws = cache
    kh, kw, _, n_filters = kernel.shape
    dz2 = np.ascontiguousarray(dz).reshape(-1, n_filters)
    if dz2.shape[0] != cols.shape[0] or dz2.dtype != cols.dtype:
        raise ValueError(f"conv2d_backward: dz {dz.shape} {dz.dtype} does not match the forward "
                         f"pass ({cols.shape[0]} output positions, {cols.dtype}).")
    dkernel = _buffer(ws, "dkernel", kernel.shape, dz2.dtype)
    np.matmul(cols.T, dz2, out=dkernel.reshape(-1, n_filters))
    if not need_dx:
        return None, dkernel
    dcols = _buffer(ws, "dcols", cols.shape, dz2.dtype)  # C order, as col2im reads it
    np.matmul(dz2, kernel.reshape(-1, n_filters).T, out=dcols)
    key = (dcols.shape, dcols.dtype, tuple(x_shape), kh, kw, tuple(strides), tuple(pads))
    checked = _replay(ws, "checked col2im", key)
    if checked is None or checked[0] is not dcols:
        dx = _buffer(ws, "dx", tuple(x_shape), dz2.dtype)
        kernels.col2im_into(dcols, kh, kw, strides, pads, dx)
        if ws is not None:
            geometry = kernels._unfold_geometry("kernels.col2im_into", dx.shape, kh, kw,
                                                strides, pads)[0]
            ws["checked col2im"] = (key, (dcols, dx, geometry))
        return dx, dkernel
    _, dx, geometry = checked
    kernels._col2im(dcols, *geometry, dx)  # the buffers and geometry checked then
    return dx, dkernel


# Activations with a compiled twin: name -> (forward kernel, backward kernel).
_COMPILED_ACTIVATIONS = {"relu": (kernels.relu_into, kernels.relu_backward_into),
                         "gelu": (kernels.gelu_into, kernels.gelu_backward_into)}


def activation_forward(x, activation, ws=None):
    """Twin of reference.activation_forward: y = activation(x); relu and gelu compiled (into
    ws's buffer when given)."""
    compiled = _COMPILED_ACTIVATIONS.get(activation)
    if compiled is None or x.dtype not in (np.float32, np.float64):
        return reference.activation_forward(x, activation)
    x = np.ascontiguousarray(x)
    y = compiled[0](x, _buffer(ws, "y", x.shape, x.dtype))
    return y, (activation, x, y, ws)


def activation_backward(dy, cache):
    """Twin of reference.activation_backward: dL/dy -> dL/dx."""
    if len(cache) == 3:  # made by the reference
        return reference.activation_backward(dy, cache)
    activation, x, _, ws = cache
    dy = np.ascontiguousarray(dy)
    return _COMPILED_ACTIVATIONS[activation][1](dy, x, _buffer(ws, "dz", dy.shape, dy.dtype))


def relu_general_forward(x, negative_slope=0.0, max_value=None, threshold=0.0, ws=None):
    """Twin of reference.relu_general_forward; the plain max(x, 0) runs compiled."""
    if negative_slope == 0 and max_value is None and threshold == 0:
        return activation_forward(x, "relu", ws=ws)
    return reference.relu_general_forward(x, negative_slope, max_value, threshold)


def relu_general_backward(dy, cache):
    """Twin of reference.relu_general_backward."""
    if isinstance(cache[0], str):  # activation_forward's cache: the compiled plain ReLU
        return activation_backward(dy, cache)
    return reference.relu_general_backward(dy, cache)


def bias_activation_forward(z, bias, activation, ws=None):
    """Twin of reference.bias_activation_forward: y = activation(z + bias).

    'relu' and 'linear' on a buffer the caller hands over (ws given) run as one compiled
    pass in place over z; the others add the bias, then run activation_forward.
    """
    code = _FUSED_ACTIVATIONS.get(activation)
    if code is None or ws is None or not z.flags.c_contiguous:
        y, cache = activation_forward(z if bias is None else z + bias, activation)
        return y, (cache, None)
    z2 = z.reshape(-1, z.shape[-1])
    if bias is not None and type(z) is np.ndarray:
        key = (z2.shape, z2.dtype, type(bias), bias.shape, bias.dtype, bias.flags.c_contiguous)
        if _replay(ws, "checked forward", key) is None:
            kernels.bias_act_into(z2, bias, code)
            ws["checked forward"] = (key, True)
        else:
            kernels._bias_act(z2, bias, True, code)  # z and bias: as in the checked call
        return z, (None, (code, z, ws))
    kernels.bias_act_into(z2, bias, code)
    return z, (None, (code, z, ws))


def bias_activation_backward(dy, cache, need_dbias=True):
    """Twin of reference.bias_activation_backward: dy -> (dz, dbias or None)."""
    activation_cache, fused = cache
    if fused is None:
        dz = activation_backward(dy, activation_cache)
        return dz, (dz.reshape(-1, dz.shape[-1]).sum(axis=0) if need_dbias else None)
    code, y, ws = fused
    f = y.shape[-1]
    dy2 = np.ascontiguousarray(dy).reshape(-1, f)
    y2 = y.reshape(-1, f)
    # y: the forward's output (a buffer or a fresh array), so its type and layout are part
    # of the key; dz and partial are this call site's buffers, checked in the first call.
    key = (dy2.shape, dy2.dtype, type(y2), y2.shape, y2.dtype, y2.flags.c_contiguous, code)
    checked = _replay(ws, "checked backward", key)
    if checked is None:
        dz = _buffer(ws, "dz", dy2.shape, dy2.dtype)
        partial = _buffer(ws, "dbias_blocks",
                          (max(1, -(-dy2.shape[0] // kernels.SUM_BLOCK)), f), dy2.dtype)
        kernels.act_backward_bias_into(dy2, y2, code, dz, partial)
        ws["checked backward"] = (key, (dz, partial))
    else:
        dz, partial = checked
        kernels._act_backward_bias(dy2, y2, code, dz, partial)
    return dz.reshape(dy.shape), (partial.sum(axis=0) if need_dbias else None)


def activation_input(cache):
    """Twin of reference.activation_input, for caches of either activation op."""
    if len(cache) == 2:  # bias_activation_forward's (activation cache, fused part)
        activation_cache, fused = cache
        if fused is not None:
            raise ValueError("activation_input: a fused ReLU/linear pass keeps only its output.")
        return activation_cache[1]
    return reference.activation_input(cache)


def maxpool2d_forward(x, pool_size, strides, pads, ws=None):
    """Twin of reference.maxpool2d_forward: x (N, H, W, C) -> (y (N, OH, OW, C), cache)."""
    x = np.ascontiguousarray(x)
    key = (x.shape, x.dtype, tuple(pool_size), tuple(strides), tuple(pads))
    checked = _replay(ws, "checked forward", key)
    if checked is not None:  # the common window == stride case, checked before
        y, argmax, (ph, pw) = checked
        kernels._maxpool2d_tiled(x, ph, pw, y, argmax)
        return y, (argmax, x.shape, pool_size, ws)
    check_pool_pads("maxpool2d_forward", pool_size, pads)
    n_batch, h, w, c = x.shape
    ph, pw = pool_size
    out_h, out_w = output_hw(h, w, ph, pw, strides, pads)
    out_shape = (n_batch, out_h, out_w, c)
    y = _buffer(ws, "y", out_shape, x.dtype)
    if tuple(strides) == tuple(pool_size) and not any(pads):
        # int32 positions halve the argmax traffic of the common case.
        argmax = _buffer(ws, "argmax32", out_shape, np.int32)
        kernels.maxpool2d_tiled_into(x, pool_size, y, argmax)
        if ws is not None:
            ws["checked forward"] = (key, (y, argmax, (int(ph), int(pw))))
        return y, (argmax, x.shape, pool_size, ws)
    argmax = _buffer(ws, "argmax", out_shape, np.int64)
    kernels.maxpool2d_into(x, pool_size, strides, pads, y, argmax)
    return y, (argmax, x.shape, None, ws)


def maxpool2d_backward(dy, cache):
    """Twin of reference.maxpool2d_backward: dy (N, OH, OW, C) -> dx (N, H, W, C)."""
    argmax, x_shape, tiled_pool, ws = cache
    dy = np.ascontiguousarray(dy)
    if tiled_pool is None:
        return kernels.maxpool2d_backward_into(dy, argmax, _buffer(ws, "dx", tuple(x_shape),
                                                                   dy.dtype))
    key = (dy.shape, dy.dtype, tuple(x_shape), tuple(tiled_pool))
    checked = _replay(ws, "checked backward", key)
    if checked is None or checked[0] is not argmax:
        dx = _buffer(ws, "dx", tuple(x_shape), dy.dtype)
        kernels.maxpool2d_tiled_backward_into(dy, argmax, tiled_pool, dx)
        if ws is not None:
            ws["checked backward"] = (key, (argmax, dx, tuple(map(int, tiled_pool))))
        return dx
    _, dx, (ph, pw) = checked
    kernels._maxpool2d_tiled_backward(dy, argmax, ph, pw, dx)  # argmax and dx checked then
    return dx


def softmax_crossentropy_forward(logits, target, ws=None):
    """Twin of reference.softmax_crossentropy_forward: logits (N, K), target (N,) labels or
    (N, K) probabilities -> (loss (N,), cache); labels in one compiled pass."""
    target = np.asarray(target)
    if (target.ndim != 1 or logits.ndim != 2 or target.dtype.kind not in "iu"
            or logits.dtype not in (np.float32, np.float64)):
        return reference.softmax_crossentropy_forward(logits, target)
    logits = np.ascontiguousarray(logits)
    labels = np.ascontiguousarray(target)
    loss = np.empty(logits.shape[0], logits.dtype)
    probs = _buffer(ws, "probs", logits.shape, logits.dtype)
    kernels.softmax_crossentropy_labels_into(logits, labels, loss, probs)
    return loss, (probs, labels, "labels")


def softmax_crossentropy_backward(dloss, cache):
    """Twin of reference.softmax_crossentropy_backward: dloss (N,) -> dL/dlogits (N, K)."""
    if len(cache) == 2:  # made by the reference (a dense target)
        return reference.softmax_crossentropy_backward(dloss, cache)
    probs, labels, _ = cache
    dloss = np.ascontiguousarray(dloss, dtype=probs.dtype)
    return kernels.softmax_crossentropy_labels_backward_into(dloss, probs, labels,
                                                             np.empty_like(probs))


def _contiguous(*arrays):
    for a in arrays:  # a loop, not all(genexpr): the optimizers call this per weight per step
        if a is not None and not a.flags.c_contiguous:
            return False
    return True


def avgpool2d_forward(x, pool_size, strides, pads, ws=None):
    """Twin of reference.avgpool2d_forward: x (N, H, W, C) -> (y (N, OH, OW, C), cache)."""
    check_pool_pads("avgpool2d_forward", pool_size, pads)
    x = np.ascontiguousarray(x)
    n_batch, h, w, c = x.shape
    out_h, out_w = output_hw(h, w, *pool_size, strides, pads)
    y = _buffer(ws, "y", (n_batch, out_h, out_w, c), x.dtype)
    kernels.avgpool2d_into(x, pool_size, strides, pads, y)
    return y, (x.shape, pool_size, strides, pads, ws)


def avgpool2d_backward(dy, cache):
    """Twin of reference.avgpool2d_backward: dy (N, OH, OW, C) -> dx (N, H, W, C)."""
    x_shape, pool_size, strides, pads, ws = cache
    dy = np.ascontiguousarray(dy)
    dx = _buffer(ws, "dx", tuple(x_shape), dy.dtype)
    return kernels.avgpool2d_backward_into(dy, pool_size, strides, pads, dx)


def _alone(array):
    return array


def batchnorm_moments(x, allreduce=None):
    """Twin of reference.batchnorm_moments: x (..., C) -> (mean (C,), variance (C,)), the
    whole batch's (allreduce), from two compiled passes with float64 channel sums."""
    allreduce = allreduce or _alone
    c = x.shape[-1]
    rows = np.ascontiguousarray(x).reshape(-1, c)
    first = np.empty(c + 1)
    kernels.channel_sums_into(rows, first[:c])
    first[c] = rows.shape[0]
    first = allreduce(first)
    count = first[c]
    mean = first[:c] / count
    variance = allreduce(kernels.centered_square_sums_into(rows, mean, np.empty(c))) / count
    return mean.astype(x.dtype), variance.astype(x.dtype)


def batchnorm_forward(x, mean, variance, gamma, beta, epsilon, ws=None):
    """Twin of reference.batchnorm_forward: y = x * inv + (beta - mean * inv), inv = gamma /
    sqrt(variance + epsilon); one compiled pass. x (..., C) -> (y like x, cache)."""
    x = np.ascontiguousarray(x)
    t = x.dtype.type
    dtype, c = x.dtype, x.shape[-1]
    mean = np.ascontiguousarray(mean, dtype)
    inv = 1 / np.sqrt(np.asarray(variance, dtype) + t(epsilon))
    scale = inv if gamma is None else inv * gamma
    shift = -mean * scale
    if beta is not None:
        shift = shift + beta
    y = _buffer(ws, "y", x.shape, dtype)
    kernels.scale_shift_into(x.reshape(-1, c), np.ascontiguousarray(scale, dtype),
                             np.ascontiguousarray(shift, dtype), y.reshape(-1, c))
    return y, (x, mean, np.ascontiguousarray(inv), gamma, ws)


def batchnorm_backward(dy, cache, training, allreduce=None, need_dx=True):
    """Twin of reference.batchnorm_backward: dy -> (dx or None, dgamma, dbeta); two compiled
    passes (the sums, then dx) in training, one NumPy product in inference."""
    x, mean, inv, gamma, ws = cache
    c = x.shape[-1]
    dy = np.ascontiguousarray(dy)
    if dy.shape != x.shape or dy.dtype != x.dtype:
        raise ValueError(f"batchnorm_backward: dy {dy.shape} {dy.dtype} does not match the "
                         f"forward pass ({x.shape}, {x.dtype}).")
    rows, drows = x.reshape(-1, c), dy.reshape(-1, c)
    sums = kernels.batchnorm_grad_sums_into(drows, rows, mean, inv, np.empty((2, c)))
    grads = sums[1].astype(dy.dtype), sums[0].astype(dy.dtype)
    if not need_dx:
        return (None, *grads)
    g = inv if gamma is None else gamma * inv
    if not training:
        return dy * g, *grads
    totals = (allreduce or _alone)(np.append(sums.reshape(-1), rows.shape[0]))
    count = totals[-1]
    mean_dy = (totals[:c] / count).astype(dy.dtype)
    mean_dy_xhat = (totals[c:2 * c] / count).astype(dy.dtype)
    dx = _buffer(ws, "dx", dy.shape, dy.dtype)
    kernels.batchnorm_dx_into(drows, rows, mean, inv, np.ascontiguousarray(g, dy.dtype),
                              mean_dy, mean_dy_xhat, dx.reshape(-1, c))
    return dx, *grads


def dropout_forward(x, rate, noise_shape, rng, ws=None):
    """Twin of reference.dropout_forward (the same draws from rng, so the same mask): one
    compiled pass makes the mask and y. A noise_shape that broadcasts uses the reference."""
    if rate >= 1 or tuple(noise_shape) != x.shape:
        return reference.dropout_forward(x, rate, noise_shape, rng)
    x = np.ascontiguousarray(x)
    u = _buffer(ws, "u", x.shape, x.dtype)
    rng.random(dtype=x.dtype, out=u)
    y = _buffer(ws, "y", x.shape, x.dtype)
    keep = _buffer(ws, "keep", x.shape, np.bool_)
    kernels.dropout_into(x, u, rate, y, keep)
    return y, (keep, x.dtype.type(1 - rate), ws)


def dropout_backward(dy, cache):
    """Twin of reference.dropout_backward: dy -> dx = dy / (1 - rate) where kept, else 0."""
    if len(cache) == 2:  # made by the reference (a broadcast mask, or rate 1)
        return reference.dropout_backward(dy, cache)
    keep, keep_prob, ws = cache
    dy = np.ascontiguousarray(dy)
    dx = _buffer(ws, "dx", dy.shape, dy.dtype)
    return kernels.dropout_backward_into(dy, keep, keep_prob, dx)


def adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon):
    """Twin of reference.adam_update: one compiled pass over the four arrays (a parameter that
    is a non-contiguous view cannot be walked flat, so it takes the reference)."""
    # Inline, not _contiguous(): this runs for every weight every step.
    if not (param.flags.c_contiguous and m.flags.c_contiguous and v.flags.c_contiguous):
        return reference.adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon)
    kernels.adam_update(np.ascontiguousarray(grad), param, m, v, beta_1, beta_2, alpha, epsilon)
    return None


def adamw_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon, decay):
    """Twin of reference.adamw_update: the weight decay folded into Adam's compiled pass."""
    if not _contiguous(param, m, v):
        return reference.adamw_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon, decay)
    kernels.adam_update(np.ascontiguousarray(grad), param, m, v, beta_1, beta_2, alpha, epsilon,
                        decay)
    return None


def rmsprop_update(grad, param, velocity, momentum_buffer, average_grad, learning_rate, rho,
                   momentum, epsilon):
    """Twin of reference.rmsprop_update: one compiled pass (non-contiguous: the reference)."""
    if not _contiguous(param, velocity, momentum_buffer, average_grad):
        return reference.rmsprop_update(grad, param, velocity, momentum_buffer, average_grad,
                                        learning_rate, rho, momentum, epsilon)
    kernels.rmsprop_update(np.ascontiguousarray(grad), param, velocity, momentum_buffer,
                           average_grad, learning_rate, rho, momentum, epsilon)
    return None
