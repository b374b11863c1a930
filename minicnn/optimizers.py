"""Optimizers with Keras's defaults and update rules.

    optimizer.apply_gradients([(grad, param), ...])    # updates each param array in place

The state (moments, the step count) lives here, never in the layers, and is keyed by the
parameter array itself, not by its position in a list: freezing or unfreezing layers between
fits, adding layers, saving and loading all keep each slot with its own weight. A slot is
created the first time its parameter is updated. Every update checks that gradient, parameter
and slots agree in shape and dtype before anything touches memory.
"""

import math

import numpy as np

from . import arguments, ops


class Optimizer:
    """Base class. Subclasses name their slots (``slot_names``) and implement ``_update_one``.

    iterations: steps taken. learning_rate: a float (Keras's `learning_rate`).
    """

    name = "optimizer"
    slot_names = ()

    def __init__(self, learning_rate):
        where = type(self).__name__
        self.learning_rate = arguments.real(learning_rate, "learning_rate", where, minimum=0,
                                            min_open=True)
        self.iterations = 0
        self._slots = {}  # id(param) -> (param, [slot arrays]); param kept so the id stays its

    # -- the step -------------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """One step: for each (gradient, parameter) pair, update the parameter in place."""
        pairs = list(grads_and_vars)
        self.iterations += 1
        for grad, param in pairs:
            if grad is None:
                continue
            _check_pair(type(self).__name__, grad, param)
            self._update_one(grad, param, self.slots_for(param))

    def _update_one(self, grad, param, slots):
        raise NotImplementedError

    # -- state ----------------------------------------------------------------------------------
    def slots_for(self, param):
        """The slot arrays of `param` (created as zeros the first time)."""
        entry = self._slots.get(id(param))
        if entry is None or entry[0] is not param:
            entry = (param, [np.zeros_like(param) for _ in self.slot_names])
            self._slots[id(param)] = entry
        return entry[1]

    def get_slots(self, param):
        """The slot arrays of `param`, or None when it was never updated."""
        entry = self._slots.get(id(param))
        return entry[1] if entry is not None and entry[0] is param else None

    def set_slots(self, param, arrays):
        """Attach saved slot arrays to `param` (copies; shapes and dtypes must be the param's)."""
        arrays = list(arrays)
        where = type(self).__name__
        if len(arrays) != len(self.slot_names):
            raise ValueError(f"{where}: expected {len(self.slot_names)} slot arrays "
                             f"({', '.join(self.slot_names) or 'none'}), got {len(arrays)}.")
        copies = []
        for slot_name, array in zip(self.slot_names, arrays, strict=True):
            array = np.asarray(array)
            if array.shape != param.shape or array.dtype != param.dtype:
                raise ValueError(f"{where}: slot {slot_name!r} of shape {array.shape} "
                                 f"{array.dtype} does not fit its parameter {param.shape} "
                                 f"{param.dtype}.")
            copies.append(np.array(array, order="C"))
        self._slots[id(param)] = (param, copies)

    def get_state(self, params):
        """{'iterations': int, 'slots': [slot arrays or None, one entry per param]} (copies)."""
        slots = [self.get_slots(p) for p in params]
        return {"iterations": self.iterations,
                "slots": [None if s is None else [a.copy() for a in s] for s in slots]}

    def set_state(self, state, params):
        """Restore get_state(params)'s result onto the same list of parameters."""
        self.iterations = arguments.integer(state["iterations"], "iterations",
                                            type(self).__name__, minimum=0)
        for param, slots in zip(params, state["slots"], strict=True):
            if slots is None:
                self._slots.pop(id(param), None)
            else:
                self.set_slots(param, slots)

    def get_config(self):
        """Constructor arguments as JSON types (plus 'name'); deserialize() inverts it."""
        return {"name": self.name, "learning_rate": self.learning_rate}


def _check_pair(where, grad, param):
    if not isinstance(grad, np.ndarray) or grad.shape != param.shape or grad.dtype != param.dtype:
        got = (f"{grad.shape} {grad.dtype}" if isinstance(grad, np.ndarray)
               else type(grad).__name__)
        raise ValueError(f"{where}: a gradient of {got} was given for a parameter of "
                         f"{param.shape} {param.dtype}; they must match.")


class SGD(Optimizer):
    """Stochastic gradient descent, Keras's form:
    v = momentum * v - lr * g;  w += v  (nesterov: w += momentum * v - lr * g).
    """

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False):
        super().__init__(learning_rate)
        self.momentum = arguments.real(momentum, "momentum", "SGD", minimum=0)
        self.nesterov = arguments.boolean(nesterov, "nesterov", "SGD")
        self.slot_names = ("momentum",) if self.momentum > 0 else ()

    def _update_one(self, grad, param, slots):
        lr = param.dtype.type(self.learning_rate)
        if not slots:
            param -= lr * grad
            return
        (velocity,) = slots
        momentum = param.dtype.type(self.momentum)
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
    slot_names = ("m", "v")

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__(learning_rate)
        self.beta_1 = arguments.real(beta_1, "beta_1", "Adam", minimum=0, maximum=1,
                                     max_open=True)
        self.beta_2 = arguments.real(beta_2, "beta_2", "Adam", minimum=0, maximum=1,
                                     max_open=True)
        self.epsilon = arguments.real(epsilon, "epsilon", "Adam", minimum=0, min_open=True)

    def _update_one(self, grad, param, slots):
        t = self.iterations
        b1, b2 = self.beta_1, self.beta_2
        alpha = self.learning_rate * math.sqrt(1 - b2**t) / (1 - b1**t)
        m, v = slots
        # The fast backend does this in one compiled pass (its wrapper checks that the four
        # arrays agree: a mismatch would run past a buffer); the reference in NumPy.
        ops.adam_update(grad, param, m, v, b1, b2, alpha, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


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
