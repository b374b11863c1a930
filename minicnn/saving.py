"""Model files: one .npz holding a JSON header (architecture, compile settings, format version)
and plain arrays (weights by layer and name, optimizer state). No pickle: loading uses
np.load(allow_pickle=False) and runs no code from the file. Files are written to a temporary
name in the same folder and renamed, so a crash never leaves a half-written model.

Layout of a version-2 file (a zip of .npy members, as np.savez writes it):

    __minicnn_header__          uint8 bytes of a UTF-8 JSON object: format, version,
                                minicnn_version, config (Sequential.get_config()),
                                build_input_shape, compile, optimizer_state
    layers/000_conv2d/kernel    one array per parameter: layer position, layer name, parameter
    layers/000_conv2d/bias
    optimizer/conv2d/kernel/0   optimizer slot j of the parameter at that weight path
                                (Adam: 0 = m, 1 = v); only parameters the optimizer has moved

optimizer_state is {"iterations": int, "slots": {weight path: number of slot arrays}}: slots
are keyed by the parameter they belong to, so a model saved with some layers frozen continues
with every moment attached to its own weight. Version-1 files (slots listed by position among
the trainable parameters) are still read.

Every member carries a CRC-32, so a flipped bit in the weights is detected, not loaded.
"""

import contextlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

FORMAT = "minicnn-model"
VERSION = 2
_HEADER = "__minicnn_header__"


@contextlib.contextmanager
def atomic_write(path, mode="wb", where="save"):
    """Open a temporary file beside `path` for writing; on success it replaces `path`.

    with atomic_write("out/history.json", "w") as f: json.dump(data, f)

    A reader sees either the old file or the complete new one, never a half-written file; on an
    exception the temporary file is removed and `path` is left as it was. The new file gets the
    usual permissions (0666 minus the umask). mode: "wb" or "w" (UTF-8 text).
    where: the caller's name for error messages. Raises FileNotFoundError if the folder is
    missing, IsADirectoryError if `path` is a folder.
    """
    path = Path(path)
    folder = path.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"{where}: cannot write {path}: the folder {folder} does not "
                                "exist; create it first.")
    if path.is_dir():
        raise IsADirectoryError(f"{where}: {path} is a folder; give a file name such as "
                                f"{path / 'model.npz'}.")
    handle, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        kwargs = {"encoding": "utf-8", "newline": "\n"} if "b" not in mode else {}
        with os.fdopen(handle, mode, **kwargs) as tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        # mkstemp makes the file private (0600); give it what open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp_name)
        raise


def _weight_key(index, layer, name):
    return f"layers/{index:03d}_{layer.name}/{name}"


def _header_array(header):
    return np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)


def _weights_arrays(model):
    return {_weight_key(i, layer, name): value
            for i, layer in enumerate(model.layers) for name, value in layer.params.items()}


def save_model(model, path):
    """Write `model` to `path` (the exact name given): config, weights, compile settings and
    optimizer state. A name ending in .keras gets Keras 3's archive (minicnn/keras_format.py),
    any other name minicnn's .npz. The file is written under a temporary name and renamed."""
    from . import __version__, keras_format
    if keras_format.is_keras_path(path):
        keras_format.save_keras(model, path)
        return
    model._require_built("save")
    arrays = _weights_arrays(model)
    header = {"format": FORMAT, "version": VERSION, "minicnn_version": __version__,
              "class_name": type(model).__name__, "config": model.get_config(),
              "build_input_shape": (list(model.input_shape[1:]) if model._single_input
                                    else [list(s[1:]) for s in model.input_shape]),
              "compile": None, "optimizer_state": None}
    if model.loss is not None:
        header["compile"] = {"optimizer": model.optimizer.get_config(),
                             "loss": model.loss.get_config(),
                             "metrics": [m.name for m in model.metrics]}
        slot_counts = {}
        for weight_path, param in model.named_weights():
            slots = model.optimizer.get_slots(param)
            if slots is None:
                continue
            slot_counts[weight_path] = len(slots)
            for j, array in enumerate(slots):
                arrays[f"optimizer/{weight_path}/{j}"] = array
        header["optimizer_state"] = {"iterations": model.optimizer.iterations,
                                     "slots": slot_counts}
    arrays[_HEADER] = _header_array(header)
    with atomic_write(path, "wb", "save") as f:
        np.savez(f, **arrays)


def save_weights(model, path):
    """Write only the weights of `model` to `path` (.npz); read back with load_weights."""
    model._require_built("save_weights")
    arrays = _weights_arrays(model)
    arrays[_HEADER] = _header_array({"format": FORMAT, "version": VERSION, "weights_only": True,
                                     "config": model.get_config()})
    with atomic_write(path, "wb", "save_weights") as f:
        np.savez(f, **arrays)


class _ModelFile:
    """An opened, checked model file: `header` (dict) and `array(key)`.

    where: the calling function's name, used in every error message with the file name.
    """

    def __init__(self, path, where="load_model"):
        self.path = Path(path)
        self.where = where
        if not self.path.is_file():
            what = "is a folder, not a file" if self.path.is_dir() else "no such file"
            raise FileNotFoundError(f"{where}: {what}: {self.path}")
        self.arrays = self._read_arrays()
        if _HEADER not in self.arrays:
            self.fail("is a .npz archive but not a minicnn model (it has no minicnn header). "
                      "Was it written by model.save()?")
        try:
            self.header = json.loads(self.arrays.pop(_HEADER).tobytes().decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # bad UTF-8, bad or absurdly nested JSON
            raise self.error(f"has a corrupted header ({exc}); save the model again.") from exc
        if not isinstance(self.header, dict) or self.header.get("format") != FORMAT:
            self.fail(f"is not a minicnn model file (its header does not say format "
                      f"{FORMAT!r}).")
        version = self.header.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
            self.fail(f"has format version {version!r}, but this minicnn ({self._version()}) "
                      f"reads versions 1 to {VERSION}. Upgrade minicnn, or save the model again "
                      "with this version.")

    @staticmethod
    def _version():
        from . import __version__
        return f"minicnn {__version__}"

    def error(self, problem):
        """A ValueError naming the function, the file and the problem."""
        return ValueError(f"{self.where}: {self.path} {problem}")

    def fail(self, problem):
        raise self.error(problem)

    def _read_arrays(self):
        with open(self.path, "rb") as f:
            start = f.read(6)
        if not start:
            raise self._unreadable("it is empty, 0 bytes")
        if start.startswith(b"\x93NUMPY"):
            self.fail("holds a single NumPy array (.npy), not a minicnn model (a .npz archive "
                      "written by model.save()).")
        if not start.startswith(b"PK\x03\x04"):
            # np.load would try to unpickle it; minicnn never does.
            raise self._unreadable(f"it does not start like a .npz archive: {start!r}")
        try:
            with np.load(self.path, allow_pickle=False) as loaded:
                return {key: loaded[key] for key in loaded.files}
        except PermissionError:
            raise
        except Exception as exc:  # zipfile and numpy raise many kinds for damaged archives
            if "allow_pickle" in str(exc):
                reason = "it holds pickled Python objects, which minicnn never loads"
            else:
                reason = f"{type(exc).__name__}: {exc}"
            raise self._unreadable(reason) from exc

    def _unreadable(self, reason):
        return self.error(f"is not a readable minicnn model file ({reason}). It may be "
                          "truncated or corrupted; save the model again.")

    def array(self, key):
        if key not in self.arrays:
            self.fail(f"lacks the array {key!r}; the file is incomplete or holds a different "
                      "model.")
        return self.arrays[key]


def _weight_keys_by_position(model_file):
    """{(layer position 'NNN', parameter name): key} for every weight array in the file."""
    keys = {}
    for key in model_file.arrays:
        if key.startswith("layers/"):
            # Layer names have no '/' (Layer refuses it); a nested model's parameter names
            # do ('conv2d/kernel'): split at the first one.
            layer_part, _, name = key[len("layers/"):].partition("/")
            keys[(layer_part.split("_", 1)[0], name)] = key
    return keys


def _load_weights_from(model, model_file):
    # Match by position and parameter name, not layer name: automatic names (conv2d_3) differ
    # between processes, and load_weights must work on a model built anew in code.
    by_position = _weight_keys_by_position(model_file)
    wanted = {(f"{i:03d}", name) for i, layer in enumerate(model.layers) for name in layer.params}
    extra = sorted(by_position[k] for k in set(by_position) - wanted)
    if extra:
        model_file.fail(f"holds weights the model has no place for ({', '.join(extra[:3])}"
                        f"{', ...' if len(extra) > 3 else ''}); it was saved from a different "
                        "architecture.")
    for i, layer in enumerate(model.layers):
        values = []
        for name in layer.params:
            key = by_position.get((f"{i:03d}", name), _weight_key(i, layer, name))
            value = model_file.array(key)
            if not np.issubdtype(value.dtype, np.floating):
                model_file.fail(f"stores {key!r} as {value.dtype}; weights are floats.")
            values.append(value)
        try:
            layer.set_weights(values)
        except ValueError as exc:
            raise model_file.error(f"does not fit the model: {exc}") from exc


def _rebuild_architecture(model_file):
    from .models import Functional, Sequential
    header = model_file.header
    try:
        if header.get("class_name", "Sequential") == "Functional":
            model = Functional.from_config(header["config"])
        else:
            model = Sequential.from_config(header["config"])
        if not model.built:
            model.build((None, *header["build_input_shape"]))
    except Exception as exc:  # whatever the header holds
        raise model_file.error(f"describes an invalid architecture "
                               f"({type(exc).__name__}: {exc}).") from exc
    return model


def _restore_compile(model, model_file):
    from . import losses, optimizers
    compiled = model_file.header.get("compile")
    if not compiled:
        return
    try:
        model.compile(optimizer=optimizers.deserialize(compiled["optimizer"]),
                      loss=losses.deserialize(compiled["loss"]), metrics=compiled["metrics"])
    except Exception as exc:  # whatever the header holds
        raise model_file.error(f"has invalid compile settings "
                               f"({type(exc).__name__}: {exc}).") from exc
    state = model_file.header.get("optimizer_state")
    if not isinstance(state, dict):
        model_file.fail("has compile settings but no optimizer state.")
    iterations, counts = state.get("iterations"), state.get("slots")
    if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 0:
        model_file.fail(f"has an invalid optimizer step count {iterations!r}.")
    if model_file.header.get("version") == 1:  # by position among the trainable parameters
        if not isinstance(counts, list):
            model_file.fail(f"has an invalid optimizer state description {counts!r}.")
        params = model.trainable_weights
        if counts and len(counts) != len(params):
            model_file.fail(f"has optimizer state for {len(counts)} parameters, but the model "
                            f"trains {len(params)}.")
        by_key = {f"{i:04d}": (param, count)
                  for i, (param, count) in enumerate(zip(params, counts, strict=False))}
    else:
        named = dict(model.named_weights())
        if not isinstance(counts, dict):
            model_file.fail(f"has an invalid optimizer state description {counts!r}.")
        if not set(counts) <= set(named):
            model_file.fail(f"has optimizer state for unknown weights "
                            f"{sorted(set(counts) - set(named))!r}.")
        by_key = {path: (named[path], count) for path, count in counts.items()}
    for key, (param, count) in by_key.items():
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            model_file.fail(f"has an invalid optimizer state description {counts!r}.")
        slot = [model_file.array(f"optimizer/{key}/{j}") for j in range(count)]
        for j, array in enumerate(slot):
            if array.shape != param.shape or array.dtype != param.dtype:
                model_file.fail(f"has optimizer state 'optimizer/{key}/{j}' of shape "
                                f"{array.shape} {array.dtype}; its parameter is {param.shape} "
                                f"{param.dtype}.")
            if not np.isfinite(array).all():
                model_file.fail(f"has NaN or inf in optimizer state 'optimizer/{key}/{j}'.")
        try:
            model.optimizer.set_slots(param, slot)
        except ValueError as exc:
            raise model_file.error(f"has optimizer state that does not fit: {exc}") from exc
    model.optimizer.iterations = iterations


def load_model(path):
    """Rebuild the model saved at `path`: architecture, weights, compile settings, optimizer
    state. Predictions are bit-identical to the saved model's, and fit continues exactly where
    it stopped. Never runs code from the file.

    A .keras file (Keras 3's archive, by its name or its content) is read by
    minicnn/keras_format.py; anything else as minicnn's .npz.

    Raises FileNotFoundError for a missing file; ValueError naming the file and the problem for
    a truncated, corrupted, foreign or unknown-version file.
    """
    from . import keras_format
    if keras_format.is_keras_path(path) or keras_format.looks_like_keras(path):
        return keras_format.load_keras(path, "load_model")
    model_file = _ModelFile(path, "load_model")
    if model_file.header.get("weights_only"):
        model_file.fail("holds only weights (written by save_weights); build the model in code "
                        "and call model.load_weights(path).")
    model = _rebuild_architecture(model_file)
    _load_weights_from(model, model_file)
    _restore_compile(model, model_file)
    return model


def load_weights(model, path):
    """Copy the weights stored at `path` (by save_weights or save) into `model`, which must be
    built with the same architecture."""
    model._require_built("load_weights")
    _load_weights_from(model, _ModelFile(path, "load_weights"))
