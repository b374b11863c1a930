"""Model files: one .npz holding a JSON header (architecture, compile settings, format version)
and plain arrays (weights by layer and name, optimizer state). No pickle: loading uses
np.load(allow_pickle=False) and runs no code from the file. Files are written to a temporary
name in the same folder and renamed, so a crash never leaves a half-written model.

Layout of a version-2 file (a zip of .npy members, as np.savez writes it):

    __minicnn_header__          uint8 bytes of a UTF-8 JSON object: format, version,
                                minicnn_version, class_name (Sequential or Functional), config
                                (model.get_config()), build_input_shape, compile,
                                optimizer_state
    layers/000_conv2d/kernel    one array per parameter: layer position, layer name, parameter
    layers/000_conv2d/bias      (a model used as a layer: layers/003_base/conv2d/kernel)
    optimizer/conv2d/kernel/0   optimizer slot j of the parameter at that weight path
                                (Adam: 0 = m, 1 = v); only parameters the optimizer has moved

optimizer_state is {"iterations": int, "slots": {weight path: number of slot arrays}}: slots
are keyed by the parameter they belong to, so a model saved with some layers frozen continues
with every moment attached to its own weight. Version-1 files (slots listed by position among
the trainable parameters) are still read. A name ending in .keras is Keras's format instead
(minicnn/keras_format.py).

Every member carries a CRC-32, so a flipped bit in the weights is detected, not loaded.

Loading is bounded by the file: the zip directory and each member's .npy header are read
first (nothing is inflated), the JSON header is read within MAX_HEADER_BYTES, and every
weight's declared shape is compared with what the header's architecture needs
(`layer.weight_shapes`) before the architecture is built or any weight is inflated. A member
may not claim to inflate to more than MAX_INFLATION times its compressed size, so a small
file can never ask for much memory.
"""

import contextlib
import errno
import json
import math
import os
import re
import secrets
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np

FORMAT = "minicnn-model"
VERSION = 2
_HEADER = "__minicnn_header__"
# The JSON header of a real model is a few KB (a 70,000-character layer name fits easily).
MAX_HEADER_BYTES = 4 << 20
# More layers than any Sequential CNN has; a header listing millions would cost gigabytes.
MAX_LAYERS = 10_000
# Weights are noisy floats that deflate by a few percent at most; a member claiming to inflate
# to more than this many times its compressed size (plus a few KB) is refused.
MAX_INFLATION = 50
_INFLATION_SLACK = 64 << 10
_NPY_MAX_HEADER = 10_000  # NumPy's own default limit for an .npy header
# Temporary files: ".<name>.<pid>.<random>.tmp"; the name part is cut so the whole stays
# within the 255 bytes most file systems allow.
_TMP_NAME_BYTES = 200
_STALE_TMP_SECONDS = 24 * 3600


class FileWriteError(OSError):
    """A file could not be written (read-only file system, disk full, no permission, name too
    long...). `errno` is the system's code; the message names the target file, the cause and
    what to do, never the temporary file."""

    def __str__(self):
        return self.strerror


_WRITE_ADVICE = {
    errno.EROFS: "the file system is read-only; choose a folder on a writable disk",
    errno.ENOSPC: "the disk is full; free some space or choose another disk",
    errno.EDQUOT: "the disk quota is exceeded; free some space or choose another disk",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EPERM: "permission denied; choose a folder you can write to",
    errno.ENAMETOOLONG: "the file name is too long for this file system (most allow 255 "
                        "bytes); choose a shorter name",
}


def _write_error(exc, path, where):
    advice = _WRITE_ADVICE.get(exc.errno, exc.strerror or type(exc).__name__)
    return FileWriteError(exc.errno, f"{where}: cannot write {path}: {advice}.")


def _temporary_prefix(name):
    """'.<name>.' with <name> cut to _TMP_NAME_BYTES bytes (whole characters)."""
    stem = name[:_TMP_NAME_BYTES]
    while len(os.fsencode(stem)) > _TMP_NAME_BYTES:
        stem = stem[:-1]
    return f".{stem}."


def _remove_stale_temporaries(folder, prefix):
    """Remove temporary files of earlier saves of the same name whose process is gone (killed
    mid-save) or that are older than a day; another live process's file is left alone."""
    try:
        candidates = [entry for entry in os.scandir(folder)
                      if entry.name.startswith(prefix) and entry.name.endswith(".tmp")]
    except OSError:
        return
    for entry in candidates:
        middle = entry.name[len(prefix):-len(".tmp")].split(".")
        pid = int(middle[0]) if len(middle) == 2 and middle[0].isdigit() else None
        try:
            stale = time.time() - entry.stat(follow_symlinks=False).st_mtime > _STALE_TMP_SECONDS
            if pid is not None and not stale and pid != os.getpid():
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    stale = True
                except PermissionError:
                    pass  # alive, someone else's
            if stale:
                os.remove(entry.path)
        except OSError:
            pass  # gone already, or not ours to remove


@contextlib.contextmanager
def atomic_write(path, mode="wb", where="save"):
    """Open a temporary file beside `path` for writing; on success it replaces `path`.

    with atomic_write("out/history.json", "w") as f: json.dump(data, f)

    A reader sees either the old file or the complete new one, never a half-written file; on an
    exception the temporary file is removed and `path` is left as it was. Temporary files left
    by a process killed mid-save are removed by the next save of the same name. The new file
    gets the usual permissions (0666 minus the umask). mode: "wb" or "w" (UTF-8 text).
    where: the caller's name for error messages. Raises FileNotFoundError if the folder is
    missing, IsADirectoryError if `path` is a folder, FileWriteError (an OSError naming `path`
    and the cause) if the file system refuses the write (read-only, full, no permission).
    """
    path = Path(path)
    folder = path.parent
    try:
        folder_exists, path_is_folder = folder.is_dir(), path.is_dir()
    except OSError as exc:  # e.g. a name over 255 bytes
        raise _write_error(exc, path, where) from exc
    if not folder_exists:
        raise FileNotFoundError(f"{where}: cannot write {path}: the folder {folder} does not "
                                "exist; create it first.")
    if path_is_folder:
        raise IsADirectoryError(f"{where}: {path} is a folder; give a file name such as "
                                f"{path / 'model.npz'}.")
    prefix = _temporary_prefix(path.name)
    _remove_stale_temporaries(folder, prefix)
    tmp_name = os.path.join(folder, f"{prefix}{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        handle = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                         | getattr(os, "O_BINARY", 0), 0o600)
    except OSError as exc:
        raise _write_error(exc, path, where) from exc
    try:
        kwargs = {"encoding": "utf-8", "newline": "\n"} if "b" not in mode else {}
        try:
            tmp = os.fdopen(handle, mode, **kwargs)
        except BaseException:
            os.close(handle)
            raise
        with tmp:
            yield tmp
            tmp.flush()
            os.fsync(tmp.fileno())
        # Created private (0600) while being written; give it what open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)
        os.replace(tmp_name, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.remove(tmp_name)
        if isinstance(exc, FileWriteError) or exc.errno is None:
            raise
        raise _write_error(exc, path, where) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp_name)
        raise


def _weight_key(index, layer, name):
    # Loading matches by position and parameter name; the layer name is only for people
    # reading the archive, so it is cut to 64 safe characters (a NUL or a 70,000-character
    # name would otherwise make a zip member that cannot be written or read back).
    readable = re.sub(r"[^A-Za-z0-9_.-]", "_", layer.name)[:64]
    return f"layers/{index:03d}_{readable}/{name}"


def _header_array(header):
    return np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)


def _weights_arrays(model):
    return {_weight_key(i, layer, name): value
            for i, layer in enumerate(model.layers) for name, value in layer.params.items()}


def _check_finite(model, where):
    """Raise ValueError naming the first layer and parameter holding NaN or inf."""
    for layer in model.layers:
        for name, value in layer.params.items():
            bad = int(value.size - np.count_nonzero(np.isfinite(value)))
            if bad:
                raise ValueError(
                    f"{where}: {type(layer).__name__} '{layer.name}' {name} holds {bad} NaN or "
                    f"inf value{'s' if bad != 1 else ''} (of {value.size}): the model's "
                    "training diverged, and such a model predicts nothing useful. Retrain it "
                    "(e.g. with a lower learning rate), or pass allow_non_finite=True to save "
                    "it anyway for inspection (load_model refuses such a file; np.load(path) "
                    "reads its arrays)."
                )


def save_model(model, path, allow_non_finite=False):
    """Write `model` to `path` (the exact name given): config, weights, compile settings and
    optimizer state. A name ending in .keras gets Keras 3's archive (minicnn/keras_format.py),
    any other name minicnn's .npz. The file is written under a temporary name and renamed.

    allow_non_finite: save weights holding NaN or inf (a diverged training) instead of
    raising ValueError; load_model refuses such files.
    """
    from . import __version__, keras_format
    model._require_built("save")
    if not allow_non_finite:
        _check_finite(model, "save")
    if keras_format.is_keras_path(path):
        keras_format.save_keras(model, path)
        return
    arrays = _weights_arrays(model)
    header = {"format": FORMAT, "version": VERSION, "minicnn_version": __version__,
              "class_name": type(model).__name__, "config": model.get_config(),
              "build_input_shape": (list(model.input_shape[1:]) if model._single_input
                                    else [list(s[1:]) for s in model.input_shape]),
              "compile": None, "optimizer_state": None}
    if model.loss is not None:
        from . import losses, metrics
        given, weighted = model._metric_identifiers
        header["compile"] = {"optimizer": model.optimizer.get_config(),
                             "loss": losses.serialize(model.loss),
                             "metrics": metrics.serialize_all(given),
                             "weighted_metrics": metrics.serialize_all(weighted)}
        if model._output_losses is not None:  # several outputs: a loss and weight for each
            header["compile"]["loss"] = [losses.serialize(fn) for fn, _ in model._output_losses]
            header["compile"]["loss_weights"] = [w for _, w in model._output_losses]
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


def save_weights(model, path, allow_non_finite=False):
    """Write only the weights of `model` to `path` (.npz); read back with load_weights.
    allow_non_finite: as for save_model."""
    model._require_built("save_weights")
    if not allow_non_finite:
        _check_finite(model, "save_weights")
    arrays = _weights_arrays(model)
    arrays[_HEADER] = _header_array({"format": FORMAT, "version": VERSION, "weights_only": True,
                                     "config": model.get_config()})
    with atomic_write(path, "wb", "save_weights") as f:
        np.savez(f, **arrays)


class _ModelFile:
    """An opened, checked model file: `header` (dict), `declared` ({key: (shape, dtype)} of
    every array, read from the .npy headers without inflating) and `array(key)`.

    where: the calling function's name, used in every error message with the file name.
    """

    def __init__(self, path, where="load_model"):
        self.path = Path(path)
        self.where = where
        if not self.path.is_file():
            what = "is a folder, not a file" if self.path.is_dir() else "no such file"
            raise FileNotFoundError(f"{where}: {what}: {self.path}")
        self._check_start()
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError,
                NotImplementedError, OSError) as exc:
            if isinstance(exc, PermissionError):
                raise
            raise self._unreadable(f"{type(exc).__name__}: {exc}") from exc
        try:
            self.members = self._members()
            self.declared = {key: self._npy_header(info) for key, info in self.members.items()}
            self.header = self._read_header()
        except BaseException:
            self.zip.close()
            raise

    def close(self):
        self.zip.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @staticmethod
    def _version():
        from . import __version__
        return f"minicnn {__version__}"

    def error(self, problem):
        """A ValueError naming the function, the file and the problem."""
        return ValueError(f"{self.where}: {self.path} {problem}")

    def fail(self, problem):
        raise self.error(problem)

    def _unreadable(self, reason):
        return self.error(f"is not a readable minicnn model file ({reason}). It may be "
                          "truncated or corrupted; save the model again.")

    def _check_start(self):
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

    def _members(self):
        """{key without '.npy': ZipInfo}; every member must be a plain .npy whose declared
        size is plausible for its compressed size."""
        members = {}
        for info in self.zip.infolist():
            name = info.filename
            if name.endswith("/"):  # a folder entry (not info.is_dir(): names may be empty)
                continue
            if not name.endswith(".npy"):
                self.fail(f"holds a member {name[:80]!r} that is not a NumPy array (.npy); "
                          "it was not written by model.save(). Save the model again.")
            key = name[:-len(".npy")]
            if key in members:
                self.fail(f"holds the member {name[:80]!r} twice; it is corrupted or was "
                          "edited. Save the model again.")
            if info.compress_type == zipfile.ZIP_STORED:
                plausible = info.file_size == info.compress_size
            else:
                plausible = (info.file_size
                             <= info.compress_size * MAX_INFLATION + _INFLATION_SLACK)
            if not plausible:
                raise self._unreadable(
                    f"the member {name[:80]!r} claims {info.file_size:,} bytes from "
                    f"{info.compress_size:,} compressed bytes, more than any weights inflate to")
            members[key] = info
        return members

    def _open(self, info):
        try:
            return self.zip.open(info)
        except (zipfile.BadZipFile, NotImplementedError, ValueError, OSError,
                RuntimeError) as exc:  # RuntimeError: an encrypted member
            if isinstance(exc, PermissionError):
                raise
            raise self._unreadable(f"{type(exc).__name__}: {exc}") from exc

    def _npy_header(self, info):
        """(shape, dtype) from a member's .npy header, inflating only its first block."""
        fmt = np.lib.format
        try:
            with self._open(info) as f:
                version = fmt.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = fmt.read_array_header_1_0(f, _NPY_MAX_HEADER)
                elif version == (2, 0):
                    shape, fortran, dtype = fmt.read_array_header_2_0(f, _NPY_MAX_HEADER)
                else:
                    raise ValueError(f"unsupported .npy version {version}")
                offset = f.tell()
        except ValueError as exc:
            if "model file" in str(exc):
                raise
            raise self._unreadable(f"the member {info.filename[:80]!r} is not a readable "
                                   f".npy array: {exc}") from exc
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, SyntaxError) as exc:
            if isinstance(exc, PermissionError):
                raise
            raise self._unreadable(f"{type(exc).__name__}: {exc}") from exc
        if dtype.hasobject:
            raise self._unreadable("it holds pickled Python objects, which minicnn never loads")
        if fortran and len(shape) > 1:
            raise self._unreadable(f"the member {info.filename[:80]!r} is in Fortran order, "
                                   "which model.save() never writes")
        if offset + math.prod(shape) * dtype.itemsize != info.file_size:
            raise self._unreadable(f"the member {info.filename[:80]!r} declares shape {shape} "
                                   f"{dtype}, which does not match its size")
        return tuple(shape), dtype

    def _read_header(self):
        if _HEADER not in self.members:
            self.fail("is a .npz archive but not a minicnn model (it has no minicnn header). "
                      "Was it written by model.save()?")
        shape, dtype = self.declared[_HEADER]
        if dtype != np.uint8 or len(shape) != 1:
            self.fail(f"has a corrupted header (an array {shape} {dtype}, not bytes); save the "
                      "model again.")
        if shape[0] > MAX_HEADER_BYTES:
            self.fail(f"has a header of {shape[0]:,} bytes; a minicnn header is a few KB (the "
                      f"limit is {MAX_HEADER_BYTES:,}). The file is corrupted or not a model.")
        try:
            header = json.loads(self.array(_HEADER).tobytes().decode("utf-8"))
        except (ValueError, RecursionError) as exc:  # bad UTF-8, bad or absurdly nested JSON
            raise self.error(f"has a corrupted header ({exc}); save the model again.") from exc
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            self.fail(f"is not a minicnn model file (its header does not say format "
                      f"{FORMAT!r}).")
        version = header.get("version")
        if isinstance(version, bool) or not isinstance(version, int) or not 1 <= version <= VERSION:
            self.fail(f"has format version {version!r}, but this minicnn ({self._version()}) "
                      f"reads versions 1 to {VERSION}. Upgrade minicnn, or save the model again "
                      "with this version.")
        return header

    def array(self, key):
        """Inflate the array `key` (its size was checked when the file was opened)."""
        if key not in self.members:
            self.fail(f"lacks the array {key!r}; the file is incomplete or holds a different "
                      "model.")
        try:
            with self._open(self.members[key]) as f:
                value = np.lib.format.read_array(f, allow_pickle=False,
                                                 max_header_size=_NPY_MAX_HEADER)
                f.read(1)  # reach the member's end, where zipfile checks its CRC-32
        except ValueError as exc:
            if "model file" in str(exc):
                raise
            raise self._unreadable(f"ValueError: {exc}") from exc
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
            if isinstance(exc, PermissionError):
                raise
            raise self._unreadable(f"{type(exc).__name__}: {exc}") from exc
        return value


def _weight_keys_by_position(model_file):
    """{(layer position 'NNN', parameter name): key} for every weight array in the file."""
    keys = {}
    for key in model_file.members:
        if key.startswith("layers/"):
            # Layer names have no '/' (Layer refuses it); a nested model's parameter names
            # do ('conv2d/kernel'): split at the first one.
            layer_part, _, name = key[len("layers/"):].partition("/")
            position = (layer_part.split("_", 1)[0], name)
            if position in keys:
                model_file.fail(f"holds two arrays for parameter {name!r} of layer "
                                f"{position[0]} ({keys[position]!r} and {key!r}); it is "
                                "corrupted or was edited. Save the model again.")
            keys[position] = key
    return keys


def _matched_weight_keys(model_file, layers_and_shapes):
    """Check the file's weights against [(layer description, {name: shape}), ...] from their
    declared .npy headers, inflating nothing. Returns [[key per parameter] per layer]."""
    by_position = _weight_keys_by_position(model_file)
    wanted = {(f"{i:03d}", name) for i, (_, shapes) in enumerate(layers_and_shapes)
              for name in shapes}
    extra = sorted(by_position[k] for k in set(by_position) - wanted)
    if extra:
        model_file.fail(f"holds weights the model has no place for ({', '.join(extra[:3])}"
                        f"{', ...' if len(extra) > 3 else ''}); it was saved from a different "
                        "architecture.")
    keys = []
    for i, (where, shapes) in enumerate(layers_and_shapes):
        layer_keys = []
        for name, shape in shapes.items():
            key = by_position.get((f"{i:03d}", name))
            if key is None:
                model_file.fail(f"lacks the array 'layers/{i:03d}_.../{name}' for {where}; "
                                "the file is incomplete or holds a different model.")
            declared_shape, dtype = model_file.declared[key]
            if not np.issubdtype(dtype, np.floating):
                model_file.fail(f"stores {key!r} as {dtype}; weights are floats.")
            if declared_shape != tuple(shape):
                model_file.fail(f"does not fit the model: {where}: {name} must have shape "
                                f"{tuple(shape)}, got {declared_shape}.")
            layer_keys.append(key)
        keys.append(layer_keys)
    return keys


def _read_weights(model_file, keys_per_layer):
    """Inflate the checked weights: [[array per parameter] per layer]; NaN/inf refused."""
    values = []
    for layer_keys in keys_per_layer:
        layer_values = []
        for key in layer_keys:
            value = model_file.array(key)
            bad = int(value.size - np.count_nonzero(np.isfinite(value)))
            if bad:
                model_file.fail(
                    f"does not fit the model: {key!r} contains NaN or inf values ({bad} of "
                    f"{value.size}): the model's training diverged before it was saved. "
                    "Retrain it; np.load(path) reads the raw arrays for inspection.")
            layer_values.append(value)
        values.append(layer_values)
    return values


def _set_weights(model, model_file, values):
    for layer, layer_values in zip(model.layers, values, strict=True):
        try:
            layer.set_weights(layer_values)
        except ValueError as exc:
            raise model_file.error(f"does not fit the model: {exc}") from exc


def _load_weights_from(model, model_file):
    # Match by position and parameter name, not layer name: automatic names (conv2d_3) differ
    # between processes, and load_weights must work on a model built anew in code.
    expected = [(f"{type(layer).__name__} '{layer.name}'",
                 {name: value.shape for name, value in layer.params.items()})
                for layer in model.layers]
    keys = _matched_weight_keys(model_file, expected)
    _set_weights(model, model_file, _read_weights(model_file, keys))


def _per_sample(shape):
    """A shape list from the header as a tuple without a Keras-style batch axis (None)."""
    shape = tuple(shape)
    return shape[1:] if shape and shape[0] is None else shape


def _architecture_shapes(model_file):
    """[(layer description, {name: shape})] per entry of model.layers that the header's
    architecture needs, computed with layer.weight_shapes: nothing is built or allocated."""
    header = model_file.header
    try:
        layers = _shapes_of(header.get("class_name", "Sequential"), header["config"],
                            header.get("build_input_shape"), [0])
    except Exception as exc:  # whatever the header holds
        raise model_file.error(f"describes an invalid architecture "
                               f"({type(exc).__name__}: {exc}).") from exc
    return [(where, shapes) for where, shapes, _, _ in layers]


def _unbuilt_layer(spec):
    from .layers import get_class
    if spec["class_name"] == "InputLayer":
        from .functional import InputLayer
        return InputLayer(**spec["config"])
    return get_class(spec["class_name"]).from_config(spec["config"])


def _nested_shapes(spec, input_shape, count):
    """(description, {'layer/param': shape}, output shape) of a model spec used as a layer."""
    inner = _shapes_of(spec["class_name"], spec["config"], list(input_shape[1:]), count)
    shapes = {}
    for _, layer_shapes, name, _ in inner:
        shapes.update({f"{name}/{k}": v for k, v in layer_shapes.items()})
    name = spec["config"].get("name", "?")
    return f"{spec['class_name']} '{name}'", shapes, inner[-1][3] if inner else None


def _shapes_of(class_name, config, build_input_shape, count):
    """[(description, {name: shape}, layer name, output shape)] for every entry of the
    layers of a Sequential or Functional config, by shape arithmetic alone. count: a
    one-element list counting layers across nesting (MAX_LAYERS)."""
    specs = config["layers"]
    if not isinstance(specs, list):
        raise TypeError(f"'layers' is a {type(specs).__name__}, not a list")
    count[0] += len(specs)
    if count[0] > MAX_LAYERS:
        raise ValueError(f"{count[0]:,} layers, more than the {MAX_LAYERS:,} minicnn loads")
    if class_name == "Functional":
        return _functional_shapes(specs, count)
    shape = config.get("build_input_shape") or (
        [None, *build_input_shape] if build_input_shape is not None else None)
    declared = specs[0]["config"].get("input_shape") if specs and "config" in specs[0] else None
    if shape is None and declared is not None:
        shape = [None, *declared]
    shape = (None, *_per_sample(shape))
    if declared is not None and tuple(declared) != shape[1:]:
        # Sequential.from_config builds from the first layer's input_shape: the shapes
        # checked here must be the ones it will allocate.
        raise ValueError(f"the first layer's input_shape {list(declared)} differs from "
                         f"the model's build_input_shape {list(shape[1:])}")
    result = []
    for spec in specs:
        if spec["class_name"] in ("Sequential", "Functional"):
            where, shapes, out = _nested_shapes(spec, shape, count)
            result.append((where, shapes, spec["config"].get("name"), out))
        else:
            layer = _unbuilt_layer(spec)
            out = tuple(layer.compute_output_shape(shape))
            result.append((f"{type(layer).__name__} '{layer.name}'",
                           layer.weight_shapes(shape), layer.name, out))
        shape = result[-1][3]
    return result


def _functional_shapes(specs, count):
    """As _shapes_of for a Functional config: the recorded calls in order, shapes only."""
    tensors, result = {}, []
    for spec in specs:
        calls = spec.get("inbound", [])
        name = spec["config"].get("name")
        if spec["class_name"] == "InputLayer":
            layer = _unbuilt_layer(spec)
            tensors[(layer.name, 0)] = layer.output_shape
            result.append((f"InputLayer '{layer.name}'", {}, layer.name, layer.output_shape))
            continue
        shapes = None
        for index, call in enumerate(calls):
            args = [tensors[tuple(ref)] for ref in call["args"]]
            shape = args if call["as_list"] else args[0]
            if spec["class_name"] in ("Sequential", "Functional"):
                where, layer_shapes, out = _nested_shapes(spec, shape, count)
            else:
                layer = _unbuilt_layer(spec) if shapes is None else layer
                where, layer_shapes = f"{type(layer).__name__} '{layer.name}'", (
                    layer.weight_shapes(shape) if not call["as_list"] else {})
                out = tuple(layer.compute_output_shape(shape))
            if shapes is None:
                shapes, first_where = layer_shapes, where
            elif layer_shapes != shapes:
                raise ValueError(f"{where} is called on inputs of different shapes")
            tensors[(name, index)] = out
        result.append((first_where if shapes is not None else name, shapes or {}, name,
                       tensors.get((name, 0))))
    return result


def _rebuild_architecture(model_file):
    from .models import Functional, Sequential
    header = model_file.header
    try:
        if header.get("class_name", "Sequential") == "Functional":
            model = Functional.from_config(header["config"])
        else:
            model = Sequential.from_config(header["config"])
            if not model.built:
                model.build((None, *_per_sample(header["build_input_shape"])))
    except Exception as exc:  # whatever the header holds
        raise model_file.error(f"describes an invalid architecture "
                               f"({type(exc).__name__}: {exc}).") from exc
    return model


def _restore_compile(model, model_file):
    from . import losses, metrics, optimizers
    compiled = model_file.header.get("compile")
    if not compiled:
        return
    try:
        loss = compiled["loss"]
        loss = ([losses.deserialize(fn) for fn in loss] if isinstance(loss, list)
                else losses.deserialize(loss))
        model.compile(optimizer=optimizers.deserialize(compiled["optimizer"]), loss=loss,
                      loss_weights=compiled.get("loss_weights"),
                      metrics=metrics.deserialize_all(compiled["metrics"]),
                      weighted_metrics=metrics.deserialize_all(
                          compiled.get("weighted_metrics") or []))
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
        for j in range(count):  # declared shapes first: nothing is inflated for a misfit
            declared = model_file.declared.get(f"optimizer/{key}/{j}")
            if declared is None:
                break  # missing: reading it below says so (a count of 2^63 ends here too)
            if declared[0] != param.shape:
                model_file.fail(f"has optimizer state 'optimizer/{key}/{j}' of shape "
                                f"{declared[0]} {declared[1]}; its parameter is {param.shape} "
                                f"{param.dtype}.")
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

    Raises FileNotFoundError for a missing file; ValueError naming the file and the problem for
    a truncated, corrupted, foreign or unknown-version file, and for weights holding NaN or inf
    (a diverged training saved with allow_non_finite=True). Memory stays bounded by the file:
    sizes are checked before anything is inflated or built (see the module docstring).
    """
    from . import keras_format
    if keras_format.is_keras_path(path) or keras_format.looks_like_keras(path):
        return keras_format.load_keras(path, "load_model")
    with _ModelFile(path, "load_model") as model_file:
        if model_file.header.get("weights_only"):
            model_file.fail("holds only weights (written by save_weights); build the model in "
                            "code and call model.load_weights(path).")
        # Every weight's declared size is checked before anything is built or inflated.
        keys = _matched_weight_keys(model_file, _architecture_shapes(model_file))
        model = _rebuild_architecture(model_file)
        _set_weights(model, model_file, _read_weights(model_file, keys))
        _restore_compile(model, model_file)
    return model


def load_weights(model, path):
    """Copy the weights stored at `path` (by save_weights or save) into `model`, which must be
    built with the same architecture."""
    model._require_built("load_weights")
    with _ModelFile(path, "load_weights") as model_file:
        _load_weights_from(model, model_file)
