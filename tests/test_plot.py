"""Tests for minicnn.plot: PNG size and content, values drawn, colours of mistakes, bad inputs."""

import os

import matplotlib.colors as mcolors
import numpy as np
import pytest
from matplotlib.figure import Figure
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

import minicnn
from minicnn import plot

# --------------------------------------------------------------------------------------------
# Hand-made layers with chosen kernels (identity, edge, ...), so the plotted values can be
# checked against plain NumPy math; the plot functions only use .layers, .name, .get_weights
# and the model's .layer_outputs. The real minicnn Sequential is tested at the end of this file.
# --------------------------------------------------------------------------------------------


class Conv2D:
    """Stand-in Conv2D: 'valid' padding, stride 1, NHWC, kernel (KH, KW, C, F), direct numpy."""

    def __init__(self, kernel, bias=None, name="conv2d"):
        self.kernel = np.asarray(kernel, dtype=np.float32)
        self.bias = np.zeros(self.kernel.shape[-1], np.float32) if bias is None else bias
        self.name = name

    def forward(self, x, training=False):
        kh, kw, c = self.kernel.shape[:3]
        if x.ndim != 4 or x.shape[-1] != c:
            raise ValueError(f"{self.name}: expected (N, H, W, {c}) input, got {x.shape}")
        windows = sliding_window_view(x, (kh, kw), axis=(1, 2))  # (N, OH, OW, C, KH, KW)
        return np.einsum("nhwcij,ijcf->nhwf", windows, self.kernel) + self.bias

    def get_weights(self):
        return [self.kernel, self.bias]


class ReLU:
    def __init__(self, name="re_lu"):
        self.name = name

    def forward(self, x, training=False):
        return np.maximum(x, 0)

    def get_weights(self):
        return []


class Dense:
    """Comes after the last conv: plot_feature_maps must never run it."""

    name = "dense"

    def forward(self, x, training=False):
        raise AssertionError("plot_feature_maps ran a layer after the last Conv2D")

    def get_weights(self):
        return [np.ones((3, 3))]


class _StandInModel:
    """Stand-in for Sequential: `.layers` and `.layer_outputs` are what minicnn.plot uses."""

    def __init__(self, layers):
        self.layers = layers

    def layer_outputs(self, x, names):
        """Runs the layers in order until every named one has run (as the real model does,
        minus the layers after: the Dense stand-in must never run)."""
        outputs, wanted = {}, set(names)
        for layer in self.layers:
            if not wanted - set(outputs):
                break
            x = layer.forward(x)
            if layer.name in wanted:
                outputs[layer.name] = x
        return outputs


# --------------------------------------------------------------------------------------------
# Helpers and fixtures
# --------------------------------------------------------------------------------------------


def read_png(path):
    """PNG -> (H, W, 4) uint8 RGBA."""
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGBA"))


def assert_not_blank(pixels, min_colours=20):
    """Several distinct colours and a fair amount of non-white: something was drawn."""
    rgb = pixels[..., :3].reshape(-1, 3)
    assert len(np.unique(rgb, axis=0)) >= min_colours
    non_white = (rgb < 250).any(axis=1).mean()
    assert non_white > 0.02


def text_colour(text):
    return mcolors.to_rgb(text.get_color())


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture
def digits(rng):
    """12 blob 'digits' (28x28 float in [0, 1]) with labels 0..9, 0, 1."""
    yy, xx = np.mgrid[:28, :28]
    images = []
    for i in range(12):
        cy, cx = 8 + (i % 4) * 4, 8 + (i // 4) * 5
        images.append(np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 20.0))
    return np.array(images, dtype=np.float32), np.arange(12) % 10


def history_dict(n=6):
    epochs = np.arange(n)
    return {
        "loss": list(1.0 / (1 + epochs)),
        "accuracy": list(0.5 + 0.4 * epochs / n),
        "val_loss": list(1.2 / (1 + epochs) + 0.02 * epochs),
        "val_accuracy": list(0.45 + 0.4 * epochs / n),
    }


# --------------------------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------------------------


def test_save_is_atomic_and_leaves_no_temp_files(tmp_path):
    out = tmp_path / "h.png"
    out.write_bytes(b"old content")
    plot.plot_history(history_dict(), path=out)
    assert read_png(out).shape == (400, 1000, 4)
    assert os.listdir(tmp_path) == ["h.png"]


def test_save_into_missing_folder_fails_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        plot.plot_history(history_dict(), path=tmp_path / "nope" / "h.png")


def test_output_is_deterministic(tmp_path):
    plot.plot_history(history_dict(), path=tmp_path / "a.png")
    plot.plot_history(history_dict(), path=tmp_path / "b.png")
    assert np.array_equal(read_png(tmp_path / "a.png"), read_png(tmp_path / "b.png"))


# --------------------------------------------------------------------------------------------
# plot_history
# --------------------------------------------------------------------------------------------


def test_history_png_and_curves(tmp_path):
    h = history_dict(6)
    fig = plot.plot_history(h, path=tmp_path / "h.png")
    assert isinstance(fig, Figure)
    pixels = read_png(tmp_path / "h.png")
    assert pixels.shape == (400, 1000, 4)  # documented: 10 x 4 in at 100 dpi
    assert_not_blank(pixels)
    ax_loss, ax_acc = fig.axes[:2]
    lines = {line.get_label(): line for line in ax_loss.lines}
    train = next(v for k, v in lines.items() if k.startswith("train"))
    val = next(v for k, v in lines.items() if k.startswith("validation"))
    assert np.array_equal(train.get_xdata(), np.arange(1, 7))
    assert np.allclose(train.get_ydata(), h["loss"])
    assert np.allclose(val.get_ydata(), h["val_loss"])
    best = int(np.argmin(h["val_loss"])) + 1
    assert any(f"epoch {best}" in k for k in lines)
    acc_lines = [line for line in ax_acc.lines if line.get_label().startswith("validation")]
    assert np.allclose(acc_lines[0].get_ydata(), h["val_accuracy"])


def test_history_accepts_keras_like_object_and_train_only():
    class History:
        def __init__(self, history):
            self.history = history

    h = {"loss": [0.9, 0.5, 0.3], "acc": [0.6, 0.8, 0.9]}
    fig = plot.plot_history(History(h))
    ax_loss, ax_acc = fig.axes[:2]
    assert np.allclose(ax_loss.lines[0].get_ydata(), h["loss"])
    assert np.allclose(ax_acc.lines[0].get_ydata(), h["acc"])


def test_history_without_accuracy_says_so():
    fig = plot.plot_history({"loss": [1.0, 0.5]})
    texts = [t.get_text() for t in fig.axes[1].texts]
    assert any("no accuracy" in t for t in texts)


@pytest.mark.parametrize(
    "bad, exc, pattern",
    [
        ({}, ValueError, "no 'loss'"),
        ({"loss": []}, ValueError, "empty"),
        ({"loss": [1, 2], "val_loss": [1]}, ValueError, "val_loss.*1 values.*2"),
        ([0.1, 0.2], TypeError, "plot_history.*list"),
    ],
)
def test_history_bad_inputs(bad, exc, pattern):
    with pytest.raises(exc, match=pattern):
        plot.plot_history(bad)


# --------------------------------------------------------------------------------------------
# plot_predictions
# --------------------------------------------------------------------------------------------


def _probabilities(labels, wrong_at, rng, k=10):
    """Confident probabilities that predict the label, except at `wrong_at` (predict label+1)."""
    p = rng.uniform(0, 0.1, (len(labels), k))
    predicted = labels.copy()
    predicted[wrong_at] = (labels[wrong_at] + 1) % k
    p[np.arange(len(labels)), predicted] = 2.0
    return p / p.sum(axis=1, keepdims=True), predicted


def test_predictions_png_titles_and_red_mistakes(tmp_path, digits, rng):
    images, labels = digits
    wrong_at = np.array([1, 4, 9])
    probs, predicted = _probabilities(labels, wrong_at, rng)
    fig = plot.plot_predictions(images[..., None], probs, labels, path=tmp_path / "p.png")

    pixels = read_png(tmp_path / "p.png")
    # 12 digits -> 4 columns x 3 rows: (170 * 4) x (230 * 3 + 40) pixels as documented
    assert pixels.shape == (730, 680, 4)
    assert_not_blank(pixels)

    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 12
    red = mcolors.to_rgb(plot.MISTAKE_COLOR)
    for i, ax in enumerate(image_axes):
        assert np.allclose(ax.images[0].get_array(), images[i])
        assert ax.get_title() == f"pred {predicted[i]} / true {labels[i]}"
        is_red = text_colour(ax.title) == red
        assert is_red == (i in wrong_at), f"cell {i}"
    # The red ink is really in the PNG: count strongly red pixels.
    r, g, b = (pixels[..., c].astype(int) for c in range(3))
    assert ((r > 180) & (g < 80) & (b < 80)).sum() > 100

    bar_axes = [ax for ax in fig.axes if not ax.images]
    heights = [patch.get_height() for patch in bar_axes[4].patches]
    assert np.allclose(heights, probs[4])
    assert mcolors.to_rgb(bar_axes[4].patches[predicted[4]].get_facecolor()) == red


def test_predictions_png_without_mistakes_has_no_red(tmp_path, digits, rng):
    images, labels = digits
    probs, _ = _probabilities(labels, np.array([], dtype=int), rng)
    plot.plot_predictions((images * 255).astype(np.uint8), probs, labels, path=tmp_path / "p.png")
    r, g, b = (read_png(tmp_path / "p.png")[..., c].astype(int) for c in range(3))
    assert ((r > 180) & (g < 80) & (b < 80)).sum() == 0


def test_predictions_n_limits_the_grid(digits, rng):
    images, labels = digits
    probs, _ = _probabilities(labels, np.array([0]), rng)
    fig = plot.plot_predictions(images, probs, labels, n=5)
    assert len([ax for ax in fig.axes if ax.images]) == 5
    w, h = fig.get_size_inches() * fig.dpi
    assert (round(w), round(h)) == (510, 500)  # 3 columns x 2 rows


@pytest.mark.parametrize(
    "which, pattern",
    [
        ("probs_rows", "probabilities must be.*N = 12"),
        ("labels_len", "labels has 11 entries"),
        ("labels_range", "labels go up to 10"),
        ("images_shape", r"images must be.*\(12, 28, 28, 2\)"),
        ("empty", "images is empty"),
        ("nan", "NaN"),
        ("n", "n must be a positive int"),
    ],
)
def test_predictions_bad_inputs(which, pattern, digits, rng):
    images, labels = digits
    probs, _ = _probabilities(labels, np.array([0]), rng)
    kwargs = {}
    if which == "probs_rows":
        probs = probs[:-1]
    elif which == "labels_len":
        labels = labels[:-1]
    elif which == "labels_range":
        labels = labels.copy()
        labels[3] = 10
    elif which == "images_shape":  # two channels: neither gray nor RGB
        images = np.repeat(images[..., None], 2, axis=-1)
    elif which == "empty":
        images, probs, labels = images[:0], probs[:0], labels[:0]
    elif which == "nan":
        probs = probs.copy()
        probs[2, 2] = np.nan
    elif which == "n":
        kwargs["n"] = 0
    with pytest.raises(ValueError, match=pattern):
        plot.plot_predictions(images, probs, labels, **kwargs)


# --------------------------------------------------------------------------------------------
# plot_confusion_matrix
# --------------------------------------------------------------------------------------------


def _cell_texts(ax, k):
    """{(row, col): text} of the counts written in the cells."""
    return {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text()
            for t in ax.texts}


def test_confusion_matrix_counts_fractions_and_accuracy(tmp_path, rng):
    k = 10
    labels = rng.integers(0, k, 500)
    predictions = labels.copy()
    flip = rng.random(500) < 0.2
    predictions[flip] = rng.integers(0, k, flip.sum())
    fig = plot.plot_confusion_matrix(labels, predictions, path=tmp_path / "cm.png")

    pixels = read_png(tmp_path / "cm.png")
    assert pixels.shape == (710, 830, 4)  # (2.8 + 5.5) x (1.6 + 5.5) in at 100 dpi
    assert_not_blank(pixels)

    ax = fig.axes[0]
    texts = _cell_texts(ax, k)
    for t in range(k):
        for p in range(k):
            expected = int(((labels == t) & (predictions == p)).sum())
            assert texts[(t, p)] == str(expected)
    drawn = np.asarray(ax.images[0].get_array())
    for t in range(k):
        row = labels == t
        assert np.allclose(drawn[t], [(predictions[row] == p).mean() for p in range(k)])
    ticks = [tick.get_text() for tick in ax.get_yticklabels()]
    for t in range(k):
        recall = (predictions[labels == t] == t).mean()
        assert ticks[t] == f"{t}  ({recall:.1%})"
    accuracy = (labels == predictions).mean()
    assert f"{accuracy:.2%}" in ax.get_title()


def test_confusion_matrix_from_probabilities_and_names():
    labels = np.array([0, 0, 1, 1, 2, 2, 2])
    probs = np.array([
        [0.8, 0.1, 0.1], [0.2, 0.7, 0.1],  # 0 -> 0, 0 -> 1
        [0.1, 0.8, 0.1], [0.1, 0.6, 0.3],  # 1 -> 1, 1 -> 1
        [0.1, 0.1, 0.8], [0.7, 0.2, 0.1], [0.2, 0.2, 0.6],  # 2 -> 2, 2 -> 0, 2 -> 2
    ])
    fig = plot.plot_confusion_matrix(labels, probs, class_names=["cat", "dog", "eel"])
    ax = fig.axes[0]
    texts = _cell_texts(ax, 3)
    expected = [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert [[int(texts[(t, p)]) for p in range(3)] for t in range(3)] == expected
    assert [tick.get_text() for tick in ax.get_yticklabels()] == [
        "cat  (50.0%)", "dog  (100.0%)", "eel  (66.7%)"]
    assert [tick.get_text() for tick in ax.get_xticklabels()] == ["cat", "dog", "eel"]


def test_confusion_matrix_class_without_samples_is_na():
    fig = plot.plot_confusion_matrix([0, 0, 2], [0, 1, 2])
    assert fig.axes[0].get_yticklabels()[1].get_text() == "1  (n/a)"


@pytest.mark.parametrize(
    "labels, predictions, kwargs, pattern",
    [
        ([0, 1, 2], [0, 1], {}, "labels has 3 entries but predictions has 2"),
        ([], [], {}, "labels is empty"),
        ([0, 1, 5], [0, 1, 2], {"class_names": ["a", "b", "c"]}, "3 class_names.*0..5"),
        ([0, -1], [0, 1], {}, "labels must be >= 0"),
        ([0, 1], [0.5, 1.0], {}, "whole class numbers"),
        ([[0, 1]], [0, 1], {}, r"labels must be 1-D.*\(1, 2\)"),
    ],
)
def test_confusion_matrix_bad_inputs(labels, predictions, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        plot.plot_confusion_matrix(labels, predictions, **kwargs)


# --------------------------------------------------------------------------------------------
# plot_filters
# --------------------------------------------------------------------------------------------


def test_filters_from_kernel(tmp_path, rng):
    kernel = rng.normal(0, 0.3, (5, 5, 1, 32))
    fig = plot.plot_filters(kernel, path=tmp_path / "f.png")
    pixels = read_png(tmp_path / "f.png")
    assert pixels.shape == (500, 980, 4)  # 8 x 4 cells: (8.8 + 1) x (4.4 + 0.6) in
    assert_not_blank(pixels)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 32
    limit = np.abs(kernel).max()
    for i, ax in enumerate(image_axes):
        im = ax.images[0]
        assert np.allclose(im.get_array(), kernel[:, :, 0, i])
        assert np.allclose(im.get_clim(), (-limit, limit))  # symmetric around 0, shared


def test_filters_from_model_uses_first_conv_and_channel_mean(rng):
    first = rng.normal(size=(3, 3, 2, 6))
    second = rng.normal(size=(3, 3, 6, 4))
    model = _StandInModel([ReLU(), Conv2D(first, name="c1"), ReLU(), Conv2D(second, name="c2")])
    fig = plot.plot_filters(model)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 6
    for i, ax in enumerate(image_axes):
        assert np.allclose(ax.images[0].get_array(), (first[:, :, 0, i] + first[:, :, 1, i]) / 2)
    assert "c1" in fig.get_suptitle() and "mean of 2 input channels" in fig.get_suptitle()
    w, h = fig.get_size_inches() * fig.dpi
    assert (round(w), round(h)) == (760, 170)  # 6 columns x 1 row


def test_filters_bad_inputs(rng):
    with pytest.raises(ValueError, match=r"plot_filters.*\(3, 3, 8\)"):
        plot.plot_filters(np.zeros((3, 3, 8)))
    with pytest.raises(ValueError, match="no Conv2D layer.*ReLU"):
        plot.plot_filters(_StandInModel([ReLU(), Dense()]))
    bad = rng.normal(size=(3, 3, 1, 2))
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plot.plot_filters(bad)


# --------------------------------------------------------------------------------------------
# plot_feature_maps
# --------------------------------------------------------------------------------------------


def _feature_model(rng):
    identity = np.zeros((3, 3))
    identity[1, 1] = 1.0
    box = np.full((3, 3), 1 / 9)
    edge = np.array([[-1, -1, -1], [0, 0, 0], [1, 1, 1]], dtype=float)
    k1 = np.stack([identity, -identity, box, edge], axis=-1)[:, :, None, :]  # (3, 3, 1, 4)
    k2 = rng.normal(0, 0.5, (3, 3, 4, 20))
    layers = [Conv2D(k1, name="conv_a"), ReLU(), Conv2D(k2, name="conv_b"), Dense()]
    return _StandInModel(layers), k2


def _row_images(subfig):
    return [np.asarray(ax.images[0].get_array()) for ax in subfig.axes if ax.images]


def test_feature_maps_values_and_layout(tmp_path, digits, rng):
    model, k2 = _feature_model(rng)
    image = digits[0][3]
    fig = plot.plot_feature_maps(model, image, path=tmp_path / "fm.png")
    pixels = read_png(tmp_path / "fm.png")
    assert pixels.shape == (450, 1620, 4)  # 16 columns x 3 rows (input + 2 conv layers)
    assert_not_blank(pixels)

    rows = fig.subfigs
    assert len(rows) == 3
    (shown_input,) = _row_images(rows[0])
    assert np.allclose(shown_input, image)

    # conv_a, checked against the input directly: identity, -identity, 3x3 mean, edge.
    first = _row_images(rows[1])
    assert len(first) == 4
    inner = image[1:-1, 1:-1]
    assert np.allclose(first[0], inner, atol=1e-6)
    assert np.allclose(first[1], -inner, atol=1e-6)
    box = np.mean([image[i:i + 26, j:j + 26] for i in range(3) for j in range(3)], axis=0)
    assert np.allclose(first[2], box, atol=1e-6)
    edge = sum(image[2:, j:j + 26] for j in range(3)) - sum(image[:26, j:j + 26] for j in range(3))
    assert np.allclose(first[3], edge, atol=1e-5)
    assert "conv_a" in rows[1].get_suptitle() and "(1, 26, 26, 4)" in rows[1].get_suptitle()

    # conv_b: first 16 of 20 channels of conv(relu(conv_a)), by explicit loops.
    relu = np.maximum(np.stack(first, axis=-1), 0)
    second = _row_images(rows[2])
    assert len(second) == 16
    for ch in (0, 7, 15):
        expected = np.zeros((24, 24))
        for i in range(3):
            for j in range(3):
                expected += relu[i:i + 24, j:j + 24, :] @ k2[i, j, :, ch]
        assert np.allclose(second[ch], expected, atol=1e-4)
    assert "conv_b" in rows[2].get_suptitle() and "(1, 24, 24, 20)" in rows[2].get_suptitle()
    assert "0-15 of 20" in rows[2].get_suptitle()


@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 1), (1, 28, 28, 1)])
def test_feature_maps_accepts_image_shapes(shape, digits, rng):
    model, _ = _feature_model(rng)
    image = digits[0][5]
    fig = plot.plot_feature_maps(model, image.reshape(shape), max_maps=3)
    maps = _row_images(fig.subfigs[1])
    assert len(maps) == 3 and len(_row_images(fig.subfigs[2])) == 3
    assert np.allclose(maps[0], image[1:-1, 1:-1], atol=1e-6)


def test_feature_maps_scales_uint8(digits, rng):
    model, _ = _feature_model(rng)
    image = (digits[0][2] * 255).round().astype(np.uint8)
    fig = plot.plot_feature_maps(model, image)
    assert np.allclose(_row_images(fig.subfigs[1])[0], image[1:-1, 1:-1] / 255.0, atol=1e-6)


def test_feature_maps_bad_inputs(digits, rng):
    model, _ = _feature_model(rng)
    image = digits[0][0]
    with pytest.raises(ValueError, match=r"image must be one image.*\(2, 28, 28, 1\)"):
        plot.plot_feature_maps(model, np.zeros((2, 28, 28, 1)))
    with pytest.raises(ValueError, match="no Conv2D layer"):
        plot.plot_feature_maps(_StandInModel([ReLU()]), image)
    with pytest.raises(ValueError, match="max_maps must be a positive int"):
        plot.plot_feature_maps(model, image, max_maps=0)
    with pytest.raises(ValueError, match="NaN"):
        plot.plot_feature_maps(model, np.full((28, 28), np.nan))
    with pytest.raises(TypeError, match="must have a `.layers`"):
        plot.plot_feature_maps(object(), image)
    # The model rejects the input: the error names the layer and the shape it got.
    with pytest.raises(ValueError, match=r"model failed on input of shape \(1, 28, 28, 3\)"
                                         r".*conv_a"):
        plot.plot_feature_maps(model, np.zeros((28, 28, 3)))


# --------------------------------------------------------------------------------------------
# The real engine: the tutorial's Sequential
# --------------------------------------------------------------------------------------------


@pytest.fixture
def real_model(rng):
    """The tutorial's minicnn Sequential with random weights, biases included (not zeros)."""
    from test_models import tutorial_model

    minicnn.set_random_seed(2)
    model = tutorial_model()
    model.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


def _conv_relu(x, kernel, bias):
    """(H, W, C) float64, kernel (KH, KW, C, F) -> relu of the 'valid' cross-correlation."""
    windows = sliding_window_view(x, kernel.shape[:2], axis=(0, 1))  # (OH, OW, C, KH, KW)
    return np.maximum(np.einsum("hwcij,ijcf->hwf", windows, kernel) + bias, 0)


def _pool(x):
    h, w, c = x.shape
    return x[:2 * (h // 2), :2 * (w // 2)].reshape(h // 2, 2, w // 2, 2, c).max(axis=(1, 3))


def test_filters_of_a_real_sequential(tmp_path, real_model):
    fig = plot.plot_filters(real_model, path=tmp_path / "filters.png")
    pixels = read_png(tmp_path / "filters.png")
    assert pixels.shape == (500, 980, 4)  # 25 filters: 8 x 4 cells
    assert_not_blank(pixels)
    kernel = real_model.layers[0].get_weights()[0]
    assert kernel.shape == (3, 3, 1, 25)
    image_axes = [ax for ax in fig.axes if ax.images]
    assert len(image_axes) == 25
    limit = np.abs(kernel).max()
    for i, ax in enumerate(image_axes):
        assert np.allclose(ax.images[0].get_array(), kernel[:, :, 0, i])
        assert np.allclose(ax.images[0].get_clim(), (-limit, limit))
    assert f"layer '{real_model.layers[0].name}'" in fig.get_suptitle()


def test_feature_maps_of_a_real_sequential(tmp_path, digits, real_model):
    image = digits[0][6]
    fig = plot.plot_feature_maps(real_model, image, path=tmp_path / "maps.png")
    pixels = read_png(tmp_path / "maps.png")
    assert pixels.shape == (600, 1620, 4)  # input + 3 Conv2D rows, 16 columns
    assert_not_blank(pixels)

    # The three convolutions recomputed independently in float64 (conv -> relu -> pool).
    w = [np.asarray(a, np.float64) for a in real_model.get_weights()]
    conv1 = _conv_relu(image[:, :, None].astype(np.float64), w[0], w[1])
    conv2 = _conv_relu(_pool(conv1), w[2], w[3])
    conv3 = _conv_relu(_pool(conv2), w[4], w[5])
    rows = fig.subfigs
    assert len(rows) == 4
    convs = [layer for layer in real_model.layers if type(layer).__name__ == "Conv2D"]
    for row, layer, expected in zip(rows[1:], convs, (conv1, conv2, conv3), strict=True):
        shown = _row_images(row)
        assert len(shown) == 16
        assert expected.std() > 0  # the check below compares something, not zeros
        np.testing.assert_allclose(np.stack(shown, axis=-1), expected[:, :, :16],
                                   rtol=1e-4, atol=1e-4)
        title = row.get_suptitle()
        assert layer.name in title and str((1, *expected.shape)) in title


def test_digit_probabilities_figure(tmp_path, digits):
    probabilities = np.full(10, 0.02)
    probabilities[3] = 0.82
    fig = plot.plot_digit_probabilities(digits[0][0], probabilities, "mine.png",
                                        path=tmp_path / "p.png")
    pixels = read_png(tmp_path / "p.png")
    assert pixels.shape == (300, 700, 4)
    assert_not_blank(pixels)
    bars = [p for p in fig.axes[1].patches]
    assert len(bars) == 10 and bars[3].get_height() == pytest.approx(0.82)
    assert "prediction: 3 (82.0%)" in fig.axes[1].get_title()
    with pytest.raises(ValueError, match="plot_digit_probabilities"):
        plot.plot_digit_probabilities(np.zeros((28, 28)), np.zeros((2, 5)))


def test_predictions_of_colour_images_with_class_names(tmp_path, rng):
    images = (rng.random((6, 32, 32, 3)) * 255).astype(np.uint8)
    probabilities = rng.dirichlet(np.ones(3), 6)
    labels = probabilities.argmax(axis=1)
    labels[0] = (labels[0] + 1) % 3  # one mistake
    fig = plot.plot_predictions(images, probabilities, labels, tmp_path / "p.png", n=6,
                                class_names=["cat", "dog", "ship"])
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert len(titles) == 6 and all(" / " in t for t in titles)
    assert {t.split(" / ")[1] for t in titles} <= {"cat", "dog", "ship"}
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (32, 32, 3)
    np.testing.assert_allclose(shown, images[0] / 255)
    assert_not_blank(read_png(tmp_path / "p.png"))
    with pytest.raises(ValueError, match="class_names has 2 names for 3 classes"):
        plot.plot_predictions(images, probabilities, labels, class_names=["a", "b"])
