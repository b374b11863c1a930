"""Finite-difference gradient checks (in the spirit of torch.autograd.gradcheck), for learners.

For a layer or a whole model the scalar objective is
    L = sum(output * G)          with a fixed random upstream gradient G, or
    L = loss(y, model(x))        for a compiled model when y is given,
and each analytic gradient (backward) is compared with central differences
    dL/dw ~ (L(w + eps) - L(w - eps)) / (2 eps)
on up to `num_checks` randomly chosen entries of the input and of every parameter.
The error per tensor is ||analytic - numeric|| / (||analytic|| + ||numeric||) over the checked
entries (0 when both vanish): robust where many true gradients are exactly zero (ReLU, pooling).
The analytic gradients come from the same forward/backward the training step runs.
"""

import numpy as np

from .graph import Graph, run_backward, run_forward
from .layers.base import Layer
from .models import Model


def _relative_error(analytic, numeric):
    scale = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    return 0.0 if scale == 0 else float(np.linalg.norm(analytic - numeric) / scale)


def gradcheck(target, x, y=None, eps=1e-6, num_checks=40, seed=0, training=True):
    """Compare backward with central differences for the input and every parameter.

    target: a float64 Layer or Model; x: (N, *input_shape) float64 (use distinct values so
    max pooling has no ties and ReLU no kinks at 0); y: labels for a compiled model's loss, or
    None to use a random upstream gradient. training: run layers in training mode (every
    forward of the check reuses the same random seed, so Dropout's mask stays fixed).
    Returns {'x': err, '<param name>': err, ...}: relative errors, ~1e-9 for a correct
    backward in float64. Parameters are named 'kernel' for a layer, 'layer/kernel' for a model.
    """
    x = np.array(x, dtype=np.float64)  # a private copy: the input is perturbed in place
    if isinstance(target, Model):
        if not target.built:
            target.build((None, *x.shape[1:]))
        graph, layers = target._graph, target.layers
        tensors = dict(target.named_weights())
    elif isinstance(target, Layer):
        if not target.built:
            target.build((None, *x.shape[1:]))
        graph, layers = Graph.chain([target]), [target]
        tensors = dict(target.params)
    else:
        raise TypeError(f"gradcheck: expected a minicnn Layer or Model, got "
                        f"{type(target).__name__}.")
    if any(layer.dtype != np.float64 for layer in layers):
        raise ValueError(
            "gradcheck: finite differences need float64; create the layers with dtype='float64' "
            "(or models.Sequential([...], dtype='float64'))."
        )
    use_loss = y is not None
    if use_loss:
        if not isinstance(target, Model) or target.loss is None:
            raise ValueError("gradcheck: y is given, so target must be a compiled model.")
        from .inputs import check_y
        y = check_y(target, y, len(x), "gradcheck")
    rng = np.random.default_rng(seed)
    step_seed = int(rng.integers(2**63))

    def forward(inputs, input_grads=False):
        (out,), tape = run_forward(graph, [inputs], training, seed=step_seed,
                                   input_grads=input_grads)
        return out, tape

    out, tape = forward(x, input_grads=True)
    upstream = None if use_loss else rng.standard_normal(out.shape)
    from_logits = False
    if use_loss:
        _, dy, from_logits = target.compute_loss_and_gradient(y, out, None, tape)
    else:
        dy = upstream
    param_grads, (dx,) = run_backward(tape, [dy], (0,) if from_logits else ())
    if use_loss:  # the loss includes the weight penalties (model.losses): so do its gradients
        for key, penalty_grad in target.regularization_gradients().items():
            grad = param_grads.get(key)
            param_grads[key] = penalty_grad if grad is None else grad + penalty_grad
    analytic = {"x": dx}
    for name, array in tensors.items():
        g = param_grads.get(id(array))
        analytic[name] = np.zeros_like(array) if g is None else g

    def objective():
        result, tape = forward(x)
        tape.release()
        if use_loss:
            return target.compute_loss_and_gradient(y, result, None, tape)[0]
        return float(np.sum(result * upstream))

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
