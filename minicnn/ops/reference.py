"""The reference backend: every op of minicnn as readable NumPy, the math as a textbook writes it.

This is the file to read (and to change) for the math. ``minicnn.ops.set_backend("reference")``
(or ``MINICNN_BACKEND=reference``) makes fit, evaluate and predict run on exactly these
functions; the default backend, :mod:`minicnn.ops.fast`, has the same names, arguments and
results, only faster, and the tests hold the two together.

The contract of every op pair::

    y, cache = <op>_forward(inputs..., params..., settings..., ws=None)
    dx, dparams... = <op>_backward(dy, cache, ...)

``cache`` is what backward needs (the forward pass returns it; nothing is stored anywhere
else, so one op can run in many threads at once). ``ws`` is a dict of reusable buffers the
fast backend may fill; the reference ignores it and allocates fresh arrays. Backward passes sum
over the batch and never divide by it: the loss does that, once.

Notation::

    x       (N, H, W, C)      input batch, channels last (NHWC, as Keras)
    kernel  (KH, KW, C, F)    Keras layout: kernel height, width, in channels, filters
    strides (SH, SW)
    pads    (top, bottom, left, right), ints >= 0
    OH = (H + top + bottom - KH) // SH + 1
    OW = (W + left + right - KW) // SW + 1

Convolution is cross-correlation, as in Keras (the kernel is not flipped)::

    z[n, oh, ow, f] = sum_{i, j, c} xp[n, oh*SH + i, ow*SW + j, c] * kernel[i, j, c, f]

where ``xp`` is ``x`` zero-padded by ``pads``. Output dtype equals input dtype (float32 or
float64); nothing is promoted.
"""

from __future__ import annotations

import numpy as np

from .padding import check_pool_pads, output_hw

__all__ = [
    "conv2d_naive", "im2col", "col2im",
    "conv2d_forward", "conv2d_backward",
    "dense_forward", "dense_backward",
    "ACTIVATIONS", "activation_forward", "activation_backward", "activation_input",
    "bias_activation_forward", "bias_activation_backward",
    "maxpool2d_forward", "maxpool2d_backward",
    "avgpool2d_forward", "avgpool2d_backward",
    "softmax_crossentropy_forward", "softmax_crossentropy_backward",
    "merge_forward", "merge_backward", "concatenate_forward", "concatenate_backward",
    "sgd_update", "rmsprop_update", "adagrad_update", "adam_update", "adamw_update",
]


# --------------------------------------------------------------------------- convolution


def conv2d_naive(x, kernel, bias, strides, pads):
    """Convolution by plain loops over n, oh, ow, f: the oracle the other versions are tested on.

    x: (N, H, W, C), kernel: (KH, KW, C, F), bias: (F,) or None -> y: (N, OH, OW, F), x.dtype.
    ``y[n, oh, ow, f] = bias[f] + sum_{i,j,c} xp[n, oh*SH + i, ow*SW + j, c] * kernel[i, j, c, f]``.
    Slow (pure Python loops); use it on small shapes only.
    """
    n_batch, h, w, _ = x.shape
    kh, kw, _, n_filters = kernel.shape
    sh, sw = strides
    top, bottom, left, right = pads
    oh_max, ow_max = output_hw(h, w, kh, kw, strides, pads)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    y = np.zeros((n_batch, oh_max, ow_max, n_filters), dtype=x.dtype)
    for n in range(n_batch):
        for oh in range(oh_max):
            for ow in range(ow_max):
                window = xp[n, oh * sh : oh * sh + kh, ow * sw : ow * sw + kw, :]  # (KH, KW, C)
                for f in range(n_filters):
                    y[n, oh, ow, f] = np.sum(window * kernel[:, :, :, f])
                    if bias is not None:
                        y[n, oh, ow, f] += bias[f]
    return y


def im2col(x, kh, kw, strides, pads):
    """Unfold every convolution window of x into one row of a matrix.

    x: (N, H, W, C) -> cols: (N*OH*OW, KH*KW*C), x.dtype.
    Rows are ordered (n, oh, ow); columns (i, j, c), so that
    ``cols[(n*OH + oh)*OW + ow, (i*KW + j)*C + c] = xp[n, oh*SH + i, ow*SW + j, c]``
    (``xp`` = x zero-padded; padded positions give 0), and
    ``cols @ kernel.reshape(KH*KW*C, F)`` is the convolution.

    As Chainer's ``utils/conv.py``: pad once, then loop only over the KH*KW kernel positions,
    each copying a strided slice of the whole batch.
    """
    n_batch, h, w, c = x.shape
    sh, sw = strides
    top, bottom, left, right = pads
    oh, ow = output_hw(h, w, kh, kw, strides, pads)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))
    cols = np.empty((n_batch, oh, ow, kh, kw, c), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            # Kernel offset (i, j) meets the input at rows i, i+SH, ..., i+(OH-1)*SH.
            cols[:, :, :, i, j, :] = xp[:, i : i + sh * oh : sh, j : j + sw * ow : sw, :]
    return cols.reshape(n_batch * oh * ow, kh * kw * c)


def col2im(dcols, x_shape, kh, kw, strides, pads):
    """Fold rows back into an image, summing overlaps: the adjoint (transpose) of im2col.

    dcols: (N*OH*OW, KH*KW*C) -> dx: (N, H, W, C), dcols.dtype.
    ``dx[n, h, w, c] = sum of dcols[(n, oh, ow), (i, j, c)] over all (oh, ow, i, j) with
    oh*SH + i - top == h and ow*SW + j - left == w``; entries that fall into the padding are
    dropped. Adjoint means ``<im2col(x), dcols> == <x, col2im(dcols)>`` for all x, dcols,
    which is exactly what backpropagation through im2col needs.
    """
    n_batch, h, w, c = x_shape
    sh, sw = strides
    top, bottom, left, right = pads
    oh, ow = output_hw(h, w, kh, kw, strides, pads)
    dcols = dcols.reshape(n_batch, oh, ow, kh, kw, c)
    dxp = np.zeros((n_batch, h + top + bottom, w + left + right, c), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            # += on a strided slice is safe: within one (i, j) the slice has no repeated cells.
            dxp[:, i : i + sh * oh : sh, j : j + sw * ow : sw, :] += dcols[:, :, :, i, j, :]
    return np.ascontiguousarray(dxp[:, top : top + h, left : left + w, :])


def conv2d_forward(x, kernel, strides, pads, ws=None):
    """Convolution (no bias: see bias_activation_forward) via im2col and one matrix product.

    x: (N, H, W, C), kernel: (KH, KW, C, F) -> (z, cache): z (N, OH, OW, F) in x.dtype.
    ``z = im2col(x) @ kernel.reshape(KH*KW*C, F)``; the cache keeps the unfolded input.
    """
    n_batch, h, w, _ = x.shape
    kh, kw, _, n_filters = kernel.shape
    oh, ow = output_hw(h, w, kh, kw, strides, pads)
    cols = im2col(x, kh, kw, strides, pads)
    z = cols @ kernel.reshape(-1, n_filters)
    return z.reshape(n_batch, oh, ow, n_filters), (cols, x.shape, kernel, strides, pads)


def conv2d_backward(dz, cache, need_dx=True):
    """Gradients of conv2d_forward, given dL/dz (N, OH, OW, F).

    -> (dx (N, H, W, C) or None when ``need_dx`` is False, dkernel (KH, KW, C, F)), dz.dtype.
    With ``dZ = dz.reshape(N*OH*OW, F)``::

        dkernel = (cols.T @ dZ).reshape(KH, KW, C, F)
        dx      = col2im(dZ @ kernel.reshape(KH*KW*C, F).T)

    A network's first layer passes need_dx=False: nobody needs dL/d(images).
    """
    cols, x_shape, kernel, strides, pads = cache
    kh, kw, _, n_filters = kernel.shape
    dz2 = dz.reshape(-1, n_filters)
    dkernel = (cols.T @ dz2).reshape(kernel.shape)
    if not need_dx:
        return None, dkernel
    dcols = dz2 @ kernel.reshape(-1, n_filters).T
    return col2im(dcols, x_shape, kh, kw, strides, pads), dkernel


# --------------------------------------------------------------------------- dense


def dense_forward(x, kernel, ws=None):
    """Fully connected map on the last axis (no bias: see bias_activation_forward).

    x: (N, ..., IN), kernel: (IN, UNITS) -> (z, cache): z (N, ..., UNITS) = x @ kernel.
    """
    return x @ kernel, (x, kernel)


def dense_backward(dz, cache, need_dx=True):
    """Gradients of dense_forward: dz (N, ..., UNITS) -> (dx (N, ..., IN) or None, dkernel).

    ``dkernel = X.T @ dZ`` with every leading axis folded into the rows; ``dx = dz @ kernel.T``.
    """
    x, kernel = cache
    dkernel = x.reshape(-1, x.shape[-1]).T @ dz.reshape(-1, dz.shape[-1])
    return (dz @ kernel.T if need_dx else None), dkernel


# --------------------------------------------------------------------------- activations
#
# Each activation is a pair: forward(z) -> y, and backward(dy, z, y) -> dz, the
# vector-Jacobian product (the backward may use the input z, the output y, or both).


def linear_forward(z):
    """y = z."""
    return z


def linear_backward(dy, z, y):
    return dy


def relu_forward(z):
    """y = max(z, 0)."""
    return np.maximum(z, 0)


def relu_backward(dy, z, y):
    """dz = dy where z > 0, else 0 (the subgradient at 0 is taken as 0, as Keras)."""
    return np.where(z > 0, dy, 0).astype(dy.dtype, copy=False)


def sigmoid_forward(z):
    """y = 1 / (1 + exp(-z)), computed without overflow for large |z|."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1 / (1 + e), e / (1 + e)).astype(z.dtype, copy=False)


def sigmoid_backward(dy, z, y):
    """dz = dy * y * (1 - y)."""
    return dy * y * (1 - y)


def tanh_forward(z):
    """y = tanh(z)."""
    return np.tanh(z)


def tanh_backward(dy, z, y):
    """dz = dy * (1 - y^2)."""
    return dy * (1 - y * y)


def softmax_forward(z):
    """Row-wise softmax over the last axis: y_k = exp(z_k - max z) / sum_j exp(z_j - max z).

    Subtracting the max keeps exp from overflowing and does not change the result.
    """
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def softmax_backward(dy, z, y):
    """dz = y * (dy - sum_k dy_k y_k), the softmax Jacobian J = diag(y) - y y^T applied to dy."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


ACTIVATIONS = {
    "linear": (linear_forward, linear_backward),
    "relu": (relu_forward, relu_backward),
    "sigmoid": (sigmoid_forward, sigmoid_backward),
    "tanh": (tanh_forward, tanh_backward),
    "softmax": (softmax_forward, softmax_backward),
}


def activation_forward(x, activation, ws=None):
    """y = activation(x) by name ('relu', 'softmax', ...: the keys of ACTIVATIONS).

    x: any shape -> (y same shape and dtype, cache).
    """
    forward, _ = ACTIVATIONS[activation]
    y = forward(x)
    return y, (activation, x, y)


def activation_backward(dy, cache):
    """dy = dL/dy -> dL/dx, through the activation's vector-Jacobian product."""
    activation, x, y = cache
    _, backward = ACTIVATIONS[activation]
    return backward(dy, x, y)


def activation_input(cache):
    """The input z of the activation whose forward made `cache` (for softmax: the logits)."""
    return cache[1]


def bias_activation_forward(z, bias, activation, ws=None):
    """y = activation(z + bias): the end of every Conv2D and Dense layer.

    z: (..., F), bias: (F,) or None (use_bias=False) -> (y (..., F), cache).
    """
    if bias is not None:
        z = z + bias
    return activation_forward(z, activation)


def bias_activation_backward(dy, cache, need_dbias=True):
    """dy (..., F) -> (dz (..., F), dbias (F,) or None): dz through the activation, then
    ``dbias = dz`` summed over every axis but the last (the bias is added at every position)."""
    dz = activation_backward(dy, cache)
    return dz, (dz.reshape(-1, dz.shape[-1]).sum(axis=0) if need_dbias else None)


# --------------------------------------------------------------------------- pooling


def _windows(x, pool_size, strides, pads, fill):
    """windows[n, oh, ow, i*PW + j, c] = xp[n, oh*SH + i, ow*SW + j, c], xp padded with fill."""
    n_batch, h, w, c = x.shape
    ph, pw = pool_size
    sh, sw = strides
    top, bottom, left, right = pads
    oh, ow = output_hw(h, w, ph, pw, strides, pads)
    xp = np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=fill)
    windows = np.empty((n_batch, oh, ow, ph * pw, c), dtype=x.dtype)
    for i in range(ph):
        for j in range(pw):
            windows[:, :, :, i * pw + j, :] = xp[:, i : i + sh * oh : sh, j : j + sw * ow : sw, :]
    return windows


def maxpool2d_forward(x, pool_size, strides, pads, ws=None):
    """Max over each window, channels independent; padding never wins (it acts as -inf).

    x: (N, H, W, C), pool_size (PH, PW) -> (y (N, OH, OW, C) x.dtype, cache). The cache holds
    ``argmax`` (N, OH, OW, C) int64: the flat position ``h*W + w`` in (unpadded) x of each
    window's maximum. Ties go to the first maximum in row-major (i, j) window order. Pads must
    be smaller than the pool size (ValueError otherwise).
    """
    check_pool_pads("maxpool2d_forward", pool_size, pads)
    _, _, w, _ = x.shape
    pw = pool_size[1]
    sh, sw = strides
    top, _, left, _ = pads
    windows = _windows(x, pool_size, strides, pads, -np.inf)
    k = np.argmax(windows, axis=3)  # first maximum wins ties, in (i, j) row-major order
    y = np.take_along_axis(windows, k[:, :, :, None, :], axis=3)[:, :, :, 0, :]
    # Window position k = i*PW + j  ->  unpadded input coordinates (h, w).
    oh, ow = y.shape[1:3]
    rows = np.arange(oh)[None, :, None, None] * sh + k // pw - top
    cols = np.arange(ow)[None, None, :, None] * sw + k % pw - left
    return y, ((rows * w + cols).astype(np.int64), x.shape)


def maxpool2d_backward(dy, cache):
    """Route each output gradient to the input position that won the max.

    dy: (N, OH, OW, C) -> dx (N, H, W, C): ``dx[n, h, w, c] = sum of dy[n, oh, ow, c] over the
    windows whose argmax is h*W + w`` (overlapping windows can pick the same input).
    """
    argmax, x_shape = cache
    n_batch, h, w, c = x_shape
    dx = np.zeros((n_batch, h * w, c), dtype=dy.dtype)
    n_idx = np.arange(n_batch)[:, None, None, None]
    c_idx = np.arange(c)[None, None, None, :]
    np.add.at(dx, (n_idx, argmax, c_idx), dy)  # unbuffered: repeated indices accumulate
    return dx.reshape(x_shape)


def avgpool2d_forward(x, pool_size, strides, pads, ws=None):
    """Mean over each window of real inputs (padding is not counted, as Keras/TensorFlow).

    x: (N, H, W, C) -> (y (N, OH, OW, C) x.dtype, cache).
    ``y[n, oh, ow, c] = sum of the window's real inputs / count[oh, ow]``.
    """
    ones = np.ones((1, *x.shape[1:3], 1), dtype=x.dtype)
    count = _windows(ones, pool_size, strides, pads, 0).sum(axis=3)  # (1, OH, OW, 1)
    y = _windows(x, pool_size, strides, pads, 0).sum(axis=3) / count
    return y.astype(x.dtype, copy=False), (count, x.shape, pool_size, strides, pads)


def avgpool2d_backward(dy, cache):
    """Each window's dy / count spread evenly over its real inputs: col2im of the windows."""
    count, x_shape, pool_size, strides, pads = cache
    ph, pw = pool_size
    share = (dy / count).astype(dy.dtype, copy=False)  # (N, OH, OW, C)
    n_batch, oh, ow, c = dy.shape
    # A window's share goes to all its PH*PW cells; col2im adds them up and drops the padding.
    dcols = np.broadcast_to(share[:, :, :, None, None, :], (n_batch, oh, ow, ph, pw, c))
    return col2im(dcols.reshape(n_batch * oh * ow, ph * pw * c), x_shape, ph, pw, strides, pads)


# ------------------------------------------------------------------- softmax + cross-entropy


def softmax_crossentropy_forward(logits, target, ws=None):
    """Cross-entropy of softmax(logits) against the target, per sample, computed from logits.

    logits: (N, K); target: (N,) integer class labels, or (N, K) probabilities (one-hot or soft)
    -> (loss (N,), cache). ``loss_n = -sum_k t_nk log softmax(z_n)_k`` with the log-softmax
    computed stably as ``z - max z - log sum exp(z - max z)``. This pair is one op, not a
    softmax followed by a log: fused, it never takes the log of a probability that rounded to 0.
    """
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    target = _dense_target(target, logits.shape[-1], logits.dtype)
    loss = -(target * log_probs).sum(axis=-1)
    return loss, (np.exp(log_probs), target)


def softmax_crossentropy_backward(dloss, cache):
    """dloss (N,) = dL/dloss_n (the loss's weights, e.g. 1/N) -> dL/dlogits (N, K).

    ``dlogits_n = dloss_n * (sum_k t_nk * softmax(z_n) - t_n)``, which is ``p - onehot`` for a
    one-hot target: the chain rule through log-softmax, in one step.
    """
    probs, target = cache
    scale = dloss.astype(probs.dtype, copy=False)[:, None]
    return scale * (probs * target.sum(axis=-1, keepdims=True) - target)


def _dense_target(target, num_classes, dtype):
    """(N,) labels -> one-hot (N, K); (N, K) probabilities pass through in `dtype`."""
    target = np.asarray(target)
    if target.ndim == 1:
        onehot = np.zeros((target.size, num_classes), dtype=dtype)
        onehot[np.arange(target.size), target.astype(np.intp)] = 1
        return onehot
    return target.astype(dtype, copy=False)


# --------------------------------------------------------------------------- merging tensors


def _unbroadcast(g, shape):
    """Sum g down to `shape`: the adjoint of NumPy broadcasting (the batch axis included)."""
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    return g


def merge_forward(xs, mode, ws=None):
    """Elementwise merge of several tensors (broadcast as NumPy does), as Keras's merge layers.

    xs: a list of arrays; mode: 'add' (sum), 'subtract' (x0 - x1, two inputs), 'multiply'
    (product), 'average' (sum / n), 'maximum' (the largest, first wins ties)
    -> (y, cache).
    """
    if mode == "add":
        y = xs[0] + sum(xs[1:])
    elif mode == "subtract":
        y = xs[0] - xs[1]
    elif mode == "multiply":
        y = xs[0]
        for x in xs[1:]:
            y = y * x
    elif mode == "average":
        y = (xs[0] + sum(xs[1:])) / xs[0].dtype.type(len(xs))
    elif mode == "maximum":
        y = xs[0]
        for x in xs[1:]:
            y = np.maximum(y, x)
    else:
        raise ValueError(f"merge_forward: unknown mode {mode!r}.")
    return y, (mode, xs, y)


def merge_backward(dy, cache):
    """dy -> one gradient per input (summed over the axes it was broadcast along).

    add: dy each; subtract: dy, -dy; multiply: dy times the product of the others; average:
    dy / n each; maximum: dy to the input that held the maximum (the first, on ties).
    """
    mode, xs, y = cache
    if mode == "add":
        grads = [dy for _ in xs]
    elif mode == "subtract":
        grads = [dy, -dy]
    elif mode == "multiply":
        grads = []
        for i in range(len(xs)):
            g = dy
            for j, x in enumerate(xs):
                if j != i:
                    g = g * x
            grads.append(g)
    elif mode == "average":
        grads = [dy / dy.dtype.type(len(xs)) for _ in xs]
    else:  # maximum: route to the first input equal to the max
        taken = np.zeros(np.broadcast_shapes(*(x.shape for x in xs)), dtype=bool)
        grads = []
        for x in xs:
            wins = (x == y) & ~taken
            taken |= wins
            grads.append(np.where(wins, dy, 0).astype(dy.dtype, copy=False))
    return [_unbroadcast(g, x.shape) for g, x in zip(grads, xs, strict=True)]


def concatenate_forward(xs, axis=-1, ws=None):
    """Join arrays along `axis` (all other sizes equal) -> (y, cache)."""
    return np.concatenate(xs, axis=axis), ([x.shape[axis] for x in xs], axis)


def concatenate_backward(dy, cache):
    """dy -> the pieces of dy that came from each input."""
    sizes, axis = cache
    return np.split(dy, np.cumsum(sizes)[:-1], axis=axis)


# --------------------------------------------------------------------------- optimizer update


# Each update works in place on one parameter array and its slots (the optimizer's state for
# it, see minicnn/optimizers.py), in the parameter's dtype, with the scalars (learning rate,
# decay factors) given as Python floats. Slots that decay geometrically (moments, velocities)
# are set to 0 once they fall below the dtype's smallest normal number, as the flush-to-zero
# CPU kernels of TensorFlow and XLA do: a weight whose gradient stays 0 (a dead ReLU unit)
# would otherwise spend its slots in subnormal numbers, where arithmetic is ~10x slower.


def _flush_subnormals(slot):
    # slot *= (|slot| >= tiny): ~10x faster than the masked assignment slot[|slot| < tiny] = 0
    # when many entries are 0 (the dead units this is for).
    np.multiply(slot, np.abs(slot) >= np.finfo(slot.dtype).tiny, out=slot)


def sgd_update(grad, param, velocity, learning_rate, momentum, nesterov):
    """Keras's SGD step, in place. velocity: the momentum slot, or None without momentum.

    Plain: ``param -= lr g``. With momentum: ``velocity = momentum velocity - lr g``, then
    ``param += velocity``, or with nesterov ``param += momentum velocity - lr g``.
    """
    t = param.dtype.type
    lr = t(learning_rate)
    if velocity is None:
        param -= lr * grad
        return
    mu = t(momentum)
    velocity *= mu
    velocity -= lr * grad
    _flush_subnormals(velocity)
    if nesterov:
        param += mu * velocity - lr * grad
    else:
        param += velocity


def rmsprop_update(grad, param, velocity, momentum_buffer, average_grad, learning_rate, rho,
                   momentum, epsilon):
    """Keras's RMSprop step, in place (Hinton, 2012).

    ``velocity = rho velocity + (1 - rho) g^2``; centered (average_grad not None): also
    ``average_grad = rho average_grad + (1 - rho) g`` and the denominator is
    ``velocity - average_grad^2 + eps``, otherwise ``velocity + eps`` (epsilon inside the
    square root, as Keras). ``increment = lr g / sqrt(denominator)``; with a momentum slot
    (momentum_buffer not None) ``momentum_buffer = momentum momentum_buffer + increment`` and
    ``param -= momentum_buffer``, otherwise ``param -= increment``.
    """
    t = param.dtype.type
    velocity *= t(rho)
    velocity += t(1 - rho) * (grad * grad)
    _flush_subnormals(velocity)
    if average_grad is not None:
        average_grad *= t(rho)
        average_grad += t(1 - rho) * grad
        _flush_subnormals(average_grad)
        denominator = velocity - average_grad * average_grad + t(epsilon)
    else:
        denominator = velocity + t(epsilon)
    increment = t(learning_rate) * grad / np.sqrt(denominator)
    if momentum_buffer is None:
        param -= increment
        return
    momentum_buffer *= t(momentum)
    momentum_buffer += increment
    _flush_subnormals(momentum_buffer)
    param -= momentum_buffer


def adagrad_update(grad, param, accumulator, learning_rate, epsilon):
    """Keras's Adagrad step, in place (Duchi et al., 2011).

    ``accumulator += g^2``, ``param -= lr g / sqrt(accumulator + eps)``. The accumulator
    starts at initial_accumulator_value (0.1), not 0, and only grows.
    """
    t = param.dtype.type
    accumulator += grad * grad
    param -= t(learning_rate) * grad / np.sqrt(accumulator + t(epsilon))


def adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon):
    """Keras's Adam step on one parameter array, in place (param, m and v are updated).

    ``m += (1 - b1)(g - m)``, ``v += (1 - b2)(g^2 - v)``, ``param -= alpha m / (sqrt(v) + eps)``
    with alpha already bias-corrected (see optimizers.Adam). m and v are flushed to zero
    below the smallest normal number (see above).
    """
    t = param.dtype.type
    m += t(1 - beta_1) * (grad - m)
    v += t(1 - beta_2) * (grad * grad - v)
    _flush_subnormals(m)
    _flush_subnormals(v)
    param -= t(alpha) * m / (np.sqrt(v) + t(epsilon))


def adamw_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon, decay):
    """AdamW (Loshchilov & Hutter, 2019) as Keras does it: decoupled weight decay
    ``param -= param * decay`` (decay = weight_decay * learning rate), then the Adam step."""
    param -= param * param.dtype.type(decay)
    adam_update(grad, param, m, v, beta_1, beta_2, alpha, epsilon)
