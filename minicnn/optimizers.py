"""Optimizers with Keras 3's names, defaults and update rules: SGD, RMSprop, Adagrad, Adam,
AdamW, and their common options (weight_decay, clipnorm, clipvalue, global_clipnorm, a
learning-rate schedule from ``optimizers.schedules``).

    optimizer.apply_gradients([(grad, param), ...])    # updates each param array in place

One step, as Keras's ``BaseOptimizer.apply``: the learning rate is read (a schedule is
evaluated at the steps taken so far), the gradients are clipped, ``iterations`` is counted,
then each parameter is decayed (``param -= param * weight_decay * lr``, when set) and updated
by its rule. The update math of every rule is an op (``ops.sgd_update``, ``ops.adam_update``,
...: readable NumPy in minicnn/ops/reference.py, compiled where it is on the hot path).

The state (slots such as Adam's moments, and the step count) lives here, never in the
layers, and is keyed by the parameter array itself, not by its position in a list: freezing or
unfreezing layers between fits, adding layers, saving and loading all keep each slot with its
own weight. A slot is created the first time its parameter is updated. Every update checks
that gradient, parameter and slots agree in shape and dtype before anything touches memory.
"""

import math
import sys

import numpy as np

from . import arguments, ops, schedules
from .schedules import LearningRateSchedule

# `minicnn.optimizers.schedules` as Keras's `keras.optimizers.schedules`, also for
# `from minicnn.optimizers.schedules import ExponentialDecay`.
sys.modules[__name__ + ".schedules"] = schedules

__all__ = ["Optimizer", "SGD", "RMSprop", "Adagrad", "Adam", "AdamW", "schedules", "get",
           "deserialize"]


class Optimizer:
    """Base class. Subclasses name their slots (``slot_names``) and implement
    ``_update_one(grad, param, slots, learning_rate)`` (or ``_update_all(grads, params,
    learning_rate)``, for a rule with work to share between its parameters: Adam).

    learning_rate: a float or a ``schedules.LearningRateSchedule``. weight_decay: decoupled
    decay ``param -= param * weight_decay * lr`` before each update (None: off). clipnorm
    (each gradient's L2 norm), global_clipnorm (the norm of all gradients together) or
    clipvalue (each entry): at most one, as Keras. ``iterations``: steps taken.
    """

    name = "optimizer"
    slot_names = ()
    #: True when the update op applies weight_decay itself (AdamW's fused pass)
    fuses_weight_decay = False

    def __init__(self, learning_rate, weight_decay=None, clipnorm=None, clipvalue=None,
                 global_clipnorm=None):
        where = type(self).__name__
        self._learning_rate = None
        self.learning_rate = learning_rate
        self.weight_decay = _optional_real(weight_decay, "weight_decay", where, minimum=0)
        clips = {"clipnorm": clipnorm, "clipvalue": clipvalue,
                 "global_clipnorm": global_clipnorm}
        given = [k for k, v in clips.items() if v is not None]
        if len(given) > 1:
            raise ValueError(f"{where}: only one of clipnorm, clipvalue and global_clipnorm can "
                             f"be set; got {', '.join(f'{k}={clips[k]!r}' for k in given)}.")
        self.clipnorm, self.clipvalue, self.global_clipnorm = (
            _optional_real(clips[k], k, where, minimum=0, min_open=True)
            for k in ("clipnorm", "clipvalue", "global_clipnorm"))
        self.iterations = 0
        self._slots = {}  # id(param) -> (param, [slot arrays]); param kept so the id stays its

    # -- the learning rate ------------------------------------------------------------------
    @property
    def learning_rate(self):
        """The learning rate of the next step (a schedule's value at ``iterations``)."""
        rate = self._learning_rate
        if isinstance(rate, LearningRateSchedule):
            return float(rate(self.iterations))
        return rate

    @learning_rate.setter
    def learning_rate(self, value):
        where = type(self).__name__
        if isinstance(value, LearningRateSchedule):
            self._learning_rate = value
            return
        if isinstance(self._learning_rate, LearningRateSchedule):
            raise TypeError(
                f"{where}: this optimizer was created with a LearningRateSchedule "
                f"({type(self._learning_rate).__name__}) as its learning_rate, so its learning "
                "rate is not settable. Create the optimizer with a float learning_rate to change "
                "it in training (as ReduceLROnPlateau and LearningRateScheduler do).")
        if callable(value) and not isinstance(value, (int, float, np.number)):
            raise TypeError(f"{where}: learning_rate must be a float or a schedule from "
                            f"minicnn.optimizers.schedules, got {value!r}.")
        self._learning_rate = arguments.real(value, "learning_rate", where, minimum=0)

    @property
    def schedule(self):
        """The LearningRateSchedule, or None for a fixed (settable) learning rate."""
        rate = self._learning_rate
        return rate if isinstance(rate, LearningRateSchedule) else None

    # -- the step -------------------------------------------------------------------------------
    def apply_gradients(self, grads_and_vars):
        """One step: for each (gradient, parameter) pair, update the parameter in place.
        Pairs whose gradient is None are skipped; the step is counted either way."""
        grads, params = [], []
        for grad, param in grads_and_vars:  # all of them checked before anything is changed
            if grad is None:
                continue
            if (type(grad) is not np.ndarray or grad.shape != param.shape
                    or grad.dtype != param.dtype):
                _check_pair(type(self).__name__, grad, param)
            grads.append(grad)
            params.append(param)
        learning_rate = self.learning_rate  # Keras: the schedule at the steps taken so far
        grads = self._clip_gradients(grads)
        self.iterations += 1
        self._update_all(grads, params, learning_rate)

    def _update_all(self, grads, params, learning_rate):
        """Decay (unless the rule fuses it) and update every parameter, its slots created the
        first time; `iterations` already counts this step."""
        decay = None
        if self.weight_decay and not self.fuses_weight_decay:
            decay = self.weight_decay * learning_rate
        for grad, param in zip(grads, params, strict=True):
            if decay:
                param -= param * param.dtype.type(decay)
            self._update_one(grad, param, self.slots_for(param), learning_rate)

    def _update_one(self, grad, param, slots, learning_rate):
        raise NotImplementedError

    def _clip_gradients(self, grads):
        """Keras's clipping: each gradient to norm <= clipnorm, all together to norm <=
        global_clipnorm, or each entry into [-clipvalue, clipvalue]. New arrays; the given
        gradients are left as they are."""
        if self.clipnorm is not None:
            return [_clip_by_norm(g, self.clipnorm) for g in grads]
        if self.global_clipnorm is not None and grads:
            norm = math.sqrt(sum(_squared_norm(g) for g in grads))
            # As Keras: a non-finite norm makes the scale NaN (it does not hide the problem).
            scale = self.global_clipnorm * min(1.0 / norm if norm else math.inf,
                                               1.0 / self.global_clipnorm) + (norm - norm)
            return [g * g.dtype.type(scale) for g in grads]
        if self.clipvalue is not None:
            return [np.clip(g, -self.clipvalue, self.clipvalue).astype(g.dtype, copy=False)
                    for g in grads]
        return grads

    # -- state ----------------------------------------------------------------------------------
    def initial_slots(self, param):
        """New slot arrays for `param`, as Keras builds them (zeros; Adagrad: its initial
        accumulator value)."""
        return [np.zeros_like(param) for _ in self.slot_names]

    def slots_for(self, param):
        """The slot arrays of `param` (created by initial_slots the first time)."""
        entry = self._slots.get(id(param))
        if entry is None or entry[0] is not param:
            entry = (param, self.initial_slots(param))
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

    # -- configuration ------------------------------------------------------------------------
    def get_config(self):
        """Constructor arguments as JSON types, plus 'name' (the kind: 'adam', 'sgd', ...);
        deserialize() inverts it. learning_rate is the current value (what a callback set),
        or the schedule's serialised form."""
        schedule = self.schedule
        return {"name": self.name,
                "learning_rate": (schedules.serialize(schedule) if schedule is not None
                                  else self.learning_rate),
                "weight_decay": self.weight_decay, "clipnorm": self.clipnorm,
                "global_clipnorm": self.global_clipnorm, "clipvalue": self.clipvalue}

    @classmethod
    def from_config(cls, config):
        """Rebuild from get_config() (without 'name'); a serialised schedule is rebuilt."""
        config = dict(config)
        if isinstance(config.get("learning_rate"), dict):
            config["learning_rate"] = schedules.deserialize(config["learning_rate"])
        return cls(**config)

    def __repr__(self):
        return f"<{type(self).__name__} learning_rate={self._learning_rate!r} " \
               f"iterations={self.iterations}>"


def _optional_real(value, arg, where, **bounds):
    return None if value is None else arguments.real(value, arg, where, **bounds)


def _squared_norm(grad):
    return float(np.vdot(grad, grad))  # one BLAS pass, in the gradient's dtype as Keras


def _clip_by_norm(grad, clipnorm):
    # Keras: g * clipnorm / max(||g||, clipnorm); a zero gradient stays zero.
    t = grad.dtype.type
    norm = t(math.sqrt(_squared_norm(grad)))
    return grad * t(clipnorm) / max(norm, t(clipnorm))


def _check_pair(where, grad, param):
    if not isinstance(grad, np.ndarray) or grad.shape != param.shape or grad.dtype != param.dtype:
        got = (f"{grad.shape} {grad.dtype}" if isinstance(grad, np.ndarray)
               else type(grad).__name__)
        raise ValueError(f"{where}: a gradient of {got} was given for a parameter of "
                         f"{param.shape} {param.dtype}; they must match.")


class SGD(Optimizer):
    """Stochastic gradient descent, Keras's form (``ops.sgd_update``):
    v = momentum * v - lr * g;  w += v  (nesterov: w += momentum * v - lr * g).
    """

    name = "sgd"

    def __init__(self, learning_rate=0.01, momentum=0.0, nesterov=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = arguments.real(momentum, "momentum", "SGD", minimum=0, maximum=1)
        self.nesterov = arguments.boolean(nesterov, "nesterov", "SGD")
        self.slot_names = ("momentum",) if self.momentum > 0 else ()

    def _update_one(self, grad, param, slots, learning_rate):
        velocity = slots[0] if slots else None
        ops.active.sgd_update(grad, param, velocity, learning_rate, self.momentum, self.nesterov)

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "nesterov": self.nesterov}


class RMSprop(Optimizer):
    """RMSprop (Hinton, 2012) as Keras (``ops.rmsprop_update``): divide the gradient by the
    root of a moving average of its square,

        velocity = rho velocity + (1 - rho) g^2;   w -= lr g / sqrt(velocity + epsilon)

    centered=True subtracts the square of a moving average of g (an estimate of the variance);
    momentum > 0 accumulates those increments (plain, not Nesterov, momentum). Slots per
    weight: velocity, then momentum and average_gradient when used.
    """

    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=0.9, momentum=0.0, epsilon=1e-7,
                 centered=False, **kwargs):
        super().__init__(learning_rate, **kwargs)
        where = "RMSprop"
        self.rho = arguments.real(rho, "rho", where, minimum=0, maximum=1)
        self.momentum = arguments.real(momentum, "momentum", where, minimum=0, maximum=1)
        self.epsilon = arguments.real(epsilon, "epsilon", where, minimum=0)
        self.centered = arguments.boolean(centered, "centered", where)
        self.slot_names = ("velocity", *(("momentum",) if self.momentum > 0 else ()),
                           *(("average_gradient",) if self.centered else ()))

    def _update_one(self, grad, param, slots, learning_rate):
        velocity, *rest = slots
        momentum_buffer = rest.pop(0) if self.momentum > 0 else None
        average_grad = rest.pop(0) if self.centered else None
        ops.active.rmsprop_update(grad, param, velocity, momentum_buffer, average_grad,
                                  learning_rate, self.rho, self.momentum, self.epsilon)

    def get_config(self):
        return {**super().get_config(), "rho": self.rho, "momentum": self.momentum,
                "epsilon": self.epsilon, "centered": self.centered}


class Adagrad(Optimizer):
    """Adagrad (Duchi et al., 2011) as Keras (``ops.adagrad_update``): per-entry rates that
    shrink with the sum of squared gradients,

        accumulator += g^2;   w -= lr g / sqrt(accumulator + epsilon)

    with the accumulator starting at initial_accumulator_value (Keras: 0.1).
    """

    name = "adagrad"
    slot_names = ("accumulator",)

    def __init__(self, learning_rate=0.001, initial_accumulator_value=0.1, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        where = "Adagrad"
        self.initial_accumulator_value = arguments.real(
            initial_accumulator_value, "initial_accumulator_value", where, minimum=0)
        self.epsilon = arguments.real(epsilon, "epsilon", where, minimum=0)

    def initial_slots(self, param):
        return [np.full_like(param, self.initial_accumulator_value)]

    def _update_one(self, grad, param, slots, learning_rate):
        ops.active.adagrad_update(grad, param, slots[0], learning_rate, self.epsilon)

    def get_config(self):
        return {**super().get_config(),
                "initial_accumulator_value": self.initial_accumulator_value,
                "epsilon": self.epsilon}


class Adam(Optimizer):
    """Adam (Kingma & Ba, 2015) in Keras's epsilon-hat form (``ops.adam_update``):

        m = beta_1 m + (1 - beta_1) g,   v = beta_2 v + (1 - beta_2) g^2
        alpha_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        w -= alpha_t * m / (sqrt(v) + epsilon)

    With weight_decay set this is AdamW (``ops.adamw_update``, the decay in the same pass).
    """

    name = "adam"
    slot_names = ("m", "v")
    fuses_weight_decay = True

    def __init__(self, learning_rate=0.001, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
                 **kwargs):
        super().__init__(learning_rate, **kwargs)
        where = type(self).__name__
        self.beta_1 = arguments.real(beta_1, "beta_1", where, minimum=0, maximum=1,
                                     max_open=True)
        self.beta_2 = arguments.real(beta_2, "beta_2", where, minimum=0, maximum=1,
                                     max_open=True)
        self.epsilon = arguments.real(epsilon, "epsilon", where, minimum=0, min_open=True)

    def _update_all(self, grads, params, learning_rate):
        # The bias correction and the op are found once per step, not once per weight.
        t = self.iterations
        b1, b2, epsilon = self.beta_1, self.beta_2, self.epsilon
        alpha = learning_rate * math.sqrt(1 - b2**t) / (1 - b1**t)
        # The fast backend does each update in one compiled pass (its wrapper checks that the
        # four arrays agree: a mismatch would run past a buffer); the reference in NumPy.
        if self.weight_decay:
            update = ops.active.adamw_update
            decay = (self.weight_decay * learning_rate,)
        else:
            update, decay = ops.active.adam_update, ()
        for grad, param in zip(grads, params, strict=True):
            m, v = self.slots_for(param)
            update(grad, param, m, v, b1, b2, alpha, epsilon, *decay)

    def get_config(self):
        return {**super().get_config(), "beta_1": self.beta_1, "beta_2": self.beta_2,
                "epsilon": self.epsilon}


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019), Keras's defaults:
    weight_decay=0.004. Each step first shrinks every weight, ``w -= w * weight_decay * lr``,
    then takes Adam's step (see Adam)."""

    name = "adamw"

    def __init__(self, learning_rate=0.001, weight_decay=0.004, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-7, **kwargs):
        if weight_decay is None:
            raise ValueError("AdamW: weight_decay must be a float (Keras's default is 0.004), "
                             "got None; use Adam for no weight decay.")
        super().__init__(learning_rate, beta_1=beta_1, beta_2=beta_2, epsilon=epsilon,
                         weight_decay=weight_decay, **kwargs)


_BY_NAME = {cls.name: cls for cls in (Adam, AdamW, Adagrad, RMSprop, SGD)}


def get(identifier):
    """Resolve a name ('adam', 'adamw', 'adagrad', 'rmsprop', 'sgd'; any case, as Keras) or an
    Optimizer instance."""
    if isinstance(identifier, Optimizer):
        return identifier
    if isinstance(identifier, str) and identifier.lower() in _BY_NAME:
        return _BY_NAME[identifier.lower()]()
    raise ValueError(
        f"compile: unknown optimizer {identifier!r}. Known: "
        f"{', '.join(map(repr, _BY_NAME))}, or an instance such as "
        "optimizers.Adam(learning_rate=1e-3)."
    )


def deserialize(config):
    """Inverse of Optimizer.get_config."""
    config = dict(config)
    name = config.pop("name", None)
    if name not in _BY_NAME:
        raise ValueError(f"unknown optimizer {name!r} in a saved configuration; minicnn has "
                         f"{', '.join(map(repr, _BY_NAME))}.")
    return _BY_NAME[name].from_config(config)
