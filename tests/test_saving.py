"""Model files: save/load round trips of several architectures (bit-identical predictions and
continued training), atomic writing, and clear errors for truncated, corrupted, foreign and
unknown-version files."""

import json
import os
import pickle
import re

import numpy as np
import pytest
from test_models import tutorial_model

import minicnn
from minicnn import layers, losses, models, optimizers
from minicnn.saving import FORMAT, VERSION, atomic_write

# --------------------------------------------------------------------------------------------
# Architectures: each returns (compiled model, x, y) with small random data.
# --------------------------------------------------------------------------------------------


def _labels(rng, n, k):
    return rng.integers(0, k, n)


def arch_tutorial(rng):
    """The tutorial's model: valid convolutions, pooling, Adam, sparse labels."""
    model = tutorial_model()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model, rng.random((24, 28, 28, 1), dtype=np.float32), _labels(rng, 24, 10)


def arch_strided_same(rng):
    """'same' padding with strides and odd sizes, a layer without bias, a Softmax layer,
    one-hot labels, SGD with Nesterov momentum."""
    model = models.Sequential([
        layers.Conv2D(6, 3, strides=2, padding="same", activation="relu", input_shape=(11, 9, 2)),
        layers.MaxPooling2D(3, strides=2, padding="same"),
        layers.Conv2D(5, (2, 3), strides=(1, 2), padding="same", activation="tanh",
                      use_bias=False),
        layers.Flatten(),
        layers.Dense(4),
        layers.Softmax(),
    ])
    model.compile(optimizer=optimizers.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
                  loss="categorical_crossentropy", metrics=["accuracy"])
    y = np.eye(4, dtype=np.float32)[_labels(rng, 30, 4)]
    return model, rng.random((30, 11, 9, 2), dtype=np.float32), y


def arch_logits_unbuilt(rng):
    """No input_shape (built by the first fit), logits with from_logits=True, Adam with
    non-default settings, ReLU and Activation layers."""
    model = models.Sequential([
        layers.Conv2D(3, 2, strides=2, padding="valid"),
        layers.ReLU(),
        layers.Flatten(),
        layers.Dense(8, kernel_initializer="he_normal", bias_initializer="ones"),
        layers.Activation("sigmoid"),
        layers.Dense(3),
    ])
    model.compile(optimizer=optimizers.Adam(learning_rate=0.003, beta_1=0.8, epsilon=1e-5),
                  loss=losses.SparseCategoricalCrossentropy(from_logits=True))
    return model, rng.random((20, 7, 7, 1), dtype=np.float32), _labels(rng, 20, 3)


def arch_float64_plain_sgd(rng):
    """A float64 model (gradient-check precision) with plain SGD (no optimizer slots)."""
    model = models.Sequential([
        layers.Conv2D(2, 3, padding="same", activation="relu", input_shape=(6, 6, 1)),
        layers.MaxPooling2D(2),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ], dtype="float64")
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["acc"])
    return model, rng.random((16, 6, 6, 1)), _labels(rng, 16, 3)


ARCHITECTURES = [arch_tutorial, arch_strided_same, arch_logits_unbuilt, arch_float64_plain_sgd]


def assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert len(wa) == len(wb)
    for x, y in zip(wa, wb, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def fit_quietly(model, x, y, **kwargs):
    return model.fit(x, y, epochs=1, batch_size=8, verbose=0, **kwargs)


# --------------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", ARCHITECTURES, ids=lambda f: f.__name__)
def test_round_trip_predictions_config_and_compile_settings(make, tmp_path):
    rng = np.random.default_rng(7)
    minicnn.set_random_seed(0)
    model, x, y = make(rng)
    fit_quietly(model, x, y)
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = models.load_model(path)

    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))  # bit for bit
    assert loaded.predict(x).dtype == model.dtype
    assert_same_weights(loaded, model)
    assert loaded.get_config() == model.get_config()
    assert loaded.input_shape == model.input_shape and loaded.name == model.name
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    assert loaded.loss.get_config() == model.loss.get_config()
    assert [m.name for m in loaded.metrics] == [m.name for m in model.metrics]
    state = model.optimizer.get_state(model.weights)
    loaded_state = loaded.optimizer.get_state(loaded.weights)
    assert loaded_state["iterations"] == state["iterations"] == -(-len(x) // 8)
    assert len(loaded_state["slots"]) == len(state["slots"])
    for slot, loaded_slot in zip(state["slots"], loaded_state["slots"], strict=True):
        assert (slot is None) == (loaded_slot is None)
        for a, b in zip(slot or [], loaded_slot or [], strict=True):
            np.testing.assert_array_equal(a, b)
    # evaluate agrees too (same loss object, same metrics)
    assert loaded.evaluate(x, y, verbose=0) == model.evaluate(x, y, verbose=0)


@pytest.mark.parametrize("make", ARCHITECTURES, ids=lambda f: f.__name__)
def test_continued_training_matches_uninterrupted_training(make, tmp_path):
    """A: seed 0, build, fit 1 epoch, seed 1, fit 1 more. B: the same with a save and a
    load_model between the epochs. The shuffle generator is global, hence the reseeding."""
    rng = np.random.default_rng(3)
    minicnn.set_random_seed(0)
    a, x, y = make(rng)
    fit_quietly(a, x, y)
    minicnn.set_random_seed(1)
    history_a = fit_quietly(a, x, y).history

    rng = np.random.default_rng(3)
    minicnn.set_random_seed(0)
    b, x_b, y_b = make(rng)
    np.testing.assert_array_equal(x_b, x)
    fit_quietly(b, x, y)
    b.save(tmp_path / "b.npz")
    del b
    resumed = models.load_model(tmp_path / "b.npz")
    minicnn.set_random_seed(1)
    history_b = fit_quietly(resumed, x, y).history

    assert_same_weights(resumed, a)
    assert history_b == history_a
    assert resumed.optimizer.iterations == a.optimizer.iterations
    # Control: resuming with a fresh optimizer (no saved moments or step count) gives other
    # weights, so the comparison above can fail. Plain SGD has no state to lose.
    if make is not arch_float64_plain_sgd:
        control = models.load_model(tmp_path / "b.npz")
        control.compile(optimizer=optimizers.deserialize(control.optimizer.get_config()),
                        loss=control.loss, metrics=control.metrics)
        minicnn.set_random_seed(1)
        fit_quietly(control, x, y)
        assert not np.array_equal(control.get_weights()[0], a.get_weights()[0])


def test_uncompiled_model_round_trips_uncompiled(tmp_path, rng):
    model = tutorial_model()
    model.save(tmp_path / "u.npz")
    loaded = models.load_model(tmp_path / "u.npz")
    assert loaded.loss is None and loaded.optimizer is None
    x = rng.random((5, 28, 28, 1), dtype=np.float32)
    np.testing.assert_array_equal(loaded.predict(x), model.predict(x))


def test_compiled_but_untrained_model_trains_like_the_original(tmp_path):
    rng = np.random.default_rng(5)
    minicnn.set_random_seed(0)
    model, x, y = arch_strided_same(rng)
    model.save(tmp_path / "m.npz")
    loaded = models.load_model(tmp_path / "m.npz")
    assert loaded.optimizer.iterations == 0
    minicnn.set_random_seed(4)
    fit_quietly(model, x, y)
    minicnn.set_random_seed(4)
    fit_quietly(loaded, x, y)
    assert_same_weights(loaded, model)


def test_file_layout_names_weights_by_layer_and_parameter(tmp_path):
    minicnn.set_random_seed(0)
    model, x, y = arch_tutorial(np.random.default_rng(0))
    fit_quietly(model, x[:8], y[:8])
    model.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as data:
        files = set(data.files)
        header = json.loads(data["__minicnn_header__"].tobytes())
        for i, layer in enumerate(model.layers):
            for name, value in layer.params.items():
                np.testing.assert_array_equal(data[f"layers/{i:03d}_{layer.name}/{name}"], value)
    assert header["format"] == FORMAT and header["version"] == VERSION
    assert header["minicnn_version"] == minicnn.__version__
    assert header["config"] == model.get_config()
    assert header["compile"]["optimizer"]["name"] == "adam"
    assert header["compile"]["loss"]["name"] == "sparse_categorical_crossentropy"
    paths = [f"{layer.name}/{name}" for layer in model.layers for name in layer.params]
    assert header["optimizer_state"] == {"iterations": 1, "slots": dict.fromkeys(paths, 2)}
    assert {f for f in files if f.startswith("optimizer/")} == {
        f"optimizer/{path}/{j}" for path in paths for j in (0, 1)}  # Adam: m and v each
    layer = model.layers[0]
    np.testing.assert_array_equal(
        np.load(tmp_path / "m.npz")[f"optimizer/{layer.name}/kernel/1"],
        model.optimizer.get_slots(layer.kernel)[1])


def test_save_weights_and_load_weights_into_a_new_model(tmp_path, rng):
    minicnn.set_random_seed(0)
    model, x, y = arch_strided_same(rng)
    fit_quietly(model, x, y)
    model.save_weights(tmp_path / "w.npz")
    other, _, _ = arch_strided_same(rng)  # fresh layer names (conv2d_7, ...)
    assert other.layers[0].name != model.layers[0].name
    other.load_weights(tmp_path / "w.npz")
    np.testing.assert_array_equal(other.predict(x), model.predict(x))
    with pytest.raises(ValueError, match=r"w\.npz holds only weights.*load_weights"):
        models.load_model(tmp_path / "w.npz")
    # Full model files work for load_weights too.
    model.save(tmp_path / "m.npz")
    third, _, _ = arch_strided_same(rng)
    third.load_weights(tmp_path / "m.npz")
    np.testing.assert_array_equal(third.predict(x), model.predict(x))


def test_load_weights_from_another_architecture_fails_clearly(tmp_path, rng):
    model, _, _ = arch_strided_same(rng)
    model.save(tmp_path / "m.npz")
    small = models.Sequential([layers.Conv2D(6, 3, strides=2, padding="same",
                                             input_shape=(11, 9, 2))])
    with pytest.raises(ValueError, match=r"load_weights: .*m\.npz holds weights the model has "
                                         r"no place for.*different architecture"):
        small.load_weights(tmp_path / "m.npz")
    tutorial = tutorial_model()
    with pytest.raises(ValueError, match=r"m\.npz does not fit the model.*kernel must have shape"):
        tutorial.load_weights(tmp_path / "m.npz")


# --------------------------------------------------------------------------------------------
# Writing: exact name, atomic, permissions
# --------------------------------------------------------------------------------------------


def test_save_writes_the_exact_name_atomically(tmp_path, rng):
    model, x, _ = arch_float64_plain_sgd(rng)
    target = tmp_path / "model.weights"  # no .npz suffix is added
    target.write_bytes(b"an older file")
    model.save(target)
    assert sorted(os.listdir(tmp_path)) == ["model.weights"]
    np.testing.assert_array_equal(models.load_model(target).predict(x), model.predict(x))
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(target).st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_failed_save_leaves_the_old_file_and_no_temporary(tmp_path, rng, monkeypatch):
    model, _, _ = arch_float64_plain_sgd(rng)
    target = tmp_path / "m.npz"
    target.write_bytes(b"old")

    def broken_savez(file, **arrays):
        file.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        model.save(target)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.npz"]


def test_save_into_a_missing_folder_or_onto_a_folder_fails_clearly(tmp_path, rng):
    model, _, _ = arch_float64_plain_sgd(rng)
    with pytest.raises(FileNotFoundError, match=r"save: cannot write .*nope.* does not exist"):
        model.save(tmp_path / "nope" / "m.npz")
    with pytest.raises(IsADirectoryError, match="is a folder"):
        model.save(tmp_path)


def test_atomic_write_text(tmp_path):
    with atomic_write(tmp_path / "a.json", "w") as f:
        json.dump({"ü": 1}, f)
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == {"ü": 1}
    with pytest.raises(RuntimeError), atomic_write(tmp_path / "a.json", "w") as f:
        f.write("{broken")
        raise RuntimeError("stop")
    assert json.loads((tmp_path / "a.json").read_text(encoding="utf-8")) == {"ü": 1}
    assert os.listdir(tmp_path) == ["a.json"]


# --------------------------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    """(path, model, x): a small trained model (Adam state included) saved to tmp_path."""
    rng = np.random.default_rng(11)
    model = models.Sequential([
        layers.Conv2D(2, 3, padding="same", activation="relu", input_shape=(5, 5, 1)),
        layers.Flatten(),
        layers.Dense(3, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = rng.random((6, 5, 5, 1), dtype=np.float32)
    model.fit(x, rng.integers(0, 3, 6), verbose=0)
    path = tmp_path / "saved.npz"
    model.save(path)
    return path, model, x


def rewrite(path, change):
    """Load the file's arrays and header, let change(arrays, header) edit them, write back."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    header = json.loads(arrays.pop("__minicnn_header__").tobytes())
    change(arrays, header)
    if header is not None:
        arrays["__minicnn_header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def expect_clear_error(path, pattern):
    """load_model(path) raises ValueError whose message names the file and matches pattern."""
    with pytest.raises(ValueError) as info:
        models.load_model(path)
    message = str(info.value)
    assert message.startswith("load_model: ") and str(path) in message, message
    assert re.search(pattern, message), message
    return message


@pytest.mark.parametrize("keep", [0, 1, 30, 0.5, -1, -22, -100])
def test_truncated_files_are_rejected(saved, keep):
    path, _, _ = saved
    data = path.read_bytes()
    cut = keep if isinstance(keep, int) else int(len(data) * keep)
    path.write_bytes(data[:cut])
    expect_clear_error(path, r"not a readable minicnn model file.*truncated or corrupted")


def test_every_flipped_byte_is_rejected_or_harmless(saved):
    """Flip each byte of the file in turn (every 3rd byte, and every byte of the zip directory
    at the end). Each result must either load into the same model (the byte was metadata such
    as a timestamp) or raise a ValueError naming the file; never another exception, and never
    a model with different weights (the zip CRC-32 covers every array)."""
    path, model, x = saved
    original = path.read_bytes()
    expected = model.predict(x)
    positions = sorted(set(range(0, len(original), 3)) | set(range(len(original) - 600,
                                                                   len(original))))
    outcomes = {"same": 0, "rejected": 0}
    for position in positions:
        corrupted = bytearray(original)
        corrupted[position] ^= 0xFF
        path.write_bytes(bytes(corrupted))
        try:
            loaded = models.load_model(path)
        except ValueError as exc:
            assert str(path) in str(exc), (position, exc)
            outcomes["rejected"] += 1
            continue
        np.testing.assert_array_equal(loaded.predict(x), expected, err_msg=f"byte {position}")
        assert_same_weights(loaded, model)
        outcomes["same"] += 1
    # Most bytes are covered by a CRC or structural checks; timestamps and the like are not.
    assert outcomes["rejected"] > 0.7 * len(positions), outcomes
    assert outcomes["same"] > 0, outcomes


@pytest.mark.parametrize("content, pattern", [
    (b"", r"not a readable minicnn model file \(it is empty, 0 bytes\)"),
    (b"hello, this is a text file\n" * 20, r"does not start like a .npz archive: b'hello,'"),
    (b"\x89PNG\r\n\x1a\n" + bytes(200), r"does not start like a .npz archive"),
], ids=["empty", "text", "png"])
def test_files_that_are_not_npz_are_rejected(tmp_path, content, pattern):
    path = tmp_path / "model.npz"
    path.write_bytes(content)
    expect_clear_error(path, pattern)


def test_single_npy_array_is_rejected(tmp_path):
    path = tmp_path / "model.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros((2, 3)))
    expect_clear_error(path, r"single NumPy array \(.npy\), not a minicnn model")


class _Boom:
    """Unpickling this would create the file named in `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_content_is_never_unpickled(tmp_path, saved):
    marker = tmp_path / "code-ran"
    # 1) the whole file a pickle
    path = tmp_path / "pickle.npz"
    path.write_bytes(pickle.dumps(_Boom(str(marker))))
    expect_clear_error(path, "does not start like a .npz archive")
    # 2) an object array inside an otherwise valid model file
    model_path, _, _ = saved
    boom = np.empty(1, dtype=object)
    boom[0] = _Boom(str(marker))
    rewrite(model_path, lambda arrays, header: arrays.update(
        {"layers/000_x/kernel": boom}))
    expect_clear_error(model_path, "pickled Python objects, which minicnn never loads")
    assert not marker.exists()


def test_npz_without_minicnn_header_is_rejected(tmp_path):
    path = tmp_path / "weights.npz"
    np.savez(path, a=np.zeros(3))
    expect_clear_error(path, r"not a minicnn model \(it has no minicnn header\)")


@pytest.mark.parametrize("version", [3, 99, 0, "1", None, True])
def test_unknown_format_versions_are_rejected(saved, version):
    path, _, _ = saved

    def change(arrays, header):
        if version is None:
            del header["version"]
        else:
            header["version"] = version

    rewrite(path, change)
    message = expect_clear_error(path, rf"format version {version!r}.*reads versions 1 to 2")
    assert "Upgrade minicnn" in message


def test_corrupted_header_is_rejected(saved):
    path, _, _ = saved

    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["__minicnn_header__"] = np.frombuffer(b"\xff\xfe{not json", np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    expect_clear_error(path, "corrupted header")
    arrays["__minicnn_header__"] = np.frombuffer(b"[" * 100000, np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    expect_clear_error(path, "corrupted header")
    arrays["__minicnn_header__"] = np.frombuffer(b'{"format": "keras"}', np.uint8)
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    expect_clear_error(path, "is not a minicnn model file")


def _drop_weight(arrays, header):
    del arrays[next(k for k in arrays if k.endswith("/kernel"))]


def _reshape_weight(arrays, header):
    key = next(k for k in arrays if k.startswith("layers/002") and k.endswith("/kernel"))
    arrays[key] = arrays[key][:-1]


def _nan_weight(arrays, header):
    key = next(k for k in arrays if k.endswith("/bias"))
    arrays[key] = arrays[key].copy()
    arrays[key][0] = np.nan


def _int_weight(arrays, header):
    key = next(k for k in arrays if k.endswith("/bias"))
    arrays[key] = arrays[key].astype(np.int32)


def _unknown_layer(arrays, header):
    header["config"]["layers"][1]["class_name"] = "os.system"


def _bad_layer_argument(arrays, header):
    header["config"]["layers"][0]["config"]["filters"] = "many"


def _unexpected_layer_argument(arrays, header):
    header["config"]["layers"][0]["config"]["exec"] = "print(1)"


def _config_not_a_dict(arrays, header):
    header["config"] = "Sequential"


def _unknown_optimizer(arrays, header):
    header["compile"]["optimizer"]["name"] = "nadam"


def _bad_optimizer_argument(arrays, header):
    header["compile"]["optimizer"]["learning_rate"] = -1


def _unknown_loss(arrays, header):
    header["compile"]["loss"] = {"name": "hinge"}


def _first_slot(arrays, suffix):
    return next(key for key in sorted(arrays) if key.startswith("optimizer/")
                and key.endswith(suffix))


def _slot_wrong_shape(arrays, header):
    key = _first_slot(arrays, "/kernel/1")
    arrays[key] = arrays[key][..., :1]


def _slot_missing(arrays, header):
    del arrays[_first_slot(arrays, "/bias/0")]


def _slot_count_wrong(arrays, header):
    header["optimizer_state"]["slots"] = [2, 2]


def _slot_for_unknown_weight(arrays, header):
    header["optimizer_state"]["slots"]["nope/kernel"] = 2


def _iterations_bad(arrays, header):
    header["optimizer_state"]["iterations"] = -5


def _state_missing(arrays, header):
    header["optimizer_state"] = None


CORRUPTIONS = [
    (_drop_weight, r"lacks the array 'layers/000_.*/kernel'"),
    (_reshape_weight, r"does not fit the model.*kernel must have shape \(50, 3\), got \(49, 3\)"),
    (_nan_weight, r"does not fit the model: 'layers/.*/bias' contains NaN or inf values "
                  r"\(1 of \d+\): the model's training diverged"),
    (_int_weight, r"stores 'layers/.*/bias' as int32; weights are floats"),
    (_unknown_layer, r"invalid architecture.*unknown layer class 'os.system'"),
    (_bad_layer_argument, r"invalid architecture.*filters must be an int >= 1, got str"),
    (_unexpected_layer_argument, r"invalid architecture.*TypeError.*exec"),
    (_config_not_a_dict, r"invalid architecture"),
    (_unknown_optimizer, r"invalid compile settings.*nadam"),
    (_bad_optimizer_argument, r"invalid compile settings.*learning_rate must be"),
    (_unknown_loss, r"invalid compile settings.*hinge"),
    (_slot_wrong_shape, r"optimizer state 'optimizer/conv2d.*/kernel/1' of shape \(3, 3, 1, 1\)"),
    (_slot_missing, r"lacks the array 'optimizer/.*/bias/0'"),
    (_slot_count_wrong, r"invalid optimizer state description \[2, 2\]"),
    (_slot_for_unknown_weight, r"optimizer state for unknown weights \['nope/kernel'\]"),
    (_iterations_bad, r"invalid optimizer step count -5"),
    (_state_missing, r"compile settings but no optimizer state"),
]


@pytest.mark.parametrize("change, pattern", CORRUPTIONS,
                         ids=[change.__name__.strip("_") for change, _ in CORRUPTIONS])
def test_inconsistent_contents_are_rejected(saved, change, pattern):
    path, _, _ = saved
    rewrite(path, change)
    expect_clear_error(path, pattern)


def test_version_1_files_with_positional_optimizer_state_still_load(saved):
    """Files from before slots were keyed by weight path: slot i belonged to trainable
    parameter i. They load with every moment on its own weight."""
    path, model, x = saved
    paths = [f"{layer.name}/{name}" for layer in model.layers for name in layer.params]

    def to_version_1(arrays, header):
        for i, weight_path in enumerate(paths):
            for j in (0, 1):
                arrays[f"optimizer/{i:04d}/{j}"] = arrays.pop(f"optimizer/{weight_path}/{j}")
        header["version"] = 1
        header["optimizer_state"]["slots"] = [2] * len(paths)

    rewrite(path, to_version_1)
    loaded = models.load_model(path)
    for param, loaded_param in zip(model.weights, loaded.weights, strict=True):
        for a, b in zip(model.optimizer.get_slots(param), loaded.optimizer.get_slots(loaded_param),
                        strict=True):
            np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"load_model: no such file: .*absent\.npz"):
        models.load_model(tmp_path / "absent.npz")
    with pytest.raises(FileNotFoundError, match="is a folder, not a file"):
        models.load_model(tmp_path)


def test_zip_with_unsupported_compression_is_rejected(saved):
    """A member whose compression method Python's zipfile cannot read (zipfile raises
    NotImplementedError) is reported like any other damage."""
    path, _, _ = saved
    raw = bytearray(path.read_bytes())
    entry = raw.index(b"PK\x01\x02")  # first central-directory entry
    raw[entry + 10:entry + 12] = (99).to_bytes(2, "little")  # its compression method
    path.write_bytes(bytes(raw))
    expect_clear_error(path, "not a readable.*NotImplementedError")


from hardening_fixtures import traced_peak  # noqa: E402

# --------------------------------------------------------------------------------------------
# Issue 12: memory bounded by the file, hostile members, non-finite weights, awkward names and
# file systems that refuse the write
# --------------------------------------------------------------------------------------------


def _zero_member(zf, name, count):
    """Add a deflated .npy member of `count` float32 zeros: it compresses about 1000:1."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (count,)})
    with zf.open(name, "w", force_zip64=True) as member:
        member.write(header.getvalue())
        chunk = bytes(1 << 22)
        for start in range(0, 4 * count, len(chunk)):
            member.write(chunk[:min(len(chunk), 4 * count - start)])
    assert zf.getinfo(name).compress_type == zipfile.ZIP_DEFLATED


def test_inflation_bomb_member_is_refused_before_inflating(saved, tmp_path):
    # Before: every member was inflated before the header was read (1.1 GB for a 1 MB file).
    import zipfile

    path, _, _ = saved
    bomb = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        _zero_member(dst, "layers/000_x/extra.npy", 64 << 20)  # 256 MB of zeros
    assert bomb.stat().st_size < 2_000_000
    error, peak = traced_peak(lambda: models.load_model(bomb))
    assert isinstance(error, ValueError), error
    assert re.search(r"claims 268,435,5\d\d bytes from [\d,]+ compressed bytes", str(error))
    assert peak < 20e6, peak


def test_header_declaring_a_huge_layer_is_refused_before_building(saved):
    # Before: the architecture was built and initialised (2.3 GB for Dense(3,000,000)) before
    # the weights' shapes were compared.
    path, _, _ = saved
    rewrite(path, lambda arrays, header: header["config"]["layers"][2]["config"].update(
        units=3_000_000))
    error, peak = traced_peak(lambda: models.load_model(path))
    assert isinstance(error, ValueError), error
    assert re.search(r"does not fit the model: Dense '.*': kernel must have shape "
                     r"\(50, 3000000\), got \(50, 3\)", str(error)), error
    assert peak < 20e6, peak


def test_a_member_that_is_not_npy_is_a_clear_error(saved, tmp_path):
    # Before: np.load returned raw bytes and load_model ended in an AttributeError.
    import zipfile

    path, _, _ = saved
    other = tmp_path / "other.npz"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(other, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            name = info.filename
            if name.startswith("layers/000") and name.endswith("kernel.npy"):
                name, data = name[:-4], b"not an array"
            dst.writestr(name, data)
    expect_clear_error(other, r"holds a member 'layers/000_.*/kernel' that is not a NumPy "
                              r"array \(.npy\)")
    # An .npy name over bytes that are not an .npy array
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(other, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("layers/000") and info.filename.endswith("bias.npy"):
                data = b"\x93NUMPY garbage"
            dst.writestr(info.filename, data)
    expect_clear_error(other, r"member 'layers/000_.*/bias.npy' is not a readable .npy array")


def test_header_too_large_and_too_many_layers_are_refused(saved):
    path, _, _ = saved
    rewrite(path, lambda arrays, header: header["config"].update(
        layers=[{"class_name": "Flatten", "config": {}}] * 20_000))
    error, peak = traced_peak(lambda: models.load_model(path))
    assert re.search(r"invalid architecture.*20,000 layers, more than the 10,000", str(error))
    assert peak < 20e6, peak


def test_save_refuses_non_finite_weights_unless_asked(tmp_path, rng):
    # Before: a model whose training blew up saved without a word.
    model, x, _ = arch_float64_plain_sgd(rng)
    model.layers[-1].params["kernel"][0, 0] = np.nan
    target = tmp_path / "m.npz"
    with pytest.raises(ValueError, match=r"save: Dense '.*' kernel holds 1 NaN or inf value "
                                         r"\(of \d+\): the model's training diverged.*"
                                         "allow_non_finite=True"):
        model.save(target)
    assert not target.exists() and os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="save_weights: Dense"):
        model.save_weights(target)
    model.save(target, allow_non_finite=True)
    expect_clear_error(target, r"'layers/003_.*/kernel' contains NaN or inf values \(1 of \d+\)"
                               ": the model's training diverged")
    with np.load(target) as arrays:  # the promised way to inspect it
        assert np.isnan(arrays[next(k for k in arrays.files if "003" in k and "kernel" in k)]
                        ).sum() == 1


def test_huge_but_finite_weights_save_and_load(tmp_path, rng):
    # Finite weights are the model's own business; outputs that overflow are reported by
    # predict's callers (see test_cli and test_server).
    model, x, _ = arch_float64_plain_sgd(rng)
    model.set_weights([np.full_like(w, 1e30) for w in model.get_weights()])
    model.save(tmp_path / "m.npz")
    assert_same_weights(models.load_model(tmp_path / "m.npz"), model)


def test_255_character_file_name_saves(tmp_path, rng):
    # Before: the temporary name ('.<name>.<random>.tmp') was over the 255-byte limit.
    model, x, _ = arch_float64_plain_sgd(rng)
    for name in ("m" * 251 + ".npz", "ü" * 125 + ".npz"):  # 255 bytes, ASCII and UTF-8
        assert len(os.fsencode(name)) <= 255
        model.save(tmp_path / name)
        np.testing.assert_array_equal(models.load_model(tmp_path / name).predict(x),
                                      model.predict(x))
    with pytest.raises(OSError, match=r"save: cannot write .*: the file name is too long"):
        model.save(tmp_path / ("m" * 300 + ".npz"))
    assert len(os.listdir(tmp_path)) == 2


@pytest.mark.parametrize("errno_name, words", [
    ("EROFS", "the file system is read-only; choose a folder on a writable disk"),
    ("ENOSPC", "the disk is full; free some space or choose another disk"),
    ("EACCES", "permission denied; choose a folder you can write to"),
])
@pytest.mark.parametrize("stage", ["create", "fsync"])
def test_file_system_refusals_name_the_file_not_the_temporary(tmp_path, rng, monkeypatch,
                                                               errno_name, words, stage):
    import errno

    from minicnn.saving import FileWriteError

    model, _, _ = arch_float64_plain_sgd(rng)
    target = tmp_path / "m.npz"
    code = getattr(errno, errno_name)
    real_open, real_fsync = os.open, os.fsync

    def refusing_open(name, *args, **kwargs):
        if stage == "create" and str(tmp_path) in os.fspath(name):
            raise OSError(code, os.strerror(code), os.fspath(name))
        return real_open(name, *args, **kwargs)

    def refusing_fsync(fd):
        if stage == "fsync":
            raise OSError(code, os.strerror(code))
        return real_fsync(fd)

    monkeypatch.setattr(os, "open", refusing_open)
    monkeypatch.setattr(os, "fsync", refusing_fsync)
    with pytest.raises(FileWriteError) as info:
        model.save(target)
    assert str(info.value) == f"save: cannot write {target}: {words}."
    assert info.value.errno == code and ".tmp" not in str(info.value)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == []


def test_temporaries_of_a_killed_save_are_removed_by_the_next_save(tmp_path, rng):
    # Before: kill -9 during a save left '.m.npz.xxxx.tmp' for ever.
    import signal
    import subprocess
    import sys

    target = tmp_path / "m.npz"
    script = (
        "import os, signal, sys\n"
        "import numpy as np\n"
        "from minicnn import layers, models\n"
        "m = models.Sequential([layers.Dense(3, input_shape=(4,))])\n"
        "def killed(f, **arrays):\n"
        "    f.write(b'half a model'); f.flush(); os.kill(os.getpid(), signal.SIGKILL)\n"
        "np.savez = killed\n"
        "m.save(sys.argv[1])\n")
    result = subprocess.run([sys.executable, "-c", script, str(target)], timeout=120)
    assert result.returncode == -signal.SIGKILL
    leftovers = [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
    assert len(leftovers) == 1 and leftovers[0].startswith(".m.npz.")
    # A temporary of a live process saving the same name at this moment stays.
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".m.npz.{sleeper.pid}.0123abcd.tmp"
        live.write_bytes(b"being written")
        model, _, _ = arch_float64_plain_sgd(rng)
        model.save(target)
        assert sorted(os.listdir(tmp_path)) == sorted(["m.npz", live.name])
    finally:
        sleeper.kill()
        sleeper.wait()
    model.save(target)
    assert os.listdir(tmp_path) == ["m.npz"]


def test_a_slash_in_a_layer_name_is_refused_when_the_layer_is_made():
    with pytest.raises(ValueError, match="contains '/', which weight paths use"):
        layers.Dense(2, name="a/b")


@pytest.mark.parametrize("name", ["a\x00b", "x" * 70_000, "..\\..\\etc passwd", "ünï code é"],
                         ids=["nul", "70k", "path", "unicode"])
def test_any_layer_name_round_trips(tmp_path, name):
    # Before: a NUL made a file load_model refused; 70,000 characters ended in struct.error.
    model = models.Sequential([layers.Dense(2, input_shape=(3,), name=name),
                               layers.Dense(2, name=name + "2")])
    model.save(tmp_path / "m.npz")
    loaded = models.load_model(tmp_path / "m.npz")
    assert [layer.name for layer in loaded.layers] == [name, name + "2"]
    assert_same_weights(loaded, model)
    assert os.listdir(tmp_path) == ["m.npz"]


def test_weight_shapes_match_what_build_creates():
    """layer.weight_shapes(input_shape) is what load_model checks files against without
    building: it must equal the shapes build() gives params, for every layer kind."""
    cases = [
        (layers.Conv2D(4, (3, 2), strides=2, padding="same"), (9, 7, 3)),
        (layers.Conv2D(2, 3, use_bias=False), (5, 5, 1)),
        (layers.Dense(5), (7,)), (layers.Dense(1, use_bias=False), (3,)),
        (layers.Dense(3), (4, 4)),  # on the last axis, as Keras
        (layers.MaxPooling2D(2), (4, 4, 2)), (layers.Flatten(), (2, 3)),
        (layers.ReLU(), (3,)), (layers.Softmax(), (4,)), (layers.Activation("tanh"), (2, 2)),
    ]
    for layer, shape in cases:
        shapes = layer.weight_shapes((None, *shape))
        layer.build((None, *shape))
        assert shapes == {k: v.shape for k, v in layer.params.items()}, layer
        assert list(shapes) == list(layer.params)
    with pytest.raises(ValueError, match="kernel_size .* is bigger than the input"):
        layers.Conv2D(3, 5).weight_shapes((None, 3, 3, 1))


def test_a_zip_member_with_an_empty_name_is_a_clear_error(saved):
    # Found by the property tests: zipfile's ZipInfo.is_dir() raised IndexError on it.
    path, _, _ = saved
    raw = bytearray(path.read_bytes())
    entry = raw.index(b"PK\x01\x02")  # first central-directory entry: make its name length 0
    name_length = int.from_bytes(raw[entry + 28:entry + 30], "little")
    raw[entry + 28:entry + 30] = bytes(2)
    del raw[entry + 46:entry + 46 + name_length]
    end = raw.rindex(b"PK\x05\x06")
    size = int.from_bytes(raw[end + 12:end + 16], "little") - name_length
    raw[end + 12:end + 16] = size.to_bytes(4, "little")
    path.write_bytes(bytes(raw))
    expect_clear_error(path, "not a NumPy array|not a readable")


def test_an_absurd_optimizer_slot_count_fails_at_once(saved):
    # Found by the property tests: a slot count of 2^63 made load_model loop for ever.
    path, _, _ = saved

    def change(arrays, header):
        first = next(iter(header["optimizer_state"]["slots"]))
        header["optimizer_state"]["slots"][first] = 2**63

    rewrite(path, change)
    expect_clear_error(path, r"lacks the array 'optimizer/.*/2'")


def test_a_first_layer_input_shape_that_disagrees_with_the_build_shape_is_refused(saved):
    # Found by the property tests: the weights were checked for build_input_shape, but
    # Sequential.from_config builds from the first layer's input_shape (here a Dense kernel
    # of 464 GB).
    path, _, _ = saved
    rewrite(path, lambda arrays, header: header["config"]["layers"][0]["config"].update(
        input_shape=[10**6, 10**6, 1]))
    error, peak = traced_peak(lambda: models.load_model(path))
    assert isinstance(error, ValueError) and str(path) in str(error)
    assert "differs from the model's build_input_shape" in str(error), error
    assert peak < 20e6, peak
