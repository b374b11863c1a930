"""Learning-rate schedules, Keras's ``keras.optimizers.schedules`` (also reachable as
``minicnn.optimizers.schedules``).

    lr = optimizers.schedules.ExponentialDecay(0.1, decay_steps=1000, decay_rate=0.96)
    model.compile(optimizer=optimizers.SGD(learning_rate=lr), ...)

A schedule maps the optimizer's step count to a learning rate. As in Keras the optimizer
evaluates it at the number of steps already taken: the first update uses ``schedule(0)``, the
next ``schedule(1)``. The step count is the optimizer's ``iterations``, saved with the model,
so a second ``fit`` or a reloaded model continues the schedule where it stopped.
"""

import math

from . import arguments

MODULE = "keras.optimizers.schedules"


class LearningRateSchedule:
    """Base class: ``schedule(step) -> learning rate (float)``; ``get_config()`` gives the
    constructor arguments (JSON types), ``from_config`` inverts it."""

    def __call__(self, step):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        arguments_text = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({arguments_text})"


def _boundary(value, where):
    value = arguments.real(value, "boundaries", where)
    return int(value) if value.is_integer() else value


def _step(step, where):
    return arguments.integer(step, "step", where, minimum=0)


class ExponentialDecay(LearningRateSchedule):
    """``initial_learning_rate * decay_rate ** (step / decay_steps)``; with staircase=True the
    exponent is ``step // decay_steps`` (the rate drops every decay_steps steps)."""

    def __init__(self, initial_learning_rate, decay_steps, decay_rate, staircase=False,
                 name="ExponentialDecay"):
        where = "ExponentialDecay"
        self.initial_learning_rate = arguments.real(initial_learning_rate,
                                                    "initial_learning_rate", where, minimum=0)
        self.decay_steps = arguments.integer(decay_steps, "decay_steps", where, minimum=1)
        self.decay_rate = arguments.real(decay_rate, "decay_rate", where, minimum=0)
        self.staircase = arguments.boolean(staircase, "staircase", where)
        self.name = str(name)

    def __call__(self, step):
        exponent = _step(step, self.name) / self.decay_steps
        if self.staircase:
            exponent = math.floor(exponent)
        return self.initial_learning_rate * self.decay_rate ** exponent

    def get_config(self):
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "decay_rate": self.decay_rate,
                "staircase": self.staircase, "name": self.name}


class PiecewiseConstantDecay(LearningRateSchedule):
    """``values[0]`` while ``step <= boundaries[0]``, ``values[i]`` while
    ``boundaries[i-1] < step <= boundaries[i]``, ``values[-1]`` after the last boundary.
    boundaries: strictly increasing step counts; values: one more than boundaries."""

    def __init__(self, boundaries, values, name="PiecewiseConstant"):
        where = "PiecewiseConstantDecay"
        try:
            boundaries, values = list(boundaries), list(values)
        except TypeError:
            raise TypeError(f"{where}: boundaries and values must be lists of numbers, got "
                            f"{boundaries!r} and {values!r}.") from None
        if len(boundaries) != len(values) - 1:
            raise ValueError(
                f"{where}: the length of boundaries should be 1 less than the length of "
                f"values. Received: boundaries={boundaries} of length {len(boundaries)}, and "
                f"values={values} of length {len(values)}.")
        # Keras compares with the integer step count; integral floats (1000.0) mean the same.
        self.boundaries = [_boundary(b, where) for b in boundaries]
        if any(b >= c for b, c in zip(self.boundaries, self.boundaries[1:], strict=False)):
            raise ValueError(f"{where}: boundaries must be strictly increasing, got "
                             f"{self.boundaries}.")
        self.values = [arguments.real(v, "values", where, minimum=0) for v in values]
        self.name = str(name)

    def __call__(self, step):
        step = _step(step, self.name)
        for boundary, value in zip(self.boundaries, self.values, strict=False):
            if step <= boundary:
                return value
        return self.values[-1]

    def get_config(self):
        return {"boundaries": list(self.boundaries), "values": list(self.values),
                "name": self.name}


_BY_NAME = {cls.__name__: cls for cls in (ExponentialDecay, PiecewiseConstantDecay)}


def serialize(schedule):
    """Keras's serialised form: {"module", "class_name", "config", "registered_name"}."""
    if type(schedule).__name__ not in _BY_NAME or not isinstance(schedule,
                                                                  LearningRateSchedule):
        raise ValueError(f"the learning-rate schedule {schedule!r} is not a built-in one and "
                         f"cannot be saved; use one of {', '.join(_BY_NAME)}.")
    return {"module": MODULE, "class_name": type(schedule).__name__,
            "config": schedule.get_config(), "registered_name": None}


def deserialize(config):
    """Inverse of serialize (also accepts {"class_name", "config"} without the module)."""
    if not isinstance(config, dict) or config.get("class_name") not in _BY_NAME:
        known = ", ".join(_BY_NAME)
        raise ValueError(f"unknown learning-rate schedule {config!r}; minicnn has {known}.")
    if config.get("module", MODULE) != MODULE or config.get("registered_name") not in (
            None, config["class_name"]):
        raise ValueError(f"the learning-rate schedule {config['class_name']!r} is a custom "
                         "object, which minicnn cannot rebuild.")
    return _BY_NAME[config["class_name"]].from_config(dict(config.get("config") or {}))
