"""Weight initialisers with Keras 3's names, arguments, defaults and formulas.

    layers.Dense(64, kernel_initializer="he_uniform")
    layers.Conv2D(32, 3, kernel_initializer=initializers.HeNormal(seed=1))
    layers.Dense(10, bias_initializer=initializers.Constant(0.1))

Each is a class (``HeNormal``) with a snake-case alias (``he_normal``), called as
``initializer(shape, dtype) -> array``. Names as strings work in either spelling, as in Keras.

Randomness: ``seed=None`` draws from minicnn's global generator (``minicnn.set_random_seed``),
so two layers get different weights; an integer seed gives the same values on every call, as
Keras's seeded initializers do. The numbers are NumPy's, not Keras's (the generators differ);
the distributions are Keras's:

    fan_in, fan_out   Dense kernel (in, out): in, out. Conv kernel (kh, kw, in, out):
                      kh*kw*in, kh*kw*out (compute_fans).
    VarianceScaling   n = fan_in, fan_out or (fan_in + fan_out) / 2 by mode;
                      'truncated_normal': N(0, s) cut at +-2 s, s = sqrt(scale / n) / .8796...
                      (the factor restores the variance the cut removes); 'untruncated_normal':
                      N(0, sqrt(scale / n)); 'uniform': U(-sqrt(3 scale / n), +sqrt(3 scale / n)).
    GlorotUniform / GlorotNormal   scale 1, fan_avg, uniform / truncated normal
    HeUniform / HeNormal           scale 2, fan_in,  uniform / truncated normal
    LecunUniform / LecunNormal     scale 1, fan_in,  uniform / truncated normal
    RandomNormal(mean=0, stddev=0.05), RandomUniform(minval=-0.05, maxval=0.05),
    TruncatedNormal(mean=0, stddev=0.05) (cut at +-2 stddev), Constant(value=0), Zeros, Ones.
"""

import math
import re

import numpy as np

from . import arguments
from ._config import ConfigObject
from .backend import get_rng

MODULE = "keras.initializers"

# The standard deviation of a standard normal truncated to [-2, 2]: dividing by it makes the
# truncated draw have the variance asked for (Keras's constant).
TRUNCATED_STDDEV = 0.87962566103423978


def compute_fans(shape):
    """(fan_in, fan_out) of a weight shape, as Keras does.

    Dense kernel (in, out): (in, out). Conv kernel (kh, kw, in, out): receptive field kh*kw
    times in and out channels. A vector (n,): (n, n).
    """
    shape = tuple(shape)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    if len(shape) == 2:
        return shape[0], shape[1]
    receptive_field = math.prod(shape[:-2])
    return shape[-2] * receptive_field, shape[-1] * receptive_field


def sample_truncated_normal(rng, shape, mean, stddev):
    """Normal(mean, stddev) samples of `shape`, each redrawn until within 2 stddev of the
    mean (as keras.random.truncated_normal), float64."""
    values = rng.standard_normal(size=shape)
    outside = np.abs(values) > 2
    while outside.any():
        values[outside] = rng.standard_normal(size=int(outside.sum()))
        outside = np.abs(values) > 2
    return mean + stddev * values


def _snake_case(name):
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()


class Initializer(ConfigObject):
    """Base class: ``initializer(shape, dtype) -> array``; ``get_config()`` (JSON types) and
    ``from_config`` for saving, as Keras."""

    def __call__(self, shape, dtype="float32"):
        raise NotImplementedError

    def get_config(self):
        return {}


class RandomInitializer(Initializer):
    """An initializer that draws random numbers; seed: None (the global generator) or an int
    (the same values on every call)."""

    def __init__(self, seed=None):
        self.seed = None if seed is None else arguments.integer(seed, "seed",
                                                                type(self).__name__, minimum=0)

    def _rng(self):
        return get_rng() if self.seed is None else np.random.default_rng(self.seed)

    def get_config(self):
        return {"seed": self.seed}


class Zeros(Initializer):
    """All zeros (Keras's default bias initializer)."""

    def __call__(self, shape, dtype="float32"):
        return np.zeros(shape, dtype=dtype)


class Ones(Initializer):
    """All ones."""

    def __call__(self, shape, dtype="float32"):
        return np.ones(shape, dtype=dtype)


class Constant(Initializer):
    """Every entry `value` (a number)."""

    def __init__(self, value=0.0):
        self.value = arguments.real(value, "value", "Constant")

    def __call__(self, shape, dtype="float32"):
        return np.full(shape, self.value, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


class RandomNormal(RandomInitializer):
    """Normal(mean, stddev)."""

    def __init__(self, mean=0.0, stddev=0.05, seed=None):
        super().__init__(seed)
        self.mean = arguments.real(mean, "mean", "RandomNormal")
        self.stddev = arguments.real(stddev, "stddev", "RandomNormal", minimum=0)

    def __call__(self, shape, dtype="float32"):
        return self._rng().normal(self.mean, self.stddev, size=shape).astype(dtype)

    def get_config(self):
        return {**super().get_config(), "mean": self.mean, "stddev": self.stddev}


class TruncatedNormal(RandomNormal):
    """Normal(mean, stddev) with values beyond 2 stddev of the mean redrawn."""

    def __call__(self, shape, dtype="float32"):
        return sample_truncated_normal(self._rng(), shape, self.mean, self.stddev).astype(dtype)


class RandomUniform(RandomInitializer):
    """Uniform on [minval, maxval)."""

    def __init__(self, minval=-0.05, maxval=0.05, seed=None):
        super().__init__(seed)
        self.minval = arguments.real(minval, "minval", "RandomUniform")
        self.maxval = arguments.real(maxval, "maxval", "RandomUniform")
        if self.maxval < self.minval:
            raise ValueError(f"RandomUniform: maxval {self.maxval} is below minval "
                             f"{self.minval}.")

    def __call__(self, shape, dtype="float32"):
        return self._rng().uniform(self.minval, self.maxval, size=shape).astype(dtype)

    def get_config(self):
        return {**super().get_config(), "minval": self.minval, "maxval": self.maxval}


class VarianceScaling(RandomInitializer):
    """Keras's VarianceScaling: a spread that adapts to the weight's fans (see the module
    docstring). mode: 'fan_in', 'fan_out' or 'fan_avg'; distribution: 'truncated_normal'
    ('normal' means the same, as in Keras), 'untruncated_normal' or 'uniform'."""

    def __init__(self, scale=1.0, mode="fan_in", distribution="truncated_normal", seed=None,
                 input_axes=None, output_axes=None):
        super().__init__(seed)
        where = type(self).__name__
        if input_axes is not None or output_axes is not None:
            raise ValueError(f"{where}: input_axes/output_axes are not supported by minicnn "
                             "(fans come from the kernel layout, as Keras's default).")
        self.input_axes = self.output_axes = None
        self.scale = arguments.real(scale, "scale", where, minimum=0, min_open=True)
        self.mode = arguments.choice(mode, ("fan_in", "fan_out", "fan_avg"), "mode", where)
        if isinstance(distribution, str) and distribution.lower() == "normal":
            distribution = "truncated_normal"
        self.distribution = arguments.choice(
            distribution, ("truncated_normal", "untruncated_normal", "uniform"),
            "distribution", where)

    def __call__(self, shape, dtype="float32"):
        fan_in, fan_out = compute_fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[self.mode]
        variance = self.scale / max(1.0, n)
        rng = self._rng()
        if self.distribution == "truncated_normal":
            values = sample_truncated_normal(rng, shape, 0.0,
                                             math.sqrt(variance) / TRUNCATED_STDDEV)
        elif self.distribution == "untruncated_normal":
            values = rng.normal(0.0, math.sqrt(variance), size=shape)
        else:
            limit = math.sqrt(3.0 * variance)
            values = rng.uniform(-limit, limit, size=shape)
        return values.astype(dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "mode": self.mode,
                "distribution": self.distribution, "input_axes": None, "output_axes": None}


def _variance_scaling_preset(class_name, scale, mode, distribution, doc):
    """A VarianceScaling subclass with fixed settings: only `seed` (and Keras's
    input_axes/output_axes, None only) as arguments."""

    def __init__(self, seed=None, input_axes=None, output_axes=None):
        VarianceScaling.__init__(self, scale, mode, distribution, seed, input_axes, output_axes)

    def get_config(self):
        return {"seed": self.seed, "input_axes": None, "output_axes": None}

    return type(class_name, (VarianceScaling,),
                {"__init__": __init__, "get_config": get_config, "__doc__": doc,
                 "__module__": __name__})


GlorotUniform = _variance_scaling_preset(
    "GlorotUniform", 1.0, "fan_avg", "uniform",
    "U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)) (Glorot & Bengio, 2010): Keras's "
    "default kernel initializer.")
GlorotNormal = _variance_scaling_preset(
    "GlorotNormal", 1.0, "fan_avg", "truncated_normal",
    "Truncated normal with stddev sqrt(2 / (fan_in + fan_out)) (Glorot & Bengio, 2010).")
HeUniform = _variance_scaling_preset(
    "HeUniform", 2.0, "fan_in", "uniform",
    "U(-limit, limit), limit = sqrt(6 / fan_in) (He et al., 2015); suits ReLU networks.")
HeNormal = _variance_scaling_preset(
    "HeNormal", 2.0, "fan_in", "truncated_normal",
    "Truncated normal (cut at 2 stddev) with stddev sqrt(2 / fan_in) / .8796 (He et al., "
    "2015), as Keras 3; suits ReLU networks.")
LecunUniform = _variance_scaling_preset(
    "LecunUniform", 1.0, "fan_in", "uniform",
    "U(-limit, limit), limit = sqrt(3 / fan_in) (LeCun et al., 1998).")
LecunNormal = _variance_scaling_preset(
    "LecunNormal", 1.0, "fan_in", "truncated_normal",
    "Truncated normal with stddev sqrt(1 / fan_in) / .8796 (LeCun et al., 1998); suits SELU.")

_CLASSES = (Zeros, Ones, Constant, RandomNormal, RandomUniform, TruncatedNormal,
            VarianceScaling, GlorotUniform, GlorotNormal, HeUniform, HeNormal, LecunUniform,
            LecunNormal)
_BY_NAME = {cls.__name__: cls for cls in _CLASSES}
_BY_NAME.update({_snake_case(cls.__name__): cls for cls in _CLASSES})
_BY_NAME.update({"normal": RandomNormal, "uniform": RandomUniform, "zero": Zeros, "one": Ones})

# Keras's snake-case aliases are the classes themselves: initializers.he_normal(seed=1).
zeros, ones, constant = Zeros, Ones, Constant
random_normal, random_uniform, truncated_normal = RandomNormal, RandomUniform, TruncatedNormal
variance_scaling = VarianceScaling
glorot_uniform, glorot_normal = GlorotUniform, GlorotNormal
he_uniform, he_normal = HeUniform, HeNormal
lecun_uniform, lecun_normal = LecunUniform, LecunNormal

__all__ = ["Initializer", "compute_fans", "get", "serialize", "deserialize",
           *(cls.__name__ for cls in _CLASSES),
           "zeros", "ones", "constant", "random_normal", "random_uniform", "truncated_normal",
           "variance_scaling",
           "glorot_uniform", "glorot_normal", "he_uniform", "he_normal", "lecun_uniform",
           "lecun_normal"]


def _known():
    return ", ".join(sorted({_snake_case(cls.__name__) for cls in _CLASSES}))


def get(identifier, where="initializer"):
    """An initializer from a name ('he_normal' or 'HeNormal'), a class (HeNormal), an
    instance, a serialised dict ({'class_name': 'HeNormal', 'config': {...}}), or a function
    (shape, dtype) -> array (kept as it is; such a model cannot be saved)."""
    if isinstance(identifier, str):
        cls = _BY_NAME.get(identifier) or _BY_NAME.get(identifier.lower())
        if cls is None:
            raise ValueError(f"{where}: unknown initializer {identifier!r}. Known: {_known()}; "
                             "or an instance such as initializers.HeNormal(seed=0).")
        return cls()
    if isinstance(identifier, dict):
        return deserialize(identifier, where)
    if isinstance(identifier, type) and issubclass(identifier, Initializer):
        return identifier()
    if callable(identifier):
        return identifier
    raise ValueError(f"{where}: unknown initializer {identifier!r}. Known: {_known()}; or an "
                     "Initializer instance, or a function (shape, dtype) -> array.")


def serialize(initializer):
    """A built-in initializer as JSON: its snake-case name when it has default settings
    ('he_normal', as minicnn always wrote), else Keras's form {'module', 'class_name',
    'config', 'registered_name'}. Custom functions cannot be saved."""
    cls = type(initializer)
    if isinstance(initializer, Initializer) and _BY_NAME.get(cls.__name__) is cls:
        if initializer == cls():
            return _snake_case(cls.__name__)
        return {"module": MODULE, "class_name": cls.__name__,
                "config": initializer.get_config(), "registered_name": None}
    raise ValueError(
        f"initializer {initializer!r} is not a built-in one and cannot be saved; use one of "
        f"{_known()} (minicnn.initializers).")


def deserialize(config, where="initializer"):
    """Inverse of serialize: a name, or {'class_name': ..., 'config': {...}} (Keras's form;
    'module' and 'registered_name' optional)."""
    if isinstance(config, str):
        return get(config, where)
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"{where}: cannot read the initializer {config!r}; expected a name or "
                         "{'class_name': ..., 'config': {...}}.")
    cls = _BY_NAME.get(config["class_name"])
    if cls is None or config.get("module", MODULE) != MODULE or config.get(
            "registered_name") not in (None, config["class_name"]):
        raise ValueError(f"{where}: unknown initializer {config['class_name']!r}. Known: "
                         f"{_known()}.")
    try:
        return cls.from_config(dict(config.get("config") or {}))
    except TypeError as exc:
        raise ValueError(f"{where}: the {config['class_name']} settings "
                         f"{config.get('config')!r} do not fit: {exc}") from None
