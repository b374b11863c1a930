"""Turn a picture of a handwritten digit into an MNIST-style 28x28 input.

MNIST digits were made like this (LeCun et al.): the binary NIST scans were size-normalised to fit
a 20x20 box keeping their aspect ratio, with anti-aliasing (which is why strokes have soft grey
edges), then placed in a 28x28 field so that their centre of mass sits at the centre. Pixels are
light ink (255) on a dark background (0). A model trained on MNIST only works on your own drawing
or photo if it gets the same kind of picture, and `preprocess_digit` redoes those steps:

    grayscale -> light-on-dark -> contrast normalised -> cropped to the ink
              -> scaled to fit 20x20 -> pasted in 28x28 with the centre of mass at (14, 14)

`load_image` reads a PNG or JPEG file into a float32 grayscale array for it.

Memory and time are bounded for any input: a picture of more than MAX_IMAGE_PIXELS pixels is
refused (ImageTooLargeError, before it is decoded), and one larger than WORK_SIDE pixels on a
side is turned to gray band by band and shrunk by area averaging to at most WORK_SIDE on a side
before the MNIST steps, so no full-size float copy of a big photo is ever made. (A digit fitted
into 20x20 loses nothing by it; JPEGs are even decoded at the reduced scale.)
"""

from __future__ import annotations

import math
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np

__all__ = ["IMAGE_FORMATS", "MAX_IMAGE_PIXELS", "ImageTooLargeError", "load_image",
           "preprocess_digit", "read_image"]

# One pixel cap for every entry point (load_image, preprocess_digit, `predict`, the server): a
# 12-megapixel phone photo fits, while a small PNG claiming 12000 x 12000 pixels (6.5 GB and
# half a minute before this cap) is refused before it is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
# Pictures larger than this on a side are shrunk (area average) to at most this before the
# MNIST steps; they are handled in bands of BAND_ROWS output rows to bound memory.
WORK_SIDE = 1024
BAND_ROWS = 32
# Raster formats load_image decodes, recognised by content (never EPS/PDF, which Pillow hands
# to Ghostscript). The server accepts only PNG and JPEG.
IMAGE_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP")

# The MNIST recipe: the digit fits a FIT x FIT box inside a SIZE x SIZE frame.
SIZE = 28
FIT = 20
# Centre of the frame in pixel-index coordinates (row, col), as measured on MNIST itself: the mean
# centre of mass of the 10,000 test digits is (13.99, 14.01), every one within 0.5 px of (14, 14).
CENTRE = 14.0
# Ink must differ from the background by at least this much (on a 0..1 scale), otherwise the
# picture is treated as blank: paper texture and JPEG noise stay well below it.
MIN_CONTRAST = 0.1

# ITU-R 601-2 luma weights, the ones Pillow uses for RGB -> "L".
_LUMA = np.array([0.299, 0.587, 0.114])


class ImageTooLargeError(ValueError):
    """A picture has more than MAX_IMAGE_PIXELS pixels; the message gives its size and the
    limit."""


def _too_large(name, width, height):
    return ImageTooLargeError(
        f"{name}: the image is {width} x {height} pixels ({width * height:,}); the limit is "
        f"{MAX_IMAGE_PIXELS:,} pixels (4096 x 4096). Scale it down or crop it to the digit.")


def _check_pixels(name, width, height):
    if width * height > MAX_IMAGE_PIXELS:
        raise _too_large(name, width, height)


# --------------------------------------------------------------------------------------------
# Reading files
# --------------------------------------------------------------------------------------------
def load_image(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG or JPEG file as a grayscale image.

    path: file name (str or Path) -> (H, W) float32 in [0, 1], 0 = black, 1 = white.

    Gray, RGB, palette and 16-bit files are converted to luma (ITU-R 601-2, as Pillow does).
    Transparent pixels (RGBA, LA, palette with transparency) are composited onto WHITE first, so
    a digit drawn on a transparent canvas comes out as ink on white paper. A JPEG's EXIF
    orientation (phone photos) is applied. BMP, GIF, TIFF and WebP are read too (IMAGE_FORMATS,
    recognised by content). A picture over WORK_SIDE pixels on a side comes back shrunk to at
    most WORK_SIDE (area average), see the module docstring.
    Raises FileNotFoundError for a missing file, ValueError for a folder, a device, a file that
    is not an image, and ImageTooLargeError (a ValueError) for more than MAX_IMAGE_PIXELS.
    """
    path = Path(path)
    name = "load_image"
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise FileNotFoundError(f"{name}: no such file: '{path}'") from None
    except OSError as err:  # e.g. a name too long, a loop of links
        raise ValueError(f"{name}: '{path}' cannot be read ({err.strerror or err}).") from err
    if stat.S_ISDIR(mode):
        raise ValueError(f"{name}: '{path}' is a folder, not an image file; give a PNG or JPEG "
                         "file inside it.")
    if not stat.S_ISREG(mode):
        raise ValueError(f"{name}: '{path}' is not a regular file (a device, pipe or socket); "
                         "give a PNG or JPEG file.")
    try:
        with open(path, "rb") as f:
            return read_image(f, f"{name}: '{path}'", IMAGE_FORMATS)
    except PermissionError:
        raise  # an OSError too, but not a problem with the file's content


def read_image(file, name: str = "read_image", formats=IMAGE_FORMATS) -> np.ndarray:
    """Decode one picture from an open binary file -> (H, W) float32 gray in [0, 1], as
    load_image does (transparency on white, EXIF orientation, big pictures shrunk to at most
    WORK_SIDE on a side). formats: the Pillow format names accepted, recognised by content.

    Raises ImageTooLargeError over MAX_IMAGE_PIXELS (checked before decoding), ValueError for
    anything that is not a readable picture in one of `formats`; the messages start with name.
    """
    from PIL import Image, UnidentifiedImageError  # imported here: only this needs it

    try:
        with warnings.catch_warnings():
            # Pillow warns from 89 megapixels; our own, lower cap applies below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(file, formats=list(formats))
        with im:
            _check_pixels(name, *im.size)
            return _decode_gray(im)
    except Image.DecompressionBombError as err:
        found = re.search(r"\((\d+) pixels\)", str(err))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise ImageTooLargeError(
            f"{name}: the image has {size}; the limit is {MAX_IMAGE_PIXELS:,} pixels "
            "(4096 x 4096). Scale it down or crop it to the digit.") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, TypeError,
            EOFError, MemoryError) as err:
        if isinstance(err, (ImageTooLargeError, PermissionError)):
            raise
        # Pillow raises UnidentifiedImageError for unknown content (or a format not in
        # `formats`), OSError for truncated or corrupt data, SyntaxError and others from a few
        # of its parsers.
        if isinstance(err, UnidentifiedImageError):
            err = f"its content is none of {', '.join(formats)}"
        raise ValueError(
            f"{name} could not be read as PNG/JPEG image ({err}). "
            "Check that the file is a PNG or JPEG picture and not truncated."
        ) from None if isinstance(err, str) else err


_EXIF_TRANSPOSE = {2: "FLIP_LEFT_RIGHT", 3: "ROTATE_180", 4: "FLIP_TOP_BOTTOM", 5: "TRANSPOSE",
                   6: "ROTATE_270", 7: "TRANSVERSE", 8: "ROTATE_90"}  # as ImageOps.exif_transpose


def _decode_gray(im) -> np.ndarray:
    """An opened (not yet decoded) Pillow image -> (H, W) float32 gray, EXIF orientation
    applied; shrunk to at most WORK_SIDE on a side when larger, band by band."""
    from PIL import Image, ImageOps

    width, height = im.size
    if max(width, height) <= WORK_SIDE:
        return pil_to_gray(ImageOps.exif_transpose(im))
    orientation = im.getexif().get(0x0112)
    factor = math.ceil(max(width, height) / WORK_SIDE)
    if im.format == "JPEG":
        # Decode at 1/2, 1/4 or 1/8 scale in the DCT itself: a photo never exists at full size.
        im.draft(im.mode, (math.ceil(width / factor), math.ceil(height / factor)))
        width, height = im.size
        factor = math.ceil(max(width, height) / WORK_SIDE)
    im.load()
    band = factor * BAND_ROWS
    gray = np.concatenate([_shrunk_band(im.crop((0, top, width, min(height, top + band))),
                                        factor)
                           for top in range(0, height, band)])
    method = _EXIF_TRANSPOSE.get(orientation)
    if method is not None:
        gray = np.asarray(Image.fromarray(gray).transpose(getattr(Image.Transpose, method)))
    return np.ascontiguousarray(gray, dtype=np.float32)


def _shrunk_band(band, factor: int) -> np.ndarray:
    """One band of a big picture -> its gray, shrunk by `factor` (area average), in [0, 1].
    8-bit modes are turned to gray and shrunk in Pillow (alpha composited on white, luma,
    Image.reduce; rounded to 8 bits, which is invisible once shrunk), several times faster and
    lighter than the float path that 16-bit and float modes take."""
    from PIL import Image

    if band.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _box_shrink(pil_to_gray(band), factor)
    if band.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in band.info:
        paper = Image.new("RGBA", band.size, (255, 255, 255, 255))
        band = Image.alpha_composite(paper, band.convert("RGBA"))
    return np.asarray(band.convert("L").reduce(factor), dtype=np.float32) / np.float32(255)


def _box_shrink(x: np.ndarray, factor: int) -> np.ndarray:
    """(h, w) -> (ceil(h/factor), ceil(w/factor)): the mean of each factor x factor block (the
    blocks at the bottom and right edges may be smaller), in float64."""
    if factor <= 1:
        return x.astype(np.float64)
    rows = np.arange(0, x.shape[0], factor)
    cols = np.arange(0, x.shape[1], factor)
    sums = np.add.reduceat(np.add.reduceat(x, rows, axis=0, dtype=np.float64), cols, axis=1)
    counts = np.outer(np.diff(np.append(rows, x.shape[0])), np.diff(np.append(cols, x.shape[1])))
    return sums / counts


def pil_to_gray(im) -> np.ndarray:
    """Pillow image of any mode -> (H, W) float32 gray in [0, 1], transparency on white."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit grayscale PNGs open as "I;16" (or "I" in older Pillow): full scale is 65535.
        return (np.asarray(im, dtype=np.float64) / 65535.0).clip(0.0, 1.0).astype(np.float32)
    if im.mode == "F":
        return np.asarray(im, dtype=np.float32).clip(0.0, 1.0)
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    rgb_or_rgba = np.asarray(im.convert("RGBA" if has_alpha else "RGB"))
    return _to_gray(rgb_or_rgba, name="load_image").astype(np.float32)


# --------------------------------------------------------------------------------------------
# Arrays -> gray
# --------------------------------------------------------------------------------------------
def _to_float01(image: np.ndarray, name: str) -> np.ndarray:
    """uint8 0..255, uint16 0..65535, bool, other ints 0..255 or float 0..1 -> float64 0..1."""
    if image.dtype == np.bool_:
        return image.astype(np.float64)
    if image.dtype == np.uint16:
        return image.astype(np.float64) / 65535.0
    if np.issubdtype(image.dtype, np.integer):
        if image.size and (image.min() < 0 or image.max() > 255):
            raise ValueError(
                f"{name}: integer pixel values must be in 0..255, got {image.min()}..{image.max()}"
                f" (dtype {image.dtype}). Pass uint8, or floats in [0, 1]."
            )
        return image.astype(np.float64) / 255.0
    if np.issubdtype(image.dtype, np.floating):
        x = image.astype(np.float64)
        if not np.isfinite(x).all():
            raise ValueError(
                f"{name}: the image contains NaN or infinite values; expected finite floats in "
                "[0, 1]. Check how the array was made."
            )
        lo, hi = (x.min(), x.max()) if x.size else (0.0, 0.0)
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise ValueError(
                f"{name}: float pixel values must be in [0, 1], got {lo:.4g}..{hi:.4g}. "
                "If they are 0..255, divide by 255 (or pass the uint8 array)."
            )
        return x.clip(0.0, 1.0)
    raise TypeError(
        f"{name}: unsupported pixel dtype {image.dtype}; expected uint8, uint16, bool or float"
    )


def _bounded_gray(image: np.ndarray, name: str) -> np.ndarray:
    """_to_gray within the pixel cap; an image over WORK_SIDE on a side is converted in bands
    and shrunk (area average) to at most WORK_SIDE, so no full-size float copy is made."""
    if image.ndim in (2, 3) and image.shape[0] and image.shape[1]:
        height, width = image.shape[:2]
        _check_pixels(name, width, height)
        if max(height, width) > WORK_SIDE:
            _to_gray(image[:1, :1], name)  # the shape and dtype checks, on one pixel
            factor = math.ceil(max(height, width) / WORK_SIDE)
            band = factor * BAND_ROWS
            return np.concatenate([_box_shrink(_to_gray(image[top:top + band], name), factor)
                                   for top in range(0, height, band)])
    return _to_gray(image, name)


def _to_gray(image: np.ndarray, name: str) -> np.ndarray:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) -> (H, W) float64 gray in [0, 1].

    RGB is converted with the luma weights; RGBA is composited onto white first.
    """
    shape_ok = image.ndim == 2 or (image.ndim == 3 and image.shape[2] in (1, 3, 4))
    if not shape_ok:
        raise ValueError(
            f"{name}: expected one image of shape (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA "
            f"(or (H, W, 1)), got shape {image.shape}. For a batch, call it once per image."
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"{name}: the image is empty (shape {image.shape})")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    x = _to_float01(image, name)
    if x.ndim == 2:
        return x
    gray = x[..., :3] @ _LUMA
    if x.shape[2] == 4:
        # Composite onto white: a transparent pixel shows the (white) paper behind it.
        alpha = x[..., 3]
        gray = gray * alpha + 1.0 * (1.0 - alpha)
    return gray.clip(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# The MNIST steps
# --------------------------------------------------------------------------------------------
def _border(x: np.ndarray) -> np.ndarray:
    """The pixels of the outer frame, about 5% of each side deep (at least 1 pixel)."""
    h, w = x.shape
    dy, dx = max(1, h // 20), max(1, w // 20)
    mask = np.ones_like(x, dtype=bool)
    mask[dy:h - dy, dx:w - dx] = False
    return x[mask]


def _make_light_on_dark(x: np.ndarray) -> np.ndarray:
    """Invert dark-ink-on-light-paper pictures so the ink is light, as in MNIST.

    Rule: the border of a picture is (nearly all) background, so the median of the border pixels
    is the background level; the ink is a minority that pulls the mean of the whole picture away
    from it. If the background is brighter than the mean, the ink is darker than the paper and
    the picture is inverted. Light-on-dark pictures (MNIST itself) are left alone.
    """
    background = np.median(_border(x))
    return 1.0 - x if background > x.mean() else x


def _otsu_threshold(x: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the cut that maximises the between-class variance."""
    counts, edges = np.histogram(x, bins=bins, range=(0.0, 1.0))
    centres = (edges[:-1] + edges[1:]) / 2
    p = counts / counts.sum()
    w0 = np.cumsum(p)  # weight of the class below each cut
    m0 = np.cumsum(p * centres)  # its (unnormalised) mean
    total_mean = m0[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * w0 - m0) ** 2 / (w0 * (1.0 - w0))
    between = np.nan_to_num(between, nan=0.0, posinf=0.0)
    return float(edges[np.argmax(between) + 1])  # upper edge: values above it are ink


def _normalize_contrast(x: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Light-on-dark gray -> (stretched, is_ink): background exactly 0, ink about 1.

    Otsu's threshold t splits ink from background; `bg` and `ink` are the medians of the two
    classes. Values are stretched linearly so that `ink` maps to 1 and the point halfway between
    the background and t maps to 0: paper texture, photo noise and JPEG ringing near the
    background level are cut off, while the anti-aliased edge of each stroke stays grey.
    is_ink (bool, same shape) marks the pixels above t, the confident ink.
    """
    t = _otsu_threshold(x)
    is_ink = x > t
    if not is_ink.any() or is_ink.all():
        raise ValueError(f"{name}: the image looks blank: no digit found (it is one flat colour)")
    bg, ink = np.median(x[~is_ink]), np.median(x[is_ink])
    if ink - bg < MIN_CONTRAST:
        raise ValueError(
            f"{name}: the image looks blank: no digit found (ink and background differ by only "
            f"{ink - bg:.3f} on a 0..1 scale, need {MIN_CONTRAST}). Use a darker pen or more "
            "light."
        )
    lo = (bg + t) / 2
    return ((x - lo) / (ink - lo)).clip(0.0, 1.0), is_ink


def _crop_to_ink(x: np.ndarray, is_ink: np.ndarray) -> np.ndarray:
    """Cut x to the bounding box of the confident ink, grown by 1 pixel for the soft edges.

    The box comes from `is_ink` (above Otsu's threshold), not from every non-zero pixel, so that
    faint specks of noise far from the digit cannot stretch it.
    """
    rows = np.flatnonzero(is_ink.any(axis=1))
    cols = np.flatnonzero(is_ink.any(axis=0))
    top, bottom = max(rows[0] - 1, 0), rows[-1] + 2
    left, right = max(cols[0] - 1, 0), cols[-1] + 2
    x = x[top:bottom, left:right]
    # The 1-pixel margin may hold nothing at all: drop empty outer rows/columns again.
    rows, cols = np.flatnonzero(x.any(axis=1)), np.flatnonzero(x.any(axis=0))
    return x[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def _fit_box(x: np.ndarray, box: int = FIT) -> np.ndarray:
    """Scale (h, w) so its longer side is `box` pixels, keeping the aspect ratio.

    Shrinking uses Pillow's BOX filter (each output pixel is the area average of the input pixels
    under it: the anti-aliasing that gives MNIST its grey edges); enlarging a small input uses
    bicubic interpolation. The result is rescaled so its brightest pixel is 1 (MNIST stroke
    centres are 255), which also keeps thin strokes visible after shrinking.
    """
    from PIL import Image

    h, w = x.shape
    scale = box / max(h, w)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    resample = Image.Resampling.BOX if scale <= 1 else Image.Resampling.BICUBIC
    img = Image.fromarray(x.astype(np.float32))  # mode "F": resized in float, no 8-bit rounding
    out = np.asarray(img.resize((new_w, new_h), resample=resample), dtype=np.float64)
    out = out.clip(0.0, 1.0)  # bicubic overshoots slightly at sharp edges
    return out / out.max()


def _paste_centred(x: np.ndarray, size: int = SIZE, centre: float = CENTRE) -> np.ndarray:
    """Put (h, w) into a size x size frame with its centre of mass at (centre, centre).

    As in the MNIST recipe the shift is rounded to whole pixels (no resampling, so no blur), and
    clipped so the digit never leaves the frame.
    """
    h, w = x.shape
    rows, cols = np.indices(x.shape)
    mass = x.sum()
    com_row, com_col = (rows * x).sum() / mass, (cols * x).sum() / mass
    top = int(np.clip(np.floor(centre - com_row + 0.5), 0, size - h))
    left = int(np.clip(np.floor(centre - com_col + 0.5), 0, size - w))
    frame = np.zeros((size, size), dtype=np.float64)
    frame[top:top + h, left:left + w] = x
    return frame


def preprocess_digit(image: np.ndarray | str | os.PathLike) -> np.ndarray:
    """Make an MNIST-style input from a picture of one handwritten digit.

    image: one picture, either polarity (dark ink on light paper, or light on dark), any size:
        an array (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA ((H, W, 1) counts as gray),
        uint8 0..255, uint16 0..65535 or float 0..1; or a PNG/JPEG file name (see `load_image`).
    -> (28, 28) float32 in [0, 1]: light digit on a black background, fitted in a 20x20 box
        with its centre of mass at pixel (14, 14). Add the batch and channel axes for a model:
        `model.predict(preprocess_digit(img)[None, :, :, None])`.

    Steps (see the module docstring): grayscale (alpha composited on white); invert if the ink
    is darker than the background (rule: border median brighter than the mean); contrast
    normalisation with Otsu's threshold (background -> 0, ink -> 1, faint noise removed); crop
    to the ink's bounding box; scale to fit 20x20 with area averaging; paste in 28x28 at the
    centre of mass. The picture should hold one digit and little else: faint specks are
    ignored, but any mark as dark as the ink counts as part of the digit.

    Pictures over WORK_SIDE (1024) pixels on a side are shrunk to it by area averaging first.
    Raises ValueError for a wrong shape or channel count, NaN values, or a blank picture;
    ImageTooLargeError (a ValueError) over MAX_IMAGE_PIXELS; FileNotFoundError / ValueError for
    a missing or unreadable file.
    """
    name = "preprocess_digit"
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    elif not isinstance(image, np.ndarray):
        image = np.asarray(image)
    gray = _bounded_gray(image, name)
    x = _make_light_on_dark(gray)
    x, is_ink = _normalize_contrast(x, name)
    x = _crop_to_ink(x, is_ink)
    x = _fit_box(x)
    x = _paste_centred(x)
    return x.astype(np.float32)
