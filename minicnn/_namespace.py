"""How minicnn answers as Keras: ``import minicnn as keras`` (or ``as tf``, then ``tf.keras``).

Two pieces:
- ``install_missing_names(module, namespace)`` gives a module a PEP 562 ``__getattr__`` that turns
  a missing name into a ``NotInMinicnnError`` (an AttributeError, so ``hasattr`` and
  ``getattr(m, name, default)`` keep working) saying whether Keras (or TensorFlow) has that
  name, that minicnn does not have it yet, and what the module does have. A bare
  ``AttributeError`` with Python's guess ("Did you mean: 'inputs'?") misleads a learner who
  copied ``keras.layers.LSTM`` from a tutorial.
- ``minicnn.keras`` is minicnn itself (``tf.keras.layers.Dense`` after ``import minicnn as tf``),
  and ``KerasAliasFinder`` makes ``from minicnn.keras.layers import Dense`` import the one real
  ``minicnn.layers`` module, never a second copy of it (a copy would have its own classes, and
  ``isinstance`` checks would fail silently).
"""

import difflib
import importlib
import importlib.abc
import importlib.util
import sys
import types

from ._keras_names import KERAS_NAMES, TENSORFLOW_NAMES

README_TABLE = "the compatibility table in minicnn's README.md"


class NotInMinicnnError(AttributeError):
    """A Keras or TensorFlow name that minicnn does not have (yet), or a name nobody has."""


def public_names(module, namespace=None):
    """What a module offers: its __all__, else its public non-module attributes that it
    defines itself or that Keras has in that namespace (models.Sequential lives in
    sequential.py), not the helpers it imports."""
    names = vars(module).get("__all__")  # not getattr: that would come back to __getattr__
    if names is None:
        keras_names = KERAS_NAMES.get(namespace, ())
        names = [n for n, v in vars(module).items()
                 if not n.startswith("_") and not isinstance(v, types.ModuleType)
                 and (getattr(v, "__module__", module.__name__) == module.__name__
                      or n in keras_names)]
    return sorted(set(names))


def _display(namespace):
    return "minicnn" if not namespace else f"minicnn.{namespace}"


def missing_name_error(namespace, name, available):
    """The error for `name` missing from the minicnn module for Keras's `namespace`
    ('' for the top level, 'layers', ...)."""
    where = _display(namespace)
    if name.startswith("_"):
        # Private and dunder names are probed by Python itself (copy, pickle, inspect, doctest):
        # they get the plain error, quietly.
        return AttributeError(f"module {where!r} has no attribute {name!r}")
    has = ", ".join(available)
    keras_path = f"keras.{namespace}.{name}" if namespace else f"keras.{name}"
    if name in KERAS_NAMES.get(namespace, ()):
        message = (f"{keras_path} is a Keras name that minicnn does not have yet. {where} has: "
                   f"{has}. See {README_TABLE} for what is supported.")
    elif name in TENSORFLOW_NAMES.get(namespace, ()):
        tf_path = f"tf.{namespace}.{name}" if namespace else f"tf.{name}"
        message = (f"{tf_path} is TensorFlow's, and minicnn is not TensorFlow: it implements "
                   "the Keras API (with `import minicnn as tf`: tf.keras.*) and tf.nn.softmax. "
                   f"{where} has: {has}.")
    else:
        close = difflib.get_close_matches(name, available, n=3, cutoff=0.7)
        hint = f" Did you mean {' or '.join(map(repr, close))}?" if close else ""
        message = (f"module {where!r} has no attribute {name!r}, and Keras has no "
                   f"{keras_path} either.{hint} {where} has: {has}.")
    return NotInMinicnnError(message)


def install_missing_names(module, namespace):
    """Give `module` a __getattr__ raising missing_name_error (after its own, if it has one)."""
    previous = module.__dict__.get("__getattr__")
    if getattr(previous, "_minicnn_missing_names", False):
        return

    def __getattr__(name):
        if previous is not None:
            try:
                return previous(name)
            except NotInMinicnnError:
                raise
            except AttributeError:
                pass
        if name.startswith("_"):
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r}")
        raise missing_name_error(namespace, name, public_names(module, namespace))

    __getattr__._minicnn_missing_names = True
    module.__getattr__ = __getattr__


class KerasAliasFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``minicnn.keras.X`` as the already-real ``minicnn.X`` (the same module object)."""

    PREFIX = "minicnn.keras."

    def __init__(self):
        self._specs = {}

    def find_spec(self, fullname, path=None, target=None):
        if not fullname.startswith(self.PREFIX):
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec):
        real = "minicnn." + spec.name[len(self.PREFIX):]
        try:
            module = importlib.import_module(real)
        except ModuleNotFoundError as exc:
            if exc.name != real:
                raise
            keras_name = "keras." + spec.name[len(self.PREFIX):]
            raise ModuleNotFoundError(
                f"No module named {spec.name!r}: minicnn has no {real} ({keras_name} is not in "
                f"minicnn yet; see {README_TABLE}).", name=spec.name) from None
        # The import system stamps the alias spec onto the module; exec_module puts the real
        # one back, so the module keeps its own identity.
        self._specs[spec.name] = module.__spec__
        return module

    def exec_module(self, module):
        for alias, real_spec in list(self._specs.items()):
            if module.__spec__ is not None and module.__spec__.name == alias:
                module.__spec__ = real_spec
                del self._specs[alias]


def install_keras_alias(package):
    """Make ``minicnn.keras`` the package itself, importable, with its submodules."""
    package.keras = package
    sys.modules.setdefault(f"{package.__name__}.keras", package)
    if not any(isinstance(finder, KerasAliasFinder) for finder in sys.meta_path):
        # Before the path finder, which would otherwise load a second copy of each submodule
        # from the package's own folder under the alias name.
        sys.meta_path.insert(0, KerasAliasFinder())
