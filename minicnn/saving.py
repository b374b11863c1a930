"""Model files: one .npz holding a JSON header (architecture, compile settings, format version)
and plain arrays (weights by layer and name, optimizer state). No pickle: loading uses
np.load(allow_pickle=False) and runs no code from the file. Files are written to a temporary
name in the same folder and renamed, so a crash never leaves a half-written model.
"""

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "minicnn-model"
VERSION = 1
_HEADER = "__minicnn_header__"


def _weight_key(index, layer, name):
    return f"layers/{index:03d}_{layer.name}/{name}"


def _atomic_savez(path, arrays):
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"save: the folder {folder} does not exist; create it first.")
    handle, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            np.savez(tmp, **arrays)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)
        raise


def _header_array(header):
    return np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)


def _weights_arrays(model):
    return {_weight_key(i, layer, name): value
            for i, layer in enumerate(model.layers) for name, value in layer.params.items()}


def save_model(model, path):
    """Write `model` to `path` (.npz): config, weights, compile settings, optimizer state."""
    from . import __version__
    model._require_built("save")
    arrays = _weights_arrays(model)
    header = {"format": FORMAT, "version": VERSION, "minicnn_version": __version__,
              "config": model.get_config(), "build_input_shape": list(model.input_shape),
              "compile": None, "optimizer_state": None}
    if model.loss is not None:
        header["compile"] = {"optimizer": model.optimizer.get_config(),
                             "loss": model.loss.get_config(), "metrics": list(model.metrics)}
        state = model.optimizer.get_state()
        header["optimizer_state"] = {"iterations": state["iterations"],
                                     "slots": [len(slot) for slot in state["slots"]]}
        for i, slot in enumerate(state["slots"]):
            for j, array in enumerate(slot):
                arrays[f"optimizer/{i:04d}/{j}"] = array
    arrays[_HEADER] = _header_array(header)
    _atomic_savez(path, arrays)


def save_weights(model, path):
    """Write only the weights of `model` to `path` (.npz)."""
    model._require_built("save_weights")
    arrays = _weights_arrays(model)
    arrays[_HEADER] = _header_array({"format": FORMAT, "version": VERSION, "weights_only": True,
                                     "config": model.get_config()})
    _atomic_savez(path, arrays)


class _ModelFile:
    """An opened, checked model file: header dict and array access by name."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise FileNotFoundError(f"load_model: no such file: {self.path}")
        try:
            with np.load(self.path, allow_pickle=False) as data:
                self.arrays = {key: data[key] for key in data.files}
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as exc:
            raise ValueError(
                f"load_model: {self.path} is not a readable minicnn model file (a .npz archive): "
                f"{type(exc).__name__}: {exc}. It may be truncated or corrupted; save it again."
            ) from exc
        if _HEADER not in self.arrays:
            raise ValueError(f"load_model: {self.path} is a .npz file but not a minicnn model "
                             "(no header). Was it written by model.save()?")
        try:
            self.header = json.loads(self.arrays.pop(_HEADER).tobytes().decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(
                f"load_model: the header of {self.path} is corrupted ({exc}).") from exc
        if not isinstance(self.header, dict) or self.header.get("format") != FORMAT:
            raise ValueError(f"load_model: {self.path} is not a minicnn model file.")
        version = self.header.get("version")
        if not isinstance(version, int) or version > VERSION or version < 1:
            raise ValueError(
                f"load_model: {self.path} has format version {version!r}; this minicnn reads "
                f"version {VERSION}. Upgrade minicnn, or save the model again with this version."
            )

    def array(self, key):
        if key not in self.arrays:
            raise ValueError(f"load_model: {self.path} lacks the array {key!r}; the file is "
                             "incomplete or from a different model.")
        return self.arrays[key]


def _load_weights_from(model, model_file):
    # Match by position and parameter name, not layer name: names differ between processes.
    by_position = {}
    for key in model_file.arrays:
        if key.startswith("layers/"):
            layer_part, _, name = key[len("layers/"):].partition("/")
            by_position[(layer_part.split("_", 1)[0], name)] = key
    for i, layer in enumerate(model.layers):
        values = [model_file.array(by_position.get((f"{i:03d}", name), _weight_key(i, layer, name)))
                  for name in layer.params]
        try:
            layer.set_weights(values)
        except ValueError as exc:
            raise ValueError(f"load_model: {model_file.path}: {exc}") from exc


def load_model(path):
    """Rebuild the model saved at `path`; predictions are bit-identical to the saved model's."""
    from . import losses, optimizers
    from .models import Sequential
    model_file = _ModelFile(path)
    header = model_file.header
    if header.get("weights_only"):
        raise ValueError(f"load_model: {path} holds only weights (save_weights); build the "
                         "model in code and call model.load_weights(path).")
    try:
        model = Sequential.from_config(header["config"])
        if not model.built:
            model.build(tuple(header["build_input_shape"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"load_model: the architecture in {path} is invalid: {exc}") from exc
    _load_weights_from(model, model_file)
    compiled = header.get("compile")
    if compiled:
        model.compile(optimizer=optimizers.deserialize(compiled["optimizer"]),
                      loss=losses.deserialize(compiled["loss"]), metrics=compiled["metrics"])
        state = header.get("optimizer_state")
        if state and state["slots"]:
            slots = [[model_file.array(f"optimizer/{i:04d}/{j}") for j in range(count)]
                     for i, count in enumerate(state["slots"])]
            model.optimizer.set_state({"iterations": state["iterations"], "slots": slots})
        elif state:
            model.optimizer.iterations = state["iterations"]
    return model


def load_weights(model, path):
    """Copy the weights stored at `path` into `model` (same architecture)."""
    model._require_built("load_weights")
    _load_weights_from(model, _ModelFile(path))
