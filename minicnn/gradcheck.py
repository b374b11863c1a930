"""Finite-difference gradient checks (in the spirit of torch.autograd.gradcheck), for learners.

For a layer or a whole model the scalar objective is
    L = sum(output * G)          with a fixed random upstream gradient G, or
    L = loss(y, model(x))        for a compiled model when y is given,
and each analytic gradient (backward) is compared with central differences
    dL/dw ~ (L(w + eps) - L(w - eps)) / (2 eps)
on up to `num_checks` randomly chosen entries of the input and of every parameter.
The error per tensor is ||analytic - numeric|| / (||analytic|| + ||numeric||) over the checked
entries (0 when both vanish): robust where many true gradients are exactly zero (ReLU, pooling).
"""

import numpy as np

from .layers.base import Layer
from .models import Sequential


def _relative_error(analytic, numeric):
    scale = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return 0.0 if scale == 0 else float(np.linalg.norm(analytic - numeric) / scale)


def _as_model_parts(target, x):
    """(forward(x) -> out, tensors {name: array}, layers) for a Layer or a Sequential."""
    if isinstance(target, Sequential):
        if not target.built:
            target.build(x.shape[1:])
        layers = target.layers
        tensors = {f"{layer.name}/{key}": value for layer in layers
                   for key, value in layer.params.items()}
    elif isinstance(target, Layer):
        if not target.built:
            target.build(x.shape[1:])
        layers = [target]
        tensors = dict(target.params)
    else:
        raise TypeError(f"gradcheck: expected a minicnn Layer or Sequential, got "
                        f"{type(target).__name__}.")
    if any(layer.dtype != np.float64 for layer in layers):
        raise ValueError(
            "gradcheck: finite differences need float64; create the layers with dtype='float64' "
            "(or models.Sequential([...], dtype='float64'))."
        )
    return layers, tensors


def gradcheck(target, x, y=None, eps=1e-6, num_checks=40, seed=0):
    """Compare backward with central differences for the input and every parameter.

    target: a float64 Layer or Sequential; x: (N, *input_shape) float64 (use distinct values so
    max pooling has no ties and ReLU no kinks at 0); y: labels for a compiled model's loss, or
    None to use a random upstream gradient. Returns {'x': err, '<param name>': err, ...}:
    relative errors, ~1e-9 for a correct backward in float64.
    """
    x = np.array(x, dtype=np.float64)  # a private copy: the input is perturbed in place
    layers, tensors = _as_model_parts(target, x)
    rng = np.random.default_rng(seed)
    use_loss = y is not None
    if use_loss:
        if not isinstance(target, Sequential) or target.loss is None:
            raise ValueError("gradcheck: y is given, so target must be a compiled Sequential.")
        from .inputs import check_y
        y = check_y(target, y, len(x), "gradcheck")

    def forward(inputs):
        out = inputs
        for layer in layers:
            out = layer.forward(out, training=True)
        return out

    saved_flag = layers[0].compute_input_gradient
    layers[0].compute_input_gradient = True
    try:
        out = forward(x)
        upstream = None if use_loss else rng.standard_normal(out.shape)

        def objective():
            result = forward(x)
            return target.loss(y, result) if use_loss else float(np.sum(result * upstream))

        if use_loss:
            dx = target._backward(y, out)
        else:
            dx = upstream
            for layer in reversed(layers):
                dx = layer.backward(dx)
        analytic = {"x": dx.copy()}
        for layer in layers:
            for key in layer.params:
                name = f"{layer.name}/{key}" if isinstance(target, Sequential) else key
                analytic[name] = layer.grads[key].copy()
    finally:
        layers[0].compute_input_gradient = saved_flag

    errors = {}
    for name, array in {"x": x, **tensors}.items():
        count = min(num_checks, array.size)
        picks = rng.choice(array.size, size=count, replace=False)
        numeric = np.empty(count)
        flat = array.reshape(-1)  # a view: writes perturb the real tensor
        for i, index in enumerate(picks):
            original = flat[index]
            flat[index] = original + eps
            plus = objective()
            flat[index] = original - eps
            minus = objective()
            flat[index] = original
            numeric[i] = (plus - minus) / (2 * eps)
        errors[name] = _relative_error(analytic[name].reshape(-1)[picks], numeric)
    return errors
