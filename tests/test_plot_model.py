"""Tests for keras.utils.plot_model (minicnn/plot.py): the picture of a model's layer graph."""

import os

import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

import minicnn as keras
from minicnn import layers, plot


def read_png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def branchy_model():
    """Two inputs, a residual block (a skip over two rows), a merge and two outputs."""
    image = keras.Input(shape=(16, 16, 3), name="image")
    x = layers.Conv2D(8, 3, padding="same", activation="relu", name="stem")(image)
    y = layers.Conv2D(8, 3, padding="same", activation="relu", name="conv_a")(x)
    y = layers.Conv2D(8, 3, padding="same", name="conv_b")(y)
    x = layers.Add(name="skip")([x, y])
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    extra = keras.Input(shape=(4,), name="extra")
    e = layers.Dense(8, name="extra_dense")(extra)
    x = layers.Concatenate(name="merge")([x, e])
    return keras.Model([image, extra], [layers.Dense(10, name="classes")(x),
                                        layers.Dense(1, name="score")(x)], name="branchy")


def sequential_model():
    return keras.Sequential([layers.Conv2D(4, 3, activation="relu", input_shape=(28, 28, 1)),
                             layers.MaxPooling2D(), layers.Flatten(), layers.Dense(10)])


def test_functional_model_png(tmp_path):
    path = tmp_path / "model.png"
    result = keras.utils.plot_model(branchy_model(), str(path))
    pixels = read_png(path)
    height, width = pixels.shape[:2]
    # 8 rows of boxes and 2 or 3 boxes a row at dpi=200: a tall picture, a few inches each way.
    assert 800 < height < 4000 and 400 < width < 3000 and height > width
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 20  # boxes, text, arrows: not blank
    assert result is None or type(result).__name__ == "Image"  # IPython's, when it is there
    assert not [p for p in os.listdir(tmp_path) if p != "model.png"]  # no temporary files


def test_sequential_model_png_is_a_chain(tmp_path):
    path = tmp_path / "seq.png"
    keras.utils.plot_model(sequential_model(), path, dpi=100)
    height, width = read_png(path).shape[:2]
    # 5 boxes (the input and 4 layers) in one column.
    assert height > 2.5 * width
    labels, _, parents = plot._graph_boxes(sequential_model(), False, False, False, False,
                                           False)
    assert labels == ["InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dense"]
    assert parents == [[], [0], [1], [2], [3]]


def test_layout_rows_are_depths_and_skips_go_beside():
    labels, kinds, parents = plot._graph_boxes(branchy_model(), False, False, True, False,
                                               False)
    names = [text.split(" (")[0] for text in labels]
    assert names[:2] == ["image", "extra"] and kinds[:2] == ["input", "input"]
    rank, spread, chains = plot._layered_layout(parents, 2.0)
    depth = dict(zip(names, rank, strict=True))
    assert depth == {"image": 0, "extra": 0, "stem": 1, "conv_a": 2, "conv_b": 3, "skip": 4,
                     "gap": 5, "extra_dense": 1, "merge": 6, "classes": 7, "score": 7}
    box = {n: i for i, n in enumerate(names)}
    # The skip stem -> skip crosses rows 2 and 3 in a slot of its own, clear of conv_a/conv_b.
    crossing = chains[(box["stem"], box["skip"])]
    assert len(crossing) == 2
    for s, conv in zip(crossing, ("conv_a", "conv_b"), strict=True):
        assert abs(s - spread[box[conv]]) >= 1.0 + plot._DUMMY_IN / 2
    assert chains[(box["conv_a"], box["conv_b"])] == []
    # Boxes of one row do not overlap.
    for r in set(rank):
        xs = sorted(spread[i] for i in range(len(rank)) if rank[i] == r)
        assert all(b - a >= 2.0 for a, b in zip(xs, xs[1:], strict=False))


def test_show_shapes_and_names_change_the_picture(tmp_path):
    model = branchy_model()
    keras.utils.plot_model(model, tmp_path / "plain.png")
    keras.utils.plot_model(model, tmp_path / "shapes.png", show_shapes=True)
    plain, shapes = read_png(tmp_path / "plain.png"), read_png(tmp_path / "shapes.png")
    assert shapes.shape[0] > plain.shape[0] and shapes.shape[1] > plain.shape[1]
    labels, *_ = plot._graph_boxes(model, True, True, True, True, True)
    assert labels[2] == ("stem (Conv2D)\nActivation: relu\ndtype: float32\n"
                         "Input shape: (None, 16, 16, 3)\nOutput shape: (None, 16, 16, 8)\n"
                         "Trainable: yes")
    assert "Input shape: [(None, 16, 16, 8), (None, 16, 16, 8)]" in labels[5]


def test_rankdir_lr_is_wide(tmp_path):
    keras.utils.plot_model(sequential_model(), tmp_path / "lr.png", rankdir="LR", dpi=100)
    height, width = read_png(tmp_path / "lr.png").shape[:2]
    assert width > 3 * height


def test_nested_model_is_one_box(tmp_path):
    inner = sequential_model()
    x = keras.Input(shape=(28, 28, 1))
    model = keras.Model(x, layers.Dense(2, name="head")(inner(x)))
    labels, kinds, parents = plot._graph_boxes(model, False, False, True, False, False)
    assert kinds == ["input", "model", "layer"] and parents == [[], [0], [1]]
    assert labels[1] == f"{inner.name} (Sequential)"
    with pytest.warns(UserWarning, match="expand_nested"):
        keras.utils.plot_model(model, tmp_path / "nested.png", expand_nested=True)
    read_png(tmp_path / "nested.png")


def test_other_formats_and_no_extension(tmp_path):
    model = sequential_model()
    assert keras.utils.plot_model(model, tmp_path / "m.svg") is None
    assert (tmp_path / "m.svg").read_text().lstrip().startswith("<?xml")
    keras.utils.plot_model(model, tmp_path / "m.pdf")
    assert (tmp_path / "m.pdf").read_bytes().startswith(b"%PDF")
    keras.utils.plot_model(model, tmp_path / "noext")  # PNG, as Keras does
    read_png(tmp_path / "noext")


def test_bad_path_fails_clearly_and_writes_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        keras.utils.plot_model(sequential_model(), tmp_path / "missing" / "m.png")
    with pytest.raises(IsADirectoryError):
        keras.utils.plot_model(sequential_model(), tmp_path)
    with pytest.raises(ValueError, match="format '.xyz'"):
        keras.utils.plot_model(sequential_model(), tmp_path / "m.xyz")
    assert os.listdir(tmp_path) == []


def test_write_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "model.png"
    path.write_bytes(b"old picture")

    def broken_savefig(self, f, **kwargs):
        f.write(b"\x89PNG half a file")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken_savefig)
    with pytest.raises(OSError, match="disk full"):
        keras.utils.plot_model(sequential_model(), path)
    assert path.read_bytes() == b"old picture"
    assert os.listdir(tmp_path) == ["model.png"]


@pytest.mark.parametrize("kwargs, exc, pattern", [
    ({"show_shape": True}, TypeError, "unexpected keyword argument.*show_shape"),
    ({"layer_range": ["a", "b"]}, ValueError, "layer_range is not supported"),
    ({"rankdir": "XY"}, ValueError, "rankdir must be one of"),
    ({"dpi": 0}, ValueError, "dpi must be a positive number"),
    ({"to_file": None}, TypeError, "to_file must be a file name"),
])
def test_bad_arguments(tmp_path, kwargs, exc, pattern):
    kwargs.setdefault("to_file", tmp_path / "m.png")
    with pytest.raises(exc, match=pattern):
        keras.utils.plot_model(sequential_model(), **kwargs)
    keras.utils.plot_model(sequential_model(), tmp_path / "ok.png", layer_range=None)


def test_needs_a_built_minicnn_model(tmp_path):
    with pytest.raises(ValueError, match="not built"):
        keras.utils.plot_model(keras.Sequential([layers.Dense(3)]), tmp_path / "m.png")
    with pytest.raises(TypeError, match="expected a minicnn model"):
        keras.utils.plot_model(object(), tmp_path / "m.png")


def test_the_keras_names():
    from minicnn.utils import plot_model
    assert plot_model is keras.utils.plot_model is plot.plot_model
    assert keras.keras.utils.plot_model is plot.plot_model
