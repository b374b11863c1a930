"""Optimizers with Keras's defaults and update rules. The state (moments, step count) lives
here, never in the layers; the model hands over (gradient, parameter) pairs in a fixed order.
"""

import math

import numpy as np

from .ops import fused


def _check_positive(value, arg, where, allow_zero=False):
    ok = isinstance(value, (int, float, np.floating)) and not isinstance(value, bool) and (
        value >= 0 if allow_zero else value > 0) and math.isfinite(value)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{where}: {arg} must be a finite number {bound}, got {value!r}.")
    return float(value)


class Optimizer:
    """Base class. `apply_gradients(pairs)` updates each parameter array in place.

    pairs: a list of (gradient, parameter) arrays of equal shapes, in the same order every
    step (slot i of the state belongs to pair i). `iterations` counts the steps taken.
    """

    name = "optimizer"

    def __init__(self, learning_rate):
        self.learning_rate = _check_positive(learning_rate, "learning_rate", type(self).__name__)
        self.iterations = 0
        self._slots = None

    def _create_slots(self, params):
        return []

    def apply_gradients(self, pairs):
        pairs = list(pairs)
        if self._slots is None:
            self._slots = self._create_slots([p for _, p in pairs])
        self.iterations += 1
        self._update(pairs)

    def _update(self, pairs):
        raise NotImplementedError

    def get_state(self):
        """{'iterations': int, 'slots': [[array, ...] per parameter]} for saving."""
        return {"iterations": self.iterations,
                "slots": [[a.copy() for a in s] for s in (self._slots or [])]}

    def set_state(self, state):
        """Restore what get_state returned (used by load_model)."""
        self.iterations = int(state["iterations"])
        self._slots = [[np.array(a) for a in s] for s in state["slots"]] or None

    def get_config(self):
        return {"name": self.name, "learning_rate": self.learning_rate}


class SGD(Optimizer):
    """Stochastic gradient descent, Keras's form:
    v = momentum * v - lr * g;  w += v  (nesterov: w += momentum * v - lr * g).
    """

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum = _check_positive(momentum, "momentum", "SGD", allow_zero=True)
        self.nesterov = bool(nesterov)

    def _create_slots(self, params):
        return [[np.zeros_like(p)] for p in params] if self.momentum > 0 else [[] for _ in params]

    def _update(self, pairs):
        lr, momentum = self.learning_rate, self.momentum
        for (grad, param), slot in zip(pairs, self._slots, strict=True):
            if momentum == 0:
                param -= lr * grad
                continue
            velocity = slot[0]
            velocity *= momentum
            velocity -= lr * grad
            if self.nesterov:
                param += momentum * velocity - lr * grad
            else:
                param += velocity

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) in Keras's epsilon-hat form:

        m = beta_1 m + (1 - beta_1) g,   v = beta_2 v + (1 - beta_2) g^2
        alpha_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        w -= alpha_t * m / (sqrt(v) + epsilon)
    """

    name = "adam"

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        for arg, value in (("beta_1", beta_1), ("beta_2", beta_2)):
            if not (isinstance(value, (int, float)) and 0 <= value < 1):
                raise ValueError(f"Adam: {arg} must be in [0, 1), got {value!r}.")
        self.beta_1, self.beta_2 = float(beta_1), float(beta_2)
        self.epsilon = _check_positive(epsilon, "epsilon", "Adam")

    def _create_slots(self, params):
        return [[np.zeros_like(p), np.zeros_like(p)] for p in params]

    def _update(self, pairs):
        t = self.iterations
        b1, b2 = self.beta_1, self.beta_2
        alpha = self.learning_rate * math.sqrt(1 - b2**t) / (1 - b1**t)
        for (grad, param), (m, v) in zip(pairs, self._slots, strict=True):
            if _fusable(grad, param, m, v):
                # One compiled pass per array instead of ~8 NumPy passes and temporaries.
                fused.adam_update(grad, param, m, v, b1, b2, alpha, self.epsilon)
                continue
            m += (1 - b1) * (grad - m)
            v += (1 - b2) * (grad * grad - v)
            param -= alpha * m / (np.sqrt(v) + self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


def _fusable(*arrays):
    """True when the fused kernel can update these arrays in place (same dtype, contiguous)."""
    dtype = arrays[0].dtype
    return all(a.dtype == dtype and a.flags.c_contiguous for a in arrays) and dtype in (
        np.float32, np.float64)


_BY_NAME = {"adam": Adam, "sgd": SGD}


def get(identifier):
    """Resolve 'adam', 'sgd' or an Optimizer instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(
        f"compile: unknown optimizer {identifier!r}. Known: 'adam', 'sgd', or an instance such "
        "as optimizers.Adam(learning_rate=1e-3)."
    )


def deserialize(config):
    """Inverse of Optimizer.get_config."""
    config = dict(config)
    return _BY_NAME[config.pop("name")](**config)
