"""Pictures of training: learning curves, predictions, confusion matrix, filters, feature maps,
and the layer graph of a model (`plot_model`, as keras.utils.plot_model).

Every function builds a `matplotlib.figure.Figure` with an Agg canvas directly, without pyplot:
no global state is touched, nothing pops up, it works on a headless server, and in a Jupyter
notebook the returned figure is displayed like any other. Given `path`, the figure is also
saved there as a PNG (written to a temporary file in the same folder, then renamed, so a reader
never sees half a file).

Pixel sizes are deterministic: each figure's size in inches is fixed (or a documented function of
how much it shows) and `DPI` = 100, so a 10 x 4 inch figure is a 1000 x 400 pixel PNG.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter

from .saving import atomic_write

__all__ = [
    "plot_history",
    "plot_predictions",
    "plot_confusion_matrix",
    "plot_filters",
    "plot_feature_maps",
    "plot_model",
]

DPI = 100  # pixels per inch of every figure and PNG
MISTAKE_COLOR = "tab:red"  # titles and bars of wrong predictions
TRUE_COLOR = "tab:green"  # the bar of the true class in plot_predictions
OK_COLOR = "black"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def _new_figure(width_in: float, height_in: float) -> Figure:
    """A Figure of the given size (inches) at DPI, with its own Agg canvas (no pyplot)."""
    # Round to whole pixels first so that e.g. 2.3 * 3 inches is exactly 690 pixels.
    width_px, height_px = round(width_in * DPI), round(height_in * DPI)
    fig = Figure(figsize=(width_px / DPI, height_px / DPI), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: str | os.PathLike | None, name: str) -> None:
    """Write fig as a PNG to path atomically (temporary file in the same folder + os.replace)."""
    if path is not None:
        with atomic_write(path, "wb", where=name) as f:
            fig.savefig(f, format="png", dpi=DPI)


def _is_conv2d(layer) -> bool:
    """True for a Conv2D layer (or a subclass of it), recognised by class name."""
    return any(cls.__name__ == "Conv2D" for cls in type(layer).__mro__)


def _int_array(values, what: str, name: str) -> np.ndarray:
    """values -> 1-D int64 array; floats are accepted only if they hold whole numbers."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name}: {what} must be 1-D (N,), got shape {arr.shape}")
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)
    ):
        raise ValueError(f"{name}: {what} must hold class numbers (ints), got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all() or (arr != np.round(arr)).any():
            raise ValueError(
                f"{name}: {what} must hold whole class numbers, got non-integer values such as "
                f"{arr[~np.isfinite(arr) | (arr != np.round(arr))][:3]}"
            )
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{name}: {what} must be >= 0, got {arr.min()}")
    return arr


def _image_limits(images: np.ndarray) -> tuple[float | None, float | None]:
    """Gray-scale limits for imshow: 0..255 for ints, 0..1 for floats in [0, 1], else auto."""
    if np.issubdtype(images.dtype, np.integer):
        return 0, 255
    if images.size and images.min() >= 0 and images.max() <= 1:
        return 0.0, 1.0
    return None, None


# --------------------------------------------------------------------------------------------
# Learning curves
# --------------------------------------------------------------------------------------------
def _series(history: Mapping, keys: tuple[str, ...], n_epochs: int | None, name: str):
    """The first of keys present in history as a float array, or None; checks its length."""
    for key in keys:
        if key in history:
            values = np.asarray(history[key], dtype=np.float64).ravel()
            if n_epochs is not None and values.size != n_epochs:
                raise ValueError(
                    f"{name}: history['{key}'] has {values.size} values but history['loss'] has "
                    f"{n_epochs}; every list must have one value per epoch"
                )
            return values
    return None


def plot_history(history, path: str | os.PathLike | None = None) -> Figure:
    """Learning curves: loss and accuracy per epoch, training and validation.

    history: a dict of per-epoch lists -- 'loss' (required), 'accuracy' (or 'acc'), and
        optionally 'val_loss', 'val_accuracy' (or 'val_acc') -- or an object with such a dict in
        `.history` (the History returned by `model.fit`, as in Keras).
    path: if given, the figure is also saved there as a PNG.
    -> Figure of 10 x 4 inches = 1000 x 400 pixels: loss on the left, accuracy (in %) on the
        right; the epoch with the lowest validation loss is marked.
    """
    name = "plot_history"
    if not isinstance(history, Mapping) and isinstance(getattr(history, "history", None), Mapping):
        history = history.history
    if not isinstance(history, Mapping):
        raise TypeError(
            f"{name}: expected a dict of per-epoch lists or an object with a `.history` dict "
            f"(what model.fit returns), got {type(history).__name__}"
        )
    if "loss" not in history:
        raise ValueError(
            f"{name}: history has no 'loss' (keys: {sorted(history)}); pass the History "
            "returned by model.fit, or a dict like {'loss': [...], 'accuracy': [...]}"
        )
    loss = _series(history, ("loss",), None, name)
    if loss.size == 0:
        raise ValueError(f"{name}: history['loss'] is empty: train for at least one epoch")
    n = loss.size
    acc = _series(history, ("accuracy", "acc"), n, name)
    val_loss = _series(history, ("val_loss",), n, name)
    val_acc = _series(history, ("val_accuracy", "val_acc"), n, name)
    epochs = np.arange(1, n + 1)
    marker = "o" if n <= 30 else None  # dots help on short runs, clutter long ones

    fig = _new_figure(10, 4)
    ax_loss, ax_acc = fig.subplots(1, 2)
    fig.suptitle(f"Training history ({n} epoch{'s' if n != 1 else ''})")

    ax_loss.plot(epochs, loss, marker=marker, ms=4, color="tab:blue",
                 label=f"train (last {loss[-1]:.4g})")
    if val_loss is not None:
        ax_loss.plot(epochs, val_loss, marker=marker, ms=4, ls="--", color="tab:orange",
                     label=f"validation (last {val_loss[-1]:.4g})")
        if np.isfinite(val_loss).any():
            best = int(np.nanargmin(val_loss))
            ax_loss.axvline(epochs[best], color="0.6", ls=":", lw=1)
            ax_loss.plot(epochs[best], val_loss[best], "*", ms=12, color="tab:orange",
                         label=f"best validation: epoch {epochs[best]}")
    ax_loss.set(title="Loss", xlabel="epoch", ylabel="loss", xlim=(0.5, n + 0.5))
    ax_loss.legend(fontsize=9)

    if acc is None and val_acc is None:
        ax_acc.text(0.5, 0.5, "no accuracy recorded\n(compile with metrics=['accuracy'])",
                    ha="center", va="center", transform=ax_acc.transAxes, color="0.4")
        ax_acc.set_axis_off()
    else:
        if acc is not None:
            ax_acc.plot(epochs, acc, marker=marker, ms=4, color="tab:blue",
                        label=f"train (last {acc[-1]:.2%})")
        if val_acc is not None:
            ax_acc.plot(epochs, val_acc, marker=marker, ms=4, ls="--", color="tab:orange",
                        label=f"validation (last {val_acc[-1]:.2%})")
        ax_acc.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax_acc.set(title="Accuracy", xlabel="epoch", ylabel="accuracy", xlim=(0.5, n + 0.5))
        ax_acc.legend(fontsize=9)
    for ax in (ax_loss, ax_acc):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)

    _save_png(fig, path, name)
    return fig


# --------------------------------------------------------------------------------------------
# Predictions
# --------------------------------------------------------------------------------------------
def plot_predictions(images, probabilities, labels, path: str | os.PathLike | None = None,
                     n: int = 25, class_names=None) -> Figure:
    """A grid of images, each titled "pred P / true T" (red if wrong) over its class
    probabilities.

    images: (N, H, W) or (N, H, W, 1) gray, or (N, H, W, 3) colour (CIFAR-10), uint8 0..255 or
        float (shown 0..1 if in [0, 1]).
    class_names: K names shown in the titles instead of the class numbers (optional).
    probabilities: (N, K) model outputs, e.g. `model.predict(x)`; the prediction is the argmax.
    labels: (N,) int true classes in 0..K-1.
    n: how many of the first images to show (the first min(n, N)).
    path: if given, the figure is also saved there as a PNG.
    -> Figure with m = min(n, N) cells in c = ceil(sqrt(m)) columns and r = ceil(m / c) rows,
        1.7 x 2.3 inches per cell plus 0.4 inch for the title: (170 c) x (230 r + 40) pixels,
        e.g. 850 x 1190 for n = 25. Under each digit, K bars show the probabilities: the true
        class in green and, for a mistake, the predicted class in red.
    """
    name = "plot_predictions"
    images = np.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    colour = images.ndim == 4 and images.shape[-1] == 3
    if images.ndim != 3 and not colour:
        raise ValueError(
            f"{name}: images must be (N, H, W), (N, H, W, 1) or (N, H, W, 3), got shape "
            f"{images.shape}"
        )
    n_images = images.shape[0]
    if n_images == 0:
        raise ValueError(f"{name}: images is empty (shape {images.shape}); pass at least one")
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.ndim != 2 or probabilities.shape[0] != n_images:
        raise ValueError(
            f"{name}: probabilities must be (N, K) with N = {n_images} rows (one per image), "
            f"got shape {probabilities.shape}"
        )
    n_classes = probabilities.shape[1]
    if n_classes < 2:
        raise ValueError(f"{name}: probabilities need K >= 2 classes, got shape "
                         f"{probabilities.shape}")
    if not np.isfinite(probabilities).all():
        raise ValueError(f"{name}: probabilities contain NaN or infinite values")
    labels = _int_array(labels, "labels", name)
    if labels.shape[0] != n_images:
        raise ValueError(
            f"{name}: labels has {labels.shape[0]} entries but there are {n_images} images"
        )
    if labels.max() >= n_classes:
        raise ValueError(
            f"{name}: labels go up to {labels.max()} but probabilities have only {n_classes} "
            f"classes (0..{n_classes - 1})"
        )
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name}: n must be a positive int, got {n!r}")

    m = min(int(n), n_images)
    cols = math.ceil(math.sqrt(m))
    rows = math.ceil(m / cols)
    predictions = probabilities[:m].argmax(axis=1)
    wrong = int((predictions != labels[:m]).sum())
    vmin, vmax = _image_limits(images[:m])
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(class_names) != n_classes:
            raise ValueError(f"{name}: class_names has {len(class_names)} names for "
                             f"{n_classes} classes")

    fig = _new_figure(1.7 * cols, 2.3 * rows + 0.4)
    # The caption has to fit the figure's width, which grows with the number of columns.
    if cols >= 5:
        caption = (f"Predictions: {wrong} of {m} wrong (title: predicted / true class; "
                   "bars: probabilities)")
    elif cols >= 2:
        caption = f"Predictions: {wrong} of {m} wrong"
    else:
        caption = f"{wrong} of {m} wrong"
    fig.suptitle(caption, fontsize=11)
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[3, 1] * rows)
    classes = np.arange(n_classes)
    for i in range(m):
        r, c = divmod(i, cols)
        pred, true = int(predictions[i]), int(labels[i])
        color = OK_COLOR if pred == true else MISTAKE_COLOR

        ax = fig.add_subplot(grid[2 * r, c])
        if colour:  # imshow takes RGB as floats in [0, 1]
            lo = float(images[:m].min()) if vmin is None else vmin
            hi = float(images[:m].max()) if vmax is None else vmax
            rgb = (images[i].astype(np.float64) - lo) / max(hi - lo, 1e-12)
            ax.imshow(np.clip(rgb, 0, 1), interpolation="nearest")
        else:
            ax.imshow(images[i], cmap="gray", vmin=vmin, vmax=vmax, interpolation="nearest")
        title = (f"pred {pred} / true {true}" if class_names is None
                 else f"{class_names[pred]} / {class_names[true]}")
        ax.set_title(title, color=color, fontsize=10 if class_names is None else 8,
                     fontweight="normal" if pred == true else "bold")
        ax.set_xticks([])
        ax.set_yticks([])
        if pred != true:
            for spine in ax.spines.values():
                spine.set_edgecolor(MISTAKE_COLOR)
                spine.set_linewidth(2)

        bar_ax = fig.add_subplot(grid[2 * r + 1, c])
        bar_colors = ["0.7"] * n_classes
        bar_colors[true] = TRUE_COLOR
        if pred != true:
            bar_colors[pred] = MISTAKE_COLOR
        bar_ax.bar(classes, probabilities[i], color=bar_colors, width=0.8)
        bar_ax.set_ylim(0, 1)
        bar_ax.set_xlim(-0.6, n_classes - 0.4)
        bar_ax.set_yticks([])
        bar_ax.set_xticks(classes)
        bar_ax.tick_params(axis="x", labelsize=6, length=0, pad=1)
        for side in ("top", "right", "left"):
            bar_ax.spines[side].set_visible(False)

    _save_png(fig, path, name)
    return fig


# --------------------------------------------------------------------------------------------
# Confusion matrix
# --------------------------------------------------------------------------------------------
def plot_confusion_matrix(labels, predictions, path: str | os.PathLike | None = None,
                          class_names=None) -> Figure:
    """Confusion matrix: how often each true class (row) was predicted as each class (column).

    labels: (N,) int true classes.
    predictions: (N,) int predicted classes, or (N, K) probabilities/scores (argmax is taken).
    class_names: optional K names for the ticks (default 0..K-1).
    path: if given, the figure is also saved there as a PNG.
    -> Figure of (2.8 + 0.55 K) x (1.6 + 0.55 K) inches, K = number of classes (at least 6 for
        the size), e.g. 830 x 710 pixels for K = 10. Each cell shows its count; its colour is
        the count divided by the row total (the fraction of that true class), so mistakes stay
        visible beside a heavy diagonal. Each row's tick label gives the per-class accuracy
        (recall); the title gives the overall accuracy.
    """
    name = "plot_confusion_matrix"
    labels = _int_array(labels, "labels", name)
    predictions = np.asarray(predictions)
    n_scores = None
    if predictions.ndim == 2:
        if not np.isfinite(predictions.astype(np.float64)).all():
            raise ValueError(f"{name}: predictions (probabilities) contain NaN or infinite values")
        n_scores = predictions.shape[1]
        predictions = predictions.argmax(axis=1)
    predictions = _int_array(predictions, "predictions (classes (N,) or probabilities (N, K))",
                             name)
    if labels.size == 0:
        raise ValueError(f"{name}: labels is empty; pass at least one sample")
    if predictions.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{name}: labels has {labels.shape[0]} entries but predictions has "
            f"{predictions.shape[0]}; they must match one to one"
        )
    k = max(int(labels.max()), int(predictions.max())) + 1
    if n_scores is not None:
        k = max(k, n_scores)
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if len(class_names) < k:
            raise ValueError(
                f"{name}: {len(class_names)} class_names given but the data has classes "
                f"0..{k - 1} ({k} classes)"
            )
        k = len(class_names)
    else:
        class_names = [str(c) for c in range(k)]

    counts = np.bincount(labels * k + predictions, minlength=k * k).reshape(k, k)
    per_class = counts.sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(per_class[:, None] > 0, counts / per_class[:, None], 0.0)
    correct = np.trace(counts)
    total = counts.sum()

    size = max(k, 6)  # a floor keeps room for the labels when there are only a few classes
    fig = _new_figure(2.8 + 0.55 * size, 1.6 + 0.55 * size)
    ax = fig.add_subplot()
    im = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0)
    cbar = fig.colorbar(im, ax=ax, shrink=0.8)
    cbar.set_label("fraction of the true class")
    cbar.ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    fontsize = 9 if k <= 12 else 7
    for t in range(k):
        for p in range(k):
            value = counts[t, p]
            if value == 0:
                color = "0.75"
            else:
                color = "white" if fraction[t, p] > 0.5 else "black"
            ax.text(p, t, str(value), ha="center", va="center", color=color, fontsize=fontsize)
    ax.set_xticks(range(k), class_names)
    if max(len(c) for c in class_names) > 3:  # long names would run into each other
        ax.tick_params(axis="x", labelrotation=45)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
            label.set_rotation_mode("anchor")
    row_names = [
        f"{class_names[t]}  ({counts[t, t] / per_class[t]:.1%})" if per_class[t] else
        f"{class_names[t]}  (n/a)"
        for t in range(k)
    ]
    ax.set_yticks(range(k), row_names)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class  (its accuracy)")
    ax.set_title(f"Confusion matrix: accuracy {correct / total:.2%} "
                 f"({correct} of {total} correct)")
    ax.tick_params(length=0)

    _save_png(fig, path, name)
    return fig


# --------------------------------------------------------------------------------------------
# Filters and feature maps
# --------------------------------------------------------------------------------------------
def _first_conv_kernel(model, name: str) -> tuple[np.ndarray, str]:
    for layer in model.layers:
        if _is_conv2d(layer):
            weights = layer.get_weights()
            if not weights:
                raise ValueError(
                    f"{name}: layer '{layer.name}' has no weights yet; build the model first "
                    "(call model.build(input_shape) or fit it)"
                )
            return np.asarray(weights[0]), f"layer '{layer.name}'"
    # No Conv2D found: list what there is, so a typo in the model is easy to spot.
    kinds = [type(layer).__name__ for layer in model.layers]
    raise ValueError(f"{name}: the model has no Conv2D layer (its layers: {kinds})")


def plot_filters(model_or_kernel, path: str | os.PathLike | None = None) -> Figure:
    """The kernels of the first convolution, one small image per filter.

    model_or_kernel: a kernel array (KH, KW, C, F) (Keras layout), or a model whose first
        Conv2D layer in `model.layers` gives it (`layer.get_weights()[0]`).
    path: if given, the figure is also saved there as a PNG.
    -> Figure with F cells in c = min(F, 8) columns and r = ceil(F / c) rows, 1.1 inch per cell
        plus 1.0 inch for the colour bar and 0.6 for the title: (110 c + 100) x (110 r + 60)
        pixels, e.g. 980 x 500 for 32 filters. With C > 1 input channels each cell is the mean
        over channels. One diverging colour scale, symmetric around 0 (red > 0, blue < 0, white
        = 0) and shared by all filters so their strengths compare.
    """
    name = "plot_filters"
    if hasattr(model_or_kernel, "layers"):
        kernel, source = _first_conv_kernel(model_or_kernel, name)
    else:
        kernel, source = np.asarray(model_or_kernel), None
    if kernel.ndim != 4 or 0 in kernel.shape:
        raise ValueError(
            f"{name}: expected a conv kernel (KH, KW, C, F) or a model with a Conv2D layer, got "
            f"an array of shape {kernel.shape}"
        )
    kernel = kernel.astype(np.float64)
    if not np.isfinite(kernel).all():
        raise ValueError(f"{name}: the kernel contains NaN or infinite values (training diverged?)")
    kh, kw, c, f = kernel.shape
    shown = kernel.mean(axis=2)  # (KH, KW, F)
    limit = float(np.abs(shown).max()) or 1.0

    cols = min(f, 8)
    rows = math.ceil(f / cols)
    fig = _new_figure(1.1 * cols + 1.0, 1.1 * rows + 0.6)
    channels = "1 input channel" if c == 1 else f"mean of {c} input channels"
    where = f", {source}" if source else ""
    sep = ": " if cols >= 6 else "\n"  # a narrow figure gets a two-line title
    fig.suptitle(f"First-layer filters{sep}{f} x {kh}x{kw}, {channels}{where}", fontsize=11)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    im = None
    for i, ax in enumerate(axes):
        ax.set_xticks([])
        ax.set_yticks([])
        if i >= f:
            ax.set_axis_off()
            continue
        im = ax.imshow(shown[:, :, i], cmap="RdBu_r", vmin=-limit, vmax=limit,
                       interpolation="nearest")
        ax.set_title(f"{i}", fontsize=8, pad=2)
    fig.colorbar(im, ax=axes.tolist(), shrink=0.8, label="weight")

    _save_png(fig, path, name)
    return fig


def _as_single_batch(image, name: str) -> np.ndarray:
    """(H, W), (H, W, C) or (1, H, W, C) -> (1, H, W, C) float32; uint8 is scaled to [0, 1]."""
    arr = np.asarray(image)
    original = arr.shape
    if arr.ndim == 2:
        arr = arr[None, :, :, None]
    elif arr.ndim == 3:
        arr = arr[None]
    if arr.ndim != 4 or arr.shape[0] != 1:
        raise ValueError(
            f"{name}: image must be one image (H, W), (H, W, C) or (1, H, W, C), e.g. (28, 28), "
            f"(28, 28, 1) or (1, 28, 28, 1); got shape {original}. For a batch, pass x[i]."
        )
    if arr.dtype == np.uint8:
        arr = arr / 255.0  # the usual scaling of MNIST before training
    arr = arr.astype(np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: image contains NaN or infinite values")
    return arr


def plot_feature_maps(model, image, path: str | os.PathLike | None = None,
                      max_maps: int = 16) -> Figure:
    """What each convolution sees: the output channels of every Conv2D layer for one image.

    model: a minicnn model (it needs `.layers`, each with `.name`, and
        `.layer_outputs(x, names)`, which runs the layers once and returns the named outputs).
    image: (28, 28), (28, 28, 1) or (1, 28, 28, 1) -- any (H, W[, C]) the model takes -- float
        as the model was trained on; uint8 is divided by 255. Run as a float32 batch of 1
        through the model.
    max_maps: how many channels (the first ones) to show per Conv2D layer.
    path: if given, the figure is also saved there as a PNG.
    -> Figure with one row for the input and one per Conv2D layer (titled with the layer's name
        and output shape), c = max shown channels (at least 4) columns at 1.0 inch and 1.5 inch
        per row: (100 c + 20) x (150 rows) pixels, e.g. 1620 x 450 for two conv layers and
        max_maps = 16. Each map has its own colour scale (viridis: dark = low, yellow = high).
    """
    name = "plot_feature_maps"
    if not hasattr(model, "layers"):
        raise TypeError(f"{name}: model must have a `.layers` list, got {type(model).__name__}")
    if isinstance(max_maps, bool) or not isinstance(max_maps, (int, np.integer)) or max_maps < 1:
        raise ValueError(f"{name}: max_maps must be a positive int, got {max_maps!r}")
    layers = list(model.layers)
    conv_positions = [i for i, layer in enumerate(layers) if _is_conv2d(layer)]
    if not conv_positions:
        kinds = [type(layer).__name__ for layer in layers]
        raise ValueError(f"{name}: the model has no Conv2D layer (its layers: {kinds})")
    x = _as_single_batch(image, name)
    input_image = x[0]

    conv_names = [layers[i].name for i in conv_positions]
    try:
        outputs = model.layer_outputs(x, names=conv_names)
    except Exception as err:
        raise ValueError(f"{name}: the model failed on input of shape {x.shape}: {err}") from err
    maps = []  # (layer name, output shape, (H, W, F) output of the single image)
    for layer_name in conv_names:
        out = np.asarray(outputs[layer_name])
        if out.ndim != 4 or out.shape[0] != 1:
            raise ValueError(
                f"{name}: Conv2D layer '{layer_name}' returned shape {out.shape}, expected "
                "(1, H, W, F)"
            )
        maps.append((layer_name, out.shape, out[0]))

    cols = max(4, max(min(max_maps, out.shape[-1]) for _, _, out in maps))
    n_rows = 1 + len(maps)
    fig = _new_figure(1.0 * cols + 0.2, 1.5 * n_rows)
    subfigs = np.atleast_1d(fig.subfigures(n_rows, 1))

    def row_axes(subfig):
        axes = subfig.subplots(1, cols, squeeze=False)[0]
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
        return axes

    axes = row_axes(subfigs[0])
    channels = input_image.shape[-1]
    shown = input_image[:, :, 0] if channels == 1 else input_image.mean(axis=-1)
    axes[0].imshow(shown, cmap="gray", interpolation="nearest")
    for ax in axes[1:]:
        ax.set_axis_off()
    subfigs[0].suptitle(f"input {(1, *input_image.shape)}", fontsize=10, x=0.02, ha="left")

    for subfig, (layer_name, shape, out) in zip(subfigs[1:], maps, strict=True):
        k = min(max_maps, out.shape[-1])
        axes = row_axes(subfig)
        for ch, ax in enumerate(axes):
            if ch >= k:
                ax.set_axis_off()
                continue
            ax.imshow(out[:, :, ch], cmap="viridis", interpolation="nearest")
            ax.set_title(f"ch {ch}", fontsize=7, pad=2)
        subfig.suptitle(
            f"{layer_name}: output {tuple(shape)}, channels 0-{k - 1} of {shape[-1]}",
            fontsize=10, x=0.02, ha="left",
        )

    _save_png(fig, path, name)
    return fig


def plot_digit_probabilities(digit, probabilities, title="", path=None):
    """The model's view of one image: digit (28, 28) float in [0, 1] beside a bar chart of the
    class probabilities (K,), the predicted class in blue (red means a mistake elsewhere in this
    module). 700 x 300 pixels. Returns the Figure; saves a PNG when path is given."""
    name = "plot_digit_probabilities"
    digit = np.asarray(digit, dtype=np.float32)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if digit.ndim != 2 or probabilities.ndim != 1 or probabilities.size == 0:
        raise ValueError(f"{name}: expected a 2-D digit and a 1-D probability vector, got "
                         f"shapes {digit.shape} and {probabilities.shape}.")
    predicted = int(np.argmax(probabilities))
    fig = _new_figure(7, 3)
    image_ax, bar_ax = fig.subplots(1, 2, width_ratios=[1, 1.7])
    image_ax.imshow(digit, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    image_ax.set_title(f"what the model sees ({digit.shape[0]}x{digit.shape[1]})", fontsize=10)
    image_ax.set_xticks([])
    image_ax.set_yticks([])
    classes = np.arange(len(probabilities))
    colors = ["0.6"] * len(probabilities)
    colors[predicted] = "tab:blue"
    bar_ax.bar(classes, probabilities, color=colors)
    bar_ax.set_xticks(classes)
    bar_ax.set_ylim(0, 1)
    bar_ax.set_xlabel("class")
    bar_ax.set_ylabel("probability")
    bar_ax.set_title(f"prediction: {predicted} ({probabilities[predicted]:.1%})", fontsize=10)
    fig.suptitle(title, fontsize=11)
    _save_png(fig, path, name)
    return fig


# --------------------------------------------------------------------------------------------
# The layer graph (keras.utils.plot_model)
# --------------------------------------------------------------------------------------------
_RANKDIRS = ("TB", "LR", "BT", "RL")
# Keras 3 passes **kwargs on to model_to_dot; of those only layer_range means anything there.
_KERAS_EXTRA_KWARGS = ("layer_range",)
_FONT_PT = 10
_CHAR_IN = 0.602 * _FONT_PT / 72  # width of one DejaVu Sans Mono character, inches
_LINE_IN = 1.35 * _FONT_PT / 72  # line height, inches
_PAD_IN = 0.12  # text to box edge
_RANK_GAP_IN = 0.45  # between rows (TB) or columns (LR) of boxes
_SPREAD_GAP_IN = 0.3  # between neighbouring boxes of one row
_DUMMY_IN = 0.25  # the room a long edge takes where it crosses a row
_MAX_PIXELS = 30000  # longest side of the image; Agg refuses beyond 2**16 pixels
_BOX_COLORS = {"input": "#d5e8d4", "model": "#ffe6cc", "layer": "#dae8fc"}


def _layer_class(layer) -> str:
    """A layer's class name as model.summary() shows it (a nested model: its model class)."""
    model = vars(layer).get("model")  # ModelLayer keeps the model in its own __dict__
    return type(model).__name__ if model is not None else type(layer).__name__


def _shape_text(shapes) -> str:
    """(None, 28, 28, 1) for one tensor, [(None, 32), (None, 32)] for several."""
    shapes = [tuple(s) for s in shapes]
    return str(shapes[0]) if len(shapes) == 1 else "[" + ", ".join(map(str, shapes)) + "]"


def _graph_boxes(model, show_shapes, show_dtype, show_layer_names, show_layer_activations,
                 show_trainable):
    """The boxes to draw -> (labels, kinds, parents): one box per model input and per layer
    call, in an order where parents come first; parents[i] lists the boxes feeding box i."""
    from . import activations
    from .functional import trace

    box_of = {}  # id(KerasTensor) -> the box that makes it
    labels, kinds, parents = [], [], []

    def add(layer, kind, in_shapes, out_shape, dtype, feeding):
        lines = [f"{layer.name} ({_layer_class(layer)})" if show_layer_names
                 else _layer_class(layer)]
        if show_layer_activations and kind == "layer":
            activation = getattr(layer, "activation", None)
            if activation is not None:
                lines.append(f"Activation: {activations.serialize(activation)}")
        if show_dtype:
            lines.append(f"dtype: {np.dtype(dtype).name}")
        if show_shapes:
            lines.append(f"Input shape: {_shape_text(in_shapes)}")
            lines.append(f"Output shape: {_shape_text([out_shape])}")
        if show_trainable and kind != "input":
            lines.append(f"Trainable: {'yes' if layer.trainable else 'no'}")
        labels.append("\n".join(lines))
        kinds.append(kind)
        parents.append(feeding)
        return len(labels) - 1

    for tensor in model.inputs:
        box_of[id(tensor)] = add(tensor.layer, "input", [tensor.shape], tensor.shape,
                                 tensor.dtype, [])
    # trace() is the order the model runs its calls in, so every parent is already drawn.
    _, calls = trace(model.inputs, model.outputs, f"plot_model: {model.name}")
    for call in calls:
        kind = "model" if vars(call.layer).get("model") is not None else "layer"
        box_of[id(call.output)] = add(call.layer, kind, [t.shape for t in call.inputs],
                                      call.output.shape, call.output.dtype,
                                      [box_of[id(t)] for t in call.inputs])
    return labels, kinds, parents


def _layered_layout(parents, extent):
    """A layered drawing of a DAG -> (rank, spread, chains).

    rank[i]: box i's row, its depth (the longest path from an input). spread[i]: its centre
    along the row, in inches; a row is ordered by the mean position of each box's parents
    (fewer crossing arrows) and centred on 0. extent: the size of a box along a row, inches.
    chains[(p, c)]: the spread positions where the edge p -> c crosses the rows between its
    ends; such an edge gets a slot of its own in each row it crosses, so it runs beside the
    boxes there instead of through them.
    """
    n = len(parents)
    rank = [0] * n
    for i in range(n):  # parents come first, so one pass finds the longest paths
        rank[i] = max((rank[p] + 1 for p in parents[i]), default=0)
    rows = [[] for _ in range(max(rank) + 1)]
    for i in range(n):
        rows[rank[i]].append(("box", i))
    for c in range(n):
        for p in parents[c]:
            for r in range(rank[p] + 1, rank[c]):
                rows[r].append(("edge", (p, c)))
    position = {}  # ("box", i) or ("edge", (p, c), row) -> spread

    def above(item, r):
        """Where item's predecessor(s) in row r - 1 are."""
        if item[0] == "box":
            feeding = [("box", p) if rank[p] == r - 1 else ("edge", (p, item[1]), r - 1)
                       for p in parents[item[1]]]
        else:
            p, c = item[1]
            feeding = [("box", p) if rank[p] == r - 1 else ("edge", (p, c), r - 1)]
        xs = [position[f] for f in feeding if f in position]
        return sum(xs) / len(xs) if xs else 0.0

    for r, row in enumerate(rows):
        # Stable sort: ties keep the model's own order (inputs as given, calls as traced).
        row.sort(key=lambda item: above(item, r))
        widths = [extent if kind == "box" else _DUMMY_IN for kind, _ in row]
        total = sum(widths) + _SPREAD_GAP_IN * (len(row) - 1)
        x = -total / 2
        for item, w in zip(row, widths, strict=True):
            key = item if item[0] == "box" else ("edge", item[1], r)
            position[key] = x + w / 2
            x += w + _SPREAD_GAP_IN
    spread = [position[("box", i)] for i in range(n)]
    chains = {(p, c): [position[("edge", (p, c), r)] for r in range(rank[p] + 1, rank[c])]
              for c in range(n) for p in parents[c]}
    return rank, spread, chains


def plot_model(model, to_file="model.png", show_shapes=False, show_dtype=False,
               show_layer_names=False, rankdir="TB", expand_nested=False, dpi=200,
               show_layer_activations=False, show_trainable=False, **kwargs):
    """Draw the model's layer graph to an image file, as keras.utils.plot_model.

        keras.utils.plot_model(model, "my_first_model.png")
        keras.utils.plot_model(model, "my_first_model_with_shape_info.png", show_shapes=True)

    Keras draws with pydot and Graphviz; minicnn draws with matplotlib (no Graphviz needed).
    One box per model input and per layer call, with the layer's class name (and its name,
    with show_layer_names=True: "dense_1 (Dense)"); arrows follow the graph's edges. Boxes are
    placed in rows by depth (the longest path from an input), rows centred, each row ordered
    by where its boxes' inputs are; an edge that skips rows (a residual connection) is routed
    beside the boxes of the rows it crosses. Sequential models are a chain; a model used as a
    layer is one (orange) box. Inputs are green.

    Arguments as Keras 3's (same names and defaults): show_shapes (input and output shapes),
    show_dtype, show_layer_names, rankdir ("TB" top to bottom, "LR" left to right; also "BT",
    "RL"), dpi (pixels per inch; lowered if the longest side would pass 30,000 pixels),
    show_layer_activations (layers with an `activation`), show_trainable. expand_nested=True is
    accepted but a nested model is still drawn as one box (a UserWarning says so). layer_range
    (Keras's **kwargs) is not supported: anything but None raises ValueError; other keywords
    raise TypeError.

    to_file: the image file; its extension picks the format (png, pdf, svg, jpg, ... as
    matplotlib writes them; none means PNG, as Keras). Written atomically (a temporary file in
    the same folder, then renamed): on an error no partial file is left. A missing folder
    raises FileNotFoundError.
    -> as Keras: an IPython.display.Image of the file when IPython is installed (a notebook
    shows it inline), else None. Images other than PNG/JPEG: None.
    """
    where = "plot_model"
    unknown = sorted(set(kwargs) - set(_KERAS_EXTRA_KWARGS))
    if unknown:
        raise TypeError(f"{where}: unexpected keyword argument(s) {unknown}; it takes model, "
                        "to_file, show_shapes, show_dtype, show_layer_names, rankdir, "
                        "expand_nested, dpi, show_layer_activations, show_trainable "
                        "(and Keras's layer_range=None).")
    if kwargs.get("layer_range") is not None:
        raise ValueError(f"{where}: layer_range is not supported by minicnn; it draws the whole "
                         "model (pass layer_range=None).")
    from .models import Model
    if not isinstance(model, Model):
        raise TypeError(f"{where}: expected a minicnn model (Sequential or keras.Model), got "
                        f"{type(model).__name__}.")
    model._require_built(where)
    if rankdir not in _RANKDIRS:
        raise ValueError(f"{where}: rankdir must be one of {_RANKDIRS}, got {rankdir!r}.")
    if isinstance(dpi, bool) or not isinstance(dpi, (int, float)) or not dpi > 0:
        raise ValueError(f"{where}: dpi must be a positive number, got {dpi!r}.")
    if to_file is None or not isinstance(to_file, (str, os.PathLike)):
        raise TypeError(f"{where}: to_file must be a file name such as 'model.png', got "
                        f"{to_file!r}.")
    to_file = os.fspath(to_file)
    extension = os.path.splitext(to_file)[1][1:].lower() or "png"
    if expand_nested:
        import warnings
        warnings.warn(f"{where}: expand_nested=True is not supported; nested models are drawn "
                      "as one box.", UserWarning, stacklevel=2)

    from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

    labels, kinds, parents = _graph_boxes(model, show_shapes, show_dtype, show_layer_names,
                                          show_layer_activations, show_trainable)
    # One box size for all: tidy rows, and an arrow always meets the middle of an edge.
    box_w = max(len(line) for text in labels for line in text.split("\n")) * _CHAR_IN
    box_w += 2 * _PAD_IN
    box_h = max(text.count("\n") + 1 for text in labels) * _LINE_IN + 2 * _PAD_IN
    across = rankdir in ("LR", "RL")  # ranks run left to right: a row is a column
    rank_extent, spread_extent = (box_w, box_h) if across else (box_h, box_w)
    rank, spread, chains = _layered_layout(parents, spread_extent)
    step = rank_extent + _RANK_GAP_IN
    sign = -1 if rankdir in ("TB", "LR") else 1  # TB: rank 0 on top; LR: rank 0 on the left
    if across:
        sign = -sign

    def xy(r, s):
        """(rank position in inches, spread position) -> figure inches, before the margin."""
        return (r, -s) if across else (s, r)

    centres = [xy(sign * rank[i] * step, spread[i]) for i in range(len(labels))]
    margin = 0.15
    # An edge routed beside the boxes can stick out past them: it counts for the size too.
    crossings = [xy(0, s) for points in chains.values() for s in points]
    xs = [x for x, _ in centres] + ([] if across else [x for x, _ in crossings])
    ys = [y for _, y in centres] + ([y for _, y in crossings] if across else [])
    x0, x1 = min(xs) - box_w / 2 - margin, max(xs) + box_w / 2 + margin
    y0, y1 = min(ys) - box_h / 2 - margin, max(ys) + box_h / 2 + margin
    width_in, height_in = x1 - x0, y1 - y0
    dpi = min(float(dpi), _MAX_PIXELS / max(width_in, height_in))

    fig = Figure(figsize=(width_in, height_in), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(x0, x1)
    ax.set_ylim(y0, y1)
    ax.set_axis_off()
    for (x, y), text, kind in zip(centres, labels, kinds, strict=True):
        ax.add_patch(FancyBboxPatch((x - box_w / 2, y - box_h / 2), box_w, box_h,
                                    boxstyle="round,pad=0,rounding_size=0.06",
                                    facecolor=_BOX_COLORS[kind], edgecolor="#333333",
                                    linewidth=1, zorder=2))
        ax.text(x, y, text, ha="center", va="center", family="monospace",
                fontsize=_FONT_PT, linespacing=1.35, zorder=3)
    half = rank_extent / 2
    for (p, c), points in chains.items():
        # From the middle of the parent's far side, through the edge's slots in the rows it
        # crosses, to the middle of the child's near side.
        path = [xy(sign * (rank[p] * step + half), spread[p])]
        for k, s in enumerate(points):
            r = rank[p] + 1 + k
            path.append(xy(sign * (r * step - half), s))
            path.append(xy(sign * (r * step + half), s))
        path.append(xy(sign * (rank[c] * step - half), spread[c]))
        for a, b in zip(path[:-2], path[1:-1], strict=True):
            ax.plot([a[0], b[0]], [a[1], b[1]], color="#333333", linewidth=1, zorder=1)
        ax.add_patch(FancyArrowPatch(path[-2], path[-1], arrowstyle="-|>", mutation_scale=12,
                                     color="#333333", linewidth=1, shrinkA=0, shrinkB=0,
                                     zorder=1))

    supported = fig.canvas.get_supported_filetypes()
    if extension not in supported:
        raise ValueError(f"{where}: cannot write {to_file}: matplotlib does not know the format "
                         f"'.{extension}'; use one of {sorted(supported)}.")
    with atomic_write(to_file, "wb", where=where) as f:
        fig.savefig(f, format=extension, dpi=dpi)
    if extension not in ("png", "jpg", "jpeg"):
        return None
    try:
        from IPython import display
    except ImportError:
        return None
    # The format said outright: a file without an extension is PNG all the same.
    return display.Image(filename=to_file, format="png" if extension == "png" else "jpeg")
