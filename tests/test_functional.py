"""The functional API: keras.Model(inputs, outputs) over any graph of layer calls.

Held to: finite differences through forks, skip connections and shared layers (float64); the
same training split over threads as in one; save/load; ONNX Runtime; the errors a learner
meets (merge shapes, a disconnected graph, an unused input); Sequential built by the same calls.
"""

import numpy as np
import pytest
from conftest import distinct_values

import minicnn
from minicnn import gradcheck, layers, models, parallel
from minicnn.functional import Input, KerasTensor
from minicnn.models import Model


def residual_model(dtype=None, classes=3):
    inputs = Input(shape=(8, 8, 2), dtype=dtype)
    x = layers.Conv2D(4, 3, padding="same", activation="relu", dtype=dtype)(inputs)
    y = layers.Conv2D(4, 3, padding="same", dtype=dtype)(x)
    x = layers.Activation("relu", dtype=dtype)(layers.Add(dtype=dtype)([x, y]))  # skip
    x = layers.MaxPooling2D(2, dtype=dtype)(x)
    x = layers.Flatten(dtype=dtype)(x)
    outputs = layers.Dense(classes, activation="softmax", dtype=dtype)(x)
    return Model(inputs, outputs, name="residual")


def test_model_of_inputs_and_outputs_is_functional_and_runs_like_the_layers(rng):
    model = residual_model()
    assert type(model).__name__ == "Functional" and model.name == "residual"
    assert model.input_shape == (None, 8, 8, 2) and model.output_shape == (None, 3)
    assert type(model.layers[0]).__name__ == "InputLayer"  # as Keras lists them
    x = rng.random((5, 8, 8, 2)).astype(np.float32)
    conv1, conv2, act, add = model.layers[1], model.layers[2], model.layers[4], model.layers[3]
    assert type(add).__name__ == "Add" and type(act).__name__ == "Activation"
    a = conv1(x)
    expected = model.layers[-1](model.layers[-2](model.layers[-3](np.maximum(a + conv2(a), 0))))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, rtol=1e-5, atol=1e-7)


def test_residual_block_gradcheck_sums_gradients_at_the_fork(rng):
    model = residual_model("float64")
    model.compile(loss="sparse_categorical_crossentropy")
    errors = gradcheck(model, distinct_values((3, 8, 8, 2), rng), y=np.array([0, 2, 1]),
                       num_checks=30)
    assert set(errors) == {"x", *(path for path, _ in model.named_weights())}
    assert max(errors.values()) < 1e-6, errors


def test_a_layer_used_twice_shares_its_weights_and_sums_its_gradients(rng):
    shared = layers.Dense(4, activation="tanh", dtype="float64")
    a, b = Input(shape=(4,), dtype="float64"), Input(shape=(4,), dtype="float64")
    merged = layers.Concatenate(dtype="float64")([shared(a), shared(shared(b))])
    model = Model([a, b], layers.Dense(2, dtype="float64")(merged))
    assert len(shared._inbound_nodes) == 3 and len(model.weights) == 4
    x = [distinct_values((3, 4), rng), distinct_values((3, 4), rng)]
    y_pred, tape = model.forward(x, training=True, input_grads=True)
    dy = rng.standard_normal(y_pred.shape)
    grads, dxs = model.backward(dy, tape, return_input_grads=True)

    def objective():
        return float(np.sum(model.predict(x, verbose=0) * dy))

    for weight, grad in zip(model.trainable_weights, grads, strict=True):
        numeric = np.zeros_like(weight)
        for index in np.ndindex(weight.shape):
            original = weight[index]
            weight[index] = original + 1e-6
            plus = objective()
            weight[index] = original - 1e-6
            numeric[index] = (plus - objective()) / 2e-6
            weight[index] = original
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)
    assert dxs[0].shape == (3, 4) and dxs[1].shape == (3, 4)


def test_several_inputs_and_outputs_fit_evaluate_predict(rng):
    image = Input(shape=(6, 6, 1), name="image")
    extra = Input(shape=(3,), name="extra")
    features = layers.Flatten()(layers.Conv2D(2, 3, activation="relu")(image))
    joined = layers.Concatenate()([features, layers.Dense(4, activation="relu")(extra)])
    kind = layers.Dense(3, activation="softmax", name="kind")(joined)
    odd = layers.Dense(2, activation="softmax", name="odd")(joined)
    model = Model([image, extra], [kind, odd])
    model.compile(optimizer="adam", loss={"kind": "sparse_categorical_crossentropy",
                                          "odd": "sparse_categorical_crossentropy"},
                  loss_weights=[1.0, 0.5], metrics=["accuracy"])
    n = 64
    x = [rng.random((n, 6, 6, 1)).astype(np.float32), rng.random((n, 3)).astype(np.float32)]
    y = [rng.integers(0, 3, n), rng.integers(0, 2, n)]
    history = model.fit(x, y, epochs=2, batch_size=16, validation_split=0.25, verbose=0)
    assert set(history.history) == {
        "loss", "kind_loss", "odd_loss", "kind_accuracy", "odd_accuracy",
        *(f"val_{k}" for k in ("loss", "kind_loss", "odd_loss", "kind_accuracy",
                               "odd_accuracy"))}
    logs = model.evaluate(x, y, verbose=0, return_dict=True)
    assert logs["loss"] == pytest.approx(logs["kind_loss"] + 0.5 * logs["odd_loss"], rel=1e-5)
    kind_pred, odd_pred = model.predict(x, verbose=0)
    assert kind_pred.shape == (n, 3) and odd_pred.shape == (n, 2)
    by_name = model.predict({"image": x[0], "extra": x[1]}, verbose=0)
    np.testing.assert_array_equal(by_name[0], kind_pred)
    with pytest.raises(ValueError, match=r"has 2 inputs \['image', 'extra'\]"):
        model.predict(x[0], verbose=0)


def test_feature_extraction_from_a_trained_model(rng):
    """keras.Model(inputs=model.inputs, outputs=model.layers[k].output), as keras.io does."""
    minicnn.set_random_seed(0)
    seq = models.Sequential([layers.Conv2D(3, 3, activation="relu", input_shape=(8, 8, 1)),
                             layers.MaxPooling2D(2), layers.Flatten(),
                             layers.Dense(2, activation="softmax")])
    x = rng.random((4, 8, 8, 1)).astype(np.float32)
    extractor = Model(inputs=seq.inputs, outputs=seq.layers[1].output)
    np.testing.assert_array_equal(extractor.predict(x, verbose=0),
                                  seq.layer_outputs(x, [seq.layers[1].name])[seq.layers[1].name])
    both = Model(seq.inputs, [layer.output for layer in seq.layers[:2]])
    first, second = both.predict(x, verbose=0)
    assert first.shape == (4, 6, 6, 3) and second.shape == (4, 3, 3, 3)


def test_a_model_is_a_layer_of_another_model(rng):
    minicnn.set_random_seed(1)
    base = models.Sequential([layers.Conv2D(3, 3, activation="relu", input_shape=(8, 8, 1)),
                              layers.Flatten()], name="base")
    head = models.Sequential([base, layers.Dense(2, activation="softmax")])
    assert head.layers[0].model is base and head.layers[0].name == "base"
    inputs = Input(shape=(8, 8, 1))
    outputs = layers.Dense(2, activation="softmax")(base(inputs))
    functional = Model(inputs, outputs)
    x, y = rng.random((32, 8, 8, 1)).astype(np.float32), rng.integers(0, 2, 32)
    for model in (head, functional):
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        kernel = base.layers[0].kernel.copy()
        model.fit(x, y, epochs=1, batch_size=8, verbose=0)
        assert not np.array_equal(base.layers[0].kernel, kernel)  # the inner model trains
    base.trainable = False  # transfer learning: freeze the base
    kernel = base.layers[0].kernel.copy()
    dense_kernel = head.layers[1].kernel.copy()
    head.fit(x, y, epochs=1, batch_size=8, verbose=0)
    np.testing.assert_array_equal(base.layers[0].kernel, kernel)
    assert not np.array_equal(head.layers[1].kernel, dense_kernel)
    lines = []
    head.summary(print_fn=lines.append)
    assert any("base (Sequential)" in line for line in lines)


def test_nested_model_gradcheck(rng):
    base = models.Sequential([layers.Conv2D(2, 3, activation="tanh", input_shape=(6, 6, 1)),
                              layers.Flatten()], dtype="float64", name="inner")
    model = models.Sequential([base, layers.Dense(3, activation="softmax")], dtype="float64")
    model.compile(loss="sparse_categorical_crossentropy")
    errors = gradcheck(model, distinct_values((3, 6, 6, 1), rng), y=np.array([0, 1, 2]))
    assert max(errors.values()) < 1e-6, errors
    assert "inner/conv2d" in "".join(errors) or any("inner/" in k for k in errors)


def test_split_over_threads_equals_one_thread(rng, monkeypatch):
    monkeypatch.setattr(parallel, "MIN_FLOPS_PER_SHARD", 0)
    x, y = rng.random((32, 8, 8, 2)).astype(np.float32), rng.integers(0, 3, 32)
    weights = []
    for threads in ("1", "2"):
        monkeypatch.setenv("MINICNN_THREADS", threads)
        minicnn.set_random_seed(3)
        model = residual_model()
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(x, y, epochs=2, batch_size=16, verbose=0)
        weights.append(model.get_weights())
    for a, b in zip(*weights, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_save_load_and_continue_a_functional_model(rng, tmp_path):
    base = models.Sequential([layers.Dense(4, activation="relu", input_shape=(5,))],
                             name="trunk")
    a = Input(shape=(5,))
    b = Input(shape=(5,))
    merged = layers.Average()([base(a), base(b)])
    out = layers.Dense(2, activation="softmax")(layers.Maximum()([merged, base(a)]))
    model = Model([a, b], out)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x, y = [rng.random((24, 5)), rng.random((24, 5))], rng.integers(0, 2, 24)
    minicnn.set_random_seed(4)
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    model.save(tmp_path / "f.npz")
    loaded = models.load_model(tmp_path / "f.npz")
    assert type(loaded).__name__ == "Functional"
    assert loaded.get_config() == model.get_config()
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    for m in (model, loaded):
        minicnn.set_random_seed(5)
        m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    for p, q in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(p, q)


def test_onnx_runtime_runs_a_residual_model(rng, tmp_path):
    import onnxruntime

    from minicnn import export
    model = residual_model()
    x = rng.random((7, 8, 8, 2)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(export.to_onnx(model, tmp_path / "r.onnx")))
    np.testing.assert_allclose(session.run(None, {"input": x})[0], model.predict(x, verbose=0),
                               atol=1e-6)


def test_summary_has_keras_connected_to_column():
    model = residual_model()
    lines = []
    model.summary(print_fn=lines.append)
    text = "\n".join(lines)
    assert "Connected to" in text
    add = model.layers[3]
    conv_names = [model.layers[1].name, model.layers[2].name]
    row = next(line for line in lines if f"{add.name} (Add)" in line)
    assert f"{conv_names[0]}[0][0], {conv_names[1]}[0][0]" in row


def test_sequential_is_built_from_the_same_symbolic_calls():
    model = models.Sequential([layers.Dense(3, input_shape=(4,)), layers.Dense(2)])
    assert isinstance(model.inputs[0], KerasTensor) and model.outputs[0] is model.layers[1].output
    start = Input(shape=(4,))
    seq = models.Sequential([start, layers.Dense(3)])
    assert seq.inputs[0] is start and seq.output_shape == (None, 3)


# -- errors a learner meets -----------------------------------------------------------------


def test_merge_of_mismatched_shapes_names_the_layer_and_the_fix():
    inputs = Input(shape=(8, 8, 3))
    x = layers.Conv2D(16, 3, padding="same")(inputs)
    with pytest.raises(ValueError, match=r"Add 'add_bad'.*\(None, 8, 8, 16\), \(None, 8, 8, 3\)"
                                         r".*1x1 Conv2D"):
        layers.Add(name="add_bad")([x, inputs])
    with pytest.raises(ValueError, match="call it on a list of tensors"):
        layers.Add()(x)


def test_disconnected_graph_and_unused_input_are_clear_errors():
    a, b = Input(shape=(3,), name="a"), Input(shape=(3,), name="b")
    out = layers.Dense(2)(layers.Add()([a, b]))
    with pytest.raises(ValueError, match=r"graph disconnected.*needs b .*Pass it in inputs"):
        Model(a, out)
    with pytest.raises(ValueError, match=r"input c \(None, 3\) is not connected to any output"):
        Model([a, b, Input(shape=(3,), name="c")], out)


def test_calling_a_layer_on_arrays_runs_it_eagerly_and_symbolic_tensors_refuse_numpy(rng):
    x = rng.random((2, 3)).astype(np.float32)
    layer = layers.Dense(2)
    assert layer(x).shape == (2, 2)  # eager, as Keras
    added = layers.Add()([x, x])
    np.testing.assert_array_equal(added, 2 * x)
    with pytest.raises(TypeError, match="is symbolic"):
        np.asarray(Input(shape=(3,)))
    with pytest.raises(TypeError, match="layers.Add"):
        Input(shape=(3,)) + Input(shape=(3,))


def test_plain_model_without_graph_explains_what_to_do():
    with pytest.raises(TypeError, match=r"keras.Model\(inputs, outputs\)"):
        Model()


# -- .keras files of functional models, with real Keras --------------------------------------


def test_functional_models_round_trip_through_real_keras(rng, tmp_path):
    import os
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras

    trunk = models.Sequential([layers.Dense(4, activation="relu", input_shape=(5,))],
                              name="trunk")
    a, b = Input(shape=(5,), name="a"), Input(shape=(5,), name="b")
    x = layers.Average()([trunk(a), trunk(b)])
    x = layers.Concatenate()([x, layers.Dense(3)(a), layers.Subtract()([trunk(a), x])])
    out = layers.Dense(2, activation="softmax", name="out")(x)
    model = Model([a, b], out, name="two_inputs")
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    xs = [rng.random((20, 5)).astype(np.float32), rng.random((20, 5)).astype(np.float32)]
    model.fit(xs, rng.integers(0, 2, 20), epochs=1, verbose=0)
    model.save(tmp_path / "f.keras")
    theirs = keras.models.load_model(tmp_path / "f.keras")
    ours = model.predict(xs, verbose=0)
    np.testing.assert_allclose(np.asarray(theirs.predict(xs, verbose=0)), ours, atol=1e-6)
    theirs.save(tmp_path / "back.keras")
    back = models.load_model(tmp_path / "back.keras")
    assert type(back).__name__ == "Functional" and back.name == "two_inputs"
    np.testing.assert_array_equal(back.predict(xs, verbose=0), ours)

    # Parallel branches with weights at the same depth: Keras matches weights by its own
    # layer order (by depth from the outputs), which the file must follow.
    x = Input((6, 6, 2))
    a = layers.Conv2D(5, 3, padding="same")(layers.Conv2D(4, 3, padding="same")(x))
    b = layers.Conv2D(5, 3, padding="same")(layers.Conv2D(3, 3, padding="same")(x))
    branches = Model(x, layers.Dense(2, activation="softmax")(
        layers.Flatten()(layers.Add()([a, b]))))
    branches.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    xb = rng.random((8, 6, 6, 2)).astype(np.float32)
    branches.fit(xb, rng.integers(0, 2, 8), verbose=0)
    branches.save(tmp_path / "branches.keras")
    np.testing.assert_allclose(
        np.asarray(keras.models.load_model(tmp_path / "branches.keras").predict(xb, verbose=0)),
        branches.predict(xb, verbose=0), atol=1e-6)
    seq = models.Sequential([Input(shape=(3,), name="images"), layers.Dense(2)])
    seq.save(tmp_path / "named.keras")
    assert keras.models.load_model(tmp_path / "named.keras").layers[0].name != "input_layer" or \
        keras.models.load_model(tmp_path / "named.keras").inputs[0].name == "images"

    inputs = keras.Input(shape=(8, 8, 2))
    c = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    s = keras.layers.Add()([c, keras.layers.Conv2D(4, 3, padding="same")(c)])
    flat = keras.layers.Flatten()(keras.layers.MaxPooling2D()(s))
    residual = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(flat))
    residual.save(tmp_path / "res.keras")
    loaded = models.load_model(tmp_path / "res.keras")
    x = rng.random((4, 8, 8, 2)).astype(np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0),
                               np.asarray(residual.predict(x, verbose=0)), atol=1e-6)


def test_a_hostile_functional_keras_file_cannot_make_minicnn_allocate(rng, tmp_path):
    import json
    import zipfile
    inputs = Input(shape=(3,))
    model = Model(inputs, layers.Dense(2, name="big")(inputs))
    model.save(tmp_path / "small.keras")
    with zipfile.ZipFile(tmp_path / "small.keras") as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(members["config.json"])
    config["config"]["layers"][1]["config"]["units"] = 3_000_000_000
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(tmp_path / "hostile.keras", "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    with pytest.raises(ValueError, match="refusing to allocate"):
        models.load_model(tmp_path / "hostile.keras")
