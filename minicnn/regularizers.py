"""Weight regularizers with Keras 3's names and defaults: penalties on a layer's weights that
training adds to the loss.

    layers.Dense(64, kernel_regularizer=regularizers.l2(1e-4))
    layers.Conv2D(32, 3, kernel_regularizer="l2", bias_regularizer=regularizers.L1(0.01))

    L1(l1=0.01):            penalty = l1 * sum(|w|),          gradient l1 * sign(w)
                            (0 at w = 0, as TensorFlow's and PyTorch's gradient of |w|;
                            JAX, so Keras on JAX, takes 1 there)
    L2(l2=0.01):            penalty = l2 * sum(w^2),          gradient 2 * l2 * w
    L1L2(l1=0.0, l2=0.0):   both (l1_l2 is the same class, with the same zero defaults)

A model's penalties are Keras's ``model.losses`` (one per regularized trainable weight):
``Model.compute_loss_and_gradient`` adds their sum to the loss, so the loss that fit and
evaluate report includes it, as Keras's does, and ``Model.backward`` adds each penalty's
gradient to its weight's gradient. A frozen layer's weights are not trainable, so they have no
penalty and get no penalty gradient (Keras: the same).

Strings, as Keras: 'l1' / 'L1', 'l2' / 'L2', 'l1l2' / 'L1L2' (Keras has no 'l1_l2' string).
A custom regularizer subclasses Regularizer and defines ``__call__(w) -> float`` and
``gradient(w) -> array``; minicnn computes gradients by hand, so a plain function is refused.
"""

import numpy as np

from . import arguments
from ._config import ConfigObject

MODULE = "keras.regularizers"


class Regularizer(ConfigObject):
    """Base class: ``regularizer(w) -> penalty (float)``, ``gradient(w) -> d penalty / d w``
    (an array of w's shape and dtype), ``get_config()``/``from_config`` as Keras."""

    def __call__(self, weight):
        raise NotImplementedError

    def gradient(self, weight):
        raise NotImplementedError

    def get_config(self):
        raise NotImplementedError(f"{type(self).__name__} does not implement get_config()")


def _factor(value, name, where, default):
    value = default if value is None else value
    return arguments.real(value, name, where, minimum=0)


class L1L2(Regularizer):
    """l1 * sum(|w|) + l2 * sum(w^2). Defaults 0 and 0, as Keras's L1L2 and l1_l2."""

    def __init__(self, l1=0.0, l2=0.0):
        self.l1 = _factor(l1, "l1", type(self).__name__, 0.0)
        self.l2 = _factor(l2, "l2", type(self).__name__, 0.0)

    def __call__(self, weight):
        weight = np.asarray(weight)
        penalty = 0.0
        if self.l1:
            penalty += self.l1 * float(np.sum(np.abs(weight)))
        if self.l2:
            penalty += self.l2 * float(np.vdot(weight, weight))
        return penalty

    def gradient(self, weight):
        t = weight.dtype.type
        l1_part = t(self.l1) * np.sign(weight) if self.l1 else None  # 0 at w = 0: stays 0
        l2_part = t(2 * self.l2) * weight if self.l2 else None
        if l1_part is None:
            return np.zeros_like(weight) if l2_part is None else l2_part
        return l1_part if l2_part is None else l1_part + l2_part

    def get_config(self):
        return {"l1": self.l1, "l2": self.l2}


class L1(L1L2):
    """l1 * sum(|w|), l1 = 0.01 by default (Keras)."""

    def __init__(self, l1=0.01):
        super().__init__(l1=_factor(l1, "l1", "L1", 0.01))

    def get_config(self):
        return {"l1": self.l1}


class L2(L1L2):
    """l2 * sum(w^2), l2 = 0.01 by default (Keras). Its gradient 2 * l2 * w is weight decay
    through the loss (unlike AdamW's decoupled decay)."""

    def __init__(self, l2=0.01):
        super().__init__(l2=_factor(l2, "l2", "L2", 0.01))

    def get_config(self):
        return {"l2": self.l2}


# Keras's lower-case names are the classes: regularizers.l2(1e-4) is L2(1e-4).
l1, l2, l1_l2 = L1, L2, L1L2

_CLASSES = (L1, L2, L1L2)
_BY_NAME = {cls.__name__: cls for cls in _CLASSES}
_BY_NAME.update({cls.__name__.lower(): cls for cls in _CLASSES})  # 'l1', 'l2', 'l1l2'

__all__ = ["Regularizer", "L1", "L2", "L1L2", "l1", "l2", "l1_l2", "get", "serialize",
           "deserialize"]


def get(identifier, where="regularizer"):
    """None, a name ('l1', 'l2', 'l1l2', or 'L1', 'L2', 'L1L2'), a class, an instance, or
    Keras's serialised dict -> a Regularizer or None."""
    if identifier is None:
        return None
    if isinstance(identifier, Regularizer):
        return identifier
    if isinstance(identifier, str):
        if identifier in _BY_NAME:
            return _BY_NAME[identifier]()
        hint = (" For both penalties use regularizers.L1L2(l1=..., l2=...) (Keras has no "
                "'l1_l2' string either)." if identifier.lower() == "l1_l2" else "")
        raise ValueError(f"{where}: unknown regularizer {identifier!r}. Known: 'l1', 'l2', "
                         f"'l1l2' (or 'L1', 'L2', 'L1L2'), or an instance such as "
                         f"regularizers.l2(1e-4).{hint}")
    if isinstance(identifier, dict):
        return deserialize(identifier, where)
    if isinstance(identifier, type) and issubclass(identifier, Regularizer):
        return identifier()
    if callable(identifier):
        raise TypeError(f"{where}: {identifier!r} is a plain function; minicnn needs the "
                        "penalty's gradient too. Subclass minicnn.regularizers.Regularizer and "
                        "define __call__(w) and gradient(w), or use L1, L2, L1L2.")
    raise ValueError(f"{where}: cannot use {identifier!r} as a regularizer; give 'l1', 'l2', "
                     "or an instance such as regularizers.l2(1e-4).")


def serialize(regularizer):
    """Keras's form {'module', 'class_name', 'config', 'registered_name'}, or None."""
    if regularizer is None:
        return None
    cls = type(regularizer)
    if _BY_NAME.get(cls.__name__) is not cls:
        raise ValueError(f"the regularizer {regularizer!r} is not a built-in one and cannot be "
                         "saved; use L1, L2 or L1L2 (minicnn.regularizers).")
    return {"module": MODULE, "class_name": cls.__name__, "config": regularizer.get_config(),
            "registered_name": None}


def deserialize(config, where="regularizer"):
    """Inverse of serialize (a name is accepted too)."""
    if config is None or isinstance(config, str):
        return get(config, where)
    if not isinstance(config, dict) or not isinstance(config.get("class_name"), str):
        raise ValueError(f"{where}: cannot read the regularizer {config!r}; expected a name or "
                         "{'class_name': ..., 'config': {...}}.")
    cls = _BY_NAME.get(config["class_name"])
    if cls is None or config.get("module", MODULE) != MODULE or config.get(
            "registered_name") not in (None, config["class_name"]):
        raise ValueError(f"{where}: unknown regularizer {config['class_name']!r}; minicnn has "
                         "L1, L2 and L1L2.")
    try:
        return cls.from_config(dict(config.get("config") or {}))
    except TypeError as exc:
        raise ValueError(f"{where}: the {config['class_name']} settings "
                         f"{config.get('config')!r} do not fit: {exc}") from None
