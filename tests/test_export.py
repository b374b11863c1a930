"""ONNX export against the real tools: onnx.checker accepts the graph, ONNX Runtime predicts
what minicnn predicts on 1,000 real MNIST images and on every layer minicnn has; the command
`python -m minicnn export` and its errors."""

import re
import sys

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from interop_fixtures import assert_same_predictions

import minicnn
from minicnn import cli, export, layers, models


def run_onnx(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [output] = session.run(None, {"input": x})
    return output


@pytest.fixture(scope="module")
def trained_npz(trained_tutorial, tmp_path_factory):
    """The trained tutorial model and its .npz file."""
    path = tmp_path_factory.mktemp("onnx") / "mnist_cnn.npz"
    trained_tutorial.save(path)
    return trained_tutorial, path


def test_onnx_runtime_predicts_what_minicnn_predicts_on_mnist(trained_npz, mnist_subset,
                                                               tmp_path):
    model, _ = trained_npz
    _, x_test = mnist_subset
    path = export.to_onnx(model, tmp_path / "m.onnx")
    assert_same_predictions(model.predict(x_test), run_onnx(path, x_test))
    # A batch of one, and an odd batch size: the batch axis is free.
    np.testing.assert_allclose(run_onnx(path, x_test[:1]), model.predict(x_test[:1]), atol=1e-5)
    np.testing.assert_allclose(run_onnx(path, x_test[:77]), model.predict(x_test[:77]),
                               atol=1e-5)


def test_the_graph_is_checked_nhwc_and_states_its_opset(trained_npz, tmp_path):
    model, _ = trained_npz
    export.to_onnx(model, tmp_path / "m.onnx")
    proto = onnx.load(tmp_path / "m.onnx")
    onnx.checker.check_model(proto, full_check=True)
    assert [(o.domain, o.version) for o in proto.opset_import] == [("", export.OPSET)]
    assert export.OPSET == 17 and proto.ir_version == export.IR_VERSION
    [graph_input] = proto.graph.input
    dims = graph_input.type.tensor_type.shape.dim
    assert graph_input.name == "input"
    assert [d.dim_param or d.dim_value for d in dims] == ["N", 28, 28, 1]
    assert graph_input.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    [graph_output] = proto.graph.output
    assert [d.dim_param or d.dim_value for d in graph_output.type.tensor_type.shape.dim] == [
        "N", 10]
    ops = [node.op_type for node in proto.graph.node]
    # One transpose into NCHW before the convolutions, one back before Flatten.
    assert ops == ["Transpose", "Conv", "Relu", "MaxPool", "Conv", "Relu", "MaxPool", "Conv",
                   "Relu", "MaxPool", "Transpose", "Flatten", "Gemm", "Relu", "Gemm",
                   "Softmax", "Identity"]
    assert proto.producer_name == "minicnn"


def every_layer_model():
    """Every layer and option minicnn has: 'same' padding with strides and odd sizes (Keras's
    extra row/column at the bottom/right), no bias, overlapping 'same' pooling, a softmax over
    the channels of a 4-D tensor, elementwise activations in both layouts."""
    return models.Sequential([
        layers.Conv2D(6, 3, strides=2, padding="same", use_bias=False, input_shape=(11, 9, 2)),
        layers.ReLU(),
        layers.MaxPooling2D(3, strides=1, padding="same"),
        layers.Activation("tanh"),
        layers.Conv2D(5, (2, 3), strides=(1, 2), padding="same", activation="sigmoid"),
        layers.Activation("softmax"),
        layers.MaxPooling2D((2, 2), padding="same"),
        layers.Conv2D(4, 1, activation="softmax"),
        layers.Flatten(),
        layers.Dense(7, activation="tanh"),
        layers.Activation("relu"),
        layers.Dense(4, use_bias=False),
        layers.Softmax(),
    ])


def test_every_layer_exports_and_matches(tmp_path, rng):
    minicnn.set_random_seed(3)
    model = every_layer_model()
    x = rng.standard_normal((16, 11, 9, 2)).astype(np.float32)
    path = export.to_onnx(model, tmp_path / "every.onnx")
    np.testing.assert_allclose(run_onnx(path, x), model.predict(x), atol=1e-6)


@pytest.mark.parametrize("build", [
    lambda: models.Sequential([layers.Dense(5, activation="relu", input_shape=(3,)),
                               layers.Dense(2, activation="softmax")]),
    lambda: models.Sequential([layers.Conv2D(3, 2, activation="relu", input_shape=(5, 5, 2))]),
    lambda: models.Sequential([layers.MaxPooling2D(2, input_shape=(4, 6, 3)),
                               layers.Activation("sigmoid")]),
], ids=["dense only", "ends NHWC after a conv", "pool then activation"])
def test_models_of_other_shapes(build, tmp_path, rng):
    model = build()
    x = rng.standard_normal((6, *model.input_shape[1:])).astype(np.float32)
    out = run_onnx(export.to_onnx(model, tmp_path / "m.onnx"), x)
    assert out.shape == (6, *model.output_shape[1:])
    np.testing.assert_allclose(out, model.predict(x), atol=1e-6)


def test_every_minicnn_layer_has_an_onnx_form():
    """A layer added to minicnn.layers must get an OnnxFormat line (see export.py)."""
    missing = {cls.__name__ for cls in layers.layer_classes()} - set(export.ONNX_LAYERS)
    assert not missing, f"add OnnxFormat entries to minicnn/export.py for {missing}"


def test_a_layer_without_onnx_form_is_named(tmp_path):
    class Doubler(layers.Layer):
        def compute_output_shape(self, input_shape):
            return input_shape

        def forward(self, x, training=False):
            return 2 * x

    model = models.Sequential([layers.Flatten(input_shape=(4, 4, 1)), Doubler(name="twice")])
    with pytest.raises(ValueError, match=r"Doubler 'twice' has no ONNX form"):
        export.to_onnx(model, tmp_path / "d.onnx")
    assert not (tmp_path / "d.onnx").exists()


def test_float64_and_unbuilt_models_are_refused(tmp_path):
    model = models.Sequential([layers.Dense(2, input_shape=(3,))], dtype="float64")
    with pytest.raises(ValueError, match="computes in float64; export a float32 model"):
        export.to_onnx(model, tmp_path / "m.onnx")
    with pytest.raises(ValueError, match="not built yet"):
        export.to_onnx(models.Sequential([layers.Dense(2)]), tmp_path / "m.onnx")


# --------------------------------------------------------------------------------------------
# python -m minicnn export
# --------------------------------------------------------------------------------------------


def test_export_command_writes_onnx_keras_and_npz(trained_npz, mnist_subset, tmp_path,
                                                  capsys):
    model, npz = trained_npz
    _, x_test = mnist_subset
    assert cli.main(["export", str(npz), str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert (f"Wrote {tmp_path / 'm.onnx'} (ONNX opset 17, input 'input': float32 "
            "(N, 28, 28, 1)") in out
    np.testing.assert_allclose(run_onnx(tmp_path / "m.onnx", x_test[:50]),
                               model.predict(x_test[:50]), atol=1e-5)
    assert cli.main(["export", str(npz), str(tmp_path / "m.keras")]) == 0
    assert cli.main(["export", str(tmp_path / "m.keras"), str(tmp_path / "again.npz")]) == 0
    np.testing.assert_array_equal(models.load_model(tmp_path / "again.npz").predict(x_test[:50]),
                                  model.predict(x_test[:50]))
    assert "Keras 3 format" in capsys.readouterr().out


@pytest.mark.parametrize("arguments, pattern", [
    (["{npz}", "{tmp}/m.txt"], r"export: error: .*m.txt: unknown format '.txt'; name the output "
                               r".onnx, .keras or .npz"),
    (["{tmp}/none.npz", "{tmp}/m.onnx"], r"export: error: no model file at .*none.npz"),
    (["{tmp}/junk.npz", "{tmp}/m.onnx"], r"export: error: .*junk.npz is not a readable minicnn"),
    (["{npz}", "{tmp}/missing/m.onnx"], r"export: error: to_onnx: cannot write .*the folder "
                                        r".*missing does not exist"),
])
def test_export_command_errors_are_one_line(trained_npz, tmp_path, capsys, arguments, pattern):
    _, npz = trained_npz
    (tmp_path / "junk.npz").write_bytes(b"junk")
    argv = [a.format(npz=npz, tmp=tmp_path) for a in arguments]
    assert cli.main(["export", *argv]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert re.search(pattern, err), err


def test_export_without_onnx_installed_says_how_to_get_it(trained_npz, tmp_path, monkeypatch,
                                                          capsys):
    _, npz = trained_npz
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    assert cli.main(["export", str(npz), str(tmp_path / "m.onnx")]) == 1
    err = capsys.readouterr().err
    assert "export: error: ONNX export needs the onnx package: pip install onnx" in err
    assert not (tmp_path / "m.onnx").exists()
